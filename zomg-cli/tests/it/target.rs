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
