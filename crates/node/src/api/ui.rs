//! The dashboard: static files under `crates/node/ui`, embedded in the binary, served at
//! `/` and `/ui/<file>` without the token.
//!
//! The files hold no data; every figure on the page comes from the API, which the page
//! calls with `Authorization: Bearer`. The token reaches the page in the login URL's
//! fragment (`/#token=...`, see [`login_url`]): browsers never send a fragment to a
//! server, so it is in no request line, log or `Referer`; the page moves it to the tab's
//! `sessionStorage` and takes it out of the address bar. The page loads nothing from
//! elsewhere, and its content security policy says so.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nodus_service::Panel;
use rust_embed::RustEmbed;
use serde_json::{Value, json};

use super::ApiState;

/// A service's panel, and whether the service runs on this node.
#[derive(Clone)]
pub struct PanelEntry {
    pub service: &'static str,
    pub panel: Panel,
    pub running: bool,
}

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Files;

/// Scripts, styles, images and API calls from this origin only; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The URL that opens the dashboard of the node whose API's base URL is `api`
/// (`http://127.0.0.1:PORT`, as endpoints.json gives it), logged in with `token`.
pub fn login_url(api: &str, token: &str) -> String {
    format!("{}/#token={token}", api.trim_end_matches('/'))
}

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

/// `/ui/panels/<service>.js`: a service's panel script.
pub async fn panel_script(State(s): State<ApiState>, Path(file): Path<String>) -> Response {
    let found = file
        .strip_suffix(".js")
        .and_then(|name| s.panels.iter().find(|p| p.service == name));
    match found {
        Some(p) => with_headers(p.panel.script.into_response(), "text/javascript"),
        None => (StatusCode::NOT_FOUND, "no such panel").into_response(),
    }
}

/// `/api/v1/ui/panels` (behind the token): the panels to mount, those of the services
/// running here, in the node's service order.
pub async fn panels(State(s): State<ApiState>) -> Json<Value> {
    let list: Vec<Value> = s
        .panels
        .iter()
        .filter(|p| p.running)
        .map(|p| {
            json!({
                "service": p.service,
                "title": p.panel.title,
                "script": format!("/ui/panels/{}.js", p.service),
            })
        })
        .collect();
    Json(json!({ "panels": list }))
}

/// `/api/v1/narration` (behind the token): what the program driving this node's
/// network has narrated so far (the demo's steps, nodes and their activity).
pub async fn narration(State(s): State<ApiState>) -> Json<crate::narration::NarrationView> {
    Json(s.narration.view())
}

fn serve(path: &str) -> Response {
    let Some(f) = Files::get(path) else {
        return (StatusCode::NOT_FOUND, "no such file in the dashboard").into_response();
    };
    let mime = f.metadata.mimetype().to_string();
    with_headers(f.data.into_owned().into_response(), &mime)
}

fn with_headers(mut r: Response, mime: &str) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary; a stale app.js beside a new API would mislead.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_embedded() {
        let index = String::from_utf8(Files::get("index.html").unwrap().data.into_owned()).unwrap();
        for name in ["ui/app.js", "ui/style.css"] {
            assert!(index.contains(name), "index.html names {name}");
            assert!(
                Files::get(name.trim_start_matches("ui/")).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_token_goes_in_the_fragment_only() {
        let url = login_url("http://127.0.0.1:4000", "abc");
        assert_eq!(url, "http://127.0.0.1:4000/#token=abc");
        assert!(!url.split('#').next().unwrap().contains("abc"));
    }
}
