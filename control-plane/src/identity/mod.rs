//! SPIFFE identity core: IDs and trust domains ([`SpiffeId`], [`TrustDomain`]), the CA
//! ([`Ca`]) that mints X.509-SVIDs, and trust bundles ([`TrustBundle`]).
//!
//! Time is injected through [`Clock`] so certificate code never reads the system clock
//! itself. The only I/O here is the CA's state directory (`state.rs`). CA rotation: the
//! pure rules in `rotation.rs`, the set of CA generations in `authority.rs`, its status in
//! plain words in `ca_status.rs`.

mod authority;
mod bundle;
pub(crate) mod ca;
mod ca_status;
mod keys;
pub mod rotation;
mod spiffe_id;
mod state;
mod svid;

use std::time::SystemTime;

pub use authority::{Authority, RotateError};
pub use bundle::TrustBundle;
pub use ca::{Ca, CaError, CaParams, UpstreamCa};
pub use ca_status::{human, CaStatus, NodeAcks, RetiredStatus, SlotStatus, StepRefusals};
pub use keys::KeyType;
pub use spiffe_id::{IdError, SpiffeId, TrustDomain, MAX_ID_LEN};
pub use svid::{Svid, SvidParams};

/// Where minting code gets the CA that signs now and the bundle to hand out. The running
/// control plane implements it so every minter follows a CA rotation.
pub trait CaSource: Send + Sync + std::fmt::Debug {
    /// The CA that signs now.
    fn active(&self) -> std::sync::Arc<Ca>;
    /// The trust bundle (every CA in it).
    fn bundle(&self) -> TrustBundle;
}

/// A shared [`CaSource`]; made from a fixed `Arc<Ca>` (never rotates) or any source.
#[derive(Debug, Clone)]
pub struct CaHandle(pub std::sync::Arc<dyn CaSource>);

#[derive(Debug)]
struct FixedCa(std::sync::Arc<Ca>);

impl CaSource for FixedCa {
    fn active(&self) -> std::sync::Arc<Ca> {
        self.0.clone()
    }
    fn bundle(&self) -> TrustBundle {
        self.0.bundle()
    }
}

impl From<std::sync::Arc<Ca>> for CaHandle {
    fn from(ca: std::sync::Arc<Ca>) -> Self {
        CaHandle(std::sync::Arc::new(FixedCa(ca)))
    }
}

impl CaHandle {
    /// The CA that signs now.
    pub fn active(&self) -> std::sync::Arc<Ca> {
        self.0.active()
    }
    /// The trust bundle.
    pub fn bundle(&self) -> TrustBundle {
        self.0.bundle()
    }
}

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
