//! The `zomg` binary against a real `zomg-server` (loop btrfs, runc, busybox base): data
//! volumes, `create --data/--fork`, `update` and `show`, with the exact lines a user sees.
//! Needs root, runc, tini-static, a static busybox and btrfs-progs (it fails naming what
//! is missing).

use serde_json::Value;

use zomg_server::testing::BlockingTestServer;

use crate::{assert_error, sandbox, zomg};

/// `zomg <args> --url <server> --token <token>` in a scratch directory.
fn run(server: &BlockingTestServer, dir: &std::path::Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = zomg(dir);
    cmd.args(args)
        .args(["--url", &server.url(), "--token", &server.token()]);
    cmd
}

fn stdout(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().success().stderr("");
    String::from_utf8(out.get_output().stdout.clone()).expect("utf-8 output")
}

/// The value of `key:` in a `key: value` block.
fn field(block: &str, key: &str) -> String {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {block}"))
        .trim()
        .to_owned()
}

#[test]
fn data_volumes_fork_update_and_show() {
    let server = BlockingTestServer::start();
    let dir = sandbox();
    let dir = dir.path();

    let created = stdout(&mut run(
        &server,
        dir,
        &["data", "create", "cache", "--size", "1"],
    ));
    assert_eq!(field(&created, "name"), "cache");
    assert_eq!(field(&created, "project"), "default");
    assert_eq!(field(&created, "size"), "1G");
    assert_eq!(
        field(&created, "used"),
        "16.0 KiB",
        "an empty subvolume is one tree block"
    );
    assert_eq!(field(&created, "attached_to"), "-");
    let copy: Value = serde_json::from_str(&stdout(&mut run(
        &server,
        dir,
        &["data", "create", "default:copy", "--from", "cache", "-j"],
    )))
    .unwrap();
    assert_eq!(copy["name"], "copy");
    assert_eq!(copy["size_gb"], 1);
    assert_error(
        &mut run(&server, dir, &["data", "create", "cache"]),
        "volume \"cache\" already exists in project \"default\"",
    );
    assert_error(
        &mut run(
            &server,
            dir,
            &["data", "create", "x", "--from", "other:cache"],
        ),
        "--from must name a volume of project \"default\": volumes are copied within a project",
    );

    let web = stdout(&mut run(
        &server,
        dir,
        &[
            "create",
            "web",
            "-d",
            "cache=/data",
            "-d",
            "copy=/ro/:ro",
            "-e",
            "A=1",
        ],
    ));
    assert_eq!(field(&web, "data_mounts"), "cache=/data:rw, copy=/ro:ro");
    let list = stdout(&mut run(&server, dir, &["data", "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("NAME   SIZE  USED"), "{list}");
    assert!(lines[1].starts_with("cache  1G "), "{list}");
    assert!(lines[1].contains("  web  "), "{list}");
    assert!(lines[2].starts_with("copy   1G "), "{list}");

    // Attached volumes are not deleted; the line names the box.
    let mut del = run(&server, dir, &["data", "delete", "cache"]);
    del.assert()
        .code(1)
        .stdout("cache: error: volume \"cache\" is attached to box \"web\": delete the box first\n")
        .stderr("Error: 1 of 1 volumes could not be deleted\n");
    assert_error(
        &mut run(&server, dir, &["create", "bad", "-d", "cache=/etc/x"]),
        "invalid mount path \"/etc/x\": cannot be /etc or sit under it (reserved: /proc, /sys, /dev, /run, /etc, /volumes, /home, /box)",
    );
    assert_error(
        &mut run(&server, dir, &["create", "bad", "-d", "nope=/x"]),
        "volume \"nope\" not found in project \"default\" (see `zomg data list`)",
    );

    // Fork.
    assert_error(
        &mut run(
            &server,
            dir,
            &["create", "clone", "--fork", "web", "--base", "bb"],
        ),
        "--base cannot be used with --fork",
    );
    assert_error(
        &mut run(&server, dir, &["create", "web", "--fork", "web"]),
        "box \"web\" cannot be cloned from itself",
    );
    assert_error(
        &mut run(&server, dir, &["create", "clone", "--fork", "ghost"]),
        "cannot fork box \"ghost\": it does not exist in project \"default\"",
    );
    let clone = stdout(&mut run(
        &server,
        dir,
        &["create", "clone", "--fork", "web", "-e", "B=2"],
    ));
    assert_eq!(field(&clone, "forked_from"), "default:web");
    let mounts = field(&clone, "data_mounts");
    let mounts: Vec<&str> = mounts.split(", ").collect();
    assert_eq!(mounts.len(), 2, "{clone}");
    assert!(
        mounts[0].starts_with("box-clone-") && mounts[0].ends_with("=/data:rw"),
        "{clone}"
    );
    assert!(mounts[1].ends_with("=/ro:ro"), "{clone}");
    let shown: Value =
        serde_json::from_str(&stdout(&mut run(&server, dir, &["show", "clone", "-j"]))).unwrap();
    assert_eq!(shown["environment"]["A"], "1");
    assert_eq!(shown["environment"]["B"], "2");
    let list = stdout(&mut run(&server, dir, &["data", "list", "-j"]));
    let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&list)
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cache", "copy"], "fork volumes are hidden");

    // Show reports the storage used, for people.
    let show = stdout(&mut run(&server, dir, &["show", "web"]));
    let used = field(&show, "storage_used");
    assert!(used.ends_with(" MiB"), "{show}");

    // Update.
    assert_error(
        &mut run(&server, dir, &["update", "web", "FOO=1"]),
        "no updates provided",
    );
    let updated: Value = serde_json::from_str(&stdout(&mut run(
        &server,
        dir,
        &[
            "update",
            "web",
            "MEMORY=512M",
            "--env",
            "CPU=500m",
            "-t",
            "tier=web",
            "-j",
        ],
    )))
    .unwrap();
    assert_eq!(updated["config"]["ram_mb"], 512);
    assert_eq!(updated["config"]["cpus"], 0.5);
    assert_eq!(updated["tags"]["tier"], "web");
    let id = updated["id"].as_str().unwrap();
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/zomg-{}/{id}/memory.limit_in_bytes",
        zomg_server::server::instance_id(server.data_dir())
    ))
    .unwrap();
    assert_eq!(limit.trim(), (512u64 << 20).to_string());

    // Clean up through the CLI: boxes first, then their volumes.
    let deleted = stdout(&mut run(
        &server,
        dir,
        &["delete", "web", "clone", "--force"],
    ));
    assert_eq!(deleted, "web: deleted\nclone: deleted\n");
    let deleted = stdout(&mut run(&server, dir, &["data", "delete", "cache", "copy"]));
    assert_eq!(deleted, "cache: deleted\ncopy: deleted\n");
    assert_eq!(
        stdout(&mut run(&server, dir, &["data", "list"])),
        "NAME  SIZE  USED  ATTACHED  CREATED\n"
    );
    assert_error(
        &mut run(&server, dir, &["data", "show", "cache"]),
        "volume \"cache\" not found in project \"default\" (see `zomg data list`)",
    );
}
