//! btrfs storage: a configured mount or a loop image, subvolumes via ioctls.
//!
//! [`BtrfsStorage`] keeps the layout of [`super`] on one btrfs filesystem. Subvolume create,
//! snapshot, delete, flags and qgroup limits are single ioctls (see the `ioctl` module); usage reads the
//! qgroup tree after committing the running transaction. Quotas are enabled when the storage
//! is opened, since limits need them.
//!
//! Everything here needs `CAP_SYS_ADMIN` (the tree search and qgroup ioctls do), so the server
//! runs as root.

mod ioctl;
mod setup;
#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::{Storage, StorageError, StorageResult, Subvol, SubvolKind};

pub use setup::{IMAGE_NAME, MOUNT_DIR};

/// `BTRFS_SUPER_MAGIC`, the `f_type` statfs reports for btrfs.
const BTRFS_SUPER_MAGIC: u64 = 0x9123_683e;

/// Mode of the layout directories: the server can traverse them, other users cannot list them.
const LAYOUT_DIR_MODE: u32 = 0o711;

/// Storage on one btrfs filesystem, rooted at a directory of it.
#[derive(Debug, Clone)]
pub struct BtrfsStorage {
    root: PathBuf,
}

impl BtrfsStorage {
    /// Opens storage rooted at `root`, a directory on a mounted btrfs filesystem: checks the
    /// filesystem type, enables quotas if they are off (waiting for the initial scan), starts
    /// a rescan if the kernel marked them inconsistent, and creates the layout directories.
    pub fn open(root: PathBuf) -> StorageResult<Self> {
        let context = || format!("opening storage root {}", root.display());
        // Paths handed to the runtime are the real ones, not through a configured symlink.
        let root = root
            .canonicalize()
            .map_err(|e| StorageError::io(context(), e))?;
        let fd = open_dir(&root).map_err(|e| StorageError::io(context(), e))?;
        let statfs = rustix::fs::fstatfs(&fd).map_err(|e| StorageError::io(context(), e.into()))?;
        #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 and u32/i32 elsewhere
        let fs_type = statfs.f_type as u64 & 0xffff_ffff;
        if fs_type != BTRFS_SUPER_MAGIC {
            return Err(StorageError::io(
                context(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a btrfs filesystem (statfs type {fs_type:#x})"),
                ),
            ));
        }
        ensure_quotas(fd.as_fd())
            .map_err(|e| StorageError::io(format!("enabling quotas on {}", root.display()), e))?;
        for kind in [
            SubvolKind::Base,
            SubvolKind::Root,
            SubvolKind::Volume,
            SubvolKind::Checkpoint,
        ] {
            let dir = root.join(kind.dir());
            fs::DirBuilder::new()
                .recursive(true)
                .mode(LAYOUT_DIR_MODE)
                .create(&dir)
                .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(Self { root })
    }

    /// Opens storage on a loop-mounted image under `data_dir`: creates a sparse
    /// `<data_dir>/storage.img` of `size_bytes` and formats it if it does not exist (an
    /// existing image is never formatted again), mounts it at `<data_dir>/btrfs` unless it is
    /// mounted there already, then [`BtrfsStorage::open`]s the mount. Safe to call on every
    /// start; servers with different data dirs do not interfere.
    pub fn open_or_create_loop(data_dir: &Path, size_bytes: u64) -> StorageResult<Self> {
        let mount_point = setup::ensure_loop_mounted(data_dir, size_bytes)?;
        Self::open(mount_point)
    }

    /// Unmounts the loop image of `data_dir` (if mounted) and releases its loop device. The
    /// image and its data stay; [`BtrfsStorage::open_or_create_loop`] mounts it again. Fails
    /// with `Busy` while something still uses the mount.
    pub fn unmount_loop(data_dir: &Path) -> StorageResult<()> {
        setup::unmount_loop(data_dir)
    }

    /// Loop devices currently backed by the image of `data_dir` (for checks and tests).
    pub fn loop_devices(data_dir: &Path) -> StorageResult<Vec<PathBuf>> {
        match data_dir.canonicalize() {
            Ok(dir) => setup::loop_devices_backed_by(&dir.join(IMAGE_NAME)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StorageError::io(
                format!("resolving {}", data_dir.display()),
                e,
            )),
        }
    }

    /// The storage root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Validates `vol` and opens its root directory, which must be a subvolume.
    fn open_subvol(&self, vol: &Subvol) -> StorageResult<(PathBuf, OwnedFd)> {
        let path = self.checked_path(vol)?;
        match state(&path)
            .map_err(|e| StorageError::io(format!("inspecting {}", path.display()), e))?
        {
            State::Missing => return Err(StorageError::NotFound(vol.to_string())),
            State::Other => return Err(StorageError::NotSubvolume(path.display().to_string())),
            State::Subvolume => {}
        }
        let fd = open_dir(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound(vol.to_string()),
            _ => StorageError::io(format!("opening {}", path.display()), e),
        })?;
        Ok((path, fd))
    }

    /// Validates `vol` and returns its path.
    fn checked_path(&self, vol: &Subvol) -> StorageResult<PathBuf> {
        vol.validate()?;
        Ok(self.path(vol))
    }

    /// Opens the directory that holds `vol` (creating `bases/<alias>` on demand) and returns it
    /// with the subvolume's name in it.
    fn open_parent(&self, path: &Path, create: bool) -> StorageResult<(OwnedFd, OsString)> {
        let parent = path.parent().expect("subvolume paths have a parent");
        let name = path
            .file_name()
            .expect("validated names end in a component");
        if create {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(LAYOUT_DIR_MODE)
                .create(parent)
                .map_err(|e| StorageError::io(format!("creating {}", parent.display()), e))?;
        }
        let fd = open_dir(parent)
            .map_err(|e| StorageError::io(format!("opening {}", parent.display()), e))?;
        Ok((fd, name.to_owned()))
    }

    /// The subvolume id of `fd` (its level-0 qgroup id).
    fn subvol_id(path: &Path, fd: BorrowedFd<'_>) -> StorageResult<u64> {
        ioctl::subvol_id(fd).map_err(|e| {
            StorageError::io(
                format!("looking up the subvolume id of {}", path.display()),
                e,
            )
        })
    }

    /// The subvolumes directly under `dir` whose names are valid for `kind`.
    fn subvols_in(dir: &Path, mut make: impl FnMut(&str) -> Subvol) -> StorageResult<Vec<Subvol>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io(format!("listing {}", dir.display()), e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let vol = make(&name);
            let is_subvol = matches!(state(&entry.path()), Ok(State::Subvolume));
            if is_subvol && vol.validate().is_ok() {
                found.push(vol);
            }
        }
        Ok(found)
    }
}

impl Storage for BtrfsStorage {
    fn path(&self, vol: &Subvol) -> PathBuf {
        self.root.join(vol.rel_path())
    }

