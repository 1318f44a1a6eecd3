//! Warden's authorization core: builds OPA-Envoy-shaped input from a request and the
//! verified peer identity, evaluates Rego with regorus, and returns a decision.
//! Compiled natively (used by the `warden` CLI) and to `wasm32-wasip1` (the Envoy filter).
