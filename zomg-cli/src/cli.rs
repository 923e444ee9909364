//! The command tree: clap types for every `zomg` command (SPEC §2–§10).
//!
//! Help text is the doc comment of each type and field. Flag values are parsed here
//! (see [`crate::parse`]); rules that combine several flags are checked by the commands so
//! that their errors read exactly as the spec fixes them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use zomg_sdk::{BoxName, BoxRef, DataMountSpec, ProjectName, VolumeRef};

use crate::parse::{self, Tag};

/// A box argument: `name`, `project:name`, `project.name`, `.` or `-` (checked by clap).
pub type BoxArg = BoxRef;

/// zomg runs boxes: full Linux environments you create in milliseconds, exec into, fork,
/// stop and resume.
///
/// The server is found from --url, the selected profile (--profile or ZOMG_PROFILE, with
/// ZOMG_PROFILE_<NAME>_URL), ZOMG_URL, ZOMG_API_URL, the setup config (`zomg config path`),
/// and finally the local server at http://127.0.0.1:7070.
#[derive(Debug, Parser)]
#[command(name = "zomg", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Where the server is and how to authenticate.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that choose the server; accepted by every command.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Server URL; wins over profiles, ZOMG_URL and ZOMG_API_URL
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API token; wins over ZOMG_PROFILE_<NAME>_TOKEN, ZOMG_TOKEN and the setup config
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Profile for this invocation (same as setting ZOMG_PROFILE)
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
}

/// `-p/--project`: the project when a box ref does not name one.
#[derive(Debug, Clone, Default, Args)]
pub struct ProjectArg {
    /// Project (default: ZOMG_PROJECT, then the git repository's directory name, then
    /// `default`)
    #[arg(short, long, value_name = "PROJECT")]
    pub project: Option<ProjectName>,
}

/// `-j/--json`: machine-readable output, where the command supports it (SPEC §10).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonArg {
    /// Print JSON instead of text
    #[arg(short, long)]
    pub json: bool,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a box from a base, or by forking an existing box
    Create(CreateArgs),
    /// List boxes
    List(ListArgs),
    /// Show one box in detail
    Show(ShowArgs),
    /// Change a box's port, resources, termination grace or tags
    Update(UpdateArgs),
    /// Delete boxes (a missing box counts as deleted)
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Stop a box: end every process, keep its filesystem and data
    Stop(BoxCmdArgs),
    /// Boot a stopped box again from the same root filesystem
    Resume(BoxCmdArgs),
    /// Publish a box on a host name
    Publish(PublishArgs),
    /// Remove a published host from a box
    Unpublish(UnpublishArgs),
    /// Run a command in a box (`-` as the box: a throwaway box)
    Exec(ExecArgs),
    /// Run `ps` in a box
    Ps(PsArgs),
    /// Read the log of a background process started with `exec --bg`
    #[command(visible_alias = "tail")]
    Logs(LogsArgs),
    /// Attach an interactive login shell to a box
    Console(ConsoleArgs),
    /// Open SSH to a box through the profile's SSH host
    Ssh(SshArgs),
    /// Copy a file (or with -r a directory) to or from a box; exactly one side is `box:/path`
    #[command(visible_aliases = ["get", "put"])]
    Cp(CpArgs),
    /// Copy local credentials (codex, SSH key, git config) into a box
    Inject(InjectArgs),
    /// Read and write the local setup config (.zomg/config.yaml)
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the project that commands use
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Inspect TCP ports listening in a box
    #[command(subcommand)]
    Port(PortCommand),
    /// Manage data volumes
    #[command(subcommand)]
    Data(DataCommand),
    /// List base root filesystems
    #[command(subcommand)]
    Base(BaseCommand),
    /// Manage project users
    #[command(subcommand)]
    User(UserCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

/// `zomg create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new box
    pub name: BoxArg,
    /// Base to boot from: `alias` or `alias:tag` (default: the server's default base)
    #[arg(long, value_name = "BASE")]
    pub base: Option<String>,
    /// Clone an existing box: its root, data volumes, config, tags, env and port
    #[arg(long, value_name = "BOX")]
    pub fork: Option<BoxName>,
    /// Tag the box (repeatable)
    #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse::tag)]
    pub tags: Vec<Tag>,
    /// Mount a data volume of the project (repeatable); read-write unless `:ro`
    #[arg(short, long = "data", value_name = "VOL=/PATH[:ro|:rw]", value_parser = parse::data_mount)]
    pub data: Vec<DataMountSpec>,
    /// Set an environment variable in the box (repeatable)
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse::env_var)]
    pub env: Vec<(String, String)>,
    /// CPU limit: cores (`2`, `0.5`) or millicores (`500m`)
    #[arg(long, value_name = "CPU", value_parser = parse::cpu)]
    pub cpu: Option<f64>,
    /// Memory limit: `512M`, `2G`
    #[arg(long, value_name = "SIZE", value_parser = parse::memory)]
    pub memory: Option<u64>,
    /// Root filesystem limit in GB
    #[arg(long, value_name = "GB", value_parser = parse::gigabytes)]
    pub storage: Option<u64>,
    /// Port that the box URL and published hosts route to
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// List boxes of every project
    #[arg(short, long, conflicts_with = "project")]
    pub all: bool,
    /// Print box names only
    #[arg(short, long)]
    pub quiet: bool,
    /// Only boxes with this tag (repeatable; all must match)
    #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse::tag)]
    pub tags: Vec<Tag>,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    /// Settings: PORT, CPU, MEMORY, TERMINATION_GRACE_PERIOD_SECONDS (others are ignored by
    /// the server; the environment of a box cannot change after create)
    #[arg(value_name = "KEY=VALUE", value_parser = parse::setting)]
    pub settings: Vec<(String, String)>,
    /// A setting given as a flag (repeatable; merged with the positional settings)
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse::env_var)]
    pub env: Vec<(String, String)>,
    /// Set a tag (repeatable)
    #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse::tag)]
    pub tags: Vec<Tag>,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The boxes to delete
    #[arg(value_name = "BOX", required = true)]
    pub targets: Vec<BoxArg>,
    /// Delete running boxes too
    #[arg(short, long)]
    pub force: bool,
    /// Wait until cleanup has finished or failed
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 240)]
    pub wait_timeout: u64,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// Arguments of commands that take one box: `stop`, `resume`.
