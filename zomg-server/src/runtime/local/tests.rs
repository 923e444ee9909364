//! Tests of the local runtime against real runc, as root.
//!
//! Each test builds a tiny root filesystem from the host's static busybox, runs its own
//! runtime instance (own state dir, own cgroup parent) and removes its box even when it
//! fails (`TestBox`'s Drop). Missing prerequisites fail the test with their name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{LocalRuntime, LocalRuntimeConfig};
use crate::runtime::{
    BoxSpec, ExecProcess, ExecSpec, ExitStatus, Resources, RunState, Runtime, RuntimeError,
};
use crate::testing::{busybox_rootfs, require_runtime_prerequisites};

/// A runtime instance with one box spec, removed on drop.
struct TestBox {
    rt: LocalRuntime,
    config: LocalRuntimeConfig,
    spec: BoxSpec,
    dir: tempfile::TempDir,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestBox {
    fn new(resources: Resources) -> TestBox {
        require_runtime_prerequisites();
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let instance = format!("test{}-{n}", std::process::id());
        let config = LocalRuntimeConfig::new(dir.path().join("state"), instance);
        let rt = LocalRuntime::new(config.clone()).expect("LocalRuntime::new");
        let spec = BoxSpec {
            id: format!("box{n}"),
            hostname: "web.proj".into(),
            rootfs,
            env: BTreeMap::from([("FOO".into(), "bar".into())]),
            boxes_env_file: "export ZOMG_PROJECT=proj\nexport BOX_NAME=web\n".into(),
            resources,
            mounts: Vec::new(),
        };
        TestBox {
            rt,
            config,
            spec,
            dir,
        }
    }

    fn default() -> TestBox {
        TestBox::new(Resources {
            millicpus: 500,
            memory_mb: 256,
            pids: 300,
        })
    }

    fn id(&self) -> &str {
        &self.spec.id
    }

    fn cgroup(&self, controller: &str, file: &str) -> String {
        let path = format!(
            "/sys/fs/cgroup/{controller}{}/{}/{file}",
            self.rt.cgroup_parent(),
            self.id()
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
            .trim()
            .to_string()
    }

    fn box_cgroup_dirs(&self) -> Vec<PathBuf> {
        super::cgroup::existing_dirs(&format!("{}/{}", self.rt.cgroup_parent(), self.id()))
    }

    async fn start(&self) {
        self.rt.start(&self.spec).await.expect("start box");
    }

    async fn run(&self, argv: &[&str]) -> Output {
        run(&self.rt, self.id(), spec(argv)).await
    }
}

impl Drop for TestBox {
    fn drop(&mut self) {
        let rt = self.rt.clone();
        let id = self.spec.id.clone();
        // A fresh runtime on a fresh thread: Drop may run inside (or outside) any runtime.
        let result = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime")
                .block_on(async move {
                    let r = rt.remove(&id).await;
                    rt.remove_instance_cgroups().await;
                    r
                })
        })
        .join();
        if !std::thread::panicking() {
            result
                .expect("cleanup thread")
                .expect("remove box in cleanup");
        }
    }
}

/// Which way a test runs a command: through the runtime (the agent when it can), or with
/// runc exec directly (the runtime's fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Runtime,
    Runc,
}

impl TestBox {
    async fn exec_via(&self, via: Via, spec: ExecSpec) -> Result<ExecProcess, RuntimeError> {
        match via {
            Via::Runtime => self.rt.exec(self.id(), spec).await,
            Via::Runc => {
                let files = self.rt.exec_files(self.id());
                let runc = &self.rt.inner.runc;
                match spec.tty {
                    Some(size) => super::exec::tty(runc, files, self.id(), spec, size).await,
                    None => super::exec::piped(runc, files, self.id(), spec).await,
                }
            }
        }
    }

    async fn run_via(&self, via: Via, spec: ExecSpec) -> Output {
        let process = self.exec_via(via, spec).await.expect("exec");
        collect(process).await.expect("exec wait")
    }
}

fn spec(argv: &[&str]) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion with empty stdin.
async fn run(rt: &LocalRuntime, id: &str, spec: ExecSpec) -> Output {
    let process = rt.exec(id, spec).await.expect("exec");
    collect(process).await.expect("exec wait")
}

async fn collect(mut process: ExecProcess) -> Result<Output, RuntimeError> {
    drop(process.stdin.take());
    let mut stdout = process.stdout.take().expect("stdout");
    let mut stderr = process.stderr.take();
    let (out, err, status) = tokio::join!(
        async {
            let mut s = String::new();
            stdout.read_to_string(&mut s).await.expect("read stdout");
            s
        },
        async {
            let mut s = String::new();
            if let Some(e) = stderr.as_mut() {
                e.read_to_string(&mut s).await.expect("read stderr");
            }
            s
        },
        process.wait
    );
    Ok(Output {
        status: status?,
        stdout: out,
        stderr: err,
    })
}

