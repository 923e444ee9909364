//! HTTP API: axum routes, bearer-token auth and error mapping (SPEC §11).
//!
//! Handlers parse and authenticate, call one [`BoxService`] method and map the result; the
//! rules live in `core`.

mod auth;
mod bases;
mod boxes;
mod error;
mod exec;
mod files;
mod volumes;

use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use serde::Deserialize;
use zomg_sdk::{NameError, ProjectName, VersionInfo};

pub use error::ApiError;

use crate::core::BoxService;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The box service.
    pub service: BoxService,
    /// The bearer token every `/v1` route requires.
    pub token: Arc<str>,
    /// The backend name reported by `/version`.
    pub backend: &'static str,
}

/// The full router: `/version`, `/healthz` and the authenticated `/v1` routes.
pub fn router(state: AppState) -> Router {
    let boxes = "/v1/projects/{project}/boxes";
    let one = "/v1/projects/{project}/boxes/{name}";
    let v1 = Router::new()
        .route(boxes, get(boxes::list).post(boxes::create))
        .route(
            one,
            get(boxes::show).put(boxes::update).delete(boxes::delete),
        )
        .route(&format!("{one}/delete-status"), get(boxes::delete_status))
        .route(&format!("{one}/stop"), post(boxes::stop))
        .route(&format!("{one}/resume"), post(boxes::resume))
        .route(&format!("{one}/exec"), post(exec::exec_run))
        .route(&format!("{one}/exec/ws"), get(exec::exec_ws))
        .route(&format!("{one}/console"), get(exec::console_ws))
        .route(&format!("{one}/logs"), get(exec::logs))
        .route(
            &format!("{one}/files"),
            get(files::download).put(files::upload),
        )
        .route(&format!("{one}/files/stat"), get(files::stat))
        .route("/v1/bases", get(bases::list))
        .route(
            "/v1/projects/{project}/volumes",
            get(volumes::list).post(volumes::create),
        )
        .route(
            "/v1/projects/{project}/volumes/{name}",
            get(volumes::show).delete(volumes::delete),
        )
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .merge(v1)
        .with_state(state)
}

/// `{project}` of a route on one project.
#[derive(Debug, Deserialize)]
pub(super) struct ProjectPath {
    project: String,
}

impl ProjectPath {
    /// The project, validated.
    fn parse(&self) -> Result<ProjectName, ApiError> {
        name(&self.project)
    }
}

/// `{project}` and `{name}` of a route on one box or volume.
#[derive(Debug, Deserialize)]
pub(super) struct NamedPath {
    project: String,
    name: String,
}

impl NamedPath {
    /// The project and the box or volume name, validated in that order.
    fn parse<N: FromStr<Err = NameError>>(&self) -> Result<(ProjectName, N), ApiError> {
        Ok((name(&self.project)?, name(&self.name)?))
    }
}

/// A name from a path segment; an invalid one is a 400 naming it.
fn name<N: FromStr<Err = NameError>>(s: &str) -> Result<N, ApiError> {
    s.parse()
        .map_err(|e: NameError| ApiError::invalid(e.to_string()))
}

/// A JSON body whose rejection is reported in the API's error format.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {}", e.body_text())))
}

async fn version(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<VersionInfo> {
    axum::Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: state.backend.to_owned(),
    })
}
