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
    /// The circuit for a stream to `host`: through an exit, or to an onion service;
    /// if one is built for it, without `also_avoid` (a relay that just failed it).
    fn circuit(
        &self,
        isolation: Isolation,
        host: &str,
        also_avoid: Option<libp2p::PeerId>,
    ) -> BoxFuture<'_, Result<Arc<Circuit>, OnionError>>;

    /// A stream was asked of `circuit`: `answered` (CONNECTED or END came back) counts
    /// for its relays; not answered, its last hop is suspected and it is closed.
    fn judge(&self, circuit: &Circuit, answered: bool);
}

/// Opens a stream with `open` on circuits from `get`, judging each circuit by whether
/// the BEGIN was answered ([`Circuits::judge`]). A circuit that closed under the request
/// (a relay on it went away), or did not answer, is replaced by a new one and the
/// request tried again there, once: after no answer, on a circuit without the last
/// hop that gave none.
pub async fn open_on<'a, G, GF, O, OF>(
    circuits: &'a dyn Circuits,
    get: G,
    open: O,
) -> Result<tokio::io::DuplexStream, OnionError>
where
    G: Fn(Option<libp2p::PeerId>) -> GF,
    GF: std::future::Future<Output = Result<Arc<Circuit>, OnionError>> + 'a,
    O: Fn(Arc<Circuit>) -> OF,
    OF: std::future::Future<Output = Result<tokio::io::DuplexStream, OnionError>>,
{
    let mut opened = Err(OnionError::CircuitClosed);
    let mut avoid = None;
    for _ in 0..2 {
        opened = match get(avoid).await {
            Ok(c) => {
                let r = open(c.clone()).await;
                match &r {
                    Ok(_) | Err(OnionError::StreamRefused(_)) => circuits.judge(&c, true),
                    Err(OnionError::StreamUnanswered) => {
                        circuits.judge(&c, false);
                        avoid = c.hops().last().copied();
                    }
                    Err(_) => {}
                }
                r
            }
            Err(e) => Err(e),
        };
        if !matches!(
            opened,
            Err(OnionError::CircuitClosed | OnionError::StreamUnanswered)
        ) {
            break;
        }
    }
    opened
}

/// A stream to `target` (`host:port`) on the circuit these credentials use, as
/// [`open_on`] opens it.
pub async fn open(
    circuits: &dyn Circuits,
    isolation: Isolation,
    target: &str,
) -> Result<tokio::io::DuplexStream, OnionError> {
    let host = crate::exit::parse_target(target)
        .map(|(h, _)| h)
        .unwrap_or_default();
    open_on(
        circuits,
        |avoid| circuits.circuit(isolation.clone(), &host, avoid),
        |c| async move { c.connect(target).await },
    )
    .await
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
                OnionError::Timeout(_) | OnionError::StreamUnanswered => Reply::TtlExpired,
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
