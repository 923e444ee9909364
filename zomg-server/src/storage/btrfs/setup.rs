//! Bringing up the filesystem: a sparse loop image under the data dir, formatted once and
//! mounted at `<data_dir>/btrfs`, reused across restarts.
//!
//! The image is formatted under a temporary name and renamed into place only after
//! `mkfs.btrfs` succeeded, so an existing `storage.img` is always a complete filesystem and is
//! never formatted again. `mount -o loop` attaches the loop device with autoclear, so
//! unmounting releases it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::mount::UnmountFlags;

use crate::storage::{StorageError, StorageResult};

/// The image file under the data dir.
pub const IMAGE_NAME: &str = "storage.img";
/// The mount point under the data dir.
pub const MOUNT_DIR: &str = "btrfs";
/// Serializes setup and teardown of one data dir between processes.
const LOCK_NAME: &str = "storage.lock";
/// How long teardown waits for the kernel to release an autoclear loop device.
const LOOP_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of `/proc/self/mountinfo`, the fields we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type (`btrfs`).
    pub fs_type: String,
    /// The mount source (`/dev/loop3`).
    pub source: String,
}

/// Parses `/proc/self/mountinfo` content (see proc(5)).
pub fn parse_mountinfo(content: &str) -> Vec<MountEntry> {
    content
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let source = right.next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(
                    mount_point,
                ))),
                fs_type: fs_type.to_owned(),
                source: String::from_utf8_lossy(&unescape_octal(source)).into_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash.
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The topmost mount at `mount_point` in this process's mount namespace, if any.
pub fn find_mount(mount_point: &Path) -> StorageResult<Option<MountEntry>> {
    let content = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| StorageError::io("reading /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&content)
        .into_iter()
        .rev()
        .find(|entry| entry.mount_point == mount_point))
}

/// Holds an exclusive `flock` on `<data_dir>/storage.lock` while alive.
struct SetupLock(#[allow(dead_code)] File);

impl SetupLock {
    fn acquire(data_dir: &Path) -> StorageResult<Self> {
        let path = data_dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| StorageError::io(format!("locking {}", path.display()), e.into()))?;
        Ok(Self(file))
    }
}

/// Makes sure `<data_dir>/storage.img` exists (formatting it only if it did not) and is
/// mounted at `<data_dir>/btrfs`; returns the mount point.
pub fn ensure_loop_mounted(data_dir: &Path, size_bytes: u64) -> StorageResult<PathBuf> {
    fs::create_dir_all(data_dir)
        .map_err(|e| StorageError::io(format!("creating {}", data_dir.display()), e))?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| StorageError::io(format!("resolving {}", data_dir.display()), e))?;
    let _lock = SetupLock::acquire(&data_dir)?;
    let mount_point = data_dir.join(MOUNT_DIR);
    let image = data_dir.join(IMAGE_NAME);

    if let Some(entry) = find_mount(&mount_point)? {
        if entry.fs_type != "btrfs" {
            return Err(StorageError::io(
                format!("reusing the mount at {}", mount_point.display()),
                io::Error::other(format!(
                    "it is {} from {}, not btrfs",
                    entry.fs_type, entry.source
                )),
            ));
        }
        return Ok(mount_point);
    }

    if !image.exists() {
        format_image(&image, size_bytes)?;
    }
    fs::create_dir_all(&mount_point)
        .map_err(|e| StorageError::io(format!("creating {}", mount_point.display()), e))?;
    run(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&image)
        .arg(&mount_point))?;
    Ok(mount_point)
}

