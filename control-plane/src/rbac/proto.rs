//! The HTTP RBAC filter config (`envoy.extensions.filters.http.rbac.v3.RBAC`), which
//! xds-api does not generate: hand-written with `prost` like `xds::ext`, subset in
//! `proto/envoy/extensions/filters/http/rbac/v3/rbac.proto` (same field numbers as
//! upstream). `envoy.config.rbac.v3.RBAC` is mirrored too, with its policies in a
//! `BTreeMap`: xds-api's `HashMap` encodes in a random order, and resource versions are
//! hashes of the encoded bytes (equal policies must give equal versions). `Policy`,
//! `Principal` and `Permission` come from xds-api.

use std::collections::BTreeMap;

use xds_api::pb::envoy::config::rbac::v3::Policy;

/// `envoy.config.rbac.v3.RBAC.Action.ALLOW`.
pub const ACTION_ALLOW: i32 = 0;

/// `envoy.config.rbac.v3.RBAC` (action and policies).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rules {
    /// ALLOW: a request matching any policy is allowed, every other one denied.
    #[prost(int32, tag = "1")]
    pub action: i32,
    /// Policies by name.
    #[prost(btree_map = "string, message", tag = "2")]
    pub policies: BTreeMap<String, Policy>,
}
prost_named!(Rules, "envoy.config.rbac.v3", "RBAC");

/// `envoy.extensions.filters.http.rbac.v3.RBAC` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRbac {
    /// Enforced rules; absent: nothing enforced (dry-run).
    #[prost(message, optional, tag = "1")]
    pub rules: Option<Rules>,
    /// Evaluated, counted and logged, never enforced.
    #[prost(message, optional, tag = "2")]
    pub shadow_rules: Option<Rules>,
    /// Prefix of the shadow rules' stats.
    #[prost(string, tag = "3")]
    pub shadow_rules_stat_prefix: String,
    /// Prefix of the enforced rules' stats (`<hcm>.rbac.<prefix>.allowed`) and of their
    /// dynamic metadata keys (`<prefix>enforced_effective_policy_id`).
    #[prost(string, tag = "6")]
    pub rules_stat_prefix: String,
}
prost_named!(HttpRbac, "envoy.extensions.filters.http.rbac.v3", "RBAC");

/// `envoy.extensions.access_loggers.stream.v3.StderrAccessLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StderrAccessLog {
    /// The line format.
    #[prost(message, optional, tag = "1")]
    pub log_format: Option<xds_api::pb::envoy::config::core::v3::SubstitutionFormatString>,
}
prost_named!(
    StderrAccessLog,
    "envoy.extensions.access_loggers.stream.v3",
    "StderrAccessLog"
);

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use xds_api::pb::envoy::config::rbac::v3::Rbac;

    #[test]
    fn field_numbers_are_the_upstream_ones() {
        let m = HttpRbac {
            rules: Some(Rules::default()),
            shadow_rules: Some(Rules::default()),
            shadow_rules_stat_prefix: "p".into(),
            rules_stat_prefix: String::new(),
        };
        // Keys: (field << 3) | wire type 2 (length-delimited).
        assert_eq!(m.encode_to_vec(), vec![0x0a, 0, 0x12, 0, 0x1a, 1, b'p']);
    }

    #[test]
    fn the_rules_mirror_decodes_as_xds_api_rbac() {
        let mut policies = BTreeMap::new();
        policies.insert("a".to_string(), Policy::default());
        policies.insert("b".to_string(), Policy::default());
        let mine = Rules {
            action: 1,
            policies,
        };
        let theirs = Rbac::decode(mine.encode_to_vec().as_slice()).unwrap();
        assert_eq!(theirs.action, 1);
        assert_eq!(theirs.policies.len(), 2);
    }
}
