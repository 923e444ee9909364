//! Raw btrfs ioctls: subvolumes, snapshots, flags, qgroups and tree search.
//!
//! Layouts and request codes follow `linux/btrfs.h` and `linux/btrfs_tree.h`; the sizes are
//! checked at compile time below and the request codes by a test against the values the C
//! header produces. Each wrapper is safe: it owns the argument buffer it hands to the kernel.
//! The request codes use the asm-generic `_IOC` encoding (x86_64, aarch64, riscv64), not the
//! one of powerpc, mips or sparc.

// The btrfs ioctls have no safe binding in libc or rustix; this module is the one place that
// calls `libc::ioctl`, each call with a buffer of exactly the size the request code encodes.
#![allow(unsafe_code)]

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// `BTRFS_IOCTL_MAGIC`.
const MAGIC: u32 = 0x94;

/// `_IOC(dir, type, nr, size)` from `asm-generic/ioctl.h`.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (MAGIC << 8) | nr
}
const fn io(nr: u32) -> u32 {
    ioc(0, nr, 0)
}
const fn iow(nr: u32, size: usize) -> u32 {
    ioc(1, nr, size)
}
const fn ior(nr: u32, size: usize) -> u32 {
    ioc(2, nr, size)
}
const fn iowr(nr: u32, size: usize) -> u32 {
    ioc(3, nr, size)
}

/// `BTRFS_SUBVOL_NAME_MAX`: longest subvolume name, without the NUL.
pub const SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_INO_LOOKUP_PATH_MAX`.
const INO_LOOKUP_PATH_MAX: usize = 4080;
/// `BTRFS_SEARCH_ARGS_BUFSIZE`.
const SEARCH_BUF_SIZE: usize = 4096 - size_of::<SearchKey>();

/// `BTRFS_SUBVOL_RDONLY`.
pub const SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_QGROUP_LIMIT_MAX_RFER`.
pub const QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
/// The kernel's "clear this limit" value (`CLEAR_VALUE` in `fs/btrfs/qgroup.c`).
const QGROUP_LIMIT_CLEAR: u64 = u64::MAX;
/// `BTRFS_QUOTA_CTL_ENABLE`.
const QUOTA_CTL_ENABLE: u64 = 1;

/// `BTRFS_ROOT_TREE_OBJECTID`: the tree of tree roots.
pub const ROOT_TREE_OBJECTID: u64 = 1;
/// `BTRFS_QUOTA_TREE_OBJECTID`.
pub const QUOTA_TREE_OBJECTID: u64 = 8;
/// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root directory.
pub const FIRST_FREE_OBJECTID: u64 = 256;
/// `BTRFS_ROOT_REF_KEY`: (parent subvolume, ROOT_REF, child subvolume).
pub const ROOT_REF_KEY: u32 = 156;
/// `BTRFS_QGROUP_STATUS_KEY`: (0, STATUS, 0).
pub const QGROUP_STATUS_KEY: u32 = 240;
/// `BTRFS_QGROUP_INFO_KEY`: (0, INFO, qgroupid).
pub const QGROUP_INFO_KEY: u32 = 242;
/// `BTRFS_QGROUP_LIMIT_KEY`: (0, LIMIT, qgroupid).
pub const QGROUP_LIMIT_KEY: u32 = 244;
/// `BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT`.
pub const QGROUP_STATUS_FLAG_INCONSISTENT: u64 = 1 << 2;

/// `struct btrfs_ioctl_vol_args_v2` with the unions flattened to what we use.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    /// `union { struct { size; qgroup_inherit; }; unused[4]; }`
    unused: [u64; 4],
    /// `union { name[BTRFS_SUBVOL_NAME_MAX + 1]; devid; subvolid; }`
    name: [u8; SUBVOL_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_qgroup_limit_args` (with `struct btrfs_qgroup_limit` inlined).
#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_quota_rescan_args`.
#[repr(C)]
struct QuotaRescanArgs {
    flags: u64,
    progress: u64,
    reserved: [u64; 6],
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}

/// `struct btrfs_ioctl_search_args`.
#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; SEARCH_BUF_SIZE],
}

/// `struct btrfs_ioctl_search_header`, as laid out in [`SearchArgs::buf`].
const SEARCH_HEADER_SIZE: usize = 32;

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; INO_LOOKUP_PATH_MAX],
}

