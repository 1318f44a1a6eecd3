//! The SVID book on each change, one SVID per instance (see `instances.rs`; keyed by the
//! instance's node key): which instances get a new SVID (missing, SPIFFE ID
//! changed, at the renewal point of `identity::renewal`, signed by a CA that no longer
//! signs, or forced), minting them, and failed renewals: a failed renewal of a
//! still-valid SVID keeps it and schedules a retry with capped backoff.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use super::{Book, ControlError, ControlPlane};
use crate::config::{Config, Workload};
use crate::identity::renewal::{renew_at, Failing};
use crate::identity::{Ca, Svid, SvidParams};
use crate::xds::types::NodeId;

/// One node the book holds an SVID for and the cache a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Target<'c> {
    pub(crate) key: NodeId,
    pub(crate) workload: &'c Workload,
    /// The instance's address when its workload uses `${INSTANCE_IP}`.
    pub(crate) ip: Option<IpAddr>,
}

/// Which SVIDs `apply` selects for the change (by instance key): `true` re-mints it.
pub(crate) type Force<'a> = &'a dyn Fn(&str, &Svid) -> bool;

/// The SVIDs (and their signers) a change publishes, and what minting them did.
#[derive(Debug, Default)]
pub(super) struct Renewed {
    pub(super) svids: BTreeMap<NodeId, Svid>,
    pub(super) signers: BTreeMap<NodeId, String>,
    pub(super) minted: usize,
    pub(super) failed: usize,
}

impl Renewed {
    fn hold(&mut self, key: &NodeId, svid: Svid, signer: String) {
        self.svids.insert(key.clone(), svid);
        self.signers.insert(key.clone(), signer);
    }
}

/// Whether `held` (signed by `signer`) is replaced now: missing, due, from a CA that no
/// longer signs or forced, and not waiting out the backoff of a failed attempt.
fn wants_new(
    key: &NodeId,
    held: Option<&Svid>,
    signer: Option<&String>,
    failing: Option<Failing>,
    ca: &Ca,
    now: SystemTime,
    force: Force<'_>,
) -> bool {
    let Some(s) = held else { return true };
    let due = renew_at(key.as_str(), &s.serial_hex, s.not_before, s.not_after) <= now
        || signer.is_some_and(|x| x != ca.serial_hex())
        || force(key.as_str(), s);
    due && failing.is_none_or(|f| f.retry_at <= now)
}

impl ControlPlane {
    /// The SVIDs of `targets` (every instance `config` serves): kept, or minted with
    /// `ca`. Failed attempts are recorded in `book.failing` even when the change fails;
    /// an error means an instance holds no valid SVID at all.
    pub(super) fn renew_book(
        &self,
        book: &mut Book,
        config: &Config,
        targets: &[Target<'_>],
        (ca, now, force): (&Ca, SystemTime, Force<'_>),
    ) -> Result<Renewed, ControlError> {
        let mut out = Renewed::default();
        let mut hard: Option<ControlError> = None;
        for t in targets {
            if let Err(e) = self.renew_one(book, config, t, (ca, now, force), &mut out) {
                hard.get_or_insert(e);
            }
        }
        match hard {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    pub(super) fn renew_one(
        &self,
        book: &mut Book,
        config: &Config,
        t: &Target<'_>,
        (ca, now, force): (&Ca, SystemTime, Force<'_>),
        out: &mut Renewed,
    ) -> Result<(), ControlError> {
        let (w, key) = (t.workload, &t.key);
        let held = book.svids.get(key).filter(|s| s.id == w.spiffe_id).cloned();
        let signer = book.signers.get(key).cloned();
        let failing = book.failing.get(key).copied();
        if !wants_new(key, held.as_ref(), signer.as_ref(), failing, ca, now, force) {
            if let Some(s) = held {
                out.hold(key, s, signer.unwrap_or_default());
            }
            return Ok(());
        }
        let params = SvidParams {
            id: w.spiffe_id.clone(),
            ttl: config.ca.svid_ttl,
        };
        let e = match self.mint(ca, &params) {
            Ok(s) => {
                out.minted += 1;
                book.failing.remove(key);
                tracing::info!(workload = %w.name, instance = %key, id = %w.spiffe_id, serial = %s.serial_hex, ca = %ca.serial_hex(), "SVID issued");
                self.xds
                    .audit
                    .svid(&w.name, key.as_str(), &s, ca.serial_hex(), held.is_some());
                out.hold(key, s, ca.serial_hex().to_string());
                return Ok(());
            }
            Err(e) => e,
        };
        self.xds.metrics.svid_renewal_failed();
        self.xds.audit.svid_failed(&w.name, &e);
        let f = Failing::after_failure(failing, now);
        book.failing.insert(key.clone(), f);
        match held.filter(|s| s.not_after > now) {
            Some(s) => {
                out.failed += 1;
                tracing::warn!(workload = %w.name, instance = %key, failures = f.failures, retry_in_s = f.retry_at.duration_since(now).unwrap_or_default().as_secs(), "SVID renewal failed, the still-valid SVID is kept: {e}");
                out.hold(key, s, signer.unwrap_or_default());
                Ok(())
            }
            None => {
                // Nothing usable to keep: count it, say so loudly, retry with backoff (not
                // every tick), and never hand out an expired SVID.
                tracing::error!(workload = %w.name, instance = %key, failures = f.failures, "SVID renewal failed and the workload holds no valid SVID: {e}");
                Err(e)
            }
        }
    }

    /// Mints with `ca` and records in the state file how long its SVIDs stay valid
    /// before the SVID is handed to anyone (so a retired CA never leaves the bundle early).
    fn mint(&self, ca: &Ca, params: &SvidParams) -> Result<Svid, ControlError> {
        let s = ca.mint(params, self.clock.as_ref())?;
        self.authority().persist_signing(self.clock.as_ref())?;
        self.xds.metrics.svid_issued();
        Ok(s)
    }
}
