//! Warden control plane library: SPIFFE identity core and CA, config-as-code loading and
//! validation, and (in later modules) the xDS server. `main.rs` only wires these together.

pub mod admin;
pub mod attest;
pub mod cli;
pub mod config;
mod fsutil;
pub mod identity;
pub mod policy;
pub mod rbac;
pub mod workload_api;
pub mod xds;

#[cfg(test)]
mod test_support;
