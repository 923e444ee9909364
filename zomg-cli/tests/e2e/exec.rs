//! `exec`, `ps`, `logs`, `console` and ephemeral boxes against a real server.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use zomg_server::testing::TestServer;

use crate::{Zomg, stdout, zomg, zomg_std};

async fn server_with_box(name: &str) -> (TestServer, tempfile::TempDir) {
    let ts = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = zomg(&ts, dir.path());
    let name = name.to_owned();
    let out = blocking(move || cmd.args(["create", &name]).output().unwrap()).await;
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (ts, dir)
}

/// Runs a blocking closure off the async runtime (the server lives on it).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_streams_and_flags() {
    let (ts, dir) = server_with_box("web").await;
    let z = Zomg::new(&ts, dir.path());
    let mk = move |_: &()| z.cmd();
    let d = ();
    blocking(move || {
        for (script, code) in [
            ("true", 0),
            ("false", 1),
            ("exit 42", 42),
            ("kill -9 $$", 137),
            ("kill -TERM $$", 143),
        ] {
            mk(&d)
                .args(["exec", "web", "--", "sh", "-c", script])
                .assert()
                .code(code);
        }
        // stdout and stderr stay on their streams, interleaved writes included.
        let out = mk(&d)
            .args([
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "for i in 1 2 3; do echo out$i; echo err$i >&2; done",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out1\nout2\nout3\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err1\nerr2\nerr3\n");
        // --sh: the arguments are one shell string; quoting survives.
        let o = stdout(mk(&d).args([
            "exec",
            "web",
            "--sh",
            "--",
            "echo \"a  b\" 'c$HOME' | wc -c",
        ]));
        assert_eq!(o.trim(), "12", "\"a  b\" and 'c$HOME' are kept verbatim");
        // --wd / --cwd and --env.
        let o = stdout(mk(&d).args([
            "exec",
            "web",
            "--wd",
            "/tmp",
            "--env",
            "X=1",
            "--env",
            "Y=two words",
            "--",
            "sh",
            "-c",
            "pwd; echo $X $Y",
        ]));
        assert_eq!(o, "/tmp\n1 two words\n");
        let o = stdout(mk(&d).args(["exec", "web", "--cwd", "/", "--", "pwd"]));
        assert_eq!(o, "/\n");
        // No command and stdin not a terminal: bash is run (busybox has none → 127).
        mk(&d)
            .args(["exec", "web"])
            .write_stdin("echo hi\n")
            .assert()
            .code(127);
        // --json in the foreground is refused.
        mk(&d)
            .args(["exec", "web", "--json", "--", "true"])
            .assert()
            .code(1)
            .stderr("Error: --json is not supported in foreground mode\n");
        // A command that does not exist.
        mk(&d)
            .args(["exec", "web", "--", "no-such-command"])
            .assert()
            .code(127);
        // --user fails until users exist.
        mk(&d)
            .args(["exec", "web", "--user", "alice", "--", "true"])
            .assert()
            .failure()
            .stderr(predicates::str::contains("user \"alice\" does not exist"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_round_trip_of_ten_mebibytes_is_byte_exact() {
    let (ts, dir) = server_with_box("web").await;
    let mut cmd = zomg_std(&ts, dir.path());
    blocking(move || {
        let data: Vec<u8> = (0..10u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let expected = hex(&Sha256::digest(&data));
        let mut child = cmd
            .args([
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "cat > /tmp/in && sha256sum /tmp/in && cat /tmp/in",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text_end = out.stdout.iter().position(|&b| b == b'\n').unwrap();
        let line = String::from_utf8_lossy(&out.stdout[..text_end]);
        assert!(line.starts_with(&expected), "sha256 in the box: {line}");
        assert_eq!(
            hex(&Sha256::digest(&out.stdout[text_end + 1..])),
            expected,
            "stdout round trip"
        );
    })
    .await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn background_process_logs_and_ps() {
    let (ts, dir) = server_with_box("web").await;
    let (mut bg, mut follow, mut logs, mut ps, mut logs_json) = (
        zomg(&ts, dir.path()),
        zomg(&ts, dir.path()),
        zomg(&ts, dir.path()),
        zomg(&ts, dir.path()),
        zomg(&ts, dir.path()),
    );
    let mut follow_json = zomg(&ts, dir.path());
    blocking(move || {
        let o = stdout(bg.args([
            "exec",
            "web",
            "--bg",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo line $i; sleep 0.3; done; echo done >&2",
        ]));
        let pid: u32 = o
            .trim()
            .strip_prefix("pid=")
            .expect("pid=<n>")
            .parse()
            .unwrap();
        let listing = stdout(ps.args(["ps", "web", "--", "-o", "pid,args"]));
        assert!(
            listing.contains("for i in 1 2 3 4"),
            "ps shows the process:\n{listing}"
        );
        // --follow streams until the process exits.
        let started = Instant::now();
        let followed = stdout(follow.args(["logs", "web", "--pid", &pid.to_string(), "--follow"]));
        assert_eq!(followed, "line 1\nline 2\nline 3\nline 4\ndone\n");
        assert!(started.elapsed() < Duration::from_secs(10));
        let last = stdout(logs.args(["logs", "web", "--pid", &pid.to_string(), "-l", "2"]));
        assert_eq!(last, "line 4\ndone\n");
        let json: serde_json::Value = serde_json::from_str(&stdout(logs_json.args([
            "logs",
            "web",
            "--pid",
            &pid.to_string(),
            "--json",
        ])))
        .unwrap();
        assert_eq!(json["pid"], pid);
        assert_eq!(json["running"], false);
        follow_json
            .args(["logs", "web", "--pid", &pid.to_string(), "-f", "-j"])
            .assert()
            .code(1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_exec_always_deletes_its_box() {
    let ts = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ok = zomg(&ts, dir.path());
    let mut json = zomg(&ts, dir.path());
    let mut slow = zomg_std(&ts, dir.path());
    blocking(move || {
        let out = ok
            .args([
                "exec",
                "-",
                "--",
                "sh",
                "-c",
                "echo inside $BOX_NAME; exit 3",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "exit code preserved");
        let err = String::from_utf8_lossy(&out.stderr);
        let name = err
            .lines()
            .find_map(|l| l.strip_prefix("ephemeral box: "))
            .expect("ephemeral box line on stderr")
            .to_owned();
        assert!(name.starts_with("ephemeral-"), "{name}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("inside {name}\n")
        );
        json.args(["exec", "-", "--json", "--", "true"])
            .assert()
            .code(1);

        // Ctrl-C while the command runs: the box is deleted anyway.
        let child = slow
            .args(["exec", "-", "--", "sleep", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::INT,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(130),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
    let boxes = ts
        .client()
        .list_all_boxes(zomg_sdk::ProjectScope::All, &Default::default())
        .await
        .unwrap();
    assert!(boxes.is_empty(), "ephemeral boxes left: {boxes:?}");
    assert_eq!(ts.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_terminal_resizes_and_restores_it() {
    assert!(
        std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok(),
        "this test needs tmux (apt-get install tmux)"
    );
    let (ts, dir) = server_with_box("web").await;
    let zomg_bin = assert_cmd::cargo::cargo_bin!("zomg").to_path_buf();
    let (url, token) = (ts.url(), ts.token());
    let d = dir.path().to_path_buf();
    blocking(move || {
        let session = format!("zomg-e2e-{}", std::process::id());
        let socket = d.join("tmux.sock");
        let tmux = |args: &[&str]| {
            let out = std::process::Command::new("tmux")
                .arg("-S")
                .arg(&socket)
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let pane = || tmux(&["capture-pane", "-p", "-t", &session]);
        let wait_for = |needle: &str| {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let text = pane();
                if text.contains(needle) {
                    return text;
                }
                assert!(Instant::now() < deadline, "timed out waiting for {needle:?}; pane:\n{text}");
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let env = format!(
            "env -i PATH=/usr/bin:/bin HOME={} ZOMG_URL={url} ZOMG_TOKEN={token} ZOMG_PROJECT=default",
            d.display()
        );
        let cwd = d.display().to_string();
        tmux(&["new-session", "-d", "-s", &session, "-c", &cwd, "-x", "100", "-y", "30", "sh"]);
        let send = |keys: &str| {
            tmux(&["send-keys", "-t", &session, "-l", keys]);
            tmux(&["send-keys", "-t", &session, "Enter"]);
        };
        send("stty -g > before.txt; clear");
        send(&format!("{env} {} console web; stty -g > after.txt; echo console-exited-$((6*7))", zomg_bin.display()));
        send("echo ready-$((40+2)); stty size");
        wait_for("ready-42");
        wait_for("30 100");
        tmux(&["resize-window", "-t", &session, "-x", "120", "-y", "40"]);
        std::thread::sleep(Duration::from_millis(300));
        send("stty size");
        wait_for("40 120");
        send("exit");
        wait_for("console-exited-42");
        tmux(&["kill-session", "-t", &session]);
        let before = std::fs::read_to_string(d.join("before.txt")).unwrap();
        let after = std::fs::read_to_string(d.join("after.txt")).unwrap();
        assert_eq!(before, after, "terminal settings restored");
    })
    .await;
}
