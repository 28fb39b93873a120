//! nodus-gateway: any torrent's files over HTTP while they download, so a browser or a
//! media player starts playing at once and seeks anywhere.
//!
//! - `GET /content/<infohash>/<path>` with Range (single, suffix, several as
//!   multipart/byteranges; 416 when unsatisfiable), Content-Type, Content-Length,
//!   Accept-Ranges, ETag (If-None-Match, If-Range); `/content/<infohash>/` an HTML index;
//!   `/play/<infohash>/<path>` a player page; `/content/magnet?xt=...` adds the
//!   torrent on the first request ([`serve`]).
//! - It reads through the [`Content`] trait, which the node implements over the
//!   torrent service and offers through [`nodus_service::Provided`]: the torrent
//!   engine's streaming readers fetch the pieces under each reader's cursor first, from
//!   the fastest peers (`nodus_torrent::stream`).
//! - Torrents it added itself are a cache within `cache_mb`, least recently watched
//!   removed first; torrents added by hand are never touched ([`cache`]).
//!
//! Invariants: bytes served come only from verified pieces; nothing a request says
//! makes the gateway allocate more than one chunk per response ([`serve::CHUNK`]) or
//! wait longer than `wait_secs`; see [`serve`] for who may ask.

pub mod cache;
pub mod config;
mod error;
pub mod http;
pub mod page;
pub mod range;
pub mod serve;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use source::{AddSource, Content, Reader, SharedContent, SourceError, TorrentView};

/// How often the cache's times are written and its budget enforced.
pub const CACHE_INTERVAL: Duration = Duration::from_secs(30);

/// The handle the node and tests use. Cloning is cheap.
#[derive(Clone)]
pub struct GatewayHandle {
    gateway: Arc<serve::Gateway>,
    addr: SocketAddr,
}

/// What opening a torrent through the gateway gives.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Opened {
    pub id: String,
    /// The file's number (from 1), its path and its URL.
    pub file: usize,
    pub path: String,
    pub url: String,
}

impl GatewayHandle {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a torrent (to the cache, unless it is here already), waits for its metadata
    /// and gives the URL of file `file` (from 1), by default the largest.
    pub async fn open(
        &self,
        source: AddSource,
        file: Option<usize>,
    ) -> Result<Opened, GatewayError> {
        let g = &self.gateway;
        let id = g.add(source).await?;
        let t = g
            .content
            .wait_metadata(&id, Duration::from_secs(g.config.metadata_wait_secs))
            .await?;
        let idx = match file {
            Some(f) if f == 0 || f > t.files.len() => {
                return Err(GatewayError::NoSuchFile {
                    file: f,
                    count: t.files.len(),
                });
            }
            Some(f) => f - 1,
            None => (0..t.files.len())
                .max_by_key(|&i| t.files[i].1)
                .ok_or(GatewayError::NoSuchFile { file: 1, count: 0 })?,
        };
        let path = t.files[idx].0.clone();
        Ok(Opened {
            url: format!("{}{}", self.url(), page::file_url(&t.id, &path)),
            id: t.id,
            file: idx + 1,
            path,
        })
    }

    /// Ids of the torrents the gateway added (its cache), least recently watched first.
    pub fn cached(&self) -> Vec<String> {
        self.gateway.cache.ids()
    }

    /// Enforces the cache budget now (it also runs every [`CACHE_INTERVAL`]); returns
    /// the ids removed.
    pub async fn enforce_budget(&self) -> Result<Vec<String>, GatewayError> {
        self.gateway
            .cache
            .enforce(self.gateway.content.as_ref(), None)
            .await
    }
}

/// The gateway, as the node's service list names it.
pub struct GatewayService;

impl nodus_service::Service for GatewayService {
    type Config = GatewayConfig;
    type Handle = GatewayHandle;
    type Error = GatewayError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Content gateway",
        script: include_str!("../ui/panel.js"),
    });

    fn testnet(config: &mut GatewayConfig, ip: std::net::Ipv4Addr) {
        config.listen = format!("{ip}:0");
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: GatewayConfig,
    ) -> Result<nodus_service::Started<GatewayHandle>, GatewayError> {
        let content = ctx
            .provided
            .get::<SharedContent>()
            .ok_or(GatewayError::NoTorrents)?;
        let cache = Arc::new(cache::Cache::open(
            &ctx.dir.join("gateway.redb"),
            config.cache_mb.saturating_mul(1024 * 1024),
        )?);
        let (listener, addr) =
            nodus_service::server::bind(&config.listen)
                .await
                .map_err(|source| GatewayError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let gateway = Arc::new(serve::Gateway {
            content,
            cache,
            local_only: addr.ip().is_loopback(),
            metrics: serve::Metrics::register(ctx.metrics),
            config,
        });
        let server = tokio::spawn(nodus_service::server::serve(
            "gateway",
            listener,
            serve::router(gateway.clone()),
            nodus_service::server::Limits {
                max_connections: gateway.config.max_connections,
                ..Default::default()
            },
            ctx.shutdown.clone(),
        ));
        let upkeep = tokio::spawn(upkeep(gateway.clone(), ctx.shutdown.clone()));
        let handle = GatewayHandle { gateway, addr };
        tracing::info!(target: "nodus::gateway", "content gateway on http://{addr}");
        Ok(nodus_service::Started {
            root: vec![],
            routes: http::routes(handle.clone()),
            endpoints: vec![("gateway".to_string(), handle.url())],
            events: None,
            tasks: vec![server, upkeep],
            handle,
        })
    }
}

/// Writes the cache's times and keeps it within budget, until shutdown.
async fn upkeep(g: Arc<serve::Gateway>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CACHE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if let Err(e) = g.cache.save() {
            tracing::warn!(target: "nodus::gateway", "saving the cache: {e}");
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = g.cache.enforce(g.content.as_ref(), None).await {
            tracing::warn!(target: "nodus::gateway", "cache budget: {e}");
        }
    }
}
