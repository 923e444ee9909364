//! An honest fake of [`super::Runtime`] that records the state machine, for tests without root.
//!
//! It enforces what [`super::local::LocalRuntime`] enforces: starting a running box fails, a
//! stopped container is replaced by the next start, stop and remove are idempotent, exec and
//! resource updates need a running box, and `stop` removes the container (state `Missing`)
//! while keeping the box's record for the next start. Everything it was asked is observable
//! through [`FakeRuntime::snapshot`].
//!
//! Exec runs nothing on the host. Commands are *scripted*; only these exist:
//!
//! | argv | behaviour |
//! |---|---|
//! | `true` / `false` | exit 0 / 1 |
//! | `exit N` | exit N |
//! | `echo [-n] WORDS..` | WORDS on stdout |
//! | `warn WORDS..` | WORDS on stderr (on the terminal with a tty) |
//! | `cat` | copies stdin to stdout until EOF |
//! | `sleep SECONDS` | waits, then exits 0 |
//! | `signal N` | ends as if killed by signal N |
//! | anything else | `fake runtime: <cmd>: command not found` on stderr, exit 127 |
//!
//! Background processes get increasing pids from 2; their output is written to
//! [`Runtime::log_path`] only when the fake was built with [`FakeRuntime::with_log_dir`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    BoxSpec, Detached, ExecProcess, ExecSpec, ExitStatus, Resizer, Resources, RunState, Runtime,
    RuntimeError, RuntimeResult,
};

/// What the fake knows about one box.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeBox {
    /// The spec of the latest start.
    pub spec: BoxSpec,
    /// The container, while one exists (from start until stop/remove).
    pub container: Option<FakeContainer>,
    /// How many times the box was started.
    pub starts: u32,
    /// The grace period of every stop of a box with a container, in order.
    pub stops: Vec<Duration>,
    /// Every exec (foreground and background), in order.
    pub execs: Vec<ExecSpec>,
    /// Terminal sizes set through resizers, in order.
    pub resizes: Vec<(u16, u16)>,
}

/// A fake container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeContainer {
    /// Fake host pid of its init.
    pub pid: u32,
    /// Whether its init runs (false after [`FakeRuntime::crash`]).
    pub running: bool,
    /// Limits in force (from start, then from updates).
    pub resources: Resources,
    /// Frozen by [`Runtime::freeze`] and not thawed since.
    pub frozen: bool,
    /// How many times it was frozen.
    pub freezes: u32,
    /// Next pid handed to a background process.
    next_pid: u32,
}

#[derive(Debug, Default)]
struct State {
    boxes: BTreeMap<String, FakeBox>,
    next_host_pid: u32,
    fail_next_start: Option<String>,
}

/// An in-memory [`Runtime`]; clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    log_dir: Option<PathBuf>,
}

impl FakeRuntime {
    /// A fake that writes no background logs.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake that writes background processes' output under `dir` (`<dir>/<id>/<pid>.log`).
    pub fn with_log_dir(dir: impl Into<PathBuf>) -> Self {
        FakeRuntime {
            log_dir: Some(dir.into()),
            ..Self::default()
        }
    }

    /// What the fake holds for `id` (a copy), if it ever started it and it was not removed.
    pub fn snapshot(&self, id: &str) -> Option<FakeBox> {
        self.lock().boxes.get(id).cloned()
    }

    /// Makes the next `start` fail with `message` (and leave nothing behind).
    pub fn fail_next_start(&self, message: impl Into<String>) {
        self.lock().fail_next_start = Some(message.into());
    }

