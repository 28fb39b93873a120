//! JSON routes.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use libp2p::{Multiaddr, PeerId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, ApiState, KV_NAMESPACE};

type ApiResult = Result<Json<Value>, ApiError>;

/// Longest a DHT or dial request may take before the API gives up.
const NET_TIMEOUT: Duration = Duration::from_secs(30);

async fn within<T>(
    fut: impl Future<Output = Result<T, nodus_net::NetError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(NET_TIMEOUT, fut).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(nodus_net::NetError::Timeout(NET_TIMEOUT).into()),
    }
}

fn parse_peer(s: &str) -> Result<PeerId, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{s:?} is not a peer id; peer ids look like 12D3KooW... (see `nodus peers`)"
        ))
    })
}

pub async fn status(State(s): State<ApiState>) -> ApiResult {
    let st = s.net.status().await?;
    let Json(mut v) = nodus_service::http::to_json(st)?;
    v["version"] = json!(env!("CARGO_PKG_VERSION"));
    v["data_dir"] = json!(s.data_dir);
    Ok(Json(v))
}

pub async fn peers(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(json!({ "peers": s.net.peers().await? })))
}

#[derive(Deserialize)]
pub struct ConnectBody {
    addr: String,
}

pub async fn connect(State(s): State<ApiState>, ApiJson(b): ApiJson<ConnectBody>) -> ApiResult {
    let peer = match b.addr.parse::<Multiaddr>() {
        Ok(addr) => within(s.net.dial(addr)).await?,
        Err(_) => match b.addr.parse::<PeerId>() {
            Ok(peer) => within(s.net.dial_peer(peer)).await?,
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "{:?} is neither a multiaddr (like /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...) nor a peer id",
                    b.addr
                )));
            }
        },
    };
    Ok(Json(json!({ "peer_id": peer.to_string() })))
}

#[derive(Deserialize)]
pub struct PingBody {
    peer: String,
    #[serde(default = "one")]
    count: usize,
}
fn one() -> usize {
    1
}

pub async fn ping(State(s): State<ApiState>, ApiJson(b): ApiJson<PingBody>) -> ApiResult {
    let peer = parse_peer(&b.peer)?;
    if b.count == 0 || b.count > 100 {
        return Err(ApiError::bad_request("count must be between 1 and 100"));
    }
    let rtts = within(s.net.ping(peer, b.count)).await?;
    let ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    Ok(Json(json!({ "peer": peer.to_string(), "rtt_ms": ms })))
}

fn kv_key(key: &str) -> Result<Vec<u8>, ApiError> {
    if key.is_empty() || key.len() > 256 {
        return Err(ApiError::bad_request("a DHT key must be 1 to 256 bytes"));
    }
    Ok(format!("{KV_NAMESPACE}{key}").into_bytes())
}

#[derive(Deserialize)]
pub struct PutBody {
    value: String,
}

pub async fn dht_put(
    State(s): State<ApiState>,
    Path(key): Path<String>,
    ApiJson(b): ApiJson<PutBody>,
) -> ApiResult {
    let replicated = within(s.net.put_record(kv_key(&key)?, b.value.into_bytes())).await?;
    Ok(Json(
        json!({ "key": key, "stored": true, "replicated": replicated }),
    ))
}

pub async fn dht_get(State(s): State<ApiState>, Path(key): Path<String>) -> ApiResult {
    let value = within(s.net.get_record(kv_key(&key)?)).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no value for key {key:?} in the DHT"),
            )
        } else {
            e
        }
    })?;
    Ok(Json(json!({
        "key": key,
        "value": String::from_utf8_lossy(&value),
        "value_hex": hex::encode(&value),
    })))
}

pub async fn routing(State(s): State<ApiState>) -> ApiResult {
    let table = s.net.routing_table().await?;
    let entries: Vec<Value> = table
        .into_iter()
        .map(|(p, addrs)| {
            json!({
                "peer_id": p.to_string(),
                "addresses": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
pub struct PublishBody {
    topic: String,
    data: String,
}

pub async fn publish(State(s): State<ApiState>, ApiJson(b): ApiJson<PublishBody>) -> ApiResult {
    if b.topic.is_empty() {
        return Err(ApiError::bad_request("topic must not be empty"));
    }
    let id = s
        .net
        .publish(&b.topic, b.data.into_bytes())
        .await
        .map_err(|e| {
            let mut err = ApiError::from(e);
            if err.status == StatusCode::CONFLICT {
                err.message = format!(
                    "no connected peer has subscribed to {:?} yet; subscribe on another node (`nodus pubsub subscribe {}`) and retry",
                    b.topic, b.topic
                );
            }
            err
        })?;
    Ok(Json(json!({ "id": id })))
}

pub async fn shutdown(State(s): State<ApiState>) -> ApiResult {
    let _ = s.shutdown.send(true);
    Ok(Json(json!({ "stopping": true })))
}

pub async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such API route; see the README for the list of routes",
    )
}
