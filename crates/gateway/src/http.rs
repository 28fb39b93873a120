//! Gateway routes on the node's API (`/api/v1/gateway/...`), behind the token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::json;

use crate::{AddSource, GatewayError, GatewayHandle, SourceError};

/// The routes, relative to `/api/v1/gateway`.
pub fn routes(handle: GatewayHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/open", post(open))
        .with_state(handle)
}

async fn status(State(g): State<GatewayHandle>) -> Json<serde_json::Value> {
    Json(json!({ "url": g.url(), "cached": g.cached() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// A magnet link or a hex infohash.
    #[serde(default)]
    pub source: Option<String>,
    /// A .torrent file's bytes, base64.
    #[serde(default)]
    pub torrent_base64: Option<String>,
    /// The file (from 1); by default the largest.
    #[serde(default)]
    pub file: Option<usize>,
}

async fn open(State(g): State<GatewayHandle>, ApiJson(req): ApiJson<OpenRequest>) -> ApiResult {
    let source = match (req.source, req.torrent_base64) {
        (Some(s), None) => AddSource::Link(s),
        (None, Some(b)) => AddSource::Torrent(base64_decode(&b).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "torrent_base64 is not base64")
        })?),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give either source (a magnet link or infohash) or torrent_base64",
            ));
        }
    };
    to_json(g.open(source, req.file).await?)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    data_encoding::BASE64.decode(s.as_bytes()).ok()
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let status = match &e {
            GatewayError::Source(SourceError::NotFound(_)) | GatewayError::NoSuchFile { .. } => {
                StatusCode::NOT_FOUND
            }
            GatewayError::Source(SourceError::BadRequest(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Source(SourceError::NotYet(_)) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Source(SourceError::Unavailable(_)) | GatewayError::NoTorrents => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
