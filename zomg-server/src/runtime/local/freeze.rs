//! Freezing a box: every process of its cgroup stops being scheduled until it is thawed.
//!
//! `fork` freezes a running source for the few milliseconds of its snapshots, so that the
//! root and every data volume are captured at one instant. cgroup v1 uses the freezer
//! controller (`freezer.state`: write `FROZEN`, poll until it reads `FROZEN`, since the kernel
//! reports `FREEZING` while tasks finish their system calls); cgroup v2 uses `cgroup.freeze`
//! and the `frozen` key of `cgroup.events`. This is what `runc pause` does, without its
//! process spawn (~10 ms).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::state::ContainerState;

/// The freezer interface of one box's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Freezer {
    /// cgroup v1: the box's directory in the freezer hierarchy.
    V1(PathBuf),
    /// cgroup v2: the box's directory in the unified hierarchy.
    V2(PathBuf),
}

impl Freezer {
    /// The freezer of a container, from the cgroup paths runc recorded.
    pub(crate) fn of(st: &ContainerState) -> io::Result<Freezer> {
        if let Some(dir) = st.cgroup_paths.get("freezer") {
            return Ok(Freezer::V1(dir.clone()));
        }
        if let Some(dir) = st.cgroup_paths.get("") {
            return Ok(Freezer::V2(dir.clone()));
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the box has no freezer cgroup (neither cgroup v1 freezer nor cgroup v2)",
        ))
    }

    /// Freezes and waits until every task is frozen; on timeout, thaws and fails.
    pub(crate) async fn freeze(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_micros(50);
        loop {
            // v1 needs the write repeated while it reads FREEZING: each write retries the
            // tasks that were in an unfreezable state.
            self.write(true)?;
            if self.is_frozen()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let thawed = self.write(false);
                let mut message = format!("tasks did not freeze within {timeout:?}");
                if let Err(e) = thawed {
                    message.push_str(&format!(" (thawing again failed: {e})"));
                }
                return Err(io::Error::new(io::ErrorKind::TimedOut, message));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(5));
        }
    }

    /// Thaws. A cgroup that no longer exists (the box stopped) counts as thawed.
    pub(crate) fn thaw(&self) -> io::Result<()> {
        match self.write(false) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn write(&self, frozen: bool) -> io::Result<()> {
        let (file, value) = match self {
            Freezer::V1(dir) => (
                dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Freezer::V2(dir) => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        };
        std::fs::write(&file, value).map_err(|e| annotate(&file, e))
    }

    fn is_frozen(&self) -> io::Result<bool> {
        match self {
            Freezer::V1(dir) => {
                let file = dir.join("freezer.state");
                let state = std::fs::read_to_string(&file).map_err(|e| annotate(&file, e))?;
                Ok(state.trim() == "FROZEN")
            }
            Freezer::V2(dir) => {
                let file = dir.join("cgroup.events");
                let events = std::fs::read_to_string(&file).map_err(|e| annotate(&file, e))?;
                Ok(events.lines().any(|l| l.trim() == "frozen 1"))
            }
        }
    }
}

fn annotate(file: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", file.display()))
}
