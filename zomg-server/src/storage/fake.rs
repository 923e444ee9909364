//! An honest fake of [`super::Storage`] on plain directories, for tests without root.
//!
//! A subvolume is a directory at its layout path; a snapshot is a full recursive copy
//! (contents, modes, symlinks, hard links, special files; owners when running as root), so it
//! is as independent of its source as a btrfs snapshot. Read-only flags and limits are kept in
//! memory and mirrored to `<root>/.fake-storage.json`, so a second `FakeStorage` opened on the
//! same root (a "restarted server") sees them. The fake cannot stop other code from writing
//! into a read-only subvolume by path; its own [`FakeStorage::write_file`] enforces both the
//! read-only flag and the limit, and [`FakeStorage::set_busy`] lets tests make a delete fail
//! with `Busy`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::{Storage, StorageError, StorageResult, Subvol, SubvolKind};

/// Where the flags are mirrored, under the root.
const STATE_FILE: &str = ".fake-storage.json";

/// Plain-directory storage that enforces the [`Storage`] rules.
#[derive(Debug)]
pub struct FakeStorage {
    root: PathBuf,
    state: Mutex<State>,
}

/// What btrfs would keep in subvolume flags and qgroups.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Flags by subvolume (`<kind dir>/<name>`); a subvolume without an entry has none.
    flags: BTreeMap<String, Flags>,
    /// Subvolumes tests marked busy; not persisted, like a mount.
    #[serde(skip)]
    busy: BTreeSet<String>,
}

/// Read-only flag and limit of one subvolume.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Flags {
    read_only: bool,
    limit: Option<u64>,
}

impl FakeStorage {
    /// Opens (creating) fake storage rooted at `root`, with the layout directories and any
    /// flags a previous instance on the same root recorded.
    pub fn open(root: PathBuf) -> StorageResult<Self> {
        for kind in [
            SubvolKind::Base,
            SubvolKind::Root,
            SubvolKind::Volume,
            SubvolKind::Checkpoint,
        ] {
            let dir = root.join(kind.dir());
            fs::create_dir_all(&dir)
                .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        }
        let state_path = root.join(STATE_FILE);
        let state = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::io(
                    format!("reading {}", state_path.display()),
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(StorageError::io(
                    format!("reading {}", state_path.display()),
                    e,
                ));
            }
        };
        Ok(Self {
            root,
            state: Mutex::new(state),
        })
    }

    /// The storage root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `contents` to `rel` inside the subvolume, as a process in a box would, failing
    /// like btrfs does: `EROFS` ("Read-only file system") on a read-only subvolume and
    /// `EDQUOT` ("Disk quota exceeded") when the subvolume would exceed its limit.
    pub fn write_file(&self, vol: &Subvol, rel: &Path, contents: &[u8]) -> StorageResult<()> {
        let state = self.lock();
        let path = self.existing(vol)?;
        if !rel
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
        {
            return Err(StorageError::io(
                format!("writing {} in {vol}", rel.display()),
                io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path"),
            ));
        }
        let target = path.join(rel);
        let context = || format!("writing {}", target.display());
        let flags = state
            .flags
            .get(&vol.to_string())
            .copied()
            .unwrap_or_default();
        if flags.read_only {
            return Err(StorageError::io(
                context(),
                io::Error::from_raw_os_error(libc::EROFS),
            ));
        }
        if let Some(limit) = flags.limit {
            let replaced = fs::symlink_metadata(&target).map(|m| m.len()).unwrap_or(0);
            let usage = tree_size(&path).map_err(|e| StorageError::io(context(), e))?;
            if usage - replaced + contents.len() as u64 > limit {
                return Err(StorageError::io(
                    context(),
                    io::Error::from_raw_os_error(libc::EDQUOT),
                ));
            }
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| StorageError::io(context(), e))?;
        }
        fs::write(&target, contents).map_err(|e| StorageError::io(context(), e))
    }

    /// Marks the subvolume busy (or not): while busy, deleting it fails with `Busy`, so tests
    /// can exercise a delete the backend refuses.
    pub fn set_busy(&self, vol: &Subvol, busy: bool) {
        let mut state = self.lock();
        if busy {
            state.busy.insert(vol.to_string());
        } else {
            state.busy.remove(&vol.to_string());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates `vol` and returns its path if it exists.
    fn existing(&self, vol: &Subvol) -> StorageResult<PathBuf> {
        vol.validate()?;
        let path = self.path(vol);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(path),
            Ok(_) => Err(StorageError::NotSubvolume(path.display().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::NotFound(vol.to_string()))
            }
            Err(e) => Err(StorageError::io(
                format!("inspecting {}", path.display()),
                e,
            )),
        }
    }

    /// Validates `vol` and returns its path if nothing is there yet.
    fn vacant(&self, vol: &Subvol) -> StorageResult<PathBuf> {
        vol.validate()?;
        let path = self.path(vol);
        match fs::symlink_metadata(&path) {
            Ok(_) => Err(StorageError::AlreadyExists(vol.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| {
                        StorageError::io(format!("creating {}", parent.display()), e)
                    })?;
                }
                Ok(path)
            }
            Err(e) => Err(StorageError::io(
                format!("inspecting {}", path.display()),
                e,
            )),
        }
    }

    /// Writes the flags to the state file (temp file + rename).
    fn save(&self, state: &State) -> StorageResult<()> {
        let path = self.root.join(STATE_FILE);
        let tmp = self.root.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(state).expect("flags serialize");
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))
    }

    /// Updates the flags of an existing subvolume and saves them.
    fn update(&self, vol: &Subvol, change: impl FnOnce(&mut Flags)) -> StorageResult<()> {
        let mut state = self.lock();
        self.existing(vol)?;
        change(state.flags.entry(vol.to_string()).or_default());
        self.save(&state)
    }

    /// Reads the flags of an existing subvolume.
    fn flags(&self, vol: &Subvol) -> StorageResult<Flags> {
        let state = self.lock();
        self.existing(vol)?;
        Ok(state
            .flags
            .get(&vol.to_string())
            .copied()
            .unwrap_or_default())
    }

    /// The names of the directories directly under `dir`.
    fn dir_names(dir: &Path) -> StorageResult<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io(format!("listing {}", dir.display()), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.extend(entry.file_name().to_str().map(str::to_owned));
            }
        }
        Ok(names)
    }
}

