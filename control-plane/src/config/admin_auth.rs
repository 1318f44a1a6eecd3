//! `server.admin_token_file`: the operator token for the mutating admin routes. A
//! non-loopback `admin_listen` (e.g. `0.0.0.0:18001` on Kubernetes, for the probes)
//! without it is refused: anyone reaching the pod IP could otherwise rotate or retire
//! the CA. The token file must be readable and hold a token of at least 16 characters.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::ctx::Ctx;
use super::raw::RawWarden;

/// Largest operator token file read (a token is a few dozen bytes).
const MAX_TOKEN_FILE: u64 = 4096;
/// Shortest operator token accepted.
pub const MIN_OPERATOR_TOKEN_LEN: usize = 16;

/// Why an operator token file cannot be used (names the file, never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct OperatorTokenError {
    file: String,
    reason: String,
}

/// The operator token in `file` (trimmed; Secret files end in a newline), refused when
/// unreadable, larger than 4 KiB or shorter than [`MIN_OPERATOR_TOKEN_LEN`] characters.
pub fn read_operator_token(file: &Path) -> Result<String, OperatorTokenError> {
    let refused = |reason: String| OperatorTokenError {
        file: file.display().to_string(),
        reason,
    };
    let len = std::fs::metadata(file)
        .map_err(|e| refused(e.to_string()))?
        .len();
    if len > MAX_TOKEN_FILE {
        return Err(refused(format!("larger than {MAX_TOKEN_FILE} bytes")));
    }
    let text = std::fs::read_to_string(file).map_err(|e| refused(e.to_string()))?;
    let token = text.trim();
    if token.len() < MIN_OPERATOR_TOKEN_LEN {
        return Err(refused(format!(
            "token shorter than {MIN_OPERATOR_TOKEN_LEN} characters"
        )));
    }
    Ok(token.to_owned())
}

const HINT: &str = "e.g. `head -c 32 /dev/urandom | base64 > admin-token` (on Kubernetes a Secret mounted as a file); `warden ca` sends it with --admin-token-file or WARDEN_ADMIN_TOKEN";

pub(super) fn admin_token_file(
    dir: &Path,
    raw: &RawWarden,
    admin_listen: SocketAddr,
    ctx: &mut Ctx<'_, RawWarden>,
) -> Option<PathBuf> {
    let Some(name) = raw.server.admin_token_file.as_deref() else {
        if !admin_listen.ip().is_loopback() {
            ctx.error(
                "server.admin_listen",
                format!("admin_listen {admin_listen} is not loopback, but the mutating admin endpoints (POST /ca/*) have no authentication"),
                Some(format!("set server.admin_token_file ({HINT}), or keep admin_listen on 127.0.0.1")),
            );
        }
        return None;
    };
    let file = dir.join(name);
    if let Err(e) = read_operator_token(&file) {
        ctx.error(
            "server.admin_token_file",
            format!("the operator token file cannot be used: {e} (at least {MIN_OPERATOR_TOKEN_LEN} characters)"),
            Some(HINT.into()),
        );
        return None;
    }
    Some(file)
}
