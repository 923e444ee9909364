//! Assembling a server: configuration, backends, reconciliation, the HTTP listener.
//!
//! [`start`] is what `zomg-server serve` runs, and what tests use to run a real server
//! in-process on a free port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

use crate::api::{self, AppState};
use crate::core::{BoxService, ReconcileReport, Settings};
use crate::runtime::local::{LocalRuntime, LocalRuntimeConfig};
use crate::storage::btrfs::BtrfsStorage;
use crate::store::sqlite::SqliteStore;

/// Default address of the API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/zomg";
/// Default size of the loop-mounted btrfs image.
pub const DEFAULT_STORAGE_SIZE_GB: u64 = 64;

/// Everything a server needs to start. Built from flags, environment and the config file
/// by the binary; built directly by tests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Where the database, token, storage image and runtime state live.
    pub data_dir: PathBuf,
    /// Base used when `create` names none.
    pub default_base: String,
    /// The server's domain for box URLs and publishing, when it has one.
    pub domain: Option<String>,
    /// URL injected into boxes as `ZOMG_API_URL` (default: `http://<listen>`).
    pub api_url: Option<String>,
    /// An existing btrfs mount to use instead of the loop image.
    pub btrfs_mount: Option<PathBuf>,
    /// Size of the loop image created when there is no btrfs mount.
    pub storage_size_gb: u64,
    /// The runc binary.
    pub runc: PathBuf,
    /// The static tini binary bind-mounted into boxes as pid 1.
    pub tini: PathBuf,
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            data_dir: data_dir.into(),
            default_base: "box-base".to_owned(),
            domain: None,
            api_url: None,
            btrfs_mount: None,
            storage_size_gb: DEFAULT_STORAGE_SIZE_GB,
            runc: PathBuf::from("runc"),
            tini: PathBuf::from("/usr/bin/tini-static"),
        }
    }
}

/// The optional YAML config file (`--config`, or `<data-dir>/server.yaml` when present).
/// Flags and environment variables win over it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `listen: 127.0.0.1:7070`
    pub listen: Option<SocketAddr>,
    /// `data_dir: /var/lib/zomg`
    pub data_dir: Option<PathBuf>,
    /// `default_base: box-base`
    pub default_base: Option<String>,
    /// `domain: zomg.example.com`
    pub domain: Option<String>,
    /// `api_url: http://10.0.0.1:7070`
    pub api_url: Option<String>,
    /// `btrfs_mount: /mnt/btrfs`
    pub btrfs_mount: Option<PathBuf>,
    /// `storage_size_gb: 64`
    pub storage_size_gb: Option<u64>,
    /// `runc: /usr/sbin/runc`
    pub runc: Option<PathBuf>,
    /// `tini: /usr/bin/tini-static`
    pub tini: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads a config file; a missing file at the default location is not an error.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The admin token: read from `<data-dir>/admin-token`, or generated and written there
/// with mode 0600 on first start.
pub fn admin_token(data_dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let tmp = data_dir.join(".admin-token.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// The backends and service of a data directory, without the HTTP listener. The base
/// commands of the binary use this directly.
pub fn open_service(config: &ServerConfig) -> Result<BoxService> {
    let dir = &config.data_dir;
    create_private_dir(dir)?;
    let storage = match &config.btrfs_mount {
        Some(mount) => BtrfsStorage::open(mount.clone())
            .with_context(|| format!("opening btrfs storage at {}", mount.display()))?,
        None => BtrfsStorage::open_or_create_loop(dir, config.storage_size_gb << 30)
            .with_context(|| format!("setting up loop btrfs storage in {}", dir.display()))?,
    };
    let store = SqliteStore::open(&dir.join("zomg.db"))
        .with_context(|| format!("opening the database {}", dir.join("zomg.db").display()))?;
    let runtime = LocalRuntime::new(LocalRuntimeConfig {
        state_dir: dir.join("runtime"),
        runc_binary: config.runc.clone(),
        tini_path: config.tini.clone(),
        instance: instance_id(dir),
    })
    .context("setting up the runc runtime")?;
    let api_url = config
        .api_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let mut settings = Settings::for_host(api_url);
    settings.default_base = config.default_base.clone();
    Ok(BoxService::new(
        Arc::new(store),
        Arc::new(storage),
        Arc::new(runtime),
        settings,
    ))
}

/// A short stable id for a data directory, so that servers with different data
/// directories never share cgroup or container names.
pub fn instance_id(data_dir: &Path) -> String {
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    // FNV-1a: stable across builds and Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// A server running in this process.
#[derive(Debug)]
pub struct RunningServer {
    /// The address the API listens on.
    pub addr: SocketAddr,
    /// The admin token.
    pub token: String,
    /// What start-up reconciliation found.
    pub reconcile: ReconcileReport,
    /// The box service, for tests that inspect state directly.
    pub service: BoxService,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The API base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets running ones finish, and returns.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.context("server task panicked")??;
        self.service.shutdown().await;
        Ok(())
    }

    /// Waits until the server stops on its own (it only does on error).
    pub async fn wait(mut self) -> Result<()> {
        (&mut self.task).await.context("server task panicked")??;
        Ok(())
    }
}

/// Opens the backends, reconciles, and serves the API until [`RunningServer::shutdown`].
pub async fn start(config: ServerConfig) -> Result<RunningServer> {
    let service = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_service(&config)).await??
    };
    let token = admin_token(&config.data_dir)?;
    let reconcile = service
        .reconcile()
        .await
        .context("reconciling state on start")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = api::router(AppState {
        service: service.clone(),
        token: token.clone().into(),
        backend: "local",
    });
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    info!(%addr, data_dir = %config.data_dir.display(), "zomg-server listening");
    Ok(RunningServer {
        addr,
        token,
        reconcile,
        service,
        shutdown: Some(tx),
        task,
    })
}
