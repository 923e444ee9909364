//! Filesystem helpers that never let a user path escape its root.
//!
//! Box roots hold content users control: they can plant `..`, absolute symlinks, relative
//! symlink chains and swap directories for symlinks while the server works. Every helper here
//! resolves paths with `openat2(2)` and `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` against a
//! root directory fd, so the kernel treats that directory as `/` for the whole lookup, the way
//! a chroot would: `..` stops at it and `/etc/passwd` (or a symlink to it) means the root's
//! `/etc/passwd`. Resolution is atomic, so a swapped symlink can only change which file
//! *inside* the root is reached. Once resolved, the work continues on the fd, never on a path.
//!
//! The root itself is trusted: [`open_root`] follows whatever path the caller gives it (a box
//! root on the host, or `/proc/<pid>/root` to see a running box's mounts).
//!
//! Needs Linux ≥ 5.6 (`openat2`).

pub mod tar;
#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many times a lookup is retried when the kernel reports a concurrent rename (`EAGAIN`).
const LOOKUP_RETRIES: usize = 32;

/// A failed operation on a path inside a root.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}", path = .path.display())]
pub struct FsError {
    /// What was being done (`"opening"`, `"creating directory"`…).
    pub op: &'static str,
    /// The path as the user gave it, relative to the root.
    pub path: PathBuf,
    /// The underlying error; its kind says not found, permission denied…
    #[source]
    pub source: io::Error,
}

impl FsError {
    fn new(op: &'static str, path: &Path, source: impl Into<io::Error>) -> Self {
        Self {
            op,
            path: path.to_owned(),
            source: source.into(),
        }
    }

    /// The kind of the underlying I/O error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The errno of the underlying error, if it came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl From<FsError> for io::Error {
    fn from(e: FsError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// Result alias for this module.
pub type FsResult<T> = Result<T, FsError>;

/// Opens `dir` as a root for the other helpers (`O_PATH | O_DIRECTORY`).
pub fn open_root(dir: &Path) -> FsResult<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::new("opening root", dir, e))
}

/// `openat2` relative to `root` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, retrying
/// when a concurrent rename made the kernel refuse (`EAGAIN`).
fn resolve(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    // openat2 rejects a mode without O_CREAT / O_TMPFILE.
    let mode = if flags.intersects(OFlags::CREATE | OFlags::TMPFILE) {
        mode
    } else {
        Mode::empty()
    };
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if attempts < LOOKUP_RETRIES => attempts += 1,
            other => return other,
        }
    }
}

/// Opens `path` inside the root with `flags` (`O_CREAT` uses `mode`, before the umask).
///
/// A final symlink is followed, inside the root, unless `flags` has `O_NOFOLLOW`; with
/// `O_CREAT | O_EXCL` it is never followed.
pub fn open_in_root(root: impl AsFd, path: &Path, flags: OFlags, mode: u32) -> FsResult<File> {
    resolve(root.as_fd(), path, flags, Mode::from_raw_mode(mode))
        .map(File::from)
        .map_err(|e| FsError::new("opening", path, e))
}

/// Splits `path` into its parent (relative to the root) and a final plain name.
fn split_parent(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => Ok((path.parent().unwrap_or(Path::new("")), name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path must end in a name (not /, . or ..)",
        )),
    }
}

/// Opens the directory that will hold the last component of `path`, and returns its name.
fn open_parent<'p>(root: BorrowedFd<'_>, path: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
    let (parent, name) = split_parent(path)?;
    let dir = resolve(
        root,
        parent,
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )?;
    refuse_pseudo_fs(&dir)?;
    Ok((dir, name))
}

/// Kernel filesystems that expose the host or the kernel rather than files of the box:
/// `(magic, name)` from `statfs(2)`.
const PSEUDO_FILESYSTEMS: &[(u32, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x1cd1, "devpts"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6265_6570, "configfs"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x6573_5543, "fusectl"),
    (0x6e73_6673, "nsfs"),
];

