//! `zomg project current`: ZOMG_PROJECT, then the git root's name, then `default`.

use crate::{sandbox, zomg};

#[test]
fn from_env() {
    let dir = sandbox();
    zomg(dir.path())
        .env("ZOMG_PROJECT", "alpha")
        .args(["project", "current"])
        .assert()
        .success()
        .stdout("alpha\n");
}

#[test]
fn env_wins_over_git_root() {
    let dir = sandbox();
    let repo = dir.path().join("myrepo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    zomg(&repo)
        .env("ZOMG_PROJECT", "alpha")
        .args(["project", "current"])
        .assert()
        .success()
        .stdout("alpha\n");
}

#[test]
fn from_git_root() {
    let dir = sandbox();
    let repo = dir.path().join("myrepo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("src/deep")).unwrap();
    zomg(&repo.join("src/deep"))
        .args(["project", "current"])
        .assert()
        .success()
        .stdout("myrepo\n");
}

#[test]
fn git_root_with_invalid_name_falls_back_to_default() {
    let dir = sandbox();
    let repo = dir.path().join("My_Repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    zomg(&repo)
        .args(["project", "current"])
        .assert()
        .success()
        .stdout("default\n");
}

#[test]
fn default_without_env_or_git() {
    let dir = sandbox();
    zomg(dir.path())
        .args(["project", "current"])
        .assert()
        .success()
        .stdout("default\n");
}

#[test]
fn setup_config_project_outranks_git_root() {
    let dir = sandbox();
    let repo = dir.path().join("myrepo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join(".zomg")).unwrap();
    std::fs::write(repo.join(".zomg/config.yaml"), "project: beta\n").unwrap();
    zomg(&repo)
        .args(["project", "current"])
        .assert()
        .success()
        .stdout("beta\n");
}

#[test]
fn invalid_env_project_is_an_error() {
    let dir = sandbox();
    let out = zomg(dir.path())
        .env("ZOMG_PROJECT", "Bad_Name")
        .args(["project", "current"])
        .assert()
        .code(1)
        .stdout("");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.starts_with("Error: ZOMG_PROJECT: invalid project name \"Bad_Name\""),
        "{stderr}"
    );
}
