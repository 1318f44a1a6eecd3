//! SPIFFE identity core: IDs and trust domains ([`SpiffeId`], [`TrustDomain`]), the CA
//! ([`Ca`]) that mints X.509-SVIDs, and trust bundles ([`TrustBundle`]).
//!
//! Time is injected through [`Clock`] so certificate code never reads the system clock
//! itself. The only I/O here is the CA's state directory (`state.rs`). CA rotation: the
//! pure rules in `rotation.rs`, the set of CA generations in `authority.rs`, its status in
//! plain words in `ca_status.rs`. When anything Warden issues is renewed (sidecar and
//! Workload API SVIDs, the serving certificate, JWT keys): `renewal.rs`, the one rule.

mod authority;
mod bundle;
pub mod bundle_document;
pub(crate) mod ca;
mod ca_load;
mod ca_status;
mod keys;
pub(crate) mod pem;
pub mod renewal;
pub mod rotation;
mod selector;
mod spiffe_id;
mod state;
pub mod state_lock;
mod svid;
mod unix_time;
mod upstream_check;
mod upstream_defect;

use std::time::SystemTime;

pub use authority::{Authority, RotateError};
pub use bundle::TrustBundle;
pub use bundle_document::{DocumentError, ForeignBundle};
pub use ca::{Ca, CaError, CaParams, UpstreamCa};
pub use ca_status::{human, CaStatus, NodeAcks, RetiredStatus, SlotStatus, StepRefusals};
pub use keys::KeyType;
pub use selector::{Entry, Selector, SelectorError};
pub use spiffe_id::{IdError, SpiffeId, TrustDomain, MAX_ID_LEN};
pub(crate) use svid::BACKDATE;
pub use svid::{Svid, SvidParams};
pub use unix_time::{from_unix_secs, unix_secs, unix_secs_ceil, unix_secs_f64};
pub(crate) use upstream_check::load_checked as check_upstream;
pub use upstream_defect::{UpstreamDefect, UpstreamDefects};

/// Source of the current time. Injected so rotation and expiry logic can be tested with
/// a fixed or paused clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that always answers the same instant (tests, benchmarks).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}
