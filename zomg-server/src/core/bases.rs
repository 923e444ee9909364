//! Bases: the read-only templates boxes start from.
//!
//! A base is a read-only subvolume `bases/<alias>/<tag>` plus a store record. It is built
//! writable, prepared (the `/etc/boxes-env` hook), then flipped read-only and recorded; a
//! failure at any step deletes the half-built subvolume.

use std::path::Path;
use std::process::Stdio;

use chrono::Utc;
use tracing::info;
use zomg_sdk::{BaseInfo, BaseList};

use super::BoxService;
use super::error::{CoreError, CoreResult};
use super::rules;
use crate::storage::Subvol;
use crate::store::{BaseRecord, StoreError};

/// Packages of the default base (SPEC: bash, coreutils, procps, iproute2, ca-certificates,
/// curl, python3, tar), plus what makes it feel like a machine (ping, less, a few tools).
pub const BOOTSTRAP_PACKAGES: &[&str] = &[
    "bash",
    "coreutils",
    "procps",
    "iproute2",
    "ca-certificates",
    "curl",
    "python3",
    "tar",
    "iputils-ping",
    "less",
    "gzip",
    "xz-utils",
];

/// The line that makes shells load the box's variables.
const ENV_HOOK: &str = "[ -r /etc/boxes-env ] && . /etc/boxes-env\n";

fn to_info(b: BaseRecord) -> BaseInfo {
    BaseInfo {
        alias: b.alias,
        tag: b.tag,
        created_at: b.created_at,
        source: b.source,
    }
}

impl BoxService {
    /// Every base, ordered by alias and tag.
    pub fn list_bases(&self) -> CoreResult<BaseList> {
        let bases = self
            .store()
            .list_bases()?
            .into_iter()
            .map(to_info)
            .collect();
        Ok(BaseList { bases })
    }

