#![doc = include_str!("../README.md")]

mod client;
mod env;
mod ephemeral;
mod error;
mod exec;
pub mod exec_types;
pub mod file_types;
mod files;
mod logs;
mod names;
mod project;
mod refs;
mod setup;
mod target;
mod tls;
pub mod types;
pub mod units;
mod volumes;
mod wait;

pub use client::{Client, ListOptions, ProjectScope};
pub use env::process_env;
pub use ephemeral::{EPHEMERAL_START_TIMEOUT, EphemeralBox, generate_ephemeral_name};
pub use error::{ApiError, Error, Result};
pub use exec::{ExecOutput, ExecReader, ExecSession, ExecStdin};
pub use exec_types::{ExecExit, ExecRequest, ExecResult, ExecStart, LogOutput, TerminalSize};
pub use file_types::{FileKind, FileStat, TAR_CONTENT_TYPE, UploadResult, format_mode, parse_mode};
pub use files::{
    Download, ExtractSummary, Progress, UploadBody, UploadOptions, extract_tar, tar_dir,
    writer_stream,
};
pub use logs::LogStream;
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
    BaseInfo, BaseList, BoxConfig, BoxInfo, BoxList, BoxStatus, CreateBox, CreateVolume, DataMount,
    DataMountSpec, DeleteState, DeleteStatus, ErrorBody, UpdateBox, VersionInfo, VolumeInfo,
    VolumeList,
};
pub use volumes::VolumeRef;
pub use wait::poll_until;
