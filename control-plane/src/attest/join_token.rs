//! Join tokens: one-time-displayed secrets that let a sidecar (VM, local run, demo) prove
//! it is a given workload. `warden token create` prints the token once; the config repo
//! keeps only its SHA-256 (`tokens.yaml`), so every replica reading the repo accepts it
//! and a leaked repo leaks no credential. Tokens expire and can be revoked.
//!
//! Format: `wdn.<id>.<secret>` — `id` (8 hex) names the record for listing and revoking,
//! `secret` is 32 random bytes, base64url.

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::JoinTokenRecord;

const PREFIX: &str = "wdn";

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a Warden join token")]
    Malformed,
    #[error("unknown join token {0}")]
    Unknown(String),
    #[error("join token {0} was revoked")]
    Revoked(String),
    #[error("join token {0} expired")]
    Expired(String),
}

/// A freshly generated token: show `token` once, store only `sha256_hex`.
#[derive(Debug)]
pub struct NewToken {
    pub id: String,
    pub token: Zeroizing<String>,
    pub sha256_hex: String,
}

/// Generate a new random token.
pub fn generate() -> NewToken {
    let id = hex::encode(rand::random::<[u8; 4]>());
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let token = Zeroizing::new(format!("{PREFIX}.{id}.{secret}"));
    let sha256_hex = hex::encode(digest(&token));
    NewToken {
        id,
        token,
        sha256_hex,
    }
}

/// SHA-256 of the whole token text.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Find the record `token` proves, checking hash (in constant time), revocation and expiry.
pub(super) fn verify<'a>(
    token: &str,
    records: &'a [JoinTokenRecord],
    now: SystemTime,
) -> Result<&'a JoinTokenRecord, TokenError> {
    let mut parts = token.splitn(3, '.');
    let (Some(PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    if id.len() != 8 || secret.is_empty() {
        return Err(TokenError::Malformed);
    }
    let record = records
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| TokenError::Unknown(id.to_owned()))?;
    if !constant_time_eq(&digest(token), &record.sha256) {
        return Err(TokenError::Unknown(id.to_owned()));
    }
    if record.revoked {
        return Err(TokenError::Revoked(id.to_owned()));
    }
    if now >= record.expires {
        return Err(TokenError::Expired(id.to_owned()));
    }
    Ok(record)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(t: &NewToken, expires: SystemTime) -> JoinTokenRecord {
        JoinTokenRecord {
            id: t.id.clone(),
            workload: "frontend".into(),
            sha256: digest(&t.token),
            expires,
            revoked: false,
        }
    }

    #[test]
    fn a_fresh_token_verifies_and_names_its_workload() {
        let t = generate();
        let now = SystemTime::now();
        let records = [record(&t, now + Duration::from_secs(60))];
        assert_eq!(
            verify(&t.token, &records, now).unwrap().workload,
            "frontend"
        );
    }

    #[test]
    fn a_token_with_the_right_id_but_wrong_secret_is_unknown() {
        let t = generate();
        let now = SystemTime::now();
        let records = [record(&t, now + Duration::from_secs(60))];
        let forged = format!("wdn.{}.AAAA", t.id);
        assert_eq!(
            verify(&forged, &records, now).unwrap_err(),
            TokenError::Unknown(t.id.clone())
        );
    }

    #[test]
    fn expired_and_revoked_tokens_are_refused() {
        let t = generate();
        let now = SystemTime::now();
        let mut records = [record(&t, now)];
        assert_eq!(
            verify(&t.token, &records, now).unwrap_err(),
            TokenError::Expired(t.id.clone())
        );
        records[0].expires = now + Duration::from_secs(60);
        records[0].revoked = true;
        assert_eq!(
            verify(&t.token, &records, now).unwrap_err(),
            TokenError::Revoked(t.id.clone())
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in ["", "wdn", "wdn.x.y", "abc.12345678.s", "wdn.12345678."] {
            assert_eq!(
                verify(bad, &[], SystemTime::now()).unwrap_err(),
                TokenError::Malformed,
                "{bad}"
            );
        }
    }
}
