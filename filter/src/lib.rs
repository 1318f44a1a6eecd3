//! Warden's authorization core: builds OPA-Envoy-shaped input from a request and the
//! verified peer identity, evaluates Rego with regorus, and returns a decision.
//! Compiled natively (used by the `warden` CLI) and to `wasm32-wasip1` (the Envoy filter,
//! in `wasm/`, a thin proxy-wasm adapter over this core).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod authorize;
pub mod cache;
pub mod config;
pub mod decision;
pub mod input;
pub mod needs;
pub mod plugin;
pub mod policy;
pub mod portable;
pub mod testing;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod wasm;

pub use authorize::{
    authorize, authorize_cached, Action, Counter, DecisionId, DecisionIds, Verdict,
};
pub use config::{ConfigError, Mode, PluginConfig, PolicyEngine, PolicyModule, DEFAULT_ENTRYPOINT};
pub use decision::{Decision, DenyReason};
pub use input::{InputShape, Peer, RequestAttributes};
pub use plugin::{Flow, Host, HostError, Level, Plugin};
pub use policy::{
    body_references, call_sites, parse_modules, to_json, with_program, BodyReference,
    CompiledPolicy, InputNeeds, Located, PolicyError, EXTENDED_BUILTIN_PREFIXES,
    HAS_EXTENDED_BUILTINS, HAS_INTERPRETER,
};
pub use regorus::Value;
pub use warden_spiffe::{IdError, SpiffeId, TrustDomain};
