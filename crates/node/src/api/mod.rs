//! The HTTP API: JSON in and out, bearer token on every route, Prometheus text at
//! `/metrics`, live events as Server-Sent Events. Routes live in [`routes`]; the shape
//! of errors in [`ApiError`].

mod auth;
mod chain;
mod error;
mod msg;
mod routes;
mod sse;
mod torrent;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use nodus_net::NetworkHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use error::{ApiError, ApiJson};

/// Key prefix of values set with `nodus dht put`.
pub const KV_NAMESPACE: &str = "/kv/";

#[derive(Clone, Default)]
pub struct ApiMetrics {
    pub requests: Counter,
    pub unauthorized: Counter,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ApiMetrics::default();
        let r = registry.sub_registry_with_prefix("nodus_api");
        r.register("requests", "API requests served", m.requests.clone());
        r.register(
            "unauthorized",
            "API requests refused for a missing or wrong token",
            m.unauthorized.clone(),
        );
        m
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub net: NetworkHandle,
    pub msg: nodus_msg::MsgHandle,
    pub chain: Option<nodus_chain::ChainHandle>,
    pub torrent: Option<nodus_torrent::TorrentHandle>,
    pub token: Arc<String>,
    pub registry: Arc<Registry>,
    pub metrics: ApiMetrics,
    pub shutdown: watch::Sender<bool>,
    pub data_dir: String,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(routes::status))
        .route("/api/v1/peers", get(routes::peers))
        .route("/api/v1/connect", post(routes::connect))
        .route("/api/v1/ping", post(routes::ping))
        .route(
            "/api/v1/dht/{key}",
            get(routes::dht_get).put(routes::dht_put),
        )
        .route("/api/v1/routing", get(routes::routing))
        .route("/api/v1/pubsub/publish", post(routes::publish))
        .route("/api/v1/pubsub/subscribe", get(sse::subscribe))
        .route("/api/v1/events", get(sse::events))
        .route("/api/v1/shutdown", post(routes::shutdown))
        .route("/api/v1/chain", get(chain::status))
        .route("/api/v1/chain/mine", post(chain::mine))
        .route("/api/v1/chain/blocks/{id}", get(chain::block))
        .route("/api/v1/chain/txs", post(chain::send_raw))
        .route("/api/v1/chain/txs/{hash}", get(chain::tx))
        .route("/api/v1/chain/accounts/{address}", get(chain::account))
        .route("/api/v1/chain/rpc", post(chain::rpc))
        .route("/api/v1/msg/invite", post(msg::invite))
        .route(
            "/api/v1/msg/contacts",
            get(msg::contacts).post(msg::add_contact),
        )
        .route("/api/v1/msg/send", post(msg::send))
        .route("/api/v1/msg/inbox", get(msg::inbox))
        .route("/api/v1/msg/history/{with}", get(msg::history))
        .route(
            "/api/v1/msg/groups",
            get(msg::groups).post(msg::group_create),
        )
        .route("/api/v1/msg/groups/{group}/members", post(msg::group_add))
        .route(
            "/api/v1/msg/groups/{group}/members/{contact}",
            axum::routing::delete(msg::group_remove),
        )
        .route("/api/v1/msg/groups/{group}/send", post(msg::group_send))
        .route("/api/v1/msg/stats", get(msg::stats))
        .route("/api/v1/msg/poll", post(msg::poll))
        .route("/api/v1/torrents", get(torrent::list).post(torrent::add))
        .route("/api/v1/torrents/share", post(torrent::share))
        .route(
            "/api/v1/torrents/{id}",
            get(torrent::get).delete(torrent::remove),
        )
        .route("/api/v1/torrents/{id}/pause", post(torrent::pause))
        .route("/api/v1/torrents/{id}/resume", post(torrent::resume))
        .route("/api/v1/torrents/{id}/peers", post(torrent::add_peers))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}
