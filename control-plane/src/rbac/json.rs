//! The emitted RBAC filter config as Envoy's proto-JSON (what `warden policy rbac`
//! prints, and what `bench/filter` loads into a static Envoy config). Walks the proto
//! messages `emit` builds (not the compiler's intermediate form), covering exactly the
//! fields `emit` sets. No I/O.

use serde_json::{json, Map, Value};
use xds_api::pb::envoy::config::rbac::v3::{permission, principal, Permission, Policy, Principal};
use xds_api::pb::envoy::config::route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher};
use xds_api::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};

use super::proto::{HttpRbac, Rules};

fn string_matcher(m: &StringMatcher) -> Value {
    match &m.match_pattern {
        Some(MatchPattern::Exact(c)) => json!({ "exact": c }),
        Some(MatchPattern::Prefix(c)) => json!({ "prefix": c }),
        Some(MatchPattern::Suffix(c)) => json!({ "suffix": c }),
        Some(MatchPattern::Contains(c)) => json!({ "contains": c }),
        Some(MatchPattern::SafeRegex(r)) => json!({ "safe_regex": { "regex": r.regex } }),
        _ => json!({}),
    }
}

fn header(h: &HeaderMatcher) -> Value {
    let mut out = json!({ "name": h.name });
    match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::PresentMatch(p)) => out["present_match"] = json!(p),
        Some(HeaderMatchSpecifier::StringMatch(m)) => out["string_match"] = string_matcher(m),
        _ => {}
    }
    out
}

fn principal(p: &Principal) -> Value {
    use principal::Identifier as I;
    match &p.identifier {
        Some(I::Any(a)) => json!({ "any": a }),
        Some(I::AndIds(s)) => {
            json!({ "and_ids": { "ids": s.ids.iter().map(principal).collect::<Vec<_>>() } })
        }
        Some(I::OrIds(s)) => {
            json!({ "or_ids": { "ids": s.ids.iter().map(principal).collect::<Vec<_>>() } })
        }
        Some(I::NotId(inner)) => json!({ "not_id": principal(inner) }),
        Some(I::Header(h)) => json!({ "header": header(h) }),
        Some(I::Authenticated(a)) => match &a.principal_name {
            Some(m) => json!({ "authenticated": { "principal_name": string_matcher(m) } }),
            None => json!({ "authenticated": {} }),
        },
        _ => json!({}),
    }
}

fn permission(p: &Permission) -> Value {
    use permission::Rule as R;
    match &p.rule {
        Some(R::Any(a)) => json!({ "any": a }),
        Some(R::AndRules(s)) => {
            json!({ "and_rules": { "rules": s.rules.iter().map(permission).collect::<Vec<_>>() } })
        }
        Some(R::OrRules(s)) => {
            json!({ "or_rules": { "rules": s.rules.iter().map(permission).collect::<Vec<_>>() } })
        }
        Some(R::NotRule(inner)) => json!({ "not_rule": permission(inner) }),
        Some(R::Header(h)) => json!({ "header": header(h) }),
        _ => json!({}),
    }
}

fn policy(p: &Policy) -> Value {
    json!({
        "permissions": p.permissions.iter().map(permission).collect::<Vec<_>>(),
        "principals": p.principals.iter().map(principal).collect::<Vec<_>>(),
    })
}

fn rules(r: &Rules) -> Value {
    let policies: Map<String, Value> = r
        .policies
        .iter()
        .map(|(k, p)| (k.clone(), policy(p)))
        .collect();
    json!({ "action": "ALLOW", "policies": policies })
}

/// The filter config as proto-JSON with its `@type`, ready for a `typed_config`.
pub fn http_rbac(config: &HttpRbac) -> Value {
    let mut out = json!({ "@type": <HttpRbac as prost::Name>::type_url() });
    if let Some(r) = &config.rules {
        out["rules"] = rules(r);
    }
    if let Some(r) = &config.shadow_rules {
        out["shadow_rules"] = rules(r);
    }
    if !config.rules_stat_prefix.is_empty() {
        out["rules_stat_prefix"] = json!(config.rules_stat_prefix);
    }
    if !config.shadow_rules_stat_prefix.is_empty() {
        out["shadow_rules_stat_prefix"] = json!(config.shadow_rules_stat_prefix);
    }
    out
}