async fn read_until(reader: &mut (impl AsyncReadExt + Unpin), seen: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains(needle) {
            let n = reader.read(&mut buf).await.expect("read terminal");
            assert!(n > 0, "terminal closed before {needle:?}; saw {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "timed out waiting for {needle:?}; saw {seen:?}"
    );
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_has_tini_identity_env_limits_and_loopback() {
    let b = TestBox::default();
    b.start().await;
    assert!(matches!(
        b.rt.state(b.id()).await.expect("state"),
        RunState::Running { .. }
    ));
    assert_eq!(b.rt.list().await.expect("list"), vec![b.id().to_string()]);

    assert_eq!(b.run(&["hostname"]).await.stdout, "web.proj\n");
    assert_eq!(
        b.run(&["cat", "/etc/boxes-env"]).await.stdout,
        "export ZOMG_PROJECT=proj\nexport BOX_NAME=web\n"
    );
    assert!(
        b.run(&["cat", "/etc/hosts"])
            .await
            .stdout
            .contains("127.0.1.1\tweb.proj web\n")
    );
    assert_eq!(
        b.run(&["cat", "/proc/1/cmdline"]).await.stdout,
        "/run/zomg/tini\0-s\0-g\0--\0/run/zomg/zomg-agent\0"
    );
    assert_eq!(
        b.run(&["sh", "-c", "echo $FOO $HOME $TERM; pwd; id -u"])
            .await
            .stdout,
        "bar /root xterm-256color\n/root\n0\n"
    );
    // Nothing was written into the user's root for tini or the agent.
    assert!(!b.spec.rootfs.join("run/zomg").exists());

    assert_eq!(b.cgroup("memory", "memory.limit_in_bytes"), "268435456");
    assert_eq!(
        b.cgroup("memory", "memory.memsw.limit_in_bytes"),
        "268435456"
    );
    assert_eq!(b.cgroup("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(b.cgroup("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(b.cgroup("pids", "pids.max"), "300");

    // lo is up (flags IFF_UP|IFF_LOOPBACK|IFF_RUNNING) and ping works (CAP_NET_RAW).
    let flags = b.run(&["cat", "/sys/class/net/lo/flags"]).await.stdout;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is down: flags {flags:#x}");
    let ping = b.run(&["ping", "-c", "1", "-W", "2", "127.0.0.1"]).await;
    assert_eq!(ping.status, ExitStatus::Code(0), "ping failed: {ping:?}");
    let nofile = b.run(&["sh", "-c", "ulimit -n"]).await.stdout;
    assert_eq!(nofile.trim(), super::bundle::nofile_limit().to_string());
    // No CAP_SYS_ADMIN: mounting fails.
    let mount = b.run(&["mount", "-t", "tmpfs", "x", "/mnt"]).await;
    assert_ne!(
        mount.status,
        ExitStatus::Code(0),
        "mount succeeded: {mount:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_box_process_runs_under_the_seccomp_filter() {
    let b = TestBox::default();
    b.start().await;
    let status = "grep -E '^Seccomp(_filters)?:' /proc/self/status | tr -s '\t' ' '";
    let filtered = "Seccomp: 2\nSeccomp_filters: 1\n";
    // pid 1, and commands started by the agent and by runc exec.
    let init = b
        .run(&["grep", "-E", "^Seccomp:", "/proc/1/status"])
        .await
        .stdout;
    assert_eq!(
        init.split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"]
    );
    for via in [Via::Runtime, Via::Runc] {
        let out = b.run_via(via, spec(&["sh", "-c", status])).await;
        assert_eq!(out.stdout, filtered, "{via:?}: {out:?}");
        // A user namespace is refused; plain forks and unshare without it still work.
        let userns = b.run_via(via, spec(&["unshare", "-U", "true"])).await;
        assert_eq!(userns.status, ExitStatus::Code(1), "{via:?}: {userns:?}");
        assert!(
            userns.stderr.contains("Operation not permitted"),
            "{via:?}: {userns:?}"
        );
        let fork = b
            .run_via(via, spec(&["sh", "-c", "(exit 3) & wait $!; echo $?"]))
            .await;
        assert_eq!(fork.stdout, "3\n", "{via:?}: {fork:?}");
    }
    // Background processes (runc exec -d) too.
    let detached =
        b.rt.exec_detached(b.id(), spec(&["sh", "-c", status]))
            .await
            .expect("exec_detached");
    let log = b.rt.log_path(b.id(), detached.pid);
    wait_for("the background command's output", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t == filtered)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_codes_signals_and_keeps_streams_apart() {
    let b = TestBox::default();
    b.start().await;
    // Through the agent, and through runc exec (the fallback): both report alike.
    for via in [Via::Runtime, Via::Runc] {
        let run = |argv: &[&str]| b.run_via(via, spec(argv));
        assert_eq!(run(&["true"]).await.status, ExitStatus::Code(0), "{via:?}");
        assert_eq!(run(&["false"]).await.status, ExitStatus::Code(1), "{via:?}");
        assert_eq!(
            run(&["sh", "-c", "exit 42"]).await.status,
            ExitStatus::Code(42),
            "{via:?}"
        );
        assert_eq!(
            run(&["sh", "-c", "kill -9 $$"]).await.status,
            ExitStatus::Signal(9),
            "{via:?}"
        );
        assert_eq!(
            run(&["sh", "-c", "kill -TERM $$"]).await.status,
            ExitStatus::Signal(15),
            "{via:?}"
        );

        let missing = run(&["no-such-command"]).await;
        assert_eq!(missing.status, ExitStatus::Code(127), "{via:?}");
        assert!(
            missing.stderr.contains("executable file not found"),
            "{via:?}: {missing:?}"
        );
        let missing = run(&["/no/such/file"]).await;
        assert_eq!(missing.status, ExitStatus::Code(127), "{via:?}");
        assert!(
            missing.stderr.contains("no such file or directory"),
            "{via:?}: {missing:?}"
        );
        assert_eq!(
            run(&["/etc"]).await.status,
            ExitStatus::Code(126),
            "{via:?}"
        );
        let bad_cwd = ExecSpec {
            cwd: Some("/nope".into()),
            ..spec(&["true"])
        };
        let err = collect(b.exec_via(via, bad_cwd).await.expect("exec"))
            .await
            .expect_err("missing cwd");
        assert_eq!(
            err.to_string(),
            "cannot enter working directory /nope: no such file or directory",
            "{via:?}"
        );

        let out = run(&["sh", "-c", "echo out; echo err >&2; echo out2"]).await;
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\nout2\n", "err\n"),
            "{via:?}"
        );

        let custom = ExecSpec {
            env: BTreeMap::from([("X".into(), "1".into())]),
            cwd: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            ..spec(&["sh", "-c", "echo $X $(pwd) $(id -u):$(id -g)"])
        };
        assert_eq!(
            b.run_via(via, custom).await.stdout,
            "1 /tmp 1000:1000\n",
            "{via:?}"
        );

        // A few MiB through `cat`, byte for byte.
        let data: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut process = b.exec_via(via, spec(&["cat"])).await.expect("exec cat");
        let mut stdin = process.stdin.take().expect("stdin");
        let mut stdout = process.stdout.take().expect("stdout");
        let input = data.clone();
        let writer = tokio::spawn(async move {
            stdin.write_all(&input).await.expect("write stdin");
            stdin.shutdown().await.expect("close stdin");
        });
        let mut echoed = Vec::new();
        stdout.read_to_end(&mut echoed).await.expect("read stdout");
        writer.await.expect("writer");
        assert_eq!(process.wait.await.expect("wait"), ExitStatus::Code(0));
        assert!(
            echoed == data,
            "{via:?}: stdin round trip differs ({} of {} bytes)",
            echoed.len(),
            data.len()
        );
    }

    // Exec into a missing box.
    assert!(matches!(
        b.rt.exec("no-such-box", spec(&["true"])).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_exec_follows_resizes() {
    let b = TestBox::default();
    b.start().await;
    for via in [Via::Runtime, Via::Runc] {
        let tty = ExecSpec {
            tty: Some((80, 24)),
            ..spec(&["sh"])
        };
        let mut process = b.exec_via(via, tty).await.expect("exec tty");
        assert!(process.stderr.is_none());
        let mut stdin = process.stdin.take().expect("stdin");
        let mut stdout = process.stdout.take().expect("stdout");
        let resizer = process.resizer.take().expect("resizer");
        let mut seen = String::new();
        stdin.write_all(b"tty; stty size\n").await.expect("write");
        read_until(&mut stdout, &mut seen, "24 80").await;
        assert!(
            seen.contains("/dev/pts/"),
            "{via:?}: no terminal in box: {seen:?}"
        );
        resizer.resize(132, 50).expect("resize");
        // runc relays SIGWINCH asynchronously: ask until the new size shows.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            stdin.write_all(b"stty size\n").await.expect("write");
            let before = seen.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(50), stdout.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            if seen[before..].contains("50 132") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{via:?}: resize never seen: {seen:?}"
            );
        }
        // ^D (shutdown of the terminal's input) ends the shell like a user's ^D.
        stdin.write_all(b"echo before-eof\n").await.expect("write");
        // The output line, not the echo of the typed one: it follows a line break.
        read_until(&mut stdout, &mut seen, "\nbefore-eof\r").await;
        stdin.shutdown().await.expect("send ^D");
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.expect("read to EOF");
        assert_eq!(
            process.wait.await.expect("wait"),
            ExitStatus::Code(0),
            "{via:?}"
        );

        // Output of a non-interactive command on a tty arrives complete, then EOF.
        let once = ExecSpec {
            tty: Some((80, 24)),
            ..spec(&["sh", "-c", "echo hello; exit 3"])
        };
        let out = collect(b.exec_via(via, once).await.expect("exec"))
            .await
            .expect("wait");
        assert_eq!(out.status, ExitStatus::Code(3), "{via:?}");
        // Under runc exec, line ends sometimes come out translated twice (`\r\r\n`): runc
        // clears ONLCR on the terminal it creates only after the command has started
        // (`recvtty` in runc's tty.go). The agent's terminal translates once, like ssh's.
        let complete = match via {
            Via::Runtime => out.stdout.contains("hello\r\n"),
            Via::Runc => out.stdout.contains("hello\r\n") || out.stdout.contains("hello\r\r\n"),
        };
        assert!(complete, "{via:?}: {out:?}");

        let missing = ExecSpec {
            tty: Some((80, 24)),
            ..spec(&["no-such-command"])
        };
        let out = collect(b.exec_via(via, missing).await.expect("exec"))
            .await
            .expect("wait");
        assert_eq!(out.status, ExitStatus::Code(127), "{via:?}");
        assert!(
            out.stdout.contains("executable file not found"),
            "{via:?}: {out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_exec_logs_and_outlives_its_caller() {
    let b = TestBox::default();
    b.start().await;
    let looped = spec(&[
        "sh",
        "-c",
        "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done",
    ]);
    let detached =
        b.rt.exec_detached(b.id(), looped)
            .await
            .expect("exec_detached");
    let log = b.rt.log_path(b.id(), detached.pid);
    wait_for("log to fill", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("line 3\n"))
    })
    .await;
    // The pid is the box's view of the process.
    let cmdline = b
        .run(&["cat", &format!("/proc/{}/cmdline", detached.pid)])
        .await
        .stdout;
    assert!(
        cmdline.contains("while true"),
        "pid {} is {cmdline:?}",
        detached.pid
    );

    // A new runtime instance over the same state (a server restart) sees the process run.
    let again = LocalRuntime::new(b.config.clone()).expect("second runtime");
    assert!(matches!(
        again.state(b.id()).await.expect("state"),
        RunState::Running { .. }
    ));
    drop(again);
    let kill0 = b.run(&["kill", "-0", &detached.pid.to_string()]).await;
    assert_eq!(kill0.status, ExitStatus::Code(0));
    let before = std::fs::read_to_string(&log).expect("log").len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        std::fs::read_to_string(&log).expect("log").len() > before,
        "log stopped growing"
    );

    // A short command: its output lands in its log and the server reaps it promptly.
    let short =
        b.rt.exec_detached(b.id(), spec(&["sh", "-c", "echo hi; echo oops >&2"]))
            .await
            .expect("short");
    let short_log = b.rt.log_path(b.id(), short.pid);
    wait_for("short process to be reaped", || {
        !Path::new(&format!("/proc/{}", short.host_pid)).exists()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&short_log).expect("short log"),
        "hi\noops\n"
    );

    let missing = b.rt.exec_detached(b.id(), spec(&["no-such-command"])).await;
    assert!(
        matches!(&missing, Err(RuntimeError::Exec(m)) if m == "command not found: no-such-command"),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_resources_applies_live() {
    let b = TestBox::default();
    b.start().await;
    let bigger = Resources {
        millicpus: 1500,
        memory_mb: 512,
        pids: 100,
    };
    b.rt.update_resources(b.id(), bigger)
        .await
        .expect("update up");
    assert_eq!(b.cgroup("memory", "memory.limit_in_bytes"), "536870912");
    assert_eq!(
        b.cgroup("memory", "memory.memsw.limit_in_bytes"),
        "536870912"
    );
    assert_eq!(b.cgroup("cpu", "cpu.cfs_quota_us"), "150000");
    assert_eq!(b.cgroup("pids", "pids.max"), "100");
    let smaller = Resources {
        millicpus: 250,
        memory_mb: 128,
        pids: 50,
    };
    b.rt.update_resources(b.id(), smaller)
        .await
        .expect("update down");
    assert_eq!(b.cgroup("memory", "memory.limit_in_bytes"), "134217728");
    assert_eq!(
        b.cgroup("memory", "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(b.cgroup("cpu", "cpu.cfs_quota_us"), "25000");
    // The box sees its own limit through its cgroup namespace.
    let inside = b
        .run(&["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
        .await
        .stdout;
    assert_eq!(inside.trim(), "134217728");
    let unlimited = Resources {
        millicpus: 0,
        memory_mb: 0,
        pids: 0,
    };
    b.rt.update_resources(b.id(), unlimited)
        .await
        .expect("update unlimited");
    assert_eq!(b.cgroup("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(b.cgroup("pids", "pids.max"), "max");
    assert!(
        b.cgroup("memory", "memory.limit_in_bytes")
            .parse::<u64>()
            .expect("limit")
            > 1 << 40
    );
    assert!(matches!(
        b.rt.update_resources("no-such-box", unlimited).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_stops_every_process_until_thaw() {
    let b = TestBox::default();
    b.start().await;
    // A busy background loop: it gets CPU time only while the box is thawed.
    let busy =
        b.rt.exec_detached(b.id(), spec(&["sh", "-c", "while true; do :; done"]))
            .await
            .expect("start the loop");
    let cpu_ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", busy.host_pid))
            .expect("the loop runs");
        // utime + stime, after the parenthesised command name.
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("a tick count"))
            .collect();
        fields.iter().sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = cpu_ticks();
    while cpu_ticks() == first {
        assert!(Instant::now() < deadline, "the loop never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.rt.freeze(b.id()).await.expect("freeze");
    assert_eq!(b.cgroup("freezer", "freezer.state"), "FROZEN");
    let frozen_at = cpu_ticks();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cpu_ticks(), frozen_at, "a frozen process got CPU time");
    // Freezing twice is fine; thawing lets it run again.
    b.rt.freeze(b.id()).await.expect("freeze again");
    b.rt.thaw(b.id()).await.expect("thaw");
    assert_eq!(b.cgroup("freezer", "freezer.state"), "THAWED");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cpu_ticks() == frozen_at {
        assert!(
            Instant::now() < deadline,
            "the loop does not run after thaw"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.rt.thaw(b.id()).await.expect("thawing a thawed box");
    assert!(matches!(
        b.rt.freeze("no-such-box").await,
        Err(RuntimeError::NotFound(_))
    ));
    b.rt.thaw("no-such-box")
        .await
        .expect("thawing a missing box");
    // A box left frozen (a server crash mid-fork) still stops.
    b.rt.freeze(b.id()).await.expect("freeze before stop");
    b.rt.stop(b.id(), Duration::from_millis(200))
        .await
        .expect("stop a frozen box");
    assert_eq!(b.rt.state(b.id()).await.unwrap(), RunState::Missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_term_then_kill_after_grace_and_start_again_works() {
    let b = TestBox::default();
    b.start().await;
    // TERM reaches processes beyond pid 1 and is given time to be handled.
    let graceful = spec(&[
        "sh",
        "-c",
        "trap 'sleep 0.2; echo done > /root/term-ok; exit 0' TERM; while true; do sleep 0.05; done",
    ]);
    b.rt.exec_detached(b.id(), graceful)
        .await
        .expect("trap process");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    b.rt.stop(b.id(), Duration::from_secs(10))
        .await
        .expect("stop");
    let graceful_stop = t.elapsed();
    assert_eq!(
        std::fs::read_to_string(b.spec.rootfs.join("root/term-ok")).expect("TERM handler ran"),
        "done\n"
    );
    assert!(
        graceful_stop < Duration::from_secs(3),
        "graceful stop took {graceful_stop:?}"
    );
    assert_eq!(b.rt.state(b.id()).await.expect("state"), RunState::Missing);
    assert!(
        b.box_cgroup_dirs().is_empty(),
        "cgroups left: {:?}",
        b.box_cgroup_dirs()
    );
    b.rt.stop(b.id(), Duration::from_secs(1))
        .await
        .expect("stop is idempotent");

    // Start again on the same root; /tmp is fresh, the root keeps its files.
    b.start().await;
    assert_eq!(b.run(&["cat", "/root/term-ok"]).await.stdout, "done\n");
    let stubborn = spec(&["sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"]);
    let d =
        b.rt.exec_detached(b.id(), stubborn)
            .await
            .expect("stubborn process");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    b.rt.stop(b.id(), Duration::from_secs(1))
        .await
        .expect("stop stubborn");
    let forced = t.elapsed();
    assert!(
        forced >= Duration::from_secs(1),
        "stop did not wait for grace: {forced:?}"
    );
    assert!(forced < Duration::from_secs(4), "stop took {forced:?}");
    assert!(
        !Path::new(&format!("/proc/{}", d.host_pid)).exists() || {
            super::state::ProcStat::read(d.host_pid).is_none_or(|s| s.is_dead())
        }
    );
    assert_eq!(b.rt.state(b.id()).await.expect("state"), RunState::Missing);

    b.start().await;
    assert_eq!(b.run(&["true"]).await.status, ExitStatus::Code(0));
    assert!(matches!(
        b.rt.state(b.id()).await.expect("state"),
        RunState::Running { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_box_is_stopped_and_start_replaces_it() {
    let b = TestBox::default();
    b.start().await;
    let RunState::Running { pid } = b.rt.state(b.id()).await.expect("state") else {
        panic!("box not running");
    };
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill init");
    wait_for("init to die", || {
        super::state::ProcStat::read(pid).is_none_or(|s| s.is_dead())
    })
    .await;
    assert_eq!(b.rt.state(b.id()).await.expect("state"), RunState::Stopped);
    assert_eq!(b.rt.list().await.expect("list"), vec![b.id().to_string()]);
    assert!(matches!(
        b.rt.exec(b.id(), spec(&["true"])).await,
        Err(RuntimeError::NotRunning(_))
    ));
    b.start().await;
    assert_eq!(b.run(&["true"]).await.status, ExitStatus::Code(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_running_box_fails_and_a_failed_start_leaves_nothing() {
    let b = TestBox::default();
    b.start().await;
    let again = b.rt.start(&b.spec).await;
    assert!(
        matches!(&again, Err(RuntimeError::Failed { message, .. }) if message == "box is already running"),
        "{again:?}"
    );
    b.rt.remove(b.id()).await.expect("remove");

    let mut broken = b.spec.clone();
    broken.mounts.push(crate::runtime::BindMount {
        source: b.dir.path().join("does-not-exist"),
        destination: "/data".into(),
        read_only: false,
    });
    let err =
        b.rt.start(&broken)
            .await
            .expect_err("start with missing mount source");
    assert!(err.to_string().contains("runc run"), "{err}");
    assert_eq!(b.rt.state(b.id()).await.expect("state"), RunState::Missing);
    assert!(b.rt.list().await.expect("list").is_empty());
    assert!(
        b.box_cgroup_dirs().is_empty(),
        "cgroups left: {:?}",
        b.box_cgroup_dirs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_leaves_nothing_behind() {
    let b = TestBox::default();
    b.start().await;
    b.rt.exec_detached(b.id(), spec(&["sleep", "1000"]))
        .await
        .expect("background");
    assert!(!b.box_cgroup_dirs().is_empty());
    b.rt.remove(b.id()).await.expect("remove");
    assert!(
        b.box_cgroup_dirs().is_empty(),
        "cgroups left: {:?}",
        b.box_cgroup_dirs()
    );
    assert!(
        !b.rt.state_dir().join("runc").join(b.id()).exists(),
        "runc state left"
    );
    assert!(
        !b.rt.state_dir().join("bundles").join(b.id()).exists(),
        "bundle left"
    );
    assert_eq!(b.rt.state(b.id()).await.expect("state"), RunState::Missing);
    assert!(b.rt.list().await.expect("list").is_empty());
    b.rt.remove(b.id()).await.expect("remove is idempotent");
    // The root filesystem belongs to storage and stays.
    assert!(b.spec.rootfs.join("bin/busybox").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_do_not_collide() {
    let a = TestBox::default();
    let mut b = TestBox::default();
    b.spec.id = a.spec.id.clone();
    a.start().await;
    b.start().await;
    assert_ne!(a.rt.cgroup_parent(), b.rt.cgroup_parent());
    a.rt.remove(a.id()).await.expect("remove a");
    assert!(matches!(
        b.rt.state(b.id()).await.expect("state"),
        RunState::Running { .. }
    ));
    assert_eq!(b.run(&["hostname"]).await.stdout, "web.proj\n");
}

/// The host pid of the box's init.
async fn init_pid(b: &TestBox) -> u32 {
    match b.rt.state(b.id()).await.expect("state") {
        RunState::Running { pid } => pid,
        other => panic!("box not running: {other:?}"),
    }
}

/// Children of host process `pid`, oldest first.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect()
}

/// The agent's supervisor (tini's first child) and its worker.
async fn agent_pids(b: &TestBox) -> (u32, Option<u32>) {
    let supervisor = *children(init_pid(b).await)
        .first()
        .expect("tini has a child");
    let stat = super::state::ProcStat::read(supervisor).expect("supervisor stat");
    assert_eq!(stat.comm, super::agent::AGENT_COMM);
    (supervisor, children(supervisor).first().copied())
}

fn kill(pid: u32, signal: rustix::process::Signal) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        signal,
    )
    .expect("kill");
}

/// The parent pid a command sees: the agent's worker when the agent ran it, 0 (a parent
/// outside the box) when runc exec did.
async fn parent_seen_by(b: &TestBox, via: Via) -> u32 {
    let out = b
        .run_via(via, spec(&["cut", "-d", " ", "-f4", "/proc/self/stat"]))
        .await;
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
    out.stdout.trim().parse().expect("a ppid")
}

/// Whether the box's network namespace has a socket listening on `@zomg-agent`.
fn agent_socket_listed(init: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{init}/net/unix"))
        .is_ok_and(|t| t.lines().any(|l| l.ends_with(" @zomg-agent")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_exec_runs_commands_as_runc_exec_does() {
    let b = TestBox::default();
    // A user with a group of its own and a supplementary one (runc exec gives neither).
    let etc = b.spec.rootfs.join("etc");
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        etc.join("group"),
        "root:x:0:\nstaff:x:50:alice\nalice:x:1000:\n",
    )
    .expect("group");
    b.start().await;

    // The runtime's exec goes through the agent; runc exec's commands have no parent in
    // the box.
    let (_, worker) = agent_pids(&b).await;
    let worker = worker.expect("a worker");
    let worker_in_box = super::state::pid_in_namespace(worker).expect("NSpid");
    assert_eq!(parent_seen_by(&b, Via::Runtime).await, worker_in_box);
    assert_eq!(parent_seen_by(&b, Via::Runc).await, 0);

    let status = "grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp|Sig(Blk|Ign|Cgt))' \
                  /proc/self/status";
    let probes = [
        spec(&["sh", "-c", status]),
        spec(&["cat", "/proc/self/cgroup"]),
        spec(&["env"]),
        spec(&[
            "sh",
            "-c",
            "hostname; pwd; umask; ulimit -a; cat /proc/self/oom_score_adj; ls /proc/self/fd",
        ]),
        // A session and process group of its own, as runc gives every exec.
        spec(&[
            "sh",
            "-c",
            "read -r pid comm state ppid pgrp session rest < /proc/$$/stat; \
             [ $pgrp = $pid ] && [ $session = $pid ] && echo leads its session",
        ]),
        ExecSpec {
            env: BTreeMap::from([
                ("FOO".into(), "overridden".into()),
                ("NEW".into(), "1".into()),
            ]),
            cwd: Some("/tmp".into()),
            ..spec(&["env"])
        },
        ExecSpec {
            cwd: Some("/tmp".into()),
            ..spec(&["pwd"])
        },
        ExecSpec {
            user: Some("1000:1000".into()),
            ..spec(&["sh", "-c", &format!("id; {status}; echo $HOME")])
        },
        ExecSpec {
            user: Some("1000".into()),
            ..spec(&["sh", "-c", &format!("id; {status}")])
        },
        ExecSpec {
            user: Some("4242".into()),
            ..spec(&["sh", "-c", &format!("id; {status}")])
        },
        // Output bytes on a terminal (runc's inner terminal differs in one flag, `onlcr`,
        // but its outer one adds the same carriage returns).
        ExecSpec {
            tty: Some((100, 30)),
            ..spec(&["sh", "-c", "tty; stty size; echo a; printf 'b\\n'"])
        },
    ];
    for probe in probes {
        let agent = b.run_via(Via::Runtime, probe.clone()).await;
        let mut runc = b.run_via(Via::Runc, probe.clone()).await;
        // runc clears `onlcr` on its inner terminal only once the command runs, so a quick
        // command's newlines may get a second carriage return from its outer one.
        runc.stdout = runc.stdout.replace("\r\r\n", "\r\n");
        assert_eq!(agent.status, ExitStatus::Code(0), "{probe:?}: {agent:?}");
        assert_eq!(
            (agent.stdout.as_str(), agent.stderr.as_str()),
            (runc.stdout.as_str(), runc.stderr.as_str()),
            "{probe:?}"
        );
    }
    // The capabilities seen are the box's, not empty.
    let caps = b.run(&["grep", "CapEff", "/proc/self/status"]).await.stdout;
    assert_ne!(caps.trim(), "CapEff:\t0000000000000000");
    // runc exec keeps the box's gid (0) for a bare uid, and sets no supplementary groups.
    let id = b
        .run_via(
            Via::Runtime,
            ExecSpec {
                user: Some("1000".into()),
                ..spec(&["id"])
            },
        )
        .await;
    assert_eq!(id.stdout, "uid=1000(alice) gid=0(root)\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_and_a_killed_supervisor_ends_the_box() {
    let b = TestBox::default();
    b.start().await;
    let init = init_pid(&b).await;
    let (supervisor, worker) = agent_pids(&b).await;
    let worker = worker.expect("a worker");
    kill(worker, rustix::process::Signal::KILL);
    // The supervisor keeps the socket bound: nobody in the box can take the name meanwhile.
    let bind = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{init}/ns/net")).expect("netns");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(b"zomg-agent")
            .expect("address");
        std::os::unix::net::UnixListener::bind_addr(&addr).map(|_| ())
    })
    .join()
    .expect("bind thread");
    assert_eq!(
        bind.expect_err("bound @zomg-agent next to the agent")
            .kind(),
        std::io::ErrorKind::AddrInUse
    );
    // An exec waits in the socket's backlog until the new worker takes it.
    let t = Instant::now();
    let out = b.run(&["echo", "still here"]).await;
    assert_eq!(out.stdout, "still here\n");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let (same_supervisor, new_worker) = agent_pids(&b).await;
    assert_eq!(same_supervisor, supervisor);
    let new_worker = new_worker.expect("a new worker");
    assert_ne!(new_worker, worker);
    let worker_in_box = super::state::pid_in_namespace(new_worker).expect("NSpid");
    assert_eq!(parent_seen_by(&b, Via::Runtime).await, worker_in_box);

    // The supervisor is tini's only child: killing it ends tini and the box, as killing the
    // idle helper of earlier versions did.
    kill(supervisor, rustix::process::Signal::KILL);
    wait_for("the box to end", || {
        super::state::ProcStat::read(init).is_none_or(|s| s.is_dead())
    })
    .await;
    assert_eq!(b.rt.state(b.id()).await.expect("state"), RunState::Stopped);
}

impl TestBox {
    /// Starts the box as far as exec can tell like servers before the agent did: tini's
    /// child is not the agent (`sleep` stands in for the idle helper). The agent binary is
    /// still mounted, so that a box process can run an impostor of it.
    async fn start_without_agent(&self) {
        let inner = &self.rt.inner;
        let bundle = super::bundle::write(&inner.layout, &inner.tini, inner.nofile, &self.spec)
            .expect("write bundle");
        let path = bundle.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("json");
        config["process"]["args"] =
            serde_json::json!(["/run/zomg/tini", "-s", "-g", "--", "sleep", "1000000"]);
        std::fs::write(&path, serde_json::to_vec(&config).expect("json")).expect("write config");
        let console = std::fs::File::create(&bundle.console).expect("console log");
        inner
            .runc
            .run_detached(
                self.id(),
                &bundle.dir,
                &bundle.init_pid_file,
                console,
                &bundle.run_log,
            )
            .await
            .expect("runc run");
        let pid = super::read_pid(&bundle.init_pid_file).expect("init pid");
        super::reaper::adopt(pid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_without_agent_and_an_impostor_get_runc_exec() {
    let b = TestBox::default();
    b.start_without_agent().await;
    let init = init_pid(&b).await;
    assert!(!agent_socket_listed(init));
    assert_eq!(parent_seen_by(&b, Via::Runtime).await, 0);
    let out = b.run(&["sh", "-c", "echo $FOO; exit 7"]).await;
    assert_eq!(
        (out.stdout.as_str(), out.status),
        ("bar\n", ExitStatus::Code(7))
    );

    // A box process starts the agent binary itself: root, running the installed file, and
    // adopted by tini once its parent exits — but not tini's first child.
    b.rt.exec_detached(b.id(), spec(&["sh", "-c", "/run/zomg/zomg-agent & exit 0"]))
        .await
        .expect("start the impostor");
    wait_for("the impostor to listen", || agent_socket_listed(init)).await;
    wait_for("tini to adopt the impostor", || children(init).len() == 2).await;
    let impostor = children(init)[1];
    assert_eq!(
        super::state::ProcStat::read(impostor)
            .expect("impostor")
            .comm,
        super::agent::AGENT_COMM
    );
    // Refused: the command runs through runc exec, not through the impostor.
    assert_eq!(parent_seen_by(&b, Via::Runtime).await, 0);
    let tty = ExecSpec {
        tty: Some((80, 24)),
        ..spec(&["sh", "-c", "cut -d' ' -f4 /proc/self/stat"])
    };
    let out = collect(b.rt.exec(b.id(), tty).await.expect("tty exec"))
        .await
        .expect("wait");
    assert_eq!(out.stdout.trim(), "0");
}

/// Sends `request` to the box's agent from a host process in the box's network namespace —
/// and, with `in_box_pids`, in its pid namespace too, as every box process is — and returns
/// the kind of the agent's first reply (`None` when the agent closed without replying),
/// once the agent closed the connection. The client is perl (Essential in Debian), run through `nsenter`.
async fn agent_reply_kind(init: u32, request: &std::path::Path, in_box_pids: bool) -> Option<u8> {
    let mut cmd = tokio::process::Command::new("nsenter");
    cmd.args(["-t", &init.to_string(), "-n"]);
    if in_box_pids {
        cmd.arg("-p");
    }
    let client = r#"
        use Socket;
        socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
        connect($s, pack_sockaddr_un("\0zomg-agent")) or die "connect: $!";
        open(my $f, "<:raw", $ARGV[0]) or die "request: $!"; local $/; my $req = <$f>;
        # A refusing agent may close before the request is all sent: EPIPE, not a failure.
        $SIG{PIPE} = "IGNORE";
        syswrite($s, $req);
        my ($buf, $n) = ("", 0);
        while (length($buf) < 5) { $n = sysread($s, $buf, 5 - length($buf), length($buf)); last unless $n; }
        print length($buf) >= 5 ? ord(substr($buf, 4, 1)) : "none";
        1 while sysread($s, my $rest, 4096); # until the agent closes: after `exited`
    "#;
    cmd.args(["--", "perl", "-e", client]).arg(request);
    let out = cmd
        .output()
        .await
        .expect("run nsenter perl (util-linux, perl-base)");
    assert!(out.status.success(), "client failed: {out:?}");
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    (printed != "none").then(|| printed.parse().expect("a reply kind"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_box_processes_even_root() {
    let b = TestBox::default();
    b.start().await;
    let init = init_pid(&b).await;
    wait_for("the agent to listen", || agent_socket_listed(init)).await;
    // A terminal request needs no descriptors, so a plain client can send a valid one.
    let request = |marker: &str| {
        super::agent::encode_request(
            &["touch".into(), format!("/tmp/{marker}")],
            &["PATH=/bin:/usr/bin".into()],
            "/",
            None,
            Some((80, 24)),
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inside = dir.path().join("inside");
    let outside = dir.path().join("outside");
    std::fs::write(&inside, request("from-a-box-process")).unwrap();
    std::fs::write(&outside, request("from-the-host")).unwrap();

    // Root in the box's namespaces: its pid is visible to the agent, so it is refused and
    // nothing starts.
    assert_eq!(agent_reply_kind(init, &inside, true).await, None);
    let out = b.run(&["ls", "/tmp"]).await;
    assert_eq!(out.stdout, "", "nothing ran: {out:?}");
    // The same request from outside the box's pid namespace (as the server connects) is
    // served: the refusal above is the peer check, not a malformed request. (Whether the
    // command then gets to run is a race: the client drops the terminal's master it was
    // sent, which hangs the terminal up.)
    assert_eq!(
        agent_reply_kind(init, &outside, false).await,
        Some(super::agent::protocol::REPLY_STARTED),
    );
    assert_eq!(children(init).len(), 1, "still one agent, no stray command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_another_server_build_is_not_trusted() {
    let b = TestBox::default();
    b.start().await;
    assert_ne!(parent_seen_by(&b, Via::Runtime).await, 0);
    // Another build of the server installs a different agent binary over the file.
    let path = b.rt.state_dir().join("zomg-agent");
    let other = path.with_extension("other");
    std::fs::write(&other, b"another build").expect("write");
    std::fs::rename(&other, &path).expect("replace");
    let again = LocalRuntime::new(b.config.clone()).expect("second runtime");
    // The box still runs the earlier file: execs of the new runtime go through runc...
    let out = run(
        &again,
        b.id(),
        spec(&["cut", "-d", " ", "-f4", "/proc/self/stat"]),
    )
    .await;
    assert_eq!(out.stdout, "0\n");
    // ...until the box starts again with the new one.
    again
        .stop(b.id(), Duration::from_secs(1))
        .await
        .expect("stop");
    again.start(&b.spec).await.expect("start");
    let out = run(
        &again,
        b.id(),
        spec(&["cut", "-d", " ", "-f4", "/proc/self/stat"]),
    )
    .await;
    assert_ne!(out.stdout, "0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_exec_stops_its_command() {
    let b = TestBox::default();
    b.start().await;
    let alive = |pid: String| {
        let b = &b;
        async move { b.run(&["kill", "-0", &pid]).await.status == ExitStatus::Code(0) }
    };
    let root = b.spec.rootfs.join("root");
    let read_pid = |file: &str| {
        let path = root.join(file);
        move || std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
    };

    // The caller goes away: SIGTERM to the command's process group (the shell and its
    // `sleep`). Its stderr is gone with the caller, so the shell's notice about the killed
    // `sleep` goes to /dev/null rather than kill it with SIGPIPE before its trap runs.
    let process =
        b.rt.exec(
            b.id(),
            spec(&[
                "sh",
                "-c",
                "exec 2>/dev/null; trap 'echo term > /root/got-term; exit 3' TERM; \
                 echo $$ > /root/pid1; while true; do sleep 0.05; done",
            ]),
        )
        .await
        .expect("exec");
    wait_for("the command to start", read_pid("pid1")).await;
    let pid = std::fs::read_to_string(root.join("pid1"))
        .expect("pid")
        .trim()
        .to_string();
    drop(process);
    wait_for("the command to get TERM", || {
        std::fs::read_to_string(root.join("got-term")).is_ok_and(|t| t == "term\n")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid.clone()).await {
        assert!(Instant::now() < deadline, "the command outlived its TERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One that ignores SIGTERM gets SIGKILL after the grace (5 s).
    let process =
        b.rt.exec(
            b.id(),
            spec(&[
                "sh",
                "-c",
                "trap '' TERM; echo $$ > /root/pid2; while true; do sleep 0.05; done",
            ]),
        )
        .await
        .expect("exec");
    wait_for("the command to start", read_pid("pid2")).await;
    let pid = std::fs::read_to_string(root.join("pid2"))
        .expect("pid")
        .trim()
        .to_string();
    let t = Instant::now();
    drop(process);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(alive(pid.clone()).await, "killed before the grace");
    while alive(pid.clone()).await {
        assert!(t.elapsed() < Duration::from_secs(10), "never killed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "killed after {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_gives_agent_execs_the_grace_then_kills_them() {
    let b = TestBox::default();
    b.start().await;
    // A command that exits on TERM reports it; the stop does not wait for the grace.
    let mut polite =
        b.rt.exec(b.id(), spec(&["sleep", "1000"]))
            .await
            .expect("exec");
    drop(polite.stdin.take());
    let t = Instant::now();
    b.rt.stop(b.id(), Duration::from_secs(10))
        .await
        .expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(polite.wait.await.expect("wait"), ExitStatus::Signal(15));

    // One that ignores TERM keeps running — and the box with it — until the grace ends.
    b.start().await;
    let (supervisor, _) = agent_pids(&b).await;
    let mut stubborn =
        b.rt.exec(
            b.id(),
            spec(&[
                "sh",
                "-c",
                "trap '' TERM; echo ready; while true; do sleep 0.05; done",
            ]),
        )
        .await
        .expect("exec");
    let mut stdout = stubborn.stdout.take().expect("stdout");
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "ready\n").await;
    let t = Instant::now();
    let stop = {
        let rt = b.rt.clone();
        let id = b.id().to_string();
        tokio::spawn(async move { rt.stop(&id, Duration::from_secs(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        b.rt.state(b.id()).await.expect("state"),
        RunState::Running { .. }
    ));
    assert!(
        super::state::ProcStat::read(supervisor).is_some_and(|s| !s.is_dead()),
        "the agent ended on TERM"
    );
    stop.await.expect("stop task").expect("stop");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "stop did not wait for grace: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "stop took {took:?}");
    // Killed with its box.
    assert_eq!(stubborn.wait.await.expect("wait"), ExitStatus::Signal(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_agent_execs_keep_apart_and_leave_nothing_behind() {
    let b = TestBox::default();
    b.start().await;
    let (_, worker) = agent_pids(&b).await;
    let worker = worker.expect("a worker");
    let fds = || {
        std::fs::read_dir(format!("/proc/{worker}/fd"))
            .expect("fds")
            .count()
    };
    let threads = || thread_count(worker);
    let (fds_before, threads_before) = (fds(), threads());
    let runs = (0..40).map(|i| {
        let b = &b;
        async move {
            let argv = [
                "sh",
                "-c",
                &format!("echo out{i}; echo err{i} >&2; exit {i}"),
            ];
            let out = b.run_via(Via::Runtime, spec(&argv)).await;
            assert_eq!(
                (out.stdout, out.stderr, out.status),
                (
                    format!("out{i}\n"),
                    format!("err{i}\n"),
                    ExitStatus::Code(i)
                ),
            );
        }
    });
    futures_util::future::join_all(runs).await;
    // Every connection thread has ended and every descriptor of the execs is closed.
    wait_for("the agent to let go of the execs", || {
        fds() == fds_before && threads() == threads_before
    })
    .await;
}

/// The number of threads of host process `pid`.
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .count()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Measures the hot paths and prints them (`cargo test ... latencies -- --nocapture`). The
/// bounds are loose so that a loaded CI machine passes; the printed medians are the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latencies() {
    let b = TestBox::default();
    let (mut starts, mut stops, mut execs, mut ttys) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        b.start().await;
        starts.push(t.elapsed());
        let t = Instant::now();
        b.rt.stop(b.id(), Duration::from_secs(5))
            .await
            .expect("stop");
        stops.push(t.elapsed());
    }
    b.start().await;
    for _ in 0..15 {
        let t = Instant::now();
        assert_eq!(b.run(&["true"]).await.status, ExitStatus::Code(0));
        execs.push(t.elapsed());
    }
    // For comparison: runc exec alone (the fallback's floor), without reading anything back.
    let mut raw = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let status = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(b.rt.state_dir().join("runc"))
            .args(["exec", b.id(), "true"])
            .status()
            .await
            .expect("runc exec");
        assert!(status.success());
        raw.push(t.elapsed());
    }
    for _ in 0..7 {
        let t = Instant::now();
        let tty = ExecSpec {
            tty: Some((80, 24)),
            ..spec(&["true"])
        };
        let out = collect(b.rt.exec(b.id(), tty).await.expect("tty exec"))
            .await
            .expect("wait");
        assert_eq!(out.status, ExitStatus::Code(0));
        ttys.push(t.elapsed());
    }
    let (start, stop, exec, tty) = (median(starts), median(stops), median(execs), median(ttys));
    let raw = median(raw);
    eprintln!(
        "latency medians: start {start:?}, stop {stop:?}, exec true {exec:?} \
         (bare runc exec {raw:?}), tty exec true {tty:?}"
    );
    // The agent, not runc, ran them (see agent_exec_runs_commands_as_runc_exec_does).
    assert!(
        exec < raw,
        "exec median {exec:?} is not below runc exec's {raw:?}"
    );
    assert!(start < Duration::from_millis(500), "start median {start:?}");
    assert!(stop < Duration::from_millis(500), "stop median {stop:?}");
    assert!(exec < Duration::from_millis(250), "exec median {exec:?}");
    assert!(tty < Duration::from_millis(250), "tty exec median {tty:?}");
}
