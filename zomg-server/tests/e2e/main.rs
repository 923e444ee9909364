//! End-to-end tests: a real server (loop-mounted btrfs, runc, a busybox base) driven through
//! the SDK, as a program using zomg would. They need root, runc, tini-static, a static
//! busybox and btrfs-progs, and fail naming whichever is missing.
//!
//! Each test starts its own server ([`support::TestServer`]) and leaves nothing behind.

mod fork;
mod support;
mod update;
mod volumes;
