//! The box's cgroup directories on the host (cgroup v1: one hierarchy per controller).
//!
//! runc creates `<hierarchy>/zomg-<instance>/<id>` in every hierarchy and removes them on
//! `delete`; [`remove_box_dirs`] sweeps whatever an interrupted delete left behind.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where cgroup hierarchies are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `<hierarchy>/<rel>` for every hierarchy under [`CGROUP_ROOT`] where it exists.
pub(crate) fn existing_dirs(rel: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let rel = rel.trim_start_matches('/');
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes the given cgroup dirs (children first), retrying briefly while the last
/// processes leave them. Missing dirs are fine.
pub(crate) async fn remove_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> io::Result<()> {
    let mut first_error = None;
    for dir in dirs {
        if let Err(e) = remove_dir(&dir).await {
            first_error.get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", dir.display())));
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn remove_dir(dir: &Path) -> io::Result<()> {
    // A box cannot create sub-cgroups (its /sys/fs/cgroup is read-only), but runc could.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                Box::pin(remove_dir(&entry.path())).await?;
            }
        }
    }
    let mut delay = Duration::from_millis(1);
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::remove_dir(dir)
}
