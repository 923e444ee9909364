//! `zomg-server`: owns box state and runs boxes through backends.
//!
//! Layers, outermost first (see ARCHITECTURE.md):
//! - [`api`]: axum routes, auth, error mapping; no business rules.
//! - [`core`]: every rule of the spec; talks to backends only through traits.
//! - [`store`]: metadata in SQLite (what should exist).
//! - [`storage`]: btrfs subvolumes (roots, bases, volumes).
//! - [`runtime`]: what runs a box (runc locally).

pub mod api;
pub mod core;
pub mod fsutil;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
