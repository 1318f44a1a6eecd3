//! Writing `tokens.yaml` for `warden token create|revoke`: read the records, change one,
//! write the whole file back atomically (temp file + rename). Only hashes are stored.

use std::path::Path;
use std::time::SystemTime;

use super::raw::{RawToken, RawTokens};
use super::TOKENS_FILE;

const HEADER: &str =
    "# Join tokens for sidecar attestation: SHA-256 hashes only, never the tokens.\n\
# Managed by `warden token create|revoke`; safe to commit.\n";

/// Reading or writing tokens.yaml failed.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {reason}; fix it (`warden validate` shows where) and retry")]
    Invalid { path: String, reason: String },
    #[error("no token with id {0}")]
    NoSuchToken(String),
    /// The random id is already taken (1 in 2^32 per record): generate another token.
    #[error("a token with id {0} already exists")]
    IdTaken(String),
}

/// A record to add.
#[derive(Debug)]
pub struct NewRecord<'a> {
    pub id: &'a str,
    pub workload: &'a str,
    pub sha256_hex: &'a str,
    pub expires: SystemTime,
}

fn load(dir: &Path) -> Result<RawTokens, TokensFileError> {
    let path = dir.join(TOKENS_FILE);
    match crate::fsutil::read_text(&path) {
        Ok(text) => serde_yaml::from_str(&text).map_err(|e| TokensFileError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RawTokens::default()),
        Err(source) => Err(TokensFileError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn save(dir: &Path, tokens: &RawTokens) -> Result<(), TokensFileError> {
    let path = dir.join(TOKENS_FILE);
    let io = |source| TokensFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let body = serde_yaml::to_string(tokens).map_err(|e| io(std::io::Error::other(e)))?;
    crate::fsutil::write_atomic(&path, format!("{HEADER}{body}").as_bytes(), 0o644).map_err(io)
}

/// Append a record.
pub fn add(dir: &Path, record: &NewRecord<'_>) -> Result<(), TokensFileError> {
    let mut tokens = load(dir)?;
    // Ids name records for lookup and revocation; a second record with the same id
    // could never verify, and revoking the id would revoke only the first.
    if tokens.tokens.iter().any(|t| t.id == record.id) {
        return Err(TokensFileError::IdTaken(record.id.to_owned()));
    }
    let expires = time::OffsetDateTime::from(record.expires)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    tokens.tokens.push(RawToken {
        id: record.id.to_owned(),
        workload: record.workload.to_owned(),
        sha256: record.sha256_hex.to_owned(),
        expires,
        revoked: false,
    });
    save(dir, &tokens)
}

/// Mark a record revoked (it stays listed, so the revocation is visible in git history).
pub fn revoke(dir: &Path, id: &str) -> Result<(), TokensFileError> {
    let mut tokens = load(dir)?;
    let record = tokens
        .tokens
        .iter_mut()
        .find(|t| t.id == id)
        .ok_or_else(|| TokensFileError::NoSuchToken(id.to_owned()))?;
    record.revoked = true;
    save(dir, &tokens)
}
