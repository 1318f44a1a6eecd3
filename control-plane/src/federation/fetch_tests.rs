//! The client against the real bundle endpoint on loopback (rustls on both sides).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;
use crate::federation::endpoint::{self, BundleSource};
use crate::identity::{Ca, CaParams, KeyType, SystemClock};
use crate::xds::server::tls::{certified_key, mint_server_svid, ServerCert};

fn ca(td: &str, dir: &std::path::Path) -> Ca {
    let params = CaParams {
        trust_domain: td.parse().unwrap(),
        key_type: KeyType::EcP256,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.join(td),
        upstream: None,
    };
    Ca::load_or_init(&params, &SystemClock).unwrap()
}

/// Serves `body` with an SVID of `ca`'s trust domain; returns the URL.
async fn endpoint(ca: &Ca, body: String) -> url::Url {
    let svid = mint_server_svid(ca, Duration::from_secs(600), &SystemClock).unwrap();
    let cert = Arc::new(ServerCert::new(certified_key(&svid).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let source: BundleSource = Arc::new(move || body.clone());
    tokio::spawn(endpoint::serve(listener, cert, source));
    format!("https://{addr}/").parse().unwrap()
}

fn spiffe(ca: &Ca, id: &str) -> Trust {
    Trust::Spiffe {
        roots: ca.bundle().x509_authorities_der,
        id: id.parse().unwrap(),
    }
}

#[tokio::test]
async fn an_https_spiffe_endpoint_is_trusted_with_the_previous_bundle_and_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = ca("b.test", dir.path());
    let doc = b.bundle().to_spiffe_json(Duration::from_secs(5), &[]);
    let url = endpoint(&b, doc.clone()).await;
    let got = fetch(&url, &spiffe(&b, "spiffe://b.test/warden/control-plane"))
        .await
        .unwrap();
    assert_eq!(got, doc.as_bytes());
}

#[tokio::test]
async fn a_wrong_endpoint_id_or_another_domains_bundle_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (b, other) = (ca("b.test", dir.path()), ca("c.test", dir.path()));
    let url = endpoint(&b, b.bundle().to_jwks_json()).await;
    for trust in [
        spiffe(&b, "spiffe://b.test/somebody-else"),
        spiffe(&other, "spiffe://b.test/warden/control-plane"),
        Trust::Spiffe {
            roots: Vec::new(),
            id: "spiffe://b.test/warden/control-plane".parse().unwrap(),
        },
    ] {
        let err = fetch(&url, &trust).await.unwrap_err();
        assert!(
            matches!(err, FetchError::Handshake(_) | FetchError::NoPreviousBundle),
            "{err}"
        );
    }
    // Web PKI roots do not vouch for an SVID either.
    let web = Trust::Web {
        roots: Arc::new(web_roots(None).unwrap()),
    };
    assert!(matches!(
        fetch(&url, &web).await,
        Err(FetchError::Handshake(_))
    ));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = ca("b.test", dir.path());
    let url = endpoint(&b, " ".repeat(MAX_DOCUMENT_BYTES + 10)).await;
    let err = fetch(&url, &spiffe(&b, "spiffe://b.test/warden/control-plane"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Http(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_accepts_and_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let b = ca("b.test", dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: url::Url = format!("https://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let err = fetch(&url, &spiffe(&b, "spiffe://b.test/warden/control-plane"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::AnswerTimeout(_)), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let b = ca("b.test", dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let err = fetch(&url, &spiffe(&b, "spiffe://b.test/warden/control-plane"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err}");
}

/// A Web PKI CA and a server certificate for `127.0.0.1`, as PEM files in `dir`.
fn web_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (roots, chain, key_file) = (
        dir.join("roots.pem"),
        dir.join("web.crt"),
        dir.join("web.key"),
    );
    std::fs::write(&roots, ca_cert.pem()).unwrap();
    std::fs::write(&chain, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (roots, chain, key_file)
}

#[tokio::test]
async fn an_https_web_endpoint_is_trusted_with_the_configured_roots_and_its_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let b = ca("b.test", dir.path());
    let (roots, chain, key) = web_pki(dir.path());
    let certified = endpoint::web_certified_key(&chain, &key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = b.bundle().to_jwks_json();
    let body = doc.clone();
    let source: BundleSource = Arc::new(move || body.clone());
    tokio::spawn(endpoint::serve(
        listener,
        Arc::new(ServerCert::new(certified)),
        source,
    ));
    let web = Trust::Web {
        roots: Arc::new(web_roots(Some(&roots)).unwrap()),
    };
    let url: url::Url = format!("https://{addr}/").parse().unwrap();
    assert_eq!(fetch(&url, &web).await.unwrap(), doc.as_bytes());
    // The same server under another name fails the host name check.
    let other: url::Url = format!("https://localhost:{}/", addr.port())
        .parse()
        .unwrap();
    assert!(matches!(
        fetch(&other, &web).await,
        Err(FetchError::Handshake(_))
    ));
    // And the built-in Web PKI roots do not know this CA.
    let builtin = Trust::Web {
        roots: Arc::new(web_roots(None).unwrap()),
    };
    assert!(matches!(
        fetch(&url, &builtin).await,
        Err(FetchError::Handshake(_))
    ));
    assert!(web_roots(Some(&dir.path().join("missing.pem"))).is_err());
}
