//! Bringing up the loopback interface of a box's fresh network namespace.
//!
//! runc creates the namespace but leaves `lo` down, so `127.0.0.1` would be unreachable
//! inside the box. A throwaway thread joins the namespace (setns is per thread), sets
//! IFF_UP on `lo` with SIOCSIFFLAGS and exits; no other thread ever changes namespace.
#![allow(unsafe_code)] // SIOCGIFFLAGS/SIOCSIFFLAGS have no safe wrapper in rustix or std.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::thread::LinkNameSpaceType;

/// `struct ifreq` restricted to the flags member of its union (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Sets `lo` up inside the network namespace of host process `pid`.
pub(crate) async fn loopback_up(pid: u32) -> io::Result<()> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("zomg-netns".into())
        .spawn(move || {
            let _ = tx.send(set_loopback_up(ns));
        })?;
    rx.await
        .map_err(|_| io::Error::other("loopback setup thread panicked"))?
}

/// Runs on a thread of its own, which it moves into the namespace of `ns` for good.
fn set_loopback_up(ns: std::fs::File) -> io::Result<()> {
    rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: `sock` is a valid socket fd and `req` is a properly sized, initialised
    // ifreq that outlives the call; SIOCGIFFLAGS only writes `flags`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `name` and `flags`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
