//! `server.admin_token_file`: the operator token for the mutating admin routes. A
//! non-loopback `admin_listen` (e.g. `0.0.0.0:18001` on Kubernetes, for the probes)
//! without it is refused: anyone reaching the pod IP could otherwise rotate or retire
//! the CA. The token file must be readable and hold a token of at least 16 characters.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::ctx::Ctx;
use super::raw::RawWarden;
use crate::admin::auth::{read_token, MIN_TOKEN_LEN};

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
    if let Err(e) = read_token(&file) {
        ctx.error(
            "server.admin_token_file",
            format!("{e} (at least {MIN_TOKEN_LEN} characters)"),
            Some(HINT.into()),
        );
        return None;
    }
    Some(file)
}
