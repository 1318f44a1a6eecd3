//! The issuer under a clock the test moves: renewal points, backoff, CA changes, reloads.

use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::identity::{CaParams, KeyType};
use crate::test_support::ManualClock;
use crate::workload_api::attest::Selector;

/// A source whose signer the test swaps, like a CA activation in the control plane.
#[derive(Debug)]
struct SwappableSource {
    signer: Mutex<Arc<Ca>>,
    extra: Mutex<Option<Arc<Ca>>>,
    config: Arc<Config>,
}

impl IdentitySource for SwappableSource {
    fn signer(&self) -> Arc<Ca> {
        self.signer.lock().unwrap().clone()
    }
    fn bundle(&self) -> TrustBundle {
        let mut b = self.signer().bundle();
        if let Some(extra) = self.extra.lock().unwrap().as_ref() {
            b.x509_authorities_der
                .extend(extra.bundle().x509_authorities_der);
        }
        b
    }
    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }
}

fn new_ca(dir: &Path, clock: &dyn Clock) -> Arc<Ca> {
    let params = CaParams {
        trust_domain: "example.org".parse().unwrap(),
        key_type: KeyType::EcP256,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.to_path_buf(),
        upstream: None,
    };
    Arc::new(Ca::load_or_init(&params, clock).unwrap())
}

fn entry(name: &str, uid: u32) -> Entry {
    Entry {
        name: name.into(),
        spiffe_id: format!("spiffe://example.org/{name}").parse().unwrap(),
        selectors: vec![Selector::Uid(uid)],
    }
}

const LIFE: Lifetimes = Lifetimes {
    x509_ttl: Duration::from_secs(600),
    jwt_ttl: Duration::from_secs(300),
    renew_fraction: 0.5,
    jwt_key_ttl: Duration::from_secs(24 * 3600),
};

struct Fixture {
    _dir: tempfile::TempDir,
    dir2: tempfile::TempDir,
    clock: Arc<ManualClock>,
    source: Arc<SwappableSource>,
    issuer: Issuer,
}

fn fixture(entries: &[Entry]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let config =
        crate::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh"))
            .unwrap();
    let source = Arc::new(SwappableSource {
        signer: Mutex::new(new_ca(dir.path(), clock.as_ref())),
        extra: Mutex::new(None),
        config: Arc::new(config),
    });
    let jwt = JwtKeys::load_or_create(dir.path(), clock.now()).unwrap();
    let issuer = Issuer::new(source.clone(), clock.clone(), jwt, LIFE, entries).unwrap();
    Fixture {
        _dir: dir,
        dir2: tempfile::tempdir().unwrap(),
        clock,
        source,
        issuer,
    }
}

fn serial(f: &Fixture, name: &str) -> String {
    f.issuer.current(name).unwrap().serial_hex.clone()
}

#[test]
fn renewal_happens_at_the_configured_fraction_of_the_lifetime() {
    // The window of `identity::renewal` (its own tests check the spread and backoff).
    let dir = tempfile::tempdir().unwrap();
    let t = SystemTime::now();
    let ca = new_ca(dir.path(), &crate::identity::FixedClock(t));
    let svid = ca
        .mint(
            &SvidParams {
                id: "spiffe://example.org/w".parse().unwrap(),
                ttl: Duration::from_secs(3600),
            },
            &crate::identity::FixedClock(t),
        )
        .unwrap();
    let due = renewal_due("w", &svid, 0.5, t);
    assert!(due >= t + Duration::from_secs(1620), "{due:?}");
    assert!(due <= t + Duration::from_secs(1980), "{due:?}");
}

#[test]
fn an_expired_svid_is_renewed_after_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let t = SystemTime::now();
    let ca = new_ca(dir.path(), &crate::identity::FixedClock(t));
    let svid = ca
        .mint(
            &SvidParams {
                id: "spiffe://example.org/w".parse().unwrap(),
                ttl: Duration::from_secs(60),
            },
            &crate::identity::FixedClock(t),
        )
        .unwrap();
    let later = t + Duration::from_secs(600);
    assert_eq!(
        renewal_due("w", &svid, 0.5, later),
        later + Duration::from_secs(1)
    );
}

