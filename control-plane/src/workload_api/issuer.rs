//! Keeps one current X.509-SVID per workload entry, re-minted by the sidecar rule of
//! `identity::renewal` (at `renew_fraction` of its life counted from issuance, spread
//! ±10 % of that per entry and serial; failed re-mints retried with capped backoff), and
//! follows the
//! control plane: a CA rotation (new signer or a changed trust bundle) and a reloaded
//! `workload-api.yaml` (entries added, changed or removed) take effect on the next
//! [`Issuer::tick`]. Every visible change bumps an epoch on a `watch` channel; open
//! streams wait on it and send again when what they show changed. Also holds the JWT key.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::attest::{Caller, Entry};
use super::jwt::{JwtError, Validated};
use super::jwt_keys::JwtKeys;
use crate::config::Config;
use crate::identity::pem;
use crate::identity::renewal::{backoff, Rule};
use crate::identity::{Ca, CaError, Clock, Svid, SvidParams, TrustBundle};

/// The soonest a renewal is scheduled after minting (an SVID already past its renewal
/// point, e.g. cut short by the CA's own expiry, must not spin).
const MIN_RENEWAL_WAIT: Duration = Duration::from_secs(1);

/// Where the Workload API gets its signer, trust bundle and config: in `warden serve` the
/// control plane (whose active CA and bundle change when the CA rotates, and whose config
/// changes on reload); standalone, one fixed CA.
pub trait IdentitySource: Send + Sync + std::fmt::Debug + 'static {
    /// The CA that signs new SVIDs now.
    fn signer(&self) -> Arc<Ca>;
    /// Every authority workloads must trust now (current, next and retiring CAs).
    fn bundle(&self) -> TrustBundle;
    /// The config currently served.
    fn config(&self) -> Arc<Config>;
    /// Bundles of federated trust domains (none by default).
    fn federated(&self) -> Arc<Vec<crate::identity::ForeignBundle>> {
        Arc::default()
    }

    /// Where issued SVIDs are recorded (none by default).
    fn audit(&self) -> crate::audit::AuditSink {
        crate::audit::AuditSink::disabled()
    }
}

/// A source that never changes: one CA, one config (tests, embedding).
#[derive(Debug)]
pub struct FixedSource {
    pub ca: Arc<Ca>,
    pub config: Arc<Config>,
}

impl IdentitySource for FixedSource {
    fn signer(&self) -> Arc<Ca> {
        self.ca.clone()
    }
    fn bundle(&self) -> TrustBundle {
        self.ca.bundle()
    }
    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }
}

/// An SVID ready to put on the wire.
#[derive(Debug)]
pub struct Minted {
    pub spiffe_id: String,
    pub serial_hex: String,
    /// DER certificates, leaf first.
    pub chain_der: Vec<u8>,
    /// DER PKCS#8 key.
    pub key_der: Vec<u8>,
    pub not_after: SystemTime,
}

/// Lifetimes and the renewal point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifetimes {
    pub x509_ttl: Duration,
    pub jwt_ttl: Duration,
    pub renew_fraction: f64,
    /// How long a JWT signing key signs before the next one takes over.
    pub jwt_key_ttl: Duration,
}

/// One entry's current SVID and when to touch it next.
#[derive(Debug, Clone)]
struct Slot {
    entry: Entry,
    svid: Arc<Minted>,
    /// Re-mint at or after this time (renewal point, or the next retry).
    due: SystemTime,
    failures: u32,
}

#[derive(Debug)]
struct State {
    lifetimes: Lifetimes,
    slots: BTreeMap<String, Slot>,
    bundle: TrustBundle,
    signer: Arc<Ca>,
    federated: Arc<Vec<crate::identity::ForeignBundle>>,
}

/// Current identities for all entries.
#[derive(Debug)]
pub struct Issuer {
    source: Arc<dyn IdentitySource>,
    clock: Arc<dyn Clock>,
    jwt: RwLock<JwtKeys>,
    state: RwLock<State>,
    epoch: watch::Sender<u64>,
}