/// Creates a sparse file of `size_bytes` and formats it, under a temporary name first.
fn format_image(image: &Path, size_bytes: u64) -> StorageResult<()> {
    let tmp = image.with_extension("img.partial");
    // A leftover from a setup that died half-way holds nothing: start over.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io(format!("removing {}", tmp.display()), e)),
    }
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StorageError::io(format!("creating {}", tmp.display()), e))?;
    file.set_len(size_bytes).map_err(|e| {
        StorageError::io(format!("sizing {} to {size_bytes} bytes", tmp.display()), e)
    })?;
    drop(file);
    run(Command::new("mkfs.btrfs")
        .arg("--quiet")
        .arg("--label")
        .arg("zomg")
        .arg(&tmp))?;
    fs::rename(&tmp, image).map_err(|e| {
        StorageError::io(
            format!("renaming {} to {}", tmp.display(), image.display()),
            e,
        )
    })
}

/// Unmounts `<data_dir>/btrfs` if mounted and makes sure no loop device still holds
/// `<data_dir>/storage.img`. Idempotent.
pub fn unmount_loop(data_dir: &Path) -> StorageResult<()> {
    let data_dir = match data_dir.canonicalize() {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StorageError::io(
                format!("resolving {}", data_dir.display()),
                e,
            ));
        }
    };
    let _lock = SetupLock::acquire(&data_dir)?;
    let mount_point = data_dir.join(MOUNT_DIR);
    while find_mount(&mount_point)?.is_some() {
        rustix::mount::unmount(&mount_point, UnmountFlags::empty()).map_err(|e| {
            if e == rustix::io::Errno::BUSY {
                StorageError::Busy(mount_point.display().to_string())
            } else {
                StorageError::io(format!("unmounting {}", mount_point.display()), e.into())
            }
        })?;
    }
    release_loop_devices(&data_dir.join(IMAGE_NAME))
}

/// Waits for autoclear to detach loop devices backed by `image`, detaching any left over
/// (one attached without autoclear, e.g. by hand) with `losetup -d`.
fn release_loop_devices(image: &Path) -> StorageResult<()> {
    let deadline = Instant::now() + LOOP_RELEASE_TIMEOUT;
    loop {
        let devices = loop_devices_backed_by(image)?;
        if devices.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for device in devices {
                run(Command::new("losetup").arg("-d").arg(device))?;
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Loop devices (`/dev/loopN`) whose backing file is `image`.
pub fn loop_devices_backed_by(image: &Path) -> StorageResult<Vec<PathBuf>> {
    let entries = match fs::read_dir("/sys/block") {
        Ok(entries) => entries,
        Err(e) => return Err(StorageError::io("listing /sys/block", e)),
    };
    let mut devices = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(b"loop") {
            continue;
        }
        let Ok(backing) = fs::read(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if backing.strip_suffix(b"\n").unwrap_or(&backing) == image.as_os_str().as_bytes() {
            devices.push(Path::new("/dev").join(name));
        }
    }
    Ok(devices)
}

/// Runs a helper command, turning a failure into [`StorageError::Command`].
fn run(command: &mut Command) -> StorageResult<()> {
    let line = format!("{command:?}").replace('"', "");
    let output = command.output().map_err(|e| {
        let program = command.get_program().to_string_lossy().into_owned();
        StorageError::io(
            format!("running {program} (is it installed? btrfs-progs and util-linux are needed)"),
            e,
        )
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(StorageError::Command {
            command: line,
            stderr: format!(
                "{} ({})",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let content = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
43 27 0:39 / /tmp/a\\040b/btrfs rw,relatime - btrfs /dev/loop0 rw,space_cache=v2,subvolid=5,subvol=/
";
        let entries = parse_mountinfo(content);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].mount_point, Path::new("/tmp/a b/btrfs"));
        assert_eq!(entries[1].fs_type, "btrfs");
        assert_eq!(entries[1].source, "/dev/loop0");
    }

    #[test]
    fn octal_unescape_leaves_other_backslashes() {
        assert_eq!(unescape_octal("a\\134b"), b"a\\b");
        assert_eq!(unescape_octal("a\\9"), b"a\\9");
        assert_eq!(unescape_octal("tail\\04"), b"tail\\04");
    }
}
