//! Running code in a box: `exec`, `ps`, `logs`, `console`, `ssh` (SPEC §5).
//!
//! The flag rules are checked here so that their errors are exact; the sessions themselves
//! need exec/log/console support in the SDK, which does not exist yet.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{not_available, refuse_json};
use crate::cli::{ConsoleArgs, ExecArgs, LogsArgs, PsArgs, SshArgs};

/// `zomg exec`.
pub async fn exec(args: ExecArgs) -> Result<ExitCode> {
    check_exec(&args)?;
    Err(not_available("exec"))
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

/// `zomg ps`.
pub async fn ps(args: PsArgs) -> Result<()> {
    refuse_json(args.output, "ps")?;
    Err(not_available("ps"))
}

/// `zomg logs`.
pub async fn logs(args: LogsArgs) -> Result<()> {
    if args.follow {
        refuse_json(args.output, "logs --follow")?;
    }
    Err(not_available("logs"))
}

/// `zomg console`.
pub async fn console(args: ConsoleArgs) -> Result<()> {
    refuse_json(args.output, "console")?;
    Err(not_available("console"))
}

/// `zomg ssh`.
pub async fn ssh(args: SshArgs) -> Result<()> {
    refuse_json(args.output, "ssh")?;
    if args.target.is_ephemeral() {
        bail!("ssh cannot use an ephemeral box; use `zomg console -` instead");
    }
    Err(not_available("ssh"))
}
