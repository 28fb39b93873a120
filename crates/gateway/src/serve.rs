//! The gateway's HTTP face: files with Range, indexes, the magnet route, the player.
//!
//! Invariants:
//! - Bytes come only from verified pieces (the [`Reader`]s promise it). A request for
//!   data not here yet waits up to `wait_secs` for it; before the response has begun
//!   that ends in 504 with what was missing, after it the connection is cut (a player
//!   asks again with a Range).
//! - Bound to a loopback address, the gateway answers only requests for a loopback
//!   host (no DNS rebinding) and never requests another web site's page makes
//!   (`Sec-Fetch-Site: cross-site`); the magnet route, which starts downloads, refuses
//!   those wherever it is bound.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::cache::{Cache, ReadGuard};
use crate::config::GatewayConfig;
use crate::page;
use crate::range::{Plan, plan};
use crate::source::{AddSource, Reader, SharedContent, SourceError, TorrentView};

/// Bytes one read of the body asks for.
pub const CHUNK: usize = 1024 * 1024;

#[derive(Clone, Default)]
pub struct Metrics {
    pub requests: Counter,
    pub bytes: Counter,
    pub waited_too_long: Counter,
    pub refused: Counter,
}

impl Metrics {
    pub fn register(r: &mut prometheus_client::registry::Registry) -> Metrics {
        let m = Metrics::default();
        r.register("requests", "Content requests", m.requests.clone());
        r.register("bytes", "Bytes of content served", m.bytes.clone());
        r.register(
            "waited_too_long",
            "Requests that ended because data did not arrive in time",
            m.waited_too_long.clone(),
        );
        r.register(
            "refused",
            "Requests refused for their host or for coming from another site",
            m.refused.clone(),
        );
        m
    }
}

pub struct Gateway {
    pub content: SharedContent,
    pub cache: Arc<Cache>,
    pub config: GatewayConfig,
    /// Bound to a loopback address (see the module docs).
    pub local_only: bool,
    pub metrics: Metrics,
}

type G = State<Arc<Gateway>>;

pub fn router(g: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/content/magnet", get(magnet))
        .route("/content/{id}", get(index))
        .route("/content/{id}/", get(index))
        .route("/content/{id}/{*path}", get(file))
        .route("/play/{id}/{*path}", get(player))
        .layer(middleware::from_fn_with_state(g.clone(), guard))
        .with_state(g)
}

