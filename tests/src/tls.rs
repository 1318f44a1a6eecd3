//! TLS as a mesh peer sees it, for handshake tests against a sidecar's inbound listener:
//! connect with no client certificate, with a certificate from a foreign CA, or with a
//! real SVID, then try one HTTP request. Also mints the foreign-CA certificate (a fresh
//! self-signed CA, so nothing is committed).
//!
//! The client does not authenticate the server (SVIDs carry only a URI SAN, which rustls
//! does not match): these tests are about what the *server* accepts.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::http::{Conn, Response, IO_TIMEOUT};

/// A client certificate chain and key, PEM.
#[derive(Debug, Clone)]
pub struct PemIdentity {
    /// Leaf first.
    pub cert_chain_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

/// What happened to one TLS attempt.
#[derive(Debug)]
pub enum TlsOutcome {
    /// The server answered HTTP: the handshake was accepted.
    Answered(Response),
    /// The connection failed before any HTTP response (handshake alert, reset or close).
    Refused(String),
}

impl TlsOutcome {
    /// True when no HTTP response came back.
    pub fn refused(&self) -> bool {
        matches!(self, TlsOutcome::Refused(_))
    }
}

/// Connects to `addr` over TLS presenting `identity` (if any) and sends `GET path`.
pub fn attempt(addr: SocketAddr, identity: Option<&PemIdentity>, path: &str) -> Result<TlsOutcome> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("parsing client certificate chain")?;
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                .context("parsing client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = ClientConnection::new(Arc::new(config), name)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(err) = tls.conn.complete_io(&mut tls.sock) {
            return Ok(TlsOutcome::Refused(format!("handshake: {err}")));
        }
    }
    let mut http = Conn::over(tls, &addr.to_string());
    match http.get(path, &[]) {
        Ok(response) => Ok(TlsOutcome::Answered(response)),
        Err(err) => {
            let io_kind = err
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind);
            if io_kind == Some(ErrorKind::WouldBlock) || io_kind == Some(ErrorKind::TimedOut) {
                // A hang is not a refusal: report it as a harness error.
                return Err(err.context(format!("TLS request to {addr} timed out")));
            }
            Ok(TlsOutcome::Refused(format!("after handshake: {err:#}")))
        }
    }
}

/// A certificate for `spiffe_id` signed by a brand-new CA nobody trusts.
pub fn foreign_ca_identity(spiffe_id: &str) -> Result<PemIdentity> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "foreign test CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(PemIdentity {
        cert_chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    })
}

/// Accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
