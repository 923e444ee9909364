//! The box service over the honest fakes (no root needed), shared by the `core` tests.

use std::sync::Arc;
use std::time::Duration;

use super::{BoxService, ResourceLimits, Settings};
use crate::runtime::fake::FakeRuntime;
use crate::storage::fake::FakeStorage;
use crate::storage::{Storage, Subvol};
use crate::store::sqlite::SqliteStore;
use crate::store::{BaseRecord, Store};

/// A service with its backends, for looking behind it.
pub(super) struct Harness {
    pub(super) svc: BoxService,
    pub(super) store: Arc<SqliteStore>,
    pub(super) storage: Arc<FakeStorage>,
    pub(super) runtime: FakeRuntime,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A service over fresh fakes with one base, `box-base:latest`, fast delete retries and
    /// whatever `adjust` changes in its settings.
    pub(super) fn new(adjust: impl FnOnce(&mut Settings)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FakeStorage::open(dir.path().join("storage")).unwrap());
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let runtime = FakeRuntime::new();
        let base = Subvol::base("box-base", "latest");
        storage.create(&base).unwrap();
        storage
            .write_file(&base, "etc/os-release".as_ref(), b"fake")
            .unwrap();
        storage.set_read_only(&base, true).unwrap();
        store
            .insert_base(&BaseRecord {
                alias: "box-base".into(),
                tag: "latest".into(),
                source: None,
                created_at: chrono::Utc::now(),
            })
            .unwrap();
        let mut settings = Settings::for_host("http://127.0.0.1:7070".into());
        settings.limits = ResourceLimits {
            max_millicpus: 4000,
            max_ram_mb: 8192,
            min_ram_mb: 16,
        };
        settings.delete_backoff = Duration::from_millis(10);
        adjust(&mut settings);
        let svc = BoxService::new(
            store.clone(),
            storage.clone(),
            Arc::new(runtime.clone()),
            settings,
        );
        Harness {
            svc,
            store,
            storage,
            runtime,
            _dir: dir,
        }
    }
}

/// A project name.
pub(super) fn p(s: &str) -> zomg_sdk::ProjectName {
    s.parse().unwrap()
}

/// A box name.
pub(super) fn n(s: &str) -> zomg_sdk::BoxName {
    s.parse().unwrap()
}
