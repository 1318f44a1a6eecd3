//! Fetching a foreign bundle over HTTPS: one GET, bounded in time and size, over rustls
//! and hyper's HTTP/1.1 client (as `http_client.rs`). `https_spiffe` endpoints are
//! authenticated with the foreign trust domain's *previous* bundle and the configured
//! endpoint SPIFFE ID (SPIFFE Federation §5.2: no host name check); `https_web` ones with
//! Web PKI roots and the URL's host name.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::document::MAX_DOCUMENT_BYTES;
use crate::identity::SpiffeId;

/// Until the TCP connection is up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From the connection until the whole bundle is read.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "no X.509 authorities to authenticate the https_spiffe endpoint with (set bundle_file)"
    )]
    NoPreviousBundle,
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("status {0}")]
    Status(u16),
    #[error("no complete answer within {0:?}")]
    AnswerTimeout(Duration),
    /// The `ca_file` of an `https_web` relationship cannot be read or parsed.
    #[error("roots file {}: {source}", path.display())]
    RootsFile {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A root in `ca_file` is not a usable trust anchor.
    #[error("roots file {}: {source}", path.display())]
    RootsCert {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// `ca_file` holds no certificate.
    #[error("roots file {} holds no certificate", .0.display())]
    NoRoots(std::path::PathBuf),
}

/// How the endpoint is authenticated.
#[derive(Debug, Clone)]
pub enum Trust {
    /// `https_spiffe`: chains to one of `roots` (DER) and carries `id` as its URI SAN.
    Spiffe { roots: Vec<Vec<u8>>, id: SpiffeId },
    /// `https_web`: these roots and the URL's host name.
    Web { roots: Arc<rustls::RootCertStore> },
}

/// GETs `url` and returns the body (at most [`MAX_DOCUMENT_BYTES`]).
pub async fn fetch(url: &url::Url, trust: &Trust) -> Result<Bytes, FetchError> {
    let host = url.host_str().ok_or(FetchError::NoHost)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let config = client_config(trust)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| FetchError::Tls(format!("server name `{host}`: {e}")))?;
    let addr = format!("{host}:{port}");
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| FetchError::ConnectTimeout(CONNECT_TIMEOUT))?
        .map_err(|source| FetchError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let answer = async move {
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(FetchError::Handshake)?;
        let io = hyper_util::rt::TokioIo::new(tls);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method("GET")
            .uri(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| FetchError::Http(format!("reading the body: {e}")))
    };
    tokio::time::timeout(ANSWER_TIMEOUT, answer)
        .await
        .map_err(|_| FetchError::AnswerTimeout(ANSWER_TIMEOUT))?
}

fn client_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls(e.to_string()))?;
    let mut config = match trust {
        Trust::Web { roots } => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        Trust::Spiffe { roots, id } => {
            if roots.is_empty() {
                return Err(FetchError::NoPreviousBundle);
            }
            let verifier = SpiffeServerVerifier {
                roots: roots.clone(),
                id: id.clone(),
                provider,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Verifies an `https_spiffe` endpoint: the chain leads to one of the foreign trust
/// domain's authorities and the leaf's only URI SAN is the configured endpoint ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Vec<Vec<u8>>,
    id: SpiffeId,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchors: Vec<_> = self
            .roots
            .iter()
            .filter_map(|der| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect();
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("endpoint certificate: {e}")))?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            rustls::Error::General(format!(
                "endpoint certificate does not chain to the {} bundle: {e}",
                self.id.trust_domain()
            ))
        })?;
        let uris = uri_sans(end_entity.as_ref());
        if uris.len() != 1 || uris[0] != self.id.as_str() {
            return Err(rustls::Error::General(format!(
                "endpoint SVID has URI SANs {uris:?}, expected exactly {}",
                self.id
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The URI SANs of a DER certificate (empty when it does not parse).
fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

/// Web PKI roots: the PEM file's, or the built-in set.
pub fn web_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, FetchError> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    let Some(path) = ca_file else {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(store);
    };
    let file_err = |source| FetchError::RootsFile {
        path: path.to_path_buf(),
        source,
    };
    for cert in CertificateDer::pem_file_iter(path).map_err(file_err)? {
        store
            .add(cert.map_err(file_err)?)
            .map_err(|source| FetchError::RootsCert {
                path: path.to_path_buf(),
                source,
            })?;
    }
    if store.is_empty() {
        return Err(FetchError::NoRoots(path.to_path_buf()));
    }
    Ok(store)
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
