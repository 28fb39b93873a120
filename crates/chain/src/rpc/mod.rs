//! Ethereum JSON-RPC over HTTP (POST /, single and batch requests) and over WebSocket
//! (GET / upgraded, with subscriptions) on the same address: the methods web3.py, ethers
//! and wallets use. It holds no keys, so it offers what a public node does.

pub mod filters;
pub mod follow;
mod format;
mod methods;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::call::Budget;
use crate::error::ChainError;
use crate::handle::ChainHandle;

pub use format::qty;

/// Answers one JSON-RPC method call on its own (as one request).
pub async fn call_method(
    h: &ChainHandle,
    method: &str,
    params: Vec<Value>,
) -> Result<Value, RpcError> {
    methods::call(h, method, params, &h.request_budget()).await
}

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;

/// A JSON-RPC error: code, message, optional data.
#[derive(Debug)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    pub fn params(message: impl Into<String>) -> Self {
        RpcError::new(-32602, message)
    }
    pub fn server(message: impl Into<String>) -> Self {
        RpcError::new(-32000, message)
    }
}

impl From<ChainError> for RpcError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Tx(t) => RpcError::server(t.to_string()),
            other => RpcError::server(other.to_string()),
        }
    }
}

/// Binds `listen` and serves until shutdown. The URL is recorded in the handle.
pub async fn serve(
    listen: &str,
    gate: Gate,
    handle: ChainHandle,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, ChainError> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        ChainError::Config(format!(
            "cannot listen for JSON-RPC on {listen}: {e}; set chain.rpc_listen in config.toml to \
             a free address (port 0 picks one), or \"\" for no JSON-RPC"
        ))
    })?;
    let addr: SocketAddr = listener.local_addr().map_err(|source| ChainError::Io {
        what: "the JSON-RPC listener's address",
        source,
    })?;
    if let Ok(mut u) = handle.rpc_url.lock() {
        *u = Some(format!("http://{addr}"));
    }
    let app = Router::new()
        .route("/", post(entry).get(upgrade))
        .with_state(Rpc {
            handle,
            gate: Arc::new(gate),
            shutdown: shutdown.clone(),
        });
    Ok(tokio::spawn(nodus_service::server::serve(
        "json-rpc",
        listener,
        app,
        Default::default(),
        shutdown,
    )))
}

/// The largest JSON-RPC answer sent; a larger one is refused with an error instead.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Who may call, as geth decides: only `application/json` bodies (a web page cannot send
/// those without a CORS preflight, which is refused), a Host that is an IP address or
/// one of `hosts`, and no Origin unless it is one of `origins`. A page the user visits
/// thus cannot reach the node blind, directly or through DNS rebinding.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    pub hosts: Vec<String>,
    pub origins: Vec<String>,
}

impl Gate {
    fn check(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid content type, only application/json is supported".into(),
            ));
        }
        self.check_caller(headers)
    }

    /// The Host and Origin checks alone: a browser always sends an Origin with a
    /// WebSocket handshake, so a page is refused unless it is allowed.
    fn check_caller(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !self.host_allowed(host) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("invalid host {host:?}; allow it with [chain] rpc_hosts in config.toml"),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self
                .origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "origin {origin:?} not allowed; allow it with [chain] rpc_origins in config.toml"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        // host[:port], or [v6]:port
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or("")
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        name.parse::<std::net::IpAddr>().is_ok()
            || self
                .hosts
                .iter()
                .any(|h| h == "*" || h.eq_ignore_ascii_case(name))
    }
}

#[derive(Clone)]
struct Rpc {
    handle: ChainHandle,
    gate: Arc<Gate>,
    shutdown: watch::Receiver<bool>,
}

/// GET /: a WebSocket for JSON-RPC with subscriptions.
async fn upgrade(
    State(rpc): State<Rpc>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(refused) = rpc.gate.check_caller(&headers) {
        return refused.into_response();
    }
    let Ok(ws) = ws else {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "This is Ethereum JSON-RPC: POST a JSON body, or connect a WebSocket (ws://) for              subscriptions.\n",
        )
            .into_response();
    };
    ws.max_message_size(ws::MAX_MESSAGE)
        .max_frame_size(ws::MAX_MESSAGE)
        .on_upgrade(move |socket| ws::serve(socket, rpc.handle, rpc.shutdown))
        .into_response()
}

async fn entry(State(rpc): State<Rpc>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(refused) = rpc.gate.check(&headers) {
        return refused.into_response();
    }
    let h = &rpc.handle;
    let reply = answer(h, &body).await;
    let bytes = serde_json::to_vec(&reply).unwrap_or_default();
    let bytes = if bytes.len() > MAX_RESPONSE_BYTES {
        let id = match &reply {
            Value::Object(o) => o.get("id").cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        serde_json::to_vec(&error_reply(
            id,
            RpcError::new(
                -32005,
                format!("the answer is over {MAX_RESPONSE_BYTES} bytes; ask for less"),
            ),
        ))
        .unwrap_or_default()
    } else {
        bytes
    };
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn answer(h: &ChainHandle, body: &[u8]) -> Value {
    let budget = h.request_budget();
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    match parsed {
        Err(e) => error_reply(
            Value::Null,
            RpcError::new(-32700, format!("parse error: {e}")),
        ),
        Ok(Value::Array(items)) => {
            if items.is_empty() {
                error_reply(Value::Null, RpcError::new(-32600, "empty batch"))
            } else if items.len() > MAX_BATCH {
                error_reply(
                    Value::Null,
                    RpcError::new(-32600, format!("batch of more than {MAX_BATCH} requests")),
                )
            } else {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(one(h, item, &budget).await);
                }
                Value::Array(out)
            }
        }
        Ok(item) => one(h, item, &budget).await,
    }
}

pub(crate) async fn one(h: &ChainHandle, req: Value, budget: &Budget) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return error_reply(id, RpcError::new(-32600, "invalid request: no method"));
    };
    let params = match req.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return error_reply(id, RpcError::params("params must be an array")),
    };
    match methods::call(h, method, params, budget).await {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => error_reply(id, e),
    }
}

pub(crate) fn error_reply(id: Value, e: RpcError) -> Value {
    let mut err = json!({ "code": e.code, "message": e.message });
    if let Some(d) = e.data {
        err["data"] = d;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": err })
}
