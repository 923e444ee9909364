//! Lifecycle commands and their exact output against a real server.

use zomg_server::testing::TestServer;

use crate::{Zomg, stdout};

#[tokio::test(flavor = "multi_thread")]
async fn create_list_show_stop_resume_delete() {
    let ts = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let z = Zomg::new(&ts, dir.path());
    tokio::task::spawn_blocking(move || {
        let next = || z.cmd();
        let created: serde_json::Value = serde_json::from_str(&stdout(next().args([
            "create", "web", "-t", "env=dev", "-e", "A=1", "--cpu", "500m", "--memory", "256M",
            "-j",
        ])))
        .unwrap();
        assert_eq!(created["status"], "running");
        assert_eq!(created["config"]["cpus"], 0.5);
        assert_eq!(created["config"]["ram_mb"], 256);
        stdout(next().args(["create", "db"]));
        assert_eq!(stdout(next().args(["list", "-q"])), "db\nweb\n");
        assert_eq!(
            stdout(next().args(["list", "-q", "-t", "env=dev"])),
            "web\n"
        );
        let show = stdout(next().args(["show", "web"]));
        for field in [
            "name:",
            "project:",
            "status:",
            "base:",
            "url:",
            "port:",
            "created_at:",
            "updated_at:",
            "published_domains:",
            "tags:",
            "data_mounts:",
            "cpus:",
            "ram_mb:",
            "storage_gb:",
        ] {
            assert!(show.contains(field), "show lacks {field}:\n{show}");
        }
        next()
            .args(["delete", "web"])
            .assert()
            .code(1)
            .stdout("web: error: box is running\n");
        let stopped: serde_json::Value =
            serde_json::from_str(&stdout(next().args(["stop", "web", "-j"]))).unwrap();
        assert_eq!(stopped["status"], "stopped");
        stdout(next().args(["resume", "web"]));
        next()
            .args(["delete", "web", "db", "nothere", "-f"])
            .assert()
            .success()
            .stdout("web: deleted\ndb: deleted\nnothere: deleted\n");
        next()
            .args(["delete", "-f", "--wait", "web"])
            .assert()
            .success()
            .stdout("web: deleted\n");
        assert_eq!(stdout(next().args(["list", "-q"])), "");
        next()
            .args(["create", "x", "--base", "bb", "--fork", "y"])
            .assert()
            .code(1)
            .stderr("Error: --base cannot be used with --fork\n");
        next()
            .args(["create", "x", "-e", "BOX_NAME=y"])
            .assert()
            .code(1)
            .stderr(predicates::str::starts_with(
                "Error: environment variable is reserved",
            ));
    })
    .await
    .unwrap();
    assert_eq!(ts.leftovers(), Vec::<String>::new());
}
