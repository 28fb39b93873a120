//! Yamux (`/yamux/1.0.0`) as the connection muxer, configured for bulk streams.
//!
//! libp2p-yamux 0.48 exposes only the stream limit of the yamux crate's configuration.
//! This wraps the same crate (rust-yamux 0.14) with one more setting: the largest data
//! frame sent. yamux's default, 16 KiB, costs one frame, one channel message from the
//! stream to its connection task, one flush of the security layer and one `send` per
//! 16 KiB; a bulk stream on loopback spent most of its time on that plumbing. Frames of
//! [`SPLIT_SEND_SIZE`] carry the same bytes in a sixteenth of the steps. Every yamux
//! implementation accepts them: rust-yamux reads data frames of up to 1 MiB, go-yamux
//! and js-libp2p's yamux up to the receive window, which is never below 256 KiB.
//!
//! A frame is written out whole before the next one starts, so a larger frame delays a
//! small frame queued behind it on the same connection by up to one frame's send time
//! (256 KiB: about 0.3 ms at 1 GB/s).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite, future, ready};
use libp2p::core::UpgradeInfo;
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};

/// Largest data frame sent (yamux's own default is 16 KiB).
pub const SPLIT_SEND_SIZE: usize = 256 * 1024;

/// Inbound streams held while the swarm is not asking for them; more are reset. Equal to
/// yamux's limit of streams a peer may open before they are acknowledged.
const MAX_BUFFERED_INBOUND: usize = 256;

#[derive(Debug, Clone)]
pub struct Config(yamux::Config);

impl Config {
    pub fn new(max_streams: usize) -> Self {
        let mut c = yamux::Config::default();
        c.set_max_num_streams(max_streams);
        c.set_split_send_size(SPLIT_SEND_SIZE);
        Config(c)
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Client)))
    }
}

/// One yamux connection. Driving it (reading frames, writing queued ones) happens only
/// in `poll_next_inbound`, so [`StreamMuxer::poll`] calls it too and keeps any inbound
/// stream that arrives meanwhile for the next `poll_inbound`.
#[derive(Debug)]
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Muxer {
            connection: yamux::Connection::new(io, config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, MuxerError>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(Ok(stream)) => Poll::Ready(Ok(stream)),
            Some(Err(e)) => Poll::Ready(Err(MuxerError(e))),
            None => Poll::Ready(Err(MuxerError(yamux::ConnectionError::Closed))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MuxerError(yamux::ConnectionError);

impl From<MuxerError> for io::Error {
    fn from(e: MuxerError) -> Self {
        match e.0 {
            yamux::ConnectionError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Substream = yamux::Stream;
    type Error = MuxerError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(s) = this.inbound.pop_front() {
            return Poll::Ready(Ok(s));
        }
        if let Poll::Ready(r) = this.poll_next(cx) {
            return Poll::Ready(r);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut()
            .connection
            .poll_new_outbound(cx)
            .map_err(MuxerError)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx).map_err(MuxerError)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = ready!(this.poll_next(cx))?;
        if this.inbound.len() >= MAX_BUFFERED_INBOUND {
            tracing::debug!(target: "nodus::net", "inbound stream reset: too many waiting");
            drop(stream);
        } else {
            this.inbound.push_back(stream);
            if let Some(w) = this.inbound_waker.take() {
                w.wake();
            }
        }
        // Come back at once: the connection may have more to do than this one stream.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
