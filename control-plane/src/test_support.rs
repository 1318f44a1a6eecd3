//! Helpers shared by the crate's unit tests: a clock the test moves by hand, empty xDS
//! server state, and the sample mesh with its CA state in a directory of the test's own.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::identity::Clock;
use crate::plane::XdsHandles;
use crate::xds::cache::Cache;
use crate::xds::metrics::Metrics;
use crate::xds::server::{AllowAnyCaller, Shared};
use crate::xds::status::StatusRegistry;

/// A clock that moves only when the test says so.
#[derive(Debug)]
pub(crate) struct ManualClock(pub(crate) Mutex<SystemTime>);

impl ManualClock {
    /// Starting at the real current time.
    pub(crate) fn new() -> Self {
        Self::at(SystemTime::now())
    }
    pub(crate) fn at(t: SystemTime) -> Self {
        ManualClock(Mutex::new(t))
    }
    pub(crate) fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap() = t;
    }
    pub(crate) fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// Empty cache, metrics and status; every caller allowed; no stream age cap.
pub(crate) fn shared() -> Shared {
    Shared {
        cache: Arc::new(Cache::new()),
        metrics: Arc::new(Metrics::default()),
        status: Arc::new(StatusRegistry::default()),
        authorizer: Arc::new(AllowAnyCaller),
        max_stream_age: None,
    }
}

/// The core's view of `sh`: the same cache, metrics and status.
pub(crate) fn handles(sh: &Shared) -> XdsHandles {
    XdsHandles {
        cache: sh.cache.clone(),
        metrics: sh.metrics.clone(),
        status: sh.status.clone(),
        audit: Default::default(),
    }
}

/// `examples/mesh`, with its CA state in `state`.
pub(crate) fn sample_mesh(state: &Path) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let mut cfg = crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"));
    cfg.ca.state_dir = state.to_path_buf();
    cfg
}
