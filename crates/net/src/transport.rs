//! TCP that reuses the listen port for outbound connections (so peers observe the port
//! they can dial back, and TCP hole punching can work) but falls back to a fresh port
//! when the reused one is taken.
//!
//! libp2p-tcp binds a reuse dial to `0.0.0.0:<listen port>`. When an earlier connection
//! with the same source and destination is still in TIME_WAIT (one side of a simultaneous
//! dial was just closed, say) or another local listener shares the port number, `connect`
//! fails with EADDRINUSE and libp2p gives up on that address. Here the same dial is then
//! made again from a fresh port.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::Multiaddr;
use libp2p::core::Transport;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};

pub(crate) struct ReuseWithFallback<T>(pub T);

impl<T> Transport for ReuseWithFallback<T>
where
    T: Transport<Error = io::Error> + Unpin,
    T::Dial: Send + 'static,
    T::Output: Send + 'static,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = BoxFuture<'static, Result<T::Output, io::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        if opts.port_use == PortUse::New {
            return Ok(self.0.dial(addr, opts)?.boxed());
        }
        let reuse = self.0.dial(addr.clone(), opts)?;
        // Only a socket is made here; nothing is sent unless the fallback is awaited.
        let fresh = self
            .0
            .dial(
                addr,
                DialOpts {
                    port_use: PortUse::New,
                    ..opts
                },
            )
            .ok();
        Ok(async move {
            match reuse.await {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => match fresh {
                    Some(fresh) => fresh.await,
                    None => Err(e),
                },
                other => other,
            }
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.0).poll(cx)
    }
}
