//! The onion service's routes, under `/api/v1/onion`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;

use crate::OnionError;
use crate::service::{OnionHandle, Status};

type S = State<OnionHandle>;

pub fn routes(h: OnionHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/services", get(services).post(serve))
        .route("/services/{port}", delete(unserve))
        .route("/relay", post(set_role))
        .with_state(h)
}

impl From<OnionError> for ApiError {
    fn from(e: OnionError) -> Self {
        let status = match &e {
            OnionError::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn status(State(h): S) -> Json<Status> {
    Json(h.status().await)
}

async fn services(State(h): S) -> ApiResult {
    to_json(h.status().await.services)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Serve {
    port: u16,
    #[serde(default = "default_virtual_port")]
    virtual_port: u16,
}

fn default_virtual_port() -> u16 {
    80
}

async fn serve(State(h): S, ApiJson(s): ApiJson<Serve>) -> ApiResult {
    to_json(h.serve(s.port, s.virtual_port)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    on: bool,
    #[serde(default)]
    exit: bool,
    /// Bytes a second passed on for others (0: no limit); absent: the config's.
    #[serde(default)]
    bandwidth: Option<u64>,
}

async fn set_role(State(h): S, ApiJson(r): ApiJson<SetRole>) -> ApiResult {
    to_json(h.set_role(r.on, r.exit, r.bandwidth).await?)
}

async fn unserve(State(h): S, Path(port): Path<u16>) -> ApiResult {
    if !h.unserve(port)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "port {port} is not served as an onion service (nodus onion status lists them)"
            ),
        ));
    }
    to_json(serde_json::json!({ "stopped": port }))
}
