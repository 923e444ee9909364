//! The wire constants of the agent protocol, shared by the agent (`zomg-agent.rs`, which
//! documents the protocol) and the server (`src/runtime/local/agent.rs`): both include this
//! one file, so the two sides cannot drift apart. Constants only, std only.

/// The abstract socket name, `@zomg-agent`, in the box's network namespace.
pub const SOCKET_NAME: &[u8] = b"zomg-agent";
/// The protocol version; the request's first field.
pub const VERSION: u32 = 1;

/// Request flag: run the command on a terminal the agent allocates.
pub const FLAG_TTY: u8 = 1;
/// Request flag: switch to the request's uid and gid.
pub const FLAG_USER: u8 = 2;

/// Reply: the command started (its pid in the box follows).
pub const REPLY_STARTED: u8 = 1;
/// Reply: the command ended (how, and the code or signal, follow).
pub const REPLY_EXITED: u8 = 2;
/// Reply: the command did not start (the stage and a reason follow).
pub const REPLY_FAILED: u8 = 3;

/// Failure stage: entering the working directory.
pub const STAGE_CWD: u8 = 1;
/// Failure stage: starting the command (user switch, lookup, exec, fork).
pub const STAGE_START: u8 = 2;
/// Failure stage: the request itself was not understood.
pub const STAGE_REQUEST: u8 = 3;
