//! Tests against a real btrfs: each test formats and loop-mounts its own small image in a
//! tempdir (about 0.1 s) and unmounts it in `Drop`, so a failing test leaks no mount and no
//! loop device. They need root, `mkfs.btrfs` and loop devices, and fail saying so otherwise.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::storage::{Storage, StorageError, Subvol, SubvolKind};
use crate::testing::require_btrfs_prerequisites;

const MIB: u64 = 1024 * 1024;
const IMAGE_SIZE: u64 = 512 * MIB;

/// A loop-mounted btrfs in a tempdir, unmounted (and its loop device released) on drop.
struct TestFs {
    dir: tempfile::TempDir,
    storage: BtrfsStorage,
}

impl TestFs {
    fn new() -> Self {
        require_btrfs_prerequisites();
        let dir = tempfile::tempdir().expect("tempdir");
        let storage =
            BtrfsStorage::open_or_create_loop(dir.path(), IMAGE_SIZE).expect("loop-mounted btrfs");
        Self { dir, storage }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestFs {
    fn drop(&mut self) {
        if let Err(e) = BtrfsStorage::unmount_loop(self.dir.path()) {
            // Still detach it, so the loop device goes away once the last user closes it.
            let mount_point = self.dir.path().join(MOUNT_DIR);
            let _ = rustix::mount::unmount(&mount_point, rustix::mount::UnmountFlags::DETACH);
            eprintln!("cleanup of {}: {e}", self.dir.path().display());
        }
    }
}

/// Writes `bytes` of data to `path` in 1 MiB chunks and fsyncs, returning the first error.
fn write_bytes(path: &Path, bytes: u64) -> io::Result<()> {
    let mut file = File::create(path)?;
    let chunk = vec![0xa5u8; MIB as usize];
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min((bytes - written) as usize);
        file.write_all(&chunk[..n])?;
        written += n as u64;
    }
    file.sync_all()
}

fn os_error(e: &StorageError) -> Option<i32> {
    match e {
        StorageError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

#[test]
fn create_exists_and_refuses_duplicates() {
    let fs = TestFs::new();
    let s = &fs.storage;
    let vol = Subvol::volume("v1");
    assert!(!s.exists(&vol));
    s.create(&vol).unwrap();
    assert!(s.exists(&vol));
    assert_eq!(
        s.path(&vol),
        fs.data_dir()
            .canonicalize()
            .unwrap()
            .join("btrfs/volumes/v1")
    );
    assert!(
        matches!(s.create(&vol), Err(StorageError::AlreadyExists(name)) if name == "volumes/v1")
    );

    // Bases get their alias directory as a plain directory.
    let base = Subvol::base("debian", "12");
    s.create(&base).unwrap();
    assert!(s.exists(&base));
    assert!(!s.exists(&Subvol::base("debian", "13")));
    assert!(matches!(
        state(&s.root().join("bases/debian")),
        Ok(State::Other)
    ));

    for bad in [
        Subvol::volume(""),
        Subvol::volume(".."),
        Subvol::volume("a/b"),
        Subvol::root("../bases"),
        Subvol::base("debian", "12/x"),
        Subvol::base("..", "12"),
        Subvol {
            kind: SubvolKind::Base,
            name: "debian".into(),
        },
    ] {
        let err = s.create(&bad).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidName { .. }),
            "{bad}: {err}"
        );
        assert!(!s.exists(&bad));
    }

    // A plain directory where a subvolume belongs is reported, not deleted.
    fs::create_dir(s.root().join("roots/plain")).unwrap();
    let plain = Subvol::root("plain");
    assert!(!s.exists(&plain));
    assert!(matches!(
        s.delete(&plain),
        Err(StorageError::NotSubvolume(_))
    ));
    assert!(matches!(
        s.create(&plain),
        Err(StorageError::AlreadyExists(_))
    ));
}

#[test]
fn snapshots_are_independent_and_read_only_ones_reject_writes() {
    let fs = TestFs::new();
    let s = &fs.storage;
    let vol = Subvol::volume("src");
    s.create(&vol).unwrap();
    fs::write(s.path(&vol).join("a"), b"original").unwrap();

    // A writable snapshot: changes on either side stay on that side.
    let root = Subvol::root("box1");
    s.snapshot(&vol, &root, false).unwrap();
    assert!(!s.is_read_only(&root).unwrap());
    assert_eq!(fs::read(s.path(&root).join("a")).unwrap(), b"original");
    fs::write(s.path(&root).join("a"), b"changed in snapshot").unwrap();
    fs::write(s.path(&root).join("b"), b"new in snapshot").unwrap();
    assert_eq!(fs::read(s.path(&vol).join("a")).unwrap(), b"original");
    assert!(!s.path(&vol).join("b").exists());
    fs::write(s.path(&vol).join("a"), b"changed in source").unwrap();
    assert_eq!(
        fs::read(s.path(&root).join("a")).unwrap(),
        b"changed in snapshot"
    );

    // A read-only snapshot cannot be written, and says so.
    let checkpoint = Subvol::checkpoint("c1");
    s.snapshot(&root, &checkpoint, true).unwrap();
    assert!(s.is_read_only(&checkpoint).unwrap());
    let err = fs::write(s.path(&checkpoint).join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = OpenOptions::new()
        .write(true)
        .open(s.path(&checkpoint).join("a"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // A base snapshotted read-only, then a box root from it.
    let base = Subvol::base("alpine", "3.20");
    s.snapshot(&root, &base, true).unwrap();
    let root2 = Subvol::root("box2");
    s.snapshot(&base, &root2, false).unwrap();
    assert!(!s.is_read_only(&root2).unwrap());
    fs::write(s.path(&root2).join("c"), b"ok").unwrap();

    // Flags can be flipped both ways.
    s.set_read_only(&root2, true).unwrap();
    assert!(s.is_read_only(&root2).unwrap());
    assert!(fs::write(s.path(&root2).join("d"), b"x").is_err());
    s.set_read_only(&root2, true).unwrap();
    s.set_read_only(&root2, false).unwrap();
    fs::write(s.path(&root2).join("d"), b"x").unwrap();

    // Rules: existing destination, missing source.
    assert!(matches!(
        s.snapshot(&vol, &root, false),
        Err(StorageError::AlreadyExists(name)) if name == "roots/box1"
    ));
    assert!(matches!(
        s.snapshot(&Subvol::volume("nope"), &Subvol::root("box3"), false),
        Err(StorageError::NotFound(name)) if name == "volumes/nope"
    ));
    assert!(!s.exists(&Subvol::root("box3")));
    assert!(matches!(
        s.is_read_only(&Subvol::root("box3")),
        Err(StorageError::NotFound(_))
    ));
}

#[test]
fn delete_is_idempotent_and_handles_read_only_and_nested_subvolumes() {
    let fs = TestFs::new();
    let s = &fs.storage;

    let vol = Subvol::volume("plain");
    s.create(&vol).unwrap();
    fs::write(s.path(&vol).join("f"), b"x").unwrap();
    s.delete(&vol).unwrap();
    assert!(!s.exists(&vol));
    assert!(!s.path(&vol).exists());
    s.delete(&vol).unwrap();
    s.delete(&Subvol::root("never-existed")).unwrap();

    // Read-only, as bases and checkpoints are.
    let src = Subvol::volume("src");
    s.create(&src).unwrap();
    let ro = Subvol::checkpoint("ro");
    s.snapshot(&src, &ro, true).unwrap();
    s.delete(&ro).unwrap();
    assert!(!s.path(&ro).exists());

    // A box that made its own subvolumes, some read-only, nested two deep, inside a
    // read-only root: everything goes.
    let root = Subvol::root("docker-in-box");
    s.create(&root).unwrap();
    let top = s.path(&root);
    fs::create_dir_all(top.join("var/lib/docker")).unwrap();
    let dir = open_dir(&top.join("var/lib/docker")).unwrap();
    ioctl::subvol_create(dir.as_fd(), OsStr::new("layer1")).unwrap();
    let layer1 = open_dir(&top.join("var/lib/docker/layer1")).unwrap();
    fs::create_dir(top.join("var/lib/docker/layer1/sub")).unwrap();
    let sub = open_dir(&top.join("var/lib/docker/layer1/sub")).unwrap();
    ioctl::subvol_create(sub.as_fd(), OsStr::new("layer2")).unwrap();
    fs::write(top.join("var/lib/docker/layer1/sub/layer2/file"), b"deep").unwrap();
    ioctl::snap_create(dir.as_fd(), OsStr::new("layer1-ro"), layer1.as_fd(), true).unwrap();
    ioctl::subvol_create(open_dir(&top).unwrap().as_fd(), OsStr::new("at-top")).unwrap();
    ioctl::set_subvol_flags(layer1.as_fd(), ioctl::SUBVOL_RDONLY).unwrap();
    drop((dir, layer1, sub));
    s.set_read_only(&root, true).unwrap();

    s.delete(&root).unwrap();
    assert!(!top.exists());
    assert!(s.list(SubvolKind::Root).unwrap().is_empty());
    s.delete(&root).unwrap();
}

/// Pins a kernel behaviour the server depends on: on Linux 6.x deleting a subvolume that is
/// mounted (here bind-mounted onto itself, as runc does with a box root) is not refused with
/// `EBUSY`; it succeeds and the mounts are detached. So storage cannot protect a running box:
/// whoever deletes a root must stop the box first.
#[test]
fn delete_of_a_mounted_subvolume_succeeds_and_detaches_the_mount() {
    let fs = TestFs::new();
    let s = &fs.storage;
    let root = Subvol::root("running");
    s.create(&root).unwrap();
    let target = s.path(&root);
    rustix::mount::mount_bind(&target, &target).unwrap();
    let result = s.delete(&root);
    let still_mounted = setup::find_mount(&target).unwrap().is_some();
    if still_mounted {
        rustix::mount::unmount(&target, rustix::mount::UnmountFlags::empty()).unwrap();
    }
    result.unwrap();
    assert!(!still_mounted, "the kernel detached the bind mount");
    assert!(!s.exists(&root));
}

#[test]
fn limit_is_enforced_reported_and_inherited_by_snapshots() {
    let fs = TestFs::new();
    let s = &fs.storage;
    let vol = Subvol::root("limited");
    s.create(&vol).unwrap();
    assert_eq!(s.limit(&vol).unwrap(), None);
    s.set_limit(&vol, Some(50 * MIB)).unwrap();
    assert_eq!(s.limit(&vol).unwrap(), Some(50 * MIB));

    let err = write_bytes(&s.path(&vol).join("big"), 100 * MIB).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    assert_eq!(err.to_string(), "Disk quota exceeded (os error 122)");
    let used = s.usage(&vol).unwrap();
    assert!(
        (40 * MIB..=50 * MIB).contains(&used),
        "usage after hitting a 50 MiB limit: {used}"
    );

    // A fork starts with the same limit (storage_gb carries over).
    let fork = Subvol::root("fork");
    s.snapshot(&vol, &fork, false).unwrap();
    assert_eq!(s.limit(&fork).unwrap(), Some(50 * MIB));

    // Removing the limit lets writes through; raising works too.
    s.set_limit(&vol, None).unwrap();
    assert_eq!(s.limit(&vol).unwrap(), None);
    write_bytes(&s.path(&vol).join("big"), 80 * MIB).unwrap();
    s.set_limit(&vol, Some(200 * MIB)).unwrap();
    write_bytes(&s.path(&vol).join("more"), 60 * MIB).unwrap();

    assert!(matches!(
        s.set_limit(&Subvol::root("missing"), Some(MIB)),
        Err(StorageError::NotFound(_))
    ));
}

#[test]
fn usage_counts_referenced_bytes_like_btrfs_qgroup_show() {
    let fs = TestFs::new();
    let s = &fs.storage;
    let vol = Subvol::volume("data");
    s.create(&vol).unwrap();
    let empty = s.usage(&vol).unwrap();
    assert!(
        empty <= 64 * 1024,
        "an empty subvolume references a node or so: {empty}"
    );
    write_bytes(&s.path(&vol).join("ten"), 10 * MIB).unwrap();
    let used = s.usage(&vol).unwrap();
    assert!(
        (10 * MIB..11 * MIB).contains(&used),
        "usage of 10 MiB: {used}"
    );

    // Same number as the btrfs CLI reports for this subvolume's qgroup.
    let id = ioctl::subvol_id(open_dir(&s.path(&vol)).unwrap().as_fd()).unwrap();
    let out = Command::new("btrfs")
        .args(["qgroup", "show", "-r", "--raw", "--sync"])
        .arg(s.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cli: u64 = stdout
        .lines()
        .find_map(|line| {
            let mut cols = line.split_whitespace();
            (cols.next()? == format!("0/{id}")).then(|| cols.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("qgroup 0/{id} in:\n{stdout}"));
    assert_eq!(used, cli);

    // A snapshot references the same data.
    let snap = Subvol::checkpoint("snap");
    s.snapshot(&vol, &snap, true).unwrap();
    assert_eq!(s.usage(&snap).unwrap(), used);
    assert!(matches!(
        s.usage(&Subvol::volume("missing")),
        Err(StorageError::NotFound(_))
    ));
}

#[test]
fn list_reports_each_kind() {
    let fs = TestFs::new();
    let s = &fs.storage;
    for vol in [
        Subvol::base("debian", "12"),
        Subvol::base("debian", "13"),
        Subvol::base("alpine", "3.20"),
        Subvol::root("r2"),
        Subvol::root("r1"),
        Subvol::volume("v1"),
    ] {
        s.create(&vol).unwrap();
    }
    s.snapshot(&Subvol::root("r1"), &Subvol::checkpoint("c1"), true)
        .unwrap();
    // Junk that is not a subvolume is not reported.
    fs::create_dir(s.root().join("roots/plain-dir")).unwrap();
    fs::write(s.root().join("roots/file"), b"").unwrap();
    fs::create_dir(s.root().join("bases/empty-alias")).unwrap();
    fs::write(s.root().join("bases/debian/file"), b"").unwrap();

    assert_eq!(
        s.list(SubvolKind::Base).unwrap(),
        vec![
            Subvol::base("alpine", "3.20"),
            Subvol::base("debian", "12"),
            Subvol::base("debian", "13"),
        ]
    );
    assert_eq!(
        s.list(SubvolKind::Root).unwrap(),
        vec![Subvol::root("r1"), Subvol::root("r2")]
    );
    assert_eq!(
        s.list(SubvolKind::Volume).unwrap(),
        vec![Subvol::volume("v1")]
    );
    assert_eq!(
        s.list(SubvolKind::Checkpoint).unwrap(),
        vec![Subvol::checkpoint("c1")]
    );
    s.delete(&Subvol::base("debian", "12")).unwrap();
    assert_eq!(s.list(SubvolKind::Base).unwrap().len(), 2);
}

#[test]
fn loop_setup_is_idempotent_and_survives_an_unmount() {
    let fs = TestFs::new();
    let data_dir = fs.data_dir().to_path_buf();
    let image = data_dir.canonicalize().unwrap().join(IMAGE_NAME);
    let mount_point = data_dir.canonicalize().unwrap().join(MOUNT_DIR);
    let vol = Subvol::volume("keep");
    fs.storage.create(&vol).unwrap();
    fs.storage.set_limit(&vol, Some(64 * MIB)).unwrap();
    fs::write(fs.storage.path(&vol).join("file"), b"survives").unwrap();
    let image_ino = fs::metadata(&image).unwrap().ino();

    // Again while mounted: the same mount, no second loop device.
    let again = BtrfsStorage::open_or_create_loop(&data_dir, IMAGE_SIZE).unwrap();
    assert_eq!(again.root(), mount_point);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        setup::parse_mountinfo(&mounts)
            .iter()
            .filter(|m| m.mount_point == mount_point)
            .count(),
        1
    );
    assert_eq!(BtrfsStorage::loop_devices(&data_dir).unwrap().len(), 1);
    // A configured root reached through a symlink is opened at its real path.
    let link = data_dir.join("link-to-mount");
    std::os::unix::fs::symlink(&mount_point, &link).unwrap();
    assert_eq!(BtrfsStorage::open(link).unwrap().root(), mount_point);

    // After an unmount (a reboot, say): the loop device is gone, the image stays.
    BtrfsStorage::unmount_loop(&data_dir).unwrap();
    assert!(setup::find_mount(&mount_point).unwrap().is_none());
    assert!(
        BtrfsStorage::loop_devices(&data_dir).unwrap().is_empty(),
        "loop device released"
    );
    BtrfsStorage::unmount_loop(&data_dir).unwrap();

    // Opening again mounts the same image without formatting it: the data is there.
    let reopened = BtrfsStorage::open_or_create_loop(&data_dir, IMAGE_SIZE).unwrap();
    assert_eq!(fs::metadata(&image).unwrap().ino(), image_ino);
    assert_eq!(
        fs::read(reopened.path(&vol).join("file")).unwrap(),
        b"survives"
    );
    assert_eq!(
        reopened.limit(&vol).unwrap(),
        Some(64 * MIB),
        "quotas stayed on"
    );
    assert_eq!(reopened.list(SubvolKind::Volume).unwrap(), vec![vol]);
}

#[test]
fn two_data_dirs_coexist() {
    let a = TestFs::new();
    let b = TestFs::new();
    a.storage.create(&Subvol::root("same-id")).unwrap();
    b.storage.create(&Subvol::root("same-id")).unwrap();
    fs::write(a.storage.path(&Subvol::root("same-id")).join("who"), b"a").unwrap();
    assert!(
        !b.storage
            .path(&Subvol::root("same-id"))
            .join("who")
            .exists()
    );
    let (da, db) = (
        BtrfsStorage::loop_devices(a.data_dir()).unwrap(),
        BtrfsStorage::loop_devices(b.data_dir()).unwrap(),
    );
    assert_eq!((da.len(), db.len()), (1, 1));
    assert_ne!(da, db);
}

#[test]
fn open_refuses_a_directory_that_is_not_btrfs() {
    require_btrfs_prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let statfs = rustix::fs::statfs(dir.path()).unwrap();
    #[allow(clippy::unnecessary_cast)]
    let on_btrfs = (statfs.f_type as u64 & 0xffff_ffff) == BTRFS_SUPER_MAGIC;
    assert!(!on_btrfs, "the test needs a tempdir that is not on btrfs");
    let err = BtrfsStorage::open(dir.path().to_path_buf()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string())
            && message.contains("not a btrfs filesystem"),
        "{message}"
    );
    let err = BtrfsStorage::open(dir.path().join("missing")).unwrap_err();
    assert!(os_error(&err) == Some(libc::ENOENT), "{err}");
}

/// Prints the latencies the lead asked for; run with `--nocapture` to see them. The bounds
/// are loose sanity limits, not benchmarks.
#[test]
fn timings_with_quotas_on() {
    let start = Instant::now();
    let fs = TestFs::new();
    let fresh = start.elapsed();
    let start = Instant::now();
    BtrfsStorage::open_or_create_loop(fs.data_dir(), IMAGE_SIZE).unwrap();
    let reuse = start.elapsed();
    println!("btrfs loop setup: fresh (truncate+mkfs+mount+quota) {fresh:.3?}, reuse {reuse:.3?}");
    let s = &fs.storage;
    let base = Subvol::base("timing", "1");
    s.create(&base).unwrap();
    // Some content, so a snapshot has a tree to reference.
    for i in 0..200 {
        fs::write(s.path(&base).join(format!("f{i}")), vec![7u8; 16 * 1024]).unwrap();
    }
    s.set_read_only(&base, true).unwrap();

    const N: usize = 20;
    // Runs `f` N times; `f` returns the duration of the part it measures.
    let time = |f: &mut dyn FnMut(usize) -> Duration| {
        let mut samples: Vec<Duration> = (0..N).map(&mut *f).collect();
        samples.sort();
        (samples[N / 2], samples[N - 1])
    };
    let measure = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    let (create_p50, create_max) =
        time(&mut |i| measure(&mut || s.create(&Subvol::volume(&format!("v{i}"))).unwrap()));
    let (snap_p50, snap_max) = time(&mut |i| {
        measure(&mut || {
            s.snapshot(&base, &Subvol::root(&format!("r{i}")), false)
                .unwrap()
        })
    });
    let (limit_p50, limit_max) = time(&mut |i| {
        measure(&mut || {
            s.set_limit(&Subvol::root(&format!("r{i}")), Some(GIB))
                .unwrap()
        })
    });
    // usage commits the transaction: measure it with 1 MiB of fresh writes pending each time.
    let (usage_p50, usage_max) = time(&mut |i| {
        let root = Subvol::root(&format!("r{i}"));
        fs::write(s.path(&root).join("dirty"), vec![1u8; MIB as usize]).unwrap();
        measure(&mut || {
            s.usage(&root).unwrap();
        })
    });
    let (delete_p50, delete_max) =
        time(&mut |i| measure(&mut || s.delete(&Subvol::root(&format!("r{i}"))).unwrap()));
    let show = |name: &str, (p50, max): (Duration, Duration)| {
        println!("btrfs {name:<9} p50 {p50:>10.3?}  max {max:>10.3?}  (n={N}, quotas on)");
    };
    show("create", (create_p50, create_max));
    show("snapshot", (snap_p50, snap_max));
    show("set_limit", (limit_p50, limit_max));
    show("usage", (usage_p50, usage_max)); // with 1 MiB dirty
    show("delete", (delete_p50, delete_max));
    for (name, p50) in [
        ("snapshot", snap_p50),
        ("delete", delete_p50),
        ("create", create_p50),
    ] {
        assert!(p50 < Duration::from_millis(200), "{name} p50 {p50:?}");
    }
}

const GIB: u64 = 1024 * MIB;
