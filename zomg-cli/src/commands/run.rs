//! Running code in a box: `exec`, `ps`, `logs`, `console`, `ssh` (SPEC §5).
//!
//! Exit codes: `exec`, `ps` and `console` exit with the command's code (128 + signal when it
//! was killed); an interrupted session (SIGINT, SIGTERM, SIGHUP) exits with 128 + that
//! signal after closing the session and deleting an ephemeral box.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use zomg_sdk::{ExecRequest, ExecStart};

use super::session::{Attach, attach, in_box};
use super::{Context, not_available, refuse_json};
use crate::cli::{ConsoleArgs, ExecArgs, LogsArgs, PsArgs, SshArgs};
use crate::output::printer;
use crate::terminal::{Interrupts, Stdio, window_size};

/// `zomg exec`.
pub async fn exec(ctx: &Context, args: ExecArgs) -> Result<ExitCode> {
    check_exec(&args)?;
    let client = ctx.client()?;
    let target = ctx.resolve_ref(&args.target, &args.project)?;
    if args.bg {
        let request = ExecRequest {
            no_hup: true,
            ..exec_request(&args)
        };
        let zomg_sdk::ResolvedRef::Box(b) = target else {
            unreachable!("check_exec refuses --bg with an ephemeral box")
        };
        let result = client.exec_run(&b.project, &b.name, &request).await?;
        if result.pid.is_none() {
            bail!("the server started a background process but sent no pid");
        }
        let mut out = printer(args.output.json);
        out.background_exec(&result)?;
        return Ok(out.finish().map(|()| ExitCode::SUCCESS)?);
    }
    let stdio = Stdio::detect();
    let tty = stdio.interactive();
    let request = exec_request(&args);
    let start = ExecStart {
        command: request.command,
        env: request.env,
        cwd: request.cwd,
        user: request.user,
        shell: request.shell,
        tty,
        size: if tty { window_size() } else { None },
    };
    let how = Attach {
        stdin: true,
        raw: tty,
        resize: tty,
    };
    let mut signals = Interrupts::install()?;
    let c = &client;
    in_box(c, target, &mut signals, |b| async move {
        let session = c.exec(&b.project, &b.name, &start).await?;
        attach(session, how).await
    })
    .await
}

/// The rules of `exec` that need no server.
fn check_exec(args: &ExecArgs) -> Result<()> {
    if args.output.json && !args.bg {
        bail!("--json is not supported in foreground mode");
    }
    if args.target.is_ephemeral() {
        if args.output.json {
            bail!("--json is not supported for ephemeral exec");
        }
        if args.bg {
            bail!("--bg cannot be used with an ephemeral box: it is deleted when the command ends");
        }
    }
    if args.command.is_empty() {
        if args.bg {
            bail!("--bg needs a command after --");
        }
        if args.sh || args.bash {
            let flag = if args.sh { "--sh" } else { "--bash" };
            bail!("{flag} needs a command string after --");
        }
    }
    Ok(())
}

/// What `exec` runs: the arguments, or with `--sh`/`--bash` one shell string made of them,
/// or `bash` when there is no command.
fn exec_request(args: &ExecArgs) -> ExecRequest {
    let shell = if args.sh {
        Some("sh")
    } else if args.bash {
        Some("bash")
    } else {
        None
    };
    let command = match shell {
        Some(_) => vec![args.command.join(" ")],
        None if args.command.is_empty() => vec!["bash".to_owned()],
        None => args.command.clone(),
    };
    ExecRequest {
        command,
        env: args.env.iter().cloned().collect::<BTreeMap<_, _>>(),
        cwd: args.wd.clone(),
        user: args.user.clone(),
        shell: shell.map(str::to_owned),
        ..Default::default()
    }
}

/// `zomg ps`: `ps` with the extra arguments, its output and exit code passed through.
pub async fn ps(ctx: &Context, args: PsArgs) -> Result<ExitCode> {
    refuse_json(args.output, "ps")?;
    let b = ctx.resolve(&args.target, &args.project)?;
    let client = ctx.client()?;
    let start = ExecStart {
        command: std::iter::once("ps".to_owned()).chain(args.args).collect(),
        ..Default::default()
    };
    let how = Attach {
        stdin: false,
        raw: false,
        resize: false,
    };
    let mut signals = Interrupts::install()?;
    signals
        .race(async {
            let session = client.exec(&b.project, &b.name, &start).await?;
            attach(session, how).await
        })
        .await
}

/// `zomg logs` (alias `tail`).
pub async fn logs(ctx: &Context, args: LogsArgs) -> Result<()> {
    if args.follow {
        refuse_json(args.output, "logs --follow")?;
    }
    let b = ctx.resolve(&args.target, &args.project)?;
    let client = ctx.client()?;
    if args.follow {
        let mut log = client.follow_logs(&b.project, &b.name, args.pid).await?;
        let mut stdout = tokio::io::stdout();
        while let Some(chunk) = log.next().await {
            stdout.write_all(&chunk?).await?;
            stdout.flush().await?;
        }
        return Ok(());
    }
    let log = client
        .logs(&b.project, &b.name, args.pid, args.lines)
        .await?;
    let mut out = printer(args.output.json);
    out.log_output(&log)?;
    Ok(out.finish()?)
}

/// `zomg console`: a login shell on a terminal in the box.
pub async fn console(ctx: &Context, args: ConsoleArgs) -> Result<ExitCode> {
    refuse_json(args.output, "console")?;
    let client = ctx.client()?;
    let target = ctx.resolve_ref(&args.target, &args.project)?;
    let stdio = Stdio::detect();
    let size = if stdio.stdout_tty {
        window_size()
    } else {
        None
    };
    let how = Attach {
        stdin: true,
        raw: stdio.stdin_tty,
        resize: stdio.stdout_tty,
    };
    let mut signals = Interrupts::install()?;
    let c = &client;
    in_box(c, target, &mut signals, |b| async move {
        let session = c.console(&b.project, &b.name, size).await?;
        attach(session, how).await
    })
    .await
}

/// `zomg ssh`.
pub async fn ssh(args: SshArgs) -> Result<()> {
    refuse_json(args.output, "ssh")?;
    if args.target.is_ephemeral() {
        bail!("ssh cannot use an ephemeral box; use `zomg console -` instead");
    }
    Err(not_available("ssh"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn exec_args(argv: &[&str]) -> ExecArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Exec(a) = cli.command else {
            panic!("not exec")
        };
        a
    }

    #[test]
    fn shell_flags_join_the_arguments_into_one_string() {
        let r = exec_request(&exec_args(&[
            "zomg", "exec", "web", "--sh", "--", "echo", "$HOME", "|", "wc -c",
        ]));
        assert_eq!(r.command, ["echo $HOME | wc -c"]);
        assert_eq!(r.shell.as_deref(), Some("sh"));
        let r = exec_args(&["zomg", "exec", "web", "--bash", "--", "ls 'a b'"]);
        let r = exec_request(&r);
        assert_eq!(r.command, ["ls 'a b'"]);
        assert_eq!(r.shell.as_deref(), Some("bash"));
    }

    #[test]
    fn no_command_runs_bash_and_flags_carry_over() {
        let r = exec_request(&exec_args(&[
            "zomg", "exec", "web", "--user", "alice", "-e", "A=1", "--wd", "/srv",
        ]));
        assert_eq!(r.command, ["bash"]);
        assert_eq!(r.shell, None);
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(r.cwd.as_deref(), Some("/srv"));
        assert_eq!(r.env.get("A").map(String::as_str), Some("1"));
        assert!(!r.no_hup);
    }
}
