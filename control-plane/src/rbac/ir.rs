//! The compiler's intermediate form: a boolean condition over the request attributes
//! Envoy's RBAC filter can match (the verified principal, `:method`, `:path`, request
//! headers). Two-valued: a condition holds exactly when the Rego expressions it came from
//! succeed (undefined counts as not holding, as in a rule body). No I/O.

use regorus::unstable::Span;
use serde_json::Value as Json;

use super::{Loc, NotNative};

/// A request attribute both Rego (through OPA-Envoy's input) and RBAC can read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    /// `input.attributes.source.principal`: the verified peer's SPIFFE ID.
    Principal,
    /// `input.attributes.request.http.method` (`:method`).
    Method,
    /// `input.attributes.request.http.path` (`:path`, normalized, with the query).
    Path,
    /// `input.attributes.request.http.headers[name]` (lowercase name).
    Header(String),
}

impl std::fmt::Display for Attr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Principal => f.write_str("source principal"),
            Self::Method => f.write_str("method"),
            Self::Path => f.write_str("path"),
            Self::Header(name) => write!(f, "header {name:?}"),
        }
    }
}

/// A test on one attribute's string value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Test {
    /// The attribute is there (any value: Rego strings are truthy).
    Present,
    /// Equal to the constant.
    Exact(String),
    /// Starts with the constant (`startswith`).
    Prefix(String),
    /// Ends with the constant (`endswith`).
    Suffix(String),
    /// Contains the constant (`contains`).
    Contains(String),
    /// `regex.match(pattern, value)`: the pattern (a subset RE2 and Rust's `regex` read
    /// alike, see `ops::portable_regex`) matches somewhere in the value.
    Regex(String),
}

impl Test {
    /// Whether `value` passes (a regex only when it compiles).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Regex(p) => regex::Regex::new(p).is_ok_and(|r| r.is_match(value)),
            Self::Present => true,
            Self::Exact(c) => value == c,
            Self::Prefix(c) => value.starts_with(c.as_str()),
            Self::Suffix(c) => value.ends_with(c.as_str()),
            Self::Contains(c) => value.contains(c.as_str()),
        }
    }
}

/// A condition on a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cond {
    /// Always.
    True,
    /// Never.
    False,
    /// The attribute is present and passes the test.
    Match(Attr, Test),
    /// The inner condition does not hold (Rego `not`).
    Not(Box<Cond>),
    /// All hold.
    And(Vec<Cond>),
    /// One holds.
    Or(Vec<Cond>),
}

impl Cond {
    /// Conjunction, simplified (`True` dropped, `False` absorbs).
    pub fn all(items: Vec<Cond>) -> Cond {
        let mut out = Vec::new();
        for item in items {
            match item {
                Cond::True => {}
                Cond::False => return Cond::False,
                Cond::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Cond::True,
            1 => out.pop().unwrap_or(Cond::True),
            _ => Cond::And(out),
        }
    }

    /// Disjunction, simplified (`False` dropped, `True` absorbs).
    pub fn any(items: Vec<Cond>) -> Cond {
        let mut out = Vec::new();
        for item in items {
            match item {
                Cond::False => {}
                Cond::True => return Cond::True,
                Cond::Or(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Cond::False,
            1 => out.pop().unwrap_or(Cond::False),
            _ => Cond::Or(out),
        }
    }

    /// Negation, simplified.
    pub fn negate(self) -> Cond {
        match self {
            Cond::True => Cond::False,
            Cond::False => Cond::True,
            Cond::Not(inner) => *inner,
            other => Cond::Not(Box::new(other)),
        }
    }

    /// Evaluates the condition with `lookup` giving each attribute's value (None: absent).
    pub fn holds(&self, lookup: &dyn Fn(&Attr) -> Option<String>) -> bool {
        match self {
            Cond::True => true,
            Cond::False => false,
            Cond::Match(attr, test) => lookup(attr).is_some_and(|v| test.matches(&v)),
            Cond::Not(inner) => !inner.holds(lookup),
            Cond::And(items) => items.iter().all(|c| c.holds(lookup)),
            Cond::Or(items) => items.iter().any(|c| c.holds(lookup)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Cond {
        Cond::Match(Attr::Method, Test::Exact(s.into()))
    }

    #[test]
    fn conjunction_and_disjunction_simplify_constants() {
        assert_eq!(Cond::all(vec![Cond::True, m("GET")]), m("GET"));
        assert_eq!(Cond::all(vec![Cond::False, m("GET")]), Cond::False);
        assert_eq!(Cond::any(vec![Cond::False, m("GET")]), m("GET"));
        assert_eq!(Cond::any(vec![Cond::True, m("GET")]), Cond::True);
        assert_eq!(Cond::all(vec![]), Cond::True);
        assert_eq!(Cond::any(vec![]), Cond::False);
        assert_eq!(m("GET").negate().negate(), m("GET"));
    }

    #[test]
    fn an_absent_attribute_never_matches_but_its_negation_holds() {
        let c = Cond::Match(Attr::Header("x".into()), Test::Present);
        let none = |_: &Attr| None;
        assert!(!c.holds(&none));
        assert!(c.negate().holds(&none));
    }
}

/// A value a Rego term stands for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Term {
    /// A constant (strings, numbers, booleans, null, arrays and objects of them).
    Const(Json),
    /// A set literal of constants (sorted, deduplicated). Kept apart from arrays: a set
    /// has no indexes, so only membership (`x in s`, `some x in s`) and truthiness are
    /// read; `s[0]` or `some k, v in s` keep Wasm.
    Set(Vec<Json>),
    /// A request attribute (a string when present).
    Attr(Attr),
    /// Undefined (a missing data key or a constant input field that is absent).
    Undefined,
}

/// Where a span is, as `file:line`.
pub(super) fn loc(span: &Span) -> Loc {
    Loc {
        file: span.source.get_path().to_string(),
        line: span.line,
    }
}

/// "Not native": the construct at `span` is outside what the compiler understands.
pub(super) fn no(span: &Span, what: impl Into<String>) -> NotNative {
    NotNative {
        what: what.into(),
        at: Some(loc(span)),
    }
}
