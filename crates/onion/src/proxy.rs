//! A SOCKS5 proxy on a local port: each connection's request goes out as a stream on a
//! circuit, chosen by the connection's credentials (no credentials: a shared circuit).

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};

use crate::OnionError;
use crate::client::Circuit;
use crate::socks::{self, Reply};

/// The circuit a connection with these credentials uses.
pub type Isolation = Option<(Vec<u8>, Vec<u8>)>;

/// Where the proxy gets circuits from.
pub trait Circuits: Send + Sync + 'static {
    /// The circuit for a stream to `host`: through an exit, or to an onion service.
    fn circuit(
        &self,
        isolation: Isolation,
        host: &str,
    ) -> BoxFuture<'_, Result<Arc<Circuit>, OnionError>>;
}

/// A stream to `target` (`host:port`) on the circuit these credentials use. A circuit
/// that closed under the request (a relay on it went away) is replaced by a new one,
/// and the request tried again there, once.
pub async fn open(
    circuits: &dyn Circuits,
    isolation: Isolation,
    target: &str,
) -> Result<tokio::io::DuplexStream, OnionError> {
    let host = crate::exit::parse_target(target)
        .map(|(h, _)| h)
        .unwrap_or_default();
    let mut opened = Err(OnionError::CircuitClosed);
    for _ in 0..2 {
        opened = match circuits.circuit(isolation.clone(), &host).await {
            Ok(c) => c.connect(target).await,
            Err(e) => Err(e),
        };
        if !matches!(opened, Err(OnionError::CircuitClosed)) {
            break;
        }
    }
    opened
}

/// Serves SOCKS5 connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, circuits: Arc<dyn Circuits>) {
    while let Ok((tcp, from)) = listener.accept().await {
        let circuits = circuits.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, circuits).await {
                tracing::debug!(target: "nodus::onion", %from, "SOCKS connection ended: {e}");
            }
        });
    }
}

async fn connection(mut tcp: TcpStream, circuits: Arc<dyn Circuits>) -> Result<(), OnionError> {
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.split();
    let request = socks::accept(&mut r, &mut w)
        .await
        .map_err(|e| OnionError::Malformed(e.to_string()))?;
    let host = crate::exit::parse_target(&request.target)
        .map(|(h, _)| h)
        .unwrap_or_default();
    let mut stream = match open(&*circuits, request.isolation, &request.target).await {
        Ok(s) => s,
        Err(e) => {
            let code = match &e {
                OnionError::StreamRefused(reason) => Reply::for_end(*reason),
                OnionError::Timeout(_) => Reply::TtlExpired,
                OnionError::NoPath(_) if crate::hs::address::is_onion(&host) => {
                    Reply::HostUnreachable
                }
                _ => Reply::GeneralFailure,
            };
            socks::reply(&mut w, code).await?;
            return Err(e);
        }
    };
    socks::reply(&mut w, Reply::Succeeded).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut stream).await?;
    Ok(())
}
