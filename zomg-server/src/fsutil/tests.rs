//! Escape tests: every path a user can plant must stay inside the root.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use super::*;

/// A tempdir with `root/` (the root handed to the helpers) and `outside/` next to it holding
/// a sentinel file; tests assert `outside/` never changes.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"untouched").unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    fn root_fd(&self) -> OwnedFd {
        open_root(&self.root).expect("open root")
    }

    /// Fails if anything under `outside/` changed.
    fn assert_outside_untouched(&self) {
        let mut names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![OsString::from("sentinel")],
            "outside/ gained entries"
        );
        assert_eq!(
            fs::read(self.outside.join("sentinel")).unwrap(),
            b"untouched"
        );
    }
}

#[test]
fn dotdot_stays_in_root() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    // `..` stops at the root, so this names `<root>/outside/sentinel`, whose directory the
    // root does not have.
    let err = write_file_in_root(&root, Path::new("../../outside/sentinel"), b"pwned", 0o644)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    fs::create_dir(fx.root.join("outside")).unwrap();
    write_file_in_root(&root, Path::new("../../outside/sentinel"), b"pwned", 0o644).unwrap();
    assert_eq!(
        fs::read(fx.root.join("outside/sentinel")).unwrap(),
        b"pwned"
    );
    fx.assert_outside_untouched();
}

#[test]
fn dotdot_clamps_at_root_like_a_chroot() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    create_dir_all_in_root(&root, Path::new("../../../a/../b/./c"), 0o755).unwrap();
    assert!(fx.root.join("b/c").is_dir());
    write_file_in_root(&root, Path::new("/../../b/c/../f"), b"x", 0o644).unwrap();
    assert_eq!(fs::read(fx.root.join("b/f")).unwrap(), b"x");
    fx.assert_outside_untouched();
}

