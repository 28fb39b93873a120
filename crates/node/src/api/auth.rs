//! Bearer-token check in front of every route.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Compares without an early exit, so response time does not reveal a matching prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    state.metrics.requests.inc();
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    let refusal = match given {
        Some(t) if same(t.trim().as_bytes(), state.token.as_bytes()) => return next.run(req).await,
        Some(_) => {
            "wrong API token: read the current one from api.cookie in the node's data dir (it changes at every start)"
        }
        None => {
            "missing API token: send `Authorization: Bearer <token>` with the token from api.cookie in the node's data dir"
        }
    };
    state.metrics.unauthorized.inc();
    // A caller without the token keeps no connection open (and so no slot).
    let mut response = ApiError::unauthorized(refusal).into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
