//! Wire types of running code in a box (SPEC §5, §11): the WebSocket exec protocol, the
//! run-to-completion exec, and background-process logs.
//!
//! # WebSocket protocol (`GET …/boxes/{name}/exec/ws`, `GET …/boxes/{name}/console`)
//!
//! Subprotocol `v5.channel.k8s.io`. The client's first message is a text frame holding an
//! [`ExecStart`] as JSON. Every later message is binary: the first byte is the channel,
//! the rest the payload, as in Kubernetes:
//!
//! | channel | direction | payload |
//! |---|---|---|
//! | 0 [`CHANNEL_STDIN`] | client → server | stdin bytes |
//! | 1 [`CHANNEL_STDOUT`] | server → client | stdout bytes (with a TTY: the terminal) |
//! | 2 [`CHANNEL_STDERR`] | server → client | stderr bytes |
//! | 3 [`CHANNEL_STATUS`] | server → client | [`ExecExit`] as JSON, once, last |
//! | 4 [`CHANNEL_RESIZE`] | client → server | [`TerminalSize`] as JSON |
//! | 255 [`CHANNEL_CLOSE`] | client → server | one byte: the channel to close (0 = stdin EOF) |
//!
//! After the status message the server closes the socket. `console` takes the same start
//! message; the server runs a login shell on a TTY whatever `command` says.
//!
//! What each side may rely on:
//! - The upgrade answer selects the subprotocol (`Sec-WebSocket-Protocol: v5.channel.k8s.io`);
//!   a client fails the handshake otherwise. Errors before the upgrade (401, 404 for a
//!   missing box, 409 `box_not_running`) are the usual JSON error body, with a
//!   `Content-Length`.
//! - The client sends stdin (and EOF) right after the start message, without waiting.
//! - A command that cannot start (unknown user, bad `cwd`, no such program) still gets a
//!   status: `exit_code` 127 with `error` saying why.
//! - The server ends with the closing handshake: status, close frame, then it keeps reading
//!   (and discarding) until the client goes away. Dropping the socket with client frames
//!   unread makes the kernel reset the connection, and the client may lose the status.
//! - The client returns as soon as the status arrives and may hang up without a close
//!   frame. A hang-up before the status means the user went away: the server ends the
//!   command.
//! - Reading the socket and writing it are independent on both sides: a command that is not
//!   reading stdin must not stop its output from flowing, and output that the client is not
//!   reading pushes back through TCP rather than piling up in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol of exec and console.
pub const EXEC_PROTOCOL: &str = "v5.channel.k8s.io";
/// stdin, client to server.
pub const CHANNEL_STDIN: u8 = 0;
/// stdout, server to client.
pub const CHANNEL_STDOUT: u8 = 1;
/// stderr, server to client.
pub const CHANNEL_STDERR: u8 = 2;
/// The exit status, server to client, last.
pub const CHANNEL_STATUS: u8 = 3;
/// Terminal size changes, client to server.
pub const CHANNEL_RESIZE: u8 = 4;
/// Closes the channel named by the payload byte (stdin EOF).
pub const CHANNEL_CLOSE: u8 = 255;

/// The largest stdout (and, separately, stderr) that `POST …/exec` returns; more is cut and
/// `truncated` is set. Stream with the WebSocket exec for more.
pub const EXEC_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// The first message of a WebSocket exec: what to run and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStart {
    /// argv; with `shell`, one string run by that shell.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment on top of the box's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (default `/root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// A project user to run as (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run `command` (joined with spaces) through this shell with `-c`: `sh` or `bash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Allocate a terminal; stdout and stderr are then one stream.
    #[serde(default)]
    pub tty: bool,
    /// Initial terminal size, with `tty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<TerminalSize>,
}

/// A terminal size (channel 4, and the start message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// How a command ended (channel 3, and `POST …/exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExit {
    /// The exit code; 128 + signal when killed by a signal; 127 when the command could not
    /// be started.
    pub exit_code: i32,
    /// The signal that killed the command, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why the command could not run, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `POST …/boxes/{name}/exec`: run to completion, or detach with `no_hup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// argv; with `shell`, one string run by that shell.
    pub command: Vec<String>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// A project user to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run through this shell with `-c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Data for stdin (UTF-8); stdin is empty otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Start in the background and answer with its pid; output goes to its log.
    #[serde(default)]
    pub no_hup: bool,
}

/// Answer of `POST …/boxes/{name}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// stdout (UTF-8, invalid sequences replaced), at most [`EXEC_OUTPUT_LIMIT`] bytes.
    #[serde(default)]
    pub stdout: String,
    /// stderr, likewise.
    #[serde(default)]
    pub stderr: String,
    /// The exit code (absent with `no_hup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that killed the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The pid in the box of a `no_hup` process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Output was cut at the limit.
    #[serde(default)]
    pub truncated: bool,
}

/// Answer of `GET …/boxes/{name}/logs?pid=N[&lines=N]` (without `follow`). With
/// `follow=true` the body is instead the raw log, streamed until the process exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOutput {
    /// The process.
    pub pid: u32,
    /// The log (the last `lines` lines when asked), UTF-8 with invalid sequences replaced.
    pub output: String,
    /// Whether the process still runs.
    pub running: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn start_message_shape() {
        let s = ExecStart {
            command: vec!["ls".into(), "-l".into()],
            tty: true,
            size: Some(TerminalSize { cols: 80, rows: 24 }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"command": ["ls", "-l"], "tty": true, "size": {"cols": 80, "rows": 24}})
        );
        let minimal: ExecStart = serde_json::from_value(json!({})).unwrap();
        assert!(minimal.command.is_empty() && !minimal.tty);
    }

    #[test]
    fn exit_and_result_round_trip() {
        let e = ExecExit {
            exit_code: 137,
            signal: Some(9),
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"exit_code": 137, "signal": 9})
        );
        let r: ExecResult = serde_json::from_value(json!({"pid": 12})).unwrap();
        assert_eq!(r.pid, Some(12));
        assert_eq!(r.exit_code, None);
        let req = ExecRequest {
            command: vec!["true".into()],
            no_hup: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"command": ["true"], "no_hup": true})
        );
    }
}
