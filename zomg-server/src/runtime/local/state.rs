//! Container state read straight from runc's state dir and `/proc`, without running runc.
//!
//! `runc state` costs a process spawn (~10 ms); reading `<root>/<id>/state.json` and
//! `/proc/<pid>/stat` costs microseconds, so hot paths (exec, stop polling) use this. The
//! fields read (`init_process_pid`, `init_process_start`, `cgroup_paths`) are the ones runc
//! itself uses to decide whether a container runs, and have been stable across runc 1.x.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The parts of runc's `state.json` the runtime needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ContainerState {
    /// Host pid of the container's init (tini).
    pub init_process_pid: u32,
    /// Its start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub init_process_start: u64,
    /// Cgroup directory per controller.
    #[serde(default)]
    pub cgroup_paths: BTreeMap<String, PathBuf>,
}

impl ContainerState {
    /// Whether the init process still runs (not exited, not a zombie, not a recycled pid).
    pub fn init_alive(&self) -> bool {
        ProcStat::read(self.init_process_pid)
            .is_some_and(|s| s.start_time == self.init_process_start && !s.is_dead())
    }

    /// A `cgroup.procs` file of the container (any controller lists every process).
    pub fn procs_file(&self) -> Option<PathBuf> {
        ["pids", "memory", "freezer", "cpu"]
            .iter()
            .find_map(|c| self.cgroup_paths.get(*c))
            .or_else(|| self.cgroup_paths.values().next())
            .map(|p| p.join("cgroup.procs"))
    }
}

/// Reads `<runc_root>/<id>/state.json`; `None` when runc has no such container.
pub(crate) fn read(runc_root: &Path, id: &str) -> io::Result<Option<ContainerState>> {
    let path = runc_root.join(id).join("state.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Whether runc left the container in the "created" state (init waiting on `exec.fifo`),
/// which only happens when a `runc run` was interrupted.
pub(crate) fn is_created(runc_root: &Path, id: &str) -> bool {
    runc_root.join(id).join("exec.fifo").exists()
}

/// Ids of every container under `runc_root`.
pub(crate) fn list(runc_root: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(runc_root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.path().join("state.json").exists() {
            if let Some(name) = entry.file_name().to_str() {
                ids.push(name.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// The fields of `/proc/<pid>/stat` the runtime needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// The kernel's `PF_*` flags.
    pub flags: u64,
    pub start_time: u64,
}

/// `PF_EXITING`: the process has begun to exit (for a pid namespace's init, also while it
/// waits for the rest of the namespace to die).
const PF_EXITING: u64 = 0x4;

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when the process is gone (reaped).
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Option<ProcStat> {
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        Some(ProcStat {
            comm,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            flags: fields.get(6)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// Exited: a zombie waiting to be reaped, or dead.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Exited or on its way out.
    pub fn is_exiting(&self) -> bool {
        self.is_dead() || self.flags & PF_EXITING != 0
    }
}

/// The pid of host process `host_pid` inside its innermost pid namespace (last `NSpid:`
/// field of `/proc/<pid>/status`; still readable while the process is a zombie).
pub(crate) fn pid_in_namespace(host_pid: u32) -> io::Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no NSpid in /proc/{host_pid}/status"),
            )
        })
}

/// Pids listed in a `cgroup.procs` file (empty when the cgroup is gone).
pub(crate) fn cgroup_procs(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm_parses() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 \
                    1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = ProcStat::parse(line).expect("parse");
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 7);
        assert_eq!(s.flags, 4_194_560);
        assert!(!s.is_exiting());
        assert_eq!(s.start_time, 12345);
    }

    #[test]
    fn own_process_is_alive_and_in_its_namespace() {
        let pid = std::process::id();
        let s = ProcStat::read(pid).expect("own stat");
        assert!(!s.is_dead());
        assert!(pid_in_namespace(pid).expect("NSpid") > 0);
    }

    #[test]
    fn missing_state_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path(), "nope").expect("read").is_none());
        assert!(list(dir.path()).expect("list").is_empty());
        assert!(list(&dir.path().join("absent")).expect("list").is_empty());
    }
}
