//! The secured ADS endpoint end to end in one process: a control plane over a real config
//! directory (join tokens, Kubernetes attestation with a generated issuer key), ADS over
//! TLS with the control plane's SVID, and real tonic clients over TLS presenting good and
//! bad credentials. Each refusal is checked three ways: no secret reaches the client, the
//! reason's counter moves, and an audit line names the caller and node (never the token).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::tls::{self, ServerCert};
use super::{AttestingAuthorizer, Shared};
use crate::attest::generate_token;
use crate::config::{self, tokens_file};
use crate::identity::{Clock, SystemClock};
use crate::plane::ControlPlane;
use crate::xds::cache::Cache;
use crate::xds::metrics::Metrics;
use crate::xds::status::StatusRegistry;
use crate::xds::types::ResourceType;

const ISSUER: &str = "https://kubernetes.default.svc";
const FRONTEND: &str = "spiffe://example.org/ns/demo/sa/frontend";

/// Log lines written while the test runs (current-thread runtime: every task logs here).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Issuer {
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
}

fn issuer() -> Issuer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    Issuer {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk,
    }
}

fn jwt(iss: &Issuer, sa: &str, audience: &str) -> String {
    jwt_for_pod(iss, sa, audience, &format!("{sa}-sidecar"))
}

/// A projected token of service account `sa`, bound to pod `pod`.
fn jwt_for_pod(iss: &Issuer, sa: &str, audience: &str, pod: &str) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": [audience], "sub": format!("system:serviceaccount:demo:{sa}"),
        "exp": now + 600, "nbf": now - 10, "iat": now - 10,
        "kubernetes.io": { "namespace": "demo", "serviceaccount": { "name": sa, "uid": "u" },
            "pod": { "name": pod, "uid": "p" } }
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_der(&iss.pkcs8);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// examples/mesh plus Kubernetes attestation trusting `iss`.
fn config_dir(iss: &Issuer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    for sub in ["", "workloads", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let jwks = json!({ "keys": [iss.jwk.clone()] }).to_string();
    std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
    let main = dir.path().join("warden.yaml");
    let text = std::fs::read_to_string(&main).unwrap();
    let extra =
        format!("\nattestation:\n  kubernetes:\n    issuer: {ISSUER}\n    jwks_file: jwks.json\n");
    std::fs::write(&main, text + &extra).unwrap();
    dir
}

fn token(dir: &Path, workload: &str, expires: SystemTime) -> (String, String) {
    let t = generate_token();
    let rec = tokens_file::NewRecord {
        id: &t.id,
        workload,
        sha256_hex: &t.sha256_hex,
        expires,
    };
    tokens_file::add(dir, &rec).unwrap();
    (t.id.clone(), t.token.as_str().to_owned())
}

struct Server {
    addr: std::net::SocketAddr,
    bundle_pem: String,
    shared: Shared,
    cert: Arc<ServerCert>,
    _cp: ControlPlane,
}

async fn start(dir: &Path) -> Server {
    let cfg = config::load(dir).unwrap_or_else(|d| panic!("{d}"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let auth = AttestingAuthorizer::new(cfg.clone(), clock.clone(), metrics.clone()).unwrap();
    let shared = Shared {
        cache: Arc::new(Cache::new()),
        metrics,
        status: Arc::new(StatusRegistry::default()),
        authorizer: Arc::new(auth),
        max_stream_age: None,
    };
    let (cp, _) = ControlPlane::start(
        cfg,
        "/m.wasm".into(),
        clock.clone(),
        crate::test_support::handles(&shared),
    )
    .unwrap();
    let svid = tls::mint_server_svid(&cp.ca(), Duration::from_secs(3600), clock.as_ref()).unwrap();
    let cert = Arc::new(ServerCert::new(tls::certified_key(&svid).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tls::server_config(cert.clone()).unwrap();
    tokio::spawn(super::serve_tls(listener, config, shared.clone()));
    Server {
        addr,
        bundle_pem: cp.ca().bundle().to_pem(),
        shared,
        cert,
        _cp: cp,
    }
}

async fn tls_client(s: &Server) -> AggregatedDiscoveryServiceClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&s.bundle_pem))
        .domain_name("warden-control-plane.example.org");
    let channel = Channel::from_shared(format!("https://{}", s.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    AggregatedDiscoveryServiceClient::new(channel)
}

/// Opens a SotW stream as `node` with `authorization` and asks for `node`'s SVID.
async fn ask(
    s: &Server,
    node: &str,
    authorization: Option<&str>,
) -> Result<DiscoveryResponse, tonic::Status> {
    let mut client = tls_client(s).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: node.into(),
            ..Default::default()
        }),
        resource_names: vec![FRONTEND.into()],
        type_url: ResourceType::Secret.type_url().into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(v) = authorization {
        req.metadata_mut()
            .insert("authorization", v.parse().unwrap());
    }
    let mut stream = client.stream_aggregated_resources(req).await?.into_inner();
    let msg = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an answer within 5 s")?;
    msg.ok_or_else(|| tonic::Status::aborted("stream ended"))
}

fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(sub))
}

