//! Running commands through the box's agent instead of `runc exec`.
//!
//! `runc exec` costs ~25 ms per command on a small machine (a Go runtime start plus runc
//! joining the box's namespaces). Every box instead runs `zomg-agent`
//! (`zomg-server/agent/zomg-agent.rs`, built by `build.rs` and embedded here) as tini's only
//! child; it already sits in the box's namespaces and cgroups with the box's capabilities,
//! limits and environment, so a command costs it one fork and exec. The agent's module docs
//! describe its processes and the protocol; this side:
//!
//! 1. joins the box's network namespace on a throwaway thread (setns is per thread, as in
//!    `netns.rs`), connects to the abstract socket `@zomg-agent` there and checks with
//!    `SO_PEERCRED` that the listener is the agent this server installed: the first child of
//!    the box's init, running the very binary file of [`install`] (device and inode). A box
//!    process cannot pass for it, and a box still running another agent build (started by an
//!    earlier server) is not trusted either;
//! 2. sends the request: argv, the box's environment as runc exec would build it (the
//!    bundle's `process.env`, the exec's variables on top), the working directory (the
//!    bundle's `process.cwd` by default), the user, the terminal size; without a terminal
//!    it also passes the command's stdin, stdout and stderr — pipes created here, so output
//!    flows from the command to the server exactly as with runc exec, never through the
//!    agent;
//! 3. reads the start reply (with a terminal: the terminal's master), and later the exit.
//!    Dropping the `wait` future closes the connection, and the agent stops the command.
//!
//! When the agent cannot be reached or is not trusted ([`Unavailable`]: a box started before
//! agents existed, an agent a box user killed, a user name to resolve), the caller falls back
//! to `runc exec`. Once the request has gone out it never falls back: the command may run.
#![allow(unsafe_code)] // SO_PEERCRED through libc: rustix's UCred cannot hold a pid of 0.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use rustix::thread::LinkNameSpaceType;
use serde::Deserialize;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

use super::exec::exit_status_from_code;
use super::pty::PtyMaster;
use super::state::ProcStat;
use crate::runtime::{ExecProcess, ExecSpec, ExitStatus, RuntimeError, RuntimeResult};

/// Where the agent appears inside a box (on the fresh `/run` tmpfs).
pub(crate) const AGENT_IN_BOX: &str = "/run/zomg/zomg-agent";

/// The agent's process name (`comm`): its supervisor and worker, told apart from user
/// processes when a stop waits for them.
pub(crate) const AGENT_COMM: &str = "zomg-agent";

/// The protocol's constants, shared with the agent (see the agent's module docs).
#[path = "../../../agent/protocol.rs"]
pub(super) mod protocol;
use protocol::{
    FLAG_TTY, FLAG_USER, REPLY_EXITED, REPLY_FAILED, REPLY_STARTED, SOCKET_NAME, STAGE_CWD,
    STAGE_REQUEST, STAGE_START, VERSION,
};

/// Longest reply accepted (a failure reason is a line of text).
const MAX_REPLY: usize = 64 << 10;

/// The agent binary, built by `build.rs`.
static BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zomg-agent"));

/// The installed agent binary's identity on the host. Boxes bind-mount this very file, so a
/// process running it shows the same device and inode through `/proc/<pid>/exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AgentFile {
    dev: u64,
    ino: u64,
}

