//! zomg-agent: starts commands inside a zomg box on behalf of the zomg server.
//!
//! `runc exec` costs a Go runtime start and runc's namespace-joining dance per command
//! (~25 ms). This agent already sits inside the box — its namespaces, cgroups, capabilities,
//! limits and environment are those of the box's init — so a command costs one fork and
//! exec here. The server builds this file with `build.rs` (std only, statically linked),
//! writes it into its state dir and bind-mounts it read-only at `/run/zomg/zomg-agent`.
//!
//! # Processes
//! tini (pid 1) runs the agent as its only child, the *supervisor* (the first child of
//! tini). tini — and with it the box — ends when that child ends, so the supervisor never
//! exits on its own: it blocks every signal (a stop sends SIGTERM to every process of the
//! box and waits for the user's processes; the box must stay up meanwhile) and only SIGKILL
//! ends it. It binds the socket, then forks a *worker* that serves it; a worker that dies
//! is forked again after a short backoff, and the socket stays bound in between, so no box
//! process can take its name. The worker serves each connection on a thread of its own.
//!
//! # Transport and trust
//! An abstract unix stream socket, `@zomg-agent`, in the box's network namespace: nothing on
//! any filesystem, and each box has a namespace of its own. The server joins the namespace
//! (setns) to connect. Each side checks the other with `SO_PEERCRED`:
//! - the agent serves only peers outside the box's pid namespace, whose pid reads as 0 here
//!   (the server). Box processes — root included — are refused: through the agent any box
//!   user could otherwise run commands as root;
//! - the server accepts only the supervisor as the listener: the first child of the box's
//!   init, running the binary the server installed. It falls back to `runc exec` otherwise.
//!
//! # Protocol
//! One connection runs one command. Integers are big-endian; `str` is a `u32` length and
//! that many bytes.
//!
//! Request, server → agent, once: a `u32` length of the rest, then
//! `u32 version (1)`, `u8 flags` (1 = tty, 2 = switch to uid:gid), `u16 cols`, `u16 rows`,
//! `u32 uid`, `u32 gid`, `str cwd`, `u32 argc`, argc × `str`, `u32 envc`, envc ×
//! `str` (`KEY=value`, the complete environment). Without a tty the request's first byte
//! carries three file descriptors (`SCM_RIGHTS`): the command's stdin, stdout and stderr,
//! which the command uses directly — the agent copies no data.
//!
//! Replies, agent → server: a `u32` length of the rest, then `u8 kind` and
//! - 1 started: `u32` pid of the command in the box;
//! - 2 exited: `u8 how` (0 exit code, 1 killed by signal), `u32` code or signal number;
//! - 3 failed (the command did not start): `u8 stage` (1 working directory, 2 start,
//!   3 request), `str` reason (`no such file or directory`, ...).
//!
//! With a tty the agent allocates a terminal in the box and the first reply carries its
//! master (`SCM_RIGHTS`); the server reads, writes and resizes it (TIOCSWINSZ) itself. A
//! command that is not found, or not executable, gets a message on its stderr (the
//! terminal) and `exited` with code 127 or 126, as in a shell.
//!
//! The server sends nothing after the request. Closing the connection before `exited` means
//! it went away: the agent sends SIGTERM to the command's process group, SIGKILL 5 s later.
//!
//! # The command's process
//! As under `runc exec`: a new session (setsid); stdio from the request or the terminal
//! (its controlling tty); the working directory entered before the user switch, and again
//! after it when root was refused; no supplementary groups, gid and uid as runc sets them;
//! `argv[0]` looked up in the command's `PATH` as runc does (the first entry that is a
//! file with an execute bit); default signal dispositions and an empty signal mask.

#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_ulong, c_void};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("zomg-agent supports Linux on x86_64 and aarch64");

/// The protocol's constants, shared with the server.
#[path = "protocol.rs"]
mod protocol;
use protocol::*;

/// Longest request accepted (argv and environment are bounded by the kernel far below).
const MAX_REQUEST: usize = 16 << 20;
/// How long a command gets to exit on SIGTERM once the server went away.
const ABANDON_GRACE: Duration = Duration::from_secs(5);
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Worker restart backoff: first delay, cap, and the run time after which it resets.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// What a forked child reports through its close-on-exec pipe when it cannot exec.
mod report {
    pub const SETUP: u8 = 1;
    pub const CWD: u8 = 2;
    pub const USER: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const NOT_EXECUTABLE: u8 = 5;
    pub const LOOKUP: u8 = 6;
    pub const EXEC: u8 = 7;
}