#[tokio::test]
async fn a_valid_join_token_gets_its_workloads_svid_over_tls() {
    let iss = issuer();
    let dir = config_dir(&iss);
    let (_, tok) = token(
        dir.path(),
        "frontend",
        SystemTime::now() + Duration::from_secs(600),
    );
    let s = start(dir.path()).await;
    let resp = ask(&s, "frontend-sidecar", Some(&format!("Bearer {tok}")))
        .await
        .unwrap();
    assert_eq!(resp.resources.len(), 1, "the frontend's SVID");
    let text = s.shared.metrics.render();
    assert!(
        text.contains("warden_xds_attestations_total{method=\"join_token\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_valid_service_account_token_gets_its_workloads_svid() {
    let iss = issuer();
    let dir = config_dir(&iss);
    let s = start(dir.path()).await;
    let bearer = format!("Bearer {}", jwt(&iss, "frontend", "warden"));
    let resp = ask(&s, "frontend-sidecar", Some(&bearer)).await.unwrap();
    assert_eq!(resp.resources.len(), 1);
    assert!(s
        .shared
        .metrics
        .render()
        .contains("warden_xds_attestations_total{method=\"k8s_psat\"} 1"));
}

#[tokio::test]
async fn bad_credentials_get_no_secret_and_are_counted_and_audited() {
    let (logs, _guard) = capture();
    let iss = issuer();
    let dir = config_dir(&iss);
    let now = SystemTime::now();
    let (_, good) = token(dir.path(), "frontend", now + Duration::from_secs(600));
    let (_, expired) = token(dir.path(), "frontend", now - Duration::from_secs(1));
    let (revoked_id, revoked) = token(dir.path(), "frontend", now + Duration::from_secs(600));
    tokens_file::revoke(dir.path(), &revoked_id).unwrap();
    let s = start(dir.path()).await;
    let stranger = issuer();
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(&str, Option<String>, &str, tonic::Code)> = vec![
        (
            "frontend-sidecar",
            None,
            "no_credential",
            tonic::Code::Unauthenticated,
        ),
        (
            "backend-sidecar",
            Some(bearer(&good)),
            "node_mismatch",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer(&expired)),
            "token_expired",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer(&revoked)),
            "token_revoked",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer("wdn.0000abcd.forged")),
            "token_unknown",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer(&jwt(&iss, "frontend", "vault"))),
            "jwt_wrong_audience",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer(&jwt(&stranger, "frontend", "warden"))),
            "jwt_bad_signature",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer(&jwt(&iss, "backend", "warden"))),
            "node_mismatch",
            tonic::Code::PermissionDenied,
        ),
        (
            "frontend-sidecar",
            Some(bearer(&jwt_for_pod(
                &iss,
                "frontend",
                "warden",
                "frontend-5d4c9-k2x8q",
            ))),
            "pod_mismatch",
            tonic::Code::PermissionDenied,
        ),
    ];
    for (i, (node, auth, reason, code)) in cases.iter().enumerate() {
        let before = s.shared.metrics.attestation_failures(reason);
        let err = ask(&s, node, auth.as_deref()).await.unwrap_err();
        assert_eq!(err.code(), *code, "case {i} ({reason}): {err}");
        assert_eq!(
            s.shared.metrics.attestation_failures(reason),
            before + 1,
            "case {i}: counted as {reason}"
        );
        let log = logs.text();
        let line = log
            .lines()
            .filter(|l| l.contains("xds_attestation_refused"))
            .nth(i)
            .unwrap_or_else(|| panic!("case {i}: no audit line in\n{log}"));
        assert!(line.contains(&format!("node={node}")), "{line}");
        assert!(line.contains("remote=127.0.0.1:"), "{line}");
        assert!(line.contains(&format!("reason=\"{reason}\"")), "{line}");
        if let Some(a) = auth {
            let secret = a.trim_start_matches("Bearer ");
            assert!(!log.contains(secret), "the credential is never logged");
        }
    }
    let text = s.shared.metrics.render();
    assert!(
        text.contains("warden_xds_attestation_failures_total{reason=\"node_mismatch\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("warden_xds_streams_refused_total 9"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plaintext_client_cannot_talk_to_the_tls_port() {
    let iss = issuer();
    let dir = config_dir(&iss);
    let s = start(dir.path()).await;
    let plain = Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await;
    let Ok(channel) = plain else {
        return; // refused at connect: fine
    };
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    tx.send(DiscoveryRequest::default()).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.stream_aggregated_resources(ReceiverStream::new(rx)),
    )
    .await
    .expect("the server answers or closes within 5 s");
    let err = r.expect_err("no gRPC over plaintext");
    // The server only speaks TLS: the h2 preface fails the handshake and the
    // connection is closed (tonic reports a transport error).
    assert!(
        matches!(err.code(), tonic::Code::Unknown | tonic::Code::Unavailable),
        "{err}"
    );
    assert_eq!(s.shared.metrics.connected(), 0);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections() {
    let iss = issuer();
    let dir = config_dir(&iss);
    let s = start(dir.path()).await;
    let serial = |k: &rustls::sign::CertifiedKey| k.cert[0].as_ref().to_vec();
    let old = serial(&s.cert.current());
    let ca = s._cp.ca();
    let next = tls::mint_server_svid(&ca, Duration::from_secs(3600), &SystemClock).unwrap();
    s.cert.replace(tls::certified_key(&next).unwrap());
    // A fresh TLS client sees the new leaf.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(s.bundle_pem.as_bytes()) {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("warden-control-plane.example.org").unwrap();
    let tls = conn.connect(name, tcp).await.unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec();
    assert_eq!(leaf, serial(&s.cert.current()));
    assert_ne!(leaf, old, "new connections get the renewed certificate");
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let sans = parsed.subject_alternative_name().unwrap().unwrap();
    let text = format!("{:?}", sans.value.general_names);
    assert!(
        text.contains("spiffe://example.org/warden/control-plane"),
        "{text}"
    );
}