    fn exists(&self, vol: &Subvol) -> bool {
        vol.validate().is_ok() && matches!(state(&self.path(vol)), Ok(State::Subvolume))
    }

    fn create(&self, vol: &Subvol) -> StorageResult<()> {
        let path = self.checked_path(vol)?;
        let (parent, name) = self.open_parent(&path, true)?;
        ioctl::subvol_create(parent.as_fd(), &name).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => StorageError::AlreadyExists(vol.to_string()),
            _ => StorageError::io(format!("creating subvolume {}", path.display()), e),
        })
    }

    fn snapshot(&self, src: &Subvol, dst: &Subvol, read_only: bool) -> StorageResult<()> {
        let (src_path, src_fd) = self.open_subvol(src)?;
        let dst_path = self.checked_path(dst)?;
        if !matches!(state(&dst_path), Ok(State::Missing)) {
            return Err(StorageError::AlreadyExists(dst.to_string()));
        }
        let (parent, name) = self.open_parent(&dst_path, true)?;
        ioctl::snap_create(parent.as_fd(), &name, src_fd.as_fd(), read_only).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EEXIST) => StorageError::AlreadyExists(dst.to_string()),
                _ => StorageError::io(
                    format!(
                        "snapshotting {} to {}",
                        src_path.display(),
                        dst_path.display()
                    ),
                    e,
                ),
            }
        })
    }

    fn delete(&self, vol: &Subvol) -> StorageResult<()> {
        let path = self.checked_path(vol)?;
        match state(&path)
            .map_err(|e| StorageError::io(format!("inspecting {}", path.display()), e))?
        {
            State::Missing => return Ok(()),
            State::Other => return Err(StorageError::NotSubvolume(path.display().to_string())),
            State::Subvolume => {}
        }
        let (parent, name) = self.open_parent(&path, false)?;
        destroy_tree(parent, name).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => StorageError::Busy(vol.to_string()),
            _ => StorageError::io(format!("deleting subvolume {}", path.display()), e),
        })
    }

    fn set_read_only(&self, vol: &Subvol, read_only: bool) -> StorageResult<()> {
        let (path, fd) = self.open_subvol(vol)?;
        let context = || format!("setting read-only={read_only} on {}", path.display());
        let flags = ioctl::subvol_flags(fd.as_fd()).map_err(|e| StorageError::io(context(), e))?;
        let wanted = if read_only {
            flags | ioctl::SUBVOL_RDONLY
        } else {
            flags & !ioctl::SUBVOL_RDONLY
        };
        if wanted != flags {
            ioctl::set_subvol_flags(fd.as_fd(), wanted)
                .map_err(|e| StorageError::io(context(), e))?;
        }
        Ok(())
    }

    fn is_read_only(&self, vol: &Subvol) -> StorageResult<bool> {
        let (path, fd) = self.open_subvol(vol)?;
        let flags = ioctl::subvol_flags(fd.as_fd())
            .map_err(|e| StorageError::io(format!("reading the flags of {}", path.display()), e))?;
        Ok(flags & ioctl::SUBVOL_RDONLY != 0)
    }

    fn set_limit(&self, vol: &Subvol, bytes: Option<u64>) -> StorageResult<()> {
        let (path, fd) = self.open_subvol(vol)?;
        ioctl::qgroup_limit(fd.as_fd(), bytes).map_err(|e| {
            let what = match bytes {
                Some(bytes) => format!("limiting {} to {bytes} bytes", path.display()),
                None => format!("removing the limit of {}", path.display()),
            };
            StorageError::io(what, quota_hint(e))
        })
    }

    fn limit(&self, vol: &Subvol) -> StorageResult<Option<u64>> {
        let (path, fd) = self.open_subvol(vol)?;
        let id = Self::subvol_id(&path, fd.as_fd())?;
        let item = qgroup_item(fd.as_fd(), ioctl::QGROUP_LIMIT_KEY, id).map_err(|e| {
            StorageError::io(
                format!("reading the qgroup limit of {}", path.display()),
                quota_hint(e),
            )
        })?;
        // struct btrfs_qgroup_limit_item { flags, max_rfer, max_excl, rsv_rfer, rsv_excl }
        Ok(item.and_then(|item| {
            let flags = ioctl::le_u64(&item, 0)?;
            (flags & ioctl::QGROUP_LIMIT_MAX_RFER != 0)
                .then(|| ioctl::le_u64(&item, 8))
                .flatten()
        }))
    }

    /// Commits the running transaction first (`syncfs`), since qgroup counters are only
    /// updated on commit; that flushes the filesystem's dirty data, so it costs more the more
    /// boxes are writing.
    fn usage(&self, vol: &Subvol) -> StorageResult<u64> {
        let (path, fd) = self.open_subvol(vol)?;
        let id = Self::subvol_id(&path, fd.as_fd())?;
        rustix::fs::syncfs(&fd).map_err(|e| {
            StorageError::io(
                format!("syncing the filesystem of {}", path.display()),
                e.into(),
            )
        })?;
        let item = qgroup_item(fd.as_fd(), ioctl::QGROUP_INFO_KEY, id).map_err(|e| {
            StorageError::io(
                format!("reading the qgroup of {}", path.display()),
                quota_hint(e),
            )
        })?;
        // struct btrfs_qgroup_info_item { generation, rfer, rfer_cmpr, excl, excl_cmpr }
        item.and_then(|item| ioctl::le_u64(&item, 8))
            .ok_or_else(|| {
                StorageError::io(
                    format!("reading the qgroup of {}", path.display()),
                    io::Error::other(format!("no qgroup 0/{id}")),
                )
            })
    }

    fn flush(&self, vol: &Subvol) -> StorageResult<()> {
        let (path, fd) = self.open_subvol(vol)?;
        rustix::fs::syncfs(&fd).map_err(|e| {
            StorageError::io(
                format!("syncing the filesystem of {}", path.display()),
                e.into(),
            )
        })
    }

    fn list(&self, kind: SubvolKind) -> StorageResult<Vec<Subvol>> {
        let dir = self.root.join(kind.dir());
        let mut found = Vec::new();
        if kind == SubvolKind::Base {
            let aliases = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(StorageError::io(format!("listing {}", dir.display()), e)),
            };
            for alias in aliases {
                let alias =
                    alias.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
                let Some(alias_name) = alias.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !matches!(state(&alias.path()), Ok(State::Other)) {
                    continue;
                }
                found.extend(Self::subvols_in(&alias.path(), |tag| {
                    Subvol::base(&alias_name, tag)
                })?);
            }
        } else {
            found = Self::subvols_in(&dir, |name| Subvol {
                kind,
                name: name.to_owned(),
            })?;
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

/// What a layout path holds.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Missing,
    Subvolume,
    /// A file, symlink or plain directory.
    Other,
}