/// Writes the agent to `path` (mode 0555) unless an identical file is already there — then
/// boxes started by an earlier run of the server keep being trusted — and returns its
/// identity.
pub(crate) fn install(path: &Path) -> io::Result<AgentFile> {
    let current = std::fs::read(path).is_ok_and(|existing| existing == BINARY);
    if !current {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, BINARY)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
        std::fs::rename(&tmp, path)?;
    }
    let meta = std::fs::metadata(path)?;
    Ok(AgentFile {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Waits up to `timeout` until the agent of the box whose init is host pid `init` listens
/// (its socket shows in the namespace's `/proc/<pid>/net/unix`). `false` on timeout: execs
/// then go through runc until it does.
pub(crate) async fn wait_listening(init: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let table = format!("/proc/{init}/net/unix");
    let needle = format!(" @{}", String::from_utf8_lossy(SOCKET_NAME));
    loop {
        let listening = std::fs::read_to_string(&table)
            .is_ok_and(|t| t.lines().any(|l| l.ends_with(needle.as_str())));
        if listening {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Why an exec cannot go through the agent; the caller runs it with runc instead.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// Nothing to talk to (no agent in this box, not listening, the box is going away), or
    /// a request the agent does not handle.
    Unreachable(String),
    /// Something listens that may be a box process passing for the agent.
    Untrusted(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Unreachable(why) | Unavailable::Untrusted(why) => f.write_str(why),
        }
    }
}

/// The box an exec goes to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The box id (for errors).
    pub id: String,
    /// Host pid of the box's init (tini) and its start time.
    pub init: u32,
    pub init_start: u64,
    /// The bundle's `config.json`: the environment and default working directory.
    pub config: PathBuf,
    /// The agent binary this server installed.
    pub agent: AgentFile,
}

/// The parts of the bundle's `config.json` an exec needs.
#[derive(Debug, Deserialize)]
struct BundleConfig {
    process: BundleProcess,
}

#[derive(Debug, Deserialize)]
struct BundleProcess {
    #[serde(default)]
    env: Vec<String>,
    cwd: String,
}

/// Runs `spec` through the box's agent. `Err` when the agent cannot take it (the caller
/// falls back to runc exec); `Ok` with the exec's own result once the agent has it.
pub(crate) async fn exec(
    target: &Target,
    spec: &ExecSpec,
) -> Result<RuntimeResult<ExecProcess>, Unavailable> {
    let user = match spec.user.as_deref() {
        None => None,
        Some(user) => Some(parse_user(user).ok_or_else(|| {
            Unavailable::Unreachable(format!("user {user:?} is not a numeric uid[:gid]"))
        })?),
    };
    let (stream, config) = connect(target).await?;
    let stream = UnixStream::from_std(stream)
        .map_err(|e| Unavailable::Unreachable(format!("register the agent connection: {e}")))?;
    let env = merge_env(config.process.env, &spec.env);
    let cwd = spec.cwd.clone().unwrap_or(config.process.cwd);
    let request = encode_request(&spec.argv, &env, &cwd, user, spec.tty);
    let context = Context {
        target: target.clone(),
        argv0: spec.argv[0].clone(),
        cwd: spec
            .cwd
            .clone()
            .unwrap_or_else(|| "the default directory".to_string()),
    };
    match spec.tty {
        None => piped(stream, &request, context).await,
        Some(_) => tty(stream, &request, context).await,
    }
}

/// What the `wait` future needs to word errors.
struct Context {
    target: Target,
    argv0: String,
    cwd: String,
}

impl Context {
    fn fail(&self, message: impl fmt::Display) -> RuntimeError {
        RuntimeError::Failed {
            id: self.target.id.clone(),
            step: "agent exec".to_string(),
            message: message.to_string(),
        }
    }
}

/// Without a terminal: the command gets pipes created here as its stdio.
async fn piped(
    stream: UnixStream,
    request: &[u8],
    context: Context,
) -> Result<RuntimeResult<ExecProcess>, Unavailable> {
    let pipes = || -> io::Result<_> {
        let flags = rustix::pipe::PipeFlags::CLOEXEC;
        Ok((
            rustix::pipe::pipe_with(flags)?,
            rustix::pipe::pipe_with(flags)?,
            rustix::pipe::pipe_with(flags)?,
        ))
    };
    let ((stdin_r, stdin_w), (stdout_r, stdout_w), (stderr_r, stderr_w)) =
        pipes().map_err(|e| Unavailable::Unreachable(format!("create pipes: {e}")))?;
    send_request(
        &stream,
        request,
        &[stdin_r.as_fd(), stdout_w.as_fd(), stderr_w.as_fd()],
    )
    .await
    .map_err(|e| Unavailable::Unreachable(format!("send the request: {e}")))?;
    // The command holds these now; ours must go so that its exit reads as EOF.
    drop((stdin_r, stdout_w, stderr_w));
    let mut replies = Replies::new(stream);
    let first = match replies.next().await {
        Ok((reply, _)) => reply,
        Err(e) => return Ok(Err(context.fail(format!("no answer from the agent: {e}")))),
    };
    let streams = (|| -> io::Result<_> {
        Ok((
            pipe::Sender::from_owned_fd(stdin_w)?,
            pipe::Receiver::from_owned_fd(stdout_r)?,
            pipe::Receiver::from_owned_fd(stderr_r)?,
        ))
    })();
    let (stdin, stdout, stderr) = match streams {
        Ok(s) => s,
        Err(e) => return Ok(Err(context.fail(format!("register pipes: {e}")))),
    };
    Ok(Ok(ExecProcess {
        stdin: Some(Box::pin(stdin)),
        stdout: Some(Box::pin(stdout)),
        stderr: Some(Box::pin(stderr)),
        resizer: None,
        wait: Box::pin(wait(replies, first, context)),
    }))
}

/// With a terminal: the agent allocates it in the box and sends its master back.
async fn tty(
    stream: UnixStream,
    request: &[u8],
    context: Context,
) -> Result<RuntimeResult<ExecProcess>, Unavailable> {
    send_request(&stream, request, &[])
        .await
        .map_err(|e| Unavailable::Unreachable(format!("send the request: {e}")))?;
    let mut replies = Replies::new(stream);
    let (first, mut fds) = match replies.next().await {
        Ok(r) => r,
        Err(e) => return Ok(Err(context.fail(format!("no answer from the agent: {e}")))),
    };
    let Some(master) = fds.pop().filter(|_| fds.is_empty()) else {
        // No terminal comes with a request the agent could not act on at all.
        return Ok(Err(match finish(Ok(first), &context) {
            Err(e) => e,
            Ok(_) => context.fail("the agent sent no terminal"),
        }));
    };
    let master = match PtyMaster::from_fd(master) {
        Ok(m) => m,
        Err(e) => return Ok(Err(context.fail(format!("terminal from the agent: {e}")))),
    };
    Ok(Ok(ExecProcess {
        stdin: Some(Box::pin(master.writer())),
        stdout: Some(Box::pin(master.reader())),
        stderr: None,
        resizer: Some(Box::new(master.resizer())),
        wait: Box::pin(wait(replies, first, context)),
    }))
}

/// Resolves with the command's end. Dropping it drops the connection, which tells the
/// agent to stop the command.
async fn wait(mut replies: Replies, first: Reply, context: Context) -> RuntimeResult<ExitStatus> {
    let reply = match first {
        Reply::Started => replies.next().await.map(|(reply, _)| reply),
        other => Ok(other),
    };
    finish(reply, &context)
}

/// Maps the agent's last reply (or a lost connection) to the exec's result.
fn finish(reply: io::Result<Reply>, context: &Context) -> RuntimeResult<ExitStatus> {
    match reply {
        Ok(Reply::Exited(status)) => Ok(status),
        Ok(Reply::Failed { stage, reason }) => Err(match stage {
            STAGE_CWD => RuntimeError::Exec(format!(
                "cannot enter working directory {}: {reason}",
                context.cwd
            )),
            STAGE_START => RuntimeError::Exec(format!("cannot start {}: {reason}", context.argv0)),
            STAGE_REQUEST => context.fail(format!("request refused: {reason}")),
            _ => context.fail(reason),
        }),
        Ok(Reply::Started) => Err(context.fail("the agent reported the start twice")),
        Err(e) => {
            // A stop or remove kills the box's init, and the kernel then kills the rest of
            // the box — the agent, maybe before it could report — with SIGKILL.
            let ending = ProcStat::read(context.target.init)
                .is_none_or(|s| s.start_time != context.target.init_start || s.is_exiting());
            if ending {
                Ok(ExitStatus::Signal(9))
            } else {
                Err(context.fail(format!("the agent went away before the command ended: {e}")))
            }
        }
    }
}

/// Connects to the box's agent from a thread in its network namespace, checks the peer,
/// and reads the bundle's process settings.
async fn connect(
    target: &Target,
) -> Result<(std::os::unix::net::UnixStream, BundleConfig), Unavailable> {
    let target = target.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("zomg-agent-connect".into())
        .spawn(move || {
            let _ = tx.send(connect_blocking(&target));
        })
        .map_err(|e| Unavailable::Unreachable(format!("spawn a connect thread: {e}")))?;
    rx.await
        .map_err(|_| Unavailable::Unreachable("the connect thread panicked".into()))?
}

/// Runs on a thread of its own, which it moves into the box's network namespace for good.
fn connect_blocking(
    target: &Target,
) -> Result<(std::os::unix::net::UnixStream, BundleConfig), Unavailable> {
    let unreachable =
        |what: &str, e: &dyn fmt::Display| Unavailable::Unreachable(format!("{what}: {e}"));
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", target.init))
        .map_err(|e| unreachable("open the box's network namespace", &e))?;
    rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| unreachable("join the box's network namespace", &e))?;
    // Non-blocking: a full backlog (a frozen agent) fails at once instead of hanging.
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| unreachable("create a socket", &e))?;
    let addr =
        SocketAddrUnix::new_abstract_name(SOCKET_NAME).map_err(|e| unreachable("address", &e))?;
    rustix::net::connect(&socket, &addr).map_err(|e| unreachable("connect to @zomg-agent", &e))?;
    let (pid, uid) = peer_cred(socket.as_fd()).map_err(|e| unreachable("SO_PEERCRED", &e))?;
    check_peer(pid, uid, target)?;
    let config: BundleConfig = std::fs::read(&target.config)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| unreachable(&format!("read {}", target.config.display()), &e))?;
    Ok((std::os::unix::net::UnixStream::from(socket), config))
}

