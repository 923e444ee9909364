//! Tar streams of directory trees inside a root: [`pack`] for downloads, [`unpack`] for
//! uploads (`zomg cp -r`).
//!
//! Both work on directory fds, never on host paths. [`pack`] walks with `openat(…,
//! O_NOFOLLOW)` one name at a time from the directory it holds, so a symlink swapped in
//! while it walks is archived as a symlink, not followed. [`unpack`] creates every entry with
//! the helpers of this module, which resolve inside a root; the root of an archive is the
//! directory it is extracted into, so no entry — `../x`, `/etc/passwd`, a path through a
//! symlink the archive itself planted, a hard link to `/etc/shadow` — lands outside it.
//! `tar::Archive::unpack` is never used: it resolves host paths and follows symlinks.
//!
//! What is refused or skipped:
//! - entries with a `..` component fail the upload (`InvalidData`); a leading `/` is
//!   dropped (`/etc/x` extracts to `<dir>/etc/x`), as GNU tar does;
//! - hard links must name a regular file of the same archive tree, resolved inside the root;
//! - device nodes, FIFOs and sockets are skipped and counted, in both directions;
//! - directories on kernel filesystems (`/proc`, `/sys`…) are archived empty.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::{EntryType, Header};

use super::{
    AtomicFile, create_dir_all_in_root, hard_link_in_root, open_in_root, pseudo_fs,
    symlink_in_root, sync_filesystem,
};

/// How deep [`pack`] descends; each level holds one directory fd open.
const MAX_DEPTH: usize = 256;
/// How many skipped entries are named in a summary.
const SKIPPED_EXAMPLES: usize = 10;

/// A directory tree to archive or extract into: a directory, plus other roots mounted at
/// some of its subdirectories (the data volumes of a stopped box, whose mounts do not
/// exist while it is stopped).
#[derive(Debug)]
pub struct Tree {
    /// The directory itself (any fd that names it; `O_PATH` is enough).
    pub dir: OwnedFd,
    /// `(path relative to dir, root directory)` of each other root below it.
    pub overlays: Vec<(PathBuf, OwnedFd)>,
}

impl Tree {
    /// A tree without overlays.
    pub fn new(dir: OwnedFd) -> Self {
        Self {
            dir,
            overlays: Vec::new(),
        }
    }

    /// Which root holds `rel` (0 = `dir`, i+1 = overlay i) and the path inside that root.
    fn locate<'p>(&self, rel: &'p Path) -> (usize, &'p Path) {
        let mut best: (usize, &Path, usize) = (0, rel, 0);
        for (i, (prefix, _)) in self.overlays.iter().enumerate() {
            let depth = prefix.components().count();
            if let Ok(rest) = rel.strip_prefix(prefix) {
                if depth > best.2 {
                    best = (i + 1, rest, depth);
                }
            }
        }
        (best.0, best.1)
    }

    fn root(&self, index: usize) -> BorrowedFd<'_> {
        match index {
            0 => self.dir.as_fd(),
            i => self.overlays[i - 1].1.as_fd(),
        }
    }
}

/// What a pack or unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links (unpack only; pack stores every name as a file).
    pub hard_links: u64,
    /// Device nodes, FIFOs and sockets left out.
    pub skipped: u64,
    /// The first few of those, by path.
    pub skipped_examples: Vec<String>,
}

impl Summary {
    fn skip(&mut self, path: &Path) {
        self.skipped += 1;
        if self.skipped_examples.len() < SKIPPED_EXAMPLES {
            self.skipped_examples.push(path.display().to_string());
        }
    }
}

/// Writes a tar archive of the contents of `tree` (not the directory itself) to `out` and
/// returns `out` once the archive is complete. Entries are in name order; owners, modes and
/// mtimes are those on disk.
pub fn pack<W: Write>(tree: &Tree, out: W) -> io::Result<(W, Summary)> {
    let mut builder = tar::Builder::new(out);
    let mut summary = Summary::default();
    let top = reopen_dir(tree.dir.as_fd())?;
    if pseudo_fs(&top)?.is_none() {
        pack_dir(&mut builder, tree, &top, Path::new(""), 0, &mut summary)?;
    }
    let out = builder.into_inner()?;
    Ok((out, summary))
}

