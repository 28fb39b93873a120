use nodus_core::CoreError;
use nodus_net::NetError;
use nodus_service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("the {service} service claims the API path {path}, which another service has")]
    RouteTaken { path: String, service: &'static str },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(
        "another node is already running on data dir {0}; stop it first (or pick another --data-dir)"
    )]
    Locked(String),
    #[error("could not bind the API on {addr}: {source}; change [api] listen in config.toml")]
    ApiBind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}