const _: () = assert!(size_of::<VolArgsV2>() == 4096);
const _: () = assert!(size_of::<QgroupLimitArgs>() == 48);
const _: () = assert!(size_of::<QuotaCtlArgs>() == 16);
const _: () = assert!(size_of::<QuotaRescanArgs>() == 64);
const _: () = assert!(size_of::<SearchKey>() == 104);
const _: () = assert!(size_of::<SearchArgs>() == 4096);
const _: () = assert!(size_of::<InoLookupArgs>() == 4096);

pub(super) const IOC_SUBVOL_CREATE_V2: u32 = iow(24, size_of::<VolArgsV2>());
pub(super) const IOC_SNAP_CREATE_V2: u32 = iow(23, size_of::<VolArgsV2>());
pub(super) const IOC_SNAP_DESTROY_V2: u32 = iow(63, size_of::<VolArgsV2>());
pub(super) const IOC_SUBVOL_GETFLAGS: u32 = ior(25, size_of::<u64>());
pub(super) const IOC_SUBVOL_SETFLAGS: u32 = iow(26, size_of::<u64>());
pub(super) const IOC_QGROUP_LIMIT: u32 = ior(43, size_of::<QgroupLimitArgs>());
pub(super) const IOC_QUOTA_CTL: u32 = iowr(40, size_of::<QuotaCtlArgs>());
pub(super) const IOC_QUOTA_RESCAN: u32 = iow(44, size_of::<QuotaRescanArgs>());
pub(super) const IOC_QUOTA_RESCAN_WAIT: u32 = io(46);
pub(super) const IOC_TREE_SEARCH: u32 = iowr(17, size_of::<SearchArgs>());
pub(super) const IOC_INO_LOOKUP: u32 = iowr(18, size_of::<InoLookupArgs>());

/// Issues `request` on `fd` with `arg`.
///
/// # Safety
///
/// `arg` must point to a live, exclusively borrowed value of the type (and so the size)
/// that `request` encodes, or be null for an `_IO` request that takes no argument.
unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: u32, arg: *mut T) -> io::Result<()> {
    // SAFETY: the caller guarantees `arg` matches `request`, so the kernel reads and writes
    // only inside it; `fd` is a valid open descriptor for the duration of the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, arg) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl VolArgsV2 {
    fn new(name: &OsStr) -> io::Result<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > SUBVOL_NAME_MAX || bytes.contains(&0) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut args = Self {
            fd: 0,
            transid: 0,
            flags: 0,
            unused: [0; 4],
            name: [0; SUBVOL_NAME_MAX + 1],
        };
        args.name[..bytes.len()].copy_from_slice(bytes);
        Ok(args)
    }
}

/// Creates an empty subvolume `name` in the directory `parent`.
pub fn subvol_create(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let mut args = VolArgsV2::new(name)?;
    // SAFETY: `args: VolArgsV2` is the type the request code encodes.
    unsafe { ioctl(parent, IOC_SUBVOL_CREATE_V2, &mut args) }
}

/// Snapshots the subvolume open as `src` into `name` in the directory `parent`.
pub fn snap_create(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    src: BorrowedFd<'_>,
    read_only: bool,
) -> io::Result<()> {
    let mut args = VolArgsV2::new(name)?;
    args.fd = i64::from(src.as_raw_fd());
    if read_only {
        args.flags = SUBVOL_RDONLY;
    }
    // SAFETY: `args: VolArgsV2` is the type the request code encodes.
    unsafe { ioctl(parent, IOC_SNAP_CREATE_V2, &mut args) }
}

/// Deletes the subvolume `name` in the directory `parent`. Fails with `ENOTEMPTY` when it
/// contains other subvolumes.
pub fn snap_destroy(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let mut args = VolArgsV2::new(name)?;
    // SAFETY: `args: VolArgsV2` is the type the request code encodes.
    unsafe { ioctl(parent, IOC_SNAP_DESTROY_V2, &mut args) }
}

/// The subvolume flags (`BTRFS_SUBVOL_RDONLY`) of the subvolume open as `fd`.
pub fn subvol_flags(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut flags = 0u64;
    // SAFETY: `flags: u64` is the type the request code encodes.
    unsafe { ioctl(fd, IOC_SUBVOL_GETFLAGS, &mut flags)? };
    Ok(flags)
}

