//! Terminal sessions (`console`, and `exec` with a terminal on both ends) driven through a
//! pseudo-terminal: raw mode while attached, keys reach the box as typed, window-size
//! changes are forwarded, and the terminal's settings (`stty -g`) are exactly restored on
//! every way out — normal exit, server hang-up, SIGTERM.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, open};
use rustix::process::{Pid, Signal, kill_process};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use crate::fake::{Fake, TOKEN};

/// A pseudo-terminal whose output is collected by a reader thread.
struct Pty {
    master: OwnedFd,
    slave_path: PathBuf,
    /// Held open so that reading the master never fails with EIO between users.
    _slave: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn open(cols: u16, rows: u16) -> Self {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .expect("open a pseudo-terminal (is /dev/ptmx available?)");
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave_path =
            PathBuf::from(ptsname(&master, Vec::new()).unwrap().into_string().unwrap());
        let slave = open(&slave_path, OFlags::RDWR | OFlags::NOCTTY, Mode::empty()).unwrap();
        let pty = Self {
            master,
            slave_path,
            _slave: slave,
            output: Arc::default(),
        };
        pty.set_size(cols, rows);
        let reader = pty.master.try_clone().unwrap();
        let output = pty.output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = rustix::io::read(&reader, &mut buf) {
                output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        pty
    }

    fn slave(&self) -> OwnedFd {
        open(
            &self.slave_path,
            OFlags::RDWR | OFlags::NOCTTY,
            Mode::empty(),
        )
        .unwrap()
    }

    fn set_size(&self, cols: u16, rows: u16) {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        tcsetwinsize(self.master.as_fd(), size).unwrap();
    }

    fn type_keys(&self, keys: &[u8]) {
        rustix::io::write(&self.master, keys).unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `needle`.
    fn expect(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "terminal never showed {needle:?}; it shows {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The terminal's settings as `stty -g` prints them.
    fn stty(&self) -> String {
        let out = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::from(self.slave()))
            .output()
            .expect("run stty (coreutils)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `zomg <args>` with this terminal as stdin, stdout and stderr.
    fn spawn(&self, fake: &Fake, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_zomg"))
            .args(["--url", fake.url(), "--token", TOKEN])
            .args(args)
            .env_clear()
            .env("HOME", fake.dir())
            .env("ZOMG_DATA_DIR", fake.dir().join("none"))
            .current_dir(fake.dir())
            .stdin(Stdio::from(self.slave()))
            .stdout(Stdio::from(self.slave()))
            .stderr(Stdio::from(self.slave()))
            .spawn()
            .unwrap()
    }
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("zomg exited by a signal");
        }
        assert!(Instant::now() < deadline, "zomg did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn console_runs_raw_forwards_resizes_and_restores_the_terminal() {
    let fake = Fake::start();
    let pty = Pty::open(80, 24);
    let before = pty.stty();
    let mut child = pty.spawn(&fake, &["console", "web"]);
    pty.expect("[tty 80x24]\r\nfake$ ");
    assert_ne!(pty.stty(), before, "the terminal is not in raw mode");

    pty.type_keys(b"echo hi\r");
    pty.expect("echo hi\r\nhi\r\nfake$ ");
    // Ctrl-C is a key for the box, not a signal for zomg.
    pty.type_keys(b"\x03");
    pty.expect("^C\r\nfake$ ");

    pty.set_size(100, 40);
    kill_process(Pid::from_child(&child), Signal::WINCH).unwrap();
    pty.expect("[resized 100x40]");
    fake.wait_for("the resize", |e| e == "resize 100x40");

    pty.type_keys(b"exit\r");
    assert_eq!(wait_exit(&mut child), 0);
    pty.expect("logout\r\n");
    assert_eq!(pty.stty(), before, "terminal settings were not restored");
    let start = &fake.starts()[0];
    assert!(start.tty);
}

#[test]
fn exec_with_a_terminal_on_both_ends_gets_a_pty_session() {
    let fake = Fake::start();
    let pty = Pty::open(120, 30);
    let before = pty.stty();
    let mut child = pty.spawn(&fake, &["exec", "web", "--", "bash", "-l"]);
    pty.expect("[tty 120x30]\r\nfake$ ");
    pty.type_keys(b"exit 42\r");
    assert_eq!(wait_exit(&mut child), 42);
    assert_eq!(pty.stty(), before);
    let start = &fake.starts()[0];
    assert!(start.tty);
    assert_eq!(start.command, ["bash", "-l"]);
    assert_eq!(
        start.size,
        Some(zomg_sdk::TerminalSize {
            cols: 120,
            rows: 30
        })
    );
}

#[test]
fn a_server_hang_up_restores_the_terminal() {
    let fake = Fake::start();
    let pty = Pty::open(80, 24);
    let before = pty.stty();
    let mut child = pty.spawn(&fake, &["console", "web"]);
    pty.expect("fake$ ");
    pty.type_keys(b"drop\r");
    assert_eq!(wait_exit(&mut child), 1);
    pty.expect("Error: exec session at ws://");
    assert_eq!(pty.stty(), before);
}

#[test]
fn sigterm_ends_the_session_and_restores_the_terminal() {
    let fake = Fake::start();
    let pty = Pty::open(80, 24);
    let before = pty.stty();
    let mut child = pty.spawn(&fake, &["console", "-"]);
    pty.expect("fake$ ");
    assert_ne!(pty.stty(), before);
    kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
    assert_eq!(wait_exit(&mut child), 143);
    assert_eq!(pty.stty(), before);
    let events = fake.events();
    let created = events
        .iter()
        .find_map(|e| e.strip_prefix("create default:"))
        .expect("an ephemeral box was created");
    let name = created.split(' ').next().unwrap();
    fake.wait_for("the forced delete", |e| {
        e == format!("delete default:{name} force=true")
    });
}