    /// Imports a root filesystem from a tar archive (compression detected) or a directory.
    pub async fn import_base(
        &self,
        reference: &str,
        source: &Path,
        force: bool,
    ) -> CoreResult<BaseInfo> {
        let meta = std::fs::metadata(source).map_err(|e| {
            CoreError::invalid(format!("cannot read base source {}: {e}", source.display()))
        })?;
        let src = source.to_path_buf();
        let label = format!("import {}", source.display());
        self.build_base(reference, force, label, move |dest| {
            let mut cmd = if meta.is_dir() {
                let mut c = std::process::Command::new("cp");
                c.arg("-a")
                    .arg("--reflink=auto")
                    .arg(src.join("."))
                    .arg(dest);
                c
            } else {
                let mut c = std::process::Command::new("tar");
                c.arg("-xpf").arg(&src).arg("-C").arg(dest).args([
                    "--numeric-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                ]);
                c
            };
            run(&mut cmd)
        })
        .await
    }

    /// Builds a Debian base with debootstrap.
    pub async fn bootstrap_base(
        &self,
        reference: &str,
        suite: &str,
        mirror: &str,
        force: bool,
    ) -> CoreResult<BaseInfo> {
        let (suite, mirror) = (suite.to_owned(), mirror.to_owned());
        let label = format!("debootstrap {suite}");
        self.build_base(reference, force, label, move |dest| {
            let mut cmd = std::process::Command::new("debootstrap");
            cmd.arg("--variant=minbase")
                .arg(format!("--include={}", BOOTSTRAP_PACKAGES.join(",")))
                .arg(&suite)
                .arg(dest)
                .arg(&mirror);
            // debootstrap takes minutes: let the operator see its progress.
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            run(&mut cmd)?;
            // Downloaded packages only take space in every fork.
            let archives = dest.join("var/cache/apt/archives");
            if let Ok(entries) = std::fs::read_dir(&archives) {
                for e in entries.flatten() {
                    if e.path().extension().is_some_and(|x| x == "deb") {
                        std::fs::remove_file(e.path()).ok();
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// The shared recipe: fresh subvolume, `fill` it, prepare, make read-only, record.
    async fn build_base(
        &self,
        reference: &str,
        force: bool,
        source: String,
        fill: impl FnOnce(&Path) -> Result<(), String> + Send + 'static,
    ) -> CoreResult<BaseInfo> {
        let (alias, tag) = rules::parse_base_ref(reference)?;
        if self.store().get_base(&alias, &tag)?.is_some() {
            if !force {
                return Err(CoreError::Conflict {
                    code: "base_exists",
                    message: format!(
                        "base \"{alias}:{tag}\" already exists (use --force to replace it)"
                    ),
                });
            }
            let vol = Subvol::base(&alias, &tag);
            self.storage(move |s| s.delete(&vol)).await?;
            self.store().delete_base(&alias, &tag)?;
        }
        let vol = Subvol::base(&alias, &tag);
        let storage = self.storage_backend();
        let built = tokio::task::spawn_blocking(move || -> Result<(), String> {
            // A subvolume without a record is a leftover of an interrupted build.
            storage.delete(&vol).map_err(|e| e.to_string())?;
            storage.create(&vol).map_err(|e| e.to_string())?;
            let dest = storage.path(&vol);
            let result = fill(&dest)
                .and_then(|()| prepare_root(&dest))
                .and_then(|()| storage.set_read_only(&vol, true).map_err(|e| e.to_string()));
            if result.is_err() {
                storage.delete(&vol).ok();
            }
            result
        })
        .await
        .map_err(|e| CoreError::internal("building the base panicked", e))?;
        built.map_err(|e| {
            CoreError::internal(format!("building base \"{alias}:{tag}\" failed"), e)
        })?;
        let record = BaseRecord {
            alias: alias.clone(),
            tag: tag.clone(),
            source: Some(source),
            created_at: Utc::now(),
        };
        if let Err(e) = self.store().insert_base(&record) {
            let vol = Subvol::base(&alias, &tag);
            self.storage(move |s| s.delete(&vol)).await.ok();
            return Err(match e {
                StoreError::Conflict(m) => CoreError::Conflict {
                    code: "base_exists",
                    message: m,
                },
                e => e.into(),
            });
        }
        info!(base = %format!("{alias}:{tag}"), "base ready");
        Ok(to_info(record))
    }
}

/// Makes a root filesystem ready to be a base: shells source `/etc/boxes-env`, and the
/// directories the runtime mounts over exist. Writes resolve inside `root` only: an
/// imported archive may hold symlinks that point anywhere.
fn prepare_root(root: &Path) -> Result<(), String> {
    use crate::fsutil;
    let fd = fsutil::open_root(root).map_err(|e| format!("opening {}: {e}", root.display()))?;
    for dir in [
        "etc",
        "etc/profile.d",
        "root",
        "tmp",
        "run",
        "proc",
        "sys",
        "dev",
    ] {
        fsutil::create_dir_all_in_root(&fd, Path::new(dir), 0o755)
            .map_err(|e| format!("creating /{dir} in the base: {e}"))?;
    }
    for file in ["etc/bash.bashrc", "etc/profile.d/zomg-boxes-env.sh"] {
        let existing = read_optional(&fd, Path::new(file))?;
        let text = String::from_utf8_lossy(&existing);
        if !text.contains(ENV_HOOK.trim_end()) {
            let mut new = text.into_owned();
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            new.push_str(ENV_HOOK);
            fsutil::write_file_in_root(&fd, Path::new(file), new.as_bytes(), 0o644)
                .map_err(|e| format!("writing /{file} in the base: {e}"))?;
        }
    }
    Ok(())
}

/// Reads a file inside the root; a missing file reads as empty.
fn read_optional(root: &std::os::fd::OwnedFd, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    match crate::fsutil::open_in_root(root, path, rustix::fs::OFlags::RDONLY, 0) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)
                .map_err(|e| format!("reading /{} in the base: {e}", path.display()))?;
            Ok(buf)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("reading /{} in the base: {e}", path.display())),
    }
}

/// Runs a helper command, turning a failure into its stderr.
fn run(cmd: &mut std::process::Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
