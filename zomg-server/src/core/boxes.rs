//! Box lifecycle: create, show, list, update, stop, resume.

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};
use zomg_sdk::units::format_bytes;
use zomg_sdk::{
    BoxConfig, BoxInfo, BoxList, BoxName, BoxStatus, CreateBox, ProjectName, UpdateBox,
};

use super::error::{CoreError, CoreResult};
use super::rules::{self, Settings as UpdateSettings};
use super::{BoxService, new_id};
use crate::runtime::{Resources, RunState, RuntimeError};
use crate::storage::Subvol;
use crate::store::{BoxFilter, BoxRecord, StoreError};

/// Largest page `list` returns.
pub const MAX_PAGE: usize = 1000;
/// Page size when the client names none.
pub const DEFAULT_PAGE: usize = 100;

/// A `list` request after parsing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `None` = every project.
    pub project: Option<ProjectName>,
    /// Name prefix.
    pub prefix: Option<String>,
    /// Tags that must all match.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Page size.
    pub max_results: Option<usize>,
    /// The `next_continuation_token` of the previous page.
    pub continuation_token: Option<String>,
}

/// What a create asks for beyond names: each `None` takes the default (or, for a fork, the
/// source's value).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Requested {
    pub millicpus: Option<u32>,
    pub ram_mb: Option<u64>,
    pub storage_gb: Option<u64>,
    pub port: Option<u16>,
    pub grace_seconds: Option<u32>,
}

impl BoxService {
    /// The wire form of a record.
    pub fn to_wire(&self, b: &BoxRecord) -> BoxInfo {
        BoxInfo {
            id: b.id.clone(),
            name: b.name.clone(),
            project: b.project.clone(),
            status: b.status,
            status_reason: b.status_reason.clone(),
            base: b.base.clone(),
            // Box URLs need the local proxy, which is not built yet: no URL rather than
            // one that does not answer.
            url: None,
            port: b.port,
            created_at: b.created_at,
            updated_at: b.updated_at,
            published_domains: b.published_domains.clone(),
            tags: b.tags.clone(),
            environment: b.environment.clone(),
            data_mounts: b.data_mounts.iter().map(|m| m.to_wire()).collect(),
            config: BoxConfig {
                cpus: f64::from(b.millicpus) / 1000.0,
                ram_mb: b.ram_mb,
                storage_gb: b.storage_gb,
            },
            termination_grace_period_seconds: b.termination_grace_seconds,
            storage_used_bytes: None,
            forked_from: b.forked_from.clone(),
        }
    }

    pub(super) fn lock_key(project: &ProjectName, name: &BoxName) -> String {
        format!("{project}/{name}")
    }

    /// Loads a box or answers 404.
    pub(super) fn load(&self, project: &ProjectName, name: &BoxName) -> CoreResult<BoxRecord> {
        self.store()
            .get_box(project.as_str(), name.as_str())?
            .ok_or_else(|| CoreError::box_not_found(project.as_str(), name.as_str()))
    }

    /// Shows one box, with its storage use when the backend can tell.
    pub async fn get(&self, project: &ProjectName, name: &BoxName) -> CoreResult<BoxInfo> {
        let b = self.load(project, name)?;
        let mut info = self.to_wire(&b);
        let root = Subvol::root(&b.id);
        info.storage_used_bytes = self.storage(move |s| s.usage(&root)).await.ok();
        Ok(info)
    }

    /// Lists boxes, one page at a time, ordered by (project, name).
    pub fn list(&self, q: &ListQuery) -> CoreResult<BoxList> {
        rules::check_tags(&q.tags)?;
        let page = q.max_results.unwrap_or(DEFAULT_PAGE);
        if page == 0 || page > MAX_PAGE {
            return Err(CoreError::invalid(format!(
                "max_results {page} is out of range: must be between 1 and {MAX_PAGE}"
            )));
        }
        let after = match &q.continuation_token {
            Some(t) => Some(
                t.split_once('/')
                    .map(|(p, n)| (p.to_owned(), n.to_owned()))
                    .ok_or_else(|| {
                        CoreError::invalid(format!("invalid continuation_token {t:?}"))
                    })?,
            ),
            None => None,
        };
        let mut rows = self.store().list_boxes(&BoxFilter {
            project: q.project.clone(),
            prefix: q.prefix.clone(),
            tags: q.tags.clone(),
            after,
            limit: Some(page + 1),
        })?;
        let has_more = rows.len() > page;
        rows.truncate(page);
        let next_continuation_token = has_more
            .then(|| rows.last().map(|b| format!("{}/{}", b.project, b.name)))
            .flatten();
        Ok(BoxList {
            boxes: rows.iter().map(|b| self.to_wire(b)).collect(),
            has_more,
            next_continuation_token,
        })
    }