/// The name of the kernel pseudo filesystem (`proc`, `sysfs`, `cgroup`…) that `fd` is on,
/// or `None` for a filesystem that holds files. Seen through a running box's mounts, those
/// filesystems reach the kernel and the host, so file transfer never reads or writes them.
pub fn pseudo_fs(fd: impl AsFd) -> io::Result<Option<&'static str>> {
    let st = rustix::fs::fstatfs(fd)?;
    // f_type is a signed word whose meaningful bits are the 32-bit magic.
    let magic = st.f_type as u32;
    Ok(PSEUDO_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name))
}

/// Fails with `PermissionDenied` when `fd` is on a kernel pseudo filesystem.
pub fn refuse_pseudo_fs(fd: impl AsFd) -> io::Result<()> {
    match pseudo_fs(fd)? {
        None => Ok(()),
        Some(name) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{name} is a kernel filesystem; files cannot be copied to or from it"),
        )),
    }
}

/// Creates the directory `path` and any missing parents inside the root (`mkdir -p`).
/// Existing components may be symlinks; they are followed inside the root. `mode` applies to
/// the directories created (before the umask).
pub fn create_dir_all_in_root(root: impl AsFd, path: &Path, mode: u32) -> FsResult<()> {
    let root = root.as_fd();
    let fail = |e: io::Error| FsError::new("creating directory", path, e);
    // Each directory is opened by its whole path from the root, so symlinks met on the way
    // resolve inside the root.
    let open_dir = |prefix: &Path| {
        resolve(
            root,
            prefix,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
    };
    let mut prefix = PathBuf::new();
    let mut dir = open_dir(&prefix).map_err(|e| fail(e.into()))?;
    for component in path.components() {
        prefix.push(component);
        let name = match component {
            Component::Normal(name) => name,
            // `/` and `.` change nothing; `..` is resolved by the kernel, within the root.
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                dir = open_dir(&prefix).map_err(|e| fail(e.into()))?;
                continue;
            }
        };
        match open_dir(&prefix) {
            Ok(next) => dir = next,
            Err(Errno::NOENT) => {
                refuse_pseudo_fs(&dir).map_err(fail)?;
                match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(fail(e.into())),
                }
                // Whatever is there now (ours, or a racing directory or symlink) is resolved
                // inside the root like any other component.
                dir = open_dir(&prefix).map_err(|e| fail(e.into()))?;
            }
            Err(e) => return Err(fail(e.into())),
        }
    }
    Ok(())
}

/// A file being written next to its final name; [`AtomicFile::commit`] renames it into place,
/// dropping it uncommitted removes it. For streaming uploads; [`write_file_in_root`] is the
/// one-shot form.
#[derive(Debug)]
pub struct AtomicFile {
    dir: OwnedFd,
    tmp_name: OsString,
    name: OsString,
    path: PathBuf,
    file: Option<File>,
    writeback: WriteBehind,
}

impl AtomicFile {
    /// Creates a temporary file in the directory that will hold `path`, with permissions
    /// exactly `mode` (not masked by the umask). The parent directory must exist.
    pub fn create(root: impl AsFd, path: &Path, mode: u32) -> FsResult<Self> {
        let fail = |e: io::Error| FsError::new("creating", path, e);
        let (dir, name) = open_parent(root.as_fd(), path).map_err(fail)?;
        let mut attempt = 0u32;
        let (tmp_name, file) = loop {
            let tmp_name = temp_name(name);
            match rustix::fs::openat(
                &dir,
                &tmp_name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (tmp_name, File::from(fd)),
                Err(Errno::EXIST) if attempt < 8 => attempt += 1,
                Err(e) => return Err(fail(e.into())),
            }
        };
        let atomic = Self {
            dir,
            tmp_name,
            name: name.to_owned(),
            path: path.to_owned(),
            file: Some(file),
            writeback: WriteBehind::default(),
        };
        rustix::fs::fchmod(atomic.file(), Mode::from_raw_mode(mode)).map_err(|e| fail(e.into()))?;
        Ok(atomic)
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("present until commit")
    }

    /// Flushes the file to disk and renames it over the final name. A symlink at the final
    /// name is replaced, not followed.
    pub fn commit(self) -> FsResult<()> {
        self.finish(true)
    }

