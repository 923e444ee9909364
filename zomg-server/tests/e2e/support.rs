//! Shared helpers of the end-to-end tests: the server, running commands in boxes, and
//! checking API errors and leftovers.

#![allow(dead_code)] // each test module uses a different subset

use std::time::Duration;

use reqwest::Method;
use zomg_sdk::{BoxInfo, Client, CreateBox, ExecRequest, ExecResult, ProjectName};
use zomg_server::storage::SubvolKind;

pub use zomg_server::testing::TestServer;

/// Runs `script` with `sh -c` in a box and returns what it printed and its exit code.
pub async fn sh(client: &Client, project: &ProjectName, name: &str, script: &str) -> ExecResult {
    let request = ExecRequest {
        command: vec![script.to_owned()],
        shell: Some("sh".to_owned()),
        ..Default::default()
    };
    let req = client
        .request(
            Method::POST,
            &["v1", "projects", project.as_str(), "boxes", name, "exec"],
        )
        .timeout(Duration::from_secs(120))
        .json(&request);
    let response = client
        .send(req)
        .await
        .unwrap_or_else(|e| panic!("exec in {name}: {e}"));
    response
        .json()
        .await
        .unwrap_or_else(|e| panic!("exec answer from {name}: {e}"))
}

/// Like [`sh`], but the command must succeed; returns its stdout, trimmed.
pub async fn sh_ok(client: &Client, project: &ProjectName, name: &str, script: &str) -> String {
    let r = sh(client, project, name, script).await;
    assert_eq!(
        r.exit_code,
        Some(0),
        "{script:?} in {name} failed: stdout {:?}, stderr {:?}",
        r.stdout,
        r.stderr
    );
    r.stdout.trim().to_owned()
}

/// Creates a box and checks that it runs.
pub async fn create(client: &Client, project: &ProjectName, req: CreateBox) -> BoxInfo {
    let name = req.name.clone();
    let b = client
        .create_box(project, &req)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    assert_eq!(b.status, zomg_sdk::BoxStatus::Running, "{name}");
    b
}

/// Asserts that `result` failed with this HTTP status, error code and message.
pub fn assert_api_error<T: std::fmt::Debug>(
    result: zomg_sdk::Result<T>,
    status: u16,
    code: &str,
    message: &str,
) {
    let e = result.expect_err("the call should fail");
    let api = e
        .api()
        .unwrap_or_else(|| panic!("expected an API error, got {e}"));
    assert_eq!(
        (api.status, api.code.as_str(), api.message.as_str()),
        (status, code, message)
    );
}

/// Ids of the root and volume subvolumes that exist, for residue checks.
pub fn subvolumes(server: &TestServer) -> (Vec<String>, Vec<String>) {
    let storage = server.service().storage_backend();
    let names = |kind| {
        storage
            .list(kind)
            .expect("list subvolumes")
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    (names(SubvolKind::Root), names(SubvolKind::Volume))
}

/// The text of a file in this box's cgroup on the host, e.g. `("memory",
/// "memory.limit_in_bytes")`.
pub fn cgroup_file(server: &TestServer, box_id: &str, controller: &str, file: &str) -> String {
    let path = format!(
        "/sys/fs/cgroup/{controller}/zomg-{}/{box_id}/{file}",
        server.instance()
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .to_owned()
}