/// Inspects `path` without following a final symlink. A subvolume's root directory always
/// has inode number 256 (`BTRFS_FIRST_FREE_OBJECTID`).
fn state(path: &Path) -> io::Result<State> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() && meta.ino() == ioctl::FIRST_FREE_OBJECTID => {
            Ok(State::Subvolume)
        }
        Ok(_) => Ok(State::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::Missing),
        Err(e) => Err(e),
    }
}

/// Opens a directory for ioctls, never through a final symlink.
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Turns the kernel's "quotas are off" answers into a message that says so.
fn quota_hint(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENOTCONN) | Some(libc::ENOENT) => {
            io::Error::new(e.kind(), format!("quotas are not enabled ({e})"))
        }
        _ => e,
    }
}

/// Enables quotas if they are off and waits for the initial scan; starts a rescan when the
/// kernel flagged the counters inconsistent (e.g. after deleting a deep subvolume tree).
fn ensure_quotas(fd: BorrowedFd<'_>) -> io::Result<()> {
    match qgroup_item(fd, ioctl::QGROUP_STATUS_KEY, 0) {
        // struct btrfs_qgroup_status_item { version, generation, flags, rescan }
        Ok(Some(status)) => {
            let flags = ioctl::le_u64(&status, 16).unwrap_or(0);
            if flags & ioctl::QGROUP_STATUS_FLAG_INCONSISTENT != 0 {
                match ioctl::quota_rescan(fd) {
                    Ok(()) => tracing::warn!("btrfs qgroups are inconsistent; started a rescan"),
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Ok(None) | Err(_) => {
            ioctl::quota_enable(fd)?;
            ioctl::quota_rescan_wait(fd)
        }
    }
}

/// The qgroup tree item `(0, item_type, offset)`, if present. Fails with `ENOENT` when quotas
/// are off (there is no quota tree).
fn qgroup_item(fd: BorrowedFd<'_>, item_type: u32, offset: u64) -> io::Result<Option<Vec<u8>>> {
    let key = ioctl::Key {
        objectid: 0,
        item_type,
        offset,
    };
    let mut found = None;
    ioctl::tree_search(fd, ioctl::QUOTA_TREE_OBJECTID, key, key, |_, data| {
        found = Some(data.to_vec());
    })?;
    Ok(found)
}

/// One subvolume waiting to be deleted by [`destroy_tree`].
#[derive(Debug)]
struct Pending {
    /// Index in the stack of the subvolume that contains this one; `None` for the top one.
    parent: Option<usize>,
    /// The directory holding it, relative to the containing subvolume's root.
    dir: PathBuf,
    /// Its name in that directory.
    name: OsString,
    /// The id its `ROOT_REF` promised; `None` for the top one.
    id: Option<u64>,
    /// Its root directory, once it turned out to hold nested subvolumes.
    fd: Option<OwnedFd>,
}

/// Deletes subvolume `name` in directory `top_dir`, with everything nested in it.
///
/// The common case is one `SNAP_DESTROY_V2`. When the kernel refuses with `ENOTEMPTY`, the
/// nested subvolumes are found through their `ROOT_REF` items (not by walking the tree) and
/// deleted depth-first, clearing read-only flags on the way (a subvolume inside a read-only
/// one cannot be unlinked). Nested paths are resolved beneath their parent with no symlinks
/// and no mount crossings, and each one's id is checked, so content a box planted cannot steer
/// the deletion outside the tree being deleted.
fn destroy_tree(top_dir: OwnedFd, name: OsString) -> io::Result<()> {
    let mut stack = vec![Pending {
        parent: None,
        dir: PathBuf::new(),
        name,
        id: None,
        fd: None,
    }];
    while let Some(top) = stack.len().checked_sub(1) {
        let dir_fd = match stack[top].parent {
            None => top_dir.try_clone()?,
            Some(parent) => {
                let parent_fd = stack[parent].fd.as_ref().expect("parents are expanded");
                open_beneath(parent_fd.as_fd(), &stack[top].dir)?
            }
        };
        let node = &stack[top];
        match ioctl::snap_destroy(dir_fd.as_fd(), &node.name) {
            Ok(()) => {
                stack.pop();
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                stack.pop();
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && node.fd.is_none() => {
                let (fd, children) = expand(dir_fd.as_fd(), node)?;
                stack[top].fd = Some(fd);
                if children.is_empty() {
                    return Err(e);
                }
                stack.extend(children.into_iter().map(|mut child| {
                    child.parent = Some(top);
                    child
                }));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens the subvolume `node` (in `dir_fd`), makes it writable, and lists the subvolumes
/// directly nested in it.
fn expand(dir_fd: BorrowedFd<'_>, node: &Pending) -> io::Result<(OwnedFd, Vec<Pending>)> {
    let fd: OwnedFd = rustix::fs::openat(
        dir_fd,
        &node.name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    let id = ioctl::subvol_id(fd.as_fd())?;
    if stat.st_ino != ioctl::FIRST_FREE_OBJECTID || node.id.is_some_and(|want| want != id) {
        return Err(io::Error::other(format!(
            "{} changed while it was being deleted",
            Path::new(&node.name).display()
        )));
    }
    let flags = ioctl::subvol_flags(fd.as_fd())?;
    if flags & ioctl::SUBVOL_RDONLY != 0 {
        ioctl::set_subvol_flags(fd.as_fd(), flags & !ioctl::SUBVOL_RDONLY)?;
    }
    let mut refs = Vec::new();
    let key = |offset| ioctl::Key {
        objectid: id,
        item_type: ioctl::ROOT_REF_KEY,
        offset,
    };
    ioctl::tree_search(
        fd.as_fd(),
        ioctl::ROOT_TREE_OBJECTID,
        key(0),
        key(u64::MAX),
        |key, data| {
            // struct btrfs_root_ref { dirid: le64, sequence: le64, name_len: le16 } + name
            let (Some(dirid), Some(len)) = (ioctl::le_u64(data, 0), ioctl::le_u16(data, 16)) else {
                return;
            };
            if let Some(name) = data.get(18..18 + usize::from(len)) {
                refs.push((key.offset, dirid, OsStr::from_bytes(name).to_owned()));
            }
        },
    )?;
    let mut children = Vec::with_capacity(refs.len());
    for (child_id, dirid, name) in refs {
        let (_, dir) = ioctl::ino_lookup(fd.as_fd(), id, dirid)?;
        children.push(Pending {
            parent: None,
            dir: PathBuf::from(OsStr::from_bytes(&dir)),
            name,
            id: Some(child_id),
            fd: None,
        });
    }
    Ok((fd, children))
}

/// Opens directory `rel` beneath `dir` without following symlinks or crossing mounts.
fn open_beneath(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(rustix::fs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )?)
}
