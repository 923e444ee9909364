//! The `zomg` command-line interface: a thin layer over `zomg-sdk`.
//!
//! Exit codes: 0 success; 1 an error (printed as `Error: <message>` on stderr); 2 a usage
//! error (unknown flag, bad flag value); `exec`, `ps` and `console` exit with the command's
//! own code (128 + signal when it was killed, or when the session was interrupted). A closed
//! stdout (e.g. `zomg list | head -1`) ends the program quietly with 0.

// Doc comments are also the `--help` text, where `<NAME>` is meant literally.
#![allow(rustdoc::invalid_html_tags)]

mod cli;
mod commands;
mod output;
mod parse;
mod terminal;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return report(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints `Error: <message>` with its causes and returns exit code 1.
fn report(err: &anyhow::Error) -> ExitCode {
    let _ = writeln!(io::stderr(), "Error: {}", error_chain(err));
    ExitCode::FAILURE
}

/// The message and its causes joined by `: `, skipping a cause whose text the message
/// already includes (SDK errors often embed their source).
fn error_chain(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Help and version go to stdout with exit 0; anything else is a usage error, printed in the
/// same `Error: ` form as every other error, with exit code 2.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let rendered = err.render().to_string();
    let text = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let _ = write!(io::stderr(), "Error: {text}");
    ExitCode::from(2)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_skips_repeated_causes() {
        let io = io::Error::other("disk full");
        let err = anyhow::Error::new(io).context("write x: disk full");
        assert_eq!(error_chain(&err), "write x: disk full");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&err), "outer: inner");
    }

    #[test]
    fn broken_pipe_is_detected_through_context() {
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("print");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
