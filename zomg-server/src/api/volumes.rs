//! Volume routes: list, create, show, delete (`/v1/projects/{project}/volumes`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::Deserialize;
use zomg_sdk::{CreateVolume, ProjectName, VolumeInfo, VolumeList, VolumeName};

use super::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(super) struct ProjectPath {
    project: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct VolumePath {
    project: String,
    name: String,
}

fn project(s: &str) -> Result<ProjectName, ApiError> {
    s.parse()
        .map_err(|e: zomg_sdk::NameError| ApiError::invalid(e.to_string()))
}

fn volume_path(p: &VolumePath) -> Result<(ProjectName, VolumeName), ApiError> {
    let name = p
        .name
        .parse()
        .map_err(|e: zomg_sdk::NameError| ApiError::invalid(e.to_string()))?;
    Ok((project(&p.project)?, name))
}

/// `GET /v1/projects/{project}/volumes`.
pub(super) async fn list(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
) -> Result<Json<VolumeList>, ApiError> {
    let project = project(&p.project)?;
    Ok(Json(state.service.list_volumes(&project).await?))
}

/// `POST /v1/projects/{project}/volumes` with `{name, size_gb, from}`: 201 and the volume.
pub(super) async fn create(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
    req: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<(StatusCode, Json<VolumeInfo>), ApiError> {
    let project = project(&p.project)?;
    let Json(req) =
        req.map_err(|e| ApiError::invalid(format!("invalid request body: {}", e.body_text())))?;
    let info = state.service.create_volume(&project, req).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /v1/projects/{project}/volumes/{name}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(p): Path<VolumePath>,
) -> Result<Json<VolumeInfo>, ApiError> {
    let (project, name) = volume_path(&p)?;
    Ok(Json(state.service.get_volume(&project, &name).await?))
}

/// `DELETE /v1/projects/{project}/volumes/{name}`: 204 when deleted; 409 `volume_in_use`
/// while a box has it attached.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(p): Path<VolumePath>,
) -> Result<StatusCode, ApiError> {
    let (project, name) = volume_path(&p)?;
    state.service.delete_volume(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
