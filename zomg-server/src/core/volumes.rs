//! Data volumes (SPEC §1, §3 `--data`): create (empty, or a snapshot of another volume),
//! list, show, delete, and the rules of attaching them to a box.
//!
//! A volume is a subvolume `volumes/<id>` plus a record; an optional size is its qgroup
//! limit on referenced bytes. Volumes that a fork generated belong to their box
//! (`owner_box_id`): they are not listed, and showing, deleting or attaching one elsewhere
//! is refused with `volume_owned`; they are deleted with the box. Copying one with
//! `data create --from` is allowed, which is how a fork's data outlives it.
//!
//! Locking: operations on a volume hold its key (`volume:<project>/<name>`). A box create
//! takes its box key first and then the keys of the volumes it attaches, in sorted order,
//! and holds them until its record (which names the mounts) is stored, so a volume delete
//! either sees the box attached or runs before the box could attach it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use tracing::info;
use zomg_sdk::units::format_bytes;
use zomg_sdk::{
    BoxName, CreateVolume, DataMountSpec, ProjectName, VolumeInfo, VolumeList, VolumeName,
};

use super::error::{CoreError, CoreResult};
use super::locks::KeyGuard;
use super::{BoxService, new_id};
use crate::storage::{StorageError, Subvol};
use crate::store::{BoxFilter, MountRecord, StoreError, VolumeRecord};

/// Where a data volume may not be mounted, neither on the directory itself nor below it
/// (SPEC §3): the kernel's and the system's own trees, and the ones zomg manages.
pub const RESERVED_MOUNT_DIRS: &[&str] = &[
    "/proc", "/sys", "/dev", "/run", "/etc", "/volumes", "/home", "/box",
];

/// Largest volume size in GB.
pub const MAX_VOLUME_GB: u64 = 65_536;

/// Length of the random part of a fork volume's name, in hex digits.
const FORK_SUFFIX_LEN: usize = 12;

/// The error of a bad mount path, naming the input.
fn bad_path(raw: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::Invalid {
        code: "invalid_mount_path",
        message: format!("invalid mount path {raw:?}: {why}"),
    }
}

/// Checks a `--data` mount path and returns its normal form: absolute, `//` and `/./`
/// collapsed, no trailing `/`. Refuses `..` (rather than resolving it, which could hide a
/// reserved directory behind a harmless-looking path), `/` itself, control characters, and
/// the reserved directories and everything under them.
pub fn normalize_mount_path(raw: &str) -> CoreResult<String> {
    if !raw.starts_with('/') {
        return Err(bad_path(raw, "must be absolute, e.g. /data"));
    }
    if raw.chars().any(char::is_control) {
        return Err(bad_path(raw, "must not contain control characters"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad_path(raw, "must not contain \"..\"")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(bad_path(raw, "cannot be /"));
    }
    let path = format!("/{}", parts.join("/"));
    if path.len() > 4096 {
        return Err(bad_path(raw, "is longer than 4096 bytes"));
    }
    for dir in RESERVED_MOUNT_DIRS {
        if path == *dir || path.starts_with(&format!("{dir}/")) {
            return Err(bad_path(
                raw,
                format!(
                    "cannot be {dir} or sit under it (reserved: {})",
                    RESERVED_MOUNT_DIRS.join(", ")
                ),
            ));
        }
    }
    Ok(path)
}

/// A fresh name for a volume a fork of `box_name` owns: `box-<box_name>-<12 hex>`.
///
/// The box-prefix is the new box's whole name (a DNS label of at most 63 characters), so the
/// name says which box a volume belongs to and stays far below the 255-character limit.
pub fn fork_volume_name(box_name: &BoxName) -> VolumeName {
    let suffix: [u8; FORK_SUFFIX_LEN / 2] = rand::random();
    VolumeName::new(format!("box-{box_name}-{}", hex::encode(suffix)))
        .expect("box names and hex are valid volume names")
}

/// Whether `name` has the shape of a generated fork volume name; users cannot create such
/// names, so a fork never collides with (or is mistaken for) a user's volume.
pub fn is_fork_volume_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("box-") else {
        return false;
    };
    let Some((box_name, suffix)) = rest.rsplit_once('-') else {
        return false;
    };
    suffix.len() == FORK_SUFFIX_LEN
        && suffix
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && BoxName::new(box_name).is_ok()
}

fn volume_not_found(project: &ProjectName, name: &str) -> CoreError {
    CoreError::NotFound {
        code: "volume_not_found",
        message: format!(
            "volume \"{name}\" not found in project \"{project}\" (see `zomg data list`)"
        ),
    }
}

/// `"web"` or `boxes "web", "db"`, for messages naming attached boxes.
fn box_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.len() {
        1 => format!("box {}", quoted[0]),
        _ => format!("boxes {}", quoted.join(", ")),
    }
}

