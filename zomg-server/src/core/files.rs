//! File transfer: reading and writing paths inside a box (SPEC §6).
//!
//! A box path is resolved in one of two places:
//! - **running box**: through `/proc/<init pid>/root`, the box's own mount namespace, so a
//!   path under a data-volume mount (or `/tmp`, a tmpfs) reaches what the box sees. Before
//!   use, that root is checked to be the box's root subvolume (same device and inode), so a
//!   recycled pid can never hand out another process's root;
//! - **stopped box**: the root subvolume, except under a data-volume mount path, which maps
//!   to the volume's subvolume (longest mount path first), read-only mounts included.
//!
//! Either way every open goes through `fsutil` (`openat2` with `RESOLVE_IN_ROOT`), so `..`,
//! absolute symlinks and symlinks swapped in during a transfer stay inside the box, and
//! kernel filesystems (`/proc`, `/sys`…) are never read or written. The path itself is
//! normalized lexically first (`/a/../b` is `/b`), which is what decides the mount it is
//! under. Transfers stream: memory stays bounded whatever the size.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use rustix::fs::OFlags;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::{ReaderStream, SyncIoBridge};
use tracing::warn;
use zomg_sdk::{BoxName, BoxStatus, FileKind, FileStat, ProjectName, UploadResult};

use super::BoxService;
use super::error::{CoreError, CoreResult};
use crate::fsutil::tar::{self as tree, Tree};
use crate::fsutil::{self, AtomicFile, FsError};
use crate::runtime::RunState;
use crate::storage::Subvol;
use crate::store::{BoxRecord, MountRecord};

/// Size of the chunks a file download is sent in.
const CHUNK: usize = 256 * 1024;

/// A download: the metadata of the path, and its bytes (a file) or a tar of its contents (a
/// directory).
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// An absolute box path after lexical normalization: its components, without `.` and `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxFilePath {
    parts: Vec<String>,
}

impl BoxFilePath {
    /// Parses an absolute path: `/a/./b/../c` → `/a/c`; `..` stops at `/`.
    pub fn parse(path: &str) -> CoreResult<Self> {
        if !path.starts_with('/') {
            return Err(CoreError::Invalid {
                code: "invalid_path",
                message: format!("path {path:?} must be absolute (start with /)"),
            });
        }
        if path.contains('\0') {
            return Err(CoreError::Invalid {
                code: "invalid_path",
                message: format!("path {path:?} contains a NUL byte"),
            });
        }
        let mut parts: Vec<String> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p.to_owned()),
            }
        }
        Ok(Self { parts })
    }

    /// The path relative to `/` (empty for `/`).
    fn rel(&self) -> PathBuf {
        self.parts.iter().collect()
    }

    /// The components after `prefix`, if it is a prefix.
    fn strip(&self, prefix: &BoxFilePath) -> Option<PathBuf> {
        self.parts
            .starts_with(&prefix.parts)
            .then(|| self.parts[prefix.parts.len()..].iter().collect())
    }

    fn is_root(&self) -> bool {
        self.parts.is_empty()
    }
}

impl std::fmt::Display for BoxFilePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.parts.join("/"))
    }
}

/// Where a box's files are right now (see the module docs).
#[derive(Debug)]
struct BoxFs {
    /// `/proc/<pid>/root` of a running box, or its root subvolume.
    root: OwnedFd,
    /// Whether `root` is the live mount namespace (mounts resolve by themselves).
    live: bool,
    /// Every data mount, with its volume's subvolume when the box is stopped.
    mounts: Vec<(MountRecord, BoxFilePath, Option<OwnedFd>)>,
}

/// A box path located on a root.
struct Located<'a> {
    root: &'a OwnedFd,
    rel: PathBuf,
    mount: Option<&'a MountRecord>,
}

impl BoxFs {
    /// The mount a path is under (longest mount path), with the path inside it.
    fn mount_of(&self, path: &BoxFilePath) -> Option<(usize, PathBuf)> {
        self.mounts
            .iter()
            .enumerate()
            .filter_map(|(i, (_, mp, _))| path.strip(mp).map(|rest| (i, mp.parts.len(), rest)))
            .max_by_key(|(_, depth, _)| *depth)
            .map(|(i, _, rest)| (i, rest))
    }

