//! The CA's state directory: one JSON file (`ca.json`, mode 0600) holding the current CA
//! (key and certificate), an optional prepared next CA and the retired CAs still in the
//! trust bundle, written atomically (temp file in the same directory, fsync, rename, fsync
//! of the directory) so a crash never leaves a half-written CA behind.
//!
//! Loading never "repairs" anything: a corrupt file is an error for a person to look at,
//! because silently minting a new CA would break every workload's trust.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the CA state inside the state directory.
pub(crate) const STATE_FILE: &str = "ca.json";
const FORMAT_VERSION: u32 = 1;

/// Reading or writing the state directory failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid Warden CA state file ({reason}); it was left untouched — restore it from backup, or move it away to start a new CA (every workload must then trust the new bundle)")]
    Corrupt { path: PathBuf, reason: String },
}

/// One CA generation: its private key and certificate, plus rotation bookkeeping.
/// Fields added after format 1 default, so a v1 `ca.json` loads unchanged.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CaSlot {
    /// PKCS#8 PEM private key.
    pub(crate) key_pem: String,
    /// PEM certificate of this CA (self-signed root, or intermediate signed upstream).
    pub(crate) cert_pem: String,
    /// When this CA was prepared (published in the bundle), seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prepared_at_unix: Option<u64>,
    /// When this CA started signing, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) activated_at_unix: Option<u64>,
    /// The bundle sequence from which this CA's trust anchor is in the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) published_sequence: Option<u64>,
    /// An upper bound of the latest `notAfter` of any SVID this CA signed (written before
    /// such an SVID is handed out, with some lead so it is not written on every mint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signed_until_unix: Option<u64>,
}

impl CaSlot {
    pub(crate) fn new(key_pem: String, cert_pem: String) -> Self {
        CaSlot {
            key_pem,
            cert_pem,
            prepared_at_unix: None,
            activated_at_unix: None,
            published_sequence: None,
            signed_until_unix: None,
        }
    }
}

/// A CA that no longer signs but stays in the trust bundle until the last SVID it signed
/// has expired. Its private key is dropped on retirement: it will never sign again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetiredSlot {
    /// PEM certificate of the retired CA.
    pub(crate) cert_pem: String,
    /// When it stopped signing.
    pub(crate) retired_at_unix: u64,
    /// When it may leave the bundle: the latest `notAfter` of any SVID it signed.
    pub(crate) retire_after_unix: u64,
}

impl std::fmt::Debug for CaSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSlot")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Everything persisted about the CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaState {
    pub(crate) format: u32,
    pub(crate) trust_domain: String,
    pub(crate) current: CaSlot,
    /// A prepared CA: in the bundle, not signing yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<CaSlot>,
    /// CAs that stopped signing and are still in the bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) retired: Vec<RetiredSlot>,
    /// Sequence of the trust bundle; increases whenever its set of authorities changes.
    #[serde(default = "first_sequence")]
    pub(crate) bundle_sequence: u64,
}

fn first_sequence() -> u64 {
    1
}

impl CaState {
    pub(crate) fn new(trust_domain: String, current: CaSlot) -> Self {
        CaState {
            format: FORMAT_VERSION,
            trust_domain,
            current,
            next: None,
            retired: Vec::new(),
            bundle_sequence: first_sequence(),
        }
    }
}

/// Load the state, `Ok(None)` when the directory holds none yet.
pub(crate) fn load(dir: &Path) -> Result<Option<CaState>, StateError> {
    let path = dir.join(STATE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let state: CaState = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if state.format != FORMAT_VERSION {
        return Err(StateError::Corrupt {
            path,
            reason: format!(
                "format {} is not the supported {FORMAT_VERSION}",
                state.format
            ),
        });
    }
    Ok(Some(state))
}

/// Persist the state atomically with mode 0600 (directory 0700).
pub(crate) fn save(dir: &Path, state: &CaState) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    let werr = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    crate::fsutil::create_private_dir(dir).map_err(werr)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| werr(std::io::Error::other(e)))?;
    crate::fsutil::write_atomic(&path, &json, 0o600).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CaState {
        CaState::new(
            "example.org".into(),
            CaSlot::new("KEY".into(), "CERT".into()),
        )
    }

    #[test]
    fn a_version_1_file_without_rotation_fields_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let v1 =
            r#"{"format":1,"trust_domain":"example.org","current":{"key_pem":"K","cert_pem":"C"}}"#;
        fs::write(dir.path().join(STATE_FILE), v1).unwrap();
        let st = load(dir.path()).unwrap().unwrap();
        assert!(st.next.is_none() && st.retired.is_empty());
        assert_eq!(st.bundle_sequence, 1);
        assert_eq!(st.current.signed_until_unix, None);
    }

    #[test]
    fn next_and_retired_slots_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = sample();
        let mut next = CaSlot::new("K2".into(), "C2".into());
        next.prepared_at_unix = Some(10);
        next.published_sequence = Some(2);
        st.next = Some(next);
        st.retired.push(RetiredSlot {
            cert_pem: "C0".into(),
            retired_at_unix: 5,
            retire_after_unix: 50,
        });
        st.bundle_sequence = 2;
        save(dir.path(), &st).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back.next.unwrap().published_sequence, Some(2));
        assert_eq!(back.retired[0].retire_after_unix, 50);
        assert_eq!(back.bundle_sequence, 2);
    }

    #[test]
    fn saved_state_loads_back_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        save(&sub, &sample()).unwrap();
        let back = load(&sub).unwrap().unwrap();
        assert_eq!(back.current.cert_pem, "CERT");
        let mode = fs::metadata(sub.join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(&sub).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn missing_state_is_none_and_corrupt_state_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join(STATE_FILE)).unwrap(),
            "{not json",
            "a corrupt file is never replaced"
        );
    }
}
