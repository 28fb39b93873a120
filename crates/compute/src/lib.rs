//! nodus-compute: volunteer computing, after BOINC.
//!
//! Anyone can submit a project: a WASI module and its inputs, split into work units
//! ([`inputs`]). The submitting node coordinates it ([`coordinator`]): it announces the
//! project on gossip and in the DHT, hands replicas of each unit to volunteers over
//! `/nodus/compute/2` ([`wire`]), and accepts a unit's output only when a quorum of
//! independent volunteers returned the same bytes ([`unit`]). Volunteers
//! ([`volunteer`]) run units in a sandbox ([`sandbox`]) on the cores they donate, and
//! earn credit: the fuel of each valid result.
//!
//! Invariants:
//! - A unit sees only its input: argv, stdin, in-memory files, a random stream seeded by
//!   the unit. No clock, network, host file or environment; memory, fuel, output and
//!   wall time are bounded. So honest volunteers return the same bytes and fuel.
//! - A volunteer runs a module only if its sha256 is the one the coordinator announced.
//! - One replica of a unit per volunteer: a quorum is of different peers.
//! - What a coordinator accepted (outputs, verdicts, credit) is on disk before it is
//!   acknowledged; what a volunteer finished is on disk before it is reported. Both
//!   survive `kill -9`.
//! - A peer's frame that does not decode or breaks a limit is dropped, counted and
//!   reported to the overlay; nothing a peer claims is allocated before it is sent.

pub mod config;
pub mod coordinator;
mod error;
#[cfg(feature = "runtime")]
pub mod examples;
#[cfg(feature = "runtime")]
pub mod handle;
#[cfg(feature = "runtime")]
pub mod http;
pub mod inputs;
pub mod job;
pub mod pay;
#[cfg(feature = "runtime")]
pub mod payroll;
#[cfg(feature = "runtime")]
pub mod sandbox;
#[cfg(feature = "runtime")]
mod server;
pub mod store;
pub mod unit;
#[cfg(feature = "runtime")]
pub mod volunteer;
pub mod wire;

#[cfg(feature = "runtime")]
use std::sync::Arc;

pub use config::ComputeConfig;
pub use error::ComputeError;
#[cfg(feature = "runtime")]
pub use handle::{ComputeEvent, ComputeHandle, Submission};
pub use inputs::Inputs;

/// The compute service, as the node's service list names it.
#[cfg(feature = "runtime")]
pub struct ComputeService;

#[cfg(feature = "runtime")]
impl nodus_service::Service for ComputeService {
    type Config = ComputeConfig;
    type Handle = ComputeHandle;
    type Error = ComputeError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Volunteer computing",
        script: include_str!("../ui/panel.js"),
    });

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: ComputeConfig,
    ) -> Result<nodus_service::Started<ComputeHandle>, ComputeError> {
        let store = Arc::new(store::Store::open(&ctx.dir.join("compute.redb"))?);
        let sandbox = sandbox::Sandbox::new()?;
        let coordinator = Arc::new(coordinator::Coordinator::open(store.clone())?);
        let metrics = handle::Metrics::default();
        metrics.register(ctx.metrics);
        metrics.projects.set(coordinator.announces().len() as i64);
        let donation = store.donation()?.unwrap_or(store::Donation {
            on: false,
            cores: config.cores,
            max_memory_mb: config.max_memory_mb,
            idle_only: config.idle_only,
        });
        let payer = ctx.provided.get::<pay::SharedPayer>();
        let volunteer = volunteer::Volunteer::new(
            store.clone(),
            sandbox.clone(),
            ctx.net.clone(),
            donation,
            config.faulty,
            payer.as_ref().map(|p| p.address()),
            metrics.clone(),
        );
        let payroll = Arc::new(std::sync::Mutex::new(payroll::PayrollState {
            account: payer
                .as_ref()
                .map(|p| pay::show(&p.address()))
                .unwrap_or_default(),
            ..Default::default()
        }));
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let handle = ComputeHandle {
            inner: Arc::new(handle::Inner {
                coordinator,
                volunteer: volunteer.clone(),
                sandbox,
                net: ctx.net.clone(),
                events: events.clone(),
                metrics,
                announce: tokio::sync::Notify::new(),
                max_memory_mb: config.max_memory_mb,
                payer: payer.clone(),
                payroll: payroll.clone(),
            }),
        };
        let incoming = ctx
            .net
            .incoming(wire::PROTOCOL)
            .map_err(|e| ComputeError::Net(e.to_string()))?;
        let mut tasks = vec![
            tokio::spawn(server::accept(
                handle.clone(),
                incoming,
                config.max_volunteers,
                ctx.shutdown.clone(),
            )),
            tokio::spawn(server::announce(handle.clone(), ctx.shutdown.clone())),
            tokio::spawn(server::tick(handle.clone(), ctx.shutdown.clone())),
        ];
        tasks.extend(volunteer::spawn(volunteer, ctx.shutdown.clone()));
        if let Some(payer) = payer {
            tasks.push(tokio::spawn(payroll::run(
                handle.inner.coordinator.clone(),
                payer,
                payroll,
                ctx.shutdown.clone(),
            )));
        }
        tracing::info!(target: "nodus::compute", "compute ready, {} projects coordinated", handle.projects().len());
        Ok(nodus_service::Started {
            routes: http::routes(handle.clone()),
            root: vec![],
            endpoints: vec![],
            events: Some(nodus_service::EventFeed::broadcast(events)),
            tasks,
            handle,
        })
    }
}
