//! End-to-end tests: a real `zomg-server` (SQLite, loop-mounted btrfs, runc) driven through
//! the SDK, as a user would. They need root, runc, tini, btrfs-progs and busybox-static and
//! fail loudly naming whichever is missing.

mod checks;
mod files;
mod fork;
mod lifecycle;
mod restart;
mod update;
mod volumes;

use zomg_sdk::{Client, ExecRequest, ExecResult};

/// `POST …/exec` of `sh -c script`, run to completion.
pub async fn exec_run(client: &Client, project: &str, name: &str, script: &str) -> ExecResult {
    let req = ExecRequest {
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    let builder = client
        .request(
            http::Method::POST,
            &["v1", "projects", project, "boxes", name, "exec"],
        )
        .json(&req);
    let response = client
        .send(builder)
        .await
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"));
    response.json().await.expect("exec result")
}
