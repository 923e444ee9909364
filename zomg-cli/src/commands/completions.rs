//! `zomg completions <bash|zsh|fish>`: shell completion scripts generated from the clap tree.

use std::io::{self, Write};

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, Shell};

/// Prints the completion script for the chosen shell.
pub fn completions(args: CompletionsArgs) -> Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Generated into memory first: clap_complete panics on a write error, and a closed pipe
    // must stay a clean exit.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "zomg", &mut script);
    io::stdout().lock().write_all(&script)?;
    Ok(())
}
