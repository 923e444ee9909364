//! File transfer end to end: byte-exact round trips, trees, data volumes, a 1 GiB transfer
//! with flat server memory, and every escape a box (or an archive) can try.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zomg_sdk::{
    BoxInfo, ExecRequest, ExecResult, FileKind, ProjectName, UploadOptions, VolumeName,
};
use zomg_server::storage::Subvol;
use zomg_server::store::{MountRecord, VolumeRecord};

use zomg_server::testing::{BlockingTestServer, ChildServer};

/// `sha256sum` of a file (the tool is fast in any build profile).
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn write_random(path: &Path, bytes: u64) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {bytes} /dev/urandom > '{}'",
            path.display()
        ))
        .status()
        .expect("head");
    assert!(status.success());
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs a command in a box to completion (`POST …/exec`).
fn exec(ts: &BlockingTestServer, b: &BoxInfo, argv: &[&str]) -> ExecResult {
    let request = ExecRequest {
        command: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    ts.block_on(ts.client.exec_run(&b.project, &b.name, &request))
        .expect("exec")
}

/// A sentinel directory on the host, outside every box; [`Outside::assert_untouched`] fails
/// if anything in it changed or was added.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        // Not under /tmp: a running box has its own tmpfs there, which would hide where a
        // write landed.
        let dir = tempfile::Builder::new()
            .prefix("zomg-outside-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::write(dir.path().join("sentinel"), b"untouched").unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }

    fn assert_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["sentinel".to_owned()],
            "files appeared outside the box"
        );
        assert_eq!(std::fs::read(self.sentinel()).unwrap(), b"untouched");
        let meta = std::fs::metadata(self.sentinel()).unwrap();
        assert_eq!(meta.nlink(), 1, "the sentinel gained a hard link");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    }
}

#[test]
fn files_round_trip_byte_exact_with_modes_on_running_and_stopped_boxes() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("rt");
    let scratch = ts.scratch();
    let cases: [(&str, u64, u32); 4] = [
        ("empty", 0, 0o644),
        ("script.sh", 1000, 0o755),
        ("secret", 4096, 0o600),
        ("blob", 3 * 1024 * 1024 + 17, 0o640),
    ];
    for (name, size, mode) in cases {
        let local = scratch.join(name);
        write_random(&local, size);
        set_mode(&local, mode);
        let remote = format!("/root/in/{name}");
        let up = ts
            .block_on(
                ts.client
                    .upload_file(&ts.project, &b.name, &local, &remote, None),
            )
            .unwrap();
        assert_eq!(up.bytes, size);
        assert_eq!(up.path, remote);
        let on_host = ts.root_path(&b).join("root/in").join(name);
        assert_eq!(sha256(&on_host), sha256(&local), "{name} in the box");
        assert_eq!(mode_of(&on_host), mode, "{name} mode in the box");
        let back = scratch.join(format!("{name}.back"));
        let stat = ts
            .block_on(
                ts.client
                    .download_file(&ts.project, &b.name, &remote, &back, None),
            )
            .unwrap();
        assert_eq!(stat.kind, FileKind::File);
        assert_eq!((stat.size, stat.mode, stat.uid), (size, mode, 0));
        assert_eq!(sha256(&back), sha256(&local), "{name} round trip");
        assert_eq!(mode_of(&back), mode, "{name} mode back");
    }
    // The box sees what was written.
    let out = exec(
        &ts,
        &b,
        &[
            "sh",
            "-c",
            "stat -c %a /root/in/script.sh && /root/in/script.sh; echo rc=$?",
        ],
    );
    assert!(out.stdout.starts_with("755\n"), "{out:?}");

    ts.block_on(ts.client.stop_box(&ts.project, &b.name))
        .unwrap();
    let local = scratch.join("stopped");
    write_random(&local, 12345);
    set_mode(&local, 0o700);
    ts.block_on(
        ts.client
            .upload_file(&ts.project, &b.name, &local, "/stopped", None),
    )
    .unwrap();
    let back = scratch.join("stopped.back");
    ts.block_on(
        ts.client
            .download_file(&ts.project, &b.name, "/root/in/blob", &back, None),
    )
    .unwrap();
    assert_eq!(sha256(&back), sha256(&scratch.join("blob")));
    let stat = ts
        .block_on(ts.client.stat_file(&ts.project, &b.name, "/stopped"))
        .unwrap();
    assert_eq!((stat.size, stat.mode), (12345, 0o700));
    ts.block_on(ts.client.resume_box(&ts.project, &b.name))
        .unwrap();
    let out = exec(&ts, &b, &["stat", "-c", "%s %a", "/stopped"]);
    assert_eq!(out.stdout, "12345 700\n");
}