/// The pid and uid of the process that listens on the other end of `socket`.
fn peer_cred(socket: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the kernel writes at
    // most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid))
}

/// Accepts only the agent's supervisor as the listener: root, the first child of the box's
/// init (tini forks it before anything else and it never exits while the box runs; orphans
/// that tini adopts later come after it), running the installed agent file. A supervisor
/// running another file is an agent of another server build (the box started before an
/// upgrade), whose protocol may differ: not suspicious, but not used either.
fn check_peer(pid: i32, uid: u32, target: &Target) -> Result<(), Unavailable> {
    let who = format!("the listener on @zomg-agent (host pid {pid})");
    let untrusted = |why: String| Unavailable::Untrusted(format!("{who} {why}"));
    if pid <= 0 {
        return Err(untrusted("is not visible from the server".into()));
    }
    if uid != 0 {
        return Err(untrusted(format!("runs as uid {uid}, not root")));
    }
    let init = target.init;
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .map_err(|e| untrusted(format!("cannot be placed: children of the box's init: {e}")))?;
    if children.split_whitespace().next() != Some(pid.to_string().as_str()) {
        return Err(untrusted("is not the first child of the box's init".into()));
    }
    let exe = std::fs::metadata(format!("/proc/{pid}/exe"))
        .map_err(|e| untrusted(format!("has no readable executable: {e}")))?;
    if (exe.dev(), exe.ino()) != (target.agent.dev, target.agent.ino) {
        return Err(Unavailable::Unreachable(format!(
            "{who} runs another build of the agent than this server's"
        )));
    }
    Ok(())
}

