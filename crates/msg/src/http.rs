//! Messaging routes (`/api/v1/msg/...`), thin over [`MsgHandle`]; the node mounts them
//! behind the API token.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::json;

use crate::MsgHandle;
use crate::service::NewFile;

type S = State<MsgHandle>;

/// The routes, relative to `/api/v1/msg`.
pub fn routes(handle: MsgHandle) -> Router {
    Router::new()
        .route("/invite", post(invite))
        .route("/contacts", get(contacts).post(add_contact))
        .route("/send", post(send))
        .route(
            "/files",
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/{hash}", get(download))
        .route("/files/{hash}/info", get(file_info))
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
    #[serde(default)]
    text: String,
    /// Files from the file store (uploaded to `/files` first).
    #[serde(default)]
    files: Vec<NewFile>,
}

pub async fn send(State(s): S, ApiJson(b): ApiJson<Send>) -> ApiResult {
    if b.files.is_empty() {
        to_json(s.send(&b.to, &b.text).await?)
    } else {
        to_json(s.send_files(&b.to, &b.text, b.files).await?)
    }
}

/// Takes the request body into the file store: `{"hash", "size"}` to send it with.
/// The body is streamed to disk, never held whole; `[msg] max_file_mib` bounds it.
pub async fn upload(State(s): S, body: axum::body::Body) -> ApiResult {
    let (hash, size) = s.import_file(body.into_data_stream()).await?;
    Ok(Json(json!({ "hash": hash, "size": size })))
}

pub async fn file_info(State(s): S, Path(hash): Path<String>) -> ApiResult {
    match s.file(&hash).await? {
        Some(f) => to_json(f),
        None => Err(no_file(&hash)),
    }
}

fn no_file(hash: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no file {hash} here: `nodus msg history <contact>` lists the files of messages"),
    )
}

/// The bytes of a complete file, named and typed as its message said.
pub async fn download(State(s): S, Path(hash): Path<String>) -> Result<Response, ApiError> {
    let info = s.file(&hash).await?.ok_or_else(|| no_file(&hash))?;
    let Some(path) = s.file_path(&hash) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{} is not here yet: {} of {} bytes ({:?}); `nodus msg save {hash}` waits for it",
                info.name, info.received, info.size, info.state
            ),
        ));
    };
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let body =
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let name: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let headers = [
        (header::CONTENT_TYPE, info.mime.clone()),
        (header::CONTENT_LENGTH, info.size.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    Ok((headers, body).into_response())
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
            | E::SignalTooLarge
            | E::BadFile(_) => StatusCode::BAD_REQUEST,
            E::NoFile(_) => StatusCode::NOT_FOUND,
            E::Import(crate::files::ImportError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            E::Import(crate::files::ImportError::Empty | crate::files::ImportError::Body(_)) => {
                StatusCode::BAD_REQUEST
            }
            E::Import(crate::files::ImportError::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            E::NotOwner(_) => StatusCode::FORBIDDEN,
            E::NotAnonymousYet(_) => StatusCode::CONFLICT,
            E::Key(_) | E::NeedsOnion | E::Onion(_) | E::Listen(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            E::Store(_) | E::Olm(_) | E::Net(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
