//! End-to-end tests of the real `zomg` binary against a real `zomg-server` (in this test
//! process: SQLite, loop-mounted btrfs, runc). They need root, runc, tini, btrfs-progs,
//! busybox-static and tmux, and fail naming whichever is missing.

mod exec;
mod lifecycle;

use std::path::Path;

use zomg_server::testing::TestServer;

/// `zomg` pointed at `ts`, with a cleared environment, in project `default`.
pub fn zomg(ts: &TestServer, dir: &Path) -> assert_cmd::Command {
    Zomg::new(ts, dir).cmd()
}

/// Everything needed to build `zomg` commands for one server, without borrowing it: for
/// closures that run on blocking threads.
#[derive(Debug, Clone)]
pub struct Zomg {
    url: String,
    token: String,
    dir: std::path::PathBuf,
}

impl Zomg {
    /// Commands for `ts`, run in `dir`.
    pub fn new(ts: &TestServer, dir: &Path) -> Self {
        Zomg {
            url: ts.url(),
            token: ts.token(),
            dir: dir.to_path_buf(),
        }
    }

    /// A `zomg` command.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("zomg");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("ZOMG_URL", &self.url)
            .env("ZOMG_TOKEN", &self.token)
            .env("ZOMG_PROJECT", "default")
            .current_dir(&self.dir);
        cmd
    }
}

/// The same as a plain `std::process::Command` (for signals and terminals).
pub fn zomg_std(ts: &TestServer, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("zomg"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("ZOMG_URL", ts.url())
        .env("ZOMG_TOKEN", ts.token())
        .env("ZOMG_PROJECT", "default")
        .current_dir(dir);
    cmd
}

/// stdout of a successful run.
pub fn stdout(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().expect("run zomg");
    assert!(
        out.status.success(),
        "zomg failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}
