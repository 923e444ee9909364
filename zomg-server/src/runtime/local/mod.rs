//! The local runtime: one OCI bundle per box, run by runc.
//!
//! # A box
//! Its root is the box's subvolume, used in place. Pid 1 is `tini -s -g -- zomg-agent`:
//! tini (the host's static build, bind-mounted read-only at `/run/zomg/tini`) reaps zombies
//! and forwards signals; its one child is the box agent (`agent.rs`, source in
//! `zomg-server/agent/`), a static program built with the server that never exits on its own
//! and runs commands for the server, so the box needs nothing from its base to stay up.
//! Both live on the box's fresh `/run` tmpfs: nothing is written into the user's root for
//! them. Commands run through the agent (a fork and exec inside the box), or through
//! `runc exec` when the agent cannot take them (`exec.rs`, `pty.rs`); background processes
//! always use `runc exec -d`.
//!
//! # Stop
//! SIGTERM goes to *every* process of the box (`runc kill --all`), not only to pid 1 — a
//! machine shutting down asks every service to stop. The agent blocks it, so the box stays
//! up while the user's processes exit; the runtime polls the box's `cgroup.procs` (a file
//! read every few ms) until only tini and the agent are left or the grace period ends, then
//! SIGKILLs tini through a pidfd — the kernel then kills the rest of the pid namespace — and
//! `runc delete`s the container. The bundle stays for the next start. SIGKILL of the agent's
//! supervisor ends the box the same way (tini exits with its child).
//!
//! # Host state
//! Everything lives under the configured state dir (see `layout.rs`): bundles, runc's
//! `--root`, the agent binary. Cgroups are `/zomg-<instance>/<id>` in every hierarchy. The
//! server becomes a child subreaper (see `reaper.rs` for why and what follows).

mod agent;
mod bundle;
mod cgroup;
mod exec;
mod freeze;
mod layout;
mod netns;
mod pty;
mod reaper;
mod runc;
mod seccomp;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::exec::ExecFiles;
use self::freeze::Freezer;
use self::layout::{Layout, check_id, check_instance};
use self::reaper::ProcessHandle;
use self::runc::Runc;
use self::state::{ContainerState, ProcStat};
use super::{
    BoxSpec, Detached, ExecProcess, ExecSpec, Resources, RunState, Runtime, RuntimeError,
    RuntimeResult,
};

/// How long a SIGKILLed init may take to exit before `stop`/`remove` give up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `start` waits for a new box's agent to listen; execs use runc until it does.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(2);

/// The `comm` of the idle helper that was tini's child before the agent: boxes started by
/// an earlier server still run it, and a stop must not wait for it either.
const LEGACY_IDLE_COMM: &str = "zomg-idle";

/// How long `freeze` waits for every task of a box to stop (a task in uninterruptible sleep,
/// e.g. on a hung network filesystem, cannot freeze).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of a [`LocalRuntime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRuntimeConfig {
    /// Directory holding all of this instance's state (bundles, runc root, logs); created
    /// if missing. Two instances must not share it.
    pub state_dir: PathBuf,
    /// The runc binary: a path, or a name looked up in `PATH`.
    pub runc_binary: PathBuf,
    /// A statically linked tini on the host (Debian: `/usr/bin/tini-static`).
    pub tini_path: PathBuf,
    /// Names this instance's cgroup parent, `/zomg-<instance>`: 1-64 of `[A-Za-z0-9_-]`.
    pub instance: String,
}

impl LocalRuntimeConfig {
    /// The defaults for a Debian host: `runc` from `PATH`, `/usr/bin/tini-static`.
    pub fn new(state_dir: impl Into<PathBuf>, instance: impl Into<String>) -> Self {
        LocalRuntimeConfig {
            state_dir: state_dir.into(),
            runc_binary: PathBuf::from("runc"),
            tini_path: PathBuf::from("/usr/bin/tini-static"),
            instance: instance.into(),
        }
    }
}

