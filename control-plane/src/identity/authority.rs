//! The set of CA generations of one trust domain: the current CA that signs, an optional
//! prepared next CA, and retired CAs that stay in the trust bundle until the last SVID
//! they signed has expired. Each step (`prepare`, `activate`, `retire`) is checked by the
//! pure rules in `rotation.rs`, written to the state directory first (atomic, 0600) and
//! only then applied in memory, so a crash never leaves memory ahead of disk.
//!
//! Loading never creates anything except a very first CA in an empty state directory
//! ([`Authority::load_or_init`]); [`Authority::load_existing`] never creates at all.

use std::sync::Arc;
use std::time::SystemTime;

use super::ca::{self, create, pem_certs, unix_secs_ceil, Upstream};
use super::rotation::{unix, CaView, NextView, Refusal, RetiredView, RotationState, Step};
use super::state::{self, CaState, RetiredSlot, STATE_FILE};
use super::{Ca, CaError, CaParams, Clock, TrustBundle};

/// A rotation step failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The step is unsafe now; the reason says why and what to do.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// Creating, loading or saving a CA failed.
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// A retired CA as held in memory.
#[derive(Debug, Clone)]
struct Retired {
    serial_hex: String,
    anchor_der: Vec<u8>,
}

/// Every CA generation of the trust domain, loaded.
#[derive(Debug)]
pub struct Authority {
    params: CaParams,
    upstream: Option<Upstream>,
    state: CaState,
    current: Arc<Ca>,
    next: Option<Arc<Ca>>,
    retired: Vec<Retired>,
    /// CAs retired by this process, kept in memory only to notice a mint that raced the
    /// activation (a holder of the old `Arc<Ca>`); their retire-after then moves out.
    retired_signers: Vec<Arc<Ca>>,
}

impl Authority {
    /// Load the CAs from the state directory, or create a first CA if it holds none.
    pub fn load_or_init(params: &CaParams, clock: &dyn Clock) -> Result<Self, CaError> {
        // Checked before the state directory is touched (no expired intermediate on disk).
        let upstream = super::upstream_check::load_checked(params, clock)?;
        let state = match state::load(&params.state_dir)? {
            Some(state) => state,
            None => {
                let slot = create(params, upstream.as_ref(), clock)?;
                let mut state = CaState::new(params.trust_domain.to_string(), slot);
                state.current.activated_at_unix = Some(unix(clock.now()));
                state::save(&params.state_dir, &state)?;
                tracing::info!(state_dir = %params.state_dir.display(), "created a new CA");
                state
            }
        };
        let state = activate_if_current_expired(params, state, upstream.as_ref(), clock)?;
        Self::from_state(params, state, upstream, clock)
    }

    /// Load the CAs; `Ok(None)` when the state directory holds none (nothing is created).
    pub fn load_existing(params: &CaParams, clock: &dyn Clock) -> Result<Option<Self>, CaError> {
        let Some(state) = state::load(&params.state_dir)? else {
            return Ok(None);
        };
        let upstream = params.upstream.as_ref().map(Upstream::load).transpose()?;
        Self::from_state(params, state, upstream, clock).map(Some)
    }

    fn from_state(
        params: &CaParams,
        state: CaState,
        upstream: Option<Upstream>,
        clock: &dyn Clock,
    ) -> Result<Self, CaError> {
        let (current, next, retired) = load_parts(params, &state, upstream.as_ref(), clock)?;
        Ok(Authority {
            params: params.clone(),
            upstream,
            state,
            current,
            next,
            retired,
            retired_signers: Vec::new(),
        })
    }

    /// The CA that signs SVIDs now.
    pub fn active(&self) -> Arc<Ca> {
        self.current.clone()
    }

    /// The prepared next CA, if any.
    pub fn next(&self) -> Option<Arc<Ca>> {
        self.next.clone()
    }