    fn locate(&self, path: &BoxFilePath) -> Located<'_> {
        match self.mount_of(path) {
            Some((i, rest)) => {
                let (m, _, volume) = &self.mounts[i];
                match volume {
                    Some(fd) if !self.live => Located {
                        root: fd,
                        rel: rest,
                        mount: Some(m),
                    },
                    _ => Located {
                        root: &self.root,
                        rel: path.rel(),
                        mount: Some(m),
                    },
                }
            }
            None => Located {
                root: &self.root,
                rel: path.rel(),
                mount: None,
            },
        }
    }

    /// Fails when writing `path` of a stopped box would land in a read-only mount (a running
    /// box's kernel refuses by itself).
    fn check_writable(&self, path: &BoxFilePath, at: &Located<'_>) -> CoreResult<()> {
        match at.mount {
            Some(m) if m.read_only && !self.live => Err(CoreError::Conflict {
                code: "read_only",
                message: format!(
                    "{path} is on data volume \"{}\", mounted read-only at {}",
                    m.name, m.path
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The volumes of a stopped box mounted strictly below `dir`, for tree transfers.
    fn overlays_below(&self, dir: &BoxFilePath) -> io::Result<Vec<(PathBuf, OwnedFd)>> {
        if self.live {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (_, mp, volume) in &self.mounts {
            if let (Some(rest), Some(fd)) = (mp.strip(dir), volume) {
                if !rest.as_os_str().is_empty() {
                    out.push((rest, fd.try_clone()?));
                }
            }
        }
        Ok(out)
    }
}

impl BoxService {
    /// Where the files of a box are: its live mount namespace when it runs, else its
    /// subvolumes.
    async fn box_fs(
        &self,
        project: &ProjectName,
        name: &BoxName,
    ) -> CoreResult<(BoxRecord, BoxFs)> {
        let b = self.load(project, name)?;
        if matches!(b.status, BoxStatus::Creating | BoxStatus::Deleting) {
            return Err(CoreError::Conflict {
                code: "box_busy",
                message: format!(
                    "box \"{name}\" is {}; files can be copied once it is running or stopped",
                    b.status
                ),
            });
        }
        let state = self.runtime().state(&b.id).await?;
        let storage = self.storage_backend();
        let root_path = storage.path(&Subvol::root(&b.id));
        let mounts: Vec<(MountRecord, PathBuf, BoxFilePath)> = b
            .data_mounts
            .iter()
            .map(|m| {
                Ok((
                    m.clone(),
                    storage.path(&Subvol::volume(&m.volume_id)),
                    BoxFilePath::parse(&m.path)?,
                ))
            })
            .collect::<CoreResult<_>>()?;
        let pid = match state {
            RunState::Running { pid } => Some(pid),
            RunState::Stopped | RunState::Missing => None,
        };
        let box_name = name.clone();
        let fs = tokio::task::spawn_blocking(move || -> CoreResult<BoxFs> {
            let subvol = fsutil::open_root(&root_path)
                .map_err(|e| CoreError::internal("opening the box root failed", e))?;
            if let Some(pid) = pid {
                if let Some(live) = live_root(pid, &subvol) {
                    return Ok(BoxFs {
                        root: live,
                        live: true,
                        mounts: mounts.into_iter().map(|(m, _, p)| (m, p, None)).collect(),
                    });
                }
                // The box stopped (or is stopping) since its state was read: its
                // subvolumes are the truth now.
                warn!(box = %box_name, pid, "box root no longer live; using its subvolumes");
            }
            let mut opened = Vec::new();
            for (m, path, mp) in mounts {
                let fd = fsutil::open_root(&path).map_err(|e| {
                    CoreError::internal(format!("opening data volume \"{}\" failed", m.name), e)
                })?;
                opened.push((m, mp, Some(fd)));
            }
            Ok(BoxFs {
                root: subvol,
                live: false,
                mounts: opened,
            })
        })
        .await
        .map_err(|e| CoreError::internal("file task failed", e))??;
        Ok((b, fs))
    }

    /// Metadata of a path in a box (a final symlink is followed, inside the box).
    pub async fn file_stat(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
    ) -> CoreResult<FileStat> {
        let path = BoxFilePath::parse(path)?;
        let (_, fs) = self.box_fs(project, name).await?;
        blocking(move || {
            let at = fs.locate(&path);
            let fd = fsutil::open_in_root(at.root, &at.rel, OFlags::PATH, 0)
                .map_err(|e| fs_error(&path, e.into()))?;
            refuse_pseudo(&path, &fd)?;
            stat_of(&path, &fd, at.mount)
        })
        .await
    }

    /// Opens a path of a box for download: a regular file streams its bytes, a directory a
    /// tar of its contents (see [`tree::pack`]).
    pub async fn download(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
    ) -> CoreResult<(FileStat, ByteStream)> {
        let path = BoxFilePath::parse(path)?;
        let (_, fs) = self.box_fs(project, name).await?;
        let opened = blocking(move || {
            let at = fs.locate(&path);
            let probe = fsutil::open_in_root(at.root, &at.rel, OFlags::PATH, 0)
                .map_err(|e| fs_error(&path, e.into()))?;
            refuse_pseudo(&path, &probe)?;
            let kind = stat_of(&path, &probe, at.mount)?.kind;
            // Only now open for reading: opening a device or FIFO can have effects.
            let flags = match kind {
                FileKind::File => OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
                FileKind::Directory => OFlags::RDONLY | OFlags::DIRECTORY,
                _ => return Err(not_transferable(&path)),
            };
            let file = fsutil::open_in_root(at.root, &at.rel, flags, 0)
                .map_err(|e| fs_error(&path, e.into()))?;
            // Swapped for something else since the probe: judge what was opened.
            let stat = stat_of(&path, &file, at.mount)?;
            match stat.kind {
                FileKind::File => Ok((stat, Opened::File(file))),
                FileKind::Directory => {
                    let overlays = fs.overlays_below(&path).map_err(|e| fs_error(&path, e))?;
                    let dir = OwnedFd::from(file);
                    Ok((stat, Opened::Dir(Tree { dir, overlays })))
                }
                _ => Err(not_transferable(&path)),
            }
        })
        .await?;
        let (stat, opened) = opened;
        let stream: ByteStream = match opened {
            Opened::File(file) => {
                let file = tokio::fs::File::from_std(file).take(stat.size);
                Box::pin(ReaderStream::with_capacity(file, CHUNK))
            }
            Opened::Dir(tree) => tar_stream(tree, stat.path.clone()),
        };
        Ok((stat, stream))
    }

    /// Writes `body` to a file of a box atomically (temporary file, then rename): readers
    /// see the old content or the new one, and a failed or interrupted upload leaves the
    /// old one. Missing parent directories are created (0755). `mode` defaults to the
    /// replaced file's mode, else 0644.
    pub async fn upload_file(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
        mode: Option<u32>,
        mtime: Option<i64>,
        body: impl AsyncRead + Send + Unpin + 'static,
    ) -> CoreResult<UploadResult> {
        let path = BoxFilePath::parse(path)?;
        if path.is_root() {
            return Err(CoreError::Conflict {
                code: "is_a_directory",
                message: "/ is a directory; upload a tar archive to write into it".to_owned(),
            });
        }
        let (_, fs) = self.box_fs(project, name).await?;
        let mut body = SyncIoBridge::new(body);
        blocking(move || {
            let at = fs.locate(&path);
            fs.check_writable(&path, &at)?;
            let fail = |e: io::Error| fs_error(&path, e);
            if let Some(parent) = at.rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsutil::create_dir_all_in_root(at.root, parent, 0o755)
                    .map_err(|e| fail(e.into()))?;
            }
            let existing = fsutil::stat_in_root(at.root, &at.rel, true).ok();
            if existing.as_ref().is_some_and(|m| m.is_dir()) {
                return Err(CoreError::Conflict {
                    code: "is_a_directory",
                    message: format!("{path} is a directory"),
                });
            }
            let mode = mode
                .or_else(|| existing.map(|m| m.mode() & 0o7777))
                .unwrap_or(0o644);
            let mut file =
                AtomicFile::create(at.root, &at.rel, mode).map_err(|e| fail(e.into()))?;
            let bytes = tree::copy(&mut body, &mut file).map_err(|e| body_error(&path, e))?;
            file.flush().map_err(fail)?;
            if let Some(t) = mtime {
                tree::set_mtime(file.file(), t.max(0) as u64).map_err(fail)?;
            }
            file.commit().map_err(|e| fail(e.into()))?;
            Ok(UploadResult {
                path: path.to_string(),
                bytes,
                files: 1,
                volume: at.mount.map(|m| m.name.to_string()),
                ..Default::default()
            })
        })
        .await
    }

    /// Extracts a tar archive into the directory `path` of a box, creating it if missing
    /// (see [`tree::unpack`] for what an archive may and may not do). Each file is written
    /// atomically; an archive that fails half-way leaves the entries before the failure.
    pub async fn upload_tar(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
        body: impl AsyncRead + Send + Unpin + 'static,
    ) -> CoreResult<UploadResult> {
        let path = BoxFilePath::parse(path)?;
        let (_, fs) = self.box_fs(project, name).await?;
        let body = SyncIoBridge::new(body);
        blocking(move || {
            let at = fs.locate(&path);
            fs.check_writable(&path, &at)?;
            let fail = |e: io::Error| fs_error(&path, e);
            if !at.rel.as_os_str().is_empty() {
                fsutil::create_dir_all_in_root(at.root, &at.rel, 0o755)
                    .map_err(|e| fail(e.into()))?;
            }
            let dir = fsutil::open_in_root(at.root, &at.rel, OFlags::PATH | OFlags::DIRECTORY, 0)
                .map_err(|e| fail(e.into()))?;
            refuse_pseudo(&path, &dir)?;
            if let Some((_, m)) = fs.mounts.iter().map(|(m, mp, _)| (mp, m)).find(|(mp, m)| {
                m.read_only && !fs.live && mp.strip(&path).is_some_and(|r| !r.as_os_str().is_empty())
            }) {
                return Err(CoreError::Conflict {
                    code: "read_only",
                    message: format!(
                        "data volume \"{}\" is mounted read-only at {} inside {path}; copy into a path outside it",
                        m.name, m.path
                    ),
                });
            }
            let tree = Tree {
                dir: OwnedFd::from(dir),
                overlays: fs.overlays_below(&path).map_err(fail)?,
            };
            let s = tree::unpack(&tree, body).map_err(|e| body_error(&path, e))?;
            Ok(UploadResult {
                path: path.to_string(),
                bytes: s.bytes,
                files: s.files,
                directories: s.directories,
                symlinks: s.symlinks,
                hard_links: s.hard_links,
                skipped: s.skipped,
                skipped_examples: s.skipped_examples,
                volume: at.mount.map(|m| m.name.to_string()),
            })
        })
        .await
    }
}

/// What a download opened.
enum Opened {
    File(std::fs::File),
    Dir(Tree),
}

/// `/proc/<pid>/root`, if it is still the root of the box whose root subvolume is `subvol`
/// (same device and inode): a pid recycled by another process fails the check.
fn live_root(pid: u32, subvol: &OwnedFd) -> Option<OwnedFd> {
    let live = fsutil::open_root(Path::new(&format!("/proc/{pid}/root"))).ok()?;
    let a = rustix::fs::fstat(&live).ok()?;
    let b = rustix::fs::fstat(subvol).ok()?;
    (a.st_dev == b.st_dev && a.st_ino == b.st_ino).then_some(live)
}

/// Streams a tar of `tree`, built on a blocking thread, in bounded chunks
/// ([`zomg_sdk::writer_stream`]). A failure half-way ends the stream with an error, so the
/// client sees a broken transfer, never a short one.
fn tar_stream(tree: Tree, path: String) -> ByteStream {
    Box::pin(zomg_sdk::writer_stream(move |out| {
        let result = tree::pack(&tree, out).map(drop);
        if let Err(e) = &result {
            if e.kind() != io::ErrorKind::BrokenPipe {
                warn!(path, error = %e, "tar download failed");
            }
        }
        result
    }))
}

/// Runs file work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> CoreResult<T> + Send + 'static,
) -> CoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::internal("file task failed", e))?
}

/// The metadata of an open path.
fn stat_of(
    path: &BoxFilePath,
    fd: &impl AsFd,
    mount: Option<&MountRecord>,
) -> CoreResult<FileStat> {
    let st = rustix::fs::fstat(fd).map_err(|e| fs_error(path, e.into()))?;
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => FileKind::File,
        rustix::fs::FileType::Directory => FileKind::Directory,
        rustix::fs::FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    Ok(FileStat {
        path: path.to_string(),
        kind,
        size: if kind == FileKind::File {
            st.st_size as u64
        } else {
            0
        },
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        volume: mount.map(|m| m.name.to_string()),
    })
}

fn refuse_pseudo(path: &BoxFilePath, fd: &impl AsFd) -> CoreResult<()> {
    fsutil::refuse_pseudo_fs(fd).map_err(|e| fs_error(path, e))
}

fn not_transferable(path: &BoxFilePath) -> CoreError {
    CoreError::Invalid {
        code: "not_a_file",
        message: format!(
            "{path} is not a regular file or directory (devices, FIFOs and sockets cannot be copied)"
        ),
    }
}

/// A failure while reading the request body or writing what it carries.
fn body_error(path: &BoxFilePath, e: io::Error) -> CoreError {
    if e.kind() == io::ErrorKind::InvalidData {
        return CoreError::Invalid {
            code: "invalid_archive",
            message: format!("{path}: {e}"),
        };
    }
    fs_error(path, e)
}

/// Maps a filesystem failure on `path` to what the client should hear.
fn fs_error(path: &BoxFilePath, e: io::Error) -> CoreError {
    use io::ErrorKind as K;
    // The text of an `FsError` names the path relative to its root; the client knows the
    // box path, so only the cause is kept.
    let cause = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<FsError>())
        .map_or_else(|| e.to_string(), |fe| fe.source.to_string());
    let errno = e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<FsError>())
            .and_then(FsError::raw_os_error)
    });
    let (status, code, text) = match (e.kind(), errno) {
        (K::NotFound, _) => (
            404,
            "file_not_found",
            format!("{path}: no such file or directory"),
        ),
        (_, Some(libc::ELOOP)) => (
            400,
            "invalid_path",
            format!("{path}: too many levels of symbolic links"),
        ),
        (K::NotADirectory, _) => (
            400,
            "invalid_path",
            format!("{path}: a component of the path is not a directory"),
        ),
        (K::IsADirectory | K::DirectoryNotEmpty, _) => {
            (409, "is_a_directory", format!("{path} is a directory"))
        }
        (K::ReadOnlyFilesystem, _) => (
            409,
            "read_only",
            format!("{path} is on a read-only filesystem"),
        ),
        (K::PermissionDenied, _) => (409, "permission_denied", format!("{path}: {cause}")),
        (K::StorageFull | K::QuotaExceeded, _) => (
            409,
            "no_space",
            format!("{path}: no space left (box storage limit or disk full)"),
        ),
        (K::ResourceBusy, _) => (409, "busy", format!("{path} is busy (a mount point?)")),
        (K::CrossesDevices | K::InvalidInput | K::InvalidFilename, _) => {
            (400, "invalid_path", format!("{path}: {cause}"))
        }
        // The client stopped sending: nothing was committed.
        (K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe, _) => (
            400,
            "upload_interrupted",
            format!("{path}: the upload was interrupted: {cause}"),
        ),
        _ => return CoreError::internal(format!("file operation on {path} failed"), e),
    };
    match status {
        404 => CoreError::NotFound {
            code,
            message: text,
        },
        409 => CoreError::Conflict {
            code,
            message: text,
        },
        _ => CoreError::Invalid {
            code,
            message: text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_paths_normalize_lexically() {
        let p = |s: &str| BoxFilePath::parse(s).unwrap().to_string();
        assert_eq!(p("/"), "/");
        assert_eq!(p("/a/./b//c/"), "/a/b/c");
        assert_eq!(p("/a/../../etc/passwd"), "/etc/passwd");
        assert_eq!(p("/.."), "/");
        assert!(BoxFilePath::parse("etc/passwd").is_err());
        assert!(BoxFilePath::parse("").is_err());
        assert!(BoxFilePath::parse("/a\0b").is_err());
    }

    #[test]
    fn mount_prefixes_match_whole_components() {
        let data = BoxFilePath::parse("/data").unwrap();
        assert_eq!(
            BoxFilePath::parse("/data/x/y").unwrap().strip(&data),
            Some(PathBuf::from("x/y"))
        );
        assert_eq!(
            BoxFilePath::parse("/data").unwrap().strip(&data),
            Some(PathBuf::new())
        );
        assert_eq!(BoxFilePath::parse("/database").unwrap().strip(&data), None);
    }

    #[test]
    fn errors_name_the_box_path() {
        let p = BoxFilePath::parse("/x/y").unwrap();
        let e = fs_error(&p, io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.code(), "file_not_found");
        assert_eq!(e.public_message(), "/x/y: no such file or directory");
        let e = fs_error(&p, io::Error::from_raw_os_error(libc::EROFS));
        assert_eq!(e.code(), "read_only");
        let e = fs_error(&p, io::Error::from_raw_os_error(libc::EDQUOT));
        assert_eq!(e.code(), "no_space");
        let e = fs_error(&p, io::Error::from_raw_os_error(libc::ELOOP));
        assert_eq!(e.code(), "invalid_path");
    }
}
