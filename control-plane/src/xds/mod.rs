//! The xDS control plane: pure [`resources`] builders turn a validated `Config` plus
//! issued SVIDs into one [`snapshot::Snapshot`] per node; the [`cache::Cache`] publishes
//! them; the ADS [`server`] streams them to stock Envoy (SotW and delta). [`control`]
//! ties the CA, config reloads and SVID renewal to the cache; [`bootstrap`] renders the
//! sidecar's Envoy bootstrap. Dependencies point one way:
//! resources → snapshot → cache → server.

pub mod bootstrap;
pub mod cache;
pub mod control;
pub mod ext;
pub mod limits;
pub mod metrics;
pub mod renewal;
pub mod resources;
pub mod rotation;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod types;
