//! The object-safe face of [`Service`], so the node can hold a list of different ones.

use std::any::Any;
use std::marker::PhantomData;
use std::net::Ipv4Addr;

use futures::future::BoxFuture;
use nodus_core::{Config, CoreError, Section};
use nodus_net::Validators;

use crate::{EventFeed, Service, ServiceContext};

/// A service the node can start without knowing its types.
pub trait AnyService: Send + Sync {
    fn name(&self) -> &'static str;
    /// Its part of the commented config.toml.
    fn template(&self) -> &'static str;
    /// Whether its section turns it on; a mistake in the section is an error that names
    /// the line.
    fn enabled(&self, config: &Config) -> Result<bool, CoreError>;
    /// Its panel of the dashboard.
    fn panel(&self) -> Option<crate::Panel>;
    /// Files to move from the flat layout: `(old, new)`.
    fn legacy_files(&self) -> &'static [(&'static str, &'static str)];
    fn register_records(
        &self,
        config: &Config,
        validators: &mut Validators,
    ) -> Result<(), CoreError>;
    /// Adjusts its section for a loopback testnet node on `ip`.
    fn testnet(&self, config: &mut Config, ip: Ipv4Addr) -> Result<(), CoreError>;
    /// Adjusts its section for a node that only watches.
    fn watcher(&self, config: &mut Config) -> Result<(), CoreError>;
    fn start<'a>(
        &'a self,
        ctx: ServiceContext<'a>,
        config: &'a Config,
    ) -> BoxFuture<'a, Result<RunningService, ServiceError>>;
}

/// A started service, its handle's type erased.
pub struct RunningService {
    pub name: &'static str,
    pub handle: Box<dyn Any + Send + Sync>,
    pub routes: axum::Router,
    pub root: Vec<(&'static str, axum::Router)>,
    pub endpoints: Vec<(String, String)>,
    pub events: Option<EventFeed>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A service that failed to start, with its own error as the source.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Config(#[from] CoreError),
    #[error("the {service} service could not start: {source}")]
    Start {
        service: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ServiceError {
    /// The service's own error, to match on its kind.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            ServiceError::Start { source, .. } => source.downcast_ref(),
            ServiceError::Config(_) => None,
        }
    }
}

/// `S` as an entry of the node's service list.
pub fn service<S: Service>() -> Box<dyn AnyService> {
    Box::new(Typed::<S>(PhantomData))
}

struct Typed<S>(PhantomData<fn() -> S>);

impl<S: Service> AnyService for Typed<S> {
    fn name(&self) -> &'static str {
        S::Config::NAME
    }

    fn template(&self) -> &'static str {
        S::Config::TEMPLATE
    }

    fn enabled(&self, config: &Config) -> Result<bool, CoreError> {
        Ok(config.section::<S::Config>()?.enabled())
    }

    fn legacy_files(&self) -> &'static [(&'static str, &'static str)] {
        S::LEGACY_FILES
    }

    fn panel(&self) -> Option<crate::Panel> {
        S::PANEL
    }

    fn register_records(
        &self,
        config: &Config,
        validators: &mut Validators,
    ) -> Result<(), CoreError> {
        S::register_records(&config.section::<S::Config>()?, validators);
        Ok(())
    }

    fn testnet(&self, config: &mut Config, ip: Ipv4Addr) -> Result<(), CoreError> {
        config.edit::<S::Config>(|c| S::testnet(c, ip))
    }

    fn watcher(&self, config: &mut Config) -> Result<(), CoreError> {
        config.edit::<S::Config>(S::watcher)
    }

    fn start<'a>(
        &'a self,
        ctx: ServiceContext<'a>,
        config: &'a Config,
    ) -> BoxFuture<'a, Result<RunningService, ServiceError>> {
        Box::pin(async move {
            let section = config.section::<S::Config>()?;
            let started = S::start(ctx, section)
                .await
                .map_err(|e| ServiceError::Start {
                    service: S::Config::NAME,
                    source: Box::new(e),
                })?;
            Ok(RunningService {
                name: S::Config::NAME,
                handle: Box::new(started.handle),
                routes: started.routes,
                root: started.root,
                endpoints: started.endpoints,
                events: started.events,
                tasks: started.tasks,
            })
        })
    }
}
