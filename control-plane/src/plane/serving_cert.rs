//! Keeps the xDS serving certificate fresh by the sidecar rule of `identity::renewal`:
//! re-minted at 45–55 % of its life counted from issuance (not from the backdated
//! `notBefore`), a failed mint retried after 1 s, 2 s, 4 s … capped at 30 s while the
//! current certificate keeps serving. The TLS side (what "install" means) is the
//! caller's: this module only decides when.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::identity::renewal::{renew_at, Failing};
use crate::identity::{Clock, Svid};

/// What the renewal point of the certificate being served depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Its SPIFFE ID (the subject that spreads the renewal point).
    pub id: String,
    /// Its serial.
    pub serial_hex: String,
    /// Start of validity (backdated).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl From<&Svid> for Served {
    fn from(s: &Svid) -> Self {
        Served {
            id: s.id.to_string(),
            serial_hex: s.serial_hex.clone(),
            not_before: s.not_before,
            not_after: s.not_after,
        }
    }
}

/// When the next attempt is made: the served certificate's renewal point, or the retry
/// time of a failed attempt.
pub fn next_attempt(served: &Served, failing: Option<Failing>) -> SystemTime {
    match failing {
        Some(f) => f.retry_at,
        None => renew_at(
            &served.id,
            &served.serial_hex,
            served.not_before,
            served.not_after,
        ),
    }
}

/// Renews `served` for ever: at each due time calls `renew`, which mints and installs a
/// new certificate and returns it. Runs until dropped.
pub async fn renew_forever<E: std::fmt::Display>(
    mut served: Served,
    clock: Arc<dyn Clock>,
    mut renew: impl FnMut() -> Result<Svid, E>,
) {
    let mut failing: Option<Failing> = None;
    loop {
        let due = next_attempt(&served, failing);
        let wait = due.duration_since(clock.now()).unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
        match renew() {
            Ok(svid) => {
                tracing::info!(serial = %svid.serial_hex, id = %svid.id, "xDS serving certificate renewed");
                served = Served::from(&svid);
                failing = None;
            }
            Err(e) => {
                let f = Failing::after_failure(failing, clock.now());
                tracing::error!(
                    failures = f.failures,
                    retry_in_s = f
                        .retry_at
                        .duration_since(clock.now())
                        .unwrap_or_default()
                        .as_secs(),
                    "xDS serving certificate renewal failed, the current one keeps serving: {e}"
                );
                failing = Some(f);
            }
        }
    }
}

#[cfg(test)]
#[path = "serving_cert_tests.rs"]
mod tests;
