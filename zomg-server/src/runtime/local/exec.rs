//! Running commands in a box with `runc exec`: piped, on a terminal, or detached.
//!
//! Exit statuses: runc exits with the command's code, and with 128 + N when the command was
//! killed by signal N; a command cannot be told apart from one that exits with that code
//! itself, so codes 129..=159 are reported as [`ExitStatus::Signal`] (the shell convention;
//! [`ExitStatus::code`] gives the same number either way).
//!
//! Failures of runc itself (exit 255, indistinguishable by code from a command exiting 255)
//! are read from runc's JSON `--log` file of that exec:
//! - command not found → exit 127, not executable → exit 126, as a shell reports them; runc
//!   also prints `exec failed: ... executable file not found in $PATH` on the command's
//!   stderr (a terminal's output with a tty), which is where a user looks;
//! - a missing working directory or an invalid user → [`RuntimeError::Exec`];
//! - a box that is gone → [`RuntimeError::NotFound`] / [`RuntimeError::NotRunning`].
//!
//! A detached command that cannot start is an error rather than a code: there is no exit
//! status to report it through.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::pty::Pty;
use super::reaper;
use super::runc::{Runc, log_errors};
use super::state;
use crate::runtime::{Detached, ExecProcess, ExecSpec, ExitStatus, RuntimeError, RuntimeResult};

/// One exec's files: runc's error log and (detached) its pid file.
#[derive(Debug)]
pub(crate) struct ExecFiles {
    pub runc_log: PathBuf,
    pub pid_file: PathBuf,
    pub output: PathBuf,
}

/// `runc --log L exec [flags] [--env K=V].. [--cwd D] [--user U] <id> <argv..>`.
fn command(runc: &Runc, log: &Path, id: &str, spec: &ExecSpec, flags: &[&OsStr]) -> Command {
    let mut cmd = runc.command(Some(log));
    cmd.arg("exec").args(flags);
    for (k, v) in &spec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(cwd) = &spec.cwd {
        cmd.arg("--cwd").arg(cwd);
    }
    if let Some(user) = &spec.user {
        cmd.arg("--user").arg(user);
    }
    // runc stops parsing flags at the container id, so argv is passed verbatim.
    cmd.arg(id).args(&spec.argv);
    cmd
}

pub(crate) fn check_argv(spec: &ExecSpec) -> RuntimeResult<()> {
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(RuntimeError::Exec("no command given".to_string()));
    }
    Ok(())
}

