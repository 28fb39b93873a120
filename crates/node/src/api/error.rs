//! Errors as JSON: `{"error": "<what went wrong and what to do>"}` with a fitting status.

use axum::Json;
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
            NetError::Publish(_) => StatusCode::CONFLICT,
            NetError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            NetError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<nodus_chain::ChainError> for ApiError {
    fn from(e: nodus_chain::ChainError) -> Self {
        use nodus_chain::ChainError as E;
        let status = match &e {
            E::Tx(_) | E::Config(_) | E::Wallet(_) => StatusCode::BAD_REQUEST,
            E::UnknownBlock(_) => StatusCode::NOT_FOUND,
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<nodus_msg::MsgError> for ApiError {
    fn from(e: nodus_msg::MsgError) -> Self {
        use nodus_msg::MsgError as E;
        let e = match e {
            E::Net(n) => return ApiError::from(n),
            other => other,
        };
        let status = match &e {
            E::NoContact(_) | E::NoGroup(_) => StatusCode::NOT_FOUND,
            E::Card(_)
            | E::Ambiguous(..)
            | E::EmptyText
            | E::TextTooLong(_)
            | E::OwnCode
            | E::NotMember(_)
            | E::AlreadyMember(_) => StatusCode::BAD_REQUEST,
            E::NotOwner(_) => StatusCode::FORBIDDEN,
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            E::Store(_) | E::Net(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<nodus_torrent::TorrentError> for ApiError {
    fn from(e: nodus_torrent::TorrentError) -> Self {
        use nodus_torrent::TorrentError as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Duplicate(_) => StatusCode::CONFLICT,
            E::Metainfo(_)
            | E::Magnet(_)
            | E::Create(_)
            | E::BadSource(_)
            | E::BadFileSelection(..) => StatusCode::BAD_REQUEST,
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            E::Listen { .. } | E::Store(_) | E::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::bad_request(format!(
            "the request body is not the JSON this route takes: {}",
            r.body_text()
        ))
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
