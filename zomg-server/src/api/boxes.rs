//! Box routes: list, create, show, update, delete, delete-status, stop, resume.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use http::StatusCode;
use serde::Deserialize;
use zomg_sdk::{
    BoxInfo, BoxList, BoxName, CreateBox, DeleteState, DeleteStatus, ProjectName, UpdateBox,
};

use super::{ApiError, AppState, NamedPath, ProjectPath, json_body};
use crate::core::ListQuery;

/// Query pairs in order; `tag` may repeat, so a map is not enough.
fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /v1/projects/{project}/boxes` (`-` = every project).
pub(super) async fn list(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
    RawQuery(q): RawQuery,
) -> Result<Json<BoxList>, ApiError> {
    let mut query = ListQuery {
        project: if p.project == "-" {
            None
        } else {
            Some(p.parse()?)
        },
        ..Default::default()
    };
    let mut tags = BTreeMap::new();
    for (k, v) in query_pairs(&q) {
        match k.as_str() {
            "prefix" => query.prefix = Some(v),
            "tag" => {
                let (tk, tv) = v.split_once('=').ok_or_else(|| {
                    ApiError::invalid(format!("invalid tag filter {v:?}: use key=value"))
                })?;
                tags.insert(tk.to_owned(), tv.to_owned());
            }
            "max_results" => {
                query.max_results = Some(v.parse().map_err(|_| {
                    ApiError::invalid(format!("invalid max_results {v:?}: must be a number"))
                })?)
            }
            "continuation_token" => query.continuation_token = Some(v),
            _ => {}
        }
    }
    query.tags = tags;
    Ok(Json(state.service.list(&query)?))
}

/// `POST /v1/projects/{project}/boxes`.
pub(super) async fn create(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
    req: Result<Json<CreateBox>, JsonRejection>,
) -> Result<(StatusCode, Json<BoxInfo>), ApiError> {
    let project = p.parse()?;
    let info = state.service.create(&project, json_body(req)?).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /v1/projects/{project}/boxes/{name}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
) -> Result<Json<BoxInfo>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    Ok(Json(state.service.get(&project, &name).await?))
}

/// `PUT /v1/projects/{project}/boxes/{name}`.
pub(super) async fn update(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    req: Result<Json<UpdateBox>, JsonRejection>,
) -> Result<Json<BoxInfo>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    Ok(Json(
        state
            .service
            .update(&project, &name, json_body(req)?)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/projects/{project}/boxes/{name}[?force=true]`: 200 when deleted, 202 while
/// cleanup continues in the background.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    q: Result<axum::extract::Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<DeleteStatus>), ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    let force = q
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?
        .force;
    let status = state.service.delete(&project, &name, force).await?;
    let code = if status.status == DeleteState::Deleted {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(status)))
}

/// `GET /v1/projects/{project}/boxes/{name}/delete-status`.
pub(super) async fn delete_status(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
) -> Result<Json<DeleteStatus>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    Ok(Json(state.service.delete_status(&project, &name)?))
}

/// `POST /v1/projects/{project}/boxes/{name}/stop`.
pub(super) async fn stop(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
) -> Result<Json<BoxInfo>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    Ok(Json(state.service.stop(&project, &name).await?))
}

/// `POST /v1/projects/{project}/boxes/{name}/resume`.
pub(super) async fn resume(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
) -> Result<Json<BoxInfo>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    Ok(Json(state.service.resume(&project, &name).await?))
}
