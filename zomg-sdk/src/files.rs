//! File transfer with a box (SPEC §6): streaming downloads and uploads of single files and
//! of directory trees (tar streams), with their metadata.
//!
//! Nothing is buffered whole: uploads read their source as the connection takes it,
//! downloads are written as they arrive, so memory stays flat whatever the size. Every
//! transfer is checked end to end — a download shorter than announced, an archive that
//! breaks off, or a server that stored fewer bytes than were sent is an error, never a
//! silent success.
//!
//! Local trees are written with the `tar` crate's `unpack_in`, which refuses `..`, absolute
//! names and writes through symlinks planted by the archive; device nodes, FIFOs and
//! sockets in an archive are skipped and counted.

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::file_types::{FileKind, FileStat, TAR_CONTENT_TYPE, UploadResult};
use crate::names::{BoxName, ProjectName};

/// Size of the chunks uploads are read in.
const CHUNK: usize = 256 * 1024;

type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A progress callback: called with the number of bytes moved since its previous call.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(u64) + Send + Sync>);

impl Progress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn add(&self, n: u64) {
        (self.0)(n);
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Counts and reports the bytes of a stream as they pass.
fn counted<S>(stream: S, counter: Arc<AtomicU64>, progress: Option<Progress>) -> ByteStream
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    Box::pin(stream.inspect_ok(move |chunk| {
        let n = chunk.len() as u64;
        counter.fetch_add(n, Ordering::Relaxed);
        if let Some(p) = &progress {
            p.add(n);
        }
    }))
}

/// The body of an upload: bytes in memory, an `AsyncRead`, or a stream of chunks.
pub struct UploadBody {
    stream: ByteStream,
}

impl fmt::Debug for UploadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadBody").finish_non_exhaustive()
    }
}

impl UploadBody {
    /// Streams from an async reader, in 256 KiB chunks.
    pub fn from_reader(reader: impl AsyncRead + Send + 'static) -> Self {
        Self {
            stream: Box::pin(ReaderStream::with_capacity(reader, CHUNK)),
        }
    }

    /// Streams from chunks.
    pub fn from_stream(stream: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Self {
        Self {
            stream: Box::pin(stream),
        }
    }
}

impl From<Bytes> for UploadBody {
    fn from(b: Bytes) -> Self {
        Self::from_stream(futures_util::stream::iter([Ok(b)]))
    }
}

impl From<Vec<u8>> for UploadBody {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<&'static [u8]> for UploadBody {
    fn from(v: &'static [u8]) -> Self {
        Bytes::from_static(v).into()
    }
}

impl From<String> for UploadBody {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

/// Settings of a single-file upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Permission bits; default: those of the file replaced, else 0644.
    pub mode: Option<u32>,
    /// Modification time, seconds since the Unix epoch; default: now.
    pub mtime: Option<i64>,
    /// Called as bytes are sent.
    pub progress: Option<Progress>,
}

impl PartialEq for Progress {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Progress {}

/// A download in progress: the metadata of the path, then its bytes — a file's content, or
/// for a directory a tar stream of its contents.
#[derive(Debug)]
pub struct Download {
    stat: FileStat,
    response: reqwest::Response,
    url: String,
}

impl Download {
    /// Metadata of the path (type, size, mode, owner, mtime).
    pub fn stat(&self) -> &FileStat {
        &self.stat
    }

    /// Whether the body is a tar stream (the path is a directory).
    pub fn is_tar(&self) -> bool {
        self.stat.kind == FileKind::Directory
    }

    /// The body as a stream of chunks. A file body that ends short of its size is an error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let url = self.url;
        self.response.bytes_stream().map_err(move |e| Error::Http {
            url: url.clone(),
            source: e,
        })
    }

    /// The body as an `AsyncRead`.
    pub fn into_reader(self) -> impl AsyncRead + Send + Unpin + 'static {
        StreamReader::new(self.into_stream().map_err(io::Error::other))
    }

    /// Copies the body into `out`, calling `progress` as it goes; returns the byte count.
    pub async fn write_to(
        self,
        out: &mut (impl AsyncWrite + Unpin),
        progress: Option<Progress>,
    ) -> Result<u64> {
        let expected = (self.stat.kind == FileKind::File).then_some(self.stat.size);
        let path = self.stat.path.clone();
        let mut stream = Box::pin(self.into_stream());
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::io("writing the download", e))?;
            total += chunk.len() as u64;
            if let Some(p) = &progress {
                p.add(chunk.len() as u64);
            }
        }
        out.flush()
            .await
            .map_err(|e| Error::io("writing the download", e))?;
        if let Some(size) = expected {
            if total != size {
                return Err(Error::Protocol(format!(
                    "download of {path} ended after {total} of {size} bytes"
                )));
            }
        }
        Ok(total)
    }
}

