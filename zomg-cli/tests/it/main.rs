//! Tests that run the real `zomg` binary, as a user would.
//!
//! Every command runs with a cleared environment in a temporary directory that doubles as
//! `HOME`, so nothing depends on the developer's machine or configuration.

mod completions;
mod config;
mod exec;
mod fake;
mod files;
mod project;
mod pty;
mod real_server;
mod rules;
mod server;
mod target;

use std::path::Path;

use assert_cmd::Command;
use tempfile::TempDir;

/// A scratch directory used as working directory and `HOME`.
pub fn sandbox() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// `zomg` with an empty environment (except `PATH`), `HOME` and the working directory set to
/// `dir`, and no way to reach a real admin token.
pub fn zomg(dir: &Path) -> Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("zomg");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("ZOMG_DATA_DIR", dir.join("no-data-dir"))
        .current_dir(dir);
    cmd
}

/// Asserts a failure with exactly `Error: <message>` on stderr, nothing on stdout, exit 1.
pub fn assert_error(cmd: &mut Command, message: &str) {
    cmd.assert()
        .code(1)
        .stdout("")
        .stderr(format!("Error: {message}\n"));
}
