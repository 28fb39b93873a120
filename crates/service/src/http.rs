//! The HTTP shapes every service's routes share: errors as JSON
//! (`{"error": "<what went wrong and what to do>"}` with a fitting status), a JSON body
//! extractor whose refusals look the same, and the answer of a disabled service.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nodus_net::NetError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        let status = match &e {
            NetError::NotFound | NetError::PeerNotFound(_) => StatusCode::NOT_FOUND,
            NetError::BadAddr { .. } | NetError::RecordRefused(_) => StatusCode::BAD_REQUEST,
            NetError::NoTopicPeers | NetError::NoKnownPeers(_) => StatusCode::CONFLICT,
            NetError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            NetError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        // The rejection's own status: 413 for a body over the limit, 415 without a JSON
        // content type, 422 for JSON of the wrong shape, 400 for what is not JSON.
        ApiError::new(
            r.status(),
            format!(
                "the request body is not the JSON this route takes: {}",
                r.body_text()
            ),
        )
    }
}

/// `Json<T>` whose rejections are JSON errors like every other error of the API.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// What a route returns.
pub type ApiResult = Result<Json<serde_json::Value>, ApiError>;

/// Any serializable value as a JSON answer.
pub fn to_json<T: serde::Serialize>(v: T) -> ApiResult {
    serde_json::to_value(v).map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be encoded: {e}"),
        )
    })
}

/// The routes of a service that is off: every path under its prefix answers 503 with
/// the setting that turns it on.
pub fn disabled(name: &'static str, config_path: &std::path::Path) -> Router {
    let message = format!(
        "the {name} service is off on this node; set `enabled = true` under [{name}] in {} and restart the node",
        config_path.display()
    );
    let answer = move || {
        let message = message.clone();
        async move { ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    };
    Router::new()
        .route("/", axum::routing::any(answer.clone()))
        .route("/{*rest}", axum::routing::any(answer))
}
