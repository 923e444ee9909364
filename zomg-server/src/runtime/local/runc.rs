//! A thin tokio wrapper over the runc CLI.
//!
//! Every invocation passes `--root <state_dir>/runc`, so runc's state is per runtime
//! instance. Commands whose stdio is handed to a box process (`run -d`, `exec`) also get
//! `--log <file> --log-format json`: runc then writes its own failures there as JSON lines,
//! which tells them apart from the box process's output and exit code.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

use crate::runtime::Resources;

/// CFS period used for every box (100 ms, the kernel default).
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// The runc binary and its state root.
#[derive(Debug, Clone)]
pub(crate) struct Runc {
    binary: PathBuf,
    root: PathBuf,
}

impl Runc {
    pub fn new(binary: PathBuf, root: PathBuf) -> Self {
        Runc { binary, root }
    }

    /// `runc --root R [--log L --log-format json]`, stdin from /dev/null.
    pub fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).arg("--log-format").arg("json");
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a short subcommand to completion; `Err` carries runc's stderr.
    async fn simple<I, S>(&self, args: I) -> Result<(), String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self
            .command(None)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(describe_failure(&output.status, &output.stderr))
        }
    }

    /// `runc run -d`: starts the container's init with stdout/stderr on `console` (a file,
    /// never a pipe: the init inherits them and outlives runc). Returns once it runs.
    pub async fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console: std::fs::File,
        log: &Path,
    ) -> Result<(), String> {
        let console_err = console
            .try_clone()
            .map_err(|e| format!("cannot duplicate console log: {e}"))?;
        let status = self
            .command(Some(log))
            .arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdout(console)
            .stderr(console_err)
            // A new process group: a Ctrl-C aimed at the server must not reach the box.
            .process_group(0)
            .status()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if status.success() {
            Ok(())
        } else {
            let errors = log_errors(log);
            if errors.is_empty() {
                Err(format!("runc exited with {status}"))
            } else {
                Err(errors.join("; "))
            }
        }
    }

    /// `runc kill [--all] <id> <signal>`.
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), String> {
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal]);
        self.simple(args).await
    }

    /// `runc delete --force <id>`: kills what is left and removes state and cgroups.
    /// A container that does not exist counts as deleted.
    pub async fn delete_force(&self, id: &str) -> Result<(), String> {
        match self.simple(["delete", "--force", id]).await {
            Err(e) if e.contains("does not exist") => Ok(()),
            other => other,
        }
    }

    /// `runc update` with every limit of `resources` (0 = unlimited).
    pub async fn update(&self, id: &str, resources: Resources) -> Result<(), String> {
        let mut args = vec!["update".to_string()];
        args.extend(update_args(resources));
        args.push(id.to_string());
        self.simple(args).await
    }
}

/// Flags for `runc update`. On cgroup v1 the swap limit (memory.memsw) is set to the memory
/// limit, so the limit bounds memory + swap; runc orders the two writes itself.
pub(crate) fn update_args(r: Resources) -> Vec<String> {
    let memory = memory_bytes(r.memory_mb).unwrap_or(-1).to_string();
    let quota = cpu_quota(r.millicpus).unwrap_or(-1).to_string();
    let pids = pids_limit(r.pids).unwrap_or(-1).to_string();
    vec![
        "--memory".into(),
        memory.clone(),
        "--memory-swap".into(),
        memory,
        "--cpu-period".into(),
        CPU_PERIOD_US.to_string(),
        "--cpu-quota".into(),
        quota,
        "--pids-limit".into(),
        pids,
    ]
}

/// Memory limit in bytes, `None` for unlimited (0).
pub(crate) fn memory_bytes(memory_mb: u64) -> Option<i64> {
    (memory_mb > 0).then(|| i64::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX))
}

/// CFS quota for `millicpus` with [`CPU_PERIOD_US`], `None` for unlimited (0). The kernel's
/// minimum quota is 1 ms.
pub(crate) fn cpu_quota(millicpus: u32) -> Option<i64> {
    (millicpus > 0).then(|| (i64::from(millicpus) * CPU_PERIOD_US as i64 / 1000).max(1000))
}

/// Process limit, `None` for unlimited (0).
pub(crate) fn pids_limit(pids: u32) -> Option<i64> {
    (pids > 0).then_some(i64::from(pids))
}

#[derive(Deserialize)]
struct LogLine {
    level: String,
    msg: String,
}

/// The error messages runc wrote to a JSON `--log` file (empty when it wrote none).
pub(crate) fn log_errors(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
        .filter(|l| l.level == "error" || l.level == "fatal")
        .map(|l| l.msg)
        .collect()
}

fn describe_failure(status: &std::process::ExitStatus, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("runc exited with {status}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_translate_to_cgroup_values() {
        assert_eq!(memory_bytes(256), Some(268_435_456));
        assert_eq!(memory_bytes(0), None);
        assert_eq!(cpu_quota(500), Some(50_000));
        assert_eq!(cpu_quota(2000), Some(200_000));
        assert_eq!(cpu_quota(1), Some(1000));
        assert_eq!(cpu_quota(0), None);
        assert_eq!(pids_limit(0), None);
        let args = update_args(Resources {
            millicpus: 1500,
            memory_mb: 512,
            pids: 100,
        });
        assert_eq!(
            args.join(" "),
            "--memory 536870912 --memory-swap 536870912 --cpu-period 100000 \
             --cpu-quota 150000 --pids-limit 100"
        );
    }

    #[test]
    fn json_log_errors_are_extracted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("l.json");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\",\"time\":\"t\"}\n\
             {\"level\":\"error\",\"msg\":\"exec failed: x\",\"time\":\"t\"}\n",
        )
        .expect("write");
        assert_eq!(log_errors(&log), vec!["exec failed: x".to_string()]);
        assert!(log_errors(&dir.path().join("absent")).is_empty());
    }
}