/// What a user tried to do with a volume, for the message refusing it on an owned volume.
#[derive(Debug, Clone, Copy)]
pub(super) enum VolumeUse {
    Show,
    Delete,
    Attach,
}

impl BoxService {
    pub(super) fn volume_lock_key(project: &ProjectName, name: &str) -> String {
        format!("volume:{project}/{name}")
    }

    /// Takes the locks of several keys in sorted order (duplicates once), so that two
    /// callers locking overlapping sets cannot deadlock.
    pub(super) async fn lock_keys(&self, mut keys: Vec<String>) -> Vec<KeyGuard<'_>> {
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for k in &keys {
            guards.push(self.inner.locks.lock(k).await);
        }
        guards
    }

    /// A volume of the project a user may act on directly: 404 when missing, 409
    /// `volume_owned` when a fork's box owns it.
    pub(super) fn user_volume(
        &self,
        project: &ProjectName,
        name: &str,
        usage: VolumeUse,
    ) -> CoreResult<VolumeRecord> {
        let v = self
            .store()
            .get_volume(project.as_str(), name)?
            .ok_or_else(|| volume_not_found(project, name))?;
        let Some(owner_id) = &v.owner_box_id else {
            return Ok(v);
        };
        let owner = match self.store().get_box_by_id(owner_id)? {
            Some(b) => format!("box \"{}\"", b.name),
            None => format!("box {owner_id}"),
        };
        let what = match usage {
            VolumeUse::Show => "shown on its own (see its box's data_mounts)",
            VolumeUse::Delete => "deleted on its own: it is deleted with its box",
            VolumeUse::Attach => "attached to another box",
        };
        Err(CoreError::Conflict {
            code: "volume_owned",
            message: format!(
                "volume \"{name}\" belongs to {owner} (a fork's copy of a volume) and cannot be {what}"
            ),
        })
    }

    /// Names of the boxes of `project` that have each volume attached, by volume id.
    fn attachments(&self, project: &ProjectName) -> CoreResult<BTreeMap<String, Vec<String>>> {
        let boxes = self.store().list_boxes(&BoxFilter {
            project: Some(project.clone()),
            ..Default::default()
        })?;
        let mut by_volume: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for b in boxes {
            for m in &b.data_mounts {
                by_volume
                    .entry(m.volume_id.clone())
                    .or_default()
                    .push(b.name.to_string());
            }
        }
        Ok(by_volume)
    }

    /// The wire form of volumes, with their usage (one filesystem commit for all of them).
    async fn volume_infos(&self, volumes: Vec<VolumeRecord>) -> CoreResult<Vec<VolumeInfo>> {
        let Some(first) = volumes.first() else {
            return Ok(Vec::new());
        };
        let attached = self.attachments(&first.project)?;
        let subvols: Vec<Subvol> = volumes.iter().map(|v| Subvol::volume(&v.id)).collect();
        let usage = self
            .storage(move |s| Ok(subvols.iter().map(|v| s.usage(v).ok()).collect::<Vec<_>>()))
            .await?;
        Ok(volumes
            .into_iter()
            .zip(usage)
            .map(|(v, used_bytes)| VolumeInfo {
                attached_to: attached.get(&v.id).cloned().unwrap_or_default(),
                id: v.id,
                name: v.name,
                project: v.project,
                size_gb: v.size_gb,
                used_bytes,
                owner_box: None,
                created_at: v.created_at,
            })
            .collect())
    }

    /// Creates a data volume: empty, or a snapshot of `from` (a volume of the same project,
    /// a fork's own included). A failure leaves neither subvolume nor record.
    pub async fn create_volume(
        &self,
        project: &ProjectName,
        req: CreateVolume,
    ) -> CoreResult<VolumeInfo> {
        let name =
            VolumeName::new(req.name.as_str()).map_err(|e| CoreError::invalid(e.to_string()))?;
        if is_fork_volume_name(name.as_str()) {
            return Err(CoreError::invalid(format!(
                "volume name \"{name}\" is reserved: names box-<box>-<12 hex digits> are given to the volumes of forks"
            )));
        }
        if let Some(gb) = req.size_gb {
            if gb == 0 || gb > MAX_VOLUME_GB {
                return Err(CoreError::Invalid {
                    code: "invalid_size",
                    message: format!(
                        "size {gb}GB is out of range: must be between 1 and {MAX_VOLUME_GB}"
                    ),
                });
            }
        }
        let from = req
            .from
            .as_deref()
            .map(|f| VolumeName::new(f).map_err(|e| CoreError::invalid(e.to_string())))
            .transpose()?;
        let mut keys = vec![Self::volume_lock_key(project, name.as_str())];
        keys.extend(
            from.iter()
                .map(|f| Self::volume_lock_key(project, f.as_str())),
        );
        let _guards = self.lock_keys(keys).await;

        let exists = || CoreError::Conflict {
            code: "volume_exists",
            message: format!("volume \"{name}\" already exists in project \"{project}\""),
        };
        if self
            .store()
            .get_volume(project.as_str(), name.as_str())?
            .is_some()
        {
            return Err(exists());
        }
        let source = match &from {
            Some(f) => Some(
                self.store()
                    .get_volume(project.as_str(), f.as_str())?
                    .ok_or_else(|| volume_not_found(project, f.as_str()))?,
            ),
            None => None,
        };
        let size_gb = req.size_gb.or(source.as_ref().and_then(|s| s.size_gb));
        if let (Some(gb), Some(src)) = (req.size_gb, &source) {
            let vol = Subvol::volume(&src.id);
            let used = self
                .storage(move |s| s.usage(&vol))
                .await
                .map_err(|e| CoreError::internal("measuring the source volume failed", e))?;
            if used >= gb << 30 {
                return Err(CoreError::Invalid {
                    code: "invalid_size",
                    message: format!(
                        "size {gb}GB is too small: volume \"{}\" holds {}",
                        src.name,
                        format_bytes(used)
                    ),
                });
            }
        }

        let record = VolumeRecord {
            id: new_id("v"),
            project: project.clone(),
            name: name.clone(),
            size_gb,
            owner_box_id: None,
            created_at: Utc::now(),
        };
        let vol = Subvol::volume(&record.id);
        let src = source.as_ref().map(|s| Subvol::volume(&s.id));
        let explicit_size = req.size_gb;
        let made = {
            let vol = vol.clone();
            self.storage(move |s| {
                let made = match &src {
                    Some(src) => s.snapshot(src, &vol, false),
                    None => s.create(&vol),
                };
                let limited = made.and_then(|()| match (explicit_size, &src) {
                    // A snapshot keeps its source's limit unless a size was asked for.
                    (None, Some(_)) => Ok(()),
                    (size, _) => s.set_limit(&vol, size.map(|gb| gb << 30)),
                });
                if let Err(e) = limited {
                    return Err(match s.delete(&vol) {
                        Ok(()) => e,
                        Err(c) => StorageError::io(
                            format!("{e}; removing the half-made volume also failed"),
                            std::io::Error::other(c.to_string()),
                        ),
                    });
                }
                Ok(())
            })
            .await
        };
        made.map_err(|e| CoreError::internal(format!("creating volume \"{name}\" failed"), e))?;
        if let Err(e) = self.store().insert_volume(&record) {
            let vol = vol.clone();
            self.storage(move |s| s.delete(&vol)).await.ok();
            return Err(match e {
                StoreError::Conflict(_) => exists(),
                e => e.into(),
            });
        }
        info!(volume = %name, project = %project, id = %record.id, from = ?from, "volume created");
        let mut infos = self.volume_infos(vec![record]).await?;
        Ok(infos.remove(0))
    }

    /// The project's volumes, by name; volumes a box owns are left out.
    pub async fn list_volumes(&self, project: &ProjectName) -> CoreResult<VolumeList> {
        let volumes: Vec<VolumeRecord> = self
            .store()
            .list_volumes(Some(project.as_str()))?
            .into_iter()
            .filter(|v| v.owner_box_id.is_none())
            .collect();
        Ok(VolumeList {
            volumes: self.volume_infos(volumes).await?,
        })
    }

    /// One volume, with its usage and the boxes it is attached to.
    pub async fn get_volume(
        &self,
        project: &ProjectName,
        name: &VolumeName,
    ) -> CoreResult<VolumeInfo> {
        let v = self.user_volume(project, name.as_str(), VolumeUse::Show)?;
        let mut infos = self.volume_infos(vec![v]).await?;
        Ok(infos.remove(0))
    }

    /// Deletes a volume that no box has attached (409 `volume_in_use` naming them
    /// otherwise).
    pub async fn delete_volume(&self, project: &ProjectName, name: &VolumeName) -> CoreResult<()> {
        let _guard = self
            .inner
            .locks
            .lock(&Self::volume_lock_key(project, name.as_str()))
            .await;
        let v = self.user_volume(project, name.as_str(), VolumeUse::Delete)?;
        if let Some(users) = self.attachments(project)?.remove(&v.id) {
            return Err(CoreError::Conflict {
                code: "volume_in_use",
                message: format!(
                    "volume \"{name}\" is attached to {}: delete the {} first",
                    box_list(&users),
                    if users.len() == 1 { "box" } else { "boxes" }
                ),
            });
        }
        let vol = Subvol::volume(&v.id);
        self.storage(move |s| s.delete(&vol))
            .await
            .map_err(|e| CoreError::internal(format!("deleting volume \"{name}\" failed"), e))?;
        self.store().delete_volume(&v.id)?;
        info!(volume = %name, project = %project, id = %v.id, "volume deleted");
        Ok(())
    }

    /// Checks `--data` requests against the project's volumes and the mounts the box
    /// already has (`existing`, a fork's inherited ones), and turns them into mount records.
    /// Callers hold the locks of the named volumes.
    pub(super) fn resolve_mounts(
        &self,
        project: &ProjectName,
        specs: &[DataMountSpec],
        existing: &[MountRecord],
    ) -> CoreResult<Vec<MountRecord>> {
        let mut names: BTreeSet<&str> = existing.iter().map(|m| m.name.as_str()).collect();
        let mut paths: BTreeSet<String> = existing.iter().map(|m| m.path.clone()).collect();
        let mut mounts = Vec::with_capacity(specs.len());
        for spec in specs {
            let path = normalize_mount_path(&spec.path)?;
            if !names.insert(spec.name.as_str()) {
                return Err(CoreError::Invalid {
                    code: "duplicate_mount",
                    message: format!(
                        "volume \"{}\" is mounted twice: each volume can be mounted once per box",
                        spec.name
                    ),
                });
            }
            if !paths.insert(path.clone()) {
                return Err(CoreError::Invalid {
                    code: "duplicate_mount",
                    message: format!(
                        "two mounts use the path \"{path}\": each mount path must be unique"
                    ),
                });
            }
            let v = self.user_volume(project, spec.name.as_str(), VolumeUse::Attach)?;
            mounts.push(MountRecord {
                volume_id: v.id,
                name: v.name,
                path,
                read_only: spec.read_only,
            });
        }
        Ok(mounts)
    }

    /// The lock keys of the volumes a create names.
    pub(super) fn mount_lock_keys(project: &ProjectName, specs: &[DataMountSpec]) -> Vec<String> {
        specs
            .iter()
            .map(|m| Self::volume_lock_key(project, m.name.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_table() {
        let ok = [
            ("/data", "/data"),
            ("/data/", "/data"),
            ("//data//x//", "/data/x"),
            ("/./data/./x/.", "/data/x"),
            ("/srv/cache", "/srv/cache"),
            ("/tmp/x", "/tmp/x"),
            ("/homes", "/homes"),
            ("/boxes/x", "/boxes/x"),
            ("/etcetera", "/etcetera"),
            ("/var/lib/data", "/var/lib/data"),
            ("/mnt/a b", "/mnt/a b"),
            ("/Proc", "/Proc"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize_mount_path(raw).unwrap(), want, "{raw:?}");
        }
        let bad = [
            ("data", "must be absolute"),
            ("", "must be absolute"),
            ("./data", "must be absolute"),
            ("/", "cannot be /"),
            ("//", "cannot be /"),
            ("/./", "cannot be /"),
            ("/data/../etc", "must not contain \"..\""),
            ("/..", "must not contain \"..\""),
            ("/data/..", "must not contain \"..\""),
            ("/a\nb", "control characters"),
            ("/etc", "cannot be /etc or sit under it"),
            ("/etc/", "cannot be /etc or sit under it"),
            ("//etc//app", "cannot be /etc or sit under it"),
            ("/./proc", "cannot be /proc"),
            ("/sys/fs", "cannot be /sys"),
            ("/dev/shm/x", "cannot be /dev"),
            ("/run/app", "cannot be /run"),
            ("/volumes", "cannot be /volumes"),
            ("/home/alice", "cannot be /home"),
            ("/box", "cannot be /box"),
            ("/box/./x", "cannot be /box"),
        ];
        for (raw, want) in bad {
            let e = normalize_mount_path(raw).unwrap_err();
            assert_eq!(e.code(), "invalid_mount_path", "{raw:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("invalid mount path {raw:?}: ")),
                "{msg}"
            );
            assert!(msg.contains(want), "{raw:?}: {msg}");
        }
        let long = format!("/{}", "a/".repeat(2100));
        assert!(normalize_mount_path(&long).is_err());
    }

    /// An independent statement of the rule, for the property test below.
    fn oracle(raw: &str) -> Option<String> {
        if !raw.starts_with('/') {
            return None;
        }
        let comps: Vec<&str> = raw
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.is_empty() || comps.contains(&"..") {
            return None;
        }
        let reserved = ["proc", "sys", "dev", "run", "etc", "volumes", "home", "box"];
        if reserved.contains(&comps[0]) {
            return None;
        }
        Some(format!("/{}", comps.join("/")))
    }

    #[test]
    fn mount_paths_property() {
        use rand::Rng;
        use rand::seq::IndexedRandom;
        let pieces = [
            "", ".", "..", "etc", "etcx", "data", "proc", "x", "home", "homes", "box", "boxes",
            "run", "dev", "sys", "volumes", "tmp", "a.b", "...", "-",
        ];
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let n = rng.random_range(0..6);
            let mut raw = String::new();
            if rng.random_bool(0.9) {
                raw.push('/');
            }
            let parts: Vec<&str> = (0..n).map(|_| *pieces.choose(&mut rng).unwrap()).collect();
            raw.push_str(&parts.join("/"));
            if rng.random_bool(0.2) {
                raw.push('/');
            }
            let got = normalize_mount_path(&raw).ok();
            assert_eq!(got, oracle(&raw), "{raw:?}");
            if let Some(p) = got {
                // The normal form is a fixed point and has no redundant separators.
                assert_eq!(normalize_mount_path(&p).unwrap(), p);
                assert!(
                    !p.contains("//") && !p.contains("/./") && !p.ends_with('/'),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn fork_volume_names() {
        let b: BoxName = "web-1".parse().unwrap();
        let n = fork_volume_name(&b);
        assert!(n.as_str().starts_with("box-web-1-"), "{n}");
        assert_eq!(n.as_str().len(), "box-web-1-".len() + FORK_SUFFIX_LEN);
        assert!(is_fork_volume_name(n.as_str()));
        assert_ne!(fork_volume_name(&b), n, "the suffix is random");
        for other in [
            "box-web",
            "box-web-0123456789a",
            "box-web-0123456789abc",
            "box-web-0123456789AB",
            "box--0123456789ab",
            "box-Web-0123456789ab",
            "cache",
            "box-0123456789ab",
        ] {
            assert!(!is_fork_volume_name(other), "{other}");
        }
        let long = format!("box-{}-0123456789ab", "a".repeat(63));
        assert!(is_fork_volume_name(&long));
        assert!(VolumeName::new(long).is_ok());
    }
}