/// A numeric `uid[:gid]` within runc's range; `None` for anything else (names).
fn parse_user(user: &str) -> Option<(u32, Option<u32>)> {
    let id = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|&n| n <= i32::MAX as u32 && !s.starts_with('+'))
    };
    match user.split_once(':') {
        None => Some((id(user)?, None)),
        Some((uid, gid)) => Some((id(uid)?, Some(id(gid)?))),
    }
}

/// The environment runc exec gives a command: the box's (`process.env`), then the exec's
/// variables; a later value replaces an earlier one in place, new names go last (Go's
/// `os.Setenv` over a cleared environment).
fn merge_env(base: Vec<String>, extra: &BTreeMap<String, String>) -> Vec<String> {
    let mut env: Vec<String> = Vec::with_capacity(base.len() + extra.len());
    let mut set = |entry: String| {
        let name = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        let name_len = name.len();
        match env
            .iter_mut()
            .find(|e| e.len() > name_len && e.as_bytes()[name_len] == b'=' && e.starts_with(name))
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    };
    for entry in base.into_iter().filter(|e| e.contains('=')) {
        set(entry);
    }
    for (k, v) in extra {
        set(format!("{k}={v}"));
    }
    env
}

/// Encodes a request (see the agent's module docs).
pub(super) fn encode_request(
    argv: &[String],
    env: &[String],
    cwd: &str,
    user: Option<(u32, Option<u32>)>,
    tty: Option<(u16, u16)>,
) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut body = Vec::with_capacity(
        64 + cwd.len() + argv.iter().chain(env).map(|s| s.len() + 4).sum::<usize>(),
    );
    body.extend_from_slice(&VERSION.to_be_bytes());
    let mut flags = 0;
    if tty.is_some() {
        flags |= FLAG_TTY;
    }
    if user.is_some() {
        flags |= FLAG_USER;
    }
    body.push(flags);
    let (cols, rows) = tty.unwrap_or((0, 0));
    body.extend_from_slice(&cols.to_be_bytes());
    body.extend_from_slice(&rows.to_be_bytes());
    // Without a gid, the box's (config.json's): 0, as `runc exec --user uid` keeps it.
    let (uid, gid) = user.map_or((0, 0), |(uid, gid)| (uid, gid.unwrap_or(0)));
    body.extend_from_slice(&uid.to_be_bytes());
    body.extend_from_slice(&gid.to_be_bytes());
    put_str(&mut body, cwd);
    for list in [argv, env] {
        body.extend_from_slice(&(list.len() as u32).to_be_bytes());
        for s in list {
            put_str(&mut body, s);
        }
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Sends the whole request; `fds` go with its first byte.
async fn send_request(stream: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut sent = 0;
    while sent < data.len() {
        let offset = sent;
        sent += stream
            .async_io(Interest::WRITABLE, || {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                if offset == 0
                    && !fds.is_empty()
                    && !control.push(SendAncillaryMessage::ScmRights(fds))
                {
                    return Err(io::Error::other("too many descriptors for one message"));
                }
                let n = rustix::net::sendmsg(
                    stream,
                    &[IoSlice::new(&data[offset..])],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )?;
                Ok(n)
            })
            .await?;
    }
    Ok(())
}

/// One reply of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Started,
    Exited(ExitStatus),
    Failed { stage: u8, reason: String },
}

