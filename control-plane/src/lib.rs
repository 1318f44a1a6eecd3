//! Warden control plane library: SPIFFE identity core and CA, config-as-code loading and
//! validation, the xDS resources, cache and ADS server, the core above them (`plane`),
//! the Workload API and the admin endpoint. The command line lives in the binary
//! (`main.rs`, `cli/`), the only place that uses `anyhow`.

#[macro_use]
mod prost_name;

pub mod admin;
pub mod attest;
pub mod audit;
pub mod config;
pub mod federation;
#[doc(hidden)]
pub mod fsutil;
pub mod http_client;
pub mod identity;
pub mod inject;
pub mod plane;
pub mod policy;
pub mod rbac;
mod units;
pub mod workload_api;
pub mod xds;

#[cfg(test)]
mod test_support;
