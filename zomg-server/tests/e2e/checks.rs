//! Helpers of the volume, fork and update tests over [`zomg_server::testing::TestServer`]:
//! running commands in boxes, API error checks, what exists on the host.

use zomg_sdk::{BoxInfo, Client, CreateBox, ExecResult, ProjectName};
use zomg_server::core::BoxService;
use zomg_server::storage::SubvolKind;
use zomg_server::testing::TestServer;

/// The project these tests use.
pub fn project() -> ProjectName {
    zomg_sdk::DEFAULT_PROJECT.parse().expect("default project")
}

/// The box service behind the test server's API.
pub fn service(ts: &TestServer) -> &BoxService {
    &ts.server().service
}

/// Runs `script` with `sh -c` in a box.
pub async fn sh(client: &Client, project: &ProjectName, name: &str, script: &str) -> ExecResult {
    crate::exec_sh(client, project.as_str(), name, script).await
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
pub fn subvolumes(ts: &TestServer) -> (Vec<String>, Vec<String>) {
    let storage = service(ts).storage_backend();
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

/// The text of a file in a box's cgroup on the host, e.g. `("memory",
/// "memory.limit_in_bytes")`.
pub fn cgroup_file(ts: &TestServer, box_id: &str, controller: &str, file: &str) -> String {
    let instance = zomg_server::server::instance_id(ts.data_dir());
    let path = format!("/sys/fs/cgroup/{controller}/zomg-{instance}/{box_id}/{file}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .to_owned()
}