#[derive(Debug, Args)]
pub struct BoxCmdArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    /// Host is `<subdomain>.<domain>`; `@` means the bare domain
    #[arg(required_unless_present = "host", conflicts_with = "host")]
    pub subdomain: Option<String>,
    /// Full host name to publish on
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Domain for the subdomain (default: the server's publish domain)
    #[arg(long, value_name = "DOMAIN", conflicts_with = "host")]
    pub domain: Option<String>,
    /// Take the host over from another box
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg unpublish`.
#[derive(Debug, Args)]
pub struct UnpublishArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    /// Host is `<subdomain>.<domain>`; `@` means the bare domain
    #[arg(required_unless_present = "host", conflicts_with = "host")]
    pub subdomain: Option<String>,
    /// Full host name to remove
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Domain for the subdomain (default: the server's publish domain)
    #[arg(long, value_name = "DOMAIN", conflicts_with = "host")]
    pub domain: Option<String>,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The box; `-` (or `project:-`) runs in a throwaway box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    /// Run as this project user
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Set an environment variable for the command (repeatable)
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse::env_var)]
    pub env: Vec<(String, String)>,
    /// Working directory
    #[arg(long = "wd", visible_alias = "cwd", value_name = "DIR")]
    pub wd: Option<String>,
    /// Treat the arguments as one `sh -c` string
    #[arg(long, conflicts_with = "bash")]
    pub sh: bool,
    /// Treat the arguments as one `bash -c` string
    #[arg(long)]
    pub bash: bool,
    /// Start the command detached and print `pid=<n>`; read its output with `zomg logs`
    #[arg(long)]
    pub bg: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
    /// The command (default: `bash`)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `zomg ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
    /// Extra arguments for `ps`
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `zomg logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    /// The background process, as printed by `exec --bg`
    #[arg(long, value_name = "PID", required = true)]
    pub pid: u32,
    /// Print only the last N lines
    #[arg(short = 'l', long = "lines", value_name = "N")]
    pub lines: Option<u32>,
    /// Keep streaming until the process exits
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The box; `-` (or `project:-`) uses a throwaway box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg cp` (also `get`, `put`).
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local path, `-` (stdin) or `box:/path` (`-:/path`: an ephemeral box)
    #[arg(value_name = "SRC", allow_hyphen_values = true)]
    pub src: String,
    /// Destination: a local path, `-` (stdout) or `box:/path`
    #[arg(value_name = "DEST", allow_hyphen_values = true)]
    pub dest: String,
    /// Copy directories recursively
    #[arg(short, long)]
    pub recursive: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg inject`.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The box
    #[arg(value_name = "BOX")]
    pub target: BoxArg,
    /// Codex credentials (default: ~/.codex/auth.json)
    #[arg(long, value_name = "PATH")]
    pub codex_auth: Option<PathBuf>,
    /// Codex config (default: ~/.codex/config.toml)
    #[arg(long, value_name = "PATH")]
    pub codex_toml: Option<PathBuf>,
    /// SSH private key (default: the first of ~/.ssh/id_ed25519, id_rsa, id_ecdsa)
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub output: JsonArg,
}

/// `zomg config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a key (e.g. `profile`, `zomg_domain`, `token`)
    Set {
        /// The key
        key: String,
        /// The value
        value: String,
    },
    /// Print a key's value
    Get {
        /// The key
        key: String,
    },
    /// Print every key and value
    List,
    /// Remove a key
    Unset {
        /// The key
        key: String,
    },
    /// Print the path of the setup config file
    Path,
    /// List profiles: from ZOMG_PROFILE_<NAME>_URL variables and the config file
    Profiles,
}