    /// Simulates the box's init dying on its own: the container stays, state `Stopped`.
    pub fn crash(&self, id: &str) {
        if let Some(c) = self
            .lock()
            .boxes
            .get_mut(id)
            .and_then(|b| b.container.as_mut())
        {
            c.running = false;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that `id` runs and records the exec.
    fn begin_exec(&self, id: &str, spec: &ExecSpec) -> RuntimeResult<u32> {
        let mut state = self.lock();
        let b = state
            .boxes
            .get_mut(id)
            .filter(|b| b.container.is_some())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let container = b.container.as_mut().expect("checked above");
        if !container.running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let pid = container.next_pid;
        container.next_pid += 1;
        b.execs.push(spec.clone());
        if spec.argv.is_empty() {
            return Err(RuntimeError::Exec("no command given".to_string()));
        }
        Ok(pid)
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn start(&self, spec: &BoxSpec) -> RuntimeResult<()> {
        let mut state = self.lock();
        if let Some(message) = state.fail_next_start.take() {
            if let Some(b) = state.boxes.get_mut(&spec.id) {
                b.container = None;
            }
            return Err(RuntimeError::Failed {
                id: spec.id.clone(),
                step: "runc run".to_string(),
                message,
            });
        }
        if state
            .boxes
            .get(&spec.id)
            .and_then(|b| b.container)
            .is_some_and(|c| c.running)
        {
            return Err(RuntimeError::Failed {
                id: spec.id.clone(),
                step: "start".to_string(),
                message: "box is already running".to_string(),
            });
        }
        state.next_host_pid += 1;
        let container = FakeContainer {
            pid: 10_000 + state.next_host_pid,
            running: true,
            resources: spec.resources,
            frozen: false,
            freezes: 0,
            next_pid: 2,
        };
        let b = state
            .boxes
            .entry(spec.id.clone())
            .or_insert_with(|| FakeBox {
                spec: spec.clone(),
                container: None,
                starts: 0,
                stops: Vec::new(),
                execs: Vec::new(),
                resizes: Vec::new(),
            });
        b.spec = spec.clone();
        b.container = Some(container);
        b.starts += 1;
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        if let Some(b) = self.lock().boxes.get_mut(id) {
            if b.container.take().is_some() {
                b.stops.push(grace);
            }
        }
        Ok(())
    }

    async fn state(&self, id: &str) -> RuntimeResult<RunState> {
        Ok(match self.lock().boxes.get(id).and_then(|b| b.container) {
            None => RunState::Missing,
            Some(c) if c.running => RunState::Running { pid: c.pid },
            Some(_) => RunState::Stopped,
        })
    }

    async fn list(&self) -> RuntimeResult<Vec<String>> {
        Ok(self
            .lock()
            .boxes
            .iter()
            .filter(|(_, b)| b.container.is_some())
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn update_resources(&self, id: &str, resources: Resources) -> RuntimeResult<()> {
        let mut state = self.lock();
        let container = state
            .boxes
            .get_mut(id)
            .and_then(|b| b.container.as_mut())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        if !container.running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        container.resources = resources;
        Ok(())
    }

    async fn freeze(&self, id: &str) -> RuntimeResult<()> {
        let mut state = self.lock();
        let container = state
            .boxes
            .get_mut(id)
            .and_then(|b| b.container.as_mut())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        if !container.running {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        container.frozen = true;
        container.freezes += 1;
        Ok(())
    }

    async fn thaw(&self, id: &str) -> RuntimeResult<()> {
        if let Some(c) = self
            .lock()
            .boxes
            .get_mut(id)
            .and_then(|b| b.container.as_mut())
        {
            c.frozen = false;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        self.lock().boxes.remove(id);
        if let Some(dir) = &self.log_dir {
            let _ = tokio::fs::remove_dir_all(dir.join(id)).await;
        }
        Ok(())
    }

    async fn exec(&self, id: &str, spec: ExecSpec) -> RuntimeResult<ExecProcess> {
        self.begin_exec(id, &spec)?;
        let (stdin_ours, stdin_theirs) = tokio::io::duplex(64 * 1024);
        let (stdout_theirs, stdout_ours) = tokio::io::duplex(64 * 1024);
        let (stderr_theirs, stderr_ours) = tokio::io::duplex(64 * 1024);
        let tty = spec.tty.is_some();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let argv = spec.argv.clone();
        tokio::spawn(async move {
            let status = if tty {
                // A terminal merges stderr into its output.
                drop(stderr_theirs);
                let out = Arc::new(tokio::sync::Mutex::new(stdout_theirs));
                script(
                    &argv,
                    stdin_theirs,
                    SharedWriter(out.clone()),
                    SharedWriter(out),
                )
                .await
            } else {
                script(&argv, stdin_theirs, stdout_theirs, stderr_theirs).await
            };
            let _ = tx.send(status);
        });
        let resizer: Option<Box<dyn Resizer>> = spec.tty.map(|_| {
            Box::new(FakeResizer {
                runtime: self.clone(),
                id: id.to_string(),
            }) as Box<dyn Resizer>
        });
        Ok(ExecProcess {
            stdin: Some(Box::pin(stdin_ours)),
            stdout: Some(Box::pin(stdout_ours)),
            stderr: if tty {
                None
            } else {
                Some(Box::pin(stderr_ours))
            },
            resizer,
            wait: Box::pin(async move {
                rx.await
                    .map_err(|_| RuntimeError::Exec("fake process vanished".to_string()))
            }),
        })
    }

    async fn exec_detached(&self, id: &str, spec: ExecSpec) -> RuntimeResult<Detached> {
        let pid = self.begin_exec(id, &spec)?;
        let host_pid = 20_000 + pid;
        let log = self.log_dir.as_ref().map(|_| self.log_path(id, pid));
        if let Some(log) = &log {
            let parent = log.parent().expect("log path has a parent");
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| RuntimeError::Exec(format!("fake log dir: {e}")))?;
        }
        let argv = spec.argv.clone();
        tokio::spawn(async move {
            let (sink, mut collected) = tokio::io::duplex(64 * 1024);
            let (out, err) = {
                let shared = Arc::new(tokio::sync::Mutex::new(sink));
                (SharedWriter(shared.clone()), SharedWriter(shared))
            };
            let run = script(&argv, tokio::io::empty(), out, err);
            let (_, bytes) = tokio::join!(run, async move {
                let mut bytes = Vec::new();
                let _ = collected.read_to_end(&mut bytes).await;
                bytes
            });
            if let Some(log) = log {
                let _ = tokio::fs::write(log, bytes).await;
            }
        });
        Ok(Detached { pid, host_pid })
    }

    fn log_path(&self, id: &str, pid: u32) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/nonexistent/zomg-fake-runtime"))
            .join(id)
            .join(format!("{pid}.log"))
    }
}

/// Records resizes on the fake's box.
struct FakeResizer {
    runtime: FakeRuntime,
    id: String,
}

impl Resizer for FakeResizer {
    fn resize(&self, cols: u16, rows: u16) -> RuntimeResult<()> {
        if let Some(b) = self.runtime.lock().boxes.get_mut(&self.id) {
            b.resizes.push((cols, rows));
        }
        Ok(())
    }
}

/// One writer shared by stdout and stderr (a terminal, or a log file); dropped writers of
/// both must go before the reader sees EOF, which the Arc gives.
struct SharedWriter<W>(Arc<tokio::sync::Mutex<W>>);

impl<W: AsyncWrite + Unpin + Send> SharedWriter<W> {
    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.lock().await.write_all(data).await
    }
}

/// Where a script writes: a plain stream or a shared one.
trait Sink: Send {
    fn put<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + 'a>>;
}

impl Sink for tokio::io::DuplexStream {
    fn put<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(self.write_all(data))
    }
}

impl<W: AsyncWrite + Unpin + Send> Sink for SharedWriter<W> {
    fn put<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(self.write_all(data))
    }
}

/// Runs one scripted command (see the module docs).
async fn script(
    argv: &[String],
    mut stdin: impl AsyncRead + Unpin + Send,
    mut stdout: impl Sink,
    mut stderr: impl Sink,
) -> ExitStatus {
    let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    match argv.first().map(String::as_str).unwrap_or("") {
        "true" => ExitStatus::Code(0),
        "false" => ExitStatus::Code(1),
        "exit" => ExitStatus::Code(args.first().and_then(|a| a.parse().ok()).unwrap_or(0)),
        "signal" => ExitStatus::Signal(args.first().and_then(|a| a.parse().ok()).unwrap_or(9)),
        "echo" => {
            let (newline, words) = match args.first() {
                Some(&"-n") => ("", &args[1..]),
                _ => ("\n", &args[..]),
            };
            let _ = stdout
                .put(format!("{}{newline}", words.join(" ")).as_bytes())
                .await;
            ExitStatus::Code(0)
        }
        "warn" => {
            let _ = stderr.put(format!("{}\n", args.join(" ")).as_bytes()).await;
            ExitStatus::Code(0)
        }
        "cat" => {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break ExitStatus::Code(0),
                    Ok(n) => {
                        if stdout.put(&buf[..n]).await.is_err() {
                            break ExitStatus::Signal(13);
                        }
                    }
                }
            }
        }
        "sleep" => {
            let secs: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0.0);
            tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            ExitStatus::Code(0)
        }
        other => {
            let _ = stderr
                .put(format!("fake runtime: {other}: command not found\n").as_bytes())
                .await;
            ExitStatus::Code(127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> BoxSpec {
        BoxSpec {
            id: id.into(),
            hostname: format!("{id}.p"),
            rootfs: PathBuf::from("/nonexistent"),
            env: BTreeMap::new(),
            boxes_env_file: String::new(),
            resources: Resources {
                millicpus: 1000,
                memory_mb: 512,
                pids: 100,
            },
            mounts: Vec::new(),
        }
    }

    fn argv(a: &[&str]) -> ExecSpec {
        ExecSpec {
            argv: a.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    async fn output(
        rt: &FakeRuntime,
        id: &str,
        exec: ExecSpec,
        input: &[u8],
    ) -> (ExitStatus, String, String) {
        let mut p = rt.exec(id, exec).await.expect("exec");
        let mut stdin = p.stdin.take().expect("stdin");
        let input = input.to_vec();
        // Write while reading: the pipes hold only 64 KiB.
        let writer = tokio::spawn(async move {
            stdin.write_all(&input).await.expect("write");
        });
        let mut out = String::new();
        p.stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        writer.await.expect("writer");
        let mut err = String::new();
        if let Some(mut e) = p.stderr.take() {
            e.read_to_string(&mut err).await.expect("read");
        }
        (p.wait.await.expect("wait"), out, err)
    }

    #[tokio::test]
    async fn lifecycle_follows_the_state_machine() {
        let rt = FakeRuntime::new();
        assert_eq!(rt.state("a").await.expect("state"), RunState::Missing);
        rt.stop("a", Duration::from_secs(1))
            .await
            .expect("stop of missing succeeds");
        rt.start(&spec("a")).await.expect("start");
        let RunState::Running { pid } = rt.state("a").await.expect("state") else {
            panic!("not running");
        };
        assert!(pid > 0);
        assert!(
            rt.start(&spec("a")).await.is_err(),
            "start of a running box must fail"
        );
        assert_eq!(rt.list().await.expect("list"), vec!["a".to_string()]);

        rt.stop("a", Duration::from_secs(3)).await.expect("stop");
        assert_eq!(rt.state("a").await.expect("state"), RunState::Missing);
        assert!(rt.list().await.expect("list").is_empty());
        rt.stop("a", Duration::from_secs(3))
            .await
            .expect("stop is idempotent");
        let snap = rt.snapshot("a").expect("record kept after stop");
        assert_eq!(snap.stops, vec![Duration::from_secs(3)]);

        rt.start(&spec("a")).await.expect("start again");
        assert_eq!(rt.snapshot("a").expect("snap").starts, 2);
        rt.crash("a");
        assert_eq!(rt.state("a").await.expect("state"), RunState::Stopped);
        assert!(matches!(
            rt.exec("a", argv(&["true"])).await,
            Err(RuntimeError::NotRunning(_))
        ));
        rt.start(&spec("a"))
            .await
            .expect("a stopped container is replaced");

        rt.remove("a").await.expect("remove");
        rt.remove("a").await.expect("remove is idempotent");
        assert!(rt.snapshot("a").is_none());
        assert_eq!(rt.state("a").await.expect("state"), RunState::Missing);
    }

    #[tokio::test]
    async fn updates_are_recorded_and_need_a_running_box() {
        let rt = FakeRuntime::new();
        let r = Resources {
            millicpus: 250,
            memory_mb: 128,
            pids: 10,
        };
        assert!(matches!(
            rt.update_resources("a", r).await,
            Err(RuntimeError::NotFound(_))
        ));
        rt.start(&spec("a")).await.expect("start");
        rt.update_resources("a", r).await.expect("update");
        assert_eq!(
            rt.snapshot("a")
                .and_then(|b| b.container)
                .map(|c| c.resources),
            Some(r)
        );
        rt.crash("a");
        assert!(matches!(
            rt.update_resources("a", r).await,
            Err(RuntimeError::NotRunning(_))
        ));
    }

    #[tokio::test]
    async fn failed_start_leaves_nothing() {
        let rt = FakeRuntime::new();
        rt.fail_next_start("boom");
        let err = rt.start(&spec("a")).await.expect_err("injected failure");
        assert_eq!(err.to_string(), "runc run for box a failed: boom");
        assert_eq!(rt.state("a").await.expect("state"), RunState::Missing);
        rt.start(&spec("a")).await.expect("next start works");
    }

    #[tokio::test]
    async fn scripted_exec_streams_and_codes() {
        let rt = FakeRuntime::new();
        assert!(matches!(
            rt.exec("a", argv(&["true"])).await,
            Err(RuntimeError::NotFound(_))
        ));
        rt.start(&spec("a")).await.expect("start");
        assert_eq!(
            output(&rt, "a", argv(&["true"]), b"").await.0,
            ExitStatus::Code(0)
        );
        assert_eq!(
            output(&rt, "a", argv(&["false"]), b"").await.0,
            ExitStatus::Code(1)
        );
        assert_eq!(
            output(&rt, "a", argv(&["exit", "42"]), b"").await.0,
            ExitStatus::Code(42)
        );
        assert_eq!(
            output(&rt, "a", argv(&["signal", "9"]), b"").await.0,
            ExitStatus::Signal(9)
        );
        let (s, out, err) = output(&rt, "a", argv(&["echo", "hi", "there"]), b"").await;
        assert_eq!(
            (s, out.as_str(), err.as_str()),
            (ExitStatus::Code(0), "hi there\n", "")
        );
        let (_, out, err) = output(&rt, "a", argv(&["warn", "careful"]), b"").await;
        assert_eq!((out.as_str(), err.as_str()), ("", "careful\n"));
        let big = "x".repeat(200_000);
        let (_, out, _) = output(&rt, "a", argv(&["cat"]), big.as_bytes()).await;
        assert_eq!(out, big);
        let (s, _, err) = output(&rt, "a", argv(&["frobnicate"]), b"").await;
        assert_eq!(s, ExitStatus::Code(127));
        assert!(err.contains("command not found"));
        assert_eq!(rt.snapshot("a").expect("snap").execs.len(), 8);

        // With a tty: one output stream, resizes recorded.
        let mut tty = argv(&["warn", "on", "terminal"]);
        tty.tty = Some((80, 24));
        let mut p = rt.exec("a", tty).await.expect("exec");
        assert!(p.stderr.is_none());
        p.resizer
            .take()
            .expect("resizer")
            .resize(100, 40)
            .expect("resize");
        let mut out = String::new();
        p.stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        assert_eq!(out, "on terminal\n");
        assert_eq!(rt.snapshot("a").expect("snap").resizes, vec![(100, 40)]);
    }

    #[tokio::test]
    async fn detached_output_goes_to_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = FakeRuntime::with_log_dir(dir.path());
        rt.start(&spec("a")).await.expect("start");
        let d = rt
            .exec_detached("a", argv(&["echo", "bg"]))
            .await
            .expect("detached");
        assert_eq!(d.pid, 2);
        let log = rt.log_path("a", d.pid);
        for _ in 0..200 {
            if std::fs::read_to_string(&log).is_ok_and(|t| t == "bg\n") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "bg\n");
        assert_eq!(
            rt.exec_detached("a", argv(&["true"]))
                .await
                .expect("second")
                .pid,
            3
        );
        rt.remove("a").await.expect("remove");
        assert!(!log.exists(), "remove keeps logs");
    }
}