    /// Every trust anchor in the bundle (current, next, retired), deduplicated in that
    /// order, with the bundle's sequence.
    pub fn bundle(&self) -> TrustBundle {
        let mut anchors: Vec<Vec<u8>> = Vec::new();
        let all = self
            .current
            .bundle()
            .x509_authorities_der
            .into_iter()
            .chain(
                self.next
                    .iter()
                    .flat_map(|n| n.bundle().x509_authorities_der),
            )
            .chain(self.retired.iter().map(|r| r.anchor_der.clone()));
        for der in all {
            if !anchors.contains(&der) {
                anchors.push(der);
            }
        }
        TrustBundle {
            trust_domain: self.params.trust_domain.clone(),
            x509_authorities_der: anchors,
            sequence: self.state.bundle_sequence,
        }
    }

    /// What the rotation rules look at.
    pub fn rotation_state(&self) -> RotationState {
        let view = |ca: &Ca| CaView {
            serial_hex: ca.serial_hex().to_string(),
            not_before: ca.not_before(),
            not_after: ca.not_after(),
        };
        let secs = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        RotationState {
            current: view(&self.current),
            next: self
                .next
                .as_ref()
                .zip(self.state.next.as_ref())
                .map(|(ca, slot)| NextView {
                    ca: view(ca),
                    prepared_at: secs(slot.prepared_at_unix.unwrap_or(0)),
                    published_sequence: slot.published_sequence.unwrap_or(0),
                }),
            retired: self
                .retired
                .iter()
                .zip(&self.state.retired)
                .map(|(r, slot)| RetiredView {
                    serial_hex: r.serial_hex.clone(),
                    retire_after: secs(slot.retire_after_unix),
                })
                .collect(),
        }
    }

    /// When the current CA started signing (if recorded), and retired slots' records.
    pub(crate) fn state(&self) -> &CaState {
        &self.state
    }

    /// Checks `state` loads, writes it, and only then applies it in memory. CA objects
    /// that stay (same serial) are kept, with what they know about their signing.
    fn commit(&mut self, state: CaState, clock: &dyn Clock) -> Result<(), CaError> {
        let (mut current, mut next, retired) =
            load_parts(&self.params, &state, self.upstream.as_ref(), clock)?;
        state::save(&self.params.state_dir, &state)?;
        for old in std::iter::once(&self.current).chain(self.next.as_ref()) {
            if old.serial_hex() == current.serial_hex() {
                current = old.clone();
            }
            if next
                .as_ref()
                .is_some_and(|n| n.serial_hex() == old.serial_hex())
            {
                next = Some(old.clone());
            }
        }
        self.state = state;
        self.current = current;
        self.next = next;
        self.retired = retired;
        Ok(())
    }