/// `zomg project ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Print the project used when -p is absent
    Current,
}

/// `zomg port ...`.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// List TCP ports listening in a box
    List {
        /// The box
        #[arg(value_name = "BOX")]
        target: BoxArg,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Wait until a port in a box accepts connections (non-zero exit on timeout)
    Wait {
        /// The box
        #[arg(value_name = "BOX")]
        target: BoxArg,
        /// The TCP port
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Give up after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
}

/// `zomg data ...`.
///
/// A volume is named `name` (in the project of `-p`, `ZOMG_PROJECT`, ...) or `project:name`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Create a data volume
    Create {
        /// The volume: `name` or `project:name`
        #[arg(value_name = "VOLUME")]
        name: VolumeRef,
        /// Size limit in GB (default: none; with --from, the source's)
        #[arg(long, value_name = "GB", value_parser = parse::gigabytes)]
        size: Option<u64>,
        /// Start as a snapshot of another volume of the same project
        #[arg(long, value_name = "VOLUME")]
        from: Option<VolumeRef>,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// List data volumes
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Show one data volume
    Show {
        /// The volume: `name` or `project:name`
        #[arg(value_name = "VOLUME")]
        name: VolumeRef,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Delete data volumes (refused while a box has one attached)
    Delete {
        /// The volumes: `name` or `project:name`
        #[arg(value_name = "VOLUME", required = true)]
        names: Vec<VolumeRef>,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
}

/// `zomg base ...`.
#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// List the bases boxes can boot from
    List {
        #[command(flatten)]
        output: JsonArg,
    },
}

/// `zomg user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List the project's users
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Create a user that exists in every box of the project
    Create {
        /// The user name
        name: String,
        /// Login shell
        #[arg(long, value_name = "PATH")]
        shell: Option<String>,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Change a project user
    Update {
        /// The user name
        name: String,
        /// Login shell
        #[arg(long, value_name = "PATH")]
        shell: Option<String>,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
    /// Delete a project user (its home directory goes with it)
    Delete {
        /// The user name
        name: String,
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        output: JsonArg,
    },
}

/// `zomg completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: Shell,
}

/// Shells that `zomg completions` supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash
    Bash,
    /// Zsh
    Zsh,
    /// Fish
    Fish,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_trailing_command_and_cwd_alias() {
        let cli = Cli::try_parse_from([
            "zomg", "exec", "web", "--cwd", "/srv", "-e", "A=1", "--", "ls", "-la",
        ])
        .unwrap();
        let Command::Exec(a) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(a.wd.as_deref(), Some("/srv"));
        assert_eq!(a.env, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(a.command, ["ls", "-la"]);
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli =
            Cli::try_parse_from(["zomg", "list", "--profile", "staging", "--url", "http://x"])
                .unwrap();
        assert_eq!(cli.target.profile.as_deref(), Some("staging"));
        assert_eq!(cli.target.url.as_deref(), Some("http://x"));
    }

    #[test]
    fn aliases() {
        for (argv, want) in [
            (vec!["zomg", "rm", "a", "b"], "delete"),
            (vec!["zomg", "tail", "a", "--pid", "3"], "logs"),
            (vec!["zomg", "get", "a:/x", "."], "cp"),
            (vec!["zomg", "put", "x", "a:/x"], "cp"),
        ] {
            let cli = Cli::try_parse_from(&argv).unwrap();
            let got = match cli.command {
                Command::Delete(_) => "delete",
                Command::Logs(_) => "logs",
                Command::Cp(_) => "cp",
                _ => "other",
            };
            assert_eq!(got, want, "{argv:?}");
        }
    }

    #[test]
    fn delete_defaults() {
        let cli = Cli::try_parse_from(["zomg", "delete", "a"]).unwrap();
        let Command::Delete(d) = cli.command else {
            panic!("not delete")
        };
        assert_eq!(d.wait_timeout, 240);
        assert!(!d.force && !d.wait);
    }

    #[test]
    fn logs_requires_pid() {
        assert!(Cli::try_parse_from(["zomg", "logs", "a"]).is_err());
    }
}