/// How long a command gets to exit on SIGTERM when its caller went away.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Stops a foreground `runc exec` whose `wait` future was dropped before the command ended
/// (the client disconnected): SIGTERM to runc, which forwards it to the command, then
/// SIGKILL after [`ABANDON_GRACE`]. Signals go through a pidfd, so a recycled pid is never
/// hit.
struct StopOnDrop {
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl StopOnDrop {
    fn new(child: &tokio::process::Child) -> Self {
        let pidfd = child
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
            .and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
        StopOnDrop { pidfd }
    }

    /// The command ended; nothing to stop.
    fn disarm(&mut self) {
        self.pidfd = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(fd) = self.pidfd.take() else { return };
        use rustix::process::{Signal, pidfd_send_signal};
        if pidfd_send_signal(&fd, Signal::TERM).is_err() {
            return; // already gone
        }
        std::thread::spawn(move || {
            std::thread::sleep(ABANDON_GRACE);
            let _ = pidfd_send_signal(&fd, Signal::KILL);
        });
    }
}

fn spawn_error(id: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::Failed {
        id: id.to_string(),
        step: "spawn runc exec".to_string(),
        message: e.to_string(),
    }
}

/// Runs `spec` with piped stdin, stdout and stderr. runc hands the pipes to the command
/// itself, so bytes are not copied by runc and stdout and stderr stay apart.
pub(crate) async fn piped(
    runc: &Runc,
    files: ExecFiles,
    id: &str,
    spec: ExecSpec,
) -> RuntimeResult<ExecProcess> {
    check_argv(&spec)?;
    let mut cmd = command(runc, &files.runc_log, id, &spec, &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(id, e))?;
    let mut guard = StopOnDrop::new(&child);
    let stdin = child.stdin.take().map(|s| Box::pin(s) as _);
    let stdout = child.stdout.take().map(|s| Box::pin(s) as _);
    let stderr = child.stderr.take().map(|s| Box::pin(s) as _);
    let id = id.to_string();
    Ok(ExecProcess {
        stdin,
        stdout,
        stderr,
        resizer: None,
        wait: Box::pin(async move {
            let status = child.wait().await.map_err(|e| spawn_error(&id, e));
            guard.disarm();
            finish(&id, &spec, status?, &files.runc_log)
        }),
    })
}

/// Runs `spec` on a new terminal of `cols` x `rows` (see `pty.rs`).
pub(crate) async fn tty(
    runc: &Runc,
    files: ExecFiles,
    id: &str,
    spec: ExecSpec,
    (cols, rows): (u16, u16),
) -> RuntimeResult<ExecProcess> {
    check_argv(&spec)?;
    let pty = Pty::open(cols, rows).map_err(|e| RuntimeError::Failed {
        id: id.to_string(),
        step: "allocate pty".to_string(),
        message: e.to_string(),
    })?;
    let mut cmd = command(runc, &files.runc_log, id, &spec, &["--tty".as_ref()]);
    let master = pty.attach(&mut cmd).map_err(|e| spawn_error(id, e))?;
    let mut child = cmd.spawn().map_err(|e| spawn_error(id, e))?;
    let mut guard = StopOnDrop::new(&child);
    // Close our copies of the slave: the master reads EOF once runc exits.
    drop(cmd);
    let id = id.to_string();
    Ok(ExecProcess {
        stdin: Some(Box::pin(master.writer())),
        stdout: Some(Box::pin(master.reader())),
        stderr: None,
        resizer: Some(Box::new(master.resizer())),
        wait: Box::pin(async move {
            let status = child.wait().await.map_err(|e| spawn_error(&id, e));
            guard.disarm();
            finish(&id, &spec, status?, &files.runc_log)
        }),
    })
}

/// Starts `spec` detached (`runc exec -d`) with stdout and stderr appended to `log` once it
/// is named by its pid (see [`detached`]'s steps), stdin from /dev/null.
///
/// runc exits right after starting the command; the server (a child subreaper) adopts it and
/// reaps it when it ends. The pid inside the box is read from `NSpid` before the reaper may
/// run, so it is known even for a command that has already exited.
pub(crate) async fn detached(
    runc: &Runc,
    files: ExecFiles,
    logs_dir: &Path,
    id: &str,
    spec: ExecSpec,
) -> RuntimeResult<Detached> {
    check_argv(&spec)?;
    let fail = |step: &str, message: String| RuntimeError::Failed {
        id: id.to_string(),
        step: step.to_string(),
        message,
    };
    let output = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&files.output)
        .map_err(|e| fail("create log", format!("{}: {e}", files.output.display())))?;
    let output_err = output
        .try_clone()
        .map_err(|e| fail("create log", e.to_string()))?;
    let pid_file = files.pid_file.as_os_str();
    let mut cmd = command(
        runc,
        &files.runc_log,
        id,
        &spec,
        &["--detach".as_ref(), "--pid-file".as_ref(), pid_file],
    );
    cmd.stdout(output)
        .stderr(output_err)
        // Its own process group: signals aimed at the server's group must not reach it.
        .process_group(0);
    let status = cmd.status().await.map_err(|e| spawn_error(id, e))?;
    let cleanup = |files: &ExecFiles| {
        let _ = std::fs::remove_file(&files.pid_file);
        let _ = std::fs::remove_file(&files.runc_log);
    };
    if !status.success() {
        let result = finish(id, &spec, status, &files.runc_log);
        let _ = std::fs::remove_file(&files.output);
        cleanup(&files);
        return Err(match result {
            Err(e) => e,
            Ok(ExitStatus::Code(127)) => {
                RuntimeError::Exec(format!("command not found: {}", spec.argv[0]))
            }
            Ok(ExitStatus::Code(126)) => {
                RuntimeError::Exec(format!("command not executable: {}", spec.argv[0]))
            }
            Ok(other) => fail(
                "runc exec --detach",
                format!("runc exited with {}", other.code()),
            ),
        });
    }
    let host_pid: u32 = std::fs::read_to_string(&files.pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| fail("read pid file", files.pid_file.display().to_string()))?;
    let pid = state::pid_in_namespace(host_pid).map_err(|e| fail("find pid in box", e.to_string()));
    // Reap it from now on (after NSpid was read: reaping removes /proc/<pid>).
    reaper::adopt(host_pid);
    cleanup(&files);
    let pid = pid?;
    let log = logs_dir.join(format!("{pid}.log"));
    std::fs::rename(&files.output, &log)
        .map_err(|e| fail("name log", format!("{}: {e}", log.display())))?;
    Ok(Detached { pid, host_pid })
}

