//! `zomg-sdk`: the typed async Rust API for zomg boxes.
//!
//! A box is a full Linux environment with a copy-on-write root that survives stop and
//! resume and forks in milliseconds. This crate is what the `zomg` CLI and `zomg-server`
//! are built on: names and refs, target (URL/token/profile) resolution, the setup config
//! file, the wire types and the HTTP/WebSocket [`Client`].

mod error;
mod names;
mod target;
pub mod types;
pub mod units;

pub use error::{ApiError, Error, Result};
pub use names::{BoxName, DEFAULT_PROJECT, NameError, ProjectName, TagKey, TagValue, VolumeName};
pub use target::{DEFAULT_LOCAL_URL, Target};
pub use types::{
    BaseInfo, BaseList, BoxConfig, BoxInfo, BoxList, BoxStatus, CreateBox, DataMount,
    DataMountSpec, DeleteState, DeleteStatus, ErrorBody, UpdateBox, VersionInfo, VolumeInfo,
};