#[test]
fn errors_are_typed_and_name_the_path() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("errs");
    let e = ts
        .block_on(ts.client.stat_file(&ts.project, &b.name, "/nope/x"))
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(404), Some("file_not_found")),
        "{e}"
    );
    assert_eq!(e.to_string(), "/nope/x: no such file or directory");
    let e = ts
        .block_on(ts.client.upload(
            &ts.project,
            &b.name,
            "/root",
            b"x".to_vec(),
            &UploadOptions::default(),
        ))
        .unwrap_err();
    assert_eq!(e.code(), Some("is_a_directory"), "{e}");
    let e = ts
        .block_on(ts.client.upload(
            &ts.project,
            &b.name,
            "relative",
            b"x".to_vec(),
            &UploadOptions::default(),
        ))
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_path"), "{e}");
    // Kernel filesystems are neither written nor read.
    let e = ts
        .block_on(ts.client.upload(
            &ts.project,
            &b.name,
            "/proc/sys/kernel/zomg",
            b"x".to_vec(),
            &UploadOptions::default(),
        ))
        .unwrap_err();
    assert_eq!(e.code(), Some("permission_denied"), "{e}");
    let e = ts
        .block_on(ts.client.download(&ts.project, &b.name, "/proc/1/environ"))
        .unwrap_err();
    assert_eq!(e.code(), Some("permission_denied"), "{e}");
    let e = ts
        .block_on(ts.client.stat_file(&ts.project, &b.name, "/dev/null"))
        .map(|s| s.kind);
    assert_eq!(e.unwrap(), FileKind::Other);
    let e = ts
        .block_on(ts.client.download(&ts.project, &b.name, "/dev/null"))
        .unwrap_err();
    assert_eq!(e.code(), Some("not_a_file"), "{e}");
    let missing = zomg_sdk::BoxName::new("missing").unwrap();
    let e = ts
        .block_on(ts.client.stat_file(&ts.project, &missing, "/"))
        .unwrap_err();
    assert_eq!(e.code(), Some("box_not_found"), "{e}");
}

