//! A small evaluator of the RBAC config we emit, following Envoy's documented matching
//! (`envoy.config.rbac.v3`): ALLOW action, a policy matches when one permission and one
//! principal match; `authenticated.principal_name` is tried on the URI SAN and then on
//! the certificate subject (Warden SVIDs: `O=Warden`, no DNS SAN); a header matcher tries
//! each value of a repeated header on its own (the compiler emits presence tests only,
//! which do not depend on this); `safe_regex` matches the whole value. Tests
//! only: it checks the emitted config, not the compiler's intermediate form.

use regex::Regex;
use xds_api::pb::envoy::config::rbac::v3::{permission, principal, Permission, Principal};
use xds_api::pb::envoy::config::route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher};
use xds_api::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};

use super::proto::{Rules, ACTION_ALLOW};

/// The subject Envoy reports for a Warden SVID.
pub(super) const SVID_SUBJECT: &str = "O=Warden";

/// What the RBAC filter sees of a request.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// The peer's URI SAN (None: no TLS peer).
    pub uri_san: Option<String>,
    /// Lowercase header names (pseudo-headers included), in arrival order.
    pub headers: Vec<(String, String)>,
    /// The XFCC header Envoy sets from the peer certificate (see [`Seen::new`]).
    pub xfcc: Option<String>,
}

impl Seen {
    /// A request from a peer whose only URI SAN is `uri_san`, as the inbound listener
    /// sees it: the XFCC header is Envoy's, whatever the client sent.
    pub(super) fn new(uri_san: Option<String>, headers: Vec<(String, String)>) -> Self {
        let xfcc = uri_san
            .as_ref()
            .map(|u| format!("By=spiffe://example.org/ns/demo/sa/self;Hash=0a1b2c;URI={u}"));
        Seen {
            uri_san,
            headers,
            xfcc,
        }
    }

    fn values(&self, name: &str) -> Vec<&str> {
        if name == super::emit::XFCC {
            // The inbound listener replaces the client's XFCC (SANITIZE_SET, URI only).
            return self.xfcc.iter().map(String::as_str).collect();
        }
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Whether the rules allow the request.
pub(super) fn allows(rules: &Rules, seen: &Seen) -> bool {
    assert_eq!(rules.action, ACTION_ALLOW);
    rules.policies.values().any(|p| {
        p.permissions
            .iter()
            .any(|perm| permission_matches(perm, seen))
            && p.principals.iter().any(|pr| principal_matches(pr, seen))
    })
}

fn string_matches(m: &StringMatcher, value: &str) -> bool {
    assert!(!m.ignore_case);
    match m.match_pattern.as_ref().expect("a pattern") {
        MatchPattern::Exact(c) => value == c,
        MatchPattern::Prefix(c) => value.starts_with(c.as_str()),
        MatchPattern::Suffix(c) => value.ends_with(c.as_str()),
        MatchPattern::Contains(c) => value.contains(c.as_str()),
        MatchPattern::SafeRegex(r) => Regex::new(&format!("^(?:{})$", r.regex))
            .expect("valid regex")
            .is_match(value),
        other => panic!("not emitted: {other:?}"),
    }
}

fn header_matches(h: &HeaderMatcher, seen: &Seen) -> bool {
    assert!(!h.invert_match && !h.treat_missing_header_as_empty);
    let values = seen.values(&h.name);
    match h.header_match_specifier.as_ref().expect("a specifier") {
        HeaderMatchSpecifier::PresentMatch(p) => values.is_empty() != *p,
        HeaderMatchSpecifier::StringMatch(m) => values.iter().any(|v| string_matches(m, v)),
        other => panic!("not emitted: {other:?}"),
    }
}

fn principal_matches(p: &Principal, seen: &Seen) -> bool {
    use principal::Identifier as I;
    match p.identifier.as_ref().expect("an identifier") {
        I::Any(any) => *any,
        I::AndIds(set) => set.ids.iter().all(|i| principal_matches(i, seen)),
        I::OrIds(set) => set.ids.iter().any(|i| principal_matches(i, seen)),
        I::NotId(inner) => !principal_matches(inner, seen),
        I::Header(h) => header_matches(h, seen),
        I::Authenticated(a) => match (&seen.uri_san, &a.principal_name) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(uri), Some(m)) => string_matches(m, uri) || string_matches(m, SVID_SUBJECT),
        },
        other => panic!("not emitted: {other:?}"),
    }
}

fn permission_matches(p: &Permission, seen: &Seen) -> bool {
    use permission::Rule as R;
    match p.rule.as_ref().expect("a rule") {
        R::Any(any) => *any,
        R::AndRules(set) => set.rules.iter().all(|r| permission_matches(r, seen)),
        R::OrRules(set) => set.rules.iter().any(|r| permission_matches(r, seen)),
        R::NotRule(inner) => !permission_matches(inner, seen),
        R::Header(h) => header_matches(h, seen),
        other => panic!("not emitted: {other:?}"),
    }
}
