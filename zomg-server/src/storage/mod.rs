//! Where box roots, bases and data volumes live.
//!
//! The [`Storage`] trait is the only way the rest of the server touches the filesystem that
//! holds boxes. The real implementation ([`btrfs::BtrfsStorage`]) uses btrfs subvolumes,
//! snapshots and qgroups through ioctls; [`fake::FakeStorage`] keeps plain directories and
//! enforces the same rules so `core` can be tested without root.
//!
//! Layout under the storage root (SPEC §12):
//!
//! ```text
//! bases/<alias>/<tag>     read-only base roots
//! roots/<box-id>          one writable snapshot of a base per box
//! volumes/<volume-id>     data volumes
//! checkpoints/<id>        root snapshots
//! ```
//!
//! Every method is synchronous: each one is a handful of syscalls (sub-millisecond to a few
//! milliseconds; `usage` commits the filesystem's transaction and can take tens of
//! milliseconds). Async callers run them through `tokio::task::spawn_blocking`.

pub mod btrfs;
pub mod fake;

use std::fmt;
use std::path::PathBuf;

/// The kind of a subvolume, which decides its directory in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubvolKind {
    /// `bases/<alias>/<tag>`: read-only templates.
    Base,
    /// `roots/<box-id>`: a box's root filesystem.
    Root,
    /// `volumes/<volume-id>`: a data volume.
    Volume,
    /// `checkpoints/<id>`: a root snapshot.
    Checkpoint,
}

impl SubvolKind {
    /// The top-level directory of this kind.
    pub fn dir(self) -> &'static str {
        match self {
            SubvolKind::Base => "bases",
            SubvolKind::Root => "roots",
            SubvolKind::Volume => "volumes",
            SubvolKind::Checkpoint => "checkpoints",
        }
    }
}

/// One subvolume in the layout. For bases `name` is `<alias>/<tag>`; for the others it is a
/// single path component (an id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subvol {
    /// The kind, which picks the directory.
    pub kind: SubvolKind,
    /// The name under that directory.
    pub name: String,
}

impl Subvol {
    /// A base subvolume `bases/<alias>/<tag>`.
    pub fn base(alias: &str, tag: &str) -> Self {
        Self {
            kind: SubvolKind::Base,
            name: format!("{alias}/{tag}"),
        }
    }

    /// A box root `roots/<box-id>`.
    pub fn root(box_id: &str) -> Self {
        Self {
            kind: SubvolKind::Root,
            name: box_id.to_owned(),
        }
    }

    /// A data volume `volumes/<volume-id>`.
    pub fn volume(volume_id: &str) -> Self {
        Self {
            kind: SubvolKind::Volume,
            name: volume_id.to_owned(),
        }
    }

    /// A root snapshot `checkpoints/<id>`.
    pub fn checkpoint(id: &str) -> Self {
        Self {
            kind: SubvolKind::Checkpoint,
            name: id.to_owned(),
        }
    }

    /// Checks that the name is one plain path component (two, `<alias>/<tag>`, for bases),
    /// so the subvolume cannot land outside its kind's directory.
    pub fn validate(&self) -> StorageResult<()> {
        let invalid = |reason| StorageError::InvalidName {
            name: self.to_string(),
            reason,
        };
        let parts: Vec<&str> = self.name.split('/').collect();
        let expected = if self.kind == SubvolKind::Base { 2 } else { 1 };
        if parts.len() != expected {
            return Err(invalid(if expected == 2 {
                "a base is named <alias>/<tag>"
            } else {
                "the name must not contain '/'"
            }));
        }
        for part in parts {
            if part.is_empty() || part == "." || part == ".." {
                return Err(invalid("empty, '.' and '..' are not names"));
            }
            if part.len() > 255 {
                return Err(invalid("longer than 255 bytes"));
            }
            if part.contains('\0') {
                return Err(invalid("contains a NUL byte"));
            }
        }
        Ok(())
    }

    /// The path relative to the storage root.
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from(self.kind.dir()).join(&self.name)
    }
}

impl fmt::Display for Subvol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.dir(), self.name)
    }
}

/// Errors from storage operations; each names the subvolume or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The subvolume does not exist.
    #[error("subvolume {0} does not exist")]
    NotFound(String),
    /// The subvolume already exists.
    #[error("subvolume {0} already exists")]
    AlreadyExists(String),
    /// The kernel refused because the subvolume is in use (`EBUSY`).
    #[error("subvolume {0} is busy")]
    Busy(String),
    /// The name would not stay inside its kind's directory.
    #[error("invalid subvolume name {name:?}: {reason}")]
    InvalidName {
        /// The subvolume as given (`<kind dir>/<name>`).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The path exists but is not a subvolume (a plain directory or file).
    #[error("{0} exists but is not a subvolume")]
    NotSubvolume(String),
    /// A system call or tool failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (mkfs.btrfs, mount, btrfs) failed.
    #[error("{command} failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

impl StorageError {
    /// Wraps an I/O error with context naming the path.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

/// Subvolume operations the server needs.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Absolute path of the subvolume on the host (its root directory).
    fn path(&self, vol: &Subvol) -> PathBuf;

    /// Whether the subvolume exists.
    fn exists(&self, vol: &Subvol) -> bool;

    /// Creates an empty writable subvolume. Fails with `AlreadyExists` if present.
    fn create(&self, vol: &Subvol) -> StorageResult<()>;

    /// Snapshots `src` into `dst` (copy-on-write, constant time). Fails with `NotFound` if
    /// `src` is missing and `AlreadyExists` if `dst` is present. The snapshot is independent
    /// of `src` from then on; subvolumes nested inside `src` are not part of it (they show up
    /// as empty directories).
    fn snapshot(&self, src: &Subvol, dst: &Subvol, read_only: bool) -> StorageResult<()>;

    /// Deletes the subvolume, read-only or not, with any subvolumes nested inside it (a box
    /// may create its own). Deleting a missing subvolume succeeds (idempotent). `Busy` means
    /// the kernel refused (`EBUSY`). It does not refuse for a mounted subvolume: on Linux 6.x
    /// the root of a running box is deleted from under it and its mounts are detached, so
    /// callers stop whatever uses a subvolume before deleting it.
    fn delete(&self, vol: &Subvol) -> StorageResult<()>;

    /// Marks the subvolume read-only or writable.
    fn set_read_only(&self, vol: &Subvol, read_only: bool) -> StorageResult<()>;

    /// Whether the subvolume is read-only.
    fn is_read_only(&self, vol: &Subvol) -> StorageResult<bool>;

    /// Limits the bytes the subvolume may reference (`None` removes the limit). A snapshot
    /// starts with its source's limit.
    fn set_limit(&self, vol: &Subvol, bytes: Option<u64>) -> StorageResult<()>;

    /// The limit set by [`Storage::set_limit`], if any.
    fn limit(&self, vol: &Subvol) -> StorageResult<Option<u64>>;

    /// Bytes referenced by the subvolume, including data it shares with the subvolume it was
    /// snapshotted from (what the limit counts).
    fn usage(&self, vol: &Subvol) -> StorageResult<u64>;

    /// Writes the dirty data of the filesystem holding `vol` to disk (`syncfs`). A snapshot
    /// includes data written before it without this; flushing first makes the snapshot
    /// itself quick, which matters while the box that writes is frozen for it.
    fn flush(&self, vol: &Subvol) -> StorageResult<()>;

    /// Every subvolume of a kind, for reconciliation and orphan detection.
    fn list(&self, kind: SubvolKind) -> StorageResult<Vec<Subvol>>;
}
