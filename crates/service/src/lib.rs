//! nodus-service: the contract between the node and its services.
//!
//! A service is a crate that implements [`Service`]. It owns, and nothing outside it
//! names:
//! - its section of config.toml ([`Service::Config`], a [`nodus_core::Section`] with
//!   defaults and the commented template `nodus init` writes);
//! - its files, under `<data dir>/<name>/` ([`ServiceContext::dir`]);
//! - its DHT record namespaces ([`Service::register_records`]), gossip topics and
//!   stream protocols (`/nodus/<name>/<n>`);
//! - its metrics, registered in [`ServiceContext::metrics`], which prefixes every name
//!   with `nodus_<name>_`;
//! - its HTTP routes ([`Started::routes`]), which the node mounts under
//!   `/api/v1/<name>` behind the API token;
//! - its events ([`Started::events`]), which the node merges into `/api/v1/events`
//!   named after the service;
//! - its endpoints in endpoints.json ([`Started::endpoints`]);
//! - its panel of the dashboard ([`Service::PANEL`]), a script the node serves at
//!   `/ui/panels/<name>.js` and the page mounts while the service runs;
//! - its clean shutdown: its tasks end when [`ServiceContext::shutdown`] turns true.
//!
//! The node composes services from a list of [`AnyService`]s (one line per service)
//! and names none of them otherwise. Services never import each other: where one needs
//! another, the consumer declares a trait and the node wires the two ([`Provided`]).
//!
//! Invariants:
//! - A disabled service is not started, and its routes answer 503 with the setting to
//!   change ([`http::disabled`]).
//! - A service's files live under its own directory; files of the flat layout that came
//!   before are moved there once ([`Service::LEGACY_FILES`]), never overwritten.

mod any;
mod context;
pub mod events;
pub mod http;
mod provided;
pub mod rate;
pub mod server;
/// Connection slots with eviction of the oldest silent one (also the P2P transport's).
pub use nodus_net::slots;

pub use any::{AnyService, RunningService, ServiceError, service};
pub use context::ServiceContext;
pub use events::EventFeed;
pub use provided::Provided;

use std::future::Future;
use std::net::Ipv4Addr;

use nodus_core::Section;
use nodus_net::Validators;

/// A service's panel of the dashboard: an ES module (embedded with `include_str!`)
/// whose default export is `mount(element, ctx)`. `ctx` gives `api(path, init)` (the
/// node's API with the token, JSON back), `on(handler)` (this service's events, parsed),
/// `confirm(question)` (asked before anything destructive), and `el(tag, attrs,
/// ...children)` and `shortId(id)` to build what it shows. The script is served
/// without the token, so it holds no data: what it shows it fetches.
#[derive(Debug, Clone, Copy)]
pub struct Panel {
    pub title: &'static str,
    pub script: &'static str,
}

/// What a started service hands the node.
pub struct Started<H> {
    /// The cloneable API that the node's callers (tests, the CLI's in-process commands)
    /// use; also what its routes are built over.
    pub handle: H,
    /// Its HTTP routes, relative to `/api/v1/<name>` (`/` is `/api/v1/<name>` itself).
    pub routes: axum::Router,
    /// Routes at a path a standard fixes (FHIR's `/fhir`): `(path, routes)`, nested at
    /// that path of the API, behind the token like the rest. Usually none; two services
    /// may not claim the same path.
    pub root: Vec<(&'static str, axum::Router)>,
    /// Named addresses for endpoints.json (`json_rpc`, `bittorrent`, ...).
    pub endpoints: Vec<(String, String)>,
    /// Its events, for the node's event stream.
    pub events: Option<EventFeed>,
    /// Tasks the node waits for at shutdown and aborts on a crash.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The contract. Implemented by a unit type per service crate (`nodus_msg::Msg`, ...).
pub trait Service: Send + Sync + 'static {
    /// Its config section; `Config::NAME` is the service's name everywhere.
    type Config: Section;
    /// The handle [`Started::handle`] carries.
    type Handle: Clone + Send + Sync + 'static;
    /// Its typed error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Files of the flat data-dir layout, `(old name under the root, new name under the
    /// service's directory)`, moved at start.
    const LEGACY_FILES: &'static [(&'static str, &'static str)] = &[];

    /// Its panel of the dashboard, if it draws one.
    const PANEL: Option<Panel> = None;

    /// Registers the DHT record namespaces it uses, before the overlay starts.
    fn register_records(_config: &Self::Config, _validators: &mut Validators) {}

    /// Adjusts its section for a node of a loopback testnet listening on `ip`
    /// (free ports, no Internet bootstrap, fast settings).
    fn testnet(_config: &mut Self::Config, _ip: Ipv4Addr) {}

    /// Adjusts its section for a node that only watches a network (the demo's watcher,
    /// see `nodus_testnet::Testnet::start_watcher`): it must offer others nothing they
    /// could come to rely on (a relay, a mailbox), or a step that stops what it relies
    /// on would find nothing to stop.
    fn watcher(_config: &mut Self::Config) {}

    /// Starts the service. Called only when its section says it is enabled.
    fn start(
        ctx: ServiceContext<'_>,
        config: Self::Config,
    ) -> impl Future<Output = Result<Started<Self::Handle>, Self::Error>> + Send;
}
