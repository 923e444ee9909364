//! `zomg-sdk`: the typed async Rust API for zomg boxes.
//!
//! A box is a full Linux environment with a copy-on-write root that survives stop and
//! resume and forks in milliseconds. This crate is what the `zomg` CLI and `zomg-server`
//! are built on: names and refs, target (URL/token/profile) resolution, the setup config
//! file, the wire types and the HTTP/WebSocket [`Client`].

mod client;
mod env;
mod error;
mod names;
mod project;
mod refs;
mod setup;
mod target;
mod tls;
pub mod types;
mod wait;

pub use client::{Client, ListOptions, ProjectScope};
pub use env::process_env;
pub use error::{ApiError, Error, Result};
pub use names::{BoxName, DEFAULT_PROJECT, NameError, ProjectName, TagKey, TagValue, VolumeName};
pub use project::{ProjectSource, ResolvedProject, git_root, resolve_project};
pub use refs::{BoxPath, BoxRef, RefError, ResolvedBox, ResolvedRef, ephemeral_box_name};
pub use setup::{KNOWN_KEYS, ProfileInfo, SetupConfig, list_profiles};
pub use target::{
    DEFAULT_LOCAL_URL, ProfileSource, Target, TargetFlags, TargetResolution, TokenSource,
    UrlSource, profile_var, resolve_target, selected_profile,
};
pub use tls::{TlsTrust, tls_config};
pub use types::{
    BaseInfo, BaseList, BoxConfig, BoxInfo, BoxList, BoxStatus, CreateBox, DataMount,
    DataMountSpec, DeleteState, DeleteStatus, ErrorBody, UpdateBox, VersionInfo, VolumeInfo,
};
pub use wait::poll_until;
