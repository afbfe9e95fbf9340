//! The review lane: flagged videos waiting for a person (escalated first), and the
//! reviewer's decision, which sets the verdict, is audited and sends `video.reviewed`.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::App;
use super::caller::Caller;
use super::error::ApiError;
use crate::catalog::Decision;

/// At most this many items per look at the lane.
const PAGE: i64 = 100;

/// `GET /v1/review`: flagged videos no one has decided on, escalated first.
pub async fn queue(State(app): State<App>) -> Result<Response, ApiError> {
    let items = app.svc.catalog().review_queue(PAGE).await?;
    Ok(axum::Json(json!({ "items": items })).into_response())
}

/// A reviewer's decision (`POST /v1/videos/{id}/review`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    pub decision: Decision,
    pub reason: String,
}

/// `POST /v1/videos/{id}/review`: approve (verdict `allow`), reject (`block`) or
/// escalate (verdict kept, subject under legal hold), with a reason.
pub async fn decide(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<ReviewRequest>,
) -> Result<Response, ApiError> {
    if req.reason.trim().is_empty() || req.reason.len() > 1000 {
        return Err(ApiError::BadRequest(
            "reason must be 1 to 1000 bytes".into(),
        ));
    }
    let catalog = app.svc.catalog();
    match catalog
        .record_review(&id, req.decision, &req.reason, &caller.id)
        .await?
    {
        Some(reviewed) => Ok(axum::Json(reviewed).into_response()),
        None if catalog.video(&id).await?.is_none() => Err(ApiError::NotFound("video")),
        None => Err(ApiError::Conflict(
            "only a finished, flagged (review, restrict, block), unerased video can be reviewed"
                .into(),
        )),
    }
}