    fn anchors_of(&self, state: &CaState) -> Result<Vec<Vec<u8>>, CaError> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let pems = std::iter::once(&state.current.cert_pem)
            .chain(state.next.iter().map(|n| &n.cert_pem))
            .chain(state.retired.iter().map(|r| &r.cert_pem));
        for pem in pems {
            let der = anchor_of(&self.params, pem, self.upstream.as_ref())?;
            if !out.contains(&der) {
                out.push(der);
            }
        }
        Ok(out)
    }

    /// Creates the next CA and publishes it in the bundle (not signing yet).
    pub fn prepare(&mut self, clock: &dyn Clock) -> Result<(), RotateError> {
        self.rotation_state().check_prepare()?;
        let before = self.bundle().x509_authorities_der;
        let mut slot = create(&self.params, self.upstream.as_ref(), clock)?;
        slot.prepared_at_unix = Some(unix(clock.now()));
        let mut st = self.state.clone();
        st.next = Some(slot);
        if self.anchors_of(&st)? != before {
            st.bundle_sequence += 1;
        }
        if let Some(n) = st.next.as_mut() {
            n.published_sequence = Some(st.bundle_sequence);
        }
        self.commit(st, clock)?;
        Ok(())
    }

    /// Lets the next CA sign; the current one stays in the bundle as retired until the
    /// last SVID it signed has expired. `lagging`: nodes that have not ACKed the bundle.
    pub fn activate(&mut self, lagging: &[String], clock: &dyn Clock) -> Result<(), RotateError> {
        let now = clock.now();
        self.rotation_state().check_activate(now, lagging)?;
        let mut st = self.state.clone();
        let Some(mut next) = st.next.take() else {
            return Err(Refusal::NoNext.into());
        };
        next.activated_at_unix = Some(unix(now));
        let old = std::mem::replace(&mut st.current, next);
        let retire_after = self
            .current
            .signed_until()
            .map(unix_secs_ceil)
            .unwrap_or_else(|| unix(now));
        st.retired.push(RetiredSlot {
            cert_pem: old.cert_pem,
            retired_at_unix: unix(now),
            retire_after_unix: retire_after,
        });
        // Anchors are unchanged (old and new are both still in the bundle).
        let old_signer = self.current.clone();
        self.commit(st, clock)?;
        self.retired_signers.push(old_signer);
        Ok(())
    }

    /// Drops retired CAs from the bundle (those whose SVIDs expired, or all with `force`,
    /// which breaks workloads still holding their SVIDs). Returns the serials dropped.
    pub fn retire(&mut self, force: bool, clock: &dyn Clock) -> Result<Vec<String>, RotateError> {
        let due = self.rotation_state().check_retire(clock.now(), force)?;
        let before = self.bundle().x509_authorities_der;
        let mut st = self.state.clone();
        st.retired = st
            .retired
            .into_iter()
            .zip(&self.retired)
            .filter(|(_, r)| !due.contains(&r.serial_hex))
            .map(|(slot, _)| slot)
            .collect();
        if self.anchors_of(&st)? != before {
            st.bundle_sequence += 1;
        }
        self.commit(st, clock)?;
        Ok(due)
    }

    /// Runs the automatic step that is due, if any.
    pub fn auto_step(
        &mut self,
        lagging: &[String],
        clock: &dyn Clock,
    ) -> Result<Option<Step>, RotateError> {
        let step = self.rotation_state().due_step(clock.now(), lagging);
        match step {
            Some(Step::Prepare) => self.prepare(clock)?,
            Some(Step::Activate) => self.activate(lagging, clock)?,
            Some(Step::Retire) => {
                self.retire(false, clock)?;
            }
            None => {}
        }
        Ok(step)
    }

    /// Records in the state file how long SVIDs of the current CA stay valid, before they
    /// are handed out. Written with a lead of half an SVID lifetime, so a steady stream of
    /// renewals writes about twice per lifetime. Returns whether it wrote.
    pub fn persist_signing(&mut self, clock: &dyn Clock) -> Result<bool, CaError> {
        self.retired_signers
            .retain(|s| self.retired.iter().any(|r| r.serial_hex == s.serial_hex()));
        let mut late = self.state.clone();
        let mut moved = false;
        for s in &self.retired_signers {
            let Some(until) = s.signed_until().map(unix_secs_ceil) else {
                continue;
            };
            let slots = late.retired.iter_mut().zip(&self.retired);
            for (slot, r) in slots {
                if r.serial_hex == s.serial_hex() && slot.retire_after_unix < until {
                    slot.retire_after_unix = until;
                    moved = true;
                }
            }
        }
        if moved {
            state::save(&self.params.state_dir, &late)?;
            self.state = late;
        }
        let Some(until) = self.current.signed_until() else {
            return Ok(false);
        };
        let until = unix_secs_ceil(until);
        if self
            .state
            .current
            .signed_until_unix
            .is_some_and(|m| m >= until)
        {
            return Ok(false);
        }
        let lead = until.saturating_sub(unix(clock.now())) / 2;
        let cap = unix_secs_ceil(self.current.not_after());
        let mut st = self.state.clone();
        st.current.signed_until_unix = Some((until + lead).min(cap).max(until));
        state::save(&self.params.state_dir, &st)?;
        self.state = st;
        Ok(true)
    }
}

type Parts = (Arc<Ca>, Option<Arc<Ca>>, Vec<Retired>);

