//! Flag rules that need no server: their errors are exact and the exit code is 1.

use crate::{assert_error, sandbox, zomg};

#[test]
fn create_base_with_fork() {
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).args(["create", "web", "--base", "box-base", "--fork", "src"]),
        "--base cannot be used with --fork",
    );
}

#[test]
fn exec_json_in_foreground() {
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).args(["exec", "web", "--json", "--", "ls"]),
        "--json is not supported in foreground mode",
    );
    assert_error(
        zomg(dir.path()).args(["exec", "web", "-j"]),
        "--json is not supported in foreground mode",
    );
}

#[test]
fn exec_json_in_ephemeral_background() {
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).args(["exec", "-", "--bg", "-j", "--", "sleep", "1"]),
        "--json is not supported for ephemeral exec",
    );
    assert_error(
        zomg(dir.path()).args(["exec", "proj:-", "--bg", "-j", "--", "sleep", "1"]),
        "--json is not supported for ephemeral exec",
    );
}

#[test]
fn json_refused_where_unsupported() {
    let dir = sandbox();
    let cases: &[(&[&str], &str)] = &[
        (&["logs", "web", "--pid", "7", "-f", "-j"], "logs --follow"),
        (
            &["tail", "web", "--pid", "7", "--follow", "--json"],
            "logs --follow",
        ),
        (&["console", "web", "-j"], "console"),
        (&["ps", "web", "-j", "--", "aux"], "ps"),
        (&["ssh", "web", "-j"], "ssh"),
        (&["cp", "web:/etc/hosts", "hosts", "-j"], "cp/get/put"),
        (&["get", "web:/etc/hosts", "hosts", "-j"], "cp/get/put"),
        (&["put", "hosts", "web:/tmp/hosts", "-j"], "cp/get/put"),
        (&["inject", "web", "-j"], "inject"),
        (&["user", "delete", "alice", "-j"], "user delete"),
    ];
    for (args, what) in cases {
        assert_error(
            zomg(dir.path()).args(*args),
            &format!("--json is not supported for {what}"),
        );
    }
}

#[test]
fn cp_needs_exactly_one_box_side() {
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).args(["cp", "a:/x", "b:/y"]),
        "both \"a:/x\" and \"b:/y\" are box paths; exactly one side must be a box",
    );
    assert_error(
        zomg(dir.path()).args(["cp", "x", "y"]),
        "neither \"x\" nor \"y\" is a box path; write one side as box:/path",
    );
}

#[test]
fn cp_directory_without_recursive() {
    let dir = sandbox();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    assert_error(
        zomg(dir.path()).args(["put", "src", "web:/tmp/src"]),
        "only files are supported (directories require -r, not yet supported)",
    );
}

#[test]
fn commands_without_sdk_support_say_so() {
    let dir = sandbox();
    let cases: &[(&[&str], &str)] = &[
        (&["ssh", "web"], "ssh"),
        (&["publish", "web", "app"], "publish"),
        (
            &["unpublish", "web", "--host", "app.example.com"],
            "unpublish",
        ),
        (&["port", "list", "web", "-j"], "port list"),
        (&["port", "wait", "web", "8080"], "port wait"),
        (&["user", "list", "-j"], "user list"),
        (&["user", "delete", "alice"], "user delete"),
    ];
    for (args, what) in cases {
        assert_error(
            zomg(dir.path()).args(*args),
            &format!("{what} is not available yet: this version of zomg cannot do it"),
        );
    }
}

#[test]
fn bad_flag_values_are_usage_errors_naming_the_input() {
    let dir = sandbox();
    let cases: &[(&[&str], &str)] = &[
        (&["create", "web", "--cpu", "lots"], "invalid cpu \"lots\""),
        (
            &["create", "web", "--memory", "2X"],
            "invalid memory \"2X\"",
        ),
        (
            &["create", "web", "-t", "env"],
            "invalid tag \"env\": expected KEY=VALUE",
        ),
        (
            &["create", "web", "-d", "cache=data"],
            "the mount path must be absolute",
        ),
        (
            &["create", "web", "-e", "1X=y"],
            "invalid environment variable \"1X=y\"",
        ),
        (&["create", "Web"], "invalid box name \"Web\""),
        (&["show", "a:b:c"], "invalid box ref \"a:b:c\""),
    ];
    for (args, needle) in cases {
        let out = zomg(dir.path()).args(*args).assert().code(2).stdout("");
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.starts_with("Error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn publish_host_conflicts_with_subdomain() {
    let dir = sandbox();
    zomg(dir.path())
        .args(["publish", "web", "app", "--host", "x.example.com"])
        .assert()
        .code(2);
    zomg(dir.path()).args(["publish", "web"]).assert().code(2);
}

#[test]
fn help_lists_every_command() {
    let dir = sandbox();
    let out = zomg(dir.path()).arg("--help").assert().success();
    let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for cmd in [
        "create",
        "list",
        "show",
        "update",
        "delete",
        "stop",
        "resume",
        "publish",
        "unpublish",
        "exec",
        "ps",
        "logs",
        "console",
        "ssh",
        "cp",
        "inject",
        "config",
        "project",
        "port",
        "data",
        "base",
        "user",
        "completions",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from help:\n{help}"
        );
    }
}
