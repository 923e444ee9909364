//! `exec`, `ps`, `logs` and ephemeral boxes through the real binary, against the fake
//! server of [`crate::fake`], with pipes (not a terminal) on stdin and stdout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use crate::fake::{Fake, TOKEN};
use crate::{assert_error, sandbox, zomg};

/// `zomg <args> --url <fake> --token <TOKEN>` in the fake's sandbox.
pub fn run(fake: &Fake, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = zomg(fake.dir());
    cmd.args(["--url", fake.url(), "--token", TOKEN]).args(args);
    cmd
}

#[test]
fn exit_codes_pass_through() {
    let fake = Fake::start();
    for code in ["0", "1", "42"] {
        run(&fake, &["exec", "web", "--", "exit", code])
            .assert()
            .code(code.parse::<i32>().unwrap())
            .stdout("")
            .stderr("");
    }
    run(&fake, &["exec", "web", "--", "kill"])
        .assert()
        .code(137);
}

#[test]
fn stdin_is_piped_to_the_command_byte_exact() {
    let fake = Fake::start();
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = run(&fake, &["exec", "web", "--", "cat"])
        .write_stdin(input.clone())
        .assert()
        .success()
        .stderr("");
    assert!(out.get_output().stdout == input, "echoed stdin differs");
    fake.wait_for("stdin EOF", |e| e == "eof");
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let fake = Fake::start();
    run(&fake, &["exec", "web", "--", "split"])
        .assert()
        .success()
        .stdout("to-out\n")
        .stderr("to-err\n");
}

#[test]
fn shell_flags_send_one_string() {
    let fake = Fake::start();
    let out = run(
        &fake,
        &["exec", "web", "--sh", "--", "echo \"a  b\"", "|", "wc -c"],
    )
    .assert()
    .success();
    let start: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        start["command"],
        serde_json::json!(["echo \"a  b\" | wc -c"])
    );
    assert_eq!(start["shell"], "sh");
    let out = run(&fake, &["exec", "web", "--bash", "--", "ls $HOME"])
        .assert()
        .success();
    let start: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(start["command"], serde_json::json!(["ls $HOME"]));
    assert_eq!(start["shell"], "bash");
}

#[test]
fn no_command_runs_bash_and_options_are_sent() {
    let fake = Fake::start();
    let out = run(
        &fake,
        &[
            "exec", "web", "-e", "A=1", "--env", "B=two", "--cwd", "/srv",
        ],
    )
    .write_stdin("")
    .assert()
    .success();
    let start: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        start,
        serde_json::json!({
            "command": ["bash"],
            "env": {"A": "1", "B": "two"},
            "cwd": "/srv",
            "tty": false
        })
    );
}

#[test]
fn server_errors_pass_through() {
    let fake = Fake::start();
    assert_error(
        &mut run(&fake, &["exec", "stopped", "--", "true"]),
        "box \"stopped\" is not running",
    );
    assert_error(
        &mut run(&fake, &["exec", "missing", "--", "true"]),
        "box \"missing\" not found",
    );
    run(&fake, &["exec", "web", "--user", "alice", "--", "id"])
        .assert()
        .code(127)
        .stdout("")
        .stderr("Error: user \"alice\" does not exist in this project\n");
    let start = &fake.starts()[0];
    assert_eq!(start.user.as_deref(), Some("alice"));
}

#[test]
fn a_session_that_breaks_off_is_an_error() {
    let fake = Fake::start();
    let out = run(&fake, &["exec", "web", "--", "drop"])
        .assert()
        .code(1)
        .stdout("partial\n");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.starts_with("Error: exec session at ws://")
            && stderr.contains("ended without an exit status"),
        "{stderr}"
    );
}

#[test]
fn background_exec_prints_the_pid() {
    let fake = Fake::start();
    run(&fake, &["exec", "web", "--bg", "--", "sleep", "100"])
        .assert()
        .success()
        .stdout("pid=4242\n")
        .stderr("");
    let posted = fake.wait_for("the POST", |e| e.starts_with("post "));
    let body: Value =
        serde_json::from_str(posted.strip_prefix("post default:web ").unwrap()).unwrap();
    assert_eq!(body["command"], serde_json::json!(["sleep", "100"]));
    assert_eq!(body["no_hup"], true);
    let out = run(&fake, &["exec", "web", "--bg", "-j", "--", "sleep", "1"])
        .assert()
        .success();
    let result: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(result["pid"], 4242);
}

