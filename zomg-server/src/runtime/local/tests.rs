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
        "/run/zomg/tini\0-s\0-g\0--\0/run/zomg/zomg-idle\0"
    );
    assert_eq!(
        b.run(&["sh", "-c", "echo $FOO $HOME $TERM; pwd; id -u"])
            .await
            .stdout,
        "bar /root xterm-256color\n/root\n0\n"
    );
    // Nothing was written into the user's root for tini or the idle helper.
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
async fn exec_reports_codes_signals_and_keeps_streams_apart() {
    let b = TestBox::default();
    b.start().await;
    assert_eq!(b.run(&["true"]).await.status, ExitStatus::Code(0));
    assert_eq!(b.run(&["false"]).await.status, ExitStatus::Code(1));
    assert_eq!(
        b.run(&["sh", "-c", "exit 42"]).await.status,
        ExitStatus::Code(42)
    );
    assert_eq!(
        b.run(&["sh", "-c", "kill -9 $$"]).await.status,
        ExitStatus::Signal(9)
    );
    assert_eq!(
        b.run(&["sh", "-c", "kill -TERM $$"]).await.status,
        ExitStatus::Signal(15)
    );

    let missing = b.run(&["no-such-command"]).await;
    assert_eq!(missing.status, ExitStatus::Code(127));
    assert!(
        missing.stderr.contains("executable file not found"),
        "{missing:?}"
    );
    assert_eq!(b.run(&["/etc"]).await.status, ExitStatus::Code(126));
    let bad_cwd = ExecSpec {
        cwd: Some("/nope".into()),
        ..spec(&["true"])
    };
    let err = collect(b.rt.exec(b.id(), bad_cwd).await.expect("exec"))
        .await
        .expect_err("missing cwd");
    assert_eq!(
        err.to_string(),
        "cannot enter working directory /nope: no such file or directory"
    );

    let out = b
        .run(&["sh", "-c", "echo out; echo err >&2; echo out2"])
        .await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\nout2\n", "err\n")
    );

    let custom = ExecSpec {
        env: BTreeMap::from([("X".into(), "1".into())]),
        cwd: Some("/tmp".into()),
        user: Some("1000:1000".into()),
        ..spec(&["sh", "-c", "echo $X $(pwd) $(id -u):$(id -g)"])
    };
    assert_eq!(
        run(&b.rt, b.id(), custom).await.stdout,
        "1 /tmp 1000:1000\n"
    );

    // A few MiB through `cat`, byte for byte.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut process = b.rt.exec(b.id(), spec(&["cat"])).await.expect("exec cat");
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
        "stdin round trip differs ({} of {} bytes)",
        echoed.len(),
        data.len()
    );

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
    let tty = ExecSpec {
        tty: Some((80, 24)),
        ..spec(&["sh"])
    };
    let mut process = b.rt.exec(b.id(), tty).await.expect("exec tty");
    assert!(process.stderr.is_none());
    let mut stdin = process.stdin.take().expect("stdin");
    let mut stdout = process.stdout.take().expect("stdout");
    let resizer = process.resizer.take().expect("resizer");
    let mut seen = String::new();
    stdin.write_all(b"tty; stty size\n").await.expect("write");
    read_until(&mut stdout, &mut seen, "24 80").await;
    assert!(seen.contains("/dev/pts/"), "no terminal in box: {seen:?}");
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
        assert!(Instant::now() < deadline, "resize never seen: {seen:?}");
    }
    stdin.write_all(b"exit 5\n").await.expect("write");
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.expect("read to EOF");
    assert_eq!(process.wait.await.expect("wait"), ExitStatus::Code(5));

    // Output of a non-interactive command on a tty arrives complete, then EOF.
    let once = ExecSpec {
        tty: Some((80, 24)),
        ..spec(&["sh", "-c", "echo hello; exit 3"])
    };
    let out = collect(b.rt.exec(b.id(), once).await.expect("exec"))
        .await
        .expect("wait");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert!(out.stdout.contains("hello"), "{out:?}");
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
    // The floor: runc alone, spawned the same way, without reading anything back.
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
    assert!(start < Duration::from_millis(500), "start median {start:?}");
    assert!(stop < Duration::from_millis(500), "stop median {stop:?}");
    assert!(exec < Duration::from_millis(250), "exec median {exec:?}");
    assert!(tty < Duration::from_millis(250), "tty exec median {tty:?}");
}
