//! Command handlers, one module per command group; [`run()`] dispatches to them.
//!
//! Each handler reads its flags, makes one SDK call and hands the result to a printer.
//! What every handler shares — the target, the project, refusing `--json` — lives here.

mod bases;
mod boxes;
mod completions;
mod config;
mod files;
mod network;
mod run;
mod session;
mod users;
mod volumes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use zomg_sdk::{
    BoxRef, Client, DEFAULT_LOCAL_URL, ProjectName, ResolvedBox, ResolvedRef, SetupConfig, Target,
    TargetFlags, process_env, resolve_project, resolve_target,
};

use crate::cli::{Cli, Command, JsonArg, ProjectArg, TargetArgs};

/// Runs the parsed command line; the exit code is the command's (for `exec`, `ps`,
/// `console`) or 0.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Context { flags: cli.target };
    let result = match cli.command {
        Command::Create(a) => boxes::create(&ctx, a).await,
        Command::List(a) => boxes::list(&ctx, a).await,
        Command::Show(a) => boxes::show(&ctx, a).await,
        Command::Update(a) => boxes::update(&ctx, a).await,
        Command::Delete(a) => boxes::delete(&ctx, a).await,
        Command::Stop(a) => boxes::stop(&ctx, a).await,
        Command::Resume(a) => boxes::resume(&ctx, a).await,
        Command::Publish(a) => network::publish(a).await,
        Command::Unpublish(a) => network::unpublish(a).await,
        Command::Port(c) => network::port(c).await,
        Command::Exec(a) => return run::exec(&ctx, a).await,
        Command::Ps(a) => return run::ps(&ctx, a).await,
        Command::Logs(a) => run::logs(&ctx, a).await,
        Command::Console(a) => return run::console(&ctx, a).await,
        Command::Ssh(a) => run::ssh(a).await,
        Command::Cp(a) => files::cp(&ctx, a).await,
        Command::Inject(a) => files::inject(&ctx, a).await,
        Command::Config(c) => config::config(c, &ctx.flags),
        Command::Project(c) => config::project(&ctx, c),
        Command::Data(c) => volumes::data(&ctx, c).await,
        Command::Base(c) => bases::base(&ctx, c).await,
        Command::User(c) => users::user(c).await,
        Command::Completions(a) => completions::completions(a),
    };
    result.map(|()| ExitCode::SUCCESS)
}

/// What handlers need from the invocation beyond their own flags.
#[derive(Debug)]
pub struct Context {
    flags: TargetArgs,
}

impl Context {
    /// The setup config, if there is a place for one (a missing file reads as empty).
    fn setup(&self) -> Result<Option<SetupConfig>> {
        Ok(SetupConfig::discover(process_env, &cwd()?)?)
    }

    /// The server to talk to, from flags, environment and setup config (SPEC §2), with the
    /// local admin token as the last resort.
    pub fn target(&self) -> Result<Target> {
        let flags = TargetFlags {
            url: self.flags.url.clone(),
            token: self.flags.token.clone(),
            profile: self.flags.profile.clone(),
        };
        let mut target = resolve_target(&flags, process_env, self.setup()?.as_ref())?.target;
        if target.token.is_none() && is_default_local(&target) {
            target.token = local_admin_token(&admin_token_path(process_env));
        }
        Ok(target)
    }

    /// The project: `-p`, else `ZOMG_PROJECT`, the setup config, the git root, `default`.
    pub fn project(&self, arg: &ProjectArg) -> Result<ProjectName> {
        let resolved = resolve_project(
            arg.project.as_ref(),
            process_env,
            self.setup()?.as_ref(),
            &cwd()?,
        )?;
        Ok(resolved.name)
    }

    /// A client for the resolved target.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.target()?)?)
    }

    /// Settles the project and name of a box ref (`.` reads `ZOMG_PROJECT` and `BOX_NAME`).
    pub fn resolve(&self, r: &BoxRef, arg: &ProjectArg) -> Result<ResolvedBox> {
        let project = self.project(arg)?;
        Ok(r.resolve(&project, process_env)?)
    }

    /// Like [`Context::resolve`], but `-` and `project:-` resolve to the project of an
    /// ephemeral box (for the commands that accept one).
    pub fn resolve_ref(&self, r: &BoxRef, arg: &ProjectArg) -> Result<ResolvedRef> {
        let project = self.project(arg)?;
        Ok(r.resolve_ref(&project, process_env)?)
    }
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The URL is the local server's default one, where the admin token file may be read.
fn is_default_local(target: &Target) -> bool {
    target.url.as_str().trim_end_matches('/') == DEFAULT_LOCAL_URL
}

/// `$ZOMG_DATA_DIR/admin-token`, by default `/var/lib/zomg/admin-token`.
fn admin_token_path(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let dir = env("ZOMG_DATA_DIR").unwrap_or_else(|| "/var/lib/zomg".to_owned());
    Path::new(&dir).join("admin-token")
}

/// The local server's admin token, if its file is readable and not empty.
///
/// Missing or unreadable is not an error: the server then answers 401 and that error says
/// how to pass a token.
fn local_admin_token(path: &Path) -> Option<String> {
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// Fails with a clear message when `--json` was given to a command that cannot print JSON.
pub fn refuse_json(output: JsonArg, what: &str) -> Result<()> {
    if output.json {
        bail!("--json is not supported for {what}");
    }
    Ok(())
}

/// The error of a command whose server call is not implemented yet.
pub fn not_available(what: &str) -> anyhow::Error {
    anyhow!("{what} is not available yet: this version of zomg cannot do it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_path_follows_data_dir() {
        assert_eq!(
            admin_token_path(|_| None),
            PathBuf::from("/var/lib/zomg/admin-token")
        );
        assert_eq!(
            admin_token_path(|k| (k == "ZOMG_DATA_DIR").then(|| "/srv/z".to_owned())),
            PathBuf::from("/srv/z/admin-token")
        );
    }

    #[test]
    fn admin_token_only_for_the_default_local_url() {
        assert!(is_default_local(&Target::local()));
        let other = Target::new("http://127.0.0.1:7071".parse().unwrap());
        assert!(!is_default_local(&other));
        let remote = Target::new("https://api.example.com".parse().unwrap());
        assert!(!is_default_local(&remote));
    }

    #[test]
    fn admin_token_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        assert_eq!(local_admin_token(&path), None);
        std::fs::write(&path, "  \n").unwrap();
        assert_eq!(local_admin_token(&path), None);
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(local_admin_token(&path).as_deref(), Some("s3cret"));
    }
}