/// `ephemeral box: ephemeral-<pid>-<millis>` from stderr, as the name.
fn ephemeral_name(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let first = stderr.lines().next().unwrap_or_default();
    let name = first
        .strip_prefix("ephemeral box: ")
        .unwrap_or_else(|| panic!("no ephemeral line in {stderr:?}"));
    let parts: Vec<&str> = name.split('-').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert_eq!(parts[0], "ephemeral");
    assert!(parts[1].parse::<u32>().is_ok() && parts[2].parse::<u64>().is_ok());
    name.to_owned()
}

#[test]
fn ephemeral_exec_keeps_the_exit_code_and_always_force_deletes() {
    let fake = Fake::start();
    let out = run(&fake, &["exec", "-", "--", "exit", "3"])
        .assert()
        .code(3)
        .stdout("");
    let name = ephemeral_name(&out.get_output().stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        format!("ephemeral box: {name}\n")
    );
    assert_eq!(
        fake.events()
            .iter()
            .filter(|e| e.starts_with("create ") || e.starts_with("delete "))
            .collect::<Vec<_>>(),
        [
            &format!("create default:{name} base=null"),
            &format!("delete default:{name} force=true"),
        ]
    );
}

#[test]
fn ephemeral_exec_in_a_named_project_is_deleted_after_a_broken_session() {
    let fake = Fake::start();
    let out = run(&fake, &["exec", "ci:-", "--", "drop"]).assert().code(1);
    let name = ephemeral_name(&out.get_output().stderr);
    let events = fake.events();
    assert!(
        events.contains(&format!("create ci:{name} base=null")),
        "{events:#?}"
    );
    assert!(
        events.contains(&format!("delete ci:{name} force=true")),
        "{events:#?}"
    );
}

#[test]
fn ctrl_c_during_ephemeral_exec_deletes_the_box_and_exits_130() {
    let fake = Fake::start();
    let dir = sandbox();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zomg"))
        .args([
            "--url",
            fake.url(),
            "--token",
            TOKEN,
            "exec",
            "-",
            "--",
            "sleep",
        ])
        .env_clear()
        .env("HOME", dir.path())
        .env("ZOMG_DATA_DIR", dir.path().join("none"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    fake.wait_for("the session to start", |e| e.starts_with("start "));
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "zomg did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let name = ephemeral_name(&out.stderr);
    assert_eq!(
        name,
        format!("ephemeral-{pid}-{}", name.rsplit('-').next().unwrap())
    );
    fake.wait_for("the hang-up", |e| e == "disconnected");
    fake.wait_for("the forced delete", |e| {
        e == format!("delete default:{name} force=true")
    });
}

#[test]
fn ps_runs_ps_with_the_extra_arguments() {
    let fake = Fake::start();
    run(&fake, &["ps", "web", "--", "aux"])
        .assert()
        .success()
        .stdout("PID CMD\n1 tini\nargs: aux\n");
    run(&fake, &["ps", "web"])
        .assert()
        .success()
        .stdout("PID CMD\n1 tini\nargs: \n");
    assert_error(
        &mut run(&fake, &["ps", "-", "--", "aux"]),
        "invalid box ref \"-\": an ephemeral box is only allowed with exec, console and cp/get/put",
    );
}

#[test]
fn logs_print_once_or_follow() {
    let fake = Fake::start();
    run(&fake, &["logs", "web", "--pid", "7"])
        .assert()
        .success()
        .stdout("line1\nline2\n");
    run(&fake, &["tail", "web", "--pid", "7", "-l", "1"])
        .assert()
        .success()
        .stdout("line2\n");
    let out = run(&fake, &["logs", "web", "--pid", "7", "-j"])
        .assert()
        .success();
    let log: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        log,
        serde_json::json!({"pid": 7, "output": "line1\nline2\n", "running": true})
    );
    run(&fake, &["logs", "web", "--pid", "7", "--follow"])
        .assert()
        .success()
        .stdout("tick 0\ntick 1\ntick 2\n");
    assert_error(
        &mut run(&fake, &["logs", "web", "--pid", "99"]),
        "no background process 99",
    );
    assert_error(
        &mut run(&fake, &["logs", "web", "--pid", "99", "-f"]),
        "no background process 99",
    );
}

#[test]
fn ephemeral_console_without_a_terminal() {
    let fake = Fake::start();
    let out = run(&fake, &["console", "-"])
        .write_stdin("echo hi\rexit 5\r")
        .assert()
        .code(5);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.starts_with("[tty none]\r\nfake$ "), "{stdout:?}");
    assert!(stdout.contains("\r\nhi\r\n"), "{stdout:?}");
    let name = ephemeral_name(&out.get_output().stderr);
    fake.wait_for("the forced delete", |e| {
        e == format!("delete default:{name} force=true")
    });
}
