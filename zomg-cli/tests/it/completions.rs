//! `zomg completions`.

use crate::{sandbox, zomg};

#[test]
fn bash_completion_script() {
    let dir = sandbox();
    let out = zomg(dir.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stderr("");
    let script = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(script.contains("_zomg()"), "{script}");
    assert!(script.contains("complete -F _zomg"), "{script}");
    for word in ["create", "delete", "--wait-timeout", "--profile"] {
        assert!(script.contains(word), "{word} missing");
    }
}

#[test]
fn zsh_and_fish_scripts() {
    let dir = sandbox();
    for (shell, needle) in [("zsh", "#compdef zomg"), ("fish", "complete -c zomg")] {
        let out = zomg(dir.path())
            .args(["completions", shell])
            .assert()
            .success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(script.contains(needle), "{shell}: {script}");
    }
}

#[test]
fn closed_stdout_is_a_clean_exit() {
    let dir = sandbox();
    // Like `zomg completions bash | head -c0`, but certain: the read end is closed before
    // zomg starts, so its first write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin!("zomg"))
        .args(["completions", "bash"])
        .env_clear()
        .env("HOME", dir.path())
        .stdout(writer)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
