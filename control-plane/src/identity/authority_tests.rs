//! The set of CAs through a whole rotation, with a clock the tests move by hand, and
//! across restarts (a fresh `Authority` loaded from the same state directory).

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::identity::{CaParams, KeyType, Svid, SvidParams};
use crate::test_support::ManualClock;

/// A CA living 6000 s: prepare at 3000 s, activate at 5000 s.
fn params(dir: &Path) -> CaParams {
    CaParams {
        trust_domain: "example.org".parse().unwrap(),
        key_type: KeyType::EcP256,
        ttl: Duration::from_secs(6000),
        state_dir: dir.join("state"),
        upstream: None,
    }
}

fn mint(a: &Authority, clock: &ManualClock, ttl: u64) -> Svid {
    let params = SvidParams {
        id: "spiffe://example.org/w".parse().unwrap(),
        ttl: Duration::from_secs(ttl),
    };
    a.active().mint(&params, clock).unwrap()
}

fn issuer_of(svid: &Svid) -> Vec<u8> {
    let der = pem_certs(&svid.cert_chain_pem).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.issuer().as_raw().to_vec()
}

fn subject_of(ca: &Ca) -> Vec<u8> {
    let der = pem_certs(ca.certificate_pem()).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.subject().as_raw().to_vec()
}

#[test]
fn a_full_rotation_keeps_the_old_ca_trusted_until_its_last_svid_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let mut a = Authority::load_or_init(&params(dir.path()), &clock).unwrap();
    let old = a.active();
    assert_eq!(a.bundle().x509_authorities_der.len(), 1);
    assert_eq!(a.bundle().sequence, 1);

    clock.advance(Duration::from_secs(3000));
    let old_svid = mint(&a, &clock, 600);
    a.prepare(&clock).unwrap();
    let bundle = a.bundle();
    assert_eq!(bundle.x509_authorities_der.len(), 2, "next is published");
    assert_eq!(bundle.sequence, 2);
    assert_eq!(
        a.active().serial_hex(),
        old.serial_hex(),
        "next does not sign yet"
    );
    let next = a.next().unwrap();

    clock.advance(Duration::from_secs(100));
    a.activate(&[], &clock).unwrap();
    assert_eq!(a.active().serial_hex(), next.serial_hex());
    assert_eq!(
        a.bundle().x509_authorities_der.len(),
        2,
        "old stays trusted"
    );
    assert_eq!(a.bundle().sequence, 2, "same authorities, same sequence");
    let new_svid = mint(&a, &clock, 600);
    assert_eq!(issuer_of(&new_svid), subject_of(&next));
    let rs = a.rotation_state();
    assert_eq!(rs.retired[0].serial_hex, old.serial_hex());
    assert_eq!(
        unix(rs.retired[0].retire_after),
        unix_secs_ceil(old_svid.not_after)
    );

    clock.advance(Duration::from_secs(100));
    let err = a.retire(false, &clock).unwrap_err();
    assert!(
        matches!(err, RotateError::Refused(Refusal::StillInUse { .. })),
        "{err}"
    );
    clock.advance(Duration::from_secs(401)); // notAfter rounded up to the next whole second
    assert_eq!(
        a.retire(false, &clock).unwrap(),
        vec![old.serial_hex().to_string()]
    );
    let bundle = a.bundle();
    assert_eq!(bundle.x509_authorities_der.len(), 1);
    assert_eq!(bundle.sequence, 3, "the set changed again");
}

#[test]
fn a_restart_resumes_exactly_the_same_cas_in_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let p = params(dir.path());
    let mut a = Authority::load_or_init(&p, &clock).unwrap();
    let same = |a: &Authority| {
        let b = Authority::load_or_init(&p, &clock).unwrap();
        assert_eq!(b.active().serial_hex(), a.active().serial_hex());
        assert_eq!(
            b.next().map(|n| n.serial_hex().to_string()),
            a.next().map(|n| n.serial_hex().to_string())
        );
        assert_eq!(b.bundle(), a.bundle());
        assert_eq!(b.rotation_state(), a.rotation_state());
    };
    same(&a);
    a.prepare(&clock).unwrap();
    same(&a);
    a.activate(&[], &clock).unwrap();
    same(&a);
    a.retire(true, &clock).unwrap();
    same(&a);
}

