//! Social routes (`/api/v1/social/...`), for people without a Nostr client: post as
//! this node's Nostr key, read the feed, follow people, set the profile, replace the
//! key. The node mounts them behind the API token.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::json;

use crate::SocialHandle;
use crate::filter::Filter;
use crate::keys;
use crate::relay::Refusal;

type S = State<SocialHandle>;

/// The routes, relative to `/api/v1/social`.
pub fn routes(handle: SocialHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/post", post(post_note))
        .route("/feed", get(feed))
        .route("/follows", get(follows))
        .route("/follow", post(follow))
        .route("/unfollow", post(unfollow))
        .route("/profile", get(profile).post(set_profile))
        .route("/key", post(set_key))
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
    let pk = h.public_key();
    Ok(Json(json!({
        "relay": h.relay_url(),
        "pubkey": hex::encode(pk),
        "npub": keys::npub(&pk),
        "stored": h.stored(),
        "stored_bytes": h.stored_bytes(),
        "follows": h.follows().len(),
    })))
}

fn public_key(text: &str) -> Result<[u8; 32], ApiError> {
    keys::parse_public(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Who {
    pubkey: String,
}

async fn follows(State(h): S) -> ApiResult {
    let list: Vec<_> = h
        .follows()
        .iter()
        .map(|k| json!({"pubkey": hex::encode(k), "npub": keys::npub(k)}))
        .collect();
    to_json(list)
}

async fn follow(State(h): S, ApiJson(w): ApiJson<Who>) -> ApiResult {
    let k = public_key(&w.pubkey)?;
    let changed = h.set_follow(k, true).await?;
    Ok(Json(json!({"pubkey": hex::encode(k), "changed": changed})))
}

async fn unfollow(State(h): S, ApiJson(w): ApiJson<Who>) -> ApiResult {
    let k = public_key(&w.pubkey)?;
    let changed = h.set_follow(k, false).await?;
    Ok(Json(json!({"pubkey": hex::encode(k), "changed": changed})))
}

async fn profile(State(h): S) -> ApiResult {
    let p = h.profile().await?;
    let fields: serde_json::Value = p
        .as_ref()
        .and_then(|e| serde_json::from_str(&e.content).ok())
        .unwrap_or_else(|| json!({}));
    Ok(Json(json!({
        "pubkey": hex::encode(h.public_key()),
        "profile": fields,
        "created_at": p.map(|e| e.created_at),
    })))
}

/// NIP-01/NIP-24 profile fields a person sets here; others are kept as they were.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFields {
    name: Option<String>,
    display_name: Option<String>,
    about: Option<String>,
    picture: Option<String>,
    website: Option<String>,
    nip05: Option<String>,
}

async fn set_profile(State(h): S, ApiJson(p): ApiJson<ProfileFields>) -> ApiResult {
    let mut fields = serde_json::Map::new();
    for (k, v) in [
        ("name", p.name),
        ("display_name", p.display_name),
        ("about", p.about),
        ("picture", p.picture),
        ("website", p.website),
        ("nip05", p.nip05),
    ] {
        if let Some(v) = v {
            fields.insert(k.into(), v.into());
        }
    }
    if fields.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to set: give at least one of name, display_name, about, picture, website, nip05",
        ));
    }
    to_json(h.set_profile(fields).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    /// A secret key to import (hex or nsec); none makes a new one.
    secret: Option<String>,
}

async fn set_key(State(h): S, ApiJson(req): ApiJson<KeyRequest>) -> ApiResult {
    let keys = match req.secret {
        Some(s) => keys::parse_secret(&s).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => crate::Keys::generate(),
    };
    let kept = h
        .set_keys(keys)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let pk = h.public_key();
    Ok(Json(json!({
        "pubkey": hex::encode(pk),
        "npub": keys::npub(&pk),
        "previous_key_kept_at": kept.map(|p| p.display().to_string()),
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
        f.authors = Some(vec![public_key(&a)?]);
    }
    let events: Vec<serde_json::Value> = h
        .query(vec![f])
        .await?
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    to_json(events)
}