#[test]
fn an_svid_is_re_minted_only_once_its_renewal_point_has_passed() {
    let f = fixture(&[entry("job", 1000)]);
    let first = serial(&f, "job");
    let mut epoch = f.issuer.subscribe();
    epoch.borrow_and_update();
    f.clock.advance(Duration::from_secs(200)); // before 45% of 600 s
    assert_eq!(f.issuer.tick(), 0);
    assert_eq!(serial(&f, "job"), first);
    assert!(!epoch.has_changed().unwrap(), "nothing visible changed");
    f.clock.advance(Duration::from_secs(200)); // past 55%
    assert_eq!(f.issuer.tick(), 1);
    assert_ne!(serial(&f, "job"), first);
    assert!(epoch.has_changed().unwrap(), "streams are woken");
}

#[test]
fn a_new_signing_ca_re_mints_every_svid_and_a_grown_bundle_is_pushed() {
    let f = fixture(&[entry("a", 1), entry("b", 2)]);
    let (a, b) = (serial(&f, "a"), serial(&f, "b"));
    let next = new_ca(f.dir2.path(), f.clock.as_ref());
    *f.source.extra.lock().unwrap() = Some(next.clone());
    let mut epoch = f.issuer.subscribe();
    epoch.borrow_and_update();
    assert_eq!(f.issuer.tick(), 0, "a prepared CA does not sign yet");
    assert!(epoch.has_changed().unwrap());
    assert_eq!(f.issuer.bundle().x509_authorities_der.len(), 2);

    *f.source.signer.lock().unwrap() = next;
    assert_eq!(f.issuer.tick(), 2, "activation re-mints with the new CA");
    assert_ne!(serial(&f, "a"), a);
    assert_ne!(serial(&f, "b"), b);
    assert_eq!(f.issuer.tick(), 0, "and only once");
}

#[test]
fn reloaded_entries_keep_unchanged_svids_mint_new_ones_and_drop_removed_ones() {
    let f = fixture(&[entry("keep", 1), entry("gone", 2)]);
    let kept = serial(&f, "keep");
    f.issuer
        .set_entries(&[entry("keep", 1), entry("new", 3)], LIFE);
    assert_eq!(serial(&f, "keep"), kept);
    assert!(f.issuer.current("new").is_some());
    assert!(f.issuer.current("gone").is_none());
    let caller = Caller {
        uid: 2,
        gid: 2,
        pid: None,
        exe: None,
    };
    assert!(
        f.issuer.entries_for(&caller).is_empty(),
        "a removed entry's process no longer matches"
    );
}

#[test]
fn a_changed_lifetime_re_mints_on_reload() {
    let f = fixture(&[entry("job", 1)]);
    let first = serial(&f, "job");
    let longer = Lifetimes {
        x509_ttl: Duration::from_secs(1200),
        ..LIFE
    };
    f.issuer.set_entries(&[entry("job", 1)], longer);
    assert_ne!(serial(&f, "job"), first);
    assert_eq!(f.issuer.lifetimes(), longer);
}

#[test]
fn the_jwt_key_rotates_on_ticks_and_the_bundle_change_wakes_streams() {
    let f = fixture(&[entry("job", 1)]);
    let id: crate::identity::SpiffeId = "spiffe://example.org/job".parse().unwrap();
    let before = f.issuer.sign_jwt(&id, &["db".into()]).unwrap();
    let mut epoch = f.issuer.subscribe();
    epoch.borrow_and_update();
    f.clock.advance(Duration::from_secs(12 * 3600));
    f.issuer.tick();
    assert!(epoch.has_changed().unwrap());
    let jwks: serde_json::Value = serde_json::from_str(&f.issuer.jwks_json()).unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "next key published"
    );
    f.clock.advance(Duration::from_secs(8 * 3600));
    f.issuer.tick();
    let after = f.issuer.sign_jwt(&id, &["db".into()]).unwrap();
    let kid = |t: &str| t.split('.').next().unwrap().to_string();
    assert_ne!(
        kid(&before),
        kid(&after),
        "a new key signs after activation"
    );
    assert!(f.issuer.validate_jwt(&after, "db").is_ok());
}

#[test]
fn an_svid_past_its_not_after_is_never_handed_out() {
    let f = fixture(&[entry("job", 1000)]);
    let not_after = f.issuer.current("job").unwrap().not_after;
    // No tick (as if every re-mint had failed): the kept SVID is served while valid...
    f.clock.set(not_after - Duration::from_secs(1));
    assert!(f.issuer.current("job").is_some());
    // ...and withheld from its notAfter on.
    f.clock.set(not_after);
    assert!(f.issuer.current("job").is_none());
}
