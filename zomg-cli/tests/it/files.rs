//! `zomg cp` / `get` / `put` and `inject` against a real server in this process (real btrfs
//! and runc; needs root, see `zomg_server::testing`).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use assert_cmd::Command;

use crate::{assert_error, sandbox};
use zomg_server::testing::BlockingTestServer;

/// `zomg` pointed at the test server, in `dir` (also `HOME`).
fn zomg_at(ts: &BlockingTestServer, dir: &Path) -> Command {
    let mut cmd = crate::zomg(dir);
    cmd.env("ZOMG_URL", ts.url()).env("ZOMG_TOKEN", ts.token());
    cmd
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn cp_copies_files_both_ways_keeping_permissions() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("web");
    let root = ts.root_path(&b);
    let dir = sandbox();
    let d = dir.path();
    std::fs::write(d.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    set_mode(&d.join("run.sh"), 0o755);
    std::fs::write(d.join("key"), b"secret").unwrap();
    set_mode(&d.join("key"), 0o600);

    zomg_at(&ts, d)
        .args(["cp", "run.sh", "web:/opt/app/run.sh"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert_eq!(mode_of(&root.join("opt/app/run.sh")), 0o755);
    // Into an existing directory: inside it, under its own name; `put` is an alias.
    zomg_at(&ts, d)
        .args(["put", "key", "web:/opt/app"])
        .assert()
        .success();
    assert_eq!(std::fs::read(root.join("opt/app/key")).unwrap(), b"secret");
    assert_eq!(mode_of(&root.join("opt/app/key")), 0o600);
    // A trailing slash names a directory, created if missing.
    zomg_at(&ts, d)
        .args(["cp", "key", "default:web:/new/dir/"])
        .assert()
        .success();
    assert_eq!(mode_of(&root.join("new/dir/key")), 0o600);

    // Back, with `get`, into a new name and into an existing directory.
    zomg_at(&ts, d)
        .args(["get", "web:/opt/app/run.sh", "back.sh"])
        .assert()
        .success()
        .stdout("");
    assert_eq!(
        std::fs::read(d.join("back.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode_of(&d.join("back.sh")), 0o755);
    std::fs::create_dir(d.join("into")).unwrap();
    zomg_at(&ts, d)
        .args(["cp", "default.web:/opt/app/key", "into"])
        .assert()
        .success();
    assert_eq!(mode_of(&d.join("into/key")), 0o600);
    // `-` is stdout and stdin.
    zomg_at(&ts, d)
        .args(["cp", "web:/opt/app/key", "-"])
        .assert()
        .success()
        .stdout("secret");
    zomg_at(&ts, d)
        .args(["cp", "-", "web:/from-stdin"])
        .write_stdin("piped")
        .assert()
        .success();
    assert_eq!(std::fs::read(root.join("from-stdin")).unwrap(), b"piped");
    // Errors name the box path.
    assert_error(
        zomg_at(&ts, d).args(["cp", "web:/missing", "x"]),
        "/missing: no such file or directory",
    );
}

#[test]
fn cp_refuses_directories_without_r_both_ways() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("web");
    std::fs::create_dir_all(ts.root_path(&b).join("srv/d")).unwrap();
    let dir = sandbox();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    for args in [
        ["cp", "src", "web:/srv/x"],
        ["cp", "web:/srv/d", "out"],
        ["get", "web:/srv", "out"],
    ] {
        assert_error(
            zomg_at(&ts, dir.path()).args(args),
            "only files are supported (directories require -r, not yet supported)",
        );
    }
    assert!(!dir.path().join("out").exists());
    assert_error(
        zomg_at(&ts, dir.path()).args(["cp", "web:/a", "web:/b"]),
        "both \"web:/a\" and \"web:/b\" are box paths; exactly one side must be a box",
    );
    assert_error(
        zomg_at(&ts, dir.path()).args(["cp", "a", "b"]),
        "neither \"a\" nor \"b\" is a box path; write one side as box:/path",
    );
}

#[test]
fn cp_r_round_trips_a_tree_the_docker_way() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("web");
    let root = ts.root_path(&b);
    let dir = sandbox();
    let d = dir.path();
    let tree = d.join("proj");
    std::fs::create_dir_all(tree.join("src/empty")).unwrap();
    std::fs::write(tree.join("src/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(tree.join("build.sh"), b"#!/bin/sh\n").unwrap();
    set_mode(&tree.join("build.sh"), 0o750);
    set_mode(&tree.join("src"), 0o700);
    symlink("src/main.rs", tree.join("link")).unwrap();

    // Destination missing: it becomes the copy.
    zomg_at(&ts, d)
        .args(["cp", "-r", "proj", "web:/work"])
        .assert()
        .success()
        .stderr("");
    assert_eq!(
        std::fs::read(root.join("work/src/main.rs")).unwrap(),
        b"fn main() {}\n"
    );
    assert_eq!(mode_of(&root.join("work/build.sh")), 0o750);
    assert_eq!(mode_of(&root.join("work/src")), 0o700);
    assert!(root.join("work/src/empty").is_dir());
    assert_eq!(
        std::fs::read_link(root.join("work/link")).unwrap(),
        Path::new("src/main.rs")
    );
    // Destination exists: the copy lands inside it.
    zomg_at(&ts, d)
        .args(["cp", "-r", "proj", "web:/work"])
        .assert()
        .success();
    assert!(root.join("work/proj/src/main.rs").is_file());
    // `dir/.` copies the contents.
    std::fs::create_dir(root.join("flat")).unwrap();
    zomg_at(&ts, d)
        .args(["cp", "-r", "proj/.", "web:/flat"])
        .assert()
        .success();
    assert!(root.join("flat/build.sh").is_file());

    // And back.
    zomg_at(&ts, d)
        .args(["cp", "-r", "web:/work", "back"])
        .assert()
        .success()
        .stdout("");
    assert_eq!(
        std::fs::read(d.join("back/src/main.rs")).unwrap(),
        b"fn main() {}\n"
    );
    assert_eq!(mode_of(&d.join("back/build.sh")), 0o750);
    assert_eq!(mode_of(&d.join("back/src")), 0o700);
    assert!(d.join("back/src/empty").is_dir());
    assert_eq!(
        std::fs::read_link(d.join("back/link")).unwrap(),
        Path::new("src/main.rs")
    );
    zomg_at(&ts, d)
        .args(["get", "-r", "web:/work", "back"])
        .assert()
        .success();
    assert!(d.join("back/work/proj/build.sh").is_file());
}

#[test]
fn cp_with_an_ephemeral_box_creates_and_deletes_it() {
    let ts = BlockingTestServer::start();
    let dir = sandbox();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let out = zomg_at(&ts, dir.path())
        .args(["cp", "f", "-:/tmp/f"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let name = stderr
        .strip_prefix("ephemeral box: ephemeral-")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected stderr {stderr:?}"));
    assert!(
        name.split('-').all(|p| p.parse::<u64>().is_ok()),
        "{stderr}"
    );
    let boxes = ts
        .block_on(ts.client.list_all_boxes(&ts.project, &Default::default()))
        .unwrap();
    assert!(
        boxes.is_empty(),
        "the ephemeral box was not deleted: {boxes:?}"
    );
}

#[test]
fn inject_copies_credentials_with_their_modes() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("dev");
    let root = ts.root_path(&b);
    let dir = sandbox();
    let home = dir.path();
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".codex/auth.json"), b"{\"token\":1}").unwrap();
    std::fs::write(home.join(".codex/config.toml"), b"model = \"x\"\n").unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), b"PRIVATE").unwrap();
    std::fs::write(home.join(".ssh/id_rsa.pub"), b"ssh-rsa AAAA me\n").unwrap();
    std::fs::write(home.join(".gitconfig"), b"[user]\n\tname = Me\n").unwrap();
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(
        root.join("root/.ssh/known_hosts"),
        "example.org ssh-ed25519 AAAA\ngithub.com ssh-rsa OLD\n",
    )
    .unwrap();

    let out = zomg_at(&ts, home)
        .args(["inject", "dev"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "OK: injected codex auth/config, ssh keypair, git config into default:dev\n"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning: ssh -T git@github.com"),
        "{stderr}"
    );
    let r = root.join("root");
    assert_eq!(
        std::fs::read(r.join(".codex/auth.json")).unwrap(),
        b"{\"token\":1}"
    );
    assert_eq!(mode_of(&r.join(".codex/auth.json")), 0o600);
    assert_eq!(
        std::fs::read(r.join(".codex/codex.toml")).unwrap(),
        b"model = \"x\"\n"
    );
    assert_eq!(mode_of(&r.join(".ssh/id_rsa")), 0o600);
    assert_eq!(mode_of(&r.join(".ssh/id_rsa.pub")), 0o644);
    assert_eq!(mode_of(&r.join(".ssh")), 0o700);
    assert_eq!(
        std::fs::read(r.join(".gitconfig")).unwrap(),
        b"[user]\n\tname = Me\n"
    );
    let known = std::fs::read_to_string(r.join(".ssh/known_hosts")).unwrap();
    assert!(
        known.starts_with("example.org ssh-ed25519 AAAA\n"),
        "{known}"
    );
    assert!(!known.contains("OLD"));
    assert_eq!(
        known
            .lines()
            .filter(|l| l.starts_with("github.com "))
            .count(),
        3
    );

    // Only what exists is injected; missing defaults are notices.
    let dir2 = sandbox();
    std::fs::create_dir_all(dir2.path().join(".ssh")).unwrap();
    std::fs::write(dir2.path().join(".ssh/id_ecdsa"), b"K").unwrap();
    let out = zomg_at(&ts, dir2.path())
        .args(["inject", "dev"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "OK: injected ssh key into default:dev\n"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("skipped codex auth: "), "{stderr}");
    // A path named by a flag must exist.
    assert_error(
        zomg_at(&ts, dir2.path()).args(["inject", "dev", "--codex-auth", "nope.json"]),
        "cannot read --codex-auth nope.json: No such file or directory (os error 2)",
    );
}
