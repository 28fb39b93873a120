//! The one way nodus serves HTTP (the node's API, JSON-RPC, the Nostr relay): axum
//! routes on hyper's HTTP/1, with the limits a server that others can reach needs.
//!
//! Invariants:
//! - At most [`Limits::max_connections`] sockets are open, upgraded ones (WebSockets)
//!   included: a slot is freed when the socket closes. A connection that arrives at the
//!   cap takes the slot of the oldest one that has not yet sent a whole request head
//!   (those cost an attacker nothing to hold); when every open one has, the newcomer is
//!   closed. So idle sockets cannot lock people out, and descriptors stay bounded.
//! - A request head must arrive within [`Limits::header_timeout`] of the server
//!   waiting for it, the first on a connection and every later one on a kept-alive
//!   connection: half-sent headers and idle connections end.
//! - A request body that sends nothing for [`Limits::body_idle_timeout`] fails.
//! - TCP_NODELAY on every connection: small answers are not held back by Nagle's
//!   algorithm against the client's delayed ACKs.
//! - At shutdown no connection is taken any more, open ones finish the response they
//!   are sending, and [`serve`] returns when all have closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use nodus_net::slots::{Slot, Slots};
use tokio::task::JoinSet;
use tower_http::timeout::TimeoutBody;
use tower_service::Service as _;

/// What one server allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Binds `addr` (port 0: any free one) and tells the address taken.
pub async fn bind(addr: &str) -> io::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains (see the module
/// docs). `what` names the server in log lines.
pub async fn serve(
    what: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Slots::new(limits.max_connections);
    let mut connections = JoinSet::new();
    let mut turned_away: u64 = 0;
    loop {
        let stream = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close.
                    tracing::warn!(target: "nodus::http", server = what, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = slots.admit() else {
            turned_away += 1;
            tracing::debug!(target: "nodus::http", server = what, turned_away, "at the connection cap, every connection busy: closed a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            Guarded {
                stream,
                _slot: admitted.slot,
            },
            admitted.spoke,
            admitted.evicted,
            app.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    io: Guarded,
    spoke: Arc<AtomicBool>,
    mut evicted: oneshot::Receiver<()>,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let body_idle = limits.body_idle_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        spoke.store(true, Ordering::Relaxed);
        let req = req.map(|b| Body::new(TimeoutBody::new(body_idle, b)));
        app.clone().call(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            // Dropping the connection closes the socket.
            Ok(()) = &mut evicted => return,
            _ = stopped(&mut shutdown), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The socket with its slot, so that a WebSocket keeps the slot after hyper hands the
/// socket over.
struct Guarded {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
