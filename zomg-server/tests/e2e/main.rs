//! End-to-end tests: a real server in-process (or as a child process), real btrfs, real
//! runc boxes, driven through the SDK as a user would. Needs root; see `support`.

mod files;
mod support;
