//! The local terminal: whether stdin and stdout are terminals, the window size, raw mode
//! with a guard that always restores the previous settings, and the signals that end a
//! session.

use std::future::Future;
use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use rustix::process::Signal;
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};
use tokio::signal::unix::{SignalKind, signal};
use zomg_sdk::TerminalSize;

/// Which of our standard streams are terminals.
#[derive(Debug, Clone, Copy)]
pub struct Stdio {
    /// stdin is a terminal.
    pub stdin_tty: bool,
    /// stdout is a terminal.
    pub stdout_tty: bool,
}

impl Stdio {
    /// Looks at this process's stdin and stdout.
    pub fn detect() -> Self {
        Self {
            stdin_tty: io::stdin().is_terminal(),
            stdout_tty: io::stdout().is_terminal(),
        }
    }

    /// A terminal on both ends: the session gets a PTY, raw mode and resizes.
    pub fn interactive(self) -> bool {
        self.stdin_tty && self.stdout_tty
    }
}

/// The size of the terminal on stdout, when it is one and knows its size.
pub fn window_size() -> Option<TerminalSize> {
    let ws = tcgetwinsize(io::stdout()).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

/// Puts the terminal on stdin in raw mode (keys go to the box as typed: Ctrl-C is a byte,
/// not a signal) until dropped; dropping restores the settings it found, on every path out
/// (return, error, panic unwinding).
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Switches stdin to raw mode.
    pub fn enable() -> Result<Self> {
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw)
            .context("cannot switch the terminal to raw mode")?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing sensible is left to do if the terminal refuses its old settings.
        let _ = tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught for the duration of a session so that it can end
/// cleanly: the connection closed, the terminal restored, an ephemeral box deleted.
#[derive(Debug)]
pub struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        let install = |kind| signal(kind).context("cannot install a signal handler");
        Ok(Self {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    /// Waits for one of the signals.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::INT,
            _ = self.term.recv() => Signal::TERM,
            _ = self.hup.recv() => Signal::HUP,
        }
    }

    /// Runs `work` unless a signal comes first; then `work` is dropped (closing its session)
    /// and the result is the exit code of a process killed by that signal.
    pub async fn race(&mut self, work: impl Future<Output = Result<ExitCode>>) -> Result<ExitCode> {
        tokio::select! {
            result = work => result,
            sig = self.recv() => Ok(signal_exit(sig)),
        }
    }
}

/// `128 + signal`, as a shell reports a process killed by `signal`.
pub fn signal_exit(sig: Signal) -> ExitCode {
    exit_code(128 + sig.as_raw())
}

/// An exit status as this process's exit code; codes outside 0–255 become 1.
pub fn exit_code(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(0), ExitCode::SUCCESS);
        assert_eq!(exit_code(42), ExitCode::from(42));
        assert_eq!(exit_code(255), ExitCode::from(255));
        assert_eq!(exit_code(256), ExitCode::FAILURE);
        assert_eq!(exit_code(-1), ExitCode::FAILURE);
        assert_eq!(signal_exit(Signal::INT), ExitCode::from(130));
        assert_eq!(signal_exit(Signal::TERM), ExitCode::from(143));
    }
}