/// The libc functions and constants std does not expose (Linux, x86_64 and aarch64).
#[allow(non_camel_case_types)]
mod sys {
    use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};

    pub type pid_t = i32;
    pub type uid_t = u32;
    pub type gid_t = u32;

    /// glibc's `sigset_t` (1024 bits).
    #[repr(C)]
    pub struct sigset_t {
        pub bits: [u64; 16],
    }

    #[repr(C)]
    pub struct ucred {
        pub pid: pid_t,
        pub uid: uid_t,
        pub gid: gid_t,
    }

    #[repr(C)]
    pub struct pollfd {
        pub fd: c_int,
        pub events: i16,
        pub revents: i16,
    }

    #[repr(C)]
    pub struct winsize {
        pub ws_row: u16,
        pub ws_col: u16,
        pub ws_xpixel: u16,
        pub ws_ypixel: u16,
    }

    #[repr(C)]
    pub struct iovec {
        pub iov_base: *mut c_void,
        pub iov_len: usize,
    }

    #[repr(C)]
    pub struct msghdr {
        pub msg_name: *mut c_void,
        pub msg_namelen: u32,
        pub msg_iov: *mut iovec,
        pub msg_iovlen: usize,
        pub msg_control: *mut c_void,
        pub msg_controllen: usize,
        pub msg_flags: c_int,
    }

    #[repr(C)]
    pub struct cmsghdr {
        pub cmsg_len: usize,
        pub cmsg_level: c_int,
        pub cmsg_type: c_int,
    }

    /// `siginfo_t` as `waitid` fills it for a child (128 bytes).
    #[repr(C)]
    pub struct siginfo_t {
        pub si_signo: c_int,
        pub si_errno: c_int,
        pub si_code: c_int,
        pub _pad: c_int,
        pub si_pid: pid_t,
        pub si_uid: uid_t,
        pub si_status: c_int,
        pub _rest: [c_int; 25],
    }

    /// The start of `struct statx` (the same on every architecture), padded to its size.
    #[repr(C)]
    pub struct statx {
        pub stx_mask: u32,
        pub stx_blksize: u32,
        pub stx_attributes: u64,
        pub stx_nlink: u32,
        pub stx_uid: u32,
        pub stx_gid: u32,
        pub stx_mode: u16,
        pub _rest: [u8; 226],
    }

    pub const SIG_BLOCK: c_int = 0;
    pub const SIG_SETMASK: c_int = 2;
    pub const SIG_DFL: usize = 0;
    pub const SIGKILL: c_int = 9;
    pub const SIGTERM: c_int = 15;
    pub const SIGSTOP: c_int = 19;
    pub const NSIG: c_int = 65;

    pub const EINTR: c_int = 4;
    pub const ENOENT: c_int = 2;
    pub const ESRCH: c_int = 3;
    pub const EACCES: c_int = 13;
    pub const EPERM: c_int = 1;
    pub const EAGAIN: c_int = 11;

    pub const O_RDWR: c_int = 2;
    pub const O_NOCTTY: c_int = 0o400;
    pub const O_CLOEXEC: c_int = 0o2000000;
    pub const F_GETFD: c_int = 1;
    pub const F_SETFD: c_int = 2;
    pub const FD_CLOEXEC: c_int = 1;
    pub const AT_FDCWD: c_int = -100;
    pub const STATX_MODE: c_uint = 2;
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFDIR: u32 = 0o040000;

    pub const TIOCSCTTY: c_ulong = 0x540E;
    pub const TIOCSWINSZ: c_ulong = 0x5414;

    pub const SOL_SOCKET: c_int = 1;
    pub const SO_PEERCRED: c_int = 17;
    pub const SCM_RIGHTS: c_int = 1;
    pub const MSG_NOSIGNAL: c_int = 0x4000;
    pub const MSG_DONTWAIT: c_int = 0x40;
    pub const MSG_CMSG_CLOEXEC: c_int = 0x4000_0000;

    pub const P_PID: c_uint = 1;
    pub const WEXITED: c_int = 4;
    pub const WNOWAIT: c_int = 0x0100_0000;
    pub const CLD_EXITED: c_int = 1;

    pub const POLLIN: i16 = 0x1;
    pub const POLLRDHUP: i16 = 0x2000;

    pub const SYS_PIDFD_OPEN: c_long = 434;

    unsafe extern "C" {
        pub fn __errno_location() -> *mut c_int;
        pub fn sigfillset(set: *mut sigset_t) -> c_int;
        pub fn sigemptyset(set: *mut sigset_t) -> c_int;
        pub fn sigprocmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int;
        pub fn signal(sig: c_int, handler: usize) -> usize;
        pub fn fork() -> pid_t;
        pub fn setsid() -> pid_t;
        pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
        pub fn dup2(old: c_int, new: c_int) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
        pub fn chdir(path: *const c_char) -> c_int;
        pub fn setgroups(size: usize, list: *const gid_t) -> c_int;
        pub fn setgid(gid: gid_t) -> c_int;
        pub fn setuid(uid: uid_t) -> c_int;
        pub fn statx(
            dirfd: c_int,
            path: *const c_char,
            flags: c_int,
            mask: c_uint,
            buf: *mut statx,
        ) -> c_int;
        pub fn execve(
            path: *const c_char,
            argv: *const *const c_char,
            envp: *const *const c_char,
        ) -> c_int;
        pub fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
        pub fn _exit(code: c_int) -> !;
        pub fn kill(pid: pid_t, sig: c_int) -> c_int;
        pub fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t;
        pub fn waitid(idtype: c_uint, id: u32, info: *mut siginfo_t, options: c_int) -> c_int;
        pub fn poll(fds: *mut pollfd, nfds: c_ulong, timeout: c_int) -> c_int;
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
        pub fn posix_openpt(flags: c_int) -> c_int;
        pub fn grantpt(fd: c_int) -> c_int;
        pub fn unlockpt(fd: c_int) -> c_int;
        pub fn ptsname_r(fd: c_int, buf: *mut c_char, len: usize) -> c_int;
        pub fn getsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *mut c_void,
            len: *mut u32,
        ) -> c_int;
        pub fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> isize;
        pub fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> isize;
        pub fn recv(fd: c_int, buf: *mut c_void, len: usize, flags: c_int) -> isize;
    }
}