/// Describes a local tree: relative path → (kind, mode, sha256 or link target).
fn describe(root: &Path) -> BTreeMap<String, (String, u32, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.file_type().is_symlink() {
                (
                    "symlink".into(),
                    0,
                    std::fs::read_link(&p).unwrap().display().to_string(),
                )
            } else if meta.is_dir() {
                stack.push(p.clone());
                ("dir".into(), mode, String::new())
            } else {
                ("file".into(), mode, sha256(&p))
            };
            out.insert(rel, entry);
        }
    }
    out
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src/deep/er")).unwrap();
    std::fs::create_dir_all(root.join("empty/also-empty")).unwrap();
    std::fs::write(root.join("src/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(root.join("src/deep/er/data.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    set_mode(&root.join("run.sh"), 0o755);
    std::fs::write(root.join("key"), b"secret").unwrap();
    set_mode(&root.join("key"), 0o600);
    std::fs::write(root.join("empty-file"), b"").unwrap();
    set_mode(&root.join("empty"), 0o700);
    symlink("src/main.rs", root.join("rel-link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    let long = "n".repeat(120);
    std::fs::create_dir_all(root.join(&long).join(&long)).unwrap();
    std::fs::write(root.join(&long).join(&long).join("f"), b"long names").unwrap();
}

#[test]
fn trees_round_trip_with_symlinks_empty_dirs_and_modes() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("tree");
    let scratch = ts.scratch();
    let src = scratch.join("src-tree");
    make_tree(&src);
    let up = ts
        .block_on(
            ts.client
                .upload_dir(&ts.project, &b.name, &src, "/srv/tree", None),
        )
        .unwrap();
    assert_eq!((up.files, up.symlinks, up.skipped), (6, 3, 0), "{up:?}");
    let in_box = ts.root_path(&b).join("srv/tree");
    assert_eq!(describe(&in_box), describe(&src));
    // Symlinks arrived as symlinks, their targets untouched text.
    assert_eq!(
        std::fs::read_link(in_box.join("abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );

    let back = scratch.join("back");
    let s = ts
        .block_on(
            ts.client
                .download_dir(&ts.project, &b.name, "/srv/tree", &back, None),
        )
        .unwrap();
    assert_eq!((s.files, s.symlinks), (6, 3), "{s:?}");
    assert!(s.skipped.is_empty());
    assert_eq!(describe(&back), describe(&src));
    // The same on a stopped box.
    ts.block_on(ts.client.stop_box(&ts.project, &b.name))
        .unwrap();
    let back2 = scratch.join("back2");
    ts.block_on(
        ts.client
            .download_dir(&ts.project, &b.name, "/srv/tree", &back2, None),
    )
    .unwrap();
    assert_eq!(describe(&back2), describe(&src));
    ts.block_on(
        ts.client
            .upload_dir(&ts.project, &b.name, &src, "/srv/tree2", None),
    )
    .unwrap();
    assert_eq!(
        describe(&ts.root_path(&b).join("srv/tree2")),
        describe(&src)
    );
}

/// Attaches a fresh data volume at `mount` (read-write) by recording it directly, the way
/// the volumes API will; the box is restarted so that the mount exists. Returns the host
/// path of the volume.
fn attach_volume(ts: &BlockingTestServer, b: &BoxInfo, volume: &str, mount: &str) -> PathBuf {
    let service = ts.service();
    let store = service.store_backend();
    let storage = service.storage_backend();
    let id = format!("v-{}", rand_hex());
    storage.create(&Subvol::volume(&id)).unwrap();
    store
        .insert_volume(&VolumeRecord {
            id: id.clone(),
            project: b.project.clone(),
            name: VolumeName::new(volume).unwrap(),
            size_gb: None,
            owner_box_id: None,
            created_at: chrono::Utc::now(),
        })
        .unwrap();
    ts.block_on(ts.client.stop_box(&b.project, &b.name))
        .unwrap();
    let mut rec = store
        .get_box(b.project.as_str(), b.name.as_str())
        .unwrap()
        .unwrap();
    rec.data_mounts.push(MountRecord {
        volume_id: id.clone(),
        name: VolumeName::new(volume).unwrap(),
        path: mount.to_owned(),
        read_only: false,
    });
    store.update_box(&rec).unwrap();
    ts.block_on(ts.client.resume_box(&b.project, &b.name))
        .unwrap();
    storage.path(&Subvol::volume(&id))
}

fn rand_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[test]
fn writes_under_a_data_volume_land_in_the_volume_running_and_stopped() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("vol");
    let vol = attach_volume(&ts, &b, "cache", "/data");
    let root = ts.root_path(&b);

    // Running: through the live mount.
    let up = ts
        .block_on(ts.client.upload(
            &ts.project,
            &b.name,
            "/data/live.txt",
            b"live".to_vec(),
            &UploadOptions::default(),
        ))
        .unwrap();
    assert_eq!(up.volume.as_deref(), Some("cache"));
    assert_eq!(std::fs::read(vol.join("live.txt")).unwrap(), b"live");
    assert!(
        !root.join("data/live.txt").exists(),
        "the write went to the shadowed root dir"
    );
    assert_eq!(exec(&ts, &b, &["cat", "/data/live.txt"]).stdout, "live");
    // A tree into the volume, and one into / that crosses into it.
    let scratch = ts.scratch();
    let tree = scratch.join("t");
    std::fs::create_dir_all(tree.join("data")).unwrap();
    std::fs::write(tree.join("data/through-root.txt"), b"via /").unwrap();
    std::fs::write(tree.join("top.txt"), b"top").unwrap();
    ts.block_on(ts.client.upload_dir(&ts.project, &b.name, &tree, "/", None))
        .unwrap();
    assert_eq!(std::fs::read(vol.join("data/through-root.txt")).ok(), None);
    assert_eq!(
        std::fs::read(vol.join("through-root.txt")).unwrap(),
        b"via /"
    );
    assert_eq!(std::fs::read(root.join("top.txt")).unwrap(), b"top");

    // Stopped: mapped to the volume's subvolume.
    ts.block_on(ts.client.stop_box(&ts.project, &b.name))
        .unwrap();
    let up = ts
        .block_on(ts.client.upload(
            &ts.project,
            &b.name,
            "/data/sub/stopped.txt",
            b"stopped".to_vec(),
            &UploadOptions {
                mode: Some(0o600),
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(up.volume.as_deref(), Some("cache"));
    assert_eq!(
        std::fs::read(vol.join("sub/stopped.txt")).unwrap(),
        b"stopped"
    );
    assert_eq!(mode_of(&vol.join("sub/stopped.txt")), 0o600);
    assert!(
        !root.join("data/sub").exists(),
        "the write went to the root subvolume"
    );
    // Reads of a stopped box see the volume too, alone and inside a tree.
    let back = scratch.join("live.back");
    ts.block_on(
        ts.client
            .download_file(&ts.project, &b.name, "/data/live.txt", &back, None),
    )
    .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"live");
    let whole = scratch.join("whole");
    ts.block_on(
        ts.client
            .download_dir(&ts.project, &b.name, "/", &whole, None),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(whole.join("data/sub/stopped.txt")).unwrap(),
        b"stopped"
    );
    assert_eq!(std::fs::read(whole.join("top.txt")).unwrap(), b"top");
    ts.block_on(ts.client.upload_dir(&ts.project, &b.name, &tree, "/", None))
        .unwrap();
    ts.block_on(ts.client.resume_box(&ts.project, &b.name))
        .unwrap();
    assert_eq!(
        exec(&ts, &b, &["cat", "/data/sub/stopped.txt"]).stdout,
        "stopped"
    );
}

#[test]
fn dotdot_and_absolute_symlinks_resolve_inside_the_box() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("esc");
    let outside = Outside::new();
    let root = ts.root_path(&b);
    let c = &ts.client;
    let host_passwd = std::fs::read("/etc/passwd").unwrap();

    // `..` stops at the box's `/`.
    let escape = format!("/../../../..{}/dotdot", outside.path().display());
    let up = ts
        .block_on(c.upload(
            &ts.project,
            &b.name,
            &escape,
            b"x".to_vec(),
            &UploadOptions::default(),
        ))
        .unwrap();
    assert_eq!(up.path, format!("{}/dotdot", outside.path().display()));
    assert!(
        root.join(outside.path().strip_prefix("/").unwrap())
            .join("dotdot")
            .exists()
    );
    let got = ts
        .block_on(async {
            let d = c
                .download(&ts.project, &b.name, "/../../../../etc/passwd")
                .await?;
            let mut buf = Vec::new();
            d.write_to(&mut buf, None).await.map(|_| buf)
        })
        .unwrap();
    assert_eq!(got, b"root:x:0:0:root:/root:/bin/sh\n");
    assert_ne!(got, host_passwd);

    // Symlinks planted in the box, pointing at host paths.
    symlink("/etc", root.join("hostetc")).unwrap();
    symlink(outside.path(), root.join("outside-dir")).unwrap();
    symlink(outside.sentinel(), root.join("outside-file")).unwrap();
    symlink("../../../../../../../..", root.join("up")).unwrap();
    ts.block_on(c.upload(
        &ts.project,
        &b.name,
        "/hostetc/zomg-planted",
        b"x".to_vec(),
        &UploadOptions::default(),
    ))
    .unwrap();
    assert!(!Path::new("/etc/zomg-planted").exists());
    assert!(root.join("etc/zomg-planted").exists());
    // Through a link to a host directory: lands in the box's copy of that path.
    ts.block_on(c.upload(
        &ts.project,
        &b.name,
        "/outside-dir/new",
        b"x".to_vec(),
        &UploadOptions::default(),
    ))
    .unwrap();
    ts.block_on(c.upload(
        &ts.project,
        &b.name,
        "/up/tmp/up-new",
        b"x".to_vec(),
        &UploadOptions::default(),
    ))
    .unwrap();
    assert!(
        root.join("tmp/up-new").exists()
            || exec(&ts, &b, &["ls", "/tmp/up-new"]).exit_code == Some(0)
    );
    // A link to the host sentinel is replaced, never written through.
    ts.block_on(c.upload(
        &ts.project,
        &b.name,
        "/outside-file",
        b"overwritten".to_vec(),
        &UploadOptions::default(),
    ))
    .unwrap();
    assert!(
        !std::fs::symlink_metadata(root.join("outside-file"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Reads through the same links see the box, or nothing.
    let e = ts
        .block_on(c.download(&ts.project, &b.name, "/outside-dir/sentinel"))
        .unwrap_err();
    assert_eq!(e.code(), Some("file_not_found"), "{e}");
    let stat = ts
        .block_on(c.stat_file(&ts.project, &b.name, "/hostetc/passwd"))
        .unwrap();
    assert_eq!(stat.size, 30, "the box's passwd, not the host's");
    // A tree download of a directory holding those links archives them as links.
    let scratch = ts.scratch();
    ts.block_on(c.download_dir(&ts.project, &b.name, "/", &scratch.join("all"), None))
        .unwrap();
    assert_eq!(
        std::fs::read_link(scratch.join("all/outside-dir")).unwrap(),
        outside.path()
    );
    outside.assert_untouched();
}

/// A tar archive built by hand, with names `tar::Builder` refuses to write.
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn entry(mut self, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        if matches!(kind, tar::EntryType::Char) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

#[test]
fn hostile_archives_cannot_leave_their_directory() {
    use tar::EntryType as T;
    let ts = BlockingTestServer::start();
    let b = ts.create_box("tar");
    let outside = Outside::new();
    let root = ts.root_path(&b);
    let c = &ts.client;
    let put = |dir: &str, bytes: Vec<u8>| {
        ts.block_on(c.upload_tar(&ts.project, &b.name, dir, bytes, None))
    };
    std::fs::create_dir_all(root.join("srv")).unwrap();
    std::fs::write(root.join("srv/keep"), b"keep").unwrap();

    // `..` anywhere fails the upload and writes nothing above the directory.
    let e = put(
        "/srv/a",
        RawTar::new()
            .entry("../climb", T::Regular, None, b"x")
            .finish(),
    )
    .unwrap_err();
    assert_eq!(e.code(), Some("invalid_archive"), "{e}");
    assert!(!root.join("srv/climb").exists());
    let e = put(
        "/srv/a",
        RawTar::new()
            .entry("ok/../../../climb2", T::Regular, None, b"x")
            .finish(),
    )
    .unwrap_err();
    assert_eq!(e.code(), Some("invalid_archive"), "{e}");

    // Absolute names are made relative to the directory.
    let abs = format!("{}/abs", outside.path().display());
    put(
        "/srv/b",
        RawTar::new().entry(&abs, T::Regular, None, b"abs").finish(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(root.join("srv/b").join(abs.trim_start_matches('/'))).unwrap(),
        b"abs"
    );

    // A symlink the archive plants, then a file written through it: the link resolves
    // inside the directory, where its host target does not exist.
    let target = outside.path().display().to_string();
    let e = put(
        "/srv/c",
        RawTar::new()
            .entry("link", T::Symlink, Some(&target), b"")
            .entry("link/pwned", T::Regular, None, b"pwned")
            .finish(),
    )
    .unwrap_err();
    assert_eq!(e.code(), Some("file_not_found"), "{e}");
    assert_eq!(
        std::fs::read_link(root.join("srv/c/link")).unwrap(),
        outside.path()
    );
    // An absolute link whose target exists inside the directory: written there, not in the
    // box's (or the host's) /etc.
    let r = put(
        "/srv/c2",
        RawTar::new()
            .entry("etc-copy/", T::Directory, None, b"")
            .entry("etc", T::Symlink, Some("/etc-copy"), b"")
            .entry("etc/pwned", T::Regular, None, b"pwned")
            .finish(),
    )
    .unwrap();
    assert_eq!((r.symlinks, r.files), (1, 1));
    assert!(!Path::new("/etc/pwned").exists());
    assert!(!Path::new("/etc-copy").exists());
    assert!(
        !root.join("etc/pwned").exists(),
        "escaped the directory into the box's /etc"
    );
    assert!(!root.join("etc-copy").exists());
    assert_eq!(
        std::fs::read(root.join("srv/c2/etc-copy/pwned")).unwrap(),
        b"pwned"
    );

    // Hard links to files outside the directory resolve inside it (and fail: no such file).
    for link in [
        outside.sentinel().display().to_string(),
        "/srv/keep".to_owned(),
    ] {
        let e = put(
            "/srv/d",
            RawTar::new()
                .entry("hl", T::Link, Some(&link), b"")
                .finish(),
        )
        .unwrap_err();
        assert_eq!(e.code(), Some("file_not_found"), "{link}: {e}");
    }
    assert_eq!(std::fs::metadata(root.join("srv/keep")).unwrap().nlink(), 1);
    // A hard link inside the archive works.
    let r = put(
        "/srv/e",
        RawTar::new()
            .entry("f", T::Regular, None, b"data")
            .entry("g", T::Link, Some("f"), b"")
            .finish(),
    )
    .unwrap();
    assert_eq!(r.hard_links, 1);
    assert_eq!(std::fs::metadata(root.join("srv/e/g")).unwrap().nlink(), 2);

    // Device nodes are skipped and reported.
    let r = put(
        "/srv/f",
        RawTar::new()
            .entry("null", T::Char, None, b"")
            .entry("fifo", T::Fifo, None, b"")
            .finish(),
    )
    .unwrap();
    assert_eq!(
        (r.skipped, r.skipped_examples.clone()),
        (2, vec!["null".to_owned(), "fifo".to_owned()])
    );
    assert!(!root.join("srv/f/null").exists());
    outside.assert_untouched();
}

#[test]
fn swapping_a_directory_for_a_symlink_during_transfers_never_escapes() {
    let ts = BlockingTestServer::start();
    let b = ts.create_box("swap");
    let outside = Outside::new();
    let root = ts.root_path(&b);
    let swap = root.join("swap");
    std::fs::create_dir(&swap).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, swap, target) = (stop.clone(), swap.clone(), outside.path().to_owned());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_dir_all(&swap).or_else(|_| std::fs::remove_file(&swap));
                let _ = symlink(&target, &swap);
                std::thread::yield_now();
                let _ = std::fs::remove_file(&swap);
                let _ = std::fs::create_dir(&swap);
                flips += 1;
            }
            flips
        })
    };
    let scratch = ts.scratch();
    let tree = scratch.join("t");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/f"), b"tree").unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let (mut ok, mut failed) = (0, 0);
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        let c = &ts.client;
        let r1 = ts.block_on(c.upload(
            &ts.project,
            &b.name,
            &format!("/swap/f{i}"),
            b"x".to_vec(),
            &UploadOptions::default(),
        ));
        let r2 = ts.block_on(c.upload(
            &ts.project,
            &b.name,
            &format!("/swap/sub{i}/g"),
            b"y".to_vec(),
            &UploadOptions::default(),
        ));
        let r3 = ts.block_on(c.upload_dir(&ts.project, &b.name, &tree, "/swap", None));
        let r4 = ts.block_on(c.download_dir(
            &ts.project,
            &b.name,
            "/swap",
            &scratch.join(format!("dl{i}")),
            None,
        ));
        for r in [r1.is_ok(), r2.is_ok(), r3.is_ok(), r4.is_ok()] {
            if r { ok += 1 } else { failed += 1 }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    eprintln!("{ok} transfers succeeded, {failed} failed, {flips} flips");
    assert!(
        flips > 10 && ok > 0,
        "the race did not run: {flips} flips, {ok} ok"
    );
    outside.assert_untouched();
}

/// `(VmRSS, VmHWM)` of a process in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak (`VmHWM`) of a process to its current RSS.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

#[test]
fn one_gib_round_trip_is_exact_and_keeps_server_memory_flat() {
    const GIB: u64 = 1 << 30;
    let dir = tempfile::Builder::new()
        .prefix("zomg-e2e-child-")
        .tempdir()
        .unwrap();
    let server = ChildServer::start(Path::new(env!("CARGO_BIN_EXE_zomg-server")), dir.path(), 4);
    let pid = server.pid();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let project = ProjectName::new("default").unwrap();
    let b = rt
        .block_on(client.create_box(
            &project,
            &zomg_sdk::CreateBox {
                name: "big".into(),
                ..Default::default()
            },
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big");
    write_random(&local, GIB);
    // Warm up: allocator arenas and connection pools exist before the baseline.
    let small = dir.path().join("small");
    write_random(&small, 4 << 20);
    rt.block_on(client.upload_file(&project, &b.name, &small, "/small", None))
        .unwrap();
    rt.block_on(client.download_file(
        &project,
        &b.name,
        "/small",
        &dir.path().join("small.back"),
        None,
    ))
    .unwrap();

    let (base_rss, _) = memory_kib(pid);
    reset_peak(pid);
    let t = Instant::now();
    let up = rt
        .block_on(client.upload_file(&project, &b.name, &local, "/big", None))
        .unwrap();
    let up_secs = t.elapsed().as_secs_f64();
    assert_eq!(up.bytes, GIB);
    let (_, up_peak) = memory_kib(pid);

    reset_peak(pid);
    let back = dir.path().join("big.back");
    let t = Instant::now();
    let stat = rt
        .block_on(client.download_file(&project, &b.name, "/big", &back, None))
        .unwrap();
    let down_secs = t.elapsed().as_secs_f64();
    let (_, down_peak) = memory_kib(pid);
    assert_eq!(stat.size, GIB);
    eprintln!(
        "1 GiB: upload {:.0} MB/s, download {:.0} MB/s; server RSS {} MiB, peak +{} MiB up, +{} MiB down",
        1024.0 / up_secs,
        1024.0 / down_secs,
        base_rss / 1024,
        up_peak.saturating_sub(base_rss) / 1024,
        down_peak.saturating_sub(base_rss) / 1024
    );
    assert_eq!(sha256(&back), sha256(&local));
    for (what, peak) in [("upload", up_peak), ("download", down_peak)] {
        let growth = peak.saturating_sub(base_rss);
        assert!(
            growth < 64 * 1024,
            "server memory grew by {growth} KiB during the {what}"
        );
    }
    rt.block_on(client.delete_box(&project, &b.name, true))
        .unwrap();
}
