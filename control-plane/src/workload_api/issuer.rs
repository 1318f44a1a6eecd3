//! Keeps one current X.509-SVID per workload entry and re-mints it after
//! `renew_fraction` of its lifetime (with +-10% jitter so entries don't renew in lockstep).
//! Every change bumps an epoch on a `watch` channel; open `FetchX509SVID` streams wait on
//! it and send the caller's SVIDs again when they changed. Also holds the JWT key.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;

use super::attest::Entry;
use super::jwt::JwtKey;
use super::pem;
use crate::identity::{CaError, CaHandle, Clock, SvidParams, TrustBundle};

/// How long to wait before retrying a failed re-mint.
const RETRY: Duration = Duration::from_secs(5);

/// An SVID ready to put on the wire.
#[derive(Debug)]
pub struct Minted {
    pub spiffe_id: String,
    pub serial_hex: String,
    /// DER certificates, leaf first.
    pub chain_der: Vec<u8>,
    /// DER PKCS#8 key.
    pub key_der: Vec<u8>,
}

/// Lifetimes and the renewal point.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub x509_ttl: Duration,
    pub jwt_ttl: Duration,
    pub renew_fraction: f64,
}

/// Current identities for all entries.
#[derive(Debug)]
pub struct Issuer {
    /// Follows CA rotation: each mint asks for the CA that signs now.
    ca: CaHandle,
    clock: Arc<dyn Clock>,
    pub(crate) jwt: JwtKey,
    pub(crate) lifetimes: Lifetimes,
    svids: RwLock<BTreeMap<String, Arc<Minted>>>,
    epoch: watch::Sender<u64>,
}

impl Issuer {
    /// Mint a first SVID for every entry.
    pub fn new(
        ca: CaHandle,
        clock: Arc<dyn Clock>,
        jwt: JwtKey,
        lifetimes: Lifetimes,
        entries: &[Entry],
    ) -> Result<(Issuer, Vec<Duration>), CaError> {
        let issuer = Issuer {
            ca,
            clock,
            jwt,
            lifetimes,
            svids: RwLock::new(BTreeMap::new()),
            epoch: watch::Sender::new(0),
        };
        let delays = entries
            .iter()
            .map(|e| issuer.remint(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((issuer, delays))
    }

    /// Mint a new SVID for `entry`, publish it, and return how long until the next one.
    pub fn remint(&self, entry: &Entry) -> Result<Duration, CaError> {
        let params = SvidParams {
            id: entry.spiffe_id.clone(),
            ttl: self.lifetimes.x509_ttl,
        };
        let now = self.clock.now();
        let svid = self.ca.active().mint(&params, self.clock.as_ref())?;
        let minted = Minted {
            spiffe_id: svid.id.to_string(),
            serial_hex: svid.serial_hex.clone(),
            chain_der: pem::concat_der(&svid.cert_chain_pem, "CERTIFICATE"),
            key_der: pem::concat_der(&svid.private_key_pem, "PRIVATE KEY"),
        };
        if let Ok(mut map) = self.svids.write() {
            map.insert(entry.name.clone(), Arc::new(minted));
        }
        self.epoch.send_modify(|e| *e += 1);
        let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
        Ok(renew_after(
            now,
            svid.not_after,
            self.lifetimes.renew_fraction,
            jitter,
        ))
    }

    /// Re-mint `entry` forever, starting after `first_delay`. Runs until aborted.
    pub async fn rotate(self: Arc<Self>, entry: Entry, first_delay: Duration) {
        let mut delay = first_delay;
        loop {
            tokio::time::sleep(delay).await;
            delay = match self.remint(&entry) {
                Ok(next) => {
                    tracing::info!(workload = %entry.name, id = %entry.spiffe_id, "re-minted X.509-SVID");
                    next
                }
                Err(err) => {
                    tracing::warn!(workload = %entry.name, %err, "re-minting the X.509-SVID failed; retrying");
                    RETRY
                }
            };
        }
    }

    /// The current SVID of an entry.
    pub fn current(&self, name: &str) -> Option<Arc<Minted>> {
        self.svids.read().ok()?.get(name).cloned()
    }

    /// Changes whenever any SVID is re-minted.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    pub fn bundle(&self) -> TrustBundle {
        self.ca.bundle()
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

/// When to renew: `fraction` of the remaining lifetime after minting, scaled by
/// `1 + 0.1 * jitter` (`jitter` in -1 ..= 1), never less than one second.
pub fn renew_after(
    minted_at: SystemTime,
    not_after: SystemTime,
    fraction: f64,
    jitter: f64,
) -> Duration {
    let life = not_after.duration_since(minted_at).unwrap_or_default();
    let scaled = life.as_secs_f64() * fraction * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0));
    Duration::from_secs_f64(scaled.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_happens_at_the_configured_fraction_of_the_lifetime() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let end = t + Duration::from_secs(3600);
        assert_eq!(renew_after(t, end, 0.5, 0.0), Duration::from_secs(1800));
        assert_eq!(renew_after(t, end, 0.5, 1.0), Duration::from_secs(1980));
        assert_eq!(renew_after(t, end, 0.5, -1.0), Duration::from_secs(1620));
    }

    #[test]
    fn an_expired_svid_is_renewed_after_one_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            renew_after(t, t - Duration::from_secs(5), 0.5, 0.0),
            Duration::from_secs(1)
        );
    }
}