/// What [`Client::download_dir`] wrote locally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Bytes of file content.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links.
    pub hard_links: u64,
    /// Entries not written: device nodes, FIFOs, sockets, names with `..`.
    pub skipped: Vec<String>,
}

impl Client {
    fn files_url(
        &self,
        project: &ProjectName,
        name: &BoxName,
        tail: &[&str],
        query: &[(&str, String)],
    ) -> url::Url {
        let mut segs = vec!["v1", "projects", project.as_str(), "boxes", name.as_str()];
        segs.extend_from_slice(tail);
        let mut url = self.url(&segs);
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
        url
    }

    /// `GET …/files/stat?path=`: metadata of a path in a box (a final symlink is followed).
    pub async fn stat_file(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
    ) -> Result<FileStat> {
        let url = self.files_url(project, name, &["files", "stat"], &[("path", path.into())]);
        let response = self.send(self.request_url(Method::GET, url)).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::Protocol(format!("reading the answer: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::Protocol(format!("unexpected answer from the server: {e}")))
    }

    /// `GET …/files?path=`: starts downloading a file, or a directory as a tar stream.
    pub async fn download(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
    ) -> Result<Download> {
        let url = self.files_url(project, name, &["files"], &[("path", path.into())]);
        let url_text = url.to_string();
        let response = self.send(self.request_url(Method::GET, url)).await?;
        let mut stat = FileStat::from_headers(path, response.headers()).map_err(Error::Protocol)?;
        stat.path = path.to_owned();
        Ok(Download {
            stat,
            response,
            url: url_text,
        })
    }

    /// `PUT …/files?path=`: writes `body` to the file `path` in the box, atomically, creating
    /// missing parent directories. Fails if the server stored a different number of bytes
    /// than were sent.
    pub async fn upload(
        &self,
        project: &ProjectName,
        name: &BoxName,
        path: &str,
        body: impl Into<UploadBody>,
        options: &UploadOptions,
    ) -> Result<UploadResult> {
        let mut query = vec![("path", path.to_owned())];
        if let Some(m) = options.mode {
            query.push(("mode", crate::file_types::format_mode(m)));
        }
        if let Some(t) = options.mtime {
            query.push(("mtime", t.to_string()));
        }
        let url = self.files_url(project, name, &["files"], &query);
        let sent = Arc::new(AtomicU64::new(0));
        let stream = counted(body.into().stream, sent.clone(), options.progress.clone());
        let request = self
            .request_url(Method::PUT, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        let result: UploadResult = decode(self.send(request).await?).await?;
        let sent = sent.load(Ordering::Relaxed);
        if result.bytes != sent {
            return Err(Error::Protocol(format!(
                "the server stored {} bytes of {path} but {sent} were sent",
                result.bytes
            )));
        }
        Ok(result)
    }

    /// `PUT …/files?path=` with a tar body: extracts the archive into the directory `dir`
    /// of the box (created if missing).
    pub async fn upload_tar(
        &self,
        project: &ProjectName,
        name: &BoxName,
        dir: &str,
        body: impl Into<UploadBody>,
        progress: Option<Progress>,
    ) -> Result<UploadResult> {
        let url = self.files_url(project, name, &["files"], &[("path", dir.to_owned())]);
        let stream = counted(body.into().stream, Arc::default(), progress);
        let request = self
            .request_url(Method::PUT, url)
            .header(CONTENT_TYPE, TAR_CONTENT_TYPE)
            .body(reqwest::Body::wrap_stream(stream));
        decode(self.send(request).await?).await
    }

    /// Uploads the local file `local` to `remote`, keeping its permission bits and mtime.
    pub async fn upload_file(
        &self,
        project: &ProjectName,
        name: &BoxName,
        local: &Path,
        remote: &str,
        progress: Option<Progress>,
    ) -> Result<UploadResult> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!(
                "{} is not a regular file",
                local.display()
            )));
        }
        let options = UploadOptions {
            mode: Some(meta.permissions().mode() & 0o7777),
            mtime: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            progress,
        };
        self.upload(
            project,
            name,
            remote,
            UploadBody::from_reader(file),
            &options,
        )
        .await
    }

    /// Uploads the contents of the local directory `local` into the directory `remote`
    /// (created if missing) as one tar stream: modes, mtimes and symlinks are kept.
    pub async fn upload_dir(
        &self,
        project: &ProjectName,
        name: &BoxName,
        local: &Path,
        remote: &str,
        progress: Option<Progress>,
    ) -> Result<UploadResult> {
        let meta = tokio::fs::metadata(local)
            .await
            .map_err(|e| Error::io(format!("cannot read {}", local.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is not a directory",
                local.display()
            )));
        }
        let body = UploadBody::from_stream(tar_dir(local.to_owned()));
        self.upload_tar(project, name, remote, body, progress).await
    }

    /// Downloads the file `remote` to the local path `local`, atomically (temporary file
    /// beside it, then rename), with its permission bits and mtime.
    pub async fn download_file(
        &self,
        project: &ProjectName,
        name: &BoxName,
        remote: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<FileStat> {
        let download = self.download(project, name, remote).await?;
        let stat = download.stat().clone();
        if stat.kind != FileKind::File {
            return Err(Error::Invalid(format!("{remote} is a {}", stat.kind)));
        }
        let tmp = temp_path(local);
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
            download.write_to(&mut file, progress).await?;
            let file = file.into_std().await;
            let mtime = UNIX_EPOCH + Duration::from_secs(stat.mtime.max(0) as u64);
            let mode = stat.mode;
            tokio::task::spawn_blocking(move || -> io::Result<()> {
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                file.set_modified(mtime)?;
                file.sync_all()
            })
            .await
            .map_err(|e| Error::io("finishing the download", io::Error::other(e)))?
            .map_err(|e| Error::io(format!("cannot write {}", local.display()), e))?;
            tokio::fs::rename(&tmp, local)
                .await
                .map_err(|e| Error::io(format!("cannot write {}", local.display()), e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| stat)
    }

    /// Downloads the directory `remote` into the local directory `local` (created if
    /// missing, with the remote directory's mode): files, directories, symlinks and hard
    /// links with their modes and mtimes.
    pub async fn download_dir(
        &self,
        project: &ProjectName,
        name: &BoxName,
        remote: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<ExtractSummary> {
        let download = self.download(project, name, remote).await?;
        if download.stat().kind != FileKind::Directory {
            return Err(Error::Invalid(format!("{remote} is not a directory")));
        }
        let mode = download.stat().mode;
        let counter = Arc::new(AtomicU64::new(0));
        let stream = counted(
            download.into_stream().map_err(io::Error::other),
            counter,
            progress,
        );
        extract_tar(StreamReader::new(stream), local.to_owned(), Some(mode)).await
    }
}

async fn decode<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let body = response
        .bytes()
        .await
        .map_err(|e| Error::Protocol(format!("reading the answer: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| {
        Error::Protocol(format!(
            "unexpected answer from the server ({e}): {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    })
}

/// `dir/.name.zomg-<random>` next to `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = std::process::id() as u64
        ^ (std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64));
    path.with_file_name(format!(".{name}.zomg-{nonce:x}"))
}

/// A tar stream of the contents of the local directory `dir` (entries named relative to
/// it; symlinks stored as symlinks), built on a blocking thread in bounded chunks.
pub fn tar_dir(dir: PathBuf) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static {
    writer_stream(move |out| {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", &dir)
            .and_then(|()| builder.finish())
            .map_err(|e| io::Error::new(e.kind(), format!("archiving {}: {e}", dir.display())))
    })
}

/// Turns blocking writes into a byte stream: runs `produce` on a blocking thread with a
/// writer whose bytes come out of the returned stream in chunks of up to 256 KiB. The
/// writer blocks while the consumer lags (a few chunks in flight), so memory stays bounded
/// for any size. An error of `produce` ends the stream with that error, so the consumer sees
/// a broken transfer, never a short one; once the consumer is gone, writes fail with
/// `BrokenPipe` and the stream just ends. Useful to upload an archive built with a
/// blocking library ([`tar_dir`] is one).
pub fn writer_stream<F>(
    produce: F,
) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static
where
    F: FnOnce(&mut dyn io::Write) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
        };
        let result = produce(&mut writer).and_then(|()| io::Write::flush(&mut writer));
        if let Err(e) = result {
            if e.kind() != io::ErrorKind::BrokenPipe {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Extracts a tar stream into the local directory `dir` (created if missing; given `mode`
/// at the end). Only regular files, directories, symlinks and hard links are written, each
/// through `unpack_in`; directory modes are applied last so read-only directories can be
/// filled.
pub async fn extract_tar(
    reader: impl AsyncRead + Send + Unpin + 'static,
    dir: PathBuf,
    mode: Option<u32>,
) -> Result<ExtractSummary> {
    let reader = SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || extract_blocking(reader, &dir, mode))
        .await
        .map_err(|e| Error::io("extracting", io::Error::other(e)))?
}

fn extract_blocking(
    reader: impl io::Read,
    dir: &Path,
    mode: Option<u32>,
) -> Result<ExtractSummary> {
    let fail = |e: io::Error| Error::io(format!("extracting into {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut archive = tar::Archive::new(reader);
    let mut summary = ExtractSummary::default();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let entry_mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let size = entry.size();
        use tar::EntryType as T;
        let known = matches!(
            kind,
            T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link
        );
        if !known {
            if !matches!(
                kind,
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
            ) {
                summary.skipped.push(name);
            }
            continue;
        }
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        let unpacked = entry
            .unpack_in(dir)
            .map_err(|e| Error::io(format!("extracting {name} into {}", dir.display()), e))?;
        if !unpacked {
            summary.skipped.push(name);
            continue;
        }
        match kind {
            T::Directory => {
                let path = local_entry_path(dir, &name);
                if path != dir {
                    // Writable while it is filled; its own mode comes last.
                    std::fs::set_permissions(
                        &path,
                        std::fs::Permissions::from_mode(entry_mode | 0o700),
                    )
                    .map_err(fail)?;
                    dir_modes.push((path, entry_mode));
                }
                summary.directories += 1;
            }
            T::Symlink => summary.symlinks += 1,
            T::Link => summary.hard_links += 1,
            _ => {
                summary.files += 1;
                summary.bytes += size;
            }
        }
    }
    for (path, m) in dir_modes.iter().rev() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*m)).map_err(fail)?;
    }
    if let Some(m) = mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).map_err(fail)?;
    }
    Ok(summary)
}

/// Where `unpack_in` put an entry: `dir` joined with the name's normal components.
fn local_entry_path(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.to_path_buf();
    for c in Path::new(name).components() {
        if let Component::Normal(part) = c {
            path.push(part);
        }
    }
    path
}

/// A `Write` that sends fixed-size chunks into a channel, blocking while it is full.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_trees_round_trip_through_tar() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        std::fs::create_dir_all(root.join("a/empty")).unwrap();
        std::fs::write(root.join("a/x.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("a/x.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::create_dir(root.join("ro")).unwrap();
        std::fs::write(root.join("ro/f"), b"r").unwrap();
        std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let out = dst.path().join("out");
        let stream = tar_dir(root.to_owned());
        let summary = extract_tar(StreamReader::new(stream), out.clone(), Some(0o750))
            .await
            .unwrap();
        assert_eq!(summary.files, 2);
        assert_eq!(summary.symlinks, 1);
        assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
        assert_eq!(std::fs::read(out.join("a/x.sh")).unwrap(), b"#!/bin/sh\n");
        let mode = |p: &str| {
            std::fs::symlink_metadata(out.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a/x.sh"), 0o755);
        assert_eq!(mode("ro"), 0o555);
        assert_eq!(mode(""), 0o750);
        assert!(out.join("a/empty").is_dir());
        assert_eq!(
            std::fs::read_link(out.join("abs")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(out.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn hostile_archives_stay_in_the_directory() {
        // An archive a box could send: a symlink out, then a file through it; `..`; a
        // device node.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        let outside = tempfile::tempdir().unwrap();
        b.append_link(&mut h, "escape", outside.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // append_data refuses these names, so write them raw.
        h.as_old_mut().name[..10].copy_from_slice(b"escape/pwn");
        h.set_cksum();
        b.append(&h, &b"bad"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_old_mut().name[..9].copy_from_slice(b"../climb1");
        h.set_cksum();
        b.append(&h, &b"bad"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Char);
        h.set_path("null").unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let bytes = b.into_inner().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let result = extract_tar(io::Cursor::new(bytes), dst.path().join("d"), None).await;
        // Whatever the outcome, nothing was written outside.
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!dst.path().join("climb1").exists());
        if let Ok(s) = result {
            assert!(s.skipped.iter().any(|n| n == "null"), "{s:?}");
        }
    }
}
