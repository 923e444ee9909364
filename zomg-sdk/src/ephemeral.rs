//! Ephemeral boxes (SPEC §7): a box created for one job and force-deleted after it, whatever
//! the job's outcome. [`EphemeralBox`] is the guard; [`Client::with_ephemeral`] wraps a job
//! in one.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::names::{BoxName, ProjectName};
use crate::refs::{ResolvedBox, ephemeral_box_name};
use crate::types::{BoxInfo, BoxStatus, CreateBox, DeleteStatus};

/// How long [`EphemeralBox::create`] waits for a box the server answered as `creating`.
pub const EPHEMERAL_START_TIMEOUT: Duration = Duration::from_secs(300);

/// A box that is deleted (always with force) when the job using it is done.
///
/// Call [`EphemeralBox::delete`] and look at its result: async work cannot be awaited in
/// `Drop`, so a guard dropped without `delete` only *spawns* a best-effort force delete on
/// the current Tokio runtime, which does not run if the runtime shuts down first (for
/// example when `main` returns right after). [`Client::with_ephemeral`] does the calling for
/// you.
pub struct EphemeralBox {
    client: Client,
    info: BoxInfo,
    armed: bool,
}

impl fmt::Debug for EphemeralBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralBox")
            .field("project", &self.info.project)
            .field("name", &self.info.name)
            .field("armed", &self.armed)
            .finish()
    }
}

/// A fresh ephemeral box name for this process: `ephemeral-<pid>-<millis>`.
///
/// Names are unique within the process: a second name in the same millisecond takes the
/// next millisecond, so a program creating many ephemeral boxes at once gets no conflicts.
pub fn generate_ephemeral_name() -> BoxName {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .expect("the update always succeeds");
    let millis = now.max(previous.saturating_add(1));
    ephemeral_box_name(std::process::id(), millis)
}

fn with_cleanup(error: Error, cleanup: Result<DeleteStatus>) -> Error {
    match cleanup {
        Ok(_) => error,
        Err(c) => Error::Cleanup {
            error: Box::new(error),
            cleanup: Box::new(c),
        },
    }
}

impl EphemeralBox {
    /// Creates the box `create` describes in `project` (an empty `create.name` gets
    /// [`generate_ephemeral_name`]) and returns once it is past `creating`.
    ///
    /// If the create fails in a way that may have left a box behind (the answer was lost,
    /// or the server failed with a 5xx), or the box never leaves `creating`, the box is
    /// force-deleted before the error is returned.
    pub async fn create(client: &Client, project: &ProjectName, create: CreateBox) -> Result<Self> {
        let mut create = create;
        if create.name.is_empty() {
            create.name = generate_ephemeral_name().to_string();
        }
        let name = BoxName::new(create.name.as_str())?;
        let info = match client.create_box(project, &create).await {
            Ok(info) => info,
            // The server refused: nothing was created, and a box of that name (if any)
            // is not ours to delete. Or the request never reached it.
            Err(e) if e.status().is_some_and(|s| s < 500) => return Err(e),
            Err(e @ Error::Unreachable { .. }) => return Err(e),
            Err(e) => {
                return Err(with_cleanup(
                    e,
                    client.delete_box(project, &name, true).await,
                ));
            }
        };
        let mut guard = Self {
            client: client.clone(),
            info,
            armed: true,
        };
        if guard.info.status == BoxStatus::Creating {
            let started = client
                .wait_for_box(project, &name, EPHEMERAL_START_TIMEOUT, |b| {
                    b.status != BoxStatus::Creating
                })
                .await;
            match started {
                Ok(info) => guard.info = info,
                Err(e) => return Err(with_cleanup(e, guard.delete().await)),
            }
        }
        Ok(guard)
    }

    /// The box's name.
    pub fn name(&self) -> &BoxName {
        &self.info.name
    }

    /// The box's project.
    pub fn project(&self) -> &ProjectName {
        &self.info.project
    }

    /// Project and name together, to pass to other calls.
    pub fn resolved(&self) -> ResolvedBox {
        ResolvedBox {
            project: self.info.project.clone(),
            name: self.info.name.clone(),
        }
    }

    /// The box as the server last reported it.
    pub fn info(&self) -> &BoxInfo {
        &self.info
    }

    /// Force-deletes the box. `deleting` in the answer means the server accepted the delete
    /// and finishes cleanup in the background.
    pub async fn delete(mut self) -> Result<DeleteStatus> {
        self.armed = false;
        self.client
            .delete_box(&self.info.project, &self.info.name, true)
            .await
    }

    /// Keeps the box: it will not be deleted (to inspect a failed job, say).
    pub fn keep(mut self) -> BoxInfo {
        self.armed = false;
        self.info.clone()
    }
}

impl Drop for EphemeralBox {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let (project, name) = (self.info.project.clone(), self.info.name.clone());
            runtime.spawn(async move {
                let _ = client.delete_box(&project, &name, true).await;
            });
        }
    }
}

impl Client {
    /// Runs `job` against a new ephemeral box and force-deletes the box afterwards, whether
    /// `job` succeeded or failed; returns what `job` returned.
    ///
    /// A failed delete turns a successful job into that error (a leaked box is a failure);
    /// when both fail, the error is [`Error::Cleanup`] holding the job's error and the
    /// delete's. A panic in `job` leaves the delete to the guard's `Drop` (best effort).
    ///
    /// ```no_run
    /// # async fn demo(client: zomg_sdk::Client) -> zomg_sdk::Result<()> {
    /// use zomg_sdk::{CreateBox, ExecStart};
    /// let project = "ci".parse()?;
    /// let out = client
    ///     .with_ephemeral(&project, CreateBox::default(), |b| {
    ///         let client = client.clone();
    ///         async move {
    ///             let start = ExecStart { command: vec!["make".into(), "test".into()], ..Default::default() };
    ///             client.exec_output(&b.project, &b.name, &start, None).await
    ///         }
    ///     })
    ///     .await?;
    /// println!("exit {}", out.exit.exit_code);
    /// # Ok(()) }
    /// ```
    pub async fn with_ephemeral<T, E, F, Fut>(
        &self,
        project: &ProjectName,
        create: CreateBox,
        job: F,
    ) -> Result<T, E>
    where
        F: FnOnce(ResolvedBox) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Error> + Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let guard = EphemeralBox::create(self, project, create).await?;
        let result = job(guard.resolved()).await;
        let deleted = guard.delete().await;
        match (result, deleted) {
            (Ok(value), Ok(_)) => Ok(value),
            (Ok(_), Err(d)) => Err(d.into()),
            (Err(e), Ok(_)) => Err(e),
            (Err(e), Err(d)) => Err(Error::Cleanup {
                error: e.into(),
                cleanup: Box::new(d),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_follow_the_spec() {
        let name = generate_ephemeral_name();
        let prefix = format!("ephemeral-{}-", std::process::id());
        let millis = name.as_str().strip_prefix(&prefix).expect("pid prefix");
        let millis: u64 = millis.parse().expect("millis");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(millis) < 60_000, "{millis} vs {now}");
    }

    #[test]
    fn names_in_the_same_millisecond_differ() {
        let names: std::collections::BTreeSet<BoxName> =
            (0..1000).map(|_| generate_ephemeral_name()).collect();
        assert_eq!(names.len(), 1000);
    }
}
