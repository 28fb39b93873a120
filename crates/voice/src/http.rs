//! Voice routes (`/api/v1/voice/...`). The node mounts them behind the API token.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::VoiceError;
use crate::calls::Media;
use crate::handle::VoiceHandle;
use crate::history::CallRecord;

type S = State<VoiceHandle>;

/// The routes, relative to `/api/v1/voice`.
pub fn routes(handle: VoiceHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/calls", get(list).post(place))
        .route("/calls/{id}", get(show))
        .route("/answer", post(answer))
        .route("/reject", post(reject))
        .route("/hangup", post(hangup))
        .route("/history", get(history))
        .with_state(handle)
}

impl From<VoiceError> for ApiError {
    fn from(e: VoiceError) -> Self {
        use crate::signaling::SignalingError;
        let status = match &e {
            VoiceError::Signaling(SignalingError::NotAContact(_)) | VoiceError::NoSuchCall(_) => {
                StatusCode::NOT_FOUND
            }
            VoiceError::NothingRinging
            | VoiceError::WhichCall(_)
            | VoiceError::NotRinging(_)
            | VoiceError::InCall(_) => StatusCode::CONFLICT,
            VoiceError::Myself(_)
            | VoiceError::Wav { .. }
            | VoiceError::File(..)
            | VoiceError::Device(_) => StatusCode::UNPROCESSABLE_ENTITY,
            VoiceError::NoMessaging => StatusCode::SERVICE_UNAVAILABLE,
            VoiceError::Signaling(_) | VoiceError::Relay(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn status(State(h): S) -> Json<Value> {
    Json(json!({
        "calls": h.list(),
        "relay": h.relay(),
    }))
}

async fn list(State(h): S) -> Json<Vec<CallRecord>> {
    Json(h.list())
}

#[derive(Deserialize)]
struct PlaceBody {
    to: String,
    #[serde(flatten)]
    media: Media,
}

async fn place(State(h): S, ApiJson(b): ApiJson<PlaceBody>) -> Result<Json<CallRecord>, ApiError> {
    Ok(Json(h.call(&b.to, b.media).await?))
}

async fn show(State(h): S, Path(id): Path<String>) -> Result<Json<CallRecord>, ApiError> {
    Ok(Json(h.get(&id)?))
}

#[derive(Deserialize, Default)]
struct Which {
    call: Option<String>,
    #[serde(flatten)]
    media: Media,
}

async fn answer(State(h): S, ApiJson(b): ApiJson<Which>) -> Result<Json<CallRecord>, ApiError> {
    Ok(Json(h.answer(b.call.as_deref(), b.media).await?))
}

async fn reject(State(h): S, ApiJson(b): ApiJson<Which>) -> Result<Json<CallRecord>, ApiError> {
    Ok(Json(h.reject(b.call.as_deref()).await?))
}

async fn hangup(State(h): S, ApiJson(b): ApiJson<Which>) -> Result<Json<CallRecord>, ApiError> {
    Ok(Json(h.hangup(b.call.as_deref()).await?))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn history(State(h): S, Query(q): Query<Limit>) -> Result<Json<Vec<CallRecord>>, ApiError> {
    Ok(Json(h.history(q.limit.unwrap_or(50))?))
}