#[test]
fn absolute_symlink_to_etc_passwd_resolves_inside_the_root() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    let host_passwd = fs::read("/etc/passwd").expect("this test reads the host's /etc/passwd");
    let host_mtime = fs::metadata("/etc/passwd").unwrap().mtime_nsec();
    fs::create_dir(fx.root.join("etc")).unwrap();
    symlink("/etc/passwd", fx.root.join("passwd-link")).unwrap();

    // Opening through the link for writing creates the root's own /etc/passwd.
    let mut file = open_in_root(
        &root,
        Path::new("passwd-link"),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
        0o644,
    )
    .unwrap();
    file.write_all(b"root:x:0:0::/root:/bin/sh\n").unwrap();
    drop(file);
    assert_eq!(
        fs::read(fx.root.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    // Reading through it reads the root's copy, never the host's.
    let mut read = String::new();
    open_in_root(&root, Path::new("/passwd-link"), OFlags::RDONLY, 0)
        .unwrap()
        .read_to_string(&mut read)
        .unwrap();
    assert_eq!(read, "root:x:0:0::/root:/bin/sh\n");

    assert_eq!(fs::read("/etc/passwd").unwrap(), host_passwd);
    assert_eq!(
        fs::metadata("/etc/passwd").unwrap().mtime_nsec(),
        host_mtime
    );
}

#[test]
fn absolute_symlink_to_a_missing_path_is_not_followed_to_the_host() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    symlink(fx.outside.join("sentinel"), fx.root.join("link")).unwrap();
    // The link's target does not exist inside the root, so opening it fails...
    let err = open_in_root(&root, Path::new("link"), OFlags::RDONLY, 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // ...and writing through it fails too (its parent directories do not exist in the root).
    let err =
        open_in_root(&root, Path::new("link"), OFlags::WRONLY | OFlags::TRUNC, 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    fx.assert_outside_untouched();
}

#[test]
fn atomic_write_replaces_a_planted_symlink_instead_of_following_it() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    symlink(fx.outside.join("sentinel"), fx.root.join("hosts")).unwrap();
    write_file_in_root(&root, Path::new("hosts"), b"127.0.0.1 box\n", 0o644).unwrap();
    let meta = fs::symlink_metadata(fx.root.join("hosts")).unwrap();
    assert!(meta.is_file(), "the symlink was replaced by a file");
    assert_eq!(fs::read(fx.root.join("hosts")).unwrap(), b"127.0.0.1 box\n");
    fx.assert_outside_untouched();
}

#[test]
fn relative_symlink_chains_cannot_climb_out() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    fs::create_dir(fx.root.join("deep")).unwrap();
    symlink("../../..", fx.root.join("deep/up")).unwrap();
    symlink("deep/up/outside", fx.root.join("chain")).unwrap();

    let err = write_file_in_root(&root, Path::new("chain/pwned"), b"x", 0o644).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let err = open_in_root(&root, Path::new("chain/sentinel"), OFlags::RDONLY, 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

    // Like `mkdir -p`, a dangling link is not created through...
    let err = create_dir_all_in_root(&root, Path::new("chain/made"), 0o755).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // ...and once its target exists (inside the root) it leads there.
    create_dir_all_in_root(&root, Path::new("/outside"), 0o755).unwrap();
    create_dir_all_in_root(&root, Path::new("chain/made"), 0o755).unwrap();
    assert!(fx.root.join("outside/made").is_dir());
    fx.assert_outside_untouched();
}

#[test]
fn symlink_to_a_directory_outside_stays_inside() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    symlink(&fx.outside, fx.root.join("escape")).unwrap();

    let err = write_file_in_root(&root, Path::new("escape/new"), b"x", 0o644).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let err = read_dir_in_root(&root, Path::new("escape")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let err = remove_in_root(&root, Path::new("escape/sentinel")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

    let err = create_dir_all_in_root(&root, Path::new("escape/sub"), 0o755).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // The link's absolute target, recreated inside the root, is where it leads.
    create_dir_all_in_root(&root, &fx.outside, 0o755).unwrap();
    create_dir_all_in_root(&root, Path::new("escape/sub"), 0o755).unwrap();
    let inside = fx.root.join(fx.outside.strip_prefix("/").unwrap());
    assert!(
        inside.join("sub").is_dir(),
        "created at {}",
        inside.display()
    );
    fx.assert_outside_untouched();
}

#[test]
fn mkdir_p_follows_symlinks_inside_the_root() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    fs::create_dir(fx.root.join("data")).unwrap();
    symlink("/data", fx.root.join("link")).unwrap();
    create_dir_all_in_root(&root, Path::new("link/x/y"), 0o750).unwrap();
    let made = fs::metadata(fx.root.join("data/x/y")).unwrap();
    assert!(made.is_dir());
    // Existing directories are fine, again.
    create_dir_all_in_root(&root, Path::new("/link/x/y/"), 0o750).unwrap();
    // A file in the way is an error.
    fs::write(fx.root.join("data/file"), b"").unwrap();
    let err = create_dir_all_in_root(&root, Path::new("link/file/z"), 0o755).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    fx.assert_outside_untouched();
}

#[test]
fn write_sets_the_exact_mode_and_cleans_up_on_drop() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    write_file_in_root(&root, Path::new("script"), b"#!/bin/sh\n", 0o4750).unwrap();
    let mode = fs::metadata(fx.root.join("script"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4750);

    let mut pending = AtomicFile::create(&root, Path::new("big"), 0o600).unwrap();
    pending.write_all(b"partial").unwrap();
    drop(pending);
    let names: Vec<_> = fs::read_dir(&fx.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![OsString::from("script")],
        "no temporary file left"
    );

    let err = write_file_in_root(&root, Path::new("missing-dir/f"), b"", 0o644).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("missing-dir/f"), "{err}");
    let err = write_file_in_root(&root, Path::new("a/.."), b"", 0o644).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn large_writes_are_streamed_to_disk_by_window_and_land_intact() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    let window = WRITE_BEHIND_WINDOW as usize;
    // Two and a half windows in odd-sized writes, so window edges fall inside writes.
    let data: Vec<u8> = (0..window * 5 / 2).map(|i| (i * 31 % 251) as u8).collect();
    let mut file = AtomicFile::create(&root, Path::new("big"), 0o644).unwrap();
    for chunk in data.chunks(777_777) {
        file.write_all(chunk).unwrap();
    }
    let wb = &file.writeback;
    assert_eq!(wb.written, data.len() as u64);
    assert!(
        wb.started >= 2 * WRITE_BEHIND_WINDOW && wb.written - wb.started < WRITE_BEHIND_WINDOW,
        "two windows handed to writeback: {wb:?}"
    );
    assert!(
        wb.waited >= WRITE_BEHIND_WINDOW && wb.waited < wb.started,
        "{wb:?}"
    );
    file.commit().unwrap();
    assert!(
        fs::read(fx.root.join("big")).unwrap() == data,
        "content differs"
    );
}

