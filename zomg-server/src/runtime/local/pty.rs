//! Pseudo-terminals for interactive execs.
//!
//! `runc exec -t` refuses to run without a controlling terminal (`open /dev/tty: no such
//! device or address`). The server therefore allocates a pty, gives runc the slave as
//! stdin/stdout/stderr *and* as its controlling terminal (setsid + TIOCSCTTY between fork and
//! exec), and proxies the master: reads are the terminal output, writes the keyboard input.
//! runc copies between this pty and the one it creates inside the box, and forwards SIGWINCH:
//! setting the window size on the master (TIOCSWINSZ) signals runc, which resizes the inner
//! terminal.
//!
//! The slave starts in raw mode, so bytes pass through unchanged before runc puts it there
//! itself; line editing and echo happen on the inner terminal, as on any machine.
//!
//! An exec through the box's agent needs none of this: the agent allocates the terminal in
//! the box and hands its master over ([`PtyMaster::from_fd`]), which the same reader,
//! writer and resizer then drive directly.
#![allow(unsafe_code)] // `Command::pre_exec` is unsafe: its closure runs between fork and exec.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::{OptionalActions, Winsize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::Command;

use crate::runtime::{Resizer, RuntimeResult};

/// A freshly allocated pty pair.
#[derive(Debug)]
pub(crate) struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// Allocates a pty of `cols` x `rows` with the slave in raw mode.
    pub fn open(cols: u16, rows: u16) -> io::Result<Pty> {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let name = rustix::pty::ptsname(&master, Vec::new())?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut termios = rustix::termios::tcgetattr(&slave)?;
        termios.make_raw();
        rustix::termios::tcsetattr(&slave, OptionalActions::Now, &termios)?;
        set_size(&master, cols, rows)?;
        rustix::io::ioctl_fionbio(&master, true)?;
        Ok(Pty { master, slave })
    }

    /// Makes the slave `cmd`'s stdio and controlling terminal. Returns the master side for
    /// the caller; the slave stays only in the child (drop `cmd` after spawning so that the
    /// master reports EOF when the child exits).
    pub fn attach(self, cmd: &mut Command) -> io::Result<PtyMaster> {
        cmd.stdin(Stdio::from(self.slave.try_clone()?))
            .stdout(Stdio::from(self.slave.try_clone()?))
            .stderr(Stdio::from(self.slave));
        // SAFETY: the closure only makes two async-signal-safe syscalls (setsid, ioctl on
        // fd 0, which is the slave by then) and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
                Ok(())
            });
        }
        // SAFETY: the OwnedFd is an open pty master, owned by the AsyncFd for its whole
        // life and never replaced, so its raw fd stays the same open file description.
        let fd = unsafe { AsyncFd::register(self.master)? };
        Ok(PtyMaster { fd: Arc::new(fd) })
    }
}

fn set_size(fd: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// The master side of a pty, split into reader, writer and resizer.
#[derive(Debug, Clone)]
pub(crate) struct PtyMaster {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl PtyMaster {
    /// Takes over a pty master allocated elsewhere (by the box's agent), non-blocking from
    /// now on. Anything but a character device is refused.
    pub fn from_fd(master: OwnedFd) -> io::Result<PtyMaster> {
        let stat = rustix::fs::fstat(&master)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode)
            != rustix::fs::FileType::CharacterDevice
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the terminal received is not a character device",
            ));
        }
        rustix::io::ioctl_fionbio(&master, true)?;
        // SAFETY: the OwnedFd is an open pty master, owned by the AsyncFd for its whole
        // life and never replaced, so its raw fd stays the same open file description.
        let fd = unsafe { AsyncFd::register(master)? };
        Ok(PtyMaster { fd: Arc::new(fd) })
    }

    pub fn reader(&self) -> PtyReader {
        PtyReader {
            fd: self.fd.clone(),
        }
    }

    pub fn writer(&self) -> PtyWriter {
        PtyWriter {
            fd: self.fd.clone(),
            eof_sent: false,
        }
    }

    pub fn resizer(&self) -> PtyResizer {
        PtyResizer {
            fd: self.fd.clone(),
        }
    }
}

/// Terminal output. Ends (EOF) once every holder of the slave has exited.
#[derive(Debug)]
pub(crate) struct PtyReader {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl AsyncRead for PtyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux reports a hung-up pty (all slave fds closed) as EIO: that is EOF.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Keyboard input. `shutdown` sends one end-of-file character (^D) — a terminal has no other
/// way to close its input; dropping the writer sends nothing, so an idle interactive session
/// is never ended by accident.
#[derive(Debug)]
pub(crate) struct PtyWriter {
    fd: Arc<AsyncFd<OwnedFd>>,
    eof_sent: bool,
}

impl PtyWriter {
    fn poll_write_raw(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), data)?)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_raw(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.eof_sent {
            ready!(self.poll_write_raw(cx, b"\x04"))?;
            self.eof_sent = true;
        }
        Poll::Ready(Ok(()))
    }
}

/// Sets the window size on the master: runc passes it on to the box's terminal; a master
/// from the agent *is* the box's terminal, and the kernel signals SIGWINCH itself.
#[derive(Debug)]
pub(crate) struct PtyResizer {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Resizer for PtyResizer {
    fn resize(&self, cols: u16, rows: u16) -> RuntimeResult<()> {
        set_size(self.fd.get_ref(), cols, rows)
            .map_err(|e| crate::runtime::RuntimeError::Exec(format!("cannot resize terminal: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A host process on the pty sees a terminal of the requested size, then of the new one.
    #[tokio::test]
    async fn child_gets_a_controlling_terminal_and_resizes() {
        let pty = Pty::open(100, 30).expect("open pty");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("stty size; read line; stty size; tty >/dev/null && echo has-tty");
        let master = pty.attach(&mut cmd).expect("attach");
        let mut child = cmd.spawn().expect("spawn sh");
        drop(cmd);
        let mut reader = master.reader();
        let mut writer = master.writer();
        let resizer = master.resizer();
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&out).contains("30 100") {
            let n = reader.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "EOF before size: {:?}",
                String::from_utf8_lossy(&out)
            );
            out.extend_from_slice(&buf[..n]);
        }
        resizer.resize(132, 50).expect("resize");
        writer.write_all(b"go\n").await.expect("write");
        loop {
            let n = reader.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("50 132"), "no resize seen: {text:?}");
        assert!(text.contains("has-tty"), "no controlling tty: {text:?}");
        assert!(child.wait().await.expect("wait").success());
    }
}