/// Opens a directory for listing from any fd naming it (`O_PATH` included).
fn reopen_dir(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn pack_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    tree: &Tree,
    dir: &OwnedFd,
    rel: &Path,
    depth: usize,
    summary: &mut Summary,
) -> io::Result<()> {
    if depth >= MAX_DEPTH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is nested more than {MAX_DEPTH} directories deep",
                rel.display()
            ),
        ));
    }
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    names.sort();
    for name in names {
        let path = rel.join(&name);
        if let Some((_, root)) = tree.overlays.iter().find(|(p, _)| *p == path) {
            let sub = reopen_dir(root.as_fd())?;
            append_dir(builder, tree, &sub, &path, depth, summary)?;
            continue;
        }
        let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed since it was listed.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = match rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Removed or swapped for something else since it was listed.
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                    Err(e) => return Err(e.into()),
                };
                append_dir(builder, tree, &sub, &path, depth, summary)?;
            }
            FileType::RegularFile => {
                // O_NONBLOCK: if a FIFO was swapped in, opening it must not hang.
                let fd = match rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::LOOP) => continue,
                    Err(e) => return Err(e.into()),
                };
                let st = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    summary.skip(&path);
                    continue;
                }
                let size = st.st_size as u64;
                let mut header = header_from(&st, EntryType::Regular);
                header.set_size(size);
                builder.append_data(&mut header, &path, ExactReader::new(File::from(fd), size))?;
                summary.files += 1;
                summary.bytes += size;
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, &name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT | Errno::INVAL) => continue,
                    Err(e) => return Err(e.into()),
                };
                let target = OsStr::from_bytes(target.as_bytes()).to_owned();
                let mut header = header_from(&st, EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, &path, Path::new(&target))?;
                summary.symlinks += 1;
            }
            _ => summary.skip(&path),
        }
    }
    Ok(())
}

/// Archives one directory entry and, unless it is on a kernel filesystem, its contents.
fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    tree: &Tree,
    sub: &OwnedFd,
    path: &Path,
    depth: usize,
    summary: &mut Summary,
) -> io::Result<()> {
    let st = rustix::fs::fstat(sub)?;
    let mut header = header_from(&st, EntryType::Directory);
    header.set_size(0);
    builder.append_data(&mut header, path, io::empty())?;
    summary.directories += 1;
    if pseudo_fs(sub)?.is_none() {
        pack_dir(builder, tree, sub, path, depth + 1, summary)?;
    }
    Ok(())
}

fn header_from(st: &rustix::fs::Stat, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h
}

/// Reads exactly `size` bytes: the file's, then zeros if it shrank while being read. A
/// file that grows is cut at `size`. Either way the archive stays well-formed.
struct ExactReader {
    file: File,
    remaining: u64,
    eof: bool,
}

