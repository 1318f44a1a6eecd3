//! SPIFFE IDs and trust domains: the shared vocabulary crate `warden-spiffe`
//! (`spiffe-id/`), which the Envoy filter uses too, so the control plane and the filter
//! parse IDs by one rule. Re-exported here so `identity::SpiffeId` stays the name the
//! rest of the control plane uses.

pub use warden_spiffe::{IdError, SpiffeId, TrustDomain, MAX_ID_LEN};