#[test]
fn an_inconsistent_next_slot_is_an_error_and_the_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let p = params(dir.path());
    let mut a = Authority::load_or_init(&p, &clock).unwrap();
    a.prepare(&clock).unwrap();
    let path = p.state_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replace("\"published_sequence\": 2", "\"published_sequence\": 9");
    assert_ne!(text, broken);
    std::fs::write(&path, &broken).unwrap();
    let err = Authority::load_or_init(&p, &clock).unwrap_err();
    assert!(
        err.to_string().contains("published bundle sequence"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
}

#[test]
fn load_existing_never_creates_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path());
    assert!(Authority::load_existing(&p, &ManualClock::new())
        .unwrap()
        .is_none());
    assert!(!p.state_dir.exists());
}

#[test]
fn automatic_steps_follow_the_thresholds_and_the_acks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let mut a = Authority::load_or_init(&params(dir.path()), &clock).unwrap();
    let lag = vec!["frontend-sidecar".to_string()];
    assert_eq!(a.auto_step(&[], &clock).unwrap(), None);
    clock.advance(Duration::from_secs(3001));
    assert_eq!(a.auto_step(&[], &clock).unwrap(), Some(Step::Prepare));
    clock.advance(Duration::from_secs(2000));
    assert_eq!(a.auto_step(&lag, &clock).unwrap(), None, "a node lags");
    assert_eq!(a.auto_step(&[], &clock).unwrap(), Some(Step::Activate));
    // Nothing was signed by the old CA: it may leave at once.
    assert_eq!(a.auto_step(&[], &clock).unwrap(), Some(Step::Retire));
    assert_eq!(a.bundle().x509_authorities_der.len(), 1);
}

#[test]
fn signing_is_recorded_ahead_so_a_restart_keeps_old_svids_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let p = params(dir.path());
    let mut a = Authority::load_or_init(&p, &clock).unwrap();
    let svid = mint(&a, &clock, 600);
    assert!(a.persist_signing(&clock).unwrap());
    clock.advance(Duration::from_secs(10));
    mint(&a, &clock, 600);
    assert!(
        !a.persist_signing(&clock).unwrap(),
        "within the lead: no write"
    );
    drop(a);
    let mut b = Authority::load_or_init(&p, &clock).unwrap();
    b.prepare(&clock).unwrap();
    b.activate(&[], &clock).unwrap();
    let retire_after = b.rotation_state().retired[0].retire_after;
    assert!(
        retire_after >= svid.not_after,
        "never earlier than an SVID handed out"
    );
}

#[test]
fn with_an_upstream_ca_the_next_intermediate_needs_no_new_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let mut p = params(dir.path());
    p.upstream = Some(crate::identity::ca::tests::openssl_root(dir.path()));
    let mut a = Authority::load_or_init(&p, &clock).unwrap();
    let before = a.bundle();
    a.prepare(&clock).unwrap();
    assert_eq!(
        a.bundle(),
        before,
        "the upstream root already anchors the next CA"
    );
    assert_eq!(
        a.rotation_state().next.unwrap().published_sequence,
        before.sequence
    );
    let next = a.next().unwrap();
    assert_ne!(next.serial_hex(), a.active().serial_hex());
    a.activate(&[], &clock).unwrap();
    let svid = mint(&a, &clock, 600);
    assert_eq!(issuer_of(&svid), subject_of(&next));
    assert!(svid.cert_chain_pem.contains(next.certificate_pem().trim()));
    let b = Authority::load_or_init(&p, &clock).unwrap();
    assert_eq!(b.active().serial_hex(), next.serial_hex());
}

