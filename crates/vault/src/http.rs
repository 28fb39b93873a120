//! Vault routes (`/api/v1/vault/...`) for the CLI, and the FHIR read API under
//! `/api/v1/vault/fhir` ([`crate::fhir_api`]). The node mounts them behind the API token.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_net::PeerId;
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::VaultError;
use crate::handle::VaultHandle;
use crate::wire::Refusal;

type S = State<VaultHandle>;

/// Largest bundle an import takes.
pub const IMPORT_LIMIT: usize = 64 << 20;

/// The routes, relative to `/api/v1/vault`.
pub fn routes(handle: VaultHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/id", get(id))
        .route(
            "/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/records", get(list))
        .route("/records/{rtype}/{id}", get(show))
        .route("/export", get(export))
        .route("/grants", get(grants).post(grant))
        .route("/grants/{provider}", axum::routing::delete(revoke))
        .route("/fetch", post(fetch))
        .route("/append", post(append))
        .route("/log", get(log))
        .route("/log/verify", get(verify))
        .route("/replicas", get(replicas).post(add_replica))
        .route("/replicas/{peer}", axum::routing::delete(remove_replica))
        .route("/holding", get(holding).post(hold))
        .route("/restore", post(restore))
        .nest("/fhir", crate::fhir_api::routes("/api/v1/vault/fhir"))
        .with_state(handle)
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        let status = match &e {
            VaultError::Invalid(_)
            | VaultError::UnknownType(_)
            | VaultError::BadProvider(_)
            | VaultError::NotImported { .. }
            | VaultError::NotEmpty => StatusCode::UNPROCESSABLE_ENTITY,
            VaultError::NoRecord(_) | VaultError::NoGrant(_) => StatusCode::NOT_FOUND,
            VaultError::Refused(Refusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            VaultError::Refused(_) => StatusCode::FORBIDDEN,
            VaultError::Peer(_) => StatusCode::BAD_GATEWAY,
            VaultError::LogBroken { .. } | VaultError::Tampered(_) | VaultError::Restore(_) => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn status(State(h): S) -> ApiResult {
    Ok(Json(h.status().await?))
}

async fn id(State(h): S) -> ApiResult {
    to_json(h.id())
}

async fn import(State(h): S, body: Bytes) -> ApiResult {
    to_json(h.import(body.to_vec()).await?)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "type")]
    rtype: Option<String>,
}

async fn list(State(h): S, Query(q): Query<ListQuery>) -> ApiResult {
    to_json(h.list(q.rtype).await?)
}

async fn show(State(h): S, Path((rtype, id)): Path<(String, String)>) -> ApiResult {
    Ok(Json(h.show(rtype, id).await?))
}

async fn export(State(h): S) -> Result<impl IntoResponse, ApiError> {
    let bytes = h.export().await?;
    Ok(([(header::CONTENT_TYPE, "application/fhir+json")], bytes))
}

#[derive(Deserialize)]
struct GrantBody {
    provider: String,
    #[serde(default)]
    types: Vec<String>,
    until_ms: Option<u64>,
}

async fn grant(State(h): S, ApiJson(b): ApiJson<GrantBody>) -> ApiResult {
    to_json(h.grant(&b.provider, b.types, b.until_ms).await?)
}

async fn grants(State(h): S) -> ApiResult {
    to_json(h.grants().await?)
}

async fn revoke(State(h): S, Path(provider): Path<String>) -> ApiResult {
    to_json(h.revoke(&provider).await?)
}

fn peer(text: &str) -> Result<PeerId, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a peer id (12D3KooW...)")))
}

#[derive(Deserialize)]
struct FetchBody {
    patient: String,
    #[serde(default)]
    types: Vec<String>,
}

async fn fetch(State(h): S, ApiJson(b): ApiJson<FetchBody>) -> ApiResult {
    to_json(h.fetch(peer(&b.patient)?, b.types).await?)
}

#[derive(Deserialize)]
struct AppendBody {
    patient: String,
    resource: Value,
}

async fn append(State(h): S, ApiJson(b): ApiJson<AppendBody>) -> ApiResult {
    to_json(h.append(peer(&b.patient)?, b.resource).await?)
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

async fn log(State(h): S, Query(q): Query<LogQuery>) -> ApiResult {
    let entries = h.log(q.from, q.limit.unwrap_or(1000).min(10_000)).await?;
    Ok(Json(json!(entries)))
}

async fn verify(State(h): S) -> ApiResult {
    to_json(h.verify().await?)
}

#[derive(Deserialize)]
struct PeerBody {
    peer: String,
}

async fn replicas(State(h): S) -> ApiResult {
    Ok(Json(json!(h.replicas().await?)))
}

async fn add_replica(State(h): S, ApiJson(b): ApiJson<PeerBody>) -> ApiResult {
    let new = h.add_replica(peer(&b.peer)?).await?;
    Ok(Json(json!({ "peer": b.peer, "added": new })))
}

async fn remove_replica(State(h): S, Path(p): Path<String>) -> ApiResult {
    let had = h.remove_replica(peer(&p)?).await?;
    if !had {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{p} is not a replica of this vault (`nodus vault replicas` lists them)"),
        ));
    }
    Ok(Json(json!({ "peer": p, "removed": true })))
}

async fn holding(State(h): S) -> ApiResult {
    to_json(h.holdings().await?)
}

async fn hold(State(h): S, ApiJson(b): ApiJson<PeerBody>) -> ApiResult {
    let new = h.hold(peer(&b.peer)?).await?;
    Ok(Json(json!({ "patient": b.peer, "added": new })))
}

async fn restore(State(h): S, ApiJson(b): ApiJson<PeerBody>) -> ApiResult {
    to_json(h.restore(peer(&b.peer)?).await?)
}
