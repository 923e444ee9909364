//! The local setup: `config set|get|list|unset|path|profiles` and `project current` (SPEC §2).
//!
//! Everything here works without a server; the file format and the resolution rules live in
//! the SDK (`SetupConfig`, `list_profiles`, `resolve_project`).

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use zomg_sdk::{SetupConfig, list_profiles, process_env, selected_profile};

use super::Context;
use crate::cli::{ConfigCommand, ProjectCommand};
use crate::output::write_table;

/// Where `zomg config` reads and writes: `$ZOMG_SETUP_DIR/config.yaml`, the nearest
/// `.zomg/config.yaml`, or the user config dir.
fn config_path() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    SetupConfig::default_path(process_env, &cwd)
        .context("cannot find a place for the setup config: set ZOMG_SETUP_DIR or HOME")
}

/// `zomg config ...`.
pub fn config(cmd: ConfigCommand, target: &crate::cli::TargetArgs) -> Result<()> {
    let path = config_path()?;
    let mut out = io::stdout().lock();
    match cmd {
        ConfigCommand::Path => writeln!(out, "{}", path.display())?,
        ConfigCommand::Get { key } => {
            let config = SetupConfig::load(&path)?;
            match config.get(&key) {
                Some(value) => writeln!(out, "{value}")?,
                None => bail!("{key} is not set in {}", path.display()),
            }
        }
        ConfigCommand::List => {
            for (key, value) in SetupConfig::load(&path)?.list() {
                writeln!(out, "{key}: {value}")?;
            }
        }
        ConfigCommand::Set { key, value } => {
            let mut config = SetupConfig::load(&path)?;
            config.set(&key, &value)?;
            config.save()?;
        }
        ConfigCommand::Unset { key } => {
            let mut config = SetupConfig::load(&path)?;
            if config.unset(&key)? {
                config.save()?;
            }
        }
        ConfigCommand::Profiles => {
            let config = SetupConfig::load(&path)?;
            let selected = selected_profile(target.profile.as_deref(), process_env, Some(&config))
                .map(|(name, _)| name);
            let vars = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
            let rows: Vec<Vec<String>> = list_profiles(vars, Some(&config), selected.as_deref())
                .into_iter()
                .map(|p| {
                    let source = match (p.from_env, p.from_config) {
                        (true, true) => "env+config",
                        (true, false) => "env",
                        (false, true) => "config",
                        (false, false) => "-",
                    };
                    vec![
                        if p.selected { "*" } else { "" }.to_owned(),
                        p.name,
                        p.url.unwrap_or_else(|| "-".into()),
                        source.to_owned(),
                    ]
                })
                .collect();
            write_table(&mut out, &["CURRENT", "NAME", "URL", "SOURCE"], &rows)?;
        }
    }
    Ok(out.flush()?)
}

/// `zomg project current`.
pub fn project(ctx: &Context, cmd: ProjectCommand) -> Result<()> {
    let ProjectCommand::Current = cmd;
    let project = ctx.project(&Default::default())?;
    Ok(writeln!(io::stdout().lock(), "{project}")?)
}