    /// Renames the file over the final name without flushing it first: readers still see
    /// the old content or the new, but a crash may lose the new one. For many small files
    /// followed by one `syncfs` ([`sync_filesystem`]).
    pub fn commit_unsynced(self) -> FsResult<()> {
        self.finish(false)
    }

    fn finish(mut self, sync: bool) -> FsResult<()> {
        let file = self.file.take().expect("present until commit");
        if sync {
            file.sync_all()
                .map_err(|e| FsError::new("writing", &self.path, e))?;
        }
        drop(file);
        rustix::fs::renameat(&self.dir, &self.tmp_name, &self.dir, &self.name)
            .map_err(|e| FsError::new("renaming into place", &self.path, e))?;
        self.tmp_name.clear();
        Ok(())
    }
}

impl Write for AtomicFile {
    /// Writes sequentially; every 8 MiB the written data is sent to disk in the
    /// background, so that the flush of [`Self::commit`] finds little left to do.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("present until commit");
        let n = file.write(buf)?;
        self.writeback.wrote(file, n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp_name.is_empty() {
            let _ = rustix::fs::unlinkat(&self.dir, &self.tmp_name, AtFlags::empty());
        }
    }
}

/// How much sequentially written data [`WriteBehind`] lets pile up before it starts sending
/// it to disk.
const WRITE_BEHIND_WINDOW: u64 = 8 << 20;

/// Streams a large sequential write to disk while it is being written, instead of leaving
/// it all to one `fsync` at the end.
///
/// An upload that ends with `fsync` otherwise runs in two phases: the page cache fills at
/// network speed, then the disk writes everything while the client waits. Here every
/// [`WRITE_BEHIND_WINDOW`] bytes the window just written is handed to writeback
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), and the window before it
/// is waited for, so the disk works alongside the network, dirty memory stays at about two
/// windows, and the final `fsync` has one window left. It only ever adds writeback the
/// kernel would do anyway; durability still comes from the `fsync` of the commit. Errors
/// are ignored here for the same reason: writeback errors resurface at that `fsync`.
#[derive(Debug, Default)]
struct WriteBehind {
    /// Bytes written so far (the file is written from offset 0, sequentially).
    written: u64,
    /// Start of the window not yet handed to writeback.
    started: u64,
    /// Start of the window handed to writeback but not yet waited for.
    waited: u64,
}

