//! The xDS control plane: pure [`resources`] builders turn a validated `Config` plus
//! issued SVIDs into one [`snapshot::Snapshot`] per node; the [`cache::Cache`] publishes
//! them; the ADS [`server`] streams them to stock Envoy (SotW and delta), recording ACKs
//! and NACKs in [`status`] and counting in [`metrics`]; [`bootstrap`] renders the
//! sidecar's Envoy bootstrap. Dependencies point one way:
//! resources → snapshot → cache → server. The core that decides what goes into the
//! cache (CA, config reloads, SVID renewal) is `crate::plane`, above this module;
//! nothing here imports it.

pub mod bootstrap;
pub mod cache;
pub mod ext;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod replica_set;
pub mod resources;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod types;
