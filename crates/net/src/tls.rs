//! libp2p's TLS 1.3 handshake (`/tls/1.0.0`, the libp2p TLS spec) with AES-GCM as the
//! preferred cipher.
//!
//! libp2p-tls 0.7 lists ChaCha20-Poly1305 first, and a TLS client's order decides, so two
//! rust-libp2p nodes always settle on ChaCha20-Poly1305, as Noise does; and its crypto is
//! aws-lc-rs, whose AES-GCM on a CPU without AVX-512 is the older AES-NI code, no cheaper
//! per byte than ChaCha20-Poly1305 here. ring has BoringSSL's VAES/AVX2 AES-GCM, and
//! encryption is the largest single cost of a bulk stream. So nodus builds its own rustls
//! configurations around libp2p-tls's certificate code, with ring's provider:
//! AES-128-GCM, then AES-256-GCM, then ChaCha20-Poly1305 for a peer without AES hardware.
//!
//! What the spec asks of both sides is kept: TLS 1.3 only, ALPN `libp2p`, no SNI, exactly
//! one self-signed certificate carrying the libp2p extension (checked by
//! [`certificate::parse`]), the handshake signed by that certificate's key, and a
//! mandatory client certificate. A dialer must abort when the certificate names another
//! peer than the one it meant to reach: libp2p's swarm does that for every security
//! upgrade (`WrongPeerId`). Unlike libp2p-tls, no session secrets are ever written to a
//! key log file.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::coalesce::Coalesce;
use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use futures_rustls::TlsStream;
use libp2p::PeerId;
use libp2p::core::UpgradeInfo;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::tls::certificate;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{self, cipher_suite};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
    SupportedCipherSuite,
};

pub const PROTOCOL: &str = "/tls/1.0.0";
const ALPN: &[u8] = b"libp2p";

/// Cipher suites in the order nodus offers them.
const CIPHER_SUITES: &[SupportedCipherSuite] = &[
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// Signature schemes a peer's certificate may use, most preferred first (the libp2p TLS
/// spec's list, as libp2p-tls has it).
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not make the TLS certificate: {0}")]
    Certificate(#[from] certificate::GenError),
    #[error("could not configure TLS: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("the peer's certificate is not a libp2p certificate: {0}")]
    BadCertificate(#[from] certificate::ParseError),
}

/// The security upgrade: one per transport, cloned per connection.
#[derive(Clone)]
pub struct Config {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..ring::default_provider()
    })
}

impl Config {
    pub fn new(key: &Keypair) -> Result<Self, TlsError> {
        let (cert, private_key) = certificate::generate(key)?;
        // Not `with_single_cert`: webpki refuses the critical libp2p extension of our own
        // certificate, which only `certificate::parse` understands.
        let identity = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![cert],
            ring::sign::any_ecdsa_type(&private_key)?,
        )));
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(PeerVerifier))
            .with_cert_resolver(identity.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier))
            .with_client_cert_resolver(identity);
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Config {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

impl Config {
    /// The rustls configurations, for QUIC (which runs its own TLS 1.3 handshake).
    pub fn rustls(&self) -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
        (self.client.clone(), self.server.clone())
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

fn peer_of(state: &rustls::CommonState) -> Result<PeerId, TlsError> {
    match state.peer_certificates() {
        Some([cert]) => Ok(certificate::parse(cert)?.peer_id()),
        // The verifiers refuse anything else before the handshake completes.
        _ => Err(TlsError::Handshake(std::io::Error::other(
            "the peer presented no single certificate",
        ))),
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Coalesce<TlsStream<C>>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream = futures_rustls::TlsAcceptor::from(self.server)
                .accept(socket)
                .await
                .map_err(TlsError::Handshake)?;
            let peer = peer_of(stream.get_ref().1)?;
            Ok((peer, Coalesce::new(stream.into())))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Coalesce<TlsStream<C>>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec: a client MUST NOT send a server name; an unspecified IP address
            // makes rustls leave the SNI extension out.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, socket)
                .await
                .map_err(TlsError::Handshake)?;
            let peer = peer_of(stream.get_ref().1)?;
            Ok((peer, Coalesce::new(stream.into())))
        }
        .boxed()
    }
}

/// Checks a peer's certificate chain as the libp2p TLS spec requires. Which peer a dialer
/// meant to reach is not known here: libp2p's swarm compares the authenticated peer id
/// with the one dialed and refuses the connection on a mismatch, whatever the security.
#[derive(Debug)]
struct PeerVerifier;

/// One certificate, self-signed, valid now, with a libp2p extension whose signature
/// binds it to the peer's identity key: all checked by [`certificate::parse`].
fn present_one(
    end_entity: &CertificateDer,
    intermediates: &[CertificateDer],
) -> Result<(), rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::General(
            "libp2p TLS requires exactly one certificate".into(),
        ));
    }
    certificate::parse(end_entity).map_err(|_| bad_cert())?;
    Ok(())
}

fn bad_cert() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
}

fn verify_signature(
    cert: &CertificateDer,
    message: &[u8],
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    certificate::parse(cert)
        .map_err(|_| bad_cert())?
        .verify_signature(dss.scheme, message, dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// Never called: both configurations offer TLS 1.3 only.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General("TLS 1.2 is not offered".into()))
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _server_name: &ServerName,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        present_one(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(cert, message, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        present_one(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(cert, message, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}
