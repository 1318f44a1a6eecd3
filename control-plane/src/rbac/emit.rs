//! Compiled rules to Envoy's RBAC config: action ALLOW, one policy per Rego rule body
//! (named `file:line`, `#n` when one rule has several bodies), its condition as one
//! principal tree and, as its permission, the filter's request check (a request the
//! Wasm filter answers 400 must not be allowed here either). No I/O.

use std::collections::BTreeMap;

use xds_api::pb::envoy::config::rbac::v3::{permission, principal, Permission, Policy, Principal};
use xds_api::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use xds_api::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};

use super::ir::{Attr, Cond, Test};
use super::proto::{HttpRbac, Rules, ACTION_ALLOW};
use super::NamedRule;

/// The requests the filter refuses before its policy runs (`RequestAttributes::check`:
/// `;` parameters in the path, a `%` not followed by two hex digits in the path or the
/// fragment, a control byte, a colon in a first segment that does not start with `/`),
/// as an RE2 pattern Envoy matches against the whole `:path`. A path starting with
/// exactly `//` (an authority for Go's `url.Parse`) is refused too: the inbound
/// listener merges slashes, so no such path reaches the filter.
pub const BAD_REQUEST_PATH: &str = concat!(
    "(?s)(?:",
    "[^?#]*;",
    "|[^?#]*%[0-9A-Fa-f]?(?:[^0-9A-Fa-f]|$)",
    "|[^#]*#.*%[0-9A-Fa-f]?(?:[^0-9A-Fa-f]|$)",
    r"|.*[\x00-\x1f\x7f]",
    "|[^/?#]*:",
    "|//[^/]",
    ").*"
);

fn string_matcher(test: &Test) -> Option<StringMatcher> {
    use string_matcher::MatchPattern as P;
    let pattern = match test {
        Test::Present => return None,
        Test::Exact(c) => P::Exact(c.clone()),
        // Envoy requires non-empty prefix/suffix/contains; empty ones are presence.
        Test::Prefix(c) if !c.is_empty() => P::Prefix(c.clone()),
        Test::Suffix(c) if !c.is_empty() => P::Suffix(c.clone()),
        Test::Contains(c) if !c.is_empty() => P::Contains(c.clone()),
        Test::Prefix(_) | Test::Suffix(_) | Test::Contains(_) => return None,
        // Envoy matches the whole value; `regex.match` finds the pattern anywhere.
        Test::Regex(p) => P::SafeRegex(RegexMatcher {
            regex: super::ops::searching(p),
            ..Default::default()
        }),
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

fn header(name: &str, test: &Test) -> HeaderMatcher {
    use header_matcher::HeaderMatchSpecifier as H;
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(match string_matcher(test) {
            Some(m) => H::StringMatch(m),
            None => H::PresentMatch(true),
        }),
        ..Default::default()
    }
}

fn id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}

/// The header the inbound listener sets from the peer certificate (SANITIZE_SET, URI
/// only), before any filter runs: `By=<ours>;Hash=<hex>;URI=<first URI SAN>[;URI=...]`.
pub const XFCC: &str = "x-forwarded-client-cert";

/// Which CAs can vouch for a peer, and so how a test on its SPIFFE ID is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Only this trust domain's CA (no federated bundle in the validation context): it
    /// signs SVIDs with exactly one URI SAN and no DNS SAN naming a SPIFFE ID, so
    /// Envoy's `authenticated` matcher alone is exact (and ~4x smaller on the wire).
    OwnTrustDomain,
    /// Federated trust domains' CAs too: each test also checks the first URI SAN
    /// through the XFCC header (see [`peer_principal`]).
    Federated,
}

impl Peers {
    /// `Federated` when any foreign bundle is trusted.
    pub fn from_federated(any_foreign_bundle: bool) -> Self {
        if any_foreign_bundle {
            Peers::Federated
        } else {
            Peers::OwnTrustDomain
        }
    }
}

