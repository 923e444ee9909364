//! Attaching an exec or console session to this process's stdin, stdout and stderr, and
//! running a session in an ephemeral box that is deleted whatever happens.

use std::future::Future;
use std::io::{self, Read, Write as _};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use zomg_sdk::{
    Client, CreateBox, EphemeralBox, ExecSession, ProjectName, ResolvedBox, ResolvedRef,
    generate_ephemeral_name,
};

use crate::terminal::{Interrupts, RawMode, exit_code, signal_exit, window_size};

/// How a session uses the local terminal.
#[derive(Debug, Clone, Copy)]
pub struct Attach {
    /// Forward our stdin to the command (otherwise it gets EOF at once).
    pub stdin: bool,
    /// Put our terminal in raw mode for the session.
    pub raw: bool,
    /// Forward window-size changes (SIGWINCH).
    pub resize: bool,
}

/// Pumps the session until the command exits and returns its exit code.
///
/// stdin is read on a plain thread: a blocking read of a terminal cannot be cancelled, and a
/// thread (unlike a runtime's blocking task) never holds up the exit once the command is
/// done.
pub async fn attach(mut session: ExecSession, how: Attach) -> Result<ExitCode> {
    let raw = how.raw.then(RawMode::enable).transpose()?;
    let (input, stdout, stderr) = session.take_streams();
    let feed = async {
        if let Some(mut input) = input {
            if how.stdin {
                let mut chunks = read_stdin();
                while let Some(chunk) = chunks.recv().await {
                    if input.write(chunk).await.is_err() {
                        break;
                    }
                }
            }
            input.close();
        }
        std::future::pending::<()>().await;
    };
    let resizes = async {
        if how.resize {
            if let Ok(mut winch) = signal(SignalKind::window_change()) {
                while winch.recv().await.is_some() {
                    if let Some(size) = window_size() {
                        let _ = session.resize(size.cols, size.rows).await;
                    }
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let outputs = async {
        let out = async {
            if let Some(mut r) = stdout {
                tokio::io::copy(&mut r, &mut tokio::io::stdout()).await?;
            }
            io::Result::Ok(())
        };
        let err = async {
            if let Some(mut r) = stderr {
                tokio::io::copy(&mut r, &mut tokio::io::stderr()).await?;
            }
            io::Result::Ok(())
        };
        tokio::try_join!(out, err)
    };
    tokio::select! {
        done = outputs => { done?; }
        () = feed => {}
        () = resizes => {}
    }
    let exit = session.wait().await?;
    drop(raw);
    if let Some(error) = &exit.error {
        let _ = writeln!(io::stderr(), "Error: {error}");
    }
    Ok(exit_code(exit.exit_code))
}

/// Reads stdin on its own thread, in chunks as they come; the channel closes at EOF.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Runs `work` in the box `target` names; for an ephemeral ref, in a new box that is
/// force-deleted afterwards: after success, failure, a broken session or a signal. A
/// signal ends `work` and gives exit code 128 + signal; the command's own exit code is kept
/// otherwise.
pub async fn in_box<F, Fut>(
    client: &Client,
    target: ResolvedRef,
    signals: &mut Interrupts,
    work: F,
) -> Result<ExitCode>
where
    F: FnOnce(ResolvedBox) -> Fut,
    Fut: Future<Output = Result<ExitCode>>,
{
    let project = match target {
        ResolvedRef::Box(b) => return signals.race(work(b)).await,
        ResolvedRef::Ephemeral { project } => project,
    };
    let name = generate_ephemeral_name();
    let _ = writeln!(io::stderr(), "ephemeral box: {name}");
    let create = CreateBox {
        name: name.to_string(),
        ..Default::default()
    };
    // A signal during the create does not abandon it: the box may come into existence
    // anyway, so the create finishes and the box is deleted right after.
    let created = EphemeralBox::create(client, &project, create);
    tokio::pin!(created);
    let mut interrupted = None;
    let guard = loop {
        tokio::select! {
            r = &mut created => break r?,
            sig = signals.recv(), if interrupted.is_none() => interrupted = Some(sig),
        }
    };
    let outcome = match interrupted {
        Some(sig) => Ok(signal_exit(sig)),
        None => signals.race(work(guard.resolved())).await,
    };
    let deleted = guard.delete().await;
    finish_ephemeral(&project, name.as_str(), outcome, deleted)
}

fn finish_ephemeral<T>(
    project: &ProjectName,
    name: &str,
    outcome: Result<ExitCode>,
    deleted: zomg_sdk::Result<T>,
) -> Result<ExitCode> {
    match (outcome, deleted) {
        (outcome, Ok(_)) => outcome,
        (Ok(code), Err(e)) => {
            let _ = writeln!(
                io::stderr(),
                "Error: ephemeral box {project}:{name} was not deleted: {e} (delete it with `zomg delete -f {project}:{name}`)"
            );
            Ok(code)
        }
        (Err(e), Err(d)) => Err(anyhow!(
            "{e:#}; deleting ephemeral box {project}:{name} failed too: {d} (delete it with `zomg delete -f {project}:{name}`)"
        )),
    }
}