#[test]
fn stat_list_and_remove_describe_links_without_following_them() {
    let fx = Fixture::new();
    let root = fx.root_fd();
    fs::create_dir(fx.root.join("dir")).unwrap();
    fs::write(fx.root.join("dir/file"), b"12345").unwrap();
    symlink("/dir/file", fx.root.join("dir/link")).unwrap();
    symlink(fx.outside.join("sentinel"), fx.root.join("dir/out")).unwrap();

    assert!(
        stat_in_root(&root, Path::new("dir/link"), false)
            .unwrap()
            .is_symlink()
    );
    assert_eq!(
        stat_in_root(&root, Path::new("dir/link"), true)
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        stat_in_root(&root, Path::new("dir/out"), true)
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );

    let entries = read_dir_in_root(&root, Path::new("/dir")).unwrap();
    let names: Vec<_> = entries.iter().map(|e| e.name.to_str().unwrap()).collect();
    assert_eq!(names, ["file", "link", "out"]);
    assert!(entries[0].metadata.is_file());
    assert!(entries[1].metadata.is_symlink());

    remove_in_root(&root, Path::new("dir/out")).unwrap();
    remove_in_root(&root, Path::new("dir/link")).unwrap();
    assert!(
        fx.root.join("dir/file").exists(),
        "removing a link keeps its target"
    );
    remove_in_root(&root, Path::new("dir/file")).unwrap();
    remove_in_root(&root, Path::new("dir")).unwrap();
    assert!(!fx.root.join("dir").exists());
    fx.assert_outside_untouched();
}

/// A user swaps a directory for symlinks pointing outside (absolute and relative) while the
/// server writes into it; nothing may land outside the root.
#[test]
fn swapping_symlinks_during_writes_never_escapes() {
    let fx = Fixture::new();
    let root = Arc::new(fx.root_fd());
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, outside) = (stop.clone(), fx.root.clone(), fx.outside.clone());
        std::thread::spawn(move || {
            let target = dir.join("swap");
            let staged_dir = dir.join("staged-dir");
            let staged_abs = dir.join("staged-abs");
            let staged_rel = dir.join("staged-rel");
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::create_dir(&staged_dir);
                let _ = symlink(&outside, &staged_abs);
                let _ = symlink("../outside", &staged_rel);
                let staged = match round % 3 {
                    0 => &staged_dir,
                    1 => &staged_abs,
                    _ => &staged_rel,
                };
                // Clear the real directory (never through a symlink: that would be this test
                // itself writing outside), then put the next candidate in its place.
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    let _ = fs::remove_dir_all(&target);
                } else {
                    let _ = fs::remove_file(&target);
                }
                let _ = fs::rename(staged, &target);
                round += 1;
            }
            round
        })
    };
    let deadline = Instant::now() + Duration::from_millis(400);
    let mut writes = 0;
    while Instant::now() < deadline {
        let name = format!("swap/f{writes}");
        let _ = write_file_in_root(&*root, Path::new(&name), b"x", 0o644);
        let _ = create_dir_all_in_root(&*root, Path::new(&format!("swap/d{writes}/e")), 0o755);
        let _ = open_in_root(
            &*root,
            Path::new(&format!("swap/o{writes}")),
            OFlags::WRONLY | OFlags::CREATE,
            0o644,
        );
        writes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = swapper.join().unwrap();
    assert!(
        rounds > 10 && writes > 10,
        "the race ran ({rounds} swaps, {writes} writes)"
    );
    fx.assert_outside_untouched();
}