/// Runs boxes on this machine with runc. Cheap to clone.
#[derive(Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    runc: Runc,
    tini: PathBuf,
    /// The installed agent binary (see `agent.rs`).
    agent: agent::AgentFile,
    /// RLIMIT_NOFILE of box processes (see `bundle::nofile_limit`).
    nofile: u64,
    /// Numbers per-exec scratch files.
    seq: AtomicU64,
    /// Serialises start/stop/update/remove of one box.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("state_dir", &self.inner.layout.state_dir)
            .field("cgroup_parent", &self.inner.layout.cgroup_parent)
            .finish_non_exhaustive()
    }
}

impl LocalRuntime {
    /// Prepares the state dir, checks runc and tini, installs the box agent and makes this
    /// process a child subreaper (process-wide; see `reaper.rs`).
    pub fn new(config: LocalRuntimeConfig) -> io::Result<LocalRuntime> {
        if !check_instance(&config.instance) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "runtime instance {:?} must be 1-64 characters of A-Z, a-z, 0-9, '-', '_'",
                    config.instance
                ),
            ));
        }
        let runc_binary = find_binary(&config.runc_binary)?;
        if !config.tini_path.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "tini not found at {} (Debian package tini ships /usr/bin/tini-static)",
                    config.tini_path.display()
                ),
            ));
        }
        let layout = Layout::new(&config.state_dir, &config.instance);
        for dir in [&layout.state_dir, &layout.bundles, &layout.runc_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", dir.display())))?;
        }
        let agent = agent::install(&layout.agent).map_err(|e| {
            io::Error::new(e.kind(), format!("install {}: {e}", layout.agent.display()))
        })?;
        // The idle helper of earlier versions; boxes still running it hold their own mount.
        let _ = std::fs::remove_file(layout.state_dir.join("zomg-idle"));
        reaper::become_subreaper()
            .map_err(|e| io::Error::new(e.kind(), format!("become child subreaper: {e}")))?;
        Ok(LocalRuntime {
            inner: Arc::new(Inner {
                runc: Runc::new(runc_binary, layout.runc_root.clone()),
                layout,
                agent,
                tini: config.tini_path,
                nofile: bundle::nofile_limit(),
                seq: AtomicU64::new(0),
                locks: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The state dir this instance owns.
    pub fn state_dir(&self) -> &Path {
        &self.inner.layout.state_dir
    }

    /// The cgroup parent of this instance's boxes, relative to each hierarchy
    /// (`/zomg-<instance>`).
    pub fn cgroup_parent(&self) -> &str {
        &self.inner.layout.cgroup_parent
    }

    /// Removes this instance's cgroup parent dirs when no box uses them any more (e.g. at
    /// shutdown after stopping every box). Dirs still in use are left alone.
    pub async fn remove_instance_cgroups(&self) {
        for dir in cgroup::existing_dirs(&self.inner.layout.cgroup_parent) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn fail(id: &str, step: &str, message: impl fmt::Display) -> RuntimeError {
        RuntimeError::Failed {
            id: id.to_string(),
            step: step.to_string(),
            message: message.to_string(),
        }
    }

    fn container(&self, id: &str) -> RuntimeResult<Option<ContainerState>> {
        state::read(&self.inner.layout.runc_root, id)
            .map_err(|e| Self::fail(id, "read runc state", e))
    }

    /// The state of a box that must be running (for exec).
    fn running(&self, id: &str) -> RuntimeResult<ContainerState> {
        check_id(id)?;
        match self.container(id)? {
            None => Err(RuntimeError::NotFound(id.to_string())),
            Some(st) if st.init_alive() => Ok(st),
            Some(_) => Err(RuntimeError::NotRunning(id.to_string())),
        }
    }

    fn exec_files(&self, id: &str) -> ExecFiles {
        // The server's pid keeps names apart even if two processes share a state dir.
        let n = format!(
            "{}-{}",
            std::process::id(),
            self.inner.seq.fetch_add(1, Ordering::Relaxed)
        );
        let scratch = self.inner.layout.scratch(id);
        ExecFiles {
            runc_log: scratch.join(format!("exec-{n}.json")),
            pid_file: scratch.join(format!("exec-{n}.pid")),
            output: self
                .inner
                .layout
                .logs(id)
                .join(format!(".starting-{n}.log")),
        }
    }

    /// SIGKILLs the init (the kernel then kills the whole pid namespace) and waits for it.
    async fn kill_init(&self, id: &str, handle: &ProcessHandle) -> RuntimeResult<()> {
        handle
            .signal(rustix::process::Signal::KILL)
            .map_err(|e| Self::fail(id, "kill box init", e))?;
        if handle.exited_within(KILL_TIMEOUT).await {
            Ok(())
        } else {
            Err(Self::fail(
                id,
                "kill box init",
                format!("still running {KILL_TIMEOUT:?} after SIGKILL"),
            ))
        }
    }

    /// Sends SIGTERM to every process and waits until only tini and the agent are left, the
    /// init has exited, or `grace` has passed.
    async fn terminate(
        &self,
        id: &str,
        st: &ContainerState,
        handle: &ProcessHandle,
        grace: Duration,
    ) {
        let deadline = Instant::now() + grace;
        if let Err(e) = self.inner.runc.kill(id, "TERM", true).await {
            // The box may have stopped meanwhile; anything else ends in SIGKILL anyway.
            tracing::debug!(box_id = id, error = %e, "runc kill --all TERM failed");
        }
        let procs = st.procs_file();
        let init = st.init_process_pid;
        let mut delay = Duration::from_millis(1);
        loop {
            if let Some(procs) = &procs {
                if only_init_and_agent_left(init, state::cgroup_procs(procs)) {
                    return;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            tokio::select! {
                _ = handle.exited() => return,
                _ = tokio::time::sleep(delay.min(deadline - now)) => {}
            }
            delay = (delay * 2).min(Duration::from_millis(5));
        }
    }
}

/// Whether `procs` (a box's processes) are only its init, the agent's supervisor (a child of
/// the init; or the idle helper of a box started by an earlier server) and the agent's
/// worker (a child of the supervisor), apart from processes that have exited. A command of
/// the worker that has exited still counts until the worker reaps it: the worker reports
/// the exit first, and killing the box before would lose that report.
fn only_init_and_agent_left(init: u32, procs: Vec<u32>) -> bool {
    let stats: Vec<(u32, Option<ProcStat>)> = procs
        .into_iter()
        .map(|pid| (pid, ProcStat::read(pid)))
        .collect();
    let alive_agent = |ppids: &[u32]| -> Vec<u32> {
        stats
            .iter()
            .filter_map(|(pid, s)| {
                let s = s.as_ref()?;
                let helper =
                    s.comm == agent::AGENT_COMM || (s.comm == LEGACY_IDLE_COMM && ppids == [init]);
                (helper && ppids.contains(&s.ppid) && !s.is_dead()).then_some(*pid)
            })
            .collect()
    };
    let supervisors = alive_agent(&[init]);
    let workers = alive_agent(&supervisors);
    stats.iter().all(|(pid, s)| {
        *pid == init
            || supervisors.contains(pid)
            || workers.contains(pid)
            || s.as_ref()
                .is_none_or(|s| s.is_dead() && !workers.contains(&s.ppid))
    })
}

/// Resolves a binary name through `PATH` (a path with a slash is taken as is).
fn find_binary(binary: &Path) -> io::Result<PathBuf> {
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "runc binary {} not found (install the runc package)",
                binary.display()
            ),
        )
    };
    if binary.components().count() > 1 {
        return if binary.is_file() {
            Ok(binary.to_path_buf())
        } else {
            Err(not_found())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or_else(not_found)
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn start(&self, spec: &BoxSpec) -> RuntimeResult<()> {
        let id = spec.id.as_str();
        check_id(id)?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        if !spec.rootfs.is_dir() {
            return Err(Self::fail(
                id,
                "check root filesystem",
                format!("{} is not a directory", spec.rootfs.display()),
            ));
        }
        if let Some(st) = self.container(id)? {
            if st.init_alive() && !state::is_created(&self.inner.layout.runc_root, id) {
                return Err(Self::fail(id, "start", "box is already running"));
            }
            // A stopped (or half-created) container with this id: replace it.
            self.inner
                .runc
                .delete_force(id)
                .await
                .map_err(|e| Self::fail(id, "runc delete", e))?;
        }

        let layout = self.inner.layout.clone();
        let tini = self.inner.tini.clone();
        let owned_spec = spec.clone();
        let nofile = self.inner.nofile;
        let bundle =
            tokio::task::spawn_blocking(move || bundle::write(&layout, &tini, nofile, &owned_spec))
                .await
                .map_err(|e| Self::fail(id, "write bundle", e))?
                .map_err(|e| Self::fail(id, "write bundle", e))?;
        let console = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&bundle.console)
            .map_err(|e| Self::fail(id, "open console log", e))?;

        let started = self
            .inner
            .runc
            .run_detached(
                id,
                &bundle.dir,
                &bundle.init_pid_file,
                console,
                &bundle.run_log,
            )
            .await;
        let result = match started {
            Err(message) => Err(Self::fail(id, "runc run", message)),
            Ok(()) => match read_pid(&bundle.init_pid_file) {
                None => Err(Self::fail(
                    id,
                    "read init pid",
                    bundle.init_pid_file.display(),
                )),
                Some(pid) => {
                    // runc has exited: its init is ours to reap now.
                    reaper::adopt(pid);
                    let up = netns::loopback_up(pid)
                        .await
                        .map_err(|e| Self::fail(id, "bring up loopback", e));
                    if up.is_ok() && !agent::wait_listening(pid, AGENT_START_TIMEOUT).await {
                        tracing::warn!(
                            box_id = id,
                            "the box agent is not listening after {AGENT_START_TIMEOUT:?}; \
                             execs use runc exec until it does"
                        );
                    }
                    up
                }
            },
        };
        if let Err(error) = result {
            // Leave no half-created container or cgroups behind; report both on failure.
            let cleanup = self.inner.runc.delete_force(id).await;
            let leftovers =
                cgroup::remove_dirs(cgroup::existing_dirs(&self.inner.layout.cgroups_path(id)))
                    .await;
            return Err(match (error, cleanup, leftovers) {
                (e, Ok(()), Ok(())) => e,
                (e, c, l) => {
                    let mut notes = Vec::new();
                    if let Err(c) = c {
                        notes.push(format!("runc delete: {c}"));
                    }
                    if let Err(l) = l {
                        notes.push(format!("cgroups: {l}"));
                    }
                    Self::fail(
                        id,
                        "start",
                        format!("{e} (cleanup also failed: {})", notes.join("; ")),
                    )
                }
            });
        }
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        check_id(id)?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let Some(st) = self.container(id)? else {
            return Ok(());
        };
        let handle = ProcessHandle::open(st.init_process_pid, Some(st.init_process_start))
            .map_err(|e| Self::fail(id, "open box init", e))?;
        if let Some(handle) = handle.filter(|_| st.init_alive()) {
            // A frozen task (a crash during a fork's snapshots) would not act on signals.
            if let Ok(freezer) = Freezer::of(&st) {
                freezer.thaw().ok();
            }
            if !grace.is_zero() {
                self.terminate(id, &st, &handle, grace).await;
            }
            self.kill_init(id, &handle).await?;
        }
        self.inner
            .runc
            .delete_force(id)
            .await
            .map_err(|e| Self::fail(id, "runc delete", e))
    }

    async fn state(&self, id: &str) -> RuntimeResult<RunState> {
        check_id(id)?;
        Ok(match self.container(id)? {
            None => RunState::Missing,
            Some(st) if st.init_alive() => RunState::Running {
                pid: st.init_process_pid,
            },
            Some(_) => RunState::Stopped,
        })
    }

    async fn list(&self) -> RuntimeResult<Vec<String>> {
        state::list(&self.inner.layout.runc_root).map_err(|e| Self::fail("*", "list runc state", e))
    }

    async fn update_resources(&self, id: &str, resources: Resources) -> RuntimeResult<()> {
        check_id(id)?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        self.running(id)?;
        self.inner
            .runc
            .update(id, resources)
            .await
            .map_err(|e| Self::fail(id, "runc update", e))
    }

    async fn freeze(&self, id: &str) -> RuntimeResult<()> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let st = self.running(id)?;
        let freezer = Freezer::of(&st).map_err(|e| Self::fail(id, "freeze", e))?;
        freezer
            .freeze(FREEZE_TIMEOUT)
            .await
            .map_err(|e| Self::fail(id, "freeze", e))
    }

    async fn thaw(&self, id: &str) -> RuntimeResult<()> {
        check_id(id)?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let Some(st) = self.container(id)? else {
            return Ok(());
        };
        let Ok(freezer) = Freezer::of(&st) else {
            return Ok(());
        };
        freezer.thaw().map_err(|e| Self::fail(id, "thaw", e))
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        check_id(id)?;
        let lock = self.lock(id);
        let guard = lock.lock().await;
        let mut errors = Vec::new();
        let mut cgroup_dirs = cgroup::existing_dirs(&self.inner.layout.cgroups_path(id));
        if let Some(st) = self.container(id)? {
            cgroup_dirs.extend(st.cgroup_paths.values().cloned());
            if let Ok(freezer) = Freezer::of(&st) {
                freezer.thaw().ok();
            }
            match ProcessHandle::open(st.init_process_pid, Some(st.init_process_start)) {
                Ok(Some(handle)) if st.init_alive() => {
                    if let Err(e) = self.kill_init(id, &handle).await {
                        errors.push(e.to_string());
                    }
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("open box init: {e}")),
            }
            if let Err(e) = self.inner.runc.delete_force(id).await {
                errors.push(format!("runc delete: {e}"));
            }
        }
        cgroup_dirs.sort();
        cgroup_dirs.dedup();
        if let Err(e) = cgroup::remove_dirs(cgroup_dirs).await {
            errors.push(format!("remove cgroups: {e}"));
        }
        match std::fs::remove_dir_all(self.inner.layout.bundle(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                errors.push(format!("remove bundle: {e}"))
            }
            _ => {}
        }
        drop(guard);
        if errors.is_empty() {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.remove(id);
            Ok(())
        } else {
            Err(Self::fail(id, "remove", errors.join("; ")))
        }
    }

    async fn exec(&self, id: &str, spec: ExecSpec) -> RuntimeResult<ExecProcess> {
        let st = self.running(id)?;
        exec::check_argv(&spec)?;
        let target = agent::Target {
            id: id.to_string(),
            init: st.init_process_pid,
            init_start: st.init_process_start,
            config: self.inner.layout.bundle(id).join("config.json"),
            agent: self.inner.agent,
        };
        match agent::exec(&target, &spec).await {
            Ok(result) => return result,
            Err(agent::Unavailable::Untrusted(why)) => {
                tracing::warn!(box_id = id, reason = %why, "not using the box agent; exec through runc");
            }
            Err(agent::Unavailable::Unreachable(why)) => {
                tracing::debug!(box_id = id, reason = %why, "box agent unavailable; exec through runc");
            }
        }
        let files = self.exec_files(id);
        match spec.tty {
            Some(size) => exec::tty(&self.inner.runc, files, id, spec, size).await,
            None => exec::piped(&self.inner.runc, files, id, spec).await,
        }
    }

    async fn exec_detached(&self, id: &str, spec: ExecSpec) -> RuntimeResult<Detached> {
        self.running(id)?;
        let files = self.exec_files(id);
        exec::detached(
            &self.inner.runc,
            files,
            &self.inner.layout.logs(id),
            id,
            spec,
        )
        .await
    }

    async fn shutdown(&self) {
        // Only empty directories go: the cgroups of running boxes keep their parent.
        self.remove_instance_cgroups().await;
    }

    fn log_path(&self, id: &str, pid: u32) -> PathBuf {
        self.inner.layout.logs(id).join(format!("{pid}.log"))
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