impl ExactReader {
    fn new(file: File, size: u64) -> Self {
        Self {
            file,
            remaining: size,
            eof: false,
        }
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.eof {
            buf[..want].fill(0);
            want
        } else {
            match self.file.read(&mut buf[..want])? {
                0 => {
                    self.eof = true;
                    buf[..want].fill(0);
                    want
                }
                n => n,
            }
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Extracts the tar archive read from `input` into `tree`: every entry is created inside the
/// tree's roots (see the module docs), regular files atomically (temporary file + rename)
/// with their mode and mtime, symlinks as symlinks. Owners are not restored: what is
/// written belongs to the server's user (root, the box's user). The filesystems are synced
/// once at the end.
pub fn unpack<R: Read>(tree: &Tree, input: R) -> io::Result<Summary> {
    let mut archive = tar::Archive::new(input);
    let mut summary = Summary::default();
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_name = entry.path_bytes().into_owned();
        let Some(rel) = entry_path(&raw_name)? else {
            // `.` or `/`: the directory being extracted into.
            continue;
        };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().ok();
        let (index, inner) = tree.locate(&rel);
        let root = tree.root(index);
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("extracting {}: {e}", String::from_utf8_lossy(&raw_name)),
            )
        };
        match kind {
            EntryType::Directory => {
                if !inner.as_os_str().is_empty() {
                    create_dir_all_in_root(root, inner, 0o755).map_err(|e| context(e.into()))?;
                }
                let dir = open_in_root(root, inner, OFlags::RDONLY | OFlags::DIRECTORY, 0)
                    .map_err(|e| context(e.into()))?;
                rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))
                    .map_err(|e| context(e.into()))?;
                if let Some(t) = mtime {
                    dir_times.push((rel.clone(), t));
                }
                summary.directories += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                create_parent(root, inner).map_err(context)?;
                let mut file =
                    AtomicFile::create(root, inner, mode).map_err(|e| context(e.into()))?;
                let n = copy(&mut entry, &mut file).map_err(context)?;
                if let Some(t) = mtime {
                    set_mtime(file.file(), t).map_err(context)?;
                }
                file.commit_unsynced().map_err(|e| context(e.into()))?;
                summary.files += 1;
                summary.bytes += n;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        context(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "symlink without a target",
                        ))
                    })?
                    .into_owned();
                create_parent(root, inner).map_err(context)?;
                symlink_in_root(root, inner, Path::new(OsStr::from_bytes(&target)))
                    .map_err(|e| context(e.into()))?;
                summary.symlinks += 1;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = entry_path(&target)?.ok_or_else(|| {
                    context(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "hard link without a target",
                    ))
                })?;
                let (target_index, target_inner) = tree.locate(&target);
                if target_index != index {
                    return Err(context(io::Error::new(
                        io::ErrorKind::CrossesDevices,
                        format!(
                            "hard link to {} crosses into another volume",
                            target.display()
                        ),
                    )));
                }
                create_parent(root, inner).map_err(context)?;
                hard_link_in_root(root, target_inner, inner).map_err(|e| context(e.into()))?;
                summary.hard_links += 1;
            }
            // Metadata records the tar crate has already applied to the entries they
            // describe.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            // Device nodes, FIFOs, sparse files and unknown kinds are not created.
            _ => summary.skip(&rel),
        }
    }
    // Directory mtimes last: creating their entries changed them.
    for (rel, t) in dir_times.iter().rev() {
        let (index, inner) = tree.locate(rel);
        if let Ok(dir) = open_in_root(
            tree.root(index),
            inner,
            OFlags::RDONLY | OFlags::DIRECTORY,
            0,
        ) {
            set_mtime(&dir, *t)?;
        }
    }
    // syncfs needs a real fd, not the O_PATH ones a tree may hold.
    sync_filesystem(reopen_dir(tree.dir.as_fd())?)?;
    for (_, fd) in &tree.overlays {
        sync_filesystem(reopen_dir(fd.as_fd())?)?;
    }
    Ok(summary)
}

/// An archive member name as a relative path: leading `/` and `.` components dropped,
/// `..` refused. `None` for the archive's root itself.
fn entry_path(raw: &[u8]) -> io::Result<Option<PathBuf>> {
    let mut path = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "archive entry {:?} has a '..' component; refusing to extract it",
                        String::from_utf8_lossy(raw)
                    ),
                ));
            }
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// Creates the parent directories of `inner` (mode 0755) inside `root`.
fn create_parent(root: BorrowedFd<'_>, inner: &Path) -> io::Result<()> {
    match inner.parent() {
        Some(p) if !p.as_os_str().is_empty() => {
            create_dir_all_in_root(root, p, 0o755).map_err(Into::into)
        }
        _ => Ok(()),
    }
}

/// Copies with a large buffer: fewer, bigger writes than `io::copy`'s 8 KiB.
pub fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Sets the modification (and access) time of an open file or directory.
pub fn set_mtime(fd: impl AsFd, seconds: u64) -> io::Result<()> {
    let t = Timespec {
        tv_sec: i64::try_from(seconds).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_relative_and_never_climb() {
        assert_eq!(entry_path(b"a/b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(entry_path(b"./a//b/").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(
            entry_path(b"/etc/passwd").unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(entry_path(b"./").unwrap(), None);
        assert_eq!(entry_path(b"/").unwrap(), None);
        for bad in [&b"../x"[..], b"a/../../x", b"/.."] {
            let e = entry_path(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn exact_reader_pads_and_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let mut out = Vec::new();
        ExactReader::new(File::open(&p).unwrap(), 5)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abc\0\0");
        out.clear();
        ExactReader::new(File::open(&p).unwrap(), 2)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"ab");
    }

    #[test]
    fn overlays_take_the_longest_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let fd = || super::super::open_root(dir.path()).unwrap();
        let tree = Tree {
            dir: fd(),
            overlays: vec![
                (PathBuf::from("data"), fd()),
                (PathBuf::from("data/x"), fd()),
            ],
        };
        assert_eq!(tree.locate(Path::new("a/b")), (0, Path::new("a/b")));
        assert_eq!(tree.locate(Path::new("data")), (1, Path::new("")));
        assert_eq!(tree.locate(Path::new("data/y")), (1, Path::new("y")));
        assert_eq!(tree.locate(Path::new("data/x/z")), (2, Path::new("z")));
        assert_eq!(tree.locate(Path::new("datax")), (0, Path::new("datax")));
    }
}
