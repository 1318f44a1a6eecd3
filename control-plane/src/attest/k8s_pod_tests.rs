//! Kubernetes attestation with tokens shaped exactly like the ones a Kubernetes 1.30+ API
//! server projects into a pod (`serviceAccountToken` volume source), signed with an RSA
//! key whose JWKS is shaped like `kubectl get --raw /openid/v1/jwks`.
//!
//! What a real 1.30+ API server issues (k8s.io/kubernetes pkg/serviceaccount/claims.go and
//! jwt.go; go-jose signer):
//! - header: `{"alg":"RS256","kid":"<base64url(SHA-256(DER SubjectPublicKeyInfo))>"}`,
//!   no `typ`;
//! - claims: `aud` (array), `exp`, `iat`, `iss` (the `--service-account-issuer`, e.g.
//!   `https://kubernetes.default.svc.cluster.local`), `jti` (a UUID, 1.29+), `nbf` (= iat),
//!   `sub` (`system:serviceaccount:<ns>:<sa>`), and `kubernetes.io`: `namespace`,
//!   `node {name, uid}` (1.30+, ServiceAccountTokenPodNodeInfo), `pod {name, uid}`,
//!   `serviceaccount {name, uid}`; `warnafter` only on tokens whose expiry was extended
//!   (the default 1 h kubelet token), not on a 600 s projected token with an audience;
//! - JWKS: `{"keys":[{"use":"sig","kty":"RSA","kid":...,"alg":"RS256","n":...,"e":"AQAB"}]}`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::Digest;

use super::*;
use crate::config;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const POD: &str = "backend-7c9d8f5b4-x2x7q";

struct RsaIssuer {
    der: Vec<u8>,
    kid: String,
    jwk: serde_json::Value,
}

fn rsa_issuer() -> RsaIssuer {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = key.to_public_key();
    let spki = public.to_public_key_der().unwrap();
    let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(spki.as_bytes()));
    let jwk = json!({
        "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    });
    let der = key.to_pkcs1_der().unwrap().as_bytes().to_vec();
    RsaIssuer { der, kid, jwk }
}

/// RSA keys take a moment to generate: one cluster key and one foreign key per run.
fn cluster() -> &'static RsaIssuer {
    static K: OnceLock<RsaIssuer> = OnceLock::new();
    K.get_or_init(rsa_issuer)
}

fn foreign() -> &'static RsaIssuer {
    static K: OnceLock<RsaIssuer> = OnceLock::new();
    K.get_or_init(rsa_issuer)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a 600 s projected token for pod `pod` of `demo/backend`, issued at `iat`.
fn projected_claims(iss: &str, pod: &str, iat: u64) -> serde_json::Value {
    json!({
        "aud": ["warden"],
        "exp": iat + 600,
        "iat": iat,
        "iss": iss,
        "jti": "0a1b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
        "kubernetes.io": {
            "namespace": "demo",
            "node": { "name": "kind-worker2", "uid": "5e9f1d8c-2f43-4c3e-9a51-6b7d0c2e8f14" },
            "pod": { "name": pod, "uid": "a3c1e0b2-7d4f-4e8a-b6c9-0f1e2d3c4b5a" },
            "serviceaccount": { "name": "backend", "uid": "c8d7e6f5-4a3b-4c2d-8e1f-0a9b8c7d6e5f" }
        },
        "nbf": iat,
        "sub": "system:serviceaccount:demo:backend"
    })
}