/// Sets the subvolume flags of the subvolume open as `fd`.
pub fn set_subvol_flags(fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    let mut flags = flags;
    // SAFETY: `flags: u64` is the type the request code encodes.
    unsafe { ioctl(fd, IOC_SUBVOL_SETFLAGS, &mut flags) }
}

/// Sets (or with `None` clears) the referenced-bytes limit of the qgroup of the subvolume
/// open as `fd` (qgroupid 0 means "the subvolume of this fd").
pub fn qgroup_limit(fd: BorrowedFd<'_>, max_rfer: Option<u64>) -> io::Result<()> {
    let mut args = QgroupLimitArgs {
        qgroupid: 0,
        flags: QGROUP_LIMIT_MAX_RFER,
        max_rfer: max_rfer.unwrap_or(QGROUP_LIMIT_CLEAR),
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    // SAFETY: `args: QgroupLimitArgs` is the type the request code encodes.
    unsafe { ioctl(fd, IOC_QGROUP_LIMIT, &mut args) }
}

/// Enables quotas on the filesystem of `fd`; a no-op when they are already enabled. The
/// kernel starts a rescan; [`quota_rescan_wait`] waits for it.
pub fn quota_enable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut args = QuotaCtlArgs {
        cmd: QUOTA_CTL_ENABLE,
        status: 0,
    };
    // SAFETY: `args: QuotaCtlArgs` is the type the request code encodes.
    unsafe { ioctl(fd, IOC_QUOTA_CTL, &mut args) }
}

/// Starts a quota rescan on the filesystem of `fd` (`EINPROGRESS` if one is running).
pub fn quota_rescan(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut args = QuotaRescanArgs {
        flags: 0,
        progress: 0,
        reserved: [0; 6],
    };
    // SAFETY: `args: QuotaRescanArgs` is the type the request code encodes.
    unsafe { ioctl(fd, IOC_QUOTA_RESCAN, &mut args) }
}

/// Waits until a running quota rescan on the filesystem of `fd` has finished.
pub fn quota_rescan_wait(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an `_IO` request takes no argument, so null is allowed.
    unsafe { ioctl::<u8>(fd, IOC_QUOTA_RESCAN_WAIT, std::ptr::null_mut()) }
}

/// Looks up `objectid` in tree `treeid` (0: the subvolume of `fd`). Returns the tree id
/// actually used and the path of that inode relative to the subvolume root, with a trailing
/// `/` unless it is the root itself (then empty).
pub fn ino_lookup(fd: BorrowedFd<'_>, treeid: u64, objectid: u64) -> io::Result<(u64, Vec<u8>)> {
    let mut args = InoLookupArgs {
        treeid,
        objectid,
        name: [0; INO_LOOKUP_PATH_MAX],
    };
    // SAFETY: `args: InoLookupArgs` is the type the request code encodes.
    unsafe { ioctl(fd, IOC_INO_LOOKUP, &mut args)? };
    let path = CStr::from_bytes_until_nul(&args.name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ino_lookup path without NUL"))?
        .to_bytes()
        .to_vec();
    Ok((args.treeid, path))
}

/// The id of the subvolume (tree) the open `fd` belongs to.
pub fn subvol_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    ino_lookup(fd, 0, FIRST_FREE_OBJECTID).map(|(treeid, _)| treeid)
}

/// A btrfs key: (objectid, type, offset), ordered in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The object id.
    pub objectid: u64,
    /// The item type (`*_KEY`).
    pub item_type: u32,
    /// The offset, whose meaning depends on the type.
    pub offset: u64,
}

impl Key {
    /// The next key in key order, or `None` after the last one.
    fn successor(self) -> Option<Key> {
        if self.offset < u64::MAX {
            Some(Key {
                offset: self.offset + 1,
                ..self
            })
        } else if self.item_type < u32::from(u8::MAX) {
            Some(Key {
                item_type: self.item_type + 1,
                offset: 0,
                ..self
            })
        } else if self.objectid < u64::MAX {
            Some(Key {
                objectid: self.objectid + 1,
                item_type: 0,
                offset: 0,
            })
        } else {
            None
        }
    }
}

