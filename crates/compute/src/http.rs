//! Compute routes (`/api/v1/compute/...`) for the CLI; the node mounts them behind the
//! API token.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;

use crate::error::ComputeError;
use crate::handle::{ComputeHandle, Submission};

type S = State<ComputeHandle>;

/// Largest submission (hex module and inputs) the API takes.
pub const SUBMIT_LIMIT: usize = 256 << 20;

/// The routes, relative to `/api/v1/compute`.
pub fn routes(handle: ComputeHandle) -> Router {
    Router::new()
        .route(
            "/projects",
            get(projects)
                .post(submit)
                .layer(DefaultBodyLimit::max(SUBMIT_LIMIT)),
        )
        .route("/projects/{id}", get(status))
        .route("/projects/{id}/results", get(results))
        .route("/projects/{id}/cancel", post(cancel))
        .route("/volunteer", get(volunteer).post(set_volunteer))
        .with_state(handle)
}

impl From<ComputeError> for ApiError {
    fn from(e: ComputeError) -> Self {
        let status = match &e {
            ComputeError::BadRequest(_) | ComputeError::Sandbox(_) | ComputeError::Ambiguous(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ComputeError::NoSuchProject(_) => StatusCode::NOT_FOUND,
            ComputeError::Peer(_) | ComputeError::Net(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn submit(State(h): S, ApiJson(s): ApiJson<Submission>) -> ApiResult {
    let id = h.submit(s).await?;
    to_json(serde_json::json!({ "project": id }))
}

async fn projects(State(h): S) -> ApiResult {
    to_json(h.projects())
}

async fn status(State(h): S, Path(id): Path<String>) -> ApiResult {
    to_json(h.status(&id)?)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    from: u32,
    #[serde(default = "page")]
    limit: usize,
}

fn page() -> usize {
    1000
}

async fn results(State(h): S, Path(id): Path<String>, Query(p): Query<Page>) -> ApiResult {
    let (results, next) = h.results(&id, p.from, p.limit.clamp(1, 10_000)).await?;
    to_json(serde_json::json!({ "results": results, "next": next }))
}

async fn cancel(State(h): S, Path(id): Path<String>) -> ApiResult {
    let cancelled = h.cancel(&id)?;
    to_json(serde_json::json!({ "cancelled": cancelled }))
}

async fn volunteer(State(h): S) -> ApiResult {
    to_json(h.volunteer_status()?)
}

#[derive(Deserialize)]
struct SetVolunteer {
    on: bool,
    cores: Option<u32>,
    max_memory_mb: Option<u32>,
    idle_only: Option<bool>,
}

async fn set_volunteer(State(h): S, ApiJson(v): ApiJson<SetVolunteer>) -> ApiResult {
    to_json(h.set_volunteer(v.on, v.cores, v.max_memory_mb, v.idle_only)?)
}
