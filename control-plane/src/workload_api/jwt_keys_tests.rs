//! JWT key rotation under a clock the test sets: prepare, activate, retire, persistence.

use std::os::unix::fs::PermissionsExt;
use std::time::UNIX_EPOCH;

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);
const JWT_TTL: Duration = Duration::from_secs(300);

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn id() -> SpiffeId {
    "spiffe://example.org/job".parse().unwrap()
}

fn kids(keys: &JwtKeys) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(&keys.jwks_json()).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_key_is_prepared_at_half_life_activated_at_five_sixths_and_removed_after_its_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = JwtKeys::load_or_create(dir.path(), t(0)).unwrap();
    let first = keys.kid().to_string();
    let old_token = keys.sign(&id(), &["db".into()], t(0), JWT_TTL).unwrap();

    assert!(keys
        .rotate_due(t(11 * 3600), DAY, JWT_TTL)
        .unwrap()
        .is_empty());
    let steps = keys.rotate_due(t(12 * 3600), DAY, JWT_TTL).unwrap();
    assert!(
        matches!(&steps[..], [KeyStep::Prepared { .. }]),
        "{steps:?}"
    );
    assert_eq!(kids(&keys).len(), 2, "the next key is published early");
    assert_eq!(keys.kid(), first, "but does not sign yet");

    let steps = keys.rotate_due(t(20 * 3600), DAY, JWT_TTL).unwrap();
    assert!(
        matches!(&steps[..], [KeyStep::Activated { retired, .. }] if *retired == first),
        "{steps:?}"
    );
    assert_ne!(keys.kid(), first, "the next key signs now");
    let retire_at = 20 * 3600;
    let token = keys
        .sign(&id(), &["db".into()], t(retire_at), JWT_TTL)
        .unwrap();
    assert!(keys.validate(&token, "db", t(retire_at)).is_ok());
    assert!(
        keys.validate(&old_token, "db", t(100)).is_ok(),
        "tokens of the retired key still validate while it is published"
    );

    let still = keys.rotate_due(t(retire_at + 300), DAY, JWT_TTL).unwrap();
    assert!(
        still.is_empty(),
        "kept until its last token expired (+skew)"
    );
    let steps = keys.rotate_due(t(retire_at + 360), DAY, JWT_TTL).unwrap();
    assert_eq!(steps, vec![KeyStep::Removed { kid: first.clone() }]);
    assert!(!kids(&keys).contains(&first));
}

#[test]
fn the_set_persists_privately_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = JwtKeys::load_or_create(dir.path(), t(0)).unwrap();
    keys.rotate_due(t(12 * 3600), DAY, JWT_TTL).unwrap();
    let again = JwtKeys::load_or_create(dir.path(), t(12 * 3600 + 1)).unwrap();
    assert_eq!(again.kid(), keys.kid());
    assert_eq!(kids(&again), kids(&keys));
    let mode = std::fs::metadata(dir.path().join(KEYS_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_legacy_single_key_is_adopted_as_the_active_key() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = JwtKey::generate().unwrap();
    std::fs::write(dir.path().join(LEGACY_KEY_FILE), legacy.to_pem().as_bytes()).unwrap();
    let keys = JwtKeys::load_or_create(dir.path(), t(0)).unwrap();
    assert_eq!(keys.kid(), legacy.kid());
    assert!(
        !dir.path().join(LEGACY_KEY_FILE).exists(),
        "one copy of the key remains"
    );
}

#[test]
fn a_corrupt_key_file_is_an_error_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(KEYS_FILE), "{\"format\":1,\"keys\":[]}").unwrap();
    let err = JwtKeys::load_or_create(dir.path(), t(0)).unwrap_err();
    assert!(err.to_string().contains("no active key"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap(),
        "{\"format\":1,\"keys\":[]}"
    );
}
