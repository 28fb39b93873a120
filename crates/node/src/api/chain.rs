//! Chain routes (`/api/v1/chain/...`), thin over [`nodus_chain::ChainHandle`]. Blocks and
//! transactions come back in the same JSON as Ethereum JSON-RPC gives them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, ApiState};

type ApiResult = Result<Json<Value>, ApiError>;

fn chain(s: &ApiState) -> Result<&nodus_chain::ChainHandle, ApiError> {
    s.chain.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the chain service is off on this node; set [chain] enabled = true in config.toml and restart",
        )
    })
}

async fn rpc_call(s: &ApiState, method: &str, params: Vec<Value>) -> Result<Value, ApiError> {
    nodus_chain::rpc::call_method(chain(s)?, method, params)
        .await
        .map_err(|e| ApiError::bad_request(e.message))
}

pub async fn status(State(s): State<ApiState>) -> ApiResult {
    let st = chain(&s)?.status().await?;
    Ok(Json(serde_json::to_value(st).unwrap_or_default()))
}

#[derive(Deserialize)]
pub struct Mine {
    enabled: bool,
    threads: Option<usize>,
    coinbase: Option<String>,
}

pub async fn mine(State(s): State<ApiState>, ApiJson(b): ApiJson<Mine>) -> ApiResult {
    let coinbase = match b.coinbase.as_deref() {
        None | Some("") => None,
        Some(a) => Some(a.parse().map_err(|_| {
            ApiError::bad_request(format!("`{a}` is not a 0x-prefixed 20-byte address"))
        })?),
    };
    let c = chain(&s)?;
    let m = if b.enabled {
        c.set_mining(true, b.threads, coinbase)
    } else {
        // Answer once the miner has stopped and handed over what it found.
        c.stop_mining().await?;
        c.mining()
    };
    Ok(Json(serde_json::to_value(m).unwrap_or_default()))
}

/// A block by number, hash, or `latest`, with its transactions in full.
pub async fn block(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let v = if id.len() == 66 && id.starts_with("0x") {
        rpc_call(&s, "eth_getBlockByHash", vec![json!(id), json!(true)]).await?
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
        rpc_call(&s, "eth_getBlockByNumber", vec![json!(tag), json!(true)]).await?
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
pub async fn tx(State(s): State<ApiState>, Path(hash): Path<String>) -> ApiResult {
    let tx = rpc_call(&s, "eth_getTransactionByHash", vec![json!(hash)]).await?;
    if tx.is_null() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no transaction {hash} is known"),
        ));
    }
    let receipt = rpc_call(&s, "eth_getTransactionReceipt", vec![json!(hash)]).await?;
    Ok(Json(json!({ "transaction": tx, "receipt": receipt })))
}

#[derive(Deserialize)]
pub struct SendRaw {
    raw: String,
}

pub async fn send_raw(State(s): State<ApiState>, ApiJson(b): ApiJson<SendRaw>) -> ApiResult {
    let raw = hex::decode(b.raw.trim_start_matches("0x"))
        .map_err(|_| ApiError::bad_request("raw must be the signed transaction as hex"))?;
    let hash = chain(&s)?.submit_raw(raw).await?;
    Ok(Json(json!({ "hash": hash.to_string() })))
}

pub async fn account(State(s): State<ApiState>, Path(address): Path<String>) -> ApiResult {
    let a = address.parse().map_err(|_| {
        ApiError::bad_request(format!("`{address}` is not a 0x-prefixed 20-byte address"))
    })?;
    let c = chain(&s)?;
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
pub async fn rpc(State(s): State<ApiState>, ApiJson(b): ApiJson<Rpc>) -> ApiResult {
    Ok(Json(rpc_call(&s, &b.method, b.params).await?))
}
