//! `create --fork SRC` (SPEC §3): a new box as a copy-on-write clone of another.
//!
//! The clone gets a snapshot of the source's root and, for each data volume attached to the
//! source, a snapshot of that volume as a new volume owned by the clone
//! (`box-<clone name>-<12 hex>`, see [`super::volumes::fork_volume_name`]), mounted at the
//! same path with the same mode. It inherits the source's base, cpus, ram, storage limit,
//! tags and environment (the request's `-t`/`-e` are merged over them), port and
//! termination grace; resources given in the request override the inherited ones. Extra
//! `--data` mounts follow the rules of a normal create.
//!
//! All volumes attached to a box are data volumes: project users' homes (the only system
//! volumes of the SPEC) are not implemented yet; when they are, they are shared by every box
//! of the project and must not be copied here.
//!
//! # Consistency
//! Every snapshot holds each write the source's processes completed before the fork began:
//! btrfs flushes a subvolume's dirty pages into its snapshot, so no `sync` is needed for
//! that. A running source with data volumes is frozen (cgroup freezer) for the few
//! milliseconds the snapshots take, so its root and volumes are captured at one instant;
//! the filesystem is synced (`syncfs`) just before, so that the frozen window does not
//! include writing out what the box had buffered. The clone is
//! crash-consistent: it sees the files as they would be after a power cut at that instant —
//! what applications had written, not what they had only buffered in their own memory. A
//! stopped source is copied exactly. Only the source's own processes are frozen: a volume it
//! shares with other running boxes is captured consistently with the source's writes, not
//! with theirs. If the source cannot be frozen (a task stuck in the
//! kernel), the fork goes on without it and each subvolume is still consistent on its own.
//!
//! # Locks and cost
//! The clone's lock is held throughout; the source's lock only from loading its record to
//! the end of the snapshots, so the source can be stopped or deleted while the clone boots.
//! The two are taken in key order, so two forks of each other cannot deadlock, and a
//! concurrent delete of the source either finishes first (the fork answers 404) or waits
//! for the snapshots. Snapshots are constant-time: the cost does not grow with the data.

use chrono::Utc;
use tracing::{info, warn};
use zomg_sdk::{BoxInfo, BoxName, BoxStatus, CreateBox, ProjectName};

use super::boxes::Requested;
use super::error::{CoreError, CoreResult};
use super::volumes::fork_volume_name;
use super::{BoxService, new_id};
use crate::storage::Subvol;
use crate::store::{BoxRecord, MountRecord, VolumeRecord};

/// How many times a failed thaw is retried before the source is reported stuck.
const THAW_ATTEMPTS: u32 = 3;