    /// Creates a box from a base (or, with `fork`, as a clone of another box) and starts
    /// it; answers once it runs. A failure leaves nothing behind: no record, no root or fork
    /// volume subvolume, no container.
    pub async fn create(&self, project: &ProjectName, req: CreateBox) -> CoreResult<BoxInfo> {
        let name =
            BoxName::new(req.name.as_str()).map_err(|e| CoreError::invalid(e.to_string()))?;
        if req.fork.is_some() && req.base.is_some() {
            return Err(CoreError::invalid("--base cannot be used with --fork"));
        }
        rules::check_environment(&req.environment)?;
        rules::check_tags(&req.tags)?;
        let asked = self.requested(&req)?;
        if req.fork.is_some() {
            return self.fork(project, name, req, asked).await;
        }
        let s = self.settings();
        let base_ref = req.base.as_deref().unwrap_or(&s.default_base);
        let (alias, tag) = rules::parse_base_ref(base_ref)?;
        let base_vol = Subvol::base(&alias, &tag);
        let base_known = self.store().get_base(&alias, &tag)?.is_some();
        if !base_known || !self.inner.storage.exists(&base_vol) {
            return Err(CoreError::NotFound {
                code: "base_not_found",
                message: format!("base \"{alias}:{tag}\" not found (see `zomg base list`)"),
            });
        }
        if let Some(gb) = asked.storage_gb {
            self.check_storage_fits(gb, &base_vol, &format!("base \"{alias}:{tag}\""))
                .await?;
        }

        let _guard = self.inner.locks.lock(&Self::lock_key(project, &name)).await;
        let volume_guards = self
            .lock_keys(Self::mount_lock_keys(project, &req.data_mounts))
            .await;
        let data_mounts = self.resolve_mounts(project, &req.data_mounts, &[])?;
        let now = Utc::now();
        let mut record = BoxRecord {
            id: new_id("b"),
            project: project.clone(),
            name: name.clone(),
            status: BoxStatus::Creating,
            status_reason: None,
            base: format!("{alias}:{tag}"),
            port: asked.port,
            tags: req.tags,
            environment: req.environment,
            data_mounts,
            millicpus: asked.millicpus.unwrap_or(s.default_millicpus),
            ram_mb: asked.ram_mb.unwrap_or(s.default_ram_mb),
            storage_gb: asked.storage_gb,
            termination_grace_seconds: asked.grace_seconds.unwrap_or(s.default_grace_seconds),
            forked_from: None,
            published_domains: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.insert_new_box(&record)?;
        // The record names the mounts now: a volume delete will see this box.
        drop(volume_guards);

        let provisioned = async {
            self.create_root(&record, &base_vol).await?;
            self.start_new(&record).await
        };
        if let Err(e) = provisioned.await {
            return Err(self.undo_create(&record, e).await);
        }
        record.status = BoxStatus::Running;
        record.updated_at = Utc::now();
        self.store().update_box(&record)?;
        info!(box = %record.name, project = %record.project, id = %record.id, "box created");
        Ok(self.to_wire(&record))
    }

    /// Checks the resources a create asks for; `None` where it asks for none.
    fn requested(&self, req: &CreateBox) -> CoreResult<Requested> {
        let limits = &self.settings().limits;
        Ok(Requested {
            millicpus: req.cpus.map(|c| limits.check_cpus(c)).transpose()?,
            ram_mb: req.ram_mb.map(|m| limits.check_ram_mb(m)).transpose()?,
            storage_gb: req.storage_gb.map(rules::check_storage_gb).transpose()?,
            port: req
                .port
                .map(|p| rules::check_port(u64::from(p)))
                .transpose()?,
            grace_seconds: req
                .termination_grace_period_seconds
                .map(|g| rules::check_grace(u64::from(g)))
                .transpose()?,
        })
    }

    /// Refuses a storage limit that `src` (the base, or a fork's source root) already
    /// fills: the box could not write a byte. The limit counts every byte the root
    /// references, base included (see [`BoxService::create_root`]).
    pub(super) async fn check_storage_fits(
        &self,
        gb: u64,
        src: &Subvol,
        what: &str,
    ) -> CoreResult<()> {
        let src = src.clone();
        let used = self
            .storage(move |s| s.usage(&src))
            .await
            .map_err(|e| CoreError::internal(format!("measuring {what} failed"), e))?;
        if used >= gb << 30 {
            return Err(CoreError::Invalid {
                code: "invalid_storage",
                message: format!(
                    "storage {gb}GB is too small: {what} already takes {}",
                    format_bytes(used)
                ),
            });
        }
        Ok(())
    }

    /// Stores the record of a new box; `box_exists` if the name is taken.
    pub(super) fn insert_new_box(&self, record: &BoxRecord) -> CoreResult<()> {
        match self.store().insert_box(record) {
            Err(StoreError::Conflict(_)) => Err(CoreError::Conflict {
                code: "box_exists",
                message: format!(
                    "box \"{}\" already exists in project \"{}\"",
                    record.name, record.project
                ),
            }),
            other => Ok(other?),
        }
    }

    /// Snapshots the base into the box's root and applies its storage limit.
    ///
    /// `storage_gb` limits the bytes the root references, the base's included, like the
    /// disk of a virtual machine holds its operating system: a box on a 300 MiB base with
    /// `storage_gb: 1` can add about 700 MiB. Writes past it fail inside the box with
    /// `EDQUOT` ("Disk quota exceeded"); the box keeps running.
    async fn create_root(&self, b: &BoxRecord, base: &Subvol) -> CoreResult<()> {
        let root = Subvol::root(&b.id);
        let (src, dst, limit) = (base.clone(), root.clone(), b.storage_gb);
        self.storage(move |s| {
            s.snapshot(&src, &dst, false)?;
            if let Some(gb) = limit {
                s.set_limit(&dst, Some(gb << 30))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| {
            CoreError::internal(format!("creating the root of box \"{}\" failed", b.name), e)
        })
    }

    /// Starts the container of a box whose root (and volumes) exist.
    pub(super) async fn start_new(&self, b: &BoxRecord) -> CoreResult<()> {
        self.runtime()
            .start(&self.box_spec(b))
            .await
            .map_err(|e| CoreError::internal(format!("starting box \"{}\" failed", b.name), e))
    }

    /// Removes whatever a failed create left (container, root, fork volumes, record) and
    /// returns the create's error, with the cleanup's failure added if there was one.
    pub(super) async fn undo_create(&self, b: &BoxRecord, error: CoreError) -> CoreError {
        match self.cleanup_box(b).await {
            Ok(()) => error,
            Err(c) => CoreError::internal(
                format!("creating box \"{}\" failed and so did its cleanup", b.name),
                format!("{error}; cleanup: {c}"),
            ),
        }
    }

    /// Stops a box: SIGTERM, the termination grace, SIGKILL. The root is kept. Stopping a
    /// stopped box succeeds.
    pub async fn stop(&self, project: &ProjectName, name: &BoxName) -> CoreResult<BoxInfo> {
        let _guard = self.inner.locks.lock(&Self::lock_key(project, name)).await;
        let mut b = self.load(project, name)?;
        match b.status {
            BoxStatus::Stopped => return Ok(self.to_wire(&b)),
            BoxStatus::Running | BoxStatus::Failed | BoxStatus::Stopping => {}
            BoxStatus::Creating | BoxStatus::Deleting => {
                return Err(CoreError::Conflict {
                    code: "box_busy",
                    message: format!("box \"{name}\" is {}", b.status),
                });
            }
        }
        self.set_status(&mut b, BoxStatus::Stopping, None)?;
        let grace = Duration::from_secs(u64::from(b.termination_grace_seconds));
        if let Err(e) = self.runtime().stop(&b.id, grace).await {
            let reason = format!("stop failed: {e}");
            self.set_status(&mut b, BoxStatus::Failed, Some(reason))?;
            return Err(CoreError::internal(
                format!("stopping box \"{name}\" failed"),
                e,
            ));
        }
        self.set_status(&mut b, BoxStatus::Stopped, None)?;
        info!(box = %b.name, project = %b.project, "box stopped");
        Ok(self.to_wire(&b))
    }

    /// Boots a stopped (or failed) box again from the same root. Resuming a running box
    /// succeeds.
    pub async fn resume(&self, project: &ProjectName, name: &BoxName) -> CoreResult<BoxInfo> {
        let _guard = self.inner.locks.lock(&Self::lock_key(project, name)).await;
        let mut b = self.load(project, name)?;
        match b.status {
            BoxStatus::Running => {
                if matches!(self.runtime().state(&b.id).await?, RunState::Running { .. }) {
                    return Ok(self.to_wire(&b));
                }
            }
            BoxStatus::Stopped | BoxStatus::Failed => {}
            BoxStatus::Creating | BoxStatus::Deleting | BoxStatus::Stopping => {
                return Err(CoreError::Conflict {
                    code: "box_busy",
                    message: format!("box \"{name}\" is {}", b.status),
                });
            }
        }
        self.start_existing(&mut b).await?;
        Ok(self.to_wire(&b))
    }

    /// Starts the container of an existing box and records the outcome.
    pub(super) async fn start_existing(&self, b: &mut BoxRecord) -> CoreResult<()> {
        // A container left over from a crash or a failed stop would make start fail.
        self.runtime().stop(&b.id, Duration::ZERO).await.ok();
        match self.runtime().start(&self.box_spec(b)).await {
            Ok(()) => {
                self.set_status(b, BoxStatus::Running, None)?;
                info!(box = %b.name, project = %b.project, "box started");
                Ok(())
            }
            Err(e) => {
                warn!(box = %b.name, project = %b.project, error = %e, "box failed to start");
                self.set_status(b, BoxStatus::Failed, Some(format!("start failed: {e}")))?;
                Err(CoreError::internal(
                    format!("starting box \"{}\" failed", b.name),
                    e,
                ))
            }
        }
    }

    /// Applies `update` (SPEC §3): only PORT, CPU, MEMORY, the termination grace and tags.
    /// CPU and MEMORY change a running box live and persist for the next start.
    pub async fn update(
        &self,
        project: &ProjectName,
        name: &BoxName,
        req: UpdateBox,
    ) -> CoreResult<BoxInfo> {
        let settings = UpdateSettings::parse(&req.environment, &self.settings().limits)?;
        rules::check_tags(&req.tags)?;
        if settings.is_empty() && req.tags.is_empty() {
            return Err(CoreError::Invalid {
                code: "no_updates",
                message: "no updates provided".to_owned(),
            });
        }
        let _guard = self.inner.locks.lock(&Self::lock_key(project, name)).await;
        let mut b = self.load(project, name)?;
        if b.status == BoxStatus::Deleting {
            return Err(CoreError::Conflict {
                code: "box_busy",
                message: format!("box \"{name}\" is deleting"),
            });
        }
        let resources_changed = settings.millicpus.is_some_and(|m| m != b.millicpus)
            || settings.ram_mb.is_some_and(|m| m != b.ram_mb);
        b.port = settings.port.or(b.port);
        b.millicpus = settings.millicpus.unwrap_or(b.millicpus);
        b.ram_mb = settings.ram_mb.unwrap_or(b.ram_mb);
        b.termination_grace_seconds = settings
            .grace_seconds
            .unwrap_or(b.termination_grace_seconds);
        b.tags.extend(req.tags);
        if resources_changed && b.status == BoxStatus::Running {
            let resources = Resources {
                millicpus: b.millicpus,
                memory_mb: b.ram_mb,
                pids: self.settings().pids_limit,
            };
            match self.runtime().update_resources(&b.id, resources).await {
                Ok(()) => {}
                // The container died on its own: the new limits apply when it is started
                // again (by resume, or by reconciliation).
                Err(e @ (RuntimeError::NotRunning(_) | RuntimeError::NotFound(_))) => {
                    warn!(box = %name, project = %project, error = %e, "box not running; resources apply at its next start");
                }
                Err(e) => {
                    return Err(CoreError::internal(
                        format!("resizing box \"{name}\" failed"),
                        e,
                    ));
                }
            }
        }
        b.updated_at = Utc::now();
        self.store().update_box(&b)?;
        Ok(self.to_wire(&b))
    }

    /// Records a new status (and reason) for a box.
    pub(super) fn set_status(
        &self,
        b: &mut BoxRecord,
        status: BoxStatus,
        reason: Option<String>,
    ) -> CoreResult<()> {
        b.status = status;
        b.status_reason = reason;
        b.updated_at = Utc::now();
        self.store().update_box(b)?;
        Ok(())
    }
}
