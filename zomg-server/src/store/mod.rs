//! Metadata: what should exist.
//!
//! The [`Store`] is the source of truth for boxes, bases, volumes and background
//! operations; backends hold what does exist, and the server reconciles the two on start.
//! [`sqlite::SqliteStore`] is the only implementation; tests use it on a temporary file or
//! in memory, which is fast and exactly what ships.
//!
//! Store calls are short (SQLite in WAL mode, no fsync per commit); they run inline.

pub mod sqlite;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use zomg_sdk::{BoxName, BoxStatus, DataMount, ProjectName, VolumeName};

/// A box as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxRecord {
    /// Unique id, never reused; names the root subvolume and the runtime container.
    pub id: String,
    /// Owning project.
    pub project: ProjectName,
    /// Name, unique in the project.
    pub name: BoxName,
    /// Lifecycle state.
    pub status: BoxStatus,
    /// Why the box is in its state (always set for `failed`).
    pub status_reason: Option<String>,
    /// The base (`alias:tag`).
    pub base: String,
    /// Port for the box URL.
    pub port: Option<u16>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
    /// User environment (no injected variables).
    pub environment: BTreeMap<String, String>,
    /// Attached data volumes.
    pub data_mounts: Vec<MountRecord>,
    /// CPU limit in millicores.
    pub millicpus: u32,
    /// Memory limit in MiB.
    pub ram_mb: u64,
    /// Root filesystem limit in GB.
    pub storage_gb: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL.
    pub termination_grace_seconds: u32,
    /// The box this one was forked from (`project:name`).
    pub forked_from: Option<String>,
    /// Hosts the box is published on.
    pub published_domains: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A data volume attached to a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRecord {
    /// The volume's id (names its subvolume).
    pub volume_id: String,
    /// The volume's name, as shown to users.
    pub name: VolumeName,
    /// Absolute path inside the box.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl MountRecord {
    /// The wire form.
    pub fn to_wire(&self) -> DataMount {
        DataMount {
            name: self.name.clone(),
            path: self.path.clone(),
            read_only: self.read_only,
        }
    }
}

/// A base as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRecord {
    /// Alias, e.g. `box-base`.
    pub alias: String,
    /// Tag, `latest` unless named.
    pub tag: String,
    /// Where it came from.
    pub source: Option<String>,
    /// When it was built or imported.
    pub created_at: DateTime<Utc>,
}

/// A data volume as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    /// Unique id; names the subvolume.
    pub id: String,
    /// Owning project.
    pub project: ProjectName,
    /// Name, unique in the project.
    pub name: VolumeName,
    /// Size limit in GB.
    pub size_gb: Option<u64>,
    /// The box id that owns it (fork volumes only); owned volumes are hidden from listing
    /// and attachment and die with their box.
    pub owner_box_id: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What a background operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Finish deleting a box (runtime, root, owned volumes, record).
    DeleteBox,
}

impl OpKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::DeleteBox => "delete_box",
        }
    }
}

/// Where a background operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpState {
    /// Waiting for (another) attempt.
    Pending,
    /// Finished.
    Done,
    /// Retries exhausted.
    Failed,
}

/// A tracked background operation, resumed after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// Unique id.
    pub id: String,
    /// What it does.
    pub kind: OpKind,
    /// What it acts on (a box id for `DeleteBox`).
    pub target: String,
    /// Human-readable target (`project:name`), kept after the target record is gone.
    pub label: String,
    /// Where it stands.
    pub state: OpState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Which boxes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxFilter {
    /// Only this project (`None` = every project).
    pub project: Option<ProjectName>,
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only boxes carrying every one of these tags.
    pub tags: BTreeMap<String, String>,
    /// Only boxes ordered after this `(project, name)` (pagination cursor).
    pub after: Option<(String, String)>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated (`what` names the record).
    #[error("{0} already exists")]
    Conflict(String),
    /// The record to update does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// A stored value could not be decoded.
    #[error("corrupt record {what}: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// What was wrong.
        message: String,
    },
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistent metadata.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Records a new box; `Conflict` if (project, name) is taken.
    fn insert_box(&self, b: &BoxRecord) -> StoreResult<()>;
    /// Replaces a box record (matched by id); `NotFound` if missing.
    fn update_box(&self, b: &BoxRecord) -> StoreResult<()>;
    /// Removes a box record; removing a missing one succeeds.
    fn delete_box(&self, id: &str) -> StoreResult<()>;
    /// A box by project and name.
    fn get_box(&self, project: &str, name: &str) -> StoreResult<Option<BoxRecord>>;
    /// A box by id.
    fn get_box_by_id(&self, id: &str) -> StoreResult<Option<BoxRecord>>;
    /// Boxes matching the filter, ordered by (project, name).
    fn list_boxes(&self, filter: &BoxFilter) -> StoreResult<Vec<BoxRecord>>;

    /// Records a base; `Conflict` if alias:tag exists.
    fn insert_base(&self, b: &BaseRecord) -> StoreResult<()>;
    /// A base by alias and tag.
    fn get_base(&self, alias: &str, tag: &str) -> StoreResult<Option<BaseRecord>>;
    /// Every base, ordered by (alias, tag).
    fn list_bases(&self) -> StoreResult<Vec<BaseRecord>>;
    /// Removes a base record.
    fn delete_base(&self, alias: &str, tag: &str) -> StoreResult<()>;

    /// Records a volume; `Conflict` if (project, name) is taken.
    fn insert_volume(&self, v: &VolumeRecord) -> StoreResult<()>;
    /// A volume by project and name.
    fn get_volume(&self, project: &str, name: &str) -> StoreResult<Option<VolumeRecord>>;
    /// A volume by id.
    fn get_volume_by_id(&self, id: &str) -> StoreResult<Option<VolumeRecord>>;
    /// Volumes of a project (`None` = all), ordered by (project, name).
    fn list_volumes(&self, project: Option<&str>) -> StoreResult<Vec<VolumeRecord>>;
    /// Removes a volume record.
    fn delete_volume(&self, id: &str) -> StoreResult<()>;

    /// Records a new operation.
    fn insert_op(&self, op: &OpRecord) -> StoreResult<()>;
    /// Replaces an operation record (matched by id).
    fn update_op(&self, op: &OpRecord) -> StoreResult<()>;
    /// The latest operation of a kind on a target.
    fn latest_op(&self, kind: OpKind, target: &str) -> StoreResult<Option<OpRecord>>;
    /// Every operation in `Pending` state, oldest first.
    fn pending_ops(&self) -> StoreResult<Vec<OpRecord>>;
}