impl Issuer {
    /// Mint a first SVID for every entry; fails if any cannot be minted.
    pub fn new(
        source: Arc<dyn IdentitySource>,
        clock: Arc<dyn Clock>,
        jwt: JwtKeys,
        lifetimes: Lifetimes,
        entries: &[Entry],
    ) -> Result<Issuer, CaError> {
        let signer = source.signer();
        let now = clock.now();
        let mut slots = BTreeMap::new();
        for e in entries {
            let (svid, due) = mint(&signer, clock.as_ref(), e, &lifetimes, now)?;
            source.audit().workload_x509(e.spiffe_id.as_str(), &e.name);
            slots.insert(e.name.clone(), slot(e, svid, due));
        }
        let state = State {
            lifetimes,
            slots,
            bundle: source.bundle(),
            signer,
            federated: source.federated(),
        };
        Ok(Issuer {
            source,
            clock,
            jwt: RwLock::new(jwt),
            state: RwLock::new(state),
            epoch: watch::Sender::new(0),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the entries and lifetimes (a reloaded `workload-api.yaml`): new entries and
    /// entries whose SPIFFE ID changed are minted now, removed ones are dropped, others keep
    /// their SVID. Open streams re-check which entries their caller still matches.
    pub fn set_entries(&self, entries: &[Entry], lifetimes: Lifetimes) {
        let now = self.clock.now();
        let mut st = self.write();
        let ttl_changed = st.lifetimes.x509_ttl != lifetimes.x509_ttl;
        st.lifetimes = lifetimes;
        let mut slots = BTreeMap::new();
        for e in entries {
            let keep = st
                .slots
                .get(&e.name)
                .filter(|s| s.svid.spiffe_id == e.spiffe_id.as_str() && !ttl_changed);
            let next = match keep {
                Some(s) => Slot {
                    entry: e.clone(),
                    ..s.clone()
                },
                None => match mint(&st.signer, self.clock.as_ref(), e, &lifetimes, now) {
                    Ok((svid, due)) => {
                        self.source
                            .audit()
                            .workload_x509(e.spiffe_id.as_str(), &e.name);
                        slot(e, svid, due)
                    }
                    Err(err) => {
                        tracing::error!(workload = %e.name, %err, "minting an X.509-SVID for a reloaded entry failed; it is not served until a retry succeeds");
                        continue;
                    }
                },
            };
            slots.insert(e.name.clone(), next);
        }
        st.slots = slots;
        drop(st);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Follow the source and the clock: adopt a changed bundle, re-mint every SVID when
    /// the signing CA changed (so the old CA can retire sooner), re-mint due SVIDs (a
    /// failure keeps the still-valid SVID and retries with capped backoff). Returns the
    /// number of SVIDs minted; bumps the epoch when anything visible changed.
    pub fn tick(&self) -> usize {
        let now = self.clock.now();
        let (bundle, signer) = (self.source.bundle(), self.source.signer());
        let mut st = self.write();
        let mut changed = false;
        if st.bundle.x509_authorities_der != bundle.x509_authorities_der {
            tracing::info!(
                authorities = bundle.x509_authorities_der.len(),
                "trust bundle changed; pushing it to Workload API streams"
            );
            st.bundle = bundle;
            changed = true;
        }
        let federated = self.source.federated();
        if st.federated != federated {
            tracing::info!(
                trust_domains = federated.len(),
                "federated bundles changed; pushing them to Workload API streams"
            );
            st.federated = federated;
            changed = true;
        }
        let new_signer = !Arc::ptr_eq(&st.signer, &signer);
        if new_signer {
            st.signer = signer;
        }
        let lifetimes = st.lifetimes;
        let signer = st.signer.clone();
        let mut minted = 0;
        for slot in st.slots.values_mut() {
            if !new_signer && slot.due > now {
                continue;
            }
            match mint(&signer, self.clock.as_ref(), &slot.entry, &lifetimes, now) {
                Ok((svid, due)) => {
                    tracing::info!(workload = %slot.entry.name, id = %slot.entry.spiffe_id, serial = %svid.serial_hex, "re-minted X.509-SVID");
                    self.source
                        .audit()
                        .workload_x509(slot.entry.spiffe_id.as_str(), &slot.entry.name);
                    *slot = Slot {
                        svid,
                        due,
                        failures: 0,
                        entry: slot.entry.clone(),
                    };
                    minted += 1;
                    changed = true;
                }
                Err(err) => {
                    slot.failures += 1;
                    let wait = backoff(slot.failures);
                    slot.due = now + wait;
                    let left = slot.svid.not_after.duration_since(now).unwrap_or_default();
                    tracing::warn!(workload = %slot.entry.name, %err, retry_in_s = wait.as_secs(), expires_in_s = left.as_secs(), "re-minting the X.509-SVID failed; the current one is kept");
                }
            }
        }
        drop(st);
        changed |= self.rotate_jwt_keys(now, &lifetimes);
        if changed {
            self.epoch.send_modify(|e| *e += 1);
        }
        minted
    }

    /// JWT key rotation steps due now; `true` when the JWT bundle changed.
    fn rotate_jwt_keys(&self, now: SystemTime, lifetimes: &Lifetimes) -> bool {
        let mut keys = self.jwt.write().unwrap_or_else(|p| p.into_inner());
        match keys.rotate_due(now, lifetimes.jwt_key_ttl, lifetimes.jwt_ttl) {
            Ok(steps) => {
                for step in &steps {
                    tracing::info!(?step, "JWT signing key rotation");
                }
                !steps.is_empty()
            }
            Err(err) => {
                tracing::error!(%err, "JWT key rotation failed; the current key keeps signing");
                false
            }
        }
    }

    /// Sign a JWT-SVID with the active key.
    pub fn sign_jwt(
        &self,
        id: &crate::identity::SpiffeId,
        audience: &[String],
    ) -> Result<String, JwtError> {
        let ttl = self.lifetimes().jwt_ttl;
        let keys = self.jwt.read().unwrap_or_else(|p| p.into_inner());
        keys.sign(id, audience, self.clock.now(), ttl)
    }

    /// Validate a JWT-SVID against every published key.
    pub fn validate_jwt(&self, token: &str, audience: &str) -> Result<Validated, JwtError> {
        let keys = self.jwt.read().unwrap_or_else(|p| p.into_inner());
        keys.validate(token, audience, self.clock.now())
    }

    /// The JWT bundle (JWKS JSON).
    pub fn jwks_json(&self) -> String {
        self.jwt
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .jwks_json()
    }

    /// The entries `caller` matches now (empty when none).
    pub fn entries_for(&self, caller: &Caller) -> Vec<Entry> {
        let st = self.read();
        let entries: Vec<Entry> = st.slots.values().map(|s| s.entry.clone()).collect();
        super::attest::matching(&entries, caller)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The current SVID of an entry; `None` once it has expired (a failed re-mint keeps
    /// the old SVID, but an SVID whose `notAfter` is past is never handed out).
    pub fn current(&self, name: &str) -> Option<Arc<Minted>> {
        let now = self.now();
        self.read()
            .slots
            .get(name)
            .map(|s| s.svid.clone())
            .filter(|m| m.not_after > now)
    }

    /// Changes whenever any SVID, the bundle or the entries change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    pub fn bundle(&self) -> TrustBundle {
        self.read().bundle.clone()
    }

    /// The federated bundles workloads get with their own.
    pub fn federated(&self) -> Arc<Vec<crate::identity::ForeignBundle>> {
        self.read().federated.clone()
    }

    pub fn lifetimes(&self) -> Lifetimes {
        self.read().lifetimes
    }

    /// Where issued SVIDs are recorded.
    pub(crate) fn audit(&self) -> crate::audit::AuditSink {
        self.source.audit()
    }

    /// The config of the identity source (for reloads).
    pub fn config(&self) -> Arc<Config> {
        self.source.config()
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

fn slot(entry: &Entry, svid: Arc<Minted>, due: SystemTime) -> Slot {
    Slot {
        entry: entry.clone(),
        svid,
        due,
        failures: 0,
    }
}

/// Mint for `entry` and say when to renew it.
fn mint(
    ca: &Ca,
    clock: &dyn Clock,
    entry: &Entry,
    lifetimes: &Lifetimes,
    now: SystemTime,
) -> Result<(Arc<Minted>, SystemTime), CaError> {
    let params = SvidParams {
        id: entry.spiffe_id.clone(),
        ttl: lifetimes.x509_ttl,
    };
    let svid = ca.mint(&params, clock)?;
    let due = renewal_due(&entry.name, &svid, lifetimes.renew_fraction, now);
    let minted = Minted {
        spiffe_id: svid.id.to_string(),
        serial_hex: svid.serial_hex.clone(),
        chain_der: pem_der(pem::certs(&svid.cert_chain_pem).map(|c| c.concat()))?,
        key_der: pem_der(pem::pkcs8_key(&svid.private_key_pem).map(|k| k.to_vec()))?,
        not_after: svid.not_after,
    };
    Ok((Arc::new(minted), due))
}

/// DER from the PEM `Ca::mint` just wrote (an error here would be a bug in minting).
fn pem_der(der: Result<Vec<u8>, pem::PemError>) -> Result<Vec<u8>, CaError> {
    der.map_err(|e| CaError::Certificate(rcgen::Error::PemError(e.to_string())))
}

/// When to renew the SVID minted for `entry_name` at `now`: the renewal rule's point for
/// `fraction`, never sooner than [`MIN_RENEWAL_WAIT`] from now.
pub fn renewal_due(entry_name: &str, svid: &Svid, fraction: f64, now: SystemTime) -> SystemTime {
    Rule::at_fraction(fraction)
        .renew_at(
            entry_name,
            &svid.serial_hex,
            svid.not_before,
            svid.not_after,
        )
        .max(now + MIN_RENEWAL_WAIT)
}

#[cfg(test)]
#[path = "issuer_tests.rs"]
mod tests;