impl BoxService {
    /// Creates `name` as a clone of `req.fork`; `asked` holds the request's checked resource
    /// overrides. Called by [`BoxService::create`] after the checks common to both.
    pub(super) async fn fork(
        &self,
        project: &ProjectName,
        name: BoxName,
        req: CreateBox,
        asked: Requested,
    ) -> CoreResult<BoxInfo> {
        let began = std::time::Instant::now();
        let source = req.fork.as_deref().unwrap_or_default();
        let src_name =
            BoxName::new(source).map_err(|e| CoreError::invalid(format!("cannot fork: {e}")))?;
        if src_name == name {
            return Err(CoreError::Invalid {
                code: "fork_self",
                message: format!("box \"{name}\" cannot be cloned from itself"),
            });
        }
        let new_key = Self::lock_key(project, &name);
        let src_key = Self::lock_key(project, &src_name);
        let src_first = src_key < new_key;
        let mut guards = self.lock_keys(vec![new_key, src_key]).await;
        let src_guard = guards.remove(if src_first { 0 } else { 1 });

        let src = self
            .store()
            .get_box(project.as_str(), src_name.as_str())?
            .ok_or_else(|| CoreError::NotFound {
                code: "box_not_found",
                message: format!(
                    "cannot fork box \"{src_name}\": it does not exist in project \"{project}\""
                ),
            })?;
        if matches!(src.status, BoxStatus::Creating | BoxStatus::Deleting) {
            return Err(CoreError::Conflict {
                code: "box_busy",
                message: format!("cannot fork box \"{src_name}\" while it is {}", src.status),
            });
        }
        let storage_gb = asked.storage_gb.or(src.storage_gb);
        if let Some(gb) = asked.storage_gb.filter(|gb| Some(*gb) != src.storage_gb) {
            let root = Subvol::root(&src.id);
            self.check_storage_fits(gb, &root, &format!("the root of box \"{src_name}\""))
                .await?;
        }

        let id = new_id("b");
        let now = Utc::now();
        let mut copies: Vec<(String, VolumeRecord)> = Vec::with_capacity(src.data_mounts.len());
        let mut data_mounts = Vec::with_capacity(src.data_mounts.len() + req.data_mounts.len());
        for m in &src.data_mounts {
            let original = self
                .store()
                .get_volume_by_id(&m.volume_id)?
                .ok_or_else(|| {
                    CoreError::internal(
                        format!("cannot fork box \"{src_name}\""),
                        format!("its volume {} ({}) has no record", m.name, m.volume_id),
                    )
                })?;
            let copy = VolumeRecord {
                id: new_id("v"),
                project: project.clone(),
                name: fork_volume_name(&name),
                size_gb: original.size_gb,
                owner_box_id: Some(id.clone()),
                created_at: now,
            };
            data_mounts.push(MountRecord {
                volume_id: copy.id.clone(),
                name: copy.name.clone(),
                path: m.path.clone(),
                read_only: m.read_only,
            });
            copies.push((original.id, copy));
        }
        let volume_guards = self
            .lock_keys(Self::mount_lock_keys(project, &req.data_mounts))
            .await;
        let extra = self.resolve_mounts(project, &req.data_mounts, &data_mounts)?;
        data_mounts.extend(extra);

        let mut environment = src.environment.clone();
        environment.extend(req.environment);
        let mut tags = src.tags.clone();
        tags.extend(req.tags);
        let mut record = BoxRecord {
            id,
            project: project.clone(),
            name: name.clone(),
            status: BoxStatus::Creating,
            status_reason: None,
            base: src.base.clone(),
            port: asked.port.or(src.port),
            tags,
            environment,
            data_mounts,
            millicpus: asked.millicpus.unwrap_or(src.millicpus),
            ram_mb: asked.ram_mb.unwrap_or(src.ram_mb),
            storage_gb,
            termination_grace_seconds: asked.grace_seconds.unwrap_or(src.termination_grace_seconds),
            forked_from: Some(format!("{project}:{src_name}")),
            published_domains: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.insert_new_box(&record)?;
        drop(volume_guards);

        // From here on, a failure is undone by deleting the record and everything it names
        // or owns, which is why the copies are recorded before they are made.
        let prepared = began.elapsed();
        let snapshotted = async {
            for (_, copy) in &copies {
                self.store().insert_volume(copy)?;
            }
            self.snapshot_source(&src, &record, &copies).await
        }
        .await;
        drop(src_guard);
        let snapshots = began.elapsed() - prepared;
        let provisioned = match snapshotted {
            Ok(()) => {
                let limited = if storage_gb == src.storage_gb {
                    Ok(()) // a snapshot keeps its source's limit
                } else {
                    let root = Subvol::root(&record.id);
                    self.storage(move |s| s.set_limit(&root, storage_gb.map(|gb| gb << 30)))
                        .await
                        .map_err(|e| CoreError::internal("setting the storage limit failed", e))
                };
                match limited {
                    Ok(()) => self.start_new(&record).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = provisioned {
            return Err(self.undo_create(&record, e).await);
        }
        record.status = BoxStatus::Running;
        record.updated_at = Utc::now();
        self.store().update_box(&record)?;
        info!(
            box = %record.name, project = %record.project, id = %record.id,
            source = %src_name, volumes = copies.len(),
            prepare_ms = prepared.as_secs_f64() * 1e3,
            snapshots_ms = snapshots.as_secs_f64() * 1e3,
            total_ms = began.elapsed().as_secs_f64() * 1e3,
            "box forked"
        );
        Ok(self.to_wire(&record))
    }

    /// Snapshots the source's root into the clone's root and each source volume into its
    /// copy, with a running source frozen when there is more than one subvolume to take.
    async fn snapshot_source(
        &self,
        src: &BoxRecord,
        clone: &BoxRecord,
        copies: &[(String, VolumeRecord)],
    ) -> CoreResult<()> {
        let mut pairs = vec![(Subvol::root(&src.id), Subvol::root(&clone.id))];
        pairs.extend(
            copies
                .iter()
                .map(|(from, copy)| (Subvol::volume(from), Subvol::volume(&copy.id))),
        );
        let freeze = pairs.len() > 1 && src.status == BoxStatus::Running;
        if freeze {
            // Write what the source has buffered while it still runs, so the snapshots
            // taken while it is frozen only flush the last few milliseconds of writes.
            let root = Subvol::root(&src.id);
            if let Err(e) = self.storage(move |s| s.flush(&root)).await {
                warn!(box = %src.name, project = %src.project, error = %e, "flush before fork failed");
            }
        }
        let frozen = if freeze {
            match self.runtime().freeze(&src.id).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(
                        box = %src.name, project = %src.project, error = %e,
                        "cannot freeze the fork source; its subvolumes are snapshotted one by one"
                    );
                    false
                }
            }
        } else {
            false
        };
        let result = self
            .storage(move |s| {
                for (from, to) in &pairs {
                    s.snapshot(from, to, false)?;
                }
                Ok(())
            })
            .await;
        if frozen {
            self.thaw_source(src).await;
        }
        result.map_err(|e| {
            CoreError::internal(format!("snapshotting box \"{}\" failed", src.name), e)
        })
    }

    /// Thaws the source after its snapshots, retrying; a source that stays frozen is logged
    /// (stopping it thaws it, and reconciliation thaws every box on start).
    async fn thaw_source(&self, src: &BoxRecord) {
        let mut last = None;
        for _ in 0..THAW_ATTEMPTS {
            match self.runtime().thaw(&src.id).await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            tracing::error!(
                box = %src.name, project = %src.project, error = %e,
                "the fork source could not be thawed and stays frozen"
            );
        }
    }
}