fn errno() -> c_int {
    // SAFETY: glibc's errno location is valid for the calling thread's whole life.
    unsafe { *sys::__errno_location() }
}

/// `Err(last OS error)` when a libc call returned -1.
fn check(result: c_int) -> io::Result<c_int> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// An errno as Go prints it (which is what runc users see): "no such file or directory".
fn errno_text(errno: c_int) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("zomg-agent[{}]: {}", std::process::id(), format_args!($($arg)*))
    };
}

fn main() {
    block_all_signals();
    open_stdio();
    let listener = bind();
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        // SAFETY: the supervisor is single-threaded, so the child may run any code.
        match unsafe { sys::fork() } {
            -1 => log!("cannot fork a worker: {}", io::Error::last_os_error()),
            0 => worker(listener),
            pid => {
                let status = wait_for(pid);
                log!(
                    "worker {pid} ended ({}); starting another",
                    describe(status)
                );
                if started.elapsed() >= BACKOFF_RESET {
                    backoff = BACKOFF_MIN;
                }
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Blocks every blockable signal; children of the worker unblock them before exec.
fn block_all_signals() {
    let mut set = sys::sigset_t { bits: [0; 16] };
    // SAFETY: `set` is a valid sigset_t for both calls.
    unsafe {
        sys::sigfillset(&mut set);
        sys::sigprocmask(sys::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Makes sure descriptors 0, 1 and 2 are open (tini passes the box's console on), so that
/// no descriptor received later lands there — a command's stdio is moved onto them.
fn open_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { sys::fcntl(fd, sys::F_GETFD) } == -1 {
            // Takes the lowest free number, which is `fd`; kept open for good.
            match File::options().read(true).write(true).open("/dev/null") {
                Ok(null) => {
                    let _ = null.into_raw_fd();
                }
                Err(e) => log!("cannot open /dev/null: {e}"),
            }
        }
    }
}

/// Binds `@zomg-agent`, retrying forever: the supervisor must not exit.
fn bind() -> UnixListener {
    let mut logged = false;
    loop {
        let bound = SocketAddr::from_abstract_name(SOCKET_NAME)
            .and_then(|addr| UnixListener::bind_addr(&addr));
        match bound {
            Ok(listener) => return listener,
            Err(e) => {
                if !logged {
                    log!("cannot bind @zomg-agent (retrying): {e}");
                    logged = true;
                }
                std::thread::sleep(BACKOFF_MAX);
            }
        }
    }
}

/// Waits for child `pid` and returns its wait status.
fn wait_for(pid: sys::pid_t) -> c_int {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { sys::waitpid(pid, &mut status, 0) };
        if r == pid || errno() != sys::EINTR {
            return status;
        }
    }
}

fn describe(status: c_int) -> String {
    match decode(status) {
        (0, code) => format!("exit code {code}"),
        (_, signal) => format!("signal {signal}"),
    }
}

/// A wait status as (0, exit code) or (1, signal).
fn decode(status: c_int) -> (u8, u32) {
    let signal = status & 0x7f;
    if signal == 0 {
        (0, ((status >> 8) & 0xff) as u32)
    } else {
        (1, signal as u32)
    }
}

/// The worker: accepts connections and serves each on a thread. Never returns.
fn worker(listener: UnixListener) -> ! {
    let mut failures = 0u32;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                failures = 0;
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .stack_size(256 << 10)
                    .spawn(move || serve(conn));
                if let Err(e) = spawned {
                    log!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    log!("accept failed: {e}");
                }
                if failures > 1000 {
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Serves one connection: checks the peer, runs its command, reports how it ended.
fn serve(conn: UnixStream) {
    match peer(&conn) {
        Ok(cred) if cred.pid == 0 && cred.uid == 0 => {}
        Ok(cred) => {
            log!(
                "refused a connection from pid {} uid {} inside the box",
                cred.pid,
                cred.uid
            );
            return;
        }
        Err(e) => {
            log!("cannot identify a peer: {e}");
            return;
        }
    }
    let request = read_request(&conn)
        .map_err(|e| e.to_string())
        .and_then(|(body, fds)| Request::decode(&body, fds));
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            let _ = send(
                &conn,
                &failed(STAGE_REQUEST, &format!("bad request: {e}")),
                None,
            );
            return;
        }
    };
    if let Err(e) = run(&conn, request) {
        log!("exec failed: {e}");
    }
}

fn peer(conn: &UnixStream) -> io::Result<sys::ucred> {
    let mut cred = sys::ucred {
        pid: -1,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<sys::ucred>() as u32;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    check(unsafe {
        sys::getsockopt(
            conn.as_raw_fd(),
            sys::SOL_SOCKET,
            sys::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
    Ok(cred)
}

/// Reads the length-prefixed request and the file descriptors sent with it.
fn read_request(conn: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut buf = vec![0u8; 64 << 10];
    let (mut have, fds) = recv_with_fds(conn, &mut buf)?;
    while have < 4 {
        let n = (&*conn).read(&mut buf[have..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_REQUEST {
        return Err(io::Error::other(format!("request of {len} bytes")));
    }
    if have > 4 + len {
        return Err(io::Error::other("data after the request"));
    }
    buf.resize(4 + len, 0);
    (&*conn).read_exact(&mut buf[have..])?;
    buf.drain(..4);
    conn.set_read_timeout(None)?;
    Ok((buf, fds))
}

/// One `recvmsg`: bytes into `buf`, and every file descriptor that came with them.
fn recv_with_fds(conn: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // Room for 16 descriptors; more than that are closed by the kernel (MSG_CTRUNC).
    let mut control = [0u64; 10];
    let mut iov = sys::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg = sys::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: &mut iov,
        msg_iovlen: 1,
        msg_control: control.as_mut_ptr().cast(),
        msg_controllen: std::mem::size_of_val(&control),
        msg_flags: 0,
    };
    let n = loop {
        // SAFETY: `msg` points at `iov` (into `buf`) and `control`, all live and writable.
        let n = unsafe { sys::recvmsg(conn.as_raw_fd(), &mut msg, sys::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        if errno() != sys::EINTR {
            return Err(io::Error::last_os_error());
        }
    };
    let mut fds = Vec::new();
    let base = control.as_ptr().cast::<u8>();
    let header = std::mem::size_of::<sys::cmsghdr>();
    let mut offset = 0;
    while offset + header <= msg.msg_controllen {
        // SAFETY: the kernel wrote `msg_controllen` bytes of cmsg records into `control`;
        // `offset + header` is within them.
        let cmsg: sys::cmsghdr = unsafe { std::ptr::read_unaligned(base.add(offset).cast()) };
        if cmsg.cmsg_len < header || offset + cmsg.cmsg_len > msg.msg_controllen {
            break;
        }
        if cmsg.cmsg_level == sys::SOL_SOCKET && cmsg.cmsg_type == sys::SCM_RIGHTS {
            let count = (cmsg.cmsg_len - header) / 4;
            for i in 0..count {
                // SAFETY: in bounds of this record, checked above.
                let fd: c_int =
                    unsafe { std::ptr::read_unaligned(base.add(offset + header + 4 * i).cast()) };
                // SAFETY: the kernel just installed this descriptor for us; nothing else
                // owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        offset += (cmsg.cmsg_len + 7) & !7;
    }
    Ok((n, fds))
}

/// Sends `data`, with `fd` attached to its first byte when given.
fn send(conn: &UnixStream, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut sent = 0;
    if let Some(fd) = fd {
        let mut control = [0u64; 3];
        let header = std::mem::size_of::<sys::cmsghdr>();
        let cmsg = sys::cmsghdr {
            cmsg_len: header + 4,
            cmsg_level: sys::SOL_SOCKET,
            cmsg_type: sys::SCM_RIGHTS,
        };
        let base = control.as_mut_ptr().cast::<u8>();
        // SAFETY: `control` has room for the header and one descriptor (24 bytes).
        unsafe {
            std::ptr::write_unaligned(base.cast(), cmsg);
            std::ptr::write_unaligned(base.add(header).cast(), fd);
        }
        let mut iov = sys::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let msg = sys::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: &mut iov,
            msg_iovlen: 1,
            msg_control: control.as_mut_ptr().cast(),
            msg_controllen: header + 8,
            msg_flags: 0,
        };
        sent = loop {
            // SAFETY: `msg` points at live buffers; sendmsg only reads them.
            let n = unsafe { sys::sendmsg(conn.as_raw_fd(), &msg, sys::MSG_NOSIGNAL) };
            if n >= 0 {
                break n as usize;
            }
            if errno() != sys::EINTR {
                return Err(io::Error::last_os_error());
            }
        };
    }
    (&*conn).write_all(&data[sent..])
}

/// A decoded request.
struct Request {
    tty: Option<(u16, u16)>,
    uid: Option<u32>,
    gid: u32,
    cwd: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// stdin, stdout, stderr (without a tty).
    stdio: Vec<OwnedFd>,
}

struct Decoder<'a> {
    data: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.data.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstring(&mut self, what: &str) -> Result<CString, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
    }

    fn list(&mut self, what: &str) -> Result<Vec<CString>, String> {
        let count = self.u32()? as usize;
        if count > self.data.len() / 4 {
            return Err(format!(
                "{count} {what} entries in {} bytes",
                self.data.len()
            ));
        }
        (0..count).map(|_| self.cstring(what)).collect()
    }
}

impl Request {
    fn decode(body: &[u8], stdio: Vec<OwnedFd>) -> Result<Request, String> {
        let mut d = Decoder { data: body };
        let version = d.u32()?;
        if version != VERSION {
            return Err(format!(
                "protocol version {version}, this agent speaks {VERSION}"
            ));
        }
        let flags = d.u8()?;
        let (cols, rows) = (d.u16()?, d.u16()?);
        let (uid, gid) = (d.u32()?, d.u32()?);
        let cwd = d.cstring("working directory")?;
        let argv = d.list("argv")?;
        let env = d.list("environment")?;
        if !d.data.is_empty() {
            return Err("data after the environment".into());
        }
        if argv.first().is_none_or(|a| a.is_empty()) {
            return Err("no command given".into());
        }
        let tty = flags & FLAG_TTY != 0;
        let want = if tty { 0 } else { 3 };
        if stdio.len() != want {
            return Err(format!(
                "{} file descriptors with the request, expected {want}",
                stdio.len()
            ));
        }
        Ok(Request {
            tty: tty.then_some((cols, rows)),
            uid: (flags & FLAG_USER != 0).then_some(uid),
            gid,
            cwd,
            argv,
            env,
            stdio,
        })
    }
}

fn reply(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&(1 + payload.len() as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

fn started(pid: u32) -> Vec<u8> {
    reply(REPLY_STARTED, &pid.to_be_bytes())
}

fn exited(how: u8, number: u32) -> Vec<u8> {
    let mut payload = vec![how];
    payload.extend_from_slice(&number.to_be_bytes());
    reply(REPLY_EXITED, &payload)
}

fn failed(stage: u8, reason: &str) -> Vec<u8> {
    let mut payload = vec![stage];
    payload.extend_from_slice(&(reason.len() as u32).to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    reply(REPLY_FAILED, &payload)
}

/// The user to switch to, as `runc exec --user uid[:gid]` sets it: that uid, that gid (the
/// box's, 0, when none is given), no supplementary groups.
struct User {
    uid: u32,
    gid: u32,
}

/// The home directory of `uid` in the box's `/etc/passwd` (its first entry), for a command
/// whose environment has no `HOME` (runc's rule).
fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// Everything the child needs, prepared before fork: after fork in a multi-threaded
/// process the child may only make async-signal-safe calls (no allocation, no locks).
struct Plan {
    stdio: [RawFd; 3],
    tty: bool,
    cwd: CString,
    user: Option<User>,
    /// Where `argv[0]` may be, in `PATH` order (empty: not found).
    candidates: Vec<CString>,
    has_slash: bool,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

/// A pty pair allocated in the box (its devpts instance, so the command sees /dev/pts/N).
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty(cols: u16, rows: u16) -> io::Result<Pty> {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let master = check(unsafe { sys::posix_openpt(sys::O_RDWR | sys::O_NOCTTY | sys::O_CLOEXEC) })?;
    // SAFETY: a fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let fd = master.as_raw_fd();
    // SAFETY: `fd` is an open pty master.
    check(unsafe { sys::grantpt(fd) })?;
    // SAFETY: as above.
    check(unsafe { sys::unlockpt(fd) })?;
    let mut name = [0 as c_char; 128];
    // SAFETY: `name` is writable for its whole length.
    let r = unsafe { sys::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    let path = path.to_str().map_err(io::Error::other)?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(sys::O_NOCTTY)
        .open(path)?
        .into();
    let size = sys::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    check(unsafe { sys::ioctl(fd, sys::TIOCSWINSZ, &size as *const sys::winsize) })?;
    Ok(Pty { master, slave })
}

/// Runs a request: sets up stdio, forks, reports the start, waits, reports the end.
fn run(conn: &UnixStream, request: Request) -> io::Result<()> {
    let pty = match request.tty {
        Some((cols, rows)) => match open_pty(cols, rows) {
            Ok(p) => Some(p),
            Err(e) => {
                let reason = format!("cannot allocate a terminal: {e}");
                return send(conn, &failed(STAGE_START, &reason), None);
            }
        },
        None => None,
    };
    let stdio: [RawFd; 3] = match &pty {
        Some(p) => [p.slave.as_raw_fd(); 3],
        None => [
            request.stdio[0].as_raw_fd(),
            request.stdio[1].as_raw_fd(),
            request.stdio[2].as_raw_fd(),
        ],
    };

    let mut env = request.env;
    let user = request.uid.map(|uid| User {
        uid,
        gid: request.gid,
    });
    let home_at = env.iter().position(|e| e.to_bytes().starts_with(b"HOME="));
    if home_at.is_none_or(|i| env[i].to_bytes().len() == 5) {
        let home = home_of(user.as_ref().map_or(0, |u| u.uid)).unwrap_or_else(|| "/".into());
        let home = CString::new(format!("HOME={home}")).map_err(io::Error::other)?;
        match home_at {
            Some(i) => env[i] = home,
            None => env.push(home),
        }
    }
    if let Some(u) = &user {
        fix_stdio_owner(&stdio, u.uid);
    }
    let argv0 = request.argv[0].to_bytes();
    let has_slash = argv0.contains(&b'/');
    let candidates = if has_slash {
        vec![request.argv[0].clone()]
    } else {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.to_bytes().strip_prefix(b"PATH="))
            .unwrap_or(b"");
        if path.is_empty() {
            Vec::new()
        } else {
            path.split(|&b| b == b':')
                .map(|dir| {
                    let dir = if dir.is_empty() { &b"."[..] } else { dir };
                    let mut p = dir.to_vec();
                    if !p.ends_with(b"/") {
                        p.push(b'/');
                    }
                    p.extend_from_slice(argv0);
                    CString::new(p).expect("no NUL: parts come from CStrings")
                })
                .collect()
        }
    };
    let mut argv: Vec<*const c_char> = request.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let plan = Plan {
        stdio,
        tty: pty.is_some(),
        cwd: request.cwd,
        user,
        candidates,
        has_slash,
        argv,
        envp,
    };

    let mut pipe = [0 as c_int; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    check(unsafe { sys::pipe2(pipe.as_mut_ptr(), sys::O_CLOEXEC) })?;
    // SAFETY: fresh descriptors we own.
    let (report_r, report_w) =
        unsafe { (File::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };

    // SAFETY: the child runs only `child`, which makes async-signal-safe calls on data
    // prepared above and never returns.
    let pid = match check(unsafe { sys::fork() }) {
        Ok(pid) => pid,
        Err(e) => {
            return send(
                conn,
                &failed(STAGE_START, &format!("cannot fork: {e}")),
                None,
            );
        }
    };
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { child(&plan, report_w.as_raw_fd()) }
    }
    drop(report_w);
    let mut report = [0u8; 5];
    let mut got = 0;
    let mut report_r = report_r;
    while got < report.len() {
        match report_r.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let argv0 = String::from_utf8_lossy(argv0).into_owned();

    if got == report.len() {
        // The command did not start; the child has exited.
        wait_for(pid);
        let err = i32::from_be_bytes([report[1], report[2], report[3], report[4]]);
        let (message, reply) = start_failure(report[0], err, &argv0, has_slash);
        if let Some(message) = message {
            let line = format!("zomg: {message}\n");
            // SAFETY: stdio[2] stays open until `request.stdio` / `pty` drop below.
            let _ = unsafe { sys::write(stdio[2], line.as_ptr().cast(), line.len()) };
        }
        drop(request.stdio);
        let slave = pty.map(|p| {
            drop(p.slave);
            p.master
        });
        return send(conn, &reply, slave.as_ref().map(|m| m.as_raw_fd()));
    }

    // Started: the command holds its stdio now; ours must go so that EOF follows its exit.
    drop(request.stdio);
    let master = match pty {
        Some(p) => {
            drop(p.slave);
            Some(p.master)
        }
        None => None,
    };
    let sent = send(
        conn,
        &started(pid as u32),
        master.as_ref().map(|m| m.as_raw_fd()),
    );
    drop(master);
    let abandoned = sent.is_err() || watch(conn, pid);
    // Report before reaping: while the command is an unreaped zombie, a stop of the box
    // waits for it (see `only_init_and_agent_left` in the server), so the report is out
    // before the box may be killed.
    let result = if abandoned {
        Ok(())
    } else {
        let (how, number) = exit_of(pid);
        send(conn, &exited(how, number), None)
    };
    wait_for(pid);
    result
}

/// How child `pid`, which has exited, ended — without reaping it.
fn exit_of(pid: sys::pid_t) -> (u8, u32) {
    let mut info = sys::siginfo_t {
        si_signo: 0,
        si_errno: 0,
        si_code: 0,
        _pad: 0,
        si_pid: 0,
        si_uid: 0,
        si_status: 0,
        _rest: [0; 25],
    };
    loop {
        // SAFETY: `info` is a valid, writable siginfo_t.
        let r = unsafe {
            sys::waitid(
                sys::P_PID,
                pid as u32,
                &mut info,
                sys::WEXITED | sys::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        if errno() != sys::EINTR {
            return decode(wait_for(pid));
        }
    }
    match info.si_code {
        sys::CLD_EXITED => (0, info.si_status as u32),
        _ => (1, info.si_status as u32),
    }
}

/// Turns a child's failure report into the message for its stderr and the reply.
fn start_failure(what: u8, err: c_int, argv0: &str, has_slash: bool) -> (Option<String>, Vec<u8>) {
    let text = errno_text(err);
    match what {
        report::NOT_FOUND if has_slash => (
            Some(format!("exec: \"{argv0}\": stat {argv0}: {text}")),
            exited(0, 127),
        ),
        report::NOT_FOUND => (
            Some(format!(
                "exec: \"{argv0}\": executable file not found in $PATH"
            )),
            exited(0, 127),
        ),
        report::NOT_EXECUTABLE => (
            Some(format!("exec: \"{argv0}\": permission denied")),
            exited(0, 126),
        ),
        report::CWD => (None, failed(STAGE_CWD, &text)),
        report::USER => (
            None,
            failed(STAGE_START, &format!("cannot switch user: {text}")),
        ),
        report::LOOKUP => (
            None,
            failed(
                STAGE_START,
                &format!("exec: \"{argv0}\": stat {argv0}: {text}"),
            ),
        ),
        report::EXEC => (None, failed(STAGE_START, &format!("exec {argv0}: {text}"))),
        _ => (
            None,
            failed(
                STAGE_START,
                &format!("cannot set up the command's stdio: {text}"),
            ),
        ),
    }
}

/// runc's `fixStdioPermissions`: a command switching users gets its stdio (pipes or
/// terminal, not /dev/null) owned by that uid, so it can reopen them.
fn fix_stdio_owner(stdio: &[RawFd; 3], uid: u32) {
    let null = std::fs::metadata("/dev/null").map(|m| m.rdev()).ok();
    for fd in stdio {
        let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        if meta.uid() == uid || Some(meta.rdev()) == null {
            continue;
        }
        // SAFETY: `fd` is open for the duration of this call (owned by the caller).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        // Errors (a read-only /dev, say) leave the stdio as it is, as runc does.
        let _ = std::os::unix::fs::fchown(fd.as_fd(), Some(uid), None);
    }
}

/// Waits until command `pid` exits (`false`) or the server closes the connection
/// (`true`: the command is then stopped — SIGTERM to its group, SIGKILL after the grace).
fn watch(conn: &UnixStream, pid: sys::pid_t) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { sys::syscall(sys::SYS_PIDFD_OPEN, c_long::from(pid), 0 as c_long) };
    if pidfd < 0 {
        log!("pidfd_open: {}", io::Error::last_os_error());
        return false;
    }
    // SAFETY: a fresh descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    loop {
        let mut fds = [
            sys::pollfd {
                fd: conn.as_raw_fd(),
                events: sys::POLLIN | sys::POLLRDHUP,
                revents: 0,
            },
            sys::pollfd {
                fd: pidfd.as_raw_fd(),
                events: sys::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds.
        let n = unsafe { sys::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if errno() == sys::EINTR {
                continue;
            }
            log!("poll: {}", io::Error::last_os_error());
            return false;
        }
        if fds[1].revents != 0 {
            return false;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 256];
            // SAFETY: `buf` is writable for its length.
            let r = unsafe {
                sys::recv(
                    conn.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    sys::MSG_DONTWAIT,
                )
            };
            if r > 0 || (r < 0 && matches!(errno(), sys::EINTR | sys::EAGAIN)) {
                continue; // the server sends nothing after the request; ignore it
            }
            abandon(pid, &pidfd);
            return true;
        }
    }
}

/// The server went away: SIGTERM to the command's process group (it leads a session of
/// its own), SIGKILL after [`ABANDON_GRACE`]. The command is not reaped yet, so its pid —
/// and group id — cannot have been reused.
fn abandon(pid: sys::pid_t, pidfd: &OwnedFd) {
    signal_group(pid, sys::SIGTERM);
    let mut fds = [sys::pollfd {
        fd: pidfd.as_raw_fd(),
        events: sys::POLLIN,
        revents: 0,
    }];
    let deadline = Instant::now() + ABANDON_GRACE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            signal_group(pid, sys::SIGKILL);
            return;
        }
        // SAFETY: `fds` is a valid array of one pollfd.
        let n = unsafe { sys::poll(fds.as_mut_ptr(), 1, left.as_millis().max(1) as c_int) };
        if n > 0 {
            return;
        }
    }
}

fn signal_group(pid: sys::pid_t, signal: c_int) {
    // SAFETY: kill takes plain integers.
    unsafe {
        if sys::kill(-pid, signal) == -1 && errno() == sys::ESRCH {
            // The command left its group (setsid/setpgid of its own): signal it alone.
            sys::kill(pid, signal);
        }
    }
}

/// The forked child: sets itself up as runc would and execs. Reports a failure as
/// `[what, errno (4 bytes)]` on `report` (close-on-exec: EOF means the exec happened).
///
/// # Safety
/// Must run in a freshly forked child of this process, and must not return.
unsafe fn child(plan: &Plan, report: RawFd) -> ! {
    // SAFETY: only async-signal-safe libc calls on pointers into `plan`, which the parent
    // keeps alive; no allocation, no locks, no panics.
    unsafe {
        if sys::setsid() == -1 {
            fail(report, report::SETUP, errno());
        }
        for (target, &fd) in plan.stdio.iter().enumerate() {
            let target = target as c_int;
            let r = if fd == target {
                let flags = sys::fcntl(fd, sys::F_GETFD);
                sys::fcntl(fd, sys::F_SETFD, flags & !sys::FD_CLOEXEC)
            } else {
                sys::dup2(fd, target)
            };
            if r == -1 {
                fail(report, report::SETUP, errno());
            }
        }
        if plan.tty && sys::ioctl(0, sys::TIOCSCTTY, 0 as c_ulong) == -1 {
            fail(report, report::SETUP, errno());
        }
        // runc enters the directory before switching users, and again after the switch
        // when root was refused (a directory only the user may enter).
        let in_cwd = sys::chdir(plan.cwd.as_ptr()) == 0;
        if !in_cwd {
            let e = errno();
            if e != sys::EACCES && e != sys::EPERM {
                fail(report, report::CWD, e);
            }
        }
        if let Some(user) = &plan.user
            && (sys::setgroups(0, std::ptr::null()) == -1
                || sys::setgid(user.gid) == -1
                || sys::setuid(user.uid) == -1)
        {
            fail(report, report::USER, errno());
        }
        if !in_cwd && sys::chdir(plan.cwd.as_ptr()) == -1 {
            fail(report, report::CWD, errno());
        }
        // runc's lookup (Go's exec.LookPath): the first candidate that is not a directory
        // and has an execute bit, checked as the command's user from its directory.
        let mut path: *const c_char = std::ptr::null();
        let mut stat_errno = 0;
        let mut not_executable = false;
        for candidate in &plan.candidates {
            let mut st: sys::statx = std::mem::zeroed();
            if sys::statx(
                sys::AT_FDCWD,
                candidate.as_ptr(),
                0,
                sys::STATX_MODE,
                &mut st,
            ) == 0
            {
                let mode = u32::from(st.stx_mode);
                if mode & sys::S_IFMT != sys::S_IFDIR && mode & 0o111 != 0 {
                    path = candidate.as_ptr();
                    break;
                }
                not_executable = true;
            } else {
                stat_errno = errno();
            }
        }
        if path.is_null() {
            if !plan.has_slash {
                fail(report, report::NOT_FOUND, sys::ENOENT);
            }
            if not_executable || stat_errno == sys::EACCES {
                fail(report, report::NOT_EXECUTABLE, sys::EACCES);
            }
            if stat_errno == sys::ENOENT {
                fail(report, report::NOT_FOUND, sys::ENOENT);
            }
            fail(report, report::LOOKUP, stat_errno);
        }
        for sig in 1..sys::NSIG {
            if sig != sys::SIGKILL && sig != sys::SIGSTOP {
                sys::signal(sig, sys::SIG_DFL);
            }
        }
        let mut empty = sys::sigset_t { bits: [0; 16] };
        sys::sigemptyset(&mut empty);
        sys::sigprocmask(sys::SIG_SETMASK, &empty, std::ptr::null_mut());
        sys::execve(path, plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(report, report::EXEC, errno())
    }
}

/// Reports `what` and `err` to the parent and exits (child only).
///
/// # Safety
/// Only in the forked child.
unsafe fn fail(report: RawFd, what: u8, err: c_int) -> ! {
    let e = err.to_be_bytes();
    let msg = [what, e[0], e[1], e[2], e[3]];
    // SAFETY: `msg` is a live 5-byte buffer; _exit ends the child without running any
    // destructor or atexit handler of the parent's state.
    unsafe {
        sys::write(report, msg.as_ptr().cast::<c_void>(), msg.len());
        sys::_exit(match what {
            report::NOT_FOUND => 127,
            report::NOT_EXECUTABLE => 126,
            _ => 1,
        })
    }
}