impl Storage for FakeStorage {
    fn path(&self, vol: &Subvol) -> PathBuf {
        self.root.join(vol.rel_path())
    }

    fn exists(&self, vol: &Subvol) -> bool {
        let _state = self.lock();
        self.existing(vol).is_ok()
    }

    fn create(&self, vol: &Subvol) -> StorageResult<()> {
        let mut state = self.lock();
        let path = self.vacant(vol)?;
        fs::create_dir(&path)
            .map_err(|e| StorageError::io(format!("creating {}", path.display()), e))?;
        state.flags.remove(&vol.to_string());
        self.save(&state)
    }

    fn snapshot(&self, src: &Subvol, dst: &Subvol, read_only: bool) -> StorageResult<()> {
        let mut state = self.lock();
        let src_path = self.existing(src)?;
        let dst_path = self.vacant(dst)?;
        if let Err(e) = copy_tree(&src_path, &dst_path) {
            let _ = fs::remove_dir_all(&dst_path);
            return Err(StorageError::io(
                format!("copying {} to {}", src_path.display(), dst_path.display()),
                e,
            ));
        }
        // Like btrfs: the snapshot gets the source's limit and the requested read-only flag.
        let limit = state.flags.get(&src.to_string()).and_then(|f| f.limit);
        state
            .flags
            .insert(dst.to_string(), Flags { read_only, limit });
        self.save(&state)
    }