impl WriteBehind {
    fn wrote(&mut self, file: &File, n: u64) {
        self.written += n;
        if self.written - self.started < WRITE_BEHIND_WINDOW {
            return;
        }
        let _ = sync_file_range(
            file,
            self.started,
            self.written - self.started,
            libc::SYNC_FILE_RANGE_WRITE,
        );
        if self.started > self.waited {
            let _ = sync_file_range(
                file,
                self.waited,
                self.started - self.waited,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
        self.waited = self.started;
        self.started = self.written;
    }
}

/// `sync_file_range(2)`, which rustix does not wrap.
#[allow(unsafe_code)]
fn sync_file_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: a plain syscall on an fd the borrowed `File` keeps open; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `contents` to `path` inside the root atomically (temporary file in the same
/// directory, then rename), with permissions exactly `mode`. Readers see the old content or
/// the new, never a mix; a symlink at `path` is replaced, not written through.
pub fn write_file_in_root(
    root: impl AsFd,
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> FsResult<()> {
    let mut file = AtomicFile::create(root, path, mode)?;
    file.write_all(contents)
        .map_err(|e| FsError::new("writing", path, e))?;
    file.commit()
}

/// Metadata of `path` inside the root; with `follow` a final symlink is followed (inside the
/// root), without it the symlink itself is described.
pub fn stat_in_root(root: impl AsFd, path: &Path, follow: bool) -> FsResult<Metadata> {
    let flags = if follow {
        OFlags::PATH
    } else {
        OFlags::PATH | OFlags::NOFOLLOW
    };
    let fd = resolve(root.as_fd(), path, flags, Mode::empty())
        .map_err(|e| FsError::new("inspecting", path, e))?;
    File::from(fd)
        .metadata()
        .map_err(|e| FsError::new("inspecting", path, e))
}

/// One entry of [`read_dir_in_root`].
#[derive(Debug)]
pub struct DirEntry {
    /// The entry's name.
    pub name: OsString,
    /// Its metadata; a symlink is described, not followed.
    pub metadata: Metadata,
}

/// The entries of directory `path` inside the root (without `.` and `..`), sorted by name.
pub fn read_dir_in_root(root: impl AsFd, path: &Path) -> FsResult<Vec<DirEntry>> {
    let fail = |e: io::Error| FsError::new("listing", path, e);
    let dir = resolve(
        root.as_fd(),
        path,
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let mut entries = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).map_err(|e| fail(e.into()))? {
        let entry = entry.map_err(|e| fail(e.into()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_owned();
        // A single name relative to the directory fd: nothing to resolve, nothing to escape.
        let fd = match rustix::fs::openat(
            &dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Removed since it was listed.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(fail(e.into())),
        };
        let metadata = File::from(fd).metadata().map_err(fail)?;
        entries.push(DirEntry { name, metadata });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Removes the file, symlink (not its target) or empty directory at `path` inside the root.
pub fn remove_in_root(root: impl AsFd, path: &Path) -> FsResult<()> {
    let fail = |e: io::Error| FsError::new("removing", path, e);
    let (dir, name) = open_parent(root.as_fd(), path).map_err(fail)?;
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR),
        other => other,
    }
    .map_err(|e| fail(e.into()))
}

/// A temporary name next to `name` for building an entry before renaming it into place.
fn temp_name(name: &OsStr) -> OsString {
    OsString::from(format!(
        ".{}.zomg-{}-{}",
        name.to_string_lossy().chars().take(64).collect::<String>(),
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Creates (or atomically replaces) a symbolic link at `path` inside the root whose target
/// is `target`. The target is only text: it is never resolved here, and any later lookup
/// through it by these helpers stays inside the root.
pub fn symlink_in_root(root: impl AsFd, path: &Path, target: &Path) -> FsResult<()> {
    let fail = |e: io::Error| FsError::new("creating symlink", path, e);
    let (dir, name) = open_parent(root.as_fd(), path).map_err(fail)?;
    let tmp = temp_name(name);
    rustix::fs::symlinkat(target, &dir, &tmp).map_err(|e| fail(e.into()))?;
    if let Err(e) = rustix::fs::renameat(&dir, &tmp, &dir, name) {
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        return Err(fail(e.into()));
    }
    Ok(())
}

/// Creates (or atomically replaces) `path` as a hard link to the regular file `existing`,
/// both inside the root. `existing` is resolved inside the root without following a final
/// symlink, and must be a regular file: a link can never reach a file outside the root.
pub fn hard_link_in_root(root: impl AsFd, existing: &Path, path: &Path) -> FsResult<()> {
    let root = root.as_fd();
    let fail = |e: io::Error| FsError::new("creating hard link", path, e);
    let src = resolve(
        root,
        existing,
        OFlags::PATH | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| FsError::new("opening", existing, e))?;
    let meta = File::from(src.try_clone().map_err(fail)?)
        .metadata()
        .map_err(fail)?;
    if !meta.is_file() {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "hard link target {} is not a regular file",
                existing.display()
            ),
        )));
    }
    let (dir, name) = open_parent(root, path).map_err(fail)?;
    let tmp = temp_name(name);
    rustix::fs::linkat(&src, "", &dir, &tmp, AtFlags::EMPTY_PATH).map_err(|e| fail(e.into()))?;
    if let Err(e) = rustix::fs::renameat(&dir, &tmp, &dir, name) {
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        return Err(fail(e.into()));
    }
    Ok(())
}

/// Flushes the whole filesystem that `fd` is on (`syncfs(2)`).
pub fn sync_filesystem(fd: impl AsFd) -> io::Result<()> {
    rustix::fs::syncfs(fd).map_err(Into::into)
}
