//! The trust domain's JWT signing keys, rotated like the X.509 CA (SPIRE's scheme): a key
//! signs for its lifetime; at 1/2 of it a next key is *prepared* (published in the JWT
//! bundle, not signing yet) so validators holding a cached bundle learn it early; at 5/6
//! the next key is *activated* (signs from then on) and the old one is *retired*: it
//! stays in the bundle until every token it signed has expired (retirement + the longest
//! JWT-SVID lifetime), then leaves.
//!
//! Persisted as `jwt-keys.json` (mode 0600, atomic writes) in the CA state directory; a
//! `jwt-signing-key.pem` from an older release is adopted as the active key. A file that
//! cannot be read is an error and is never replaced.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::jwt::{self, unix, JwtError, JwtKey, Validated};
use crate::identity::renewal;
use crate::identity::SpiffeId;

/// File name of the key set inside the CA state directory.
pub const KEYS_FILE: &str = "jwt-keys.json";
/// The single-key file of earlier releases, adopted on first start.
pub const LEGACY_KEY_FILE: &str = "jwt-signing-key.pem";
const FORMAT: u32 = 1;

/// One key and where it is in its life (UNIX seconds).
#[derive(Debug)]
struct Slot {
    key: JwtKey,
    /// Published in the bundle since.
    published: u64,
    /// Signing since (`None`: prepared, not yet signing).
    activated: Option<u64>,
    /// Stopped signing at (`Some`: retired, leaves the bundle later).
    retired: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSlot {
    key_pem: String,
    published: u64,
    activated: Option<u64>,
    retired: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: u32,
    keys: Vec<StoredSlot>,
}

/// What a rotation step did, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStep {
    Prepared { kid: String },
    Activated { kid: String, retired: String },
    Removed { kid: String },
}

/// The rotating key set.
#[derive(Debug)]
pub struct JwtKeys {
    path: PathBuf,
    slots: Vec<Slot>,
}

impl JwtKeys {
    /// Load the set from `state_dir`, adopting a legacy single key, or create one.
    pub fn load_or_create(state_dir: &Path, now: SystemTime) -> Result<JwtKeys, JwtError> {
        let path = state_dir.join(KEYS_FILE);
        let bad = |reason: String| JwtError::BadKey {
            path: path.clone(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let stored: Stored = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
                if stored.format != FORMAT {
                    return Err(bad(format!("format {} is not {FORMAT}", stored.format)));
                }
                let slots = stored
                    .keys
                    .into_iter()
                    .map(|s| {
                        let key = JwtKey::from_pem(&s.key_pem)
                            .ok_or_else(|| bad("a key is not an ES256 PKCS#8 key".into()))?;
                        Ok(Slot {
                            key,
                            published: s.published,
                            activated: s.activated,
                            retired: s.retired,
                        })
                    })
                    .collect::<Result<Vec<_>, JwtError>>()?;
                let set = JwtKeys {
                    path: path.clone(),
                    slots,
                };
                if set.active().is_none() {
                    return Err(bad("no active key".into()));
                }
                Ok(set)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let legacy = state_dir.join(LEGACY_KEY_FILE);
                let key = match std::fs::read_to_string(&legacy) {
                    Ok(text) => JwtKey::from_pem(&text).ok_or_else(|| JwtError::BadKey {
                        path: legacy.clone(),
                        reason: "not an ES256 PKCS#8 key".into(),
                    })?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => JwtKey::generate()?,
                    Err(source) => {
                        return Err(JwtError::Read {
                            path: legacy,
                            source,
                        })
                    }
                };
                let t = unix(now);
                let set = JwtKeys {
                    path,
                    slots: vec![Slot {
                        key,
                        published: t,
                        activated: Some(t),
                        retired: None,
                    }],
                };
                set.save()?;
                let _ = std::fs::remove_file(state_dir.join(LEGACY_KEY_FILE));
                Ok(set)
            }
            Err(source) => Err(JwtError::Read { path, source }),
        }
    }

