//! Torrent routes (`/api/v1/torrent/...`), thin over [`TorrentHandle`]; the node mounts
//! them behind the API token.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::json;

use crate::TorrentHandle;

type S = State<TorrentHandle>;

/// The largest add request: a .torrent of the largest size taken, in base64, and the rest.
const ADD_BODY_LIMIT: usize = (crate::MAX_TORRENT_FILE as usize).div_ceil(3) * 4 + 64 * 1024;

/// The routes, relative to `/api/v1/torrent`.
pub fn routes(handle: TorrentHandle) -> Router {
    Router::new()
        // A .torrent file comes as base64 in the body: room for the largest taken.
        .route(
            "/",
            get(list)
                .post(add)
                .layer(DefaultBodyLimit::max(ADD_BODY_LIMIT)),
        )
        .route("/share", post(share))
        .route("/{id}", get(get_one).delete(remove))
        .route("/{id}/pieces", get(piece_map))
        .route("/{id}/pause", post(pause))
        .route("/{id}/resume", post(resume))
        .route("/{id}/peers", post(add_peers))
        .with_state(handle)
}

pub async fn list(State(t): S) -> ApiResult {
    to_json(t.list())
}

pub async fn get_one(State(t): S, Path(id): Path<String>) -> ApiResult {
    to_json(t.get(&id)?)
}

pub async fn add(State(t): S, ApiJson(req): ApiJson<crate::AddRequest>) -> ApiResult {
    to_json(t.add(req).await?)
}

pub async fn share(State(t): S, ApiJson(req): ApiJson<crate::ShareRequest>) -> ApiResult {
    to_json(t.share(req).await?)
}

pub async fn piece_map(State(t): S, Path(id): Path<String>) -> ApiResult {
    to_json(t.piece_map(&id)?)
}

pub async fn pause(State(t): S, Path(id): Path<String>) -> ApiResult {
    to_json(t.pause(&id)?)
}

pub async fn resume(State(t): S, Path(id): Path<String>) -> ApiResult {
    to_json(t.resume(&id)?)
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    delete_files: bool,
}

pub async fn remove(
    State(t): S,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult {
    t.remove(&id, q.delete_files).await?;
    Ok(Json(json!({ "removed": id })))
}

#[derive(Deserialize)]
pub struct Peers {
    peers: Vec<String>,
}

pub async fn add_peers(
    State(t): S,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<Peers>,
) -> ApiResult {
    t.add_peers(&id, &b.peers)?;
    Ok(Json(json!({ "added": b.peers.len() })))
}

/// A person's mistake is a 4xx that says what to do; a stopped service is 503.
impl From<crate::TorrentError> for ApiError {
    fn from(e: crate::TorrentError) -> Self {
        use crate::TorrentError as E;
        let status = match &e {
            E::NotFound(_) | E::NoSuchFile { .. } => StatusCode::NOT_FOUND,
            E::Paused(_) => StatusCode::CONFLICT,
            E::NoMetadata(_) | E::NotYet { .. } => StatusCode::GATEWAY_TIMEOUT,
            E::Duplicate(_) => StatusCode::CONFLICT,
            E::Metainfo(_)
            | E::Magnet(_)
            | E::Create(_)
            | E::BadSource(_)
            | E::NotAFile(_)
            | E::BadFileSelection(..) => StatusCode::BAD_REQUEST,
            E::TorrentFileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            E::Listen { .. }
            | E::Store(_)
            | E::NothingToResume(_)
            | E::HttpClient(_)
            | E::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
