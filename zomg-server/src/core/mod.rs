//! The rules of zomg: box lifecycle, naming, conflicts, delete status.
//!
//! [`BoxService`] is the one place that decides what a request means. It owns no I/O of its
//! own: metadata goes through [`Store`], root filesystems through [`Storage`], processes
//! through [`Runtime`]. Every lifecycle operation on a box holds that box's lock, so create,
//! stop, resume and delete of one box never interleave.

mod bases;
mod boxes;
mod delete;
mod error;
mod exec;
mod files;
mod fork;
mod locks;
mod reconcile;
pub mod rules;
mod spec;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

pub use bases::BOOTSTRAP_PACKAGES;
pub use boxes::ListQuery;
pub use error::{CoreError, CoreResult};
pub use exec::LogSource;
pub use files::{BoxFilePath, ByteStream};
pub use reconcile::ReconcileReport;
pub use rules::ResourceLimits;

use crate::runtime::Runtime;
use crate::storage::Storage;
use crate::store::Store;

/// Server-wide settings that `core` applies to every box.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base used when `create` names none (`alias` or `alias:tag`).
    pub default_base: String,
    /// URL injected as `ZOMG_API_URL`.
    pub api_url: String,
    /// `ZOMG_API_IP`, when known.
    pub api_ip: Option<String>,
    /// `ZOMG_NODE_IP`, when known.
    pub node_ip: Option<String>,
    /// Whether the API skips TLS verification (injects `ZOMG_INSECURE=1`).
    pub insecure: bool,
    /// Resources of a box that asks for none.
    pub default_millicpus: u32,
    /// Memory of a box that asks for none, in MiB.
    pub default_ram_mb: u64,
    /// Grace of a box that asks for none.
    pub default_grace_seconds: u32,
    /// Process limit of every box.
    pub pids_limit: u32,
    /// Upper bounds of resources.
    pub limits: ResourceLimits,
    /// How often a failing delete cleanup is retried before it is reported `failed`.
    pub delete_attempts: u32,
    /// Wait before the first retry; doubles after each.
    pub delete_backoff: Duration,
}

impl Settings {
    /// Defaults for a server on this host: 1 CPU and 1 GiB per box, limits from the host.
    pub fn for_host(api_url: String) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Settings {
            default_base: "box-base".to_owned(),
            api_url,
            api_ip: None,
            node_ip: None,
            insecure: false,
            default_millicpus: 1000.min(cpus * 1000),
            default_ram_mb: 1024,
            default_grace_seconds: 10,
            pids_limit: 4096,
            limits: ResourceLimits {
                max_millicpus: cpus * 1000,
                max_ram_mb: host_memory_mb().unwrap_or(1024 * 1024),
                min_ram_mb: 16,
            },
            delete_attempts: 5,
            delete_backoff: Duration::from_secs(1),
        }
    }
}

/// Total memory of the host in MiB, from `/proc/meminfo`.
fn host_memory_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// The box service: every rule of the spec, over the backend traits.
///
/// Cheap to clone; background tasks (delete retries) hold a clone.
#[derive(Debug, Clone)]
pub struct BoxService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    storage: Arc<dyn Storage>,
    runtime: Arc<dyn Runtime>,
    settings: Settings,
    locks: locks::KeyedLocks,
}

impl BoxService {
    /// Builds the service over its backends.
    pub fn new(
        store: Arc<dyn Store>,
        storage: Arc<dyn Storage>,
        runtime: Arc<dyn Runtime>,
        settings: Settings,
    ) -> Self {
        BoxService {
            inner: Arc::new(Inner {
                store,
                storage,
                runtime,
                settings,
                locks: locks::KeyedLocks::default(),
            }),
        }
    }

    /// Lets the backends release server-wide resources; boxes keep running.
    pub async fn shutdown(&self) {
        self.runtime().shutdown().await;
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    fn runtime(&self) -> &dyn Runtime {
        &*self.inner.runtime
    }

    /// Runs a storage operation off the async executor (each is a few syscalls, but some
    /// wait on disk).
    async fn storage<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Storage) -> crate::storage::StorageResult<T> + Send + 'static,
    ) -> crate::storage::StorageResult<T> {
        let storage = self.inner.storage.clone();
        tokio::task::spawn_blocking(move || f(&*storage))
            .await
            .unwrap_or_else(|e| {
                Err(crate::storage::StorageError::io(
                    "storage task panicked",
                    std::io::Error::other(e.to_string()),
                ))
            })
    }

    /// The storage backend, for callers that run on a blocking thread already.
    pub fn storage_backend(&self) -> Arc<dyn Storage> {
        self.inner.storage.clone()
    }

    /// The store, for the base commands of the server binary.
    pub fn store_backend(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }
}

/// A new random id with a kind prefix, e.g. `b-3f9c2a7d1e5b4c60`.
fn new_id(prefix: &str) -> String {
    let bytes: [u8; 8] = rand::random();
    format!("{prefix}-{}", hex::encode(bytes))
}

#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
