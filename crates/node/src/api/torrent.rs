//! Torrent routes (`/api/v1/torrents/...`), thin over [`nodus_torrent::TorrentHandle`].

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, ApiState};

type ApiResult = Result<Json<Value>, ApiError>;

fn torrents(s: &ApiState) -> Result<&nodus_torrent::TorrentHandle, ApiError> {
    s.torrent.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "file sharing is off on this node; set [torrent] enabled = true in config.toml and restart",
        )
    })
}

fn to_json<T: serde::Serialize>(v: T) -> Json<Value> {
    Json(serde_json::to_value(v).unwrap_or_default())
}

pub async fn list(State(s): State<ApiState>) -> ApiResult {
    Ok(to_json(torrents(&s)?.list()))
}

pub async fn get(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(to_json(torrents(&s)?.get(&id)?))
}

pub async fn add(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<nodus_torrent::AddRequest>,
) -> ApiResult {
    Ok(to_json(torrents(&s)?.add(req).await?))
}

pub async fn share(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<nodus_torrent::ShareRequest>,
) -> ApiResult {
    Ok(to_json(torrents(&s)?.share(req).await?))
}

pub async fn pause(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(to_json(torrents(&s)?.pause(&id)?))
}

pub async fn resume(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(to_json(torrents(&s)?.resume(&id)?))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    delete_files: bool,
}

pub async fn remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult {
    torrents(&s)?.remove(&id, q.delete_files).await?;
    Ok(Json(json!({ "removed": id })))
}

#[derive(Deserialize)]
pub struct Peers {
    peers: Vec<String>,
}

pub async fn add_peers(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<Peers>,
) -> ApiResult {
    torrents(&s)?.add_peers(&id, &b.peers)?;
    Ok(Json(json!({ "added": b.peers.len() })))
}