/// Loads and checks every slot of `state` (nothing is written).
fn load_parts(
    params: &CaParams,
    state: &CaState,
    upstream: Option<&Upstream>,
    clock: &dyn Clock,
) -> Result<Parts, CaError> {
    ca::check_trust_domain(params, state)?;
    let invalid = |reason: String| CaError::StateInvalid {
        path: params.state_dir.join(STATE_FILE),
        reason,
    };
    let current = Arc::new(Ca::from_slot(params, &state.current, upstream, clock)?);
    let next = match &state.next {
        None => None,
        Some(slot) => {
            if slot
                .published_sequence
                .is_none_or(|seq| seq > state.bundle_sequence)
            {
                return Err(invalid(
                    "the next CA has no valid published bundle sequence".into(),
                ));
            }
            if slot.prepared_at_unix.is_none() {
                return Err(invalid("the next CA has no preparation time".into()));
            }
            Some(Arc::new(Ca::from_slot(params, slot, upstream, clock)?))
        }
    };
    let mut retired = Vec::new();
    for r in &state.retired {
        let der = first_cert(params, &r.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| invalid(format!("a retired CA certificate is invalid: {e}")))?;
        retired.push(Retired {
            serial_hex: hex::encode(cert.raw_serial()),
            anchor_der: anchor_of(params, &r.cert_pem, upstream)?,
        });
    }
    Ok((current, next, retired))
}

/// The validity of the first certificate in `pem`.
fn validity_of(params: &CaParams, pem: &str) -> Result<(SystemTime, SystemTime), CaError> {
    let der = first_cert(params, pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| CaError::StateInvalid {
            path: params.state_dir.join(STATE_FILE),
            reason: format!("a CA certificate is invalid: {e}"),
        })?;
    let v = cert.validity();
    Ok((
        SystemTime::from(v.not_before.to_datetime()),
        SystemTime::from(v.not_after.to_datetime()),
    ))
}

/// At start-up: when the signing CA expired while no control plane ran (past the
/// activation deadline) but a prepared next CA is valid, that one is activated now and
/// the expired one retired, instead of refusing to start. Saved before it applies.
fn activate_if_current_expired(
    params: &CaParams,
    mut state: CaState,
    upstream: Option<&Upstream>,
    clock: &dyn Clock,
) -> Result<CaState, CaError> {
    ca::check_trust_domain(params, &state)?;
    let now = clock.now();
    let Some(next) = &state.next else {
        return Ok(state);
    };
    let (_, current_end) = validity_of(params, &state.current.cert_pem)?;
    let (next_start, next_end) = validity_of(params, &next.cert_pem)?;
    if current_end > now || next_start > now || next_end <= now {
        return Ok(state);
    }
    let Some(mut next) = state.next.take() else {
        return Ok(state);
    };
    next.activated_at_unix = Some(unix(now));
    let old = std::mem::replace(&mut state.current, next);
    state.retired.push(RetiredSlot {
        cert_pem: old.cert_pem,
        retired_at_unix: unix(now),
        // Every SVID it signed ended by its own notAfter.
        retire_after_unix: unix_secs_ceil(current_end),
    });
    // The file is only rewritten if everything in it loads (key types, chains).
    load_parts(params, &state, upstream, clock)?;
    state::save(&params.state_dir, &state)?;
    tracing::error!(state_dir = %params.state_dir.display(), "the signing CA expired while the control plane was down; activated the prepared next CA at start-up (nodes that never received the bundle holding it fail mTLS with their peers until they do)");
    Ok(state)
}

fn first_cert(params: &CaParams, pem: &str) -> Result<Vec<u8>, CaError> {
    let invalid = |reason: String| CaError::StateInvalid {
        path: params.state_dir.join(STATE_FILE),
        reason,
    };
    pem_certs(pem)
        .map_err(|e| invalid(format!("a CA certificate: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("a CA slot has no certificate".into()))
}

/// The trust anchor that verifies SVIDs of the CA in `pem`: the CA itself, or the upstream
/// root it chains to.
fn anchor_of(
    params: &CaParams,
    pem: &str,
    upstream: Option<&Upstream>,
) -> Result<Vec<u8>, CaError> {
    match upstream {
        Some(up) => Ok(up.root_der.clone()),
        None => first_cert(params, pem),
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