/// Maps runc's exit status and error log to the command's [`ExitStatus`].
fn finish(
    id: &str,
    spec: &ExecSpec,
    status: std::process::ExitStatus,
    runc_log: &Path,
) -> RuntimeResult<ExitStatus> {
    let errors = log_errors(runc_log);
    let _ = std::fs::remove_file(runc_log);
    if let Some(message) = errors.last() {
        return classify(id, spec, message);
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(exit_status_from_code(code)),
        (None, Some(signal)) => Err(RuntimeError::Failed {
            id: id.to_string(),
            step: "runc exec".to_string(),
            message: format!("runc was killed by signal {signal}"),
        }),
        (None, None) => Err(RuntimeError::Failed {
            id: id.to_string(),
            step: "runc exec".to_string(),
            message: format!("runc ended with {status}"),
        }),
    }
}

/// A shell-style exit code as an [`ExitStatus`]: 129..=159 is a signal (see the module
/// docs).
pub(crate) fn exit_status_from_code(code: i32) -> ExitStatus {
    if (129..=159).contains(&code) {
        ExitStatus::Signal(code - 128)
    } else {
        ExitStatus::Code(code)
    }
}

/// Turns a runc error message into an exit status or a precise error.
fn classify(id: &str, spec: &ExecSpec, message: &str) -> RuntimeResult<ExitStatus> {
    let reason = message
        .trim_start_matches("exec failed: ")
        .trim_start_matches("unable to start container process: ");
    if message.contains("container does not exist") {
        return Err(RuntimeError::NotFound(id.to_string()));
    }
    if message.contains("stopped container") || message.contains("not running") {
        return Err(RuntimeError::NotRunning(id.to_string()));
    }
    if reason.starts_with("exec: \"") {
        if reason.contains("executable file not found")
            || reason.contains("no such file or directory")
        {
            return Ok(ExitStatus::Code(127));
        }
        if reason.contains("permission denied") {
            return Ok(ExitStatus::Code(126));
        }
    }
    if reason.starts_with("chdir to cwd") {
        let cwd = spec.cwd.as_deref().unwrap_or("the default directory");
        let cause = reason.rsplit(": ").next().unwrap_or(reason);
        return Err(RuntimeError::Exec(format!(
            "cannot enter working directory {cwd}: {cause}"
        )));
    }
    Err(RuntimeError::Exec(format!(
        "cannot start {}: {reason}",
        spec.argv[0]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cwd: Option<&str>) -> ExecSpec {
        ExecSpec {
            argv: vec!["nope".into()],
            cwd: cwd.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn runc_failures_map_to_shell_codes_and_errors() {
        let s = spec(None);
        let nf = "exec failed: unable to start container process: exec: \"nope\": executable file \
                  not found in $PATH";
        assert_eq!(classify("b", &s, nf).expect("code"), ExitStatus::Code(127));
        let abs = "exec failed: unable to start container process: exec: \"/nope\": stat /nope: no \
                   such file or directory";
        assert_eq!(classify("b", &s, abs).expect("code"), ExitStatus::Code(127));
        let perm =
            "exec failed: unable to start container process: exec: \"/etc\": permission denied";
        assert_eq!(
            classify("b", &s, perm).expect("code"),
            ExitStatus::Code(126)
        );
        let cwd = "exec failed: unable to start container process: chdir to cwd (\"/x\") set in \
                   config.json failed: no such file or directory";
        let err = classify("b", &spec(Some("/x")), cwd).expect_err("cwd error");
        assert_eq!(
            err.to_string(),
            "cannot enter working directory /x: no such file or directory"
        );
        assert!(matches!(
            classify("b", &s, "exec failed: container does not exist"),
            Err(RuntimeError::NotFound(_))
        ));
        let user = "exec failed: parsing nobody as int for uid failed: strconv.Atoi: x";
        assert!(matches!(
            classify("b", &s, user),
            Err(RuntimeError::Exec(_))
        ));
    }
}
