//! The bundle endpoint (SPIFFE Federation §4): `GET` on any path answers this trust
//! domain's bundle in the SPIFFE format, as it is at that moment (prepared CAs appear
//! before they sign, retired ones stay until their SVIDs expire). HTTPS only, with an
//! SVID of our trust domain (`https_spiffe`) or a configured Web PKI certificate
//! (`https_web`). Each connection is bounded in time; anything but `GET`/`HEAD` is 405.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::xds::server::tls::ServerCert;

/// Time for the TLS handshake (a client that connects and says nothing goes soon).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for a whole connection (handshake, request, answer).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the accept queue. High, so that idle
/// connections (each gone after [`HANDSHAKE_TIMEOUT`]) cannot starve real peers.
const MAX_CONNECTIONS: usize = 1024;

/// A Web PKI certificate for `https_web` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The file cannot be read or is not PEM.
    #[error("{}: {source}", path.display())]
    Pem {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The chain file holds no certificate.
    #[error("{}: no certificate", .0.display())]
    NoCertificate(std::path::PathBuf),
    /// The key is not one rustls can sign with.
    #[error("{}: {source}", path.display())]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Produces the bundle document to serve, now.
pub type BundleSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `bundle()` on `listener` over TLS with `cert`, until dropped.
pub async fn serve(listener: TcpListener, cert: Arc<ServerCert>, bundle: BundleSource) {
    let config = match server_config(cert) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("bundle endpoint TLS setup: {e}");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("bundle endpoint accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, bundle) = (acceptor.clone(), bundle.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = async {
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
                let io = hyper_util::rt::TokioIo::new(tls);
                let service = hyper::service::service_fn(move |req| {
                    let bundle = bundle.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &bundle)) }
                });
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(io, service)
                    .await
                    .map_err(std::io::Error::other)
            };
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, "bundle endpoint connection: {e}"),
                Err(_) => tracing::debug!(%peer, "bundle endpoint connection timed out"),
            }
        });
    }
}

fn answer(req: &Request<Incoming>, bundle: &BundleSource) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    if req.method() != Method::GET && req.method() != Method::HEAD {
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return response;
    }
    let body = bundle();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if req.method() == Method::GET {
        *response.body_mut() = Full::new(Bytes::from(body));
    }
    response
}

fn server_config(cert: Arc<ServerCert>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A certified key from a Web PKI certificate chain and PKCS#8 key (PEM files).
pub fn web_certified_key(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<rustls::sign::CertifiedKey, EndpointError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| EndpointError::Pem { path, source }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(pem(cert_file))?;
    if chain.is_empty() {
        return Err(EndpointError::NoCertificate(cert_file.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(pem(key_file))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
        EndpointError::Key {
            path: key_file.to_path_buf(),
            source,
        }
    })?;
    Ok(rustls::sign::CertifiedKey::new(chain, signer))
}