    fn delete(&self, vol: &Subvol) -> StorageResult<()> {
        let mut state = self.lock();
        let path = match self.existing(vol) {
            Ok(path) => path,
            Err(StorageError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if state.busy.contains(&vol.to_string()) {
            return Err(StorageError::Busy(vol.to_string()));
        }
        fs::remove_dir_all(&path)
            .map_err(|e| StorageError::io(format!("deleting {}", path.display()), e))?;
        state.flags.remove(&vol.to_string());
        self.save(&state)
    }

    fn set_read_only(&self, vol: &Subvol, read_only: bool) -> StorageResult<()> {
        self.update(vol, |flags| flags.read_only = read_only)
    }

    fn is_read_only(&self, vol: &Subvol) -> StorageResult<bool> {
        Ok(self.flags(vol)?.read_only)
    }

    fn set_limit(&self, vol: &Subvol, bytes: Option<u64>) -> StorageResult<()> {
        self.update(vol, |flags| flags.limit = bytes)
    }

    fn limit(&self, vol: &Subvol) -> StorageResult<Option<u64>> {
        Ok(self.flags(vol)?.limit)
    }

    /// The sum of the sizes of the regular files in the subvolume.
    fn usage(&self, vol: &Subvol) -> StorageResult<u64> {
        let _state = self.lock();
        let path = self.existing(vol)?;
        tree_size(&path).map_err(|e| StorageError::io(format!("measuring {}", path.display()), e))
    }

    fn flush(&self, vol: &Subvol) -> StorageResult<()> {
        let _state = self.lock();
        let path = self.existing(vol)?;
        let dir = fs::File::open(&path)
            .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
        rustix::fs::syncfs(&dir).map_err(|e| {
            StorageError::io(
                format!("syncing the filesystem of {}", path.display()),
                e.into(),
            )
        })
    }

    fn list(&self, kind: SubvolKind) -> StorageResult<Vec<Subvol>> {
        let _state = self.lock();
        let dir = self.root.join(kind.dir());
        let mut found = Vec::new();
        for name in Self::dir_names(&dir)? {
            if kind == SubvolKind::Base {
                for tag in Self::dir_names(&dir.join(&name))? {
                    found.push(Subvol::base(&name, &tag));
                }
            } else {
                found.push(Subvol { kind, name });
            }
        }
        found.retain(|vol| vol.validate().is_ok());
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

/// The sum of the sizes of regular files under `dir`, not following symlinks.
fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_file() {
                total += entry.metadata()?.len();
            }
        }
    }
    Ok(total)
}

/// Copies the tree at `src` to `dst` (which must not exist): directories, regular files,
/// symlinks (as symlinks), FIFOs, sockets and device nodes, with modes, hard links within the
/// tree, and owners when running as root.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let as_root = rustix::process::geteuid().is_root();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs = Vec::new();
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        let meta = fs::symlink_metadata(&from)?;
        let file_type = meta.file_type();
        if file_type.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(&to)?;
            for entry in fs::read_dir(&from)? {
                let entry = entry?;
                pending.push((entry.path(), to.join(entry.file_name())));
            }
            // Modes of directories are applied last, so read-only ones can be filled first.
            dirs.push((to.clone(), meta.permissions()));
            if as_root {
                std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            }
            continue;
        }
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if file_type.is_file() {
            fs::copy(&from, &to)?;
        } else {
            // FIFOs, sockets and device nodes (the latter need root, as with btrfs send).
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                rustix::fs::FileType::from_raw_mode(meta.mode()),
                rustix::fs::Mode::from_raw_mode(meta.mode() & 0o777),
                meta.rdev(),
            )?;
        }
        if as_root {
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        }
        // After chown, which clears set-id bits.
        if !file_type.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode()))?;
        }
    }
    for (dir, permissions) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(permissions.mode()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, symlink};

    use super::*;

    fn storage() -> (tempfile::TempDir, FakeStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FakeStorage::open(dir.path().join("storage")).expect("fake storage");
        (dir, storage)
    }

    fn os_error(result: StorageResult<()>) -> Option<i32> {
        match result {
            Err(StorageError::Io { source, .. }) => source.raw_os_error(),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn create_exists_and_refuses_duplicates_and_bad_names() {
        let (_dir, s) = storage();
        let vol = Subvol::volume("v1");
        assert!(!s.exists(&vol));
        s.create(&vol).unwrap();
        assert!(s.exists(&vol));
        assert!(s.path(&vol).is_dir());
        assert!(matches!(s.create(&vol), Err(StorageError::AlreadyExists(n)) if n == "volumes/v1"));
        s.create(&Subvol::base("debian", "12")).unwrap();
        for bad in [
            Subvol::volume(".."),
            Subvol::root("a/b"),
            Subvol::base("debian", ""),
            Subvol {
                kind: SubvolKind::Base,
                name: "debian".into(),
            },
        ] {
            assert!(
                matches!(s.create(&bad), Err(StorageError::InvalidName { .. })),
                "{bad}"
            );
        }
        fs::write(s.root().join("roots/file"), b"").unwrap();
        assert!(matches!(
            s.delete(&Subvol::root("file")),
            Err(StorageError::NotSubvolume(_))
        ));
    }

    #[test]
    fn snapshots_are_independent_copies() {
        let (dir, s) = storage();
        let src = Subvol::volume("src");
        s.create(&src).unwrap();
        let p = s.path(&src);
        fs::create_dir(p.join("d")).unwrap();
        fs::write(p.join("d/a"), b"original").unwrap();
        fs::set_permissions(p.join("d/a"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::hard_link(p.join("d/a"), p.join("hard")).unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"host").unwrap();
        symlink(&outside, p.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();

        let dst = Subvol::root("box");
        s.snapshot(&src, &dst, false).unwrap();
        let q = s.path(&dst);
        assert_eq!(fs::read(q.join("d/a")).unwrap(), b"original");
        assert_eq!(fs::metadata(q.join("d/a")).unwrap().mode() & 0o7777, 0o751);
        assert_eq!(
            fs::metadata(q.join("hard")).unwrap().ino(),
            fs::metadata(q.join("d/a")).unwrap().ino()
        );
        assert_ne!(
            fs::metadata(q.join("hard")).unwrap().ino(),
            fs::metadata(p.join("hard")).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(q.join("link")).unwrap(),
            outside,
            "symlinks are copied as links"
        );
        assert!(
            fs::symlink_metadata(q.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );

        fs::write(q.join("d/a"), b"changed in snapshot").unwrap();
        fs::write(q.join("new"), b"x").unwrap();
        assert_eq!(fs::read(p.join("d/a")).unwrap(), b"original");
        assert!(!p.join("new").exists());
        assert_eq!(fs::read(&outside).unwrap(), b"host");

        assert!(matches!(
            s.snapshot(&src, &dst, false),
            Err(StorageError::AlreadyExists(_))
        ));
        assert!(matches!(
            s.snapshot(&Subvol::volume("missing"), &Subvol::root("other"), false),
            Err(StorageError::NotFound(n)) if n == "volumes/missing"
        ));
        assert!(!s.exists(&Subvol::root("other")));
    }

    #[test]
    fn read_only_is_tracked_and_enforced_by_write_file() {
        let (_dir, s) = storage();
        let src = Subvol::volume("src");
        s.create(&src).unwrap();
        s.write_file(&src, Path::new("a/b"), b"data").unwrap();
        let ro = Subvol::checkpoint("c1");
        s.snapshot(&src, &ro, true).unwrap();
        assert!(s.is_read_only(&ro).unwrap());
        assert!(!s.is_read_only(&src).unwrap());
        assert_eq!(
            os_error(s.write_file(&ro, Path::new("x"), b"x")),
            Some(libc::EROFS)
        );
        s.set_read_only(&ro, false).unwrap();
        s.write_file(&ro, Path::new("x"), b"x").unwrap();
        s.set_read_only(&src, true).unwrap();
        // A writable snapshot of a read-only subvolume is writable.
        let rw = Subvol::root("rw");
        s.snapshot(&src, &rw, false).unwrap();
        assert!(!s.is_read_only(&rw).unwrap());
        assert!(matches!(
            s.is_read_only(&Subvol::root("nope")),
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            s.set_read_only(&Subvol::root("nope"), true),
            Err(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn delete_is_idempotent_and_busy_is_refused() {
        let (_dir, s) = storage();
        let vol = Subvol::root("r");
        s.create(&vol).unwrap();
        s.set_read_only(&vol, true).unwrap();
        s.set_busy(&vol, true);
        assert!(matches!(s.delete(&vol), Err(StorageError::Busy(n)) if n == "roots/r"));
        assert!(s.exists(&vol));
        s.set_busy(&vol, false);
        s.delete(&vol).unwrap();
        assert!(!s.exists(&vol));
        s.delete(&vol).unwrap();
        // A recreated subvolume starts without the old flags.
        s.create(&vol).unwrap();
        assert!(!s.is_read_only(&vol).unwrap());
    }

    #[test]
    fn limits_and_usage() {
        let (_dir, s) = storage();
        let vol = Subvol::root("r");
        s.create(&vol).unwrap();
        assert_eq!(s.usage(&vol).unwrap(), 0);
        assert_eq!(s.limit(&vol).unwrap(), None);
        s.write_file(&vol, Path::new("a"), &[0; 300]).unwrap();
        s.write_file(&vol, Path::new("d/b"), &[0; 200]).unwrap();
        assert_eq!(s.usage(&vol).unwrap(), 500);

        s.set_limit(&vol, Some(1000)).unwrap();
        assert_eq!(s.limit(&vol).unwrap(), Some(1000));
        assert_eq!(
            os_error(s.write_file(&vol, Path::new("c"), &[0; 501])),
            Some(libc::EDQUOT)
        );
        // Rewriting a file counts its new size, not both.
        s.write_file(&vol, Path::new("a"), &[0; 800]).unwrap();
        assert_eq!(s.usage(&vol).unwrap(), 1000);

        let fork = Subvol::root("fork");
        s.snapshot(&vol, &fork, false).unwrap();
        assert_eq!(
            s.limit(&fork).unwrap(),
            Some(1000),
            "snapshots inherit the limit"
        );
        assert_eq!(s.usage(&fork).unwrap(), 1000);

        s.set_limit(&vol, None).unwrap();
        assert_eq!(s.limit(&vol).unwrap(), None);
        s.write_file(&vol, Path::new("c"), &[0; 5000]).unwrap();
        assert!(matches!(
            s.usage(&Subvol::root("nope")),
            Err(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn list_and_state_survive_a_restart() {
        let (dir, s) = storage();
        for vol in [
            Subvol::base("debian", "13"),
            Subvol::base("alpine", "3"),
            Subvol::root("b"),
            Subvol::root("a"),
            Subvol::volume("v"),
            Subvol::checkpoint("c"),
        ] {
            s.create(&vol).unwrap();
        }
        s.set_read_only(&Subvol::base("debian", "13"), true)
            .unwrap();
        s.set_limit(&Subvol::root("a"), Some(42)).unwrap();
        fs::write(s.root().join("roots/not-a-dir"), b"").unwrap();
        assert_eq!(
            s.list(SubvolKind::Base).unwrap(),
            vec![Subvol::base("alpine", "3"), Subvol::base("debian", "13")]
        );
        assert_eq!(
            s.list(SubvolKind::Root).unwrap(),
            vec![Subvol::root("a"), Subvol::root("b")]
        );
        assert_eq!(
            s.list(SubvolKind::Volume).unwrap(),
            vec![Subvol::volume("v")]
        );
        assert_eq!(
            s.list(SubvolKind::Checkpoint).unwrap(),
            vec![Subvol::checkpoint("c")]
        );

        drop(s);
        let s = FakeStorage::open(dir.path().join("storage")).unwrap();
        assert!(s.is_read_only(&Subvol::base("debian", "13")).unwrap());
        assert_eq!(s.limit(&Subvol::root("a")).unwrap(), Some(42));
        assert_eq!(s.list(SubvolKind::Root).unwrap().len(), 2);
    }
}
