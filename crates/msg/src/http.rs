//! Messaging routes (`/api/v1/msg/...`), thin over [`MsgHandle`]; the node mounts them
//! behind the API token.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::json;

use crate::MsgHandle;

type S = State<MsgHandle>;

/// The routes, relative to `/api/v1/msg`.
pub fn routes(handle: MsgHandle) -> Router {
    Router::new()
        .route("/invite", post(invite))
        .route("/contacts", get(contacts).post(add_contact))
        .route("/send", post(send))
        .route("/inbox", get(inbox))
        .route("/history/{with}", get(history))
        .route("/groups", get(groups).post(group_create))
        .route("/groups/{group}/members", post(group_add))
        .route("/groups/{group}/members/{contact}", delete(group_remove))
        .route("/groups/{group}/send", post(group_send))
        .route("/stats", get(stats))
        .route("/poll", post(poll))
        .with_state(handle)
}

pub async fn invite(State(s): S) -> ApiResult {
    let code = s.invite().await?;
    Ok(Json(
        json!({ "code": code, "peer_id": s.local_peer_id().to_string() }),
    ))
}

#[derive(Deserialize)]
pub struct AddContact {
    code: String,
    name: Option<String>,
}

pub async fn add_contact(State(s): S, ApiJson(b): ApiJson<AddContact>) -> ApiResult {
    to_json(s.add_contact(&b.code, b.name.as_deref()).await?)
}

pub async fn contacts(State(s): S) -> ApiResult {
    to_json(s.contacts().await?)
}

#[derive(Deserialize)]
pub struct Send {
    to: String,
    text: String,
}

pub async fn send(State(s): S, ApiJson(b): ApiJson<Send>) -> ApiResult {
    to_json(s.send(&b.to, &b.text).await?)
}

#[derive(Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    all: bool,
}

pub async fn inbox(State(s): S, Query(q): Query<InboxQuery>) -> ApiResult {
    to_json(s.inbox(q.all).await?)
}

pub async fn history(State(s): S, Path(with): Path<String>) -> ApiResult {
    to_json(s.history(&with).await?)
}

#[derive(Deserialize)]
pub struct GroupCreate {
    name: String,
}

pub async fn group_create(State(s): S, ApiJson(b): ApiJson<GroupCreate>) -> ApiResult {
    to_json(s.group_create(&b.name).await?)
}

pub async fn groups(State(s): S) -> ApiResult {
    to_json(s.groups().await?)
}

#[derive(Deserialize)]
pub struct Member {
    contact: String,
}

pub async fn group_add(
    State(s): S,
    Path(group): Path<String>,
    ApiJson(b): ApiJson<Member>,
) -> ApiResult {
    to_json(s.group_add(&group, &b.contact).await?)
}

pub async fn group_remove(
    State(s): S,
    Path((group, contact)): Path<(String, String)>,
) -> ApiResult {
    to_json(s.group_remove(&group, &contact).await?)
}

#[derive(Deserialize)]
pub struct GroupSend {
    text: String,
}

pub async fn group_send(
    State(s): S,
    Path(group): Path<String>,
    ApiJson(b): ApiJson<GroupSend>,
) -> ApiResult {
    to_json(s.group_send(&group, &b.text).await?)
}

pub async fn stats(State(s): S) -> ApiResult {
    to_json(s.stats().await?)
}

/// Fetches from the mailboxes now, rather than at the next poll.
pub async fn poll(State(s): S) -> ApiResult {
    s.poll_mailboxes().await?;
    Ok(Json(json!({ "ok": true })))
}

/// A person's mistake is a 4xx that says what to do; a stopped service is 503.
impl From<crate::MsgError> for ApiError {
    fn from(e: crate::MsgError) -> Self {
        use crate::MsgError as E;
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
            | E::AlreadyMember(_)
            | E::SignalTooLarge => StatusCode::BAD_REQUEST,
            E::NotOwner(_) => StatusCode::FORBIDDEN,
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            E::Store(_) | E::Olm(_) | E::Net(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
