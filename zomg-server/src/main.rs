//! The `zomg-server` binary: `serve` runs the API; `base` builds and imports bases.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use zomg_server::core::BoxService;
use zomg_server::server::{self, ConfigFile, ServerConfig};

/// zomg-server: owns box state and runs boxes on this machine (runc + btrfs).
#[derive(Debug, Parser)]
#[command(name = "zomg-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (default 127.0.0.1:7070, data in /var/lib/zomg).
    Serve(ServeArgs),
    /// Build, import and list bases (the read-only templates boxes start from).
    #[command(subcommand)]
    Base(BaseCommand),
}

/// Where the server keeps its state; shared by every command.
#[derive(Debug, Args)]
struct DataArgs {
    /// Data directory: database, admin token, storage image, runtime state.
    #[arg(long, env = "ZOMG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// YAML config file (default: <data-dir>/server.yaml when it exists). Flags and
    /// environment variables win over it.
    #[arg(long, env = "ZOMG_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Use this btrfs mount instead of a loop image in the data directory.
    #[arg(long, env = "ZOMG_BTRFS_MOUNT")]
    btrfs_mount: Option<PathBuf>,
    /// Size of the loop image created when there is no btrfs mount, in GB.
    #[arg(long, env = "ZOMG_STORAGE_SIZE_GB")]
    storage_size_gb: Option<u64>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address of the HTTP API.
    #[arg(long, env = "ZOMG_LISTEN")]
    listen: Option<SocketAddr>,
    /// Domain for box URLs and publishing.
    #[arg(long, env = "ZOMG_DOMAIN")]
    domain: Option<String>,
    /// Base used when `create` names none.
    #[arg(long, env = "ZOMG_DEFAULT_BASE")]
    default_base: Option<String>,
    /// URL injected into boxes as ZOMG_API_URL (default: http://<listen>).
    #[arg(long, env = "ZOMG_PUBLIC_API_URL")]
    api_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum BaseCommand {
    /// Build a Debian base with debootstrap (bash, coreutils, procps, iproute2,
    /// ca-certificates, curl, python3, tar).
    Bootstrap {
        /// Alias, optionally with a tag (default box-base:latest).
        #[arg(default_value = "box-base")]
        alias: String,
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// Debian mirror.
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Replace the base if it exists (boxes already created from it keep their root).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Import a root filesystem from a tar archive (.tar, .tar.gz, ...) or a directory.
    Import {
        /// alias or alias:tag.
        reference: String,
        /// rootfs.tar[.gz] or a directory.
        source: PathBuf,
        /// Replace the base if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List bases.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
}

impl DataArgs {
    /// Opens the backends of the configured data dir (for `base` commands, next to or
    /// without a running server).
    async fn open_service(&self) -> Result<BoxService> {
        let (config, _) = self.config()?;
        tokio::task::spawn_blocking(move || server::open_service(&config)).await?
    }

    /// Resolves the config: flags and environment, then the file, then defaults.
    fn config(&self) -> Result<(ServerConfig, ConfigFile)> {
        let data_dir_hint = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(server::DEFAULT_DATA_DIR));
        let file = match &self.config {
            Some(path) => ConfigFile::load(path)?,
            None => {
                let default = data_dir_hint.join("server.yaml");
                if default.exists() {
                    ConfigFile::load(&default)?
                } else {
                    ConfigFile::default()
                }
            }
        };
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or(data_dir_hint);
        let mut config = ServerConfig::new(data_dir);
        config.btrfs_mount = self.btrfs_mount.clone().or(file.btrfs_mount.clone());
        if let Some(gb) = self.storage_size_gb.or(file.storage_size_gb) {
            config.storage_size_gb = gb;
        }
        if let Some(runc) = &file.runc {
            config.runc = runc.clone();
        }
        if let Some(tini) = &file.tini {
            config.tini = tini.clone();
        }
        Ok((config, file))
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ZOMG_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Base(cmd) => base(cmd).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (mut config, file) = args.data.config()?;
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    config.domain = args.domain.or(file.domain);
    if let Some(base) = args.default_base.or(file.default_base) {
        config.default_base = base;
    }
    config.api_url = args.api_url.or(file.api_url);
    let server = server::start(config).await?;
    eprintln!("zomg-server listening on {}", server.url());
    shutdown_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn base(cmd: BaseCommand) -> Result<()> {
    match cmd {
        BaseCommand::Bootstrap {
            alias,
            suite,
            mirror,
            force,
            data,
        } => {
            let service = data.open_service().await?;
            let base = service
                .bootstrap_base(&alias, &suite, &mirror, force)
                .await?;
            println!("{}:{}", base.alias, base.tag);
        }
        BaseCommand::Import {
            reference,
            source,
            force,
            data,
        } => {
            let service = data.open_service().await?;
            let base = service.import_base(&reference, &source, force).await?;
            println!("{}:{}", base.alias, base.tag);
        }
        BaseCommand::List { data } => {
            let service = data.open_service().await?;
            for b in service.list_bases()?.bases {
                println!(
                    "{}:{}\t{}\t{}",
                    b.alias,
                    b.tag,
                    b.created_at.format("%Y-%m-%d %H:%M"),
                    b.source.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
