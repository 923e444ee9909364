//! Reaping what runc leaves behind, and waiting for processes through pidfds.
//!
//! `runc run -d` and `runc exec -d` exit while the process they started keeps running; the
//! kernel then hands that process to the nearest *child subreaper* among runc's ancestors,
//! or to host pid 1. Two things go wrong when nobody reaps it promptly:
//! - a finished background process stays a zombie, and
//! - a box cannot finish stopping: when its init (tini) dies the kernel waits until every
//!   process of the pid namespace is reaped, including zombies whose parent is outside it.
//!
//! Measured on the development host, whose pid 1 reaps only every ~2 s, a stop took 1.1 s
//! instead of a few ms. So [`LocalRuntime`](super::LocalRuntime) makes the server a child
//! subreaper and reaps exactly the processes it knows runc left it (box inits and background
//! processes), each through a pidfd. It never calls `wait(-1)`, which would steal the exit
//! status of children that tokio (or other modules) spawned and wait for.
//!
//! Consequences: while the server runs, box inits and background processes are its
//! children; when it exits they pass to host pid 1 and keep running. A process of another
//! module that daemonizes would also be adopted and, unknown to this reaper, stay a zombie
//! until the server exits — the server's own helpers must not daemonize.
#![allow(unsafe_code)] // tokio's AsyncFd registration is an unsafe fn (fd ownership contract).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::state::ProcStat;

/// Makes the calling process a child subreaper (process-wide, idempotent).
pub(crate) fn become_subreaper() -> io::Result<()> {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me)).map_err(io::Error::from)
}

/// A pidfd for host process `pid`; `None` when it no longer exists, or when `start_time`
/// is given and the pid now belongs to another process.
pub(crate) fn pidfd(pid: u32, start_time: Option<u64>) -> io::Result<Option<OwnedFd>> {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(None);
    };
    let fd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Checked after opening: from here on the pidfd pins this very process.
    if let Some(start) = start_time {
        if ProcStat::read(pid).is_none_or(|s| s.start_time != start) {
            return Ok(None);
        }
    }
    Ok(Some(fd))
}

/// A process to wait for through its pidfd.
#[derive(Debug)]
pub(crate) struct ProcessHandle {
    fd: AsyncFd<OwnedFd>,
}

impl ProcessHandle {
    /// Opens a handle on `pid` (see [`pidfd`]); `None` when the process is gone.
    pub fn open(pid: u32, start_time: Option<u64>) -> io::Result<Option<ProcessHandle>> {
        match pidfd(pid, start_time)? {
            Some(fd) => {
                // SAFETY: the OwnedFd is an open pidfd, owned by the AsyncFd for its whole life
                // and never replaced, so its raw fd stays the same open file description.
                let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
                Ok(Some(ProcessHandle { fd }))
            }
            None => Ok(None),
        }
    }

    /// Resolves when the process has exited (a zombie counts as exited).
    pub async fn exited(&self) {
        // A pidfd turns readable when its process exits; errors mean it is unusable,
        // which callers treat like an exit and confirm through /proc or runc.
        let _ = self.fd.readable().await;
    }

    /// Waits up to `timeout` for the exit; `true` when it happened.
    pub async fn exited_within(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.exited()).await.is_ok()
    }

    /// Sends `signal` to the process (safe against pid reuse).
    pub fn signal(&self, signal: rustix::process::Signal) -> io::Result<()> {
        match rustix::process::pidfd_send_signal(self.fd.get_ref(), signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reaps the process if it is an exited child of ours; a no-op otherwise.
    fn reap(&self) {
        let _ = rustix::process::waitid(
            WaitId::PidFd(self.fd.get_ref().as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
    }
}

/// Takes over reaping host process `pid`, which an exited runc left to this (subreaper)
/// process: a task waits for its exit and reaps it. Does nothing when it is already gone.
pub(crate) fn adopt(pid: u32) {
    let Ok(Some(handle)) = ProcessHandle::open(pid, None) else {
        return;
    };
    tokio::spawn(async move {
        handle.exited().await;
        handle.reap();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handle_sees_exit_and_ignores_recycled_pids() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .expect("spawn sleep (coreutils)");
        let pid = child.id().expect("pid");
        let start = ProcStat::read(pid).expect("stat").start_time;
        assert!(
            ProcessHandle::open(pid, Some(start + 1))
                .expect("open")
                .is_none()
        );
        let handle = ProcessHandle::open(pid, Some(start))
            .expect("open")
            .expect("alive");
        assert!(handle.exited_within(Duration::from_secs(5)).await);
        child.wait().await.expect("wait");
        assert!(
            ProcessHandle::open(pid, Some(start))
                .expect("open")
                .is_none()
        );
    }
}
