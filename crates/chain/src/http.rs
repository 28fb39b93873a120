//! Chain routes (`/api/v1/chain/...`), thin over [`ChainHandle`]; the node mounts them
//! behind the API token. Blocks and transactions come back in the same JSON as Ethereum
//! JSON-RPC gives them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodus_service::http::{ApiError, ApiJson, ApiResult, to_json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ChainHandle;

type S = State<ChainHandle>;

/// The routes, relative to `/api/v1/chain`.
pub fn routes(handle: ChainHandle) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/mine", post(mine))
        .route("/blocks/{id}", get(block))
        .route("/txs", post(send_raw))
        .route("/txs/{hash}", get(tx))
        .route("/accounts/{address}", get(account))
        .route("/rpc", post(rpc))
        .with_state(handle)
}

async fn rpc_call(c: &ChainHandle, method: &str, params: Vec<Value>) -> Result<Value, ApiError> {
    crate::rpc::call_method(c, method, params)
        .await
        .map_err(|e| ApiError::bad_request(e.message))
}

pub async fn status(State(c): S) -> ApiResult {
    let st = c.status().await?;
    to_json(st)
}

#[derive(Deserialize)]
pub struct Mine {
    enabled: bool,
    threads: Option<usize>,
    coinbase: Option<String>,
}

pub async fn mine(State(c): S, ApiJson(b): ApiJson<Mine>) -> ApiResult {
    let coinbase = match b.coinbase.as_deref() {
        None | Some("") => None,
        Some(a) => Some(a.parse().map_err(|_| {
            ApiError::bad_request(format!("`{a}` is not a 0x-prefixed 20-byte address"))
        })?),
    };
    let m = if b.enabled {
        c.set_mining(true, b.threads, coinbase)
    } else {
        // Answer once the miner has stopped and handed over what it found.
        c.stop_mining().await?;
        c.mining()
    };
    to_json(m)
}

/// A block by number, hash, or `latest`, with its transactions in full.
pub async fn block(State(c): S, Path(id): Path<String>) -> ApiResult {
    let v = if id.len() == 66 && id.starts_with("0x") {
        rpc_call(&c, "eth_getBlockByHash", vec![json!(id), json!(true)]).await?
    } else {
        let tag = match id.as_str() {
            "latest" | "earliest" => id.clone(),
            n => format!(
                "{:#x}",
                n.parse::<u64>().map_err(|_| ApiError::bad_request(
                    "a block is a number, a 0x-prefixed 32-byte hash, or `latest`"
                ))?
            ),
        };
        rpc_call(&c, "eth_getBlockByNumber", vec![json!(tag), json!(true)]).await?
    };
    if v.is_null() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no block {id} on the canonical chain"),
        ));
    }
    Ok(Json(v))
}

/// A transaction and, once mined, its receipt.
pub async fn tx(State(c): S, Path(hash): Path<String>) -> ApiResult {
    let tx = rpc_call(&c, "eth_getTransactionByHash", vec![json!(hash)]).await?;
    if tx.is_null() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no transaction {hash} is known"),
        ));
    }
    let receipt = rpc_call(&c, "eth_getTransactionReceipt", vec![json!(hash)]).await?;
    Ok(Json(json!({ "transaction": tx, "receipt": receipt })))
}

#[derive(Deserialize)]
pub struct SendRaw {
    raw: String,
}

pub async fn send_raw(State(c): S, ApiJson(b): ApiJson<SendRaw>) -> ApiResult {
    let raw = hex::decode(b.raw.trim_start_matches("0x"))
        .map_err(|_| ApiError::bad_request("raw must be the signed transaction as hex"))?;
    let hash = c.submit_raw(raw).await?;
    Ok(Json(json!({ "hash": hash.to_string() })))
}

pub async fn account(State(c): S, Path(address): Path<String>) -> ApiResult {
    let a = address.parse().map_err(|_| {
        ApiError::bad_request(format!("`{address}` is not a 0x-prefixed 20-byte address"))
    })?;
    let balance = c.balance(a).await?;
    let nonce = c.pending_nonce(a).await?;
    Ok(Json(
        json!({ "address": address, "balance": balance.to_string(), "nonce": nonce }),
    ))
}

#[derive(Deserialize)]
pub struct Rpc {
    method: String,
    #[serde(default)]
    params: Vec<Value>,
}

/// Any JSON-RPC method, behind the API token (for the CLI).
pub async fn rpc(State(c): S, ApiJson(b): ApiJson<Rpc>) -> ApiResult {
    Ok(Json(rpc_call(&c, &b.method, b.params).await?))
}

/// A person's mistake is a 4xx that says what to do; a stopped service is 503.
impl From<crate::ChainError> for ApiError {
    fn from(e: crate::ChainError) -> Self {
        use crate::ChainError as E;
        let status = match &e {
            E::Tx(_) | E::Config(_) | E::Wallet(_) => StatusCode::BAD_REQUEST,
            E::UnknownBlock(_) => StatusCode::NOT_FOUND,
            E::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}
