//! The control plane's access-log service (`envoy.service.accesslog.v3.AccessLogService/
//! StreamAccessLogs`): sidecars stream their decision records here over mTLS with their
//! own SVID (the Envoy side is built in `xds/resources/audit_log.rs`). The destination of every record is the
//! SPIFFE ID of the verified client certificate; entries become events through the pure
//! [`super::als_entry::decision`] and go into the [`AuditSink`] (never blocking: a full
//! sink drops and counts). Envoy never waits for this server: it buffers, flushes on a
//! timer and drops (counting in its stats) when the stream is backed up.

use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tonic::{Request, Response, Status, Streaming};
use xds_api::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use xds_api::pb::envoy::service::accesslog::v3::{
    stream_access_logs_message::LogEntries, StreamAccessLogsMessage, StreamAccessLogsResponse,
};

use super::als_entry::{decision, Sender};
use super::event::What;
use super::sink::AuditSink;
use crate::identity::TrustBundle;

/// Entries accepted per message at most (a bigger message is cut, the rest counted).
const MAX_ENTRIES: usize = 10_000;

/// Maps a decision rule (`data.pkg.rule`, empty: the entrypoint) to its `file:line`s.
pub type RuleLocator = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// The ALS service.
#[derive(Clone)]
pub struct AlsServer {
    sink: AuditSink,
    rules: RuleLocator,
}

impl std::fmt::Debug for AlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlsServer")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl AlsServer {
    /// A service recording into `sink`, locating rules with `rules`.
    pub fn new(sink: AuditSink, rules: RuleLocator) -> AlsServer {
        AlsServer { sink, rules }
    }

    /// The tonic service.
    pub fn into_service(self) -> AccessLogServiceServer<AlsServer> {
        AccessLogServiceServer::new(self).max_decoding_message_size(4 << 20)
    }
}

/// The SPIFFE ID in the URI SAN of a DER certificate.
pub fn spiffe_id_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
            Some((*u).to_string())
        }
        _ => None,
    })
}

#[tonic::async_trait]
impl AccessLogService for AlsServer {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let destination = request
            .peer_certs()
            .and_then(|c| c.first().and_then(|leaf| spiffe_id_of(leaf.as_ref())))
            .ok_or_else(|| {
                Status::unauthenticated("a client certificate with a SPIFFE ID is required")
            })?;
        let mut stream = request.into_inner();
        let mut sender = Sender {
            destination,
            instance: String::new(),
        };
        while let Some(msg) = stream.message().await? {
            if let Some(id) = &msg.identifier {
                if let Some(node) = &id.node {
                    sender.instance = node.id.chars().take(256).collect();
                }
            }
            let Some(LogEntries::HttpLogs(logs)) = msg.log_entries else {
                continue;
            };
            for entry in logs.log_entry.iter().take(MAX_ENTRIES) {
                if let Some((time_ms, mut d)) = decision(entry, &sender) {
                    let rule = d.rules.first().cloned().unwrap_or_default();
                    let located = (self.rules)(&rule);
                    if !located.is_empty() {
                        d.rules = located;
                    }
                    self.sink.emit_at(time_ms, What::Decision(d));
                }
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

/// Verifies client certificates against the trust bundle as it is now (rebuilt when its
/// sequence changes, so a CA rotation is followed).
pub struct BundleVerifier {
    bundle: Box<dyn Fn() -> TrustBundle + Send + Sync>,
    current: Mutex<Option<(u64, Arc<dyn ClientCertVerifier>)>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for BundleVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleVerifier").finish_non_exhaustive()
    }
}

impl BundleVerifier {
    /// A verifier reading the bundle from `bundle` on each handshake.
    pub fn new(bundle: impl Fn() -> TrustBundle + Send + Sync + 'static) -> BundleVerifier {
        BundleVerifier {
            bundle: Box::new(bundle),
            current: Mutex::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let b = (self.bundle)();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seq, v)) = cur.as_ref() {
            if *seq == b.sequence {
                return Ok(v.clone());
            }
        }
        let mut roots = RootCertStore::empty();
        for der in &b.x509_authorities_der {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| rustls::Error::General(format!("trust bundle: {e}")))?;
        }
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("client verifier: {e}")))?;
        *cur = Some((b.sequence, v.clone()));
        Ok(v)
    }
}

impl ClientCertVerifier for BundleVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()?
            .verify_client_cert(end_entity, intermediates, now)
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