fn fail(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn source_fail(e: SourceError) -> Response {
    let status = match &e {
        SourceError::NotFound(_) => StatusCode::NOT_FOUND,
        SourceError::BadRequest(_) => StatusCode::BAD_REQUEST,
        SourceError::NotYet(_) => StatusCode::GATEWAY_TIMEOUT,
        SourceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        SourceError::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    fail(status, e)
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Whether `host` (a Host header) names this machine.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn guard(State(g): G, req: Request, next: Next) -> Response {
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if g.local_only {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            g.metrics.refused.inc();
            return fail(
                StatusCode::MISDIRECTED_REQUEST,
                "this gateway serves this machine only: use http://127.0.0.1:<port>/ (set [gateway] listen to serve others)",
            );
        }
    }
    if cross_site && (g.local_only || req.uri().path() == "/content/magnet") {
        g.metrics.refused.inc();
        return fail(
            StatusCode::FORBIDDEN,
            "another web site asked your browser for this; open the address directly instead",
        );
    }
    next.run(req).await
}

async fn home(State(g): G) -> Response {
    html(page::home(&g.content.list()))
}

/// A response that ends a request early (boxed: a `Response` is large).
type Refusal = Box<Response>;

fn view(g: &Gateway, id: &str) -> Result<TorrentView, Refusal> {
    g.content.torrent(id).map_err(|e| Box::new(match e {
        SourceError::NotFound(_) => fail(
            StatusCode::NOT_FOUND,
            format!(
                "no torrent {id} here: add it with /content/magnet?xt=urn:btih:<infohash>, or `nodus open <magnet>`"
            ),
        ),
        e => source_fail(e),
    }))
}

/// The torrent, once its metadata is here (a magnet's is waited for).
async fn ready(g: &Gateway, id: &str) -> Result<TorrentView, Refusal> {
    let t = view(g, id)?;
    if t.has_metadata {
        return Ok(t);
    }
    let wait = Duration::from_secs(g.config.metadata_wait_secs);
    g.content
        .wait_metadata(&t.id, wait)
        .await
        .map_err(|e| Box::new(source_fail(e)))
}

async fn index(State(g): G, Path(id): Path<String>) -> Response {
    match ready(&g, &id).await {
        Ok(t) => html(page::index(&t)),
        Err(r) => *r,
    }
}

async fn player(State(g): G, Path((id, path)): Path<(String, String)>) -> Response {
    match ready(&g, &id).await {
        Ok(t) if t.files.iter().any(|(p, _)| *p == path) => html(page::player(&t, &path)),
        Ok(_) => fail(
            StatusCode::NOT_FOUND,
            format!("torrent {id} has no file {path:?}"),
        ),
        Err(r) => *r,
    }
}

/// `/content/magnet?xt=urn:btih:...`: adds the torrent (to the cache) unless it is here,
/// waits for its metadata, and sends the browser to its only file or its index.
async fn magnet(State(g): G, RawQuery(q): RawQuery) -> Response {
    let Some(q) = q.filter(|q| !q.is_empty()) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "give the magnet link's parameters: /content/magnet?xt=urn:btih:<infohash>&tr=...",
        );
    };
    let id = match g.add(AddSource::Link(format!("magnet:?{q}"))).await {
        Ok(id) => id,
        Err(crate::GatewayError::Source(e)) => return source_fail(e),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let wait = Duration::from_secs(g.config.metadata_wait_secs);
    match g.content.wait_metadata(&id, wait).await {
        Ok(t) if t.files.len() == 1 => {
            Redirect::to(&page::file_url(&t.id, &t.files[0].0)).into_response()
        }
        Ok(t) => Redirect::to(&format!("/content/{}/", t.id)).into_response(),
        Err(e) => source_fail(e),
    }
}

impl Gateway {
    /// Adds a torrent through the gateway: a new one is the cache's. Returns its id.
    pub async fn add(&self, source: AddSource) -> Result<String, crate::GatewayError> {
        let (id, added) = self.content.add(source).await?;
        if added {
            self.cache.add(&id)?;
        }
        Ok(id)
    }
}

/// One piece of a response body: fixed bytes (multipart headers) or a range to read.
enum Segment {
    Fixed(Bytes),
    Read { pos: u64, end: u64 },
}

/// A response body being sent: its reader and what is left of it.
struct Sending {
    reader: Box<dyn Reader>,
    _guard: ReadGuard,
    segments: VecDeque<Segment>,
    wait: Duration,
    metrics: Metrics,
}

impl Sending {
    /// The next bytes of the body; an error ends it.
    async fn pull(&mut self) -> Option<Result<Bytes, SourceError>> {
        let (pos, end) = match self.segments.pop_front()? {
            Segment::Fixed(b) => return Some(Ok(b)),
            Segment::Read { pos, end } => (pos, end),
        };
        let want = ((end - pos) as usize).min(CHUNK);
        let got = match self.reader.read(pos, want, self.wait).await {
            Ok(b) if b.is_empty() => Err(SourceError::Other("the file ended early".into())),
            r => r,
        };
        match &got {
            Ok(b) => {
                let next = pos + b.len() as u64;
                if next < end {
                    self.segments.push_front(Segment::Read { pos: next, end });
                }
                self.metrics.bytes.inc_by(b.len() as u64);
            }
            Err(e) => {
                if matches!(e, SourceError::NotYet(_)) {
                    self.metrics.waited_too_long.inc();
                }
                self.segments.clear();
            }
        }
        Some(got)
    }
}

fn etag_matches(list: &HeaderValue, etag: &str) -> bool {
    list.to_str().is_ok_and(|l| {
        l.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    })
}

async fn file(
    State(g): G,
    Path((id, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    g.metrics.requests.inc();
    let t = match ready(&g, &id).await {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let Some(idx) = t.files.iter().position(|(p, _)| *p == path) else {
        return fail(
            StatusCode::NOT_FOUND,
            format!("torrent {id} has no file {path:?}: its files are listed at /content/{id}/"),
        );
    };
    let (fileno, len) = (idx + 1, t.files[idx].1);
    g.cache.touch(&t.id);
    // The bytes under an infohash never change: one tag per file, cached for good.
    let etag = format!("\"{}.{fileno}\"", t.id);
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| etag_matches(v, &etag))
    {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    // If-Range with another validator: the whole file, as it is now.
    let range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let range = headers
        .get(header::RANGE)
        .filter(|_| range_ok)
        .map(|v| v.to_str().unwrap_or("bytes=invalid"));
    let mut segments = VecDeque::new();
    let (status, total) = match plan(range, len) {
        Plan::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                h,
                format!("the range asked for is not within the file's {len} bytes\n"),
            )
                .into_response();
        }
        Plan::Full => {
            if len > 0 {
                segments.push_back(Segment::Read { pos: 0, end: len });
            }
            h.insert(header::CONTENT_TYPE, header_value(mime.as_ref()));
            (StatusCode::OK, len)
        }
        Plan::Parts(rs) if rs.len() == 1 => {
            let (a, b) = (*rs[0].start(), *rs[0].end());
            segments.push_back(Segment::Read { pos: a, end: b + 1 });
            h.insert(header::CONTENT_TYPE, header_value(mime.as_ref()));
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {a}-{b}/{len}")),
            );
            (StatusCode::PARTIAL_CONTENT, b + 1 - a)
        }
        Plan::Parts(rs) => {
            let boundary = format!("nodus-{}-{fileno}", &t.id[..t.id.len().min(16)]);
            let mut total = 0u64;
            for r in &rs {
                let (a, b) = (*r.start(), *r.end());
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {mime}\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
                );
                total += head.len() as u64 + (b + 1 - a);
                segments.push_back(Segment::Fixed(Bytes::from(head)));
                segments.push_back(Segment::Read { pos: a, end: b + 1 });
            }
            let tail = format!("\r\n--{boundary}--\r\n");
            total += tail.len() as u64;
            segments.push_back(Segment::Fixed(Bytes::from(tail)));
            h.insert(
                header::CONTENT_TYPE,
                header_value(&format!("multipart/byteranges; boundary={boundary}")),
            );
            (StatusCode::PARTIAL_CONTENT, total)
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    if method == Method::HEAD || segments.is_empty() {
        return (status, h).into_response();
    }
    let reader = match g.content.open(&t.id, fileno) {
        Ok(r) => r,
        Err(e) => return source_fail(e),
    };
    let mut body = Sending {
        reader,
        _guard: g.cache.reading(&t.id),
        segments,
        wait: Duration::from_secs(g.config.wait_secs),
        metrics: g.metrics.clone(),
    };
    // The first bytes before the status: a piece that never comes is a 504, not a
    // response that stops.
    let first = match body.pull().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return source_fail(e),
        None => Bytes::new(),
    };
    let rest = futures::stream::unfold(body, |mut body| async move {
        let item = body.pull().await?;
        Some((
            item.map_err(|e| {
                tracing::debug!(target: "nodus::gateway", "response cut: {e}");
                std::io::Error::other(e.to_string())
            }),
            body,
        ))
    });
    use futures::StreamExt;
    let stream = futures::stream::once(async move { Ok(first) }).chain(rest);
    (status, h, Body::from_stream(stream)).into_response()
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8788",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.3.2.1",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "evil.localhost.example:80",
            "10.0.0.1:8788",
            "",
            "[::2]:1",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }
}
