//! Wire types shared by the client and the server (SPEC §11).
//!
//! The server depends on these definitions, so the two sides cannot drift apart. Every type
//! round-trips through serde; optional fields are skipped when absent so old clients keep
//! working when the server adds fields.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::names::{BoxName, ProjectName, VolumeName};

/// Lifecycle state of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxStatus {
    /// Root snapshot and runtime are being prepared.
    Creating,
    /// The box's init is running; exec works.
    Running,
    /// Processes are being terminated (SIGTERM, grace, SIGKILL).
    Stopping,
    /// No process runs; the root filesystem is kept.
    Stopped,
    /// Cleanup is in progress or being retried.
    Deleting,
    /// Something went wrong; `status_reason` says what.
    Failed,
}

impl BoxStatus {
    /// The lowercase wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BoxStatus::Creating => "creating",
            BoxStatus::Running => "running",
            BoxStatus::Stopping => "stopping",
            BoxStatus::Stopped => "stopped",
            BoxStatus::Deleting => "deleting",
            BoxStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for BoxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BoxStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown box status {s:?}"))
    }
}

/// Resources of a box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxConfig {
    /// CPU limit in cores (`0.5` = `500m`).
    pub cpus: f64,
    /// Memory limit in MiB.
    pub ram_mb: u64,
    /// Root filesystem limit in GB, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gb: Option<u64>,
}

/// A data volume mounted into a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMount {
    /// The volume's name (a box-owned fork volume shows its generated name).
    pub name: VolumeName,
    /// Absolute mount path inside the box.
    pub path: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A box as the API reports it (SPEC §11 `Box`).
///
/// Named `BoxInfo` rather than `Box` so that it never shadows `std::boxed::Box` in user code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxInfo {
    /// Server-assigned unique id; never reused.
    pub id: String,
    /// The box name, unique in its project.
    pub name: BoxName,
    /// The owning project.
    pub project: ProjectName,
    /// Current lifecycle state.
    pub status: BoxStatus,
    /// Why the box is in its state, when that is not obvious (always set for `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The base it was created from (`alias:tag`).
    pub base: String,
    /// The box's stable URL, when the server has a domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The port that the box URL and published hosts route to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// When the box was created.
    pub created_at: DateTime<Utc>,
    /// When the box was last changed.
    pub updated_at: DateTime<Utc>,
    /// Hosts this box is published on.
    #[serde(default)]
    pub published_domains: Vec<String>,
    /// User tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The environment given at create (injected variables are not listed).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Attached data volumes.
    #[serde(default)]
    pub data_mounts: Vec<DataMount>,
    /// Resources.
    pub config: BoxConfig,
    /// Seconds between SIGTERM and SIGKILL on stop.
    pub termination_grace_period_seconds: u32,
    /// Bytes referenced by the root filesystem, when the server measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_used_bytes: Option<u64>,
    /// The box this one was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
}

/// A `--data vol=/path[:ro|:rw]` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMountSpec {
    /// Volume name in the box's project.
    pub name: VolumeName,
    /// Absolute mount path inside the box.
    pub path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Body of `POST /v1/projects/{project}/boxes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateBox {
    /// Name of the new box.
    pub name: String,
    /// Base `alias` or `alias:tag`; the server default when absent. Excludes `fork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Source box to clone (a name in the same project). Excludes `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Environment variables (reserved names are rejected).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Data volumes to attach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_mounts: Vec<DataMountSpec>,
    /// CPU limit in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_mb: Option<u64>,
    /// Root filesystem limit in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gb: Option<u64>,
    /// Port for the box URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<u32>,
}

/// Body of `PUT /v1/projects/{project}/boxes/{name}` (SPEC §3 update).
///
/// The server applies only `PORT`, `CPU`, `MEMORY`, `TERMINATION_GRACE_PERIOD_SECONDS` /
/// `TERMINATION_GRACE_SECONDS` from `environment`, plus `tags`; everything else is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateBox {
    /// Settings as `KEY=VALUE` pairs.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Tags to set (merged into the existing tags).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One page of `GET /v1/projects/{project}/boxes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxList {
    /// The boxes on this page.
    pub boxes: Vec<BoxInfo>,
    /// More pages follow.
    #[serde(default)]
    pub has_more: bool,
    /// Pass as `continuation_token` to get the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_continuation_token: Option<String>,
}

/// Progress of a delete (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteState {
    /// Cleanup in progress or retrying.
    Deleting,
    /// Finished, or no box by that name.
    Deleted,
    /// Retries exhausted; manual repair may be needed.
    Failed,
    /// The box exists and is not being deleted.
    Active,
}

impl DeleteState {
    /// The lowercase wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteState::Deleting => "deleting",
            DeleteState::Deleted => "deleted",
            DeleteState::Failed => "failed",
            DeleteState::Active => "active",
        }
    }
}

impl fmt::Display for DeleteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer of `DELETE …/boxes/{name}` (200 when finished, 202 when still deleting) and of
/// `GET …/boxes/{name}/delete-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteStatus {
    /// The box name.
    pub name: String,
    /// Where the delete stands.
    pub status: DeleteState,
    /// Last cleanup error, when retrying or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The JSON error body of every non-2xx answer: `{"error": "<code>", "message": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `box_running`.
    pub error: String,
    /// Human-readable message, e.g. `box is running`.
    pub message: String,
}

/// A read-only base root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    /// The alias, e.g. `box-base`.
    pub alias: String,
    /// The tag, `latest` unless named.
    pub tag: String,
    /// When it was built or imported.
    pub created_at: DateTime<Utc>,
    /// Where it came from (`debootstrap bookworm`, `import rootfs.tar`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Answer of `GET /v1/bases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseList {
    /// Every base on the server.
    pub bases: Vec<BaseInfo>,
}

