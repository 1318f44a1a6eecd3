//! SPIFFE federation: this trust domain's bundle endpoint (`endpoint.rs`), and its
//! relationships with foreign trust domains: parsing their bundles (`identity::bundle_document`, below the core, which stores them), when
//! to refresh them and what a fetched bundle does (`state.rs`, pure), fetching over
//! HTTPS (`fetch.rs`), and the task that runs it all and hands the bundles to the core
//! (`run.rs`), which publishes them to sidecars and the Workload API.
//!
//! Not here: the relationships' config (`config::federation`), the Envoy resources
//! (`xds::resources::secret`), the CLI (`cli::federation`).

pub mod endpoint;
pub mod fetch;
mod run;
pub mod state;

pub use crate::identity::bundle_document as document;
pub use crate::identity::{DocumentError, ForeignBundle};
pub use run::{admin_router, Federation, RelationshipStatus};
