//! Data volumes: refs (`name`, `project:name`) and the client calls of
//! `/v1/projects/{project}/volumes`.
//!
//! A data volume is a btrfs subvolume of a project, mounted into boxes with
//! `--data name=/path[:ro|:rw]`. It outlives the boxes it is attached to and cannot be deleted
//! while any box uses it. Volumes that `create --fork` generates for the clone (named
//! `box-<box>-<12 hex>`) belong to that box: they are not listed, shown, attached elsewhere or
//! deleted on their own, and go away with the box.

use std::fmt;
use std::str::FromStr;

use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::names::{NameError, ProjectName, VolumeName};
use crate::types::{CreateVolume, VolumeInfo, VolumeList};

/// A volume as the CLI names it: `name` (in the resolved project) or `project:name`.
///
/// Volume names may contain `.`, so unlike box refs there is no `project.name` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolumeRef {
    /// The explicit project, if the ref named one.
    pub project: Option<ProjectName>,
    /// The volume name.
    pub name: VolumeName,
}

impl VolumeRef {
    /// The project of the ref: its own, else `default_project`.
    pub fn project_or<'a>(&'a self, default_project: &'a ProjectName) -> &'a ProjectName {
        self.project.as_ref().unwrap_or(default_project)
    }
}

impl FromStr for VolumeRef {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        match s.split_once(':') {
            Some((project, name)) => Ok(VolumeRef {
                project: Some(project.parse()?),
                name: name.parse()?,
            }),
            None => Ok(VolumeRef {
                project: None,
                name: s.parse()?,
            }),
        }
    }
}

impl fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.project {
            Some(p) => write!(f, "{p}:{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl Client {
    fn volume_segments<'a>(project: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut s = vec!["v1", "projects", project, "volumes"];
        s.extend_from_slice(rest);
        s
    }

    /// `POST /v1/projects/{project}/volumes`: creates an empty volume, or a snapshot of
    /// `request.from`.
    pub async fn create_volume(
        &self,
        project: &ProjectName,
        request: &CreateVolume,
    ) -> Result<VolumeInfo> {
        let segs = Self::volume_segments(project.as_str(), &[]);
        self.call(self.request(Method::POST, &segs).json(request))
            .await
    }

    /// `GET /v1/projects/{project}/volumes`: every volume of the project, by name.
    pub async fn list_volumes(&self, project: &ProjectName) -> Result<Vec<VolumeInfo>> {
        let segs = Self::volume_segments(project.as_str(), &[]);
        let list: VolumeList = self.call(self.request(Method::GET, &segs)).await?;
        Ok(list.volumes)
    }

    /// `GET /v1/projects/{project}/volumes/{name}`.
    pub async fn get_volume(&self, project: &ProjectName, name: &VolumeName) -> Result<VolumeInfo> {
        let segs = Self::volume_segments(project.as_str(), &[name.as_str()]);
        self.call(self.request(Method::GET, &segs)).await
    }

    /// `DELETE /v1/projects/{project}/volumes/{name}`. Fails with 409 `volume_in_use` while a
    /// box has it attached, and 404 `volume_not_found` when there is no such volume.
    pub async fn delete_volume(&self, project: &ProjectName, name: &VolumeName) -> Result<()> {
        let segs = Self::volume_segments(project.as_str(), &[name.as_str()]);
        self.send(self.request(Method::DELETE, &segs))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        let r: VolumeRef = "cache".parse().unwrap();
        assert_eq!((r.project, r.name.as_str()), (None, "cache"));
        let r: VolumeRef = "proj:my.data-1".parse().unwrap();
        assert_eq!(r.project.as_ref().map(|p| p.as_str()), Some("proj"));
        assert_eq!(r.name.as_str(), "my.data-1");
        assert_eq!(r.to_string(), "proj:my.data-1");
        let default: ProjectName = "default".parse().unwrap();
        assert_eq!(r.project_or(&default).as_str(), "proj");
        for bad in ["", "p:", ":v", "Bad_Project:v", "p:a/b", "p:v:w", "a b"] {
            assert!(bad.parse::<VolumeRef>().is_err(), "{bad:?}");
        }
        let e = "p:a/b".parse::<VolumeRef>().unwrap_err().to_string();
        assert!(e.starts_with("invalid volume name \"a/b\""), "{e}");
    }
}
