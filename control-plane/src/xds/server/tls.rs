//! TLS for the ADS endpoint: the control plane serves with its own X.509-SVID
//! (`spiffe://<td>/warden/control-plane`), minted from the active CA and swapped in place
//! when the core renews it (`plane::serving_cert`, the sidecar rule), so renewal needs no
//! restart and open connections keep the certificate they were handshaken with.
//!
//! The pieces: [`ServerCert`], a rustls `ResolvesServerCert` whose certificate can be
//! replaced at any time; [`server_config`] (TLS 1.2/1.3, ALPN `h2` as gRPC requires); and
//! [`accept_tls`], which turns a TCP listener into a stream of handshaken connections for
//! tonic's `serve_with_incoming`, one handshake task per connection so a slow or broken
//! client never holds up the others.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::identity::{Ca, CaError, Clock, SpiffeId, Svid, SvidParams, TrustDomain};

/// The path of the control plane's SPIFFE ID under the trust domain.
pub const CONTROL_PLANE_PATH: &str = "/warden/control-plane";

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the serving certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("minting the control plane's SVID: {0}")]
    Mint(#[from] CaError),
    #[error("the control plane's SVID is unusable for TLS: {0}")]
    Key(String),
}

/// The control plane's SPIFFE ID in `td`.
pub fn control_plane_id(td: &TrustDomain) -> SpiffeId {
    format!("{}{CONTROL_PLANE_PATH}", td.to_spiffe_id_string())
        .parse()
        .unwrap_or_else(|_| unreachable!("a trust domain plus a fixed valid path is a SPIFFE ID"))
}

/// The DNS name the control plane's certificate carries besides its SPIFFE ID. gRPC
/// clients (Envoy's `google_grpc`) can only check host names and send the name they
/// check as SNI, which must be a DNS name; Warden's CA puts this name into no other
/// certificate, so for a sidecar that trusts the bundle it means "the control plane".
pub fn control_plane_dns_name(td: &TrustDomain) -> String {
    format!("warden-control-plane.{}", td.as_str())
}

/// Mints the control plane's serving SVID from `ca`: its SPIFFE ID plus
/// [`control_plane_dns_name`].
pub fn mint_server_svid(ca: &Ca, ttl: Duration, clock: &dyn Clock) -> Result<Svid, TlsError> {
    let td = ca.trust_domain();
    let params = SvidParams {
        id: control_plane_id(td),
        ttl,
    };
    Ok(ca.mint_with_dns_names(&params, &[control_plane_dns_name(td)], clock)?)
}

/// A rustls certified key (chain + signing key) from an SVID's PEM.
pub fn certified_key(svid: &Svid) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(svid.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Key(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Key("empty certificate chain".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(svid.private_key_pem.as_bytes())
        .map_err(|e| TlsError::Key(format!("private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(format!("private key: {e}")))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// The serving certificate, replaceable while the server runs.
#[derive(Debug)]
pub struct ServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Starts with `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// New handshakes use `key` from now on.
    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server config over `cert`: no client certificates, ALPN `h2`.
pub fn server_config(cert: Arc<ServerCert>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Key(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts TCP connections on `listener` and yields those whose TLS handshake
/// succeeds; failed handshakes (a plaintext client, an untrusting client) are logged at
/// debug and dropped.
pub fn accept_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("xDS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, conns) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = conns.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%peer, "xDS TLS handshake failed (a plaintext or untrusting client?): {e}")
                    }
                    Err(_) => tracing::debug!(%peer, "xDS TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
