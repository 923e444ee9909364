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

use zomg_sdk::{BoxName, Client, ExecRequest, ExecResult, ProjectName};

/// Runs `sh -c script` in a box to completion ([`Client::exec_run`]).
pub async fn exec_sh(client: &Client, project: &str, name: &str, script: &str) -> ExecResult {
    let project: ProjectName = project.parse().expect("project name");
    let name: BoxName = name.parse().expect("box name");
    let request = ExecRequest {
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    client
        .exec_run(&project, &name, &request)
        .await
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"))
}