    fn save(&self) -> Result<(), JwtError> {
        let werr = |source| JwtError::Write {
            path: self.path.clone(),
            source,
        };
        let stored = Stored {
            format: FORMAT,
            keys: self
                .slots
                .iter()
                .map(|s| StoredSlot {
                    key_pem: s.key.to_pem().to_string(),
                    published: s.published,
                    activated: s.activated,
                    retired: s.retired,
                })
                .collect(),
        };
        let text = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(&stored).map_err(|e| werr(std::io::Error::other(e)))?,
        );
        if let Some(dir) = self.path.parent() {
            crate::fsutil::create_private_dir(dir).map_err(werr)?;
        }
        crate::fsutil::write_atomic(&self.path, &text, 0o600).map_err(werr)
    }

    /// The signing key and when it started signing.
    fn active(&self) -> Option<(&JwtKey, u64)> {
        self.slots
            .iter()
            .find_map(|s| match (s.activated, s.retired) {
                (Some(t), None) => Some((&s.key, t)),
                _ => None,
            })
    }

    /// The key id new tokens carry.
    pub fn kid(&self) -> &str {
        self.active().map(|(k, _)| k.kid()).unwrap_or_default()
    }

    /// Sign a JWT-SVID with the active key.
    pub fn sign(
        &self,
        id: &SpiffeId,
        audience: &[String],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, JwtError> {
        let (key, _) = self.active().ok_or(JwtError::Sign)?;
        key.sign(id, audience, now, ttl)
    }

    /// Validate against every published key.
    pub fn validate(
        &self,
        token: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Validated, JwtError> {
        jwt::validate(token, audience, now, |kid| {
            self.slots.iter().map(|s| &s.key).find(|k| k.kid() == kid)
        })
    }

    /// The JWT bundle (SPIFFE bundle format, JWKS JSON) with every published key.
    pub fn jwks_json(&self) -> String {
        let keys: Vec<_> = self.slots.iter().map(|s| s.key.jwk()).collect();
        json!({ "keys": keys, "spiffe_refresh_hint": 300 }).to_string()
    }

    /// Take every rotation step due at `now` for keys living `key_ttl` that sign tokens of
    /// at most `jwt_ttl`; persists and returns the steps (empty when nothing was due).
    pub fn rotate_due(
        &mut self,
        now: SystemTime,
        key_ttl: Duration,
        jwt_ttl: Duration,
    ) -> Result<Vec<KeyStep>, JwtError> {
        let t = unix(now);
        let life = key_ttl.as_secs();
        let mut steps = Vec::new();
        let Some((_, since)) = self.active() else {
            return Ok(steps);
        };
        let prepared = self.slots.iter().position(|s| s.activated.is_none());
        if prepared.is_none() && t >= prepare_at(since, life) {
            let key = JwtKey::generate()?;
            steps.push(KeyStep::Prepared {
                kid: key.kid().to_string(),
            });
            self.slots.push(Slot {
                key,
                published: t,
                activated: None,
                retired: None,
            });
        }
        let prepared = self.slots.iter().position(|s| s.activated.is_none());
        if let Some(next) = prepared.filter(|_| t >= since + life * 5 / 6) {
            let mut retired = String::new();
            for s in self.slots.iter_mut() {
                if s.activated.is_some() && s.retired.is_none() {
                    s.retired = Some(t);
                    retired = s.key.kid().to_string();
                }
            }
            self.slots[next].activated = Some(t);
            steps.push(KeyStep::Activated {
                kid: self.slots[next].key.kid().to_string(),
                retired,
            });
        }
        let grace = jwt_ttl.as_secs() + 60; // tokens' lifetime + clock skew
        self.slots.retain(|s| match s.retired {
            Some(r) if t >= r + grace => {
                steps.push(KeyStep::Removed {
                    kid: s.key.kid().to_string(),
                });
                false
            }
            _ => true,
        });
        if !steps.is_empty() {
            self.save()?;
        }
        Ok(steps)
    }

    /// Number of published keys (for status and tests).
    pub fn published(&self) -> usize {
        self.slots.len()
    }
}

/// When the next key is prepared (UNIX seconds): the renewal point of the active key's
/// life, at one half and without spread (there is one key per trust domain, nothing to
/// keep out of step; validators need the next key in the bundle early).
fn prepare_at(since: u64, life: u64) -> u64 {
    let at = |secs: u64| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs));
    match (at(since), at(since.saturating_add(life))) {
        (Some(from), Some(to)) => renewal::point(from, to, 500)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(since, |d| d.as_secs()),
        _ => since.saturating_add(life / 2),
    }
}

#[cfg(test)]
#[path = "jwt_keys_tests.rs"]
mod tests;
