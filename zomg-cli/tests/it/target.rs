//! Target resolution as the user sees it: which server and profile a command uses.

use crate::{assert_error, sandbox, zomg};

#[test]
fn profile_without_url_from_env() {
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).env("ZOMG_PROFILE", "staging").arg("list"),
        "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set",
    );
}

#[test]
fn profile_without_url_from_flag() {
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).args(["list", "--profile", "staging"]),
        "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set",
    );
    assert_error(
        zomg(dir.path()).args(["--profile", "staging", "show", "web"]),
        "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set",
    );
}
#[test]
fn config_supplies_the_url_of_its_profile() {
    let dir = sandbox();
    zomg(dir.path())
        .env("ZOMG_SETUP_DIR", dir.path().join("setup"))
        .args(["config", "set", "env", "prod"])
        .assert()
        .success();
    zomg(dir.path())
        .env("ZOMG_SETUP_DIR", dir.path().join("setup"))
        .args(["config", "set", "api_url", "http://127.0.0.1:1"])
        .assert()
        .success();
    let out = zomg(dir.path())
        .env("ZOMG_SETUP_DIR", dir.path().join("setup"))
        .env("ZOMG_PROFILE", "prod")
        .arg("list")
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.starts_with("Error: cannot reach the zomg server at http://127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn unreachable_server_names_the_url() {
    let dir = sandbox();
    let out = zomg(dir.path())
        .args(["list", "--url", "http://127.0.0.1:1"])
        .assert()
        .code(1)
        .stdout("");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.starts_with("Error: cannot reach the zomg server at http://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("--url"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
