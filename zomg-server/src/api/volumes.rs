//! Volume routes: list, create, show, delete (`/v1/projects/{project}/volumes`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use http::StatusCode;
use zomg_sdk::{CreateVolume, ProjectName, VolumeInfo, VolumeList, VolumeName};

use super::{ApiError, AppState, NamedPath, ProjectPath, json_body};

/// `GET /v1/projects/{project}/volumes`.
pub(super) async fn list(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
) -> Result<Json<VolumeList>, ApiError> {
    let project = p.parse()?;
    Ok(Json(state.service.list_volumes(&project).await?))
}

/// `POST /v1/projects/{project}/volumes` with `{name, size_gb, from}`: 201 and the volume.
pub(super) async fn create(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
    req: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<(StatusCode, Json<VolumeInfo>), ApiError> {
    let project = p.parse()?;
    let info = state
        .service
        .create_volume(&project, json_body(req)?)
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /v1/projects/{project}/volumes/{name}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
) -> Result<Json<VolumeInfo>, ApiError> {
    let (project, name): (ProjectName, VolumeName) = p.parse()?;
    Ok(Json(state.service.get_volume(&project, &name).await?))
}

/// `DELETE /v1/projects/{project}/volumes/{name}`: 204 when deleted; 409 `volume_in_use`
/// while a box has it attached.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
) -> Result<StatusCode, ApiError> {
    let (project, name): (ProjectName, VolumeName) = p.parse()?;
    state.service.delete_volume(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
