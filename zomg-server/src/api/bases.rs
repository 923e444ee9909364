//! `GET /v1/bases`.

use axum::Json;
use axum::extract::State;
use zomg_sdk::BaseList;

use super::{ApiError, AppState};

/// Lists the bases boxes can start from.
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<BaseList>, ApiError> {
    Ok(Json(state.service.list_bases()?))
}