/// Parses the first complete reply in `buf`: the reply and the bytes it took, or `None`
/// when more bytes are needed.
fn parse_reply(buf: &[u8]) -> io::Result<Option<(Reply, usize)>> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("agent reply: {what}"));
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 || len > MAX_REPLY {
        return Err(bad(&format!("length {len}")));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let reply = match (body[0], &body[1..]) {
        (REPLY_STARTED, [_, _, _, _]) => Reply::Started,
        (REPLY_EXITED, [how, n @ ..]) if n.len() == 4 => {
            let n = be32(n);
            // The same mapping as runc's exit codes, so both paths report alike.
            Reply::Exited(match how {
                0 => exit_status_from_code((n & 0xff) as i32),
                1 => exit_status_from_code(128 + (n & 0x7f) as i32),
                _ => return Err(bad("exit kind")),
            })
        }
        (REPLY_FAILED, [stage, rest @ ..]) if rest.len() >= 4 => {
            let n = be32(rest) as usize;
            let reason = rest.get(4..4 + n).ok_or_else(|| bad("reason"))?;
            Reply::Failed {
                stage: *stage,
                reason: String::from_utf8_lossy(reason).into_owned(),
            }
        }
        (kind, _) => return Err(bad(&format!("kind {kind}"))),
    };
    Ok(Some((reply, 4 + len)))
}

/// The agent's replies on one connection, with the descriptors that came with them.
struct Replies {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Replies {
    fn new(stream: UnixStream) -> Self {
        Replies {
            stream,
            buf: Vec::new(),
        }
    }

