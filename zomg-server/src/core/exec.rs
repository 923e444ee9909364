//! Running code in a box: exec (piped or on a terminal), background processes, their logs.

use std::path::PathBuf;

use zomg_sdk::{BoxName, BoxStatus, ExecStart, LogOutput, ProjectName};

use super::BoxService;
use super::error::{CoreError, CoreResult};
use super::rules;
use crate::runtime::{Detached, ExecProcess, ExecSpec, RunState};
use crate::store::BoxRecord;

/// The command of `console`: a login shell, bash when the base has it.
const LOGIN_SHELL: &str =
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi";

impl BoxService {
    /// Loads a box that must be running to exec into it.
    pub async fn running_box(
        &self,
        project: &ProjectName,
        name: &BoxName,
    ) -> CoreResult<BoxRecord> {
        let b = self.load(project, name)?;
        if b.status != BoxStatus::Running {
            return Err(CoreError::Conflict {
                code: "box_not_running",
                message: format!("box \"{name}\" is not running (status: {})", b.status),
            });
        }
        Ok(b)
    }

    /// Turns a start message into what the runtime runs, checking it.
    fn exec_spec(&self, project: &ProjectName, start: ExecStart) -> CoreResult<ExecSpec> {
        if let Some(user) = &start.user {
            return Err(CoreError::NotFound {
                code: "user_not_found",
                message: format!("user \"{user}\" does not exist in project \"{project}\""),
            });
        }
        for k in start.env.keys() {
            if !rules::is_env_name(k) {
                return Err(CoreError::invalid(format!(
                    "invalid environment variable name {k:?}"
                )));
            }
        }
        if let Some(cwd) = &start.cwd {
            if !cwd.starts_with('/') {
                return Err(CoreError::invalid(format!(
                    "working directory {cwd:?} must be an absolute path"
                )));
            }
        }
        let argv = match start.shell.as_deref() {
            Some(shell @ ("sh" | "bash")) => {
                vec![shell.to_owned(), "-c".to_owned(), start.command.join(" ")]
            }
            Some(other) => {
                return Err(CoreError::invalid(format!(
                    "unknown shell {other:?}: use sh or bash"
                )));
            }
            None => start.command,
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(CoreError::invalid("command is empty"));
        }
        let tty = start.tty.then(|| {
            start
                .size
                .map_or((80, 24), |s| (s.cols.max(1), s.rows.max(1)))
        });
        Ok(ExecSpec {
            argv,
            env: start.env,
            cwd: start.cwd,
            user: None,
            tty,
        })
    }

    /// Starts a command in a running box.
    pub async fn exec(
        &self,
        project: &ProjectName,
        name: &BoxName,
        start: ExecStart,
    ) -> CoreResult<ExecProcess> {
        let b = self.running_box(project, name).await?;
        let spec = self.exec_spec(project, start)?;
        self.runtime().exec(&b.id, spec).await.map_err(exec_error)
    }

    /// Starts a login shell on a terminal of the given size.
    pub async fn console(
        &self,
        project: &ProjectName,
        name: &BoxName,
        size: (u16, u16),
    ) -> CoreResult<ExecProcess> {
        let b = self.running_box(project, name).await?;
        let spec = ExecSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()],
            tty: Some((size.0.max(1), size.1.max(1))),
            ..Default::default()
        };
        self.runtime().exec(&b.id, spec).await.map_err(exec_error)
    }

    /// Starts a background process whose output goes to its log.
    pub async fn exec_detached(
        &self,
        project: &ProjectName,
        name: &BoxName,
        start: ExecStart,
    ) -> CoreResult<Detached> {
        let b = self.running_box(project, name).await?;
        let mut spec = self.exec_spec(project, start)?;
        spec.tty = None;
        self.runtime()
            .exec_detached(&b.id, spec)
            .await
            .map_err(exec_error)
    }

    /// The log file of background process `pid` and whether the process still runs.
    pub async fn log_source(
        &self,
        project: &ProjectName,
        name: &BoxName,
        pid: u32,
    ) -> CoreResult<LogSource> {
        let b = self.load(project, name)?;
        let path = self.runtime().log_path(&b.id, pid);
        if !path.exists() {
            return Err(CoreError::NotFound {
                code: "log_not_found",
                message: format!("no background process with pid {pid} in box \"{name}\""),
            });
        }
        let init = match self.runtime().state(&b.id).await? {
            RunState::Running { pid } => Some(pid),
            _ => None,
        };
        Ok(LogSource {
            path,
            pid,
            init_pid: init,
        })
    }

    /// The log of a background process, the last `lines` lines when asked.
    pub async fn logs(
        &self,
        project: &ProjectName,
        name: &BoxName,
        pid: u32,
        lines: Option<usize>,
    ) -> CoreResult<LogOutput> {
        let src = self.log_source(project, name, pid).await?;
        let path = src.path.clone();
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            CoreError::internal("reading the log failed", format!("{}: {e}", path.display()))
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let output = match lines {
            Some(n) => last_lines(&text, n).to_owned(),
            None => text.into_owned(),
        };
        Ok(LogOutput {
            pid,
            output,
            running: src.running(),
        })
    }
}

/// Where a background process's output is, and how to tell whether it still runs.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// The log file on the host.
    pub path: PathBuf,
    /// The process's pid in the box.
    pub pid: u32,
    /// Host pid of the box's init, when the box runs.
    init_pid: Option<u32>,
}

impl LogSource {
    /// Whether the process is alive: its `/proc` entry, seen from inside the box's pid
    /// namespace, exists and is not a zombie.
    pub fn running(&self) -> bool {
        let Some(init) = self.init_pid else {
            return false;
        };
        let stat = format!("/proc/{init}/root/proc/{}/stat", self.pid);
        match std::fs::read_to_string(stat) {
            // The state follows the command name in parentheses, which may itself hold ')'.
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
            Err(_) => false,
        }
    }
}

/// The last `n` lines of `text` (a trailing newline does not count as a line).
fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

/// Maps a runtime failure of exec to what the client should hear.
fn exec_error(e: crate::runtime::RuntimeError) -> CoreError {
    use crate::runtime::RuntimeError;
    match e {
        RuntimeError::NotRunning(_) | RuntimeError::NotFound(_) => CoreError::Conflict {
            code: "box_not_running",
            message: "box is not running".to_owned(),
        },
        RuntimeError::Exec(m) => CoreError::Invalid {
            code: "exec_failed",
            message: m,
        },
        e => CoreError::internal("exec failed", e),
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn last_lines_of_logs() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }
}
