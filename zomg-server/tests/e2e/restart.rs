//! The server survives being killed: a new process reconciles what the old one left.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zomg_sdk::{BoxName, BoxStatus, Client, CreateBox, DeleteState, ProjectName, Target};
use zomg_server::testing::{busybox_rootfs, require_prerequisites, teardown};

fn p(s: &str) -> ProjectName {
    s.parse().unwrap()
}

fn n(s: &str) -> BoxName {
    s.parse().unwrap()
}

/// A `zomg-server serve` child process on a data directory; torn down on drop.
struct ServerProcess {
    child: Option<Child>,
    data_dir: std::path::PathBuf,
    port: u16,
}

impl ServerProcess {
    fn spawn(data_dir: &std::path::Path, port: u16) -> ServerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_zomg-server"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--default-base",
                "bb",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--storage-size-gb", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The log is kept in the data directory for debugging a failure.
            .stderr(
                std::fs::File::create(data_dir.with_file_name("server.log")).expect("server log"),
            )
            .spawn()
            .expect("spawn zomg-server");
        ServerProcess {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            port,
        }
    }

    fn client(&self) -> Client {
        let token =
            std::fs::read_to_string(self.data_dir.join("admin-token")).expect("admin token");
        let target = Target::new(format!("http://127.0.0.1:{}", self.port).parse().unwrap())
            .with_token(token.trim());
        Client::new(&target).unwrap()
    }

    async fn ready(&self) -> Client {
        zomg_sdk::poll_until("server to answer", Duration::from_secs(30), || async {
            let token_file = self.data_dir.join("admin-token");
            if !token_file.exists() {
                return Ok(None);
            }
            Ok(self.client().health().await.ok())
        })
        .await
        .expect("server up");
        self.client()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL the server");
            c.wait().expect("reap the server");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        teardown(&self.data_dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_server_reconciles_on_start() {
    require_prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let status = Command::new(env!("CARGO_BIN_EXE_zomg-server"))
        .args(["base", "import", "bb"])
        .arg(&rootfs)
        .arg("--data-dir")
        .arg(&data)
        .args(["--storage-size-gb", "4"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "base import failed");

    let port = free_port();
    let mut server = ServerProcess::spawn(&data, port);
    let client = server.ready().await;
    let project = p("default");
    let mut ids = std::collections::BTreeMap::new();
    for name in [
        "keeps-running",
        "loses-container",
        "stays-stopped",
        "half-deleted",
    ] {
        let b = client
            .create_box(
                &project,
                &CreateBox {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        ids.insert(name, b.id);
    }
    client
        .stop_box(&project, &n("stays-stopped"))
        .await
        .unwrap();

    // Kill the server mid-life.
    server.kill();

    // While it is down: one box's container vanishes, one delete was interrupted after it
    // was recorded (as a crash would leave it), and an orphan root appears.
    let runc_root = data.join("runtime/runc");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["delete", "--force", &ids["loses-container"]])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runc delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite_free_update(&data.join("zomg.db"), &ids["half-deleted"]);
    assert!(db.success(), "sqlite3 update failed");
    let orphan = data.join("btrfs/roots/b-orphan");
    assert!(
        Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&orphan)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );

    let server = ServerProcess::spawn(&data, port);
    let client = server.ready().await;
    let status = |name: &'static str| {
        let client = client.clone();
        let project = project.clone();
        async move { client.get_box(&project, &n(name)).await.map(|b| b.status) }
    };
    assert_eq!(status("keeps-running").await.unwrap(), BoxStatus::Running);
    assert_eq!(
        status("loses-container").await.unwrap(),
        BoxStatus::Running,
        "restarted"
    );
    assert_eq!(status("stays-stopped").await.unwrap(), BoxStatus::Stopped);
    let r = crate::exec_sh(&client, "default", "loses-container", "echo back").await;
    assert_eq!(r.stdout, "back\n");
    let r = crate::exec_sh(
        &client,
        "default",
        "keeps-running",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    )
    .await;
    assert!(
        r.stdout.starts_with("/run/zomg/tini"),
        "the box kept running across the kill"
    );
    let deleted = client
        .wait_deleted(&project, &n("half-deleted"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        deleted.status,
        DeleteState::Deleted,
        "pending delete resumed"
    );
    assert!(!orphan.exists(), "orphan root cleaned");

    for name in ["keeps-running", "loses-container", "stays-stopped"] {
        client.delete_box(&project, &n(name), true).await.unwrap();
    }
    let roots: Vec<_> = std::fs::read_dir(data.join("btrfs/roots"))
        .unwrap()
        .flatten()
        .collect();
    assert!(roots.is_empty(), "roots left: {roots:?}");
}

/// Marks a box `deleting` with a pending delete operation, as a server killed right after
/// recording a delete leaves it. Uses the sqlite3 shell so the test needs no private API.
fn rusqlite_free_update(db: &std::path::Path, box_id: &str) -> std::process::ExitStatus {
    let sql = format!(
        "UPDATE boxes SET status = 'deleting' WHERE id = '{box_id}';
         INSERT INTO ops (id, kind, target, label, state, attempts, created_at, updated_at)
         VALUES ('op-test', 'delete_box', '{box_id}', 'default:half-deleted', 'pending', 0,
                 '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z');"
    );
    Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .status()
        .expect("sqlite3 (apt-get install sqlite3)")
}