    async fn next(&mut self) -> io::Result<(Reply, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok((reply, fds));
            }
            let stream = &self.stream;
            let (bytes, received) = stream
                .async_io(Interest::READABLE, || {
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
                    let mut control = RecvAncillaryBuffer::new(&mut space);
                    let mut chunk = [0u8; 1024];
                    let msg = rustix::net::recvmsg(
                        stream,
                        &mut [IoSliceMut::new(&mut chunk)],
                        &mut control,
                        RecvFlags::CMSG_CLOEXEC,
                    )?;
                    let fds: Vec<OwnedFd> = control
                        .drain()
                        .flat_map(|m| match m {
                            RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
                            _ => Vec::new(),
                        })
                        .collect();
                    Ok((chunk[..msg.bytes].to_vec(), fds))
                })
                .await?;
            fds.extend(received);
            if bytes.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_users_only() {
        assert_eq!(parse_user("0"), Some((0, None)));
        assert_eq!(parse_user("1000:1000"), Some((1000, Some(1000))));
        assert_eq!(parse_user("2147483647"), Some((i32::MAX as u32, None)));
        for other in [
            "alice",
            "1000:staff",
            "",
            ":1",
            "1:",
            "-1",
            "+1",
            "2147483648",
            "1:2:3",
        ] {
            assert_eq!(parse_user(other), None, "{other:?}");
        }
    }

    #[test]
    fn exec_env_replaces_in_place_and_appends_new_names() {
        let base = vec![
            "PATH=/bin".to_string(),
            "HOME=/root".into(),
            "FOO=bar".into(),
        ];
        let extra = BTreeMap::from([
            ("FOO".to_string(), "baz".to_string()),
            ("A".to_string(), "1".to_string()),
            ("PAT".to_string(), "x=y".to_string()),
        ]);
        assert_eq!(
            merge_env(base, &extra),
            ["PATH=/bin", "HOME=/root", "FOO=baz", "A=1", "PAT=x=y"]
        );
    }

    #[test]
    fn request_layout() {
        let req = encode_request(
            &["sh".into()],
            &["A=1".into()],
            "/root",
            Some((1000, None)),
            Some((80, 24)),
        );
        let body = &req[4..];
        assert_eq!(
            u32::from_be_bytes(req[..4].try_into().unwrap()) as usize,
            body.len()
        );
        assert_eq!(&body[..4], &VERSION.to_be_bytes());
        assert_eq!(body[4], FLAG_TTY | FLAG_USER);
        assert_eq!(&body[5..9], &[0, 80, 0, 24]);
        assert_eq!(&body[9..17], &[0, 0, 3, 0xe8, 0, 0, 0, 0]);
        assert_eq!(&body[17..26], b"\0\0\0\x05/root");
        assert_eq!(&body[26..36], b"\0\0\0\x01\0\0\0\x02sh");
        assert_eq!(&body[36..], b"\0\0\0\x01\0\0\0\x03A=1");
    }

    #[test]
    fn replies_parse_and_wait_for_more_bytes() {
        let started = [0, 0, 0, 5, REPLY_STARTED, 0, 0, 0, 7];
        let exited = [0, 0, 0, 6, REPLY_EXITED, 1, 0, 0, 0, 9];
        let mut both = started.to_vec();
        both.extend_from_slice(&exited);
        assert_eq!(parse_reply(&both).unwrap(), Some((Reply::Started, 9)));
        assert_eq!(
            parse_reply(&both[9..]).unwrap(),
            Some((Reply::Exited(ExitStatus::Signal(9)), 10))
        );
        assert_eq!(parse_reply(&exited[..7]).unwrap(), None);
        let code = [0, 0, 0, 6, REPLY_EXITED, 0, 0, 0, 0, 42];
        assert_eq!(
            parse_reply(&code).unwrap(),
            Some((Reply::Exited(ExitStatus::Code(42)), 10))
        );
        let failed = [
            0,
            0,
            0,
            9,
            REPLY_FAILED,
            STAGE_CWD,
            0,
            0,
            0,
            3,
            b'n',
            b'o',
            b'!',
        ];
        assert_eq!(
            parse_reply(&failed).unwrap(),
            Some((
                Reply::Failed {
                    stage: STAGE_CWD,
                    reason: "no!".into()
                },
                13
            ))
        );
        assert!(parse_reply(&[0, 0, 0, 0]).is_err());
        assert!(parse_reply(&[0, 0, 0, 1, 9]).is_err());
    }

    #[test]
    fn embedded_agent_is_a_static_executable() {
        let elf = BINARY;
        assert_eq!(&elf[..4], b"\x7fELF");
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        // No PT_INTERP (3): it needs no loader or library from the box's root.
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            let p_type = u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
            assert_ne!(p_type, 3, "the agent is dynamically linked");
        }
    }
}
