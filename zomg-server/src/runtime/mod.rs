//! What runs a box.
//!
//! The [`Runtime`] trait starts, stops and inspects box processes and runs commands inside
//! them. [`local::LocalRuntime`] drives `runc` with one OCI bundle per box;
//! [`fake::FakeRuntime`] records and enforces the same state machine for `core` tests that
//! need no root.

pub mod fake;
pub mod local;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// CPU, memory and process limits of a box. A zero field means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// CPU limit in millicores (1000 = one core), as a CFS quota over a 100 ms period.
    pub millicpus: u32,
    /// Memory limit in MiB (memory + swap: a box never swaps past it).
    pub memory_mb: u64,
    /// Maximum number of processes.
    pub pids: u32,
}

/// A bind mount from the host into the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (a file or a directory).
    pub source: PathBuf,
    /// Absolute path inside the box.
    pub destination: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Everything the runtime needs to start a box.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxSpec {
    /// The box id; also the runtime's container id.
    pub id: String,
    /// Hostname inside the box (`<box>.<project>`).
    pub hostname: String,
    /// The box's root filesystem on the host (its root subvolume).
    pub rootfs: PathBuf,
    /// Environment of pid 1 and of every exec, injected variables included.
    pub env: BTreeMap<String, String>,
    /// Contents of `/etc/boxes-env` (bind-mounted read-only).
    pub boxes_env_file: String,
    /// Resource limits.
    pub resources: Resources,
    /// Data volumes and other bind mounts.
    pub mounts: Vec<BindMount>,
}

/// What the runtime knows about a box. After [`Runtime::stop`] a box is `Missing`: stop
/// removes the container (its bundle stays for the next start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// The box's init is running with this host pid.
    Running {
        /// Host pid of the box's pid 1.
        pid: u32,
    },
    /// The runtime has the container but its init has exited (it died on its own).
    Stopped,
    /// The runtime has no container by that id.
    Missing,
}

/// How a command should run inside a box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// argv; `argv[0]` is looked up in the box's PATH.
    pub argv: Vec<String>,
    /// Extra environment on top of the box's.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the box (default `/root`, or `/` when the base has no
    /// `/root`). A missing directory fails the exec with [`RuntimeError::Exec`].
    pub cwd: Option<String>,
    /// Numeric `uid[:gid]` to run as (default `0:0`); names are resolved by the caller.
    pub user: Option<String>,
    /// Allocate a terminal of this size (cols, rows); stdout and stderr are merged.
    pub tty: Option<(u16, u16)>,
}

/// How a command ended. A command that cannot be found ends with `Code(127)`, one that
/// cannot be executed with `Code(126)`, as in a shell. The local runtime learns the status
/// from runc, which reports a signal N as code 128 + N: codes 129..=159 come back as
/// `Signal`, also when the command itself exited with such a code ([`ExitStatus::code`] is
/// the same either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// A boxed async reader for a process's output.
pub type OutputStream = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed async writer for a process's input.
pub type InputStream = Pin<Box<dyn AsyncWrite + Send>>;

/// A running command inside a box.
pub struct ExecProcess {
    /// The command's stdin; dropping it closes stdin (EOF). With a tty, dropping it does
    /// nothing (an idle interactive session must not end by accident) and `shutdown()`
    /// sends the terminal's end-of-file character (^D).
    pub stdin: Option<InputStream>,
    /// The command's stdout (with a tty: the terminal output).
    pub stdout: Option<OutputStream>,
    /// The command's stderr (`None` with a tty).
    pub stderr: Option<OutputStream>,
    /// Resizes the terminal (no-op without a tty).
    pub resizer: Option<Box<dyn Resizer>>,
    /// Resolves when the command ends. Reading stdout/stderr to EOF is independent of it:
    /// drive them concurrently (a full pipe blocks the command). Dropping it before it
    /// resolves stops the command (the caller went away): SIGTERM, then SIGKILL after a
    /// short grace.
    pub wait: Pin<Box<dyn std::future::Future<Output = RuntimeResult<ExitStatus>> + Send>>,
}

impl fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecProcess").finish_non_exhaustive()
    }
}

/// Changes the window size of an exec's terminal.
pub trait Resizer: Send + Sync {
    /// Sets the terminal to `cols` x `rows`.
    fn resize(&self, cols: u16, rows: u16) -> RuntimeResult<()>;
}

/// A detached background process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// Its pid inside the box.
    pub pid: u32,
    /// Its pid on the host, used to tell whether it still runs.
    pub host_pid: u32,
}

/// Errors from the runtime; each names the box id and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No container by that id.
    #[error("box {0} is not known to the runtime")]
    NotFound(String),
    /// The box is not running.
    #[error("box {0} is not running")]
    NotRunning(String),
    /// A runtime command failed.
    #[error("{step} for box {id} failed: {message}")]
    Failed {
        /// The box id.
        id: String,
        /// What was being done (`runc run`, `write bundle`, ...).
        step: String,
        /// What went wrong (stderr of runc, errno, ...).
        message: String,
    },
    /// The command to exec could not be started (not found, not executable).
    #[error("{0}")]
    Exec(String),
}

/// Result alias for runtime operations.
pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// Operations on running boxes.
#[async_trait]
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// Creates the box's bundle and starts its init (tini), returning once it runs. Starting
    /// a box that is already running is an error; a stopped container is replaced.
    async fn start(&self, spec: &BoxSpec) -> RuntimeResult<()>;

    /// Ends every process: SIGTERM to init, SIGKILL after `grace`, then removes the
    /// container (the bundle stays for the next start). Stopping a stopped or missing box
    /// succeeds.
    async fn stop(&self, id: &str, grace: Duration) -> RuntimeResult<()>;

    /// The state of one box.
    async fn state(&self, id: &str) -> RuntimeResult<RunState>;

    /// Ids of every container this runtime instance holds (running or not).
    async fn list(&self) -> RuntimeResult<Vec<String>>;

    /// Applies new CPU/memory limits to a running box without restarting it.
    async fn update_resources(&self, id: &str, resources: Resources) -> RuntimeResult<()>;

    /// Freezes every process of a running box (the cgroup freezer), so that several
    /// snapshots of its filesystems see one instant. Processes finish the system call they
    /// are in and then stop being scheduled until [`Runtime::thaw`]. Fails with `NotRunning`
    /// or `NotFound` for a box that does not run, and with `Failed` when the box does not
    /// reach the frozen state in time (it is thawed again before the error returns).
    async fn freeze(&self, id: &str) -> RuntimeResult<()>;

    /// Lets a frozen box run again. Thawing a box that is not frozen (or not running)
    /// succeeds.
    async fn thaw(&self, id: &str) -> RuntimeResult<()>;

    /// Kills and removes everything the runtime holds for the box: container, cgroups,
    /// bundle and logs. Idempotent.
    async fn remove(&self, id: &str) -> RuntimeResult<()>;

    /// Runs a command in a running box with piped (or terminal) stdio.
    async fn exec(&self, id: &str, spec: ExecSpec) -> RuntimeResult<ExecProcess>;

    /// Starts a command detached from the caller; it keeps running after the caller goes
    /// away, and its stdout and stderr go to the host file [`Runtime::log_path`] names.
    async fn exec_detached(&self, id: &str, spec: ExecSpec) -> RuntimeResult<Detached>;

    /// Releases what the runtime holds for the server as a whole (boxes keep running);
    /// called when the server stops.
    async fn shutdown(&self) {}

    /// The host file holding the output of background process `pid` (its pid in the box).
    fn log_path(&self, id: &str, pid: u32) -> PathBuf;
}
