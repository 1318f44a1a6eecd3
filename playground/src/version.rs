//! The policy version shown in deny reasons, computed as the control plane computes it
//! (`warden::policy::policy_version`): the first 12 hex digits of SHA-256 over the
//! configured entrypoint, each module's name and source (NUL-separated, in order) and the
//! data document's JSON. The browser test compares reasons with `warden policy eval`, so
//! a drift between the two shows there.

use sha2::{Digest, Sha256};
use warden_filter::PolicyModule;

/// The policy version of `entrypoint` + `modules` + `data`.
pub fn policy_version(
    entrypoint: &str,
    modules: &[PolicyModule],
    data: &serde_json::Value,
) -> String {
    let mut hash = Sha256::new();
    hash.update(entrypoint.as_bytes());
    hash.update([0]);
    for module in modules {
        hash.update(module.name.as_bytes());
        hash.update([0]);
        hash.update(module.source.as_bytes());
        hash.update([0]);
    }
    hash.update(data.to_string().as_bytes());
    hex::encode(&hash.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_twelve_hex_digits_and_follows_every_input() {
        let module = |s: &str| PolicyModule {
            name: "policies/authz.rego".into(),
            source: s.into(),
        };
        let data = serde_json::json!({});
        let base = policy_version("data.envoy.authz.allow", &[module("package a")], &data);
        assert_eq!(base.len(), 12);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            base,
            policy_version("data.envoy.authz.allow", &[module("package b")], &data)
        );
        assert_ne!(
            base,
            policy_version("data.x.allow", &[module("package a")], &data)
        );
        assert_ne!(
            base,
            policy_version(
                "data.envoy.authz.allow",
                &[module("package a")],
                &serde_json::json!({"a": 1})
            )
        );
    }
}
