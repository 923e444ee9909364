//! `zomg config set|get|list|unset|path|profiles`, and how the setup config feeds the target.

use std::path::Path;

use crate::{assert_error, sandbox, zomg};

/// `zomg` with `ZOMG_SETUP_DIR=<dir>/setup`.
fn zomg_setup(dir: &Path) -> assert_cmd::Command {
    let mut cmd = zomg(dir);
    cmd.env("ZOMG_SETUP_DIR", dir.join("setup"));
    cmd
}

#[test]
fn path_follows_setup_dir() {
    let dir = sandbox();
    zomg_setup(dir.path())
        .args(["config", "path"])
        .assert()
        .success()
        .stdout(format!(
            "{}\n",
            dir.path().join("setup/config.yaml").display()
        ));
}

#[test]
fn path_finds_the_nearest_dot_zomg_then_the_user_config_dir() {
    let dir = sandbox();
    zomg(dir.path())
        .args(["config", "path"])
        .assert()
        .success()
        .stdout(format!(
            "{}\n",
            dir.path().join(".config/zomg/config.yaml").display()
        ));
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".zomg")).unwrap();
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    std::fs::write(repo.join(".zomg/config.yaml"), "zomg_domain: example.com\n").unwrap();
    zomg(&repo.join("sub"))
        .args(["config", "path"])
        .assert()
        .success()
        .stdout(format!("{}\n", repo.join(".zomg/config.yaml").display()));
}

#[test]
fn set_get_list_unset() {
    let dir = sandbox();
    let file = dir.path().join("setup/config.yaml");
    zomg_setup(dir.path())
        .args(["config", "set", "profile", "staging"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    zomg_setup(dir.path())
        .args(["config", "set", "zomg_domain", "example.com"])
        .assert()
        .success();
    zomg_setup(dir.path())
        .args(["config", "get", "profile"])
        .assert()
        .success()
        .stdout("staging\n");
    zomg_setup(dir.path())
        .args(["config", "list"])
        .assert()
        .success()
        .stdout("profile: staging\nzomg_domain: example.com\n");
    zomg_setup(dir.path())
        .args(["config", "unset", "profile"])
        .assert()
        .success()
        .stdout("");
    assert_error(
        zomg_setup(dir.path()).args(["config", "get", "profile"]),
        &format!("profile is not set in {}", file.display()),
    );
    // Unsetting a missing key is not an error.
    zomg_setup(dir.path())
        .args(["config", "unset", "profile"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "zomg_domain: example.com\n"
    );
}

#[test]
fn set_keeps_comments_and_unknown_keys() {
    let dir = sandbox();
    let file = dir.path().join("setup/config.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "# my setup\nprofile: prod  # default\ncustom: 1\n").unwrap();
    zomg_setup(dir.path())
        .args(["config", "set", "profile", "staging"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# my setup\nprofile: staging # default\ncustom: 1\n"
    );
}

#[test]
fn invalid_values_are_refused() {
    let dir = sandbox();
    let out = zomg_setup(dir.path())
        .args(["config", "set", "api_url", "not a url"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(stderr.contains("not a url"), "{stderr}");
    assert!(!dir.path().join("setup/config.yaml").exists());
}

#[test]
fn profiles_from_env_and_config() {
    let dir = sandbox();
    zomg_setup(dir.path())
        .args(["config", "set", "profile", "prod"])
        .assert()
        .success();
    zomg_setup(dir.path())
        .args(["config", "set", "zomg_domain", "example.com"])
        .assert()
        .success();
    zomg_setup(dir.path())
        .env("ZOMG_PROFILE_STAGING_URL", "https://staging.example.com")
        .args(["config", "profiles"])
        .assert()
        .success()
        .stdout(
            "\
CURRENT  NAME     URL                          SOURCE
*        prod     https://api.example.com      config
         staging  https://staging.example.com  env
",
        );
    zomg_setup(dir.path())
        .env("ZOMG_PROFILE_STAGING_URL", "https://staging.example.com")
        .args(["config", "profiles", "--profile", "staging"])
        .assert()
        .success()
        .stdout(
            "\
CURRENT  NAME     URL                          SOURCE
         prod     https://api.example.com      config
*        staging  https://staging.example.com  env
",
        );
}

#[test]
fn default_profile_from_config_without_url() {
    let dir = sandbox();
    let file = dir.path().join("setup/config.yaml");
    zomg_setup(dir.path())
        .args(["config", "set", "profile", "staging"])
        .assert()
        .success();
    assert_error(
        zomg_setup(dir.path()).arg("list"),
        &format!(
            "profile \"staging\" is selected but ZOMG_PROFILE_STAGING_URL is not set \
             (and {} sets neither api_url nor zomg_domain)",
            file.display()
        ),
    );
}
