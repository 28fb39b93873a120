//! The onion service's routes, under `/api/v1/onion`.

use axum::routing::get;
use axum::{Json, Router};

use crate::service::{OnionHandle, Status};

pub fn routes(h: OnionHandle) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let h = h.clone();
            async move { Json::<Status>(h.status().await) }
        }),
    )
}
