//! The HTTP API: JSON in and out, bearer token on every route, Prometheus text at
//! `/metrics`, live events as Server-Sent Events. The node's own routes live in
//! [`routes`]; each service's are mounted under `/api/v1/<service>`; the shape of errors
//! is [`ApiError`], shared with the services. The dashboard's files ([`ui`]) are the one
//! thing served without the token: they hold no data.

mod auth;
mod routes;
mod sse;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use nodus_net::NetworkHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::events::EventSource;
use crate::narration::Narration;
pub use nodus_service::http::{ApiError, ApiJson};

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
    /// The overlay's and each running service's events.
    pub events: EventSource,
    pub narration: Narration,
    /// Every service's dashboard panel, running or not.
    pub panels: Arc<Vec<ui::PanelEntry>>,
    pub token: Arc<String>,
    pub registry: Arc<Registry>,
    pub metrics: ApiMetrics,
    pub shutdown: watch::Sender<bool>,
    pub data_dir: String,
}

/// The API: the node's own routes, then each service's, nested at its prefix
/// (`/api/v1/<name>`, or a path a standard fixes, such as `/fhir`).
pub fn router(state: ApiState, services: Vec<(String, Router)>) -> Router {
    let mut app = Router::new()
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
        .route("/api/v1/ui/panels", get(ui::panels))
        .route("/api/v1/narration", get(ui::narration))
        .route("/api/v1/shutdown", post(routes::shutdown))
        .route("/metrics", get(routes::metrics))
        .with_state(state.clone());
    for (prefix, routes) in services {
        app = app.nest(&prefix, routes);
    }
    let guarded = app
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    // The dashboard's files hold no data: they load without the token, then ask for it.
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/panels/{file}", get(ui::panel_script))
        .route("/ui/{*path}", get(ui::file))
        .with_state(state)
        .merge(guarded)
}