#[test]
fn a_mint_racing_the_activation_keeps_the_old_ca_trusted_longer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let mut a = Authority::load_or_init(&params(dir.path()), &clock).unwrap();
    let old = a.active();
    a.prepare(&clock).unwrap();
    a.activate(&[], &clock).unwrap();
    // Someone still holding the old CA mints after the activation.
    let late = old
        .mint(
            &SvidParams {
                id: "spiffe://example.org/late".parse().unwrap(),
                ttl: Duration::from_secs(900),
            },
            &clock,
        )
        .unwrap();
    a.persist_signing(&clock).unwrap();
    let after = a.rotation_state().retired[0].retire_after;
    assert!(
        after >= late.not_after,
        "retire-after moved out to the late SVID"
    );
    let b = Authority::load_or_init(&params(dir.path()), &clock).unwrap();
    assert_eq!(
        b.rotation_state().retired[0].retire_after,
        after,
        "and it is saved"
    );
}

#[test]
fn the_status_explains_each_phase_in_plain_words() {
    use crate::identity::{CaStatus, NodeAcks};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let mut a = Authority::load_or_init(&params(dir.path()), &clock).unwrap();
    let words = CaStatus::of(&a, clock.now(), None).summary();
    assert!(words.contains("signs SVIDs, expires in 1h40m"), "{words}");
    assert!(words.contains("no next CA yet"), "{words}");

    a.prepare(&clock).unwrap();
    clock.advance(Duration::from_secs(7200 / 60));
    let acks = NodeAcks {
        connected: vec!["a".into(), "b".into(), "c".into()],
        lagging: vec!["c".into()],
    };
    let st = CaStatus::of(&a, clock.now(), Some(acks));
    assert_eq!(st.activation_blocked_by, vec!["c".to_string()]);
    let words = st.summary();
    assert!(
        words.contains("prepared 2m ago, published to 2/3 connected nodes"),
        "{words}"
    );
    assert!(words.contains("waiting for c to ACK"), "{words}");

    mint(&a, &clock, 600);
    a.activate(&[], &clock).unwrap();
    let words = CaStatus::of(&a, clock.now(), Some(NodeAcks::default())).summary();
    assert!(words.contains("leaves the bundle at"), "{words}");
    assert!(
        words.contains("(in 10m) when its last SVID expires"),
        "{words}"
    );
    assert!(words.contains("phase: activated"), "{words}");
}

#[test]
fn a_restart_after_the_current_ca_expired_activates_the_prepared_next_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path());
    let clock = ManualClock::new();
    let mut a = Authority::load_or_init(&p, &clock).unwrap();
    let old = a.active().serial_hex().to_string();
    clock.advance(Duration::from_secs(3001));
    a.prepare(&clock).unwrap();
    let next = a.next().unwrap().serial_hex().to_string();
    drop(a);
    // Down past the deadline and the current CA's end (6000 s, backdated 30 s).
    clock.advance(Duration::from_secs(3100));
    let a = Authority::load_or_init(&p, &clock).unwrap();
    assert_eq!(a.active().serial_hex(), next);
    assert_eq!(a.rotation_state().retired[0].serial_hex, old);
    let svid = mint(&a, &clock, 60);
    assert!(svid.not_after > clock.now());
    // Saved: the next start needs no promotion.
    let again = Authority::load_or_init(&p, &clock).unwrap();
    assert_eq!(again.active().serial_hex(), next);
}

#[test]
fn a_restart_after_the_current_ca_expired_without_a_next_ca_is_still_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = params(dir.path());
    let clock = ManualClock::new();
    drop(Authority::load_or_init(&p, &clock).unwrap());
    clock.advance(Duration::from_secs(6100));
    let err = Authority::load_or_init(&p, &clock).unwrap_err();
    assert!(matches!(err, CaError::Expired { .. }), "{err}");
}
