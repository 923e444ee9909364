//! Delete with cleanup that survives failures and restarts (SPEC §3 delete).
//!
//! A delete marks the box `deleting` and records a `DeleteBox` operation, then tries the
//! cleanup once inline. If that works the client hears `deleted` (200). If not, it hears
//! `deleting` (202) and a background task retries with backoff; after the last attempt the
//! operation is `failed` and the box stays visible as `deleting` with the error as reason.
//! Pending operations are resumed when the server starts.

use chrono::Utc;
use tracing::{info, warn};
use zomg_sdk::{BoxName, BoxStatus, DeleteState, DeleteStatus, ProjectName};

use super::error::{CoreError, CoreResult};
use super::{BoxService, new_id};
use crate::storage::Subvol;
use crate::store::{BoxRecord, OpKind, OpRecord, OpState};

impl BoxService {
    /// Deletes a box. Deleting a missing box succeeds; a running box needs `force`.
    pub async fn delete(
        &self,
        project: &ProjectName,
        name: &BoxName,
        force: bool,
    ) -> CoreResult<DeleteStatus> {
        let guard = self.inner.locks.lock(&Self::lock_key(project, name)).await;
        let Some(mut b) = self.store().get_box(project.as_str(), name.as_str())? else {
            return Ok(status(name, DeleteState::Deleted, None));
        };
        if b.status == BoxStatus::Deleting {
            let op = self.store().latest_op(OpKind::DeleteBox, &b.id)?;
            if op.is_some_and(|o| o.state == OpState::Pending) {
                drop(guard);
                return self.delete_status(project, name);
            }
            // The last delete gave up (or never recorded itself): try again from scratch.
        } else {
            if !force
                && matches!(
                    b.status,
                    BoxStatus::Running | BoxStatus::Creating | BoxStatus::Stopping
                )
            {
                return Err(CoreError::Conflict {
                    code: "box_running",
                    message: "box is running".to_owned(),
                });
            }
            self.set_status(&mut b, BoxStatus::Deleting, None)?;
        }
        let now = Utc::now();
        let mut op = OpRecord {
            id: new_id("op"),
            kind: OpKind::DeleteBox,
            target: b.id.clone(),
            label: label(&b),
            state: OpState::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        self.store().insert_op(&op)?;
        let done = self.attempt_delete(&b, &mut op).await?;
        drop(guard);
        if done {
            info!(box = %name, project = %project, "box deleted");
            return Ok(status(name, DeleteState::Deleted, None));
        }
        let message = op.last_error.clone();
        self.spawn_delete_retries(op);
        Ok(status(name, DeleteState::Deleting, message))
    }

    /// Where the delete of a box stands (SPEC §3 delete-status).
    pub fn delete_status(&self, project: &ProjectName, name: &BoxName) -> CoreResult<DeleteStatus> {
        match self.store().get_box(project.as_str(), name.as_str())? {
            Some(b) if b.status == BoxStatus::Deleting => {
                let op = self.store().latest_op(OpKind::DeleteBox, &b.id)?;
                let state = match op.as_ref().map(|o| o.state) {
                    Some(OpState::Failed) => DeleteState::Failed,
                    _ => DeleteState::Deleting,
                };
                Ok(status(name, state, op.and_then(|o| o.last_error)))
            }
            Some(_) => Ok(status(name, DeleteState::Active, None)),
            None => Ok(status(name, DeleteState::Deleted, None)),
        }
    }

    /// One cleanup attempt; records its outcome in `op`. `Ok(true)` when everything is gone.
    async fn attempt_delete(&self, b: &BoxRecord, op: &mut OpRecord) -> CoreResult<bool> {
        op.attempts += 1;
        op.updated_at = Utc::now();
        match self.cleanup_box(b).await {
            Ok(()) => {
                op.state = OpState::Done;
                op.last_error = None;
                self.store().update_op(op)?;
                Ok(true)
            }
            Err(e) => {
                warn!(box = %b.name, project = %b.project, attempt = op.attempts, error = %e, "delete cleanup failed");
                op.last_error = Some(e);
                if op.attempts >= self.settings().delete_attempts {
                    op.state = OpState::Failed;
                }
                self.store().update_op(op)?;
                Ok(false)
            }
        }
    }

    /// Removes the container, the root, the box-owned volumes, then the record. Each step is
    /// idempotent, so a retry after a partial failure picks up where it stopped.
    pub(super) async fn cleanup_box(&self, b: &BoxRecord) -> Result<(), String> {
        self.runtime()
            .remove(&b.id)
            .await
            .map_err(|e| format!("removing the container: {e}"))?;
        let root = Subvol::root(&b.id);
        self.storage(move |s| s.delete(&root))
            .await
            .map_err(|e| format!("deleting the root filesystem: {e}"))?;
        let owned: Vec<_> = self
            .store()
            .list_volumes(Some(b.project.as_str()))
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|v| v.owner_box_id.as_deref() == Some(b.id.as_str()))
            .collect();
        for v in owned {
            let vol = Subvol::volume(&v.id);
            self.storage(move |s| s.delete(&vol))
                .await
                .map_err(|e| format!("deleting volume {}: {e}", v.name))?;
            self.store()
                .delete_volume(&v.id)
                .map_err(|e| e.to_string())?;
        }
        self.store().delete_box(&b.id).map_err(|e| e.to_string())
    }

    /// Retries a pending delete in the background with exponential backoff.
    pub(super) fn spawn_delete_retries(&self, mut op: OpRecord) {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut backoff = svc.settings().delete_backoff;
            while op.state == OpState::Pending {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                let b = match svc.store().get_box_by_id(&op.target) {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        // The record is gone: an earlier attempt finished.
                        op.state = OpState::Done;
                        svc.store().update_op(&op).ok();
                        return;
                    }
                    Err(e) => {
                        warn!(op = %op.id, error = %e, "delete retry cannot read the box");
                        continue;
                    }
                };
                let guard = svc
                    .inner
                    .locks
                    .lock(&Self::lock_key(&b.project, &b.name))
                    .await;
                match svc.attempt_delete(&b, &mut op).await {
                    Ok(true) => {
                        info!(box = %b.name, project = %b.project, "box deleted after retry")
                    }
                    Ok(false) if op.state == OpState::Failed => {
                        let mut b = b;
                        svc.set_status(&mut b, BoxStatus::Deleting, op.last_error.clone())
                            .ok();
                        warn!(box = %b.name, project = %b.project, "delete failed after all retries");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(op = %op.id, error = %e, "delete retry could not record its outcome")
                    }
                }
                drop(guard);
            }
        });
    }
}

fn label(b: &BoxRecord) -> String {
    format!("{}:{}", b.project, b.name)
}

fn status(name: &BoxName, state: DeleteState, message: Option<String>) -> DeleteStatus {
    DeleteStatus {
        name: name.to_string(),
        status: state,
        message,
    }
}
