//! Social routes (`/api/v1/social/...`), for people without a Nostr client: post as
//! this node's Nostr key, read the feed. The node mounts them behind the API token.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::json;

use crate::SocialHandle;
use crate::filter::Filter;
use crate::relay::Refusal;

type S = State<SocialHandle>;

/// The routes, relative to `/api/v1/social`.
pub fn routes(handle: SocialHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/post", post(post_note))
        .route("/feed", get(feed))
        .with_state(handle)
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::Store(_) | Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, r.to_string())
    }
}

async fn status(State(h): S) -> ApiResult {
    Ok(Json(json!({
        "relay": h.relay_url(),
        "pubkey": hex::encode(h.public_key()),
        "stored": h.stored(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostRequest {
    content: String,
    #[serde(default = "one")]
    kind: u16,
}

fn one() -> u16 {
    1
}

async fn post_note(State(h): S, ApiJson(req): ApiJson<PostRequest>) -> ApiResult {
    let e = h.post(req.kind, &req.content).await?;
    to_json(e)
}

#[derive(Deserialize)]
struct FeedQuery {
    limit: Option<usize>,
    author: Option<String>,
}

async fn feed(State(h): S, Query(q): Query<FeedQuery>) -> ApiResult {
    let mut f = Filter {
        limit: Some(q.limit.unwrap_or(20)),
        kinds: Some(vec![1]),
        ..Filter::default()
    };
    if let Some(a) = q.author {
        let mut k = [0u8; 32];
        hex::decode_to_slice(&a, &mut k).map_err(|_| {
            ApiError::bad_request(format!(
                "{a:?} is not an author: give a 64-character hex public key"
            ))
        })?;
        f.authors = Some(vec![k]);
    }
    let events: Vec<serde_json::Value> = h
        .query(vec![f])
        .await?
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    to_json(events)
}
