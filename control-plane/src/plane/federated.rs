//! The bundles of federated trust domains the core publishes: to every sidecar (SDS
//! validation contexts `spiffe://<td>` and `ALL`) and to the Workload API. The
//! federation task (`crate::federation`) decides what they are; here they are only
//! stored and published through the one path, [`ControlPlane::apply`].

use std::sync::Arc;

use super::{Applied, ControlError, ControlPlane};
use crate::identity::ForeignBundle;
use crate::identity::TrustBundle;

impl ControlPlane {
    /// The federated bundles, sorted by trust domain.
    pub fn federated_bundles(&self) -> Arc<Vec<ForeignBundle>> {
        self.federated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Their X.509 authorities, as resource builders take them.
    pub(crate) fn federated_trust_bundles(&self) -> Vec<TrustBundle> {
        self.federated_bundles()
            .iter()
            .map(|f| f.bundle.clone())
            .collect()
    }

    /// Replaces the federated bundles and republishes every node whose resources change
    /// (an unchanged set publishes nothing).
    pub fn set_federated_bundles(
        &self,
        mut bundles: Vec<ForeignBundle>,
    ) -> Result<Applied, ControlError> {
        bundles.sort_by(|a, b| {
            a.bundle
                .trust_domain
                .as_str()
                .cmp(b.bundle.trust_domain.as_str())
        });
        {
            let mut current = self.federated.lock().unwrap_or_else(|p| p.into_inner());
            if **current == bundles {
                return Ok(Applied::default());
            }
            *current = Arc::new(bundles);
        }
        // Every node's validation contexts change: rebuild all of them.
        self.lock().built_sequence = None;
        let config = self.config();
        self.apply(config, |_, _| false)
    }
}
