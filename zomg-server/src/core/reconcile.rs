//! Start-up reconciliation: make what exists match what the store says should exist.
//!
//! - `creating`: the server died mid-create; the half-made box is removed entirely.
//! - `running`: a box whose container vanished is started again, or marked `failed`.
//! - `stopping`: the stop is finished.
//! - `stopped`/`failed`: a container that should not run is stopped.
//! - `deleting`: the pending delete operation is resumed.
//! - Containers and root subvolumes that no record owns are removed and reported, and so
//!   are volume subvolumes without a record and fork volumes whose box is gone.
//! - Running boxes are thawed (a crash during a fork's snapshots leaves its source frozen).

use std::collections::HashSet;
use std::time::Duration;

use tracing::{info, warn};
use zomg_sdk::BoxStatus;

use super::BoxService;
use super::error::CoreResult;
use crate::runtime::RunState;
use crate::storage::{Subvol, SubvolKind};
use crate::store::{BoxFilter, OpKind};

/// What reconciliation found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Boxes whose container was missing and that were started again.
    pub restarted: Vec<String>,
    /// Boxes that could not be started again (now `failed`).
    pub failed: Vec<String>,
    /// Half-created boxes that were removed.
    pub removed_incomplete: Vec<String>,
    /// Stops that were finished.
    pub finished_stops: Vec<String>,
    /// Delete operations that were resumed.
    pub resumed_deletes: Vec<String>,
    /// Containers no record owns (removed).
    pub orphan_containers: Vec<String>,
    /// Root subvolumes no record owns (deleted).
    pub orphan_roots: Vec<String>,
    /// Volumes nothing owns any more (deleted): `project:name` of a fork volume whose box
    /// is gone, or the id of a subvolume without a record.
    pub orphan_volumes: Vec<String>,
}

impl BoxService {
    /// Reconciles the store with the runtime and storage; call once on start, before
    /// serving requests.
    pub async fn reconcile(&self) -> CoreResult<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let boxes = self.store().list_boxes(&BoxFilter::default())?;
        for mut b in boxes.iter().cloned() {
            let label = format!("{}:{}", b.project, b.name);
            let state = self.runtime().state(&b.id).await?;
            match b.status {
                BoxStatus::Creating => {
                    // Container, root, the volumes of a half-made fork, record.
                    match self.cleanup_box(&b).await {
                        Ok(()) => report.removed_incomplete.push(label),
                        Err(e) => {
                            let reason = format!("interrupted create could not be cleaned up: {e}");
                            self.set_status(&mut b, BoxStatus::Failed, Some(reason))?;
                            report.failed.push(label);
                        }
                    }
                }
                BoxStatus::Running => {
                    if matches!(state, RunState::Running { .. }) {
                        // A crash during a fork's snapshots would leave the source frozen.
                        if let Err(e) = self.runtime().thaw(&b.id).await {
                            warn!(box = %label, error = %e, "cannot thaw box");
                        }
                    } else {
                        match self.start_existing(&mut b).await {
                            Ok(()) => report.restarted.push(label),
                            Err(_) => report.failed.push(label),
                        }
                    }
                }
                BoxStatus::Stopping => {
                    let grace = Duration::from_secs(u64::from(b.termination_grace_seconds));
                    match self.runtime().stop(&b.id, grace).await {
                        Ok(()) => {
                            self.set_status(&mut b, BoxStatus::Stopped, None)?;
                            report.finished_stops.push(label);
                        }
                        Err(e) => {
                            self.set_status(
                                &mut b,
                                BoxStatus::Failed,
                                Some(format!("stop failed: {e}")),
                            )?;
                            report.failed.push(label);
                        }
                    }
                }
                BoxStatus::Stopped | BoxStatus::Failed => {
                    if matches!(state, RunState::Running { .. }) {
                        self.runtime().stop(&b.id, Duration::ZERO).await?;
                    }
                }
                BoxStatus::Deleting => {}
            }
        }

        for op in self.store().pending_ops()? {
            match op.kind {
                OpKind::DeleteBox => {
                    report.resumed_deletes.push(op.label.clone());
                    self.spawn_delete_retries(op);
                }
            }
        }

        let known: HashSet<&str> = boxes.iter().map(|b| b.id.as_str()).collect();
        for id in self.runtime().list().await? {
            if !known.contains(id.as_str()) {
                warn!(container = %id, "removing a container that no box owns");
                self.runtime().remove(&id).await?;
                report.orphan_containers.push(id);
            }
        }
        let roots = self.storage(|s| s.list(SubvolKind::Root)).await?;
        for root in roots {
            if !known.contains(root.name.as_str()) {
                warn!(subvolume = %root, "deleting a root subvolume that no box owns");
                let name = root.name.clone();
                self.storage(move |s| s.delete(&root)).await?;
                report.orphan_roots.push(name);
            }
        }
        // Volumes: a subvolume without a record is what an interrupted `data create` left;
        // a fork volume whose box is gone was left by an interrupted delete or create.
        let volumes = self.store().list_volumes(None)?;
        let boxes_now: HashSet<String> = self
            .store()
            .list_boxes(&BoxFilter::default())?
            .into_iter()
            .map(|b| b.id)
            .collect();
        for v in &volumes {
            if v.owner_box_id
                .as_ref()
                .is_some_and(|o| !boxes_now.contains(o))
            {
                warn!(volume = %v.name, project = %v.project, "deleting a fork volume whose box is gone");
                let vol = Subvol::volume(&v.id);
                self.storage(move |s| s.delete(&vol)).await?;
                self.store().delete_volume(&v.id)?;
                report
                    .orphan_volumes
                    .push(format!("{}:{}", v.project, v.name));
            }
        }
        let recorded: HashSet<&str> = volumes.iter().map(|v| v.id.as_str()).collect();
        let subvols = self.storage(|s| s.list(SubvolKind::Volume)).await?;
        for vol in subvols {
            if !recorded.contains(vol.name.as_str()) {
                warn!(subvolume = %vol, "deleting a volume subvolume that no record names");
                let name = vol.name.clone();
                self.storage(move |s| s.delete(&vol)).await?;
                report.orphan_volumes.push(name);
            }
        }
        info!(?report, "reconciled");
        Ok(report)
    }
}