/// Sign like go-jose: header `{"alg":"RS256","kid":...}` (no `typ`).
fn sign(key: &RsaIssuer, claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid));
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let message = format!("{header}.{body}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_rsa_der(&key.der),
        Algorithm::RS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn jwks(keys: &[&RsaIssuer]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// examples/mesh trusting the cluster issuer, with the backend's one instance being pod
/// `POD` (until workload instances land, the instance name is the workload's node id).
fn mesh(keys: &[&RsaIssuer]) -> tempfile::TempDir {
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
    std::fs::write(dir.path().join("jwks.json"), jwks(keys)).unwrap();
    let main = dir.path().join("warden.yaml");
    let text = std::fs::read_to_string(&main).unwrap();
    let extra =
        format!("\nattestation:\n  kubernetes:\n    issuer: {ISSUER}\n    jwks_file: jwks.json\n");
    std::fs::write(&main, text + &extra).unwrap();
    let backend = dir.path().join("workloads/backend.yaml");
    let text = std::fs::read_to_string(&backend).unwrap();
    std::fs::write(
        &backend,
        text.replace("node_id: backend-sidecar", &format!("node_id: {POD}")),
    )
    .unwrap();
    dir
}

fn attestor(dir: &Path) -> Attestor {
    Attestor::from_config(config::load(dir).unwrap_or_else(|d| panic!("{d}"))).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_kubernetes_1_30_projected_token_proves_service_account_pod_and_node() {
    let k = cluster();
    let set = K8sVerifier::parse_jwks(&jwks(&[k])).unwrap();
    let v = K8sVerifier::new(ISSUER.into(), "warden".into(), set);
    let sa = v
        .verify(
            &sign(k, &projected_claims(ISSUER, POD, now())),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        (sa.namespace.as_str(), sa.name.as_str()),
        ("demo", "backend")
    );
    let pod = sa.pod.clone().unwrap();
    assert_eq!(pod.name, POD);
    assert_eq!(pod.uid, "a3c1e0b2-7d4f-4e8a-b6c9-0f1e2d3c4b5a");
    assert_eq!(sa.node.unwrap().name, "kind-worker2");
}

#[test]
fn the_pod_a_token_names_is_attested_and_another_pods_instance_is_refused() {
    let dir = mesh(&[cluster()]);
    let a = attestor(dir.path());
    let token = bearer(&sign(cluster(), &projected_claims(ISSUER, POD, now())));
    let ok = a.attest(Some(&token), POD, SystemTime::now()).unwrap();
    assert_eq!((ok.workload.as_str(), ok.method), ("backend", "k8s_psat"));

    // The same workload's token, projected into a sibling pod, for this pod's stream.
    let sibling = bearer(&sign(
        cluster(),
        &projected_claims(ISSUER, "backend-7c9d8f5b4-zz9k2", now()),
    ));
    let err = a
        .attest(Some(&sibling), POD, SystemTime::now())
        .unwrap_err();
    assert_eq!(err.reason(), "pod_mismatch", "{err}");
    assert!(err.to_string().contains("backend-7c9d8f5b4-zz9k2"), "{err}");
}

#[test]
fn a_token_bound_to_no_pod_is_refused() {
    let dir = mesh(&[cluster()]);
    let mut c = projected_claims(ISSUER, POD, now());
    let k = c["kubernetes.io"].as_object_mut().unwrap();
    k.remove("pod");
    k.remove("node");
    let err = attestor(dir.path())
        .attest(Some(&bearer(&sign(cluster(), &c))), POD, SystemTime::now())
        .unwrap_err();
    assert_eq!(err.reason(), "jwt_not_pod_bound", "{err}");
}

#[test]
fn an_expired_projected_token_is_refused() {
    let dir = mesh(&[cluster()]);
    let token = bearer(&sign(
        cluster(),
        &projected_claims(ISSUER, POD, now() - 700),
    ));
    let err = attestor(dir.path())
        .attest(Some(&token), POD, SystemTime::now())
        .unwrap_err();
    assert_eq!(err.reason(), "jwt_expired", "{err}");
}

#[test]
fn a_token_from_a_foreign_issuer_is_refused() {
    let dir = mesh(&[cluster()]);
    let a = attestor(dir.path());
    // Another cluster: its own key and issuer.
    let other = bearer(&sign(
        foreign(),
        &projected_claims("https://oidc.other.example", POD, now()),
    ));
    let err = a.attest(Some(&other), POD, SystemTime::now()).unwrap_err();
    assert_eq!(err.reason(), "jwt_bad_signature", "{err}");
    // Signed by a trusted key but naming another issuer.
    let renamed = bearer(&sign(
        cluster(),
        &projected_claims("https://oidc.other.example", POD, now()),
    ));
    let err = a
        .attest(Some(&renamed), POD, SystemTime::now())
        .unwrap_err();
    assert_eq!(err.reason(), "jwt_wrong_issuer", "{err}");
}

#[test]
fn a_rotated_issuer_key_is_trusted_after_the_jwks_file_is_reloaded() {
    let dir = mesh(&[cluster()]);
    let token = bearer(&sign(foreign(), &projected_claims(ISSUER, POD, now())));
    let before = attestor(dir.path()).attest(Some(&token), POD, SystemTime::now());
    assert_eq!(before.unwrap_err().reason(), "jwt_bad_signature");
    // The API server now publishes both keys (kubectl get --raw /openid/v1/jwks).
    std::fs::write(dir.path().join("jwks.json"), jwks(&[cluster(), foreign()])).unwrap();
    let after = attestor(dir.path()).attest(Some(&token), POD, SystemTime::now());
    assert_eq!(after.unwrap().workload, "backend");
}

#[test]
fn binding_requires_the_exact_pod_name() {
    let sa = ServiceAccount {
        namespace: "demo".into(),
        name: "backend".into(),
        pod: Some(BoundObject {
            name: POD.into(),
            uid: "u".into(),
        }),
        node: None,
    };
    assert!(bind_to_instance(&sa, POD).is_ok());
    for other in [
        "",
        "backend",
        "backend-7c9d8f5b4-x2x7",
        "BACKEND-7C9D8F5B4-X2X7Q",
        "backend-7c9d8f5b4-x2x7q ",
    ] {
        assert!(
            matches!(
                bind_to_instance(&sa, other),
                Err(K8sError::PodMismatch { .. })
            ),
            "{other:?}"
        );
    }
    let unbound = ServiceAccount { pod: None, ..sa };
    assert_eq!(bind_to_instance(&unbound, POD), Err(K8sError::NotPodBound));
}

#[test]
fn a_pod_claim_with_an_empty_name_binds_to_nothing() {
    let k = cluster();
    let mut c = projected_claims(ISSUER, "", now());
    c["kubernetes.io"]["pod"]["uid"] = json!("");
    let v = K8sVerifier::new(
        ISSUER.into(),
        "warden".into(),
        K8sVerifier::parse_jwks(&jwks(&[k])).unwrap(),
    );
    let sa = v.verify(&sign(k, &c), SystemTime::now()).unwrap();
    assert_eq!(bind_to_instance(&sa, ""), Err(K8sError::NotPodBound));
}