/// A data volume (issue: data volumes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Server-assigned unique id.
    pub id: String,
    /// The volume name, unique in its project.
    pub name: VolumeName,
    /// The owning project.
    pub project: ProjectName,
    /// Size limit in GB, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    /// Bytes referenced, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Boxes the volume is attached to.
    #[serde(default)]
    pub attached_to: Vec<String>,
    /// The box that owns this volume (fork volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_box: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Body of `POST /v1/projects/{project}/volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVolume {
    /// Name of the new volume (`^[a-zA-Z0-9_.-]+$`), unique in the project.
    pub name: String,
    /// Size limit in GB; with `from` and no size, the source's limit is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    /// Start as a snapshot of this volume of the same project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Answer of `GET /v1/projects/{project}/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeList {
    /// The project's volumes, ordered by name (fork volumes owned by a box are not listed).
    pub volumes: Vec<VolumeInfo>,
}

/// Answer of `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The server's crate version.
    pub version: String,
    /// The runtime backend in use (`local`, `kubernetes`).
    pub backend: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_box() -> BoxInfo {
        BoxInfo {
            id: "b-01".into(),
            name: "web".parse().unwrap(),
            project: "default".parse().unwrap(),
            status: BoxStatus::Running,
            status_reason: None,
            base: "box-base:latest".into(),
            url: Some("http://web.default.zomg.localhost".into()),
            port: Some(8080),
            created_at: "2026-11-28T10:00:00Z".parse().unwrap(),
            updated_at: "2026-11-28T10:00:01Z".parse().unwrap(),
            published_domains: vec!["app.example.com".into()],
            tags: [("env".to_owned(), "dev".to_owned())].into(),
            environment: [("FOO".to_owned(), "1".to_owned())].into(),
            data_mounts: vec![DataMount {
                name: "cache".parse().unwrap(),
                path: "/data".into(),
                read_only: true,
            }],
            config: BoxConfig {
                cpus: 0.5,
                ram_mb: 512,
                storage_gb: Some(10),
            },
            termination_grace_period_seconds: 10,
            storage_used_bytes: None,
            forked_from: None,
        }
    }

    #[test]
    fn box_round_trip_and_field_names() {
        let b = sample_box();
        let v = serde_json::to_value(&b).unwrap();
        for field in [
            "id",
            "name",
            "project",
            "status",
            "base",
            "url",
            "port",
            "created_at",
            "updated_at",
            "published_domains",
            "tags",
            "environment",
            "data_mounts",
            "config",
            "termination_grace_period_seconds",
        ] {
            assert!(v.get(field).is_some(), "missing field {field}");
        }
        assert_eq!(v["status"], "running");
        assert_eq!(
            v["config"],
            json!({"cpus": 0.5, "ram_mb": 512, "storage_gb": 10})
        );
        assert_eq!(
            v["data_mounts"],
            json!([{"name": "cache", "path": "/data", "read_only": true}])
        );
        let back: BoxInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn box_rejects_invalid_names() {
        let mut v = serde_json::to_value(sample_box()).unwrap();
        v["name"] = json!("Not_A_Label");
        assert!(serde_json::from_value::<BoxInfo>(v).is_err());
    }

    #[test]
    fn statuses() {
        for (s, txt) in [
            (BoxStatus::Creating, "creating"),
            (BoxStatus::Running, "running"),
            (BoxStatus::Stopping, "stopping"),
            (BoxStatus::Stopped, "stopped"),
            (BoxStatus::Deleting, "deleting"),
            (BoxStatus::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(txt));
            assert_eq!(txt.parse::<BoxStatus>().unwrap(), s);
            assert_eq!(s.to_string(), txt);
        }
        for (s, txt) in [
            (DeleteState::Deleting, "deleting"),
            (DeleteState::Deleted, "deleted"),
            (DeleteState::Failed, "failed"),
            (DeleteState::Active, "active"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(txt));
        }
    }

    #[test]
    fn create_body_skips_absent_fields() {
        let c = CreateBox {
            name: "web".into(),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&c).unwrap(), json!({"name": "web"}));
        let full: CreateBox = serde_json::from_value(json!({
            "name": "web", "base": "box-base:v1", "tags": {"a": "b"},
            "environment": {"X": "1"}, "cpus": 2.0, "ram_mb": 1024, "port": 80,
            "data_mounts": [{"name": "v", "path": "/data"}]
        }))
        .unwrap();
        assert!(!full.data_mounts[0].read_only);
        assert_eq!(
            serde_json::from_value::<CreateBox>(serde_json::to_value(&full).unwrap()).unwrap(),
            full
        );
    }

    #[test]
    fn list_delete_error_round_trip() {
        let page = BoxList {
            boxes: vec![sample_box()],
            has_more: true,
            next_continuation_token: Some("web".into()),
        };
        let back: BoxList = serde_json::from_str(&serde_json::to_string(&page).unwrap()).unwrap();
        assert_eq!(back, page);

        let d: DeleteStatus =
            serde_json::from_value(json!({"name": "web", "status": "deleting"})).unwrap();
        assert_eq!(d.status, DeleteState::Deleting);

        let e: ErrorBody =
            serde_json::from_value(json!({"error": "box_running", "message": "box is running"}))
                .unwrap();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"error": "box_running", "message": "box is running"})
        );

        let u = UpdateBox::default();
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            json!({"environment": {}, "tags": {}})
        );
    }
}
