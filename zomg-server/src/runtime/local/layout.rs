//! Where everything of one runtime instance lives on the host.
//!
//! All files sit under the configured state dir and all cgroups under `/zomg-<instance>`, so
//! two servers with different state dirs and instance names never touch each other's boxes.

use std::path::{Path, PathBuf};

use crate::runtime::{RuntimeError, RuntimeResult};

/// Paths of one runtime instance.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The state dir everything else sits under.
    pub state_dir: PathBuf,
    /// `runc --root`.
    pub runc_root: PathBuf,
    /// Parent of every bundle.
    pub bundles: PathBuf,
    /// The box agent binary (see `agent.rs`).
    pub agent: PathBuf,
    /// The cgroup parent of every box, relative to each controller's root (`/zomg-<instance>`).
    pub cgroup_parent: String,
}

impl Layout {
    pub fn new(state_dir: &Path, instance: &str) -> Self {
        Layout {
            state_dir: state_dir.to_path_buf(),
            runc_root: state_dir.join("runc"),
            bundles: state_dir.join("bundles"),
            agent: state_dir.join("zomg-agent"),
            cgroup_parent: format!("/zomg-{instance}"),
        }
    }

    /// The bundle of one box: `config.json`, generated `/etc` files, `console.log`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }

    /// Background-process logs of one box, named `<pid in box>.log`.
    pub fn logs(&self, id: &str) -> PathBuf {
        self.bundle(id).join("logs")
    }

    /// Scratch files of one boot (pid files, runc error logs); emptied on every start.
    pub fn scratch(&self, id: &str) -> PathBuf {
        self.bundle(id).join("run")
    }

    /// The box's `cgroupsPath` in config.json.
    pub fn cgroups_path(&self, id: &str) -> String {
        format!("{}/{}", self.cgroup_parent, id)
    }
}

/// Checks that `id` is usable as a runc container id and as a path component.
pub(crate) fn check_id(id: &str) -> RuntimeResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Failed {
            id: id.to_string(),
            step: "check box id".to_string(),
            message: "a runtime id is 1-128 characters of a-z, A-Z, 0-9, '-', '_', '.', '+'"
                .to_string(),
        })
    }
}

/// Checks that an instance name is safe in a cgroup path.
pub(crate) fn check_instance(instance: &str) -> bool {
    !instance.is_empty()
        && instance.len() <= 64
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_are_rejected() {
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["box-1", "p_b.1", "0123abcd"] {
            assert!(check_id(good).is_ok(), "{good:?} rejected");
        }
        assert!(check_instance("dev-1"));
        assert!(!check_instance("a/b"));
    }

    #[test]
    fn everything_is_under_the_state_dir() {
        let l = Layout::new(Path::new("/s"), "x");
        assert_eq!(l.bundle("b"), Path::new("/s/bundles/b"));
        assert_eq!(l.runc_root, Path::new("/s/runc"));
        assert_eq!(l.cgroups_path("b"), "/zomg-x/b");
    }
}