/// Calls `each(key, item_data)` for every item of tree `tree_id` with a key in `min..=max`,
/// in key order (`BTRFS_IOC_TREE_SEARCH`; needs `CAP_SYS_ADMIN`).
pub fn tree_search(
    fd: BorrowedFd<'_>,
    tree_id: u64,
    min: Key,
    max: Key,
    mut each: impl FnMut(Key, &[u8]),
) -> io::Result<()> {
    let mut args = Box::new(SearchArgs {
        key: SearchKey {
            tree_id,
            min_objectid: 0,
            max_objectid: max.objectid,
            min_offset: 0,
            max_offset: max.offset,
            min_transid: 0,
            max_transid: u64::MAX,
            min_type: 0,
            max_type: max.item_type,
            nr_items: 0,
            unused: 0,
            unused1: 0,
            unused2: 0,
            unused3: 0,
            unused4: 0,
        },
        buf: [0; SEARCH_BUF_SIZE],
    });
    let mut next = Some(min);
    while let Some(from) = next.filter(|from| *from <= max) {
        args.key.min_objectid = from.objectid;
        args.key.min_type = from.item_type;
        args.key.min_offset = from.offset;
        args.key.nr_items = u32::MAX;
        // SAFETY: `*args: SearchArgs` is the type the request code encodes.
        unsafe { ioctl(fd, IOC_TREE_SEARCH, &mut *args)? };
        if args.key.nr_items == 0 {
            break;
        }
        let mut pos = 0;
        let mut last = from;
        for _ in 0..args.key.nr_items {
            let (key, data, len) = parse_item(&args.buf[pos..])?;
            each(key, data);
            last = key;
            pos += len;
        }
        next = last.successor();
    }
    Ok(())
}

/// Splits one `btrfs_ioctl_search_header` + item off the front of `buf`: the key, the item
/// data and the total length consumed.
fn parse_item(buf: &[u8]) -> io::Result<(Key, &[u8], usize)> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed tree search result");
    let header = buf.get(..SEARCH_HEADER_SIZE).ok_or_else(malformed)?;
    let u64_at = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let key = Key {
        objectid: u64_at(8),
        offset: u64_at(16),
        item_type: u32_at(24),
    };
    let len = u32_at(28) as usize;
    let data = buf
        .get(SEARCH_HEADER_SIZE..SEARCH_HEADER_SIZE + len)
        .ok_or_else(malformed)?;
    Ok((key, data, SEARCH_HEADER_SIZE + len))
}

/// Reads the little-endian `u64` at byte `at` of an on-disk item.
pub fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the little-endian `u16` at byte `at` of an on-disk item.
pub fn le_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request codes as printed by a C program including `linux/btrfs.h` on x86_64.
    #[test]
    fn request_codes_match_the_c_header() {
        assert_eq!(IOC_SUBVOL_CREATE_V2, 0x5000_9418);
        assert_eq!(IOC_SNAP_CREATE_V2, 0x5000_9417);
        assert_eq!(IOC_SNAP_DESTROY_V2, 0x5000_943f);
        assert_eq!(IOC_SUBVOL_GETFLAGS, 0x8008_9419);
        assert_eq!(IOC_SUBVOL_SETFLAGS, 0x4008_941a);
        assert_eq!(IOC_QGROUP_LIMIT, 0x8030_942b);
        assert_eq!(IOC_QUOTA_CTL, 0xc010_9428);
        assert_eq!(IOC_QUOTA_RESCAN, 0x4040_942c);
        assert_eq!(IOC_QUOTA_RESCAN_WAIT, 0x0000_942e);
        assert_eq!(IOC_TREE_SEARCH, 0xd000_9411);
        assert_eq!(IOC_INO_LOOKUP, 0xd000_9412);
    }

    #[test]
    fn key_successor_carries() {
        let k = |objectid, item_type, offset| Key {
            objectid,
            item_type,
            offset,
        };
        assert_eq!(k(1, 2, 3).successor(), Some(k(1, 2, 4)));
        assert_eq!(k(1, 2, u64::MAX).successor(), Some(k(1, 3, 0)));
        assert_eq!(k(1, 255, u64::MAX).successor(), Some(k(2, 0, 0)));
        assert_eq!(k(u64::MAX, 255, u64::MAX).successor(), None);
    }

    #[test]
    fn vol_args_reject_bad_names() {
        assert!(VolArgsV2::new(OsStr::new("")).is_err());
        assert!(VolArgsV2::new(OsStr::new("a\0b")).is_err());
        assert!(VolArgsV2::new(OsStr::new(&"x".repeat(SUBVOL_NAME_MAX + 1))).is_err());
        assert!(VolArgsV2::new(OsStr::new(&"x".repeat(SUBVOL_NAME_MAX))).is_ok());
    }
}
