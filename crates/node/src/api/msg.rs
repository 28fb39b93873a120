//! Messaging routes (`/api/v1/msg/...`), thin over [`nodus_msg::MsgHandle`].

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, ApiState};

type ApiResult = Result<Json<Value>, ApiError>;

fn to_json<T: serde::Serialize>(v: T) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn invite(State(s): State<ApiState>) -> ApiResult {
    let code = s.msg.invite().await?;
    Ok(Json(
        json!({ "code": code, "peer_id": s.msg.local_peer_id().to_string() }),
    ))
}

#[derive(Deserialize)]
pub struct AddContact {
    code: String,
    name: Option<String>,
}

pub async fn add_contact(State(s): State<ApiState>, ApiJson(b): ApiJson<AddContact>) -> ApiResult {
    to_json(s.msg.add_contact(&b.code, b.name.as_deref()).await?)
}

pub async fn contacts(State(s): State<ApiState>) -> ApiResult {
    to_json(s.msg.contacts().await?)
}

#[derive(Deserialize)]
pub struct Send {
    to: String,
    text: String,
}

pub async fn send(State(s): State<ApiState>, ApiJson(b): ApiJson<Send>) -> ApiResult {
    to_json(s.msg.send(&b.to, &b.text).await?)
}

#[derive(Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    all: bool,
}

pub async fn inbox(State(s): State<ApiState>, Query(q): Query<InboxQuery>) -> ApiResult {
    to_json(s.msg.inbox(q.all).await?)
}

pub async fn history(State(s): State<ApiState>, Path(with): Path<String>) -> ApiResult {
    to_json(s.msg.history(&with).await?)
}

#[derive(Deserialize)]
pub struct GroupCreate {
    name: String,
}

pub async fn group_create(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<GroupCreate>,
) -> ApiResult {
    to_json(s.msg.group_create(&b.name).await?)
}

pub async fn groups(State(s): State<ApiState>) -> ApiResult {
    to_json(s.msg.groups().await?)
}

#[derive(Deserialize)]
pub struct Member {
    contact: String,
}

pub async fn group_add(
    State(s): State<ApiState>,
    Path(group): Path<String>,
    ApiJson(b): ApiJson<Member>,
) -> ApiResult {
    to_json(s.msg.group_add(&group, &b.contact).await?)
}

pub async fn group_remove(
    State(s): State<ApiState>,
    Path((group, contact)): Path<(String, String)>,
) -> ApiResult {
    to_json(s.msg.group_remove(&group, &contact).await?)
}

#[derive(Deserialize)]
pub struct GroupSend {
    text: String,
}

pub async fn group_send(
    State(s): State<ApiState>,
    Path(group): Path<String>,
    ApiJson(b): ApiJson<GroupSend>,
) -> ApiResult {
    to_json(s.msg.group_send(&group, &b.text).await?)
}

pub async fn stats(State(s): State<ApiState>) -> ApiResult {
    to_json(s.msg.stats().await?)
}

/// Fetches from the mailboxes now, rather than at the next poll.
pub async fn poll(State(s): State<ApiState>) -> ApiResult {
    s.msg.poll_mailboxes().await?;
    Ok(Json(json!({ "ok": true })))
}