/// A test on the peer's SPIFFE ID, the *first* URI SAN (what the filter's
/// `source.principal` is, and what Envoy's SPIFFE validator picked the trust domain's
/// CA by). Envoy's `authenticated` matcher alone would also try every other URI SAN,
/// the DNS SANs and the subject: a certificate from a federated trust domain's CA
/// (`URI=spiffe://a.test/x`, `DNS=spiffe://b.test/...`) would pass an exact test on a
/// `b.test` ID. So the `authenticated` test is ANDed with the same test on the first
/// `URI=` of the sanitized XFCC header.
fn peer_principal(test: &Test, peers: Peers) -> Principal {
    use principal::Identifier as I;
    let authenticated = id(I::Authenticated(principal::Authenticated {
        principal_name: string_matcher(test),
    }));
    if peers == Peers::OwnTrustDomain {
        return authenticated;
    }
    let first_uri = match test {
        Test::Exact(c) => format!("{}(;.*)?", regex::escape(c)),
        Test::Prefix(c) if !c.is_empty() => format!("{}[^;,]*(;.*)?", regex::escape(c)),
        _ => return authenticated,
    };
    let xfcc = HeaderMatcher {
        name: XFCC.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                    regex: format!("(By=[^;,]*;)*Hash=[0-9a-fA-F]+;URI={first_uri}"),
                    ..Default::default()
                })),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    id(I::AndIds(principal::Set {
        ids: vec![authenticated, id(I::Header(xfcc))],
    }))
}

/// A condition as a principal tree (RBAC principals can match headers too).
pub fn principal(cond: &Cond, peers: Peers) -> Principal {
    use principal::Identifier as I;
    match cond {
        Cond::True => id(I::Any(true)),
        Cond::False => id(I::NotId(Box::new(id(I::Any(true))))),
        Cond::Not(inner) => id(I::NotId(Box::new(principal(inner, peers)))),
        Cond::And(items) => id(I::AndIds(principal::Set {
            ids: items.iter().map(|c| principal(c, peers)).collect(),
        })),
        Cond::Or(items) => id(I::OrIds(principal::Set {
            ids: items.iter().map(|c| principal(c, peers)).collect(),
        })),
        Cond::Match(Attr::Principal, test) => peer_principal(test, peers),
        Cond::Match(Attr::Method, test) => id(I::Header(header(":method", test))),
        Cond::Match(Attr::Path, test) => id(I::Header(header(":path", test))),
        Cond::Match(Attr::Header(name), test) => id(I::Header(header(name, test))),
    }
}

/// The request check as a permission: not a path the filter refuses.
fn well_formed_request() -> Permission {
    let bad = HeaderMatcher {
        name: ":path".to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                    regex: BAD_REQUEST_PATH.to_string(),
                    ..Default::default()
                })),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    Permission {
        rule: Some(permission::Rule::NotRule(Box::new(Permission {
            rule: Some(permission::Rule::Header(bad)),
        }))),
    }
}

/// The ALLOW rules for compiled rule bodies.
pub fn rules(named: &[NamedRule], peers: Peers) -> Rules {
    let policies: BTreeMap<String, Policy> = named
        .iter()
        .map(|rule| {
            let policy = Policy {
                permissions: vec![well_formed_request()],
                principals: vec![principal(&rule.cond, peers)],
                ..Default::default()
            };
            (rule.name.clone(), policy)
        })
        .collect();
    Rules {
        action: ACTION_ALLOW,
        policies,
    }
}

/// Stats prefix of the RBAC rules: Envoy counts `http.inbound.rbac.warden_authz.allowed`
/// and `.denied` (the Wasm filter: `wasmcustom.warden_authz.allowed`, `.denied`), and sets
/// the dynamic metadata `envoy.filters.http.rbac: warden_authzenforced_engine_result` and
/// `warden_authzenforced_effective_policy_id` (the Rego rule, `file:line`).
pub const STAT_PREFIX: &str = "warden_authz";

/// Dynamic metadata key (namespace `envoy.filters.http.rbac`): `allowed` / `denied`.
pub const RESULT_KEY: &str = "warden_authzenforced_engine_result";

/// Dynamic metadata key: the name of the policy that allowed (the Rego rule).
pub const POLICY_KEY: &str = "warden_authzenforced_effective_policy_id";

/// The HTTP RBAC filter config: enforced rules, or (dry-run) shadow rules only, whose
/// would-be denies Envoy counts in `http.inbound.rbac.warden_authz.shadow_denied`.
pub fn http_rbac(named: &[NamedRule], dry_run: bool, peers: Peers) -> HttpRbac {
    let rules = rules(named, peers);
    let (rules, shadow_rules) = if dry_run {
        (None, Some(rules))
    } else {
        (Some(rules), None)
    };
    HttpRbac {
        rules,
        shadow_rules,
        shadow_rules_stat_prefix: STAT_PREFIX.to_string(),
        rules_stat_prefix: STAT_PREFIX.to_string(),
    }
}
