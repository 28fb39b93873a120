//! The security protocols a TCP connection may negotiate, in nodus's order: TLS first
//! (AES-GCM between nodus nodes, see [`crate::tls`]), then Noise for peers that only
//! speak Noise (js-libp2p's default, older rust-libp2p). go-libp2p offers the same two in
//! the same order.
//!
//! multistream-select settles the choice: a dialer proposes TLS, and a listener without
//! it answers `na`, costing one round trip before Noise is tried.
//!
//! Every connection secured is counted by protocol and cipher in
//! `nodus_net_secured_connections_total`, so an operator (and the tests) can see what
//! peers actually negotiate.

use futures::future::{self, BoxFuture};
use futures::{AsyncRead, AsyncWrite, Future, FutureExt, TryFutureExt};
use futures_rustls::TlsStream;
use libp2p::PeerId;
use libp2p::core::UpgradeInfo;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::noise;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::coalesce::Coalesce;
use crate::tls;

const NOISE: &str = "/noise";

#[derive(Clone)]
pub struct Security {
    tls: tls::Config,
    noise: noise::Config,
    secured: Family<Secured, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Secured {
    protocol: &'static str,
    cipher: &'static str,
}

impl Security {
    pub fn new(key: &Keypair, registry: &mut Registry) -> Result<Self, SecurityError> {
        let secured = Family::<Secured, Counter>::default();
        registry.sub_registry_with_prefix("nodus_net").register(
            "secured_connections",
            "Connections secured, by security protocol and cipher",
            secured.clone(),
        );
        Ok(Security {
            tls: tls::Config::new(key)?,
            noise: noise::Config::new(key)?,
            secured,
        })
    }

    fn count_tls<C>(
        &self,
        (peer, stream): (PeerId, Coalesce<TlsStream<C>>),
    ) -> (PeerId, Either<C>) {
        let cipher = stream
            .get_ref()
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        self.secured
            .get_or_create(&Secured {
                protocol: tls::PROTOCOL,
                cipher,
            })
            .inc();
        (peer, future::Either::Left(stream))
    }

    fn count_noise<C>(&self, (peer, stream): (PeerId, noise::Output<C>)) -> (PeerId, Either<C>) {
        self.secured
            .get_or_create(&Secured {
                protocol: NOISE,
                // The only cipher of libp2p's Noise handshake pattern.
                cipher: "ChaChaPoly",
            })
            .inc();
        (peer, future::Either::Right(stream))
    }

    /// Runs the handshake `info` names, made by `tls` or `noise` from its configuration,
    /// and counts what it secured.
    fn secure<C, T, N>(
        self,
        socket: C,
        info: &'static str,
        tls: impl FnOnce(tls::Config, C) -> T,
        noise: impl FnOnce(noise::Config, C) -> N,
    ) -> BoxFuture<'static, Result<(PeerId, Either<C>), SecurityError>>
    where
        C: Send + 'static,
        T: Future<Output = Result<(PeerId, Coalesce<TlsStream<C>>), tls::TlsError>>
            + Send
            + 'static,
        N: Future<Output = Result<(PeerId, noise::Output<C>), noise::Error>> + Send + 'static,
    {
        match info {
            tls::PROTOCOL => tls(self.tls.clone(), socket)
                .map_ok(move |out| self.count_tls(out))
                .err_into()
                .boxed(),
            NOISE => noise(self.noise.clone(), socket)
                .map_ok(move |out| self.count_noise(out))
                .err_into()
                .boxed(),
            other => future::ready(Err(SecurityError::Unknown(other))).boxed(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("noise: {0}")]
    Noise(#[from] noise::Error),
    #[error("unexpected security protocol {0}")]
    Unknown(&'static str),
}

/// Either security's encrypted connection.
pub type Either<C> = future::Either<Coalesce<TlsStream<C>>, noise::Output<C>>;

impl UpgradeInfo for Security {
    type Info = &'static str;
    type InfoIter = std::array::IntoIter<&'static str, 2>;

    fn protocol_info(&self) -> Self::InfoIter {
        [tls::PROTOCOL, NOISE].into_iter()
    }
}

impl<C> InboundConnectionUpgrade<C> for Security
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Either<C>);
    type Error = SecurityError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.secure(
            socket,
            info,
            |t, s| t.upgrade_inbound(s, info),
            |n, s| n.upgrade_inbound(s, info),
        )
    }
}

impl<C> OutboundConnectionUpgrade<C> for Security
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Either<C>);
    type Error = SecurityError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.secure(
            socket,
            info,
            |t, s| t.upgrade_outbound(s, info),
            |n, s| n.upgrade_outbound(s, info),
        )
    }
}
