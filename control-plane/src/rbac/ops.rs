//! The compiler's operations on terms: comparisons, membership, lookups into constants,
//! and the principal tests Envoy's `authenticated` matcher can make exactly. No I/O.

use regorus::unstable::{Expr, Span};
use serde_json::Value as Json;

use super::ir::{no, Attr, Cond, Term, Test};
use super::NotNative;

pub(super) fn is_true(expr: &Expr) -> bool {
    matches!(expr, Expr::Bool { value, .. } if value.as_bool().ok() == Some(&true))
}

pub(super) fn bool_cond(b: bool) -> Cond {
    if b {
        Cond::True
    } else {
        Cond::False
    }
}

/// A test on a field; the principal is only ever a `spiffe://` ID, which Envoy's
/// `authenticated` matcher also compares with DNS SANs and the subject, so only tests
/// that no subject (`O=...`) or DNS name can pass are kept.
pub(super) fn attr_test(span: &Span, attr: Attr, test: Test) -> Result<Cond, NotNative> {
    const SCHEME: &str = "spiffe://";
    let constant = match &test {
        Test::Present => "",
        Test::Exact(c) | Test::Prefix(c) | Test::Suffix(c) | Test::Contains(c) | Test::Regex(c) => {
            c
        }
    };
    if constant.contains('\u{FFFD}') {
        // The filter shows invalid UTF-8 as U+FFFD; Envoy compares the raw bytes.
        return Err(no(span, "a constant containing U+FFFD"));
    }
    if let (Attr::Header(name), false) = (&attr, test == Test::Present) {
        return Err(header_value(span, name));
    }
    if attr != Attr::Principal {
        return Ok(Cond::Match(attr, test));
    }
    Ok(match test {
        Test::Present => Cond::Match(attr, Test::Present),
        Test::Exact(c) if c.starts_with(SCHEME) => Cond::Match(attr, Test::Exact(c)),
        Test::Exact(_) => Cond::False,
        Test::Prefix(c) if c.starts_with(SCHEME) => Cond::Match(attr, Test::Prefix(c)),
        Test::Prefix(c) if SCHEME.starts_with(c.as_str()) => Cond::Match(attr, Test::Present),
        Test::Prefix(_) => Cond::False,
        Test::Suffix(_) | Test::Contains(_) | Test::Regex(_) => {
            return Err(no(span, "`endswith`/`contains` on the source principal (Envoy would also match the certificate subject)"))
        }
    })
}

/// A test on a header's value: Envoy's RBAC header matcher tries each value of a
/// repeated header on its own, while the policy sees them joined with `,`, so only
/// presence and absence decide alike.
pub(super) fn header_value(span: &Span, name: &str) -> NotNative {
    no(
        span,
        format!("a test on the value of header {name:?} (a repeated header matches per value in RBAC, joined in Rego)"),
    )
}

/// Defined-ness of a bound term (`x := input...` fails when the field is absent).
pub(super) fn defined(term: &Term) -> Cond {
    match term {
        Term::Undefined => Cond::False,
        Term::Const(_) | Term::Set(_) => Cond::True,
        Term::Attr(a) => Cond::Match(a.clone(), Test::Present),
    }
}

pub(super) fn index(span: &Span, term: Term, keys: &[Json]) -> Result<Term, NotNative> {
    let mut current = term;
    for key in keys {
        current = match current {
            Term::Undefined => Term::Undefined,
            Term::Attr(_) => return Err(no(span, "a lookup inside a request field")),
            Term::Set(_) => return Err(no(span, "a lookup in a set (`s[x]`)")),
            Term::Const(Json::Object(map)) => match key {
                Json::String(k) => map.get(k).cloned().map_or(Term::Undefined, Term::Const),
                _ => Term::Undefined,
            },
            Term::Const(Json::Array(items)) => match key.as_u64() {
                Some(i) if key.is_u64() => items
                    .get(usize::try_from(i).unwrap_or(usize::MAX))
                    .cloned()
                    .map_or(Term::Undefined, Term::Const),
                _ => return Err(no(span, "an array lookup by a non-integer key")),
            },
            Term::Const(_) => Term::Undefined,
        };
    }
    Ok(current)
}

/// `==` (`equal`) or `!=` between two terms.
pub(super) fn compare(span: &Span, l: &Term, r: &Term, equal: bool) -> Result<Cond, NotNative> {
    match (l, r) {
        (Term::Undefined, _) | (_, Term::Undefined) => Ok(Cond::False),
        (Term::Set(_), _) | (_, Term::Set(_)) => Err(no(span, "a comparison with a set")),
        (Term::Attr(Attr::Header(name)), _) | (_, Term::Attr(Attr::Header(name))) => {
            Err(header_value(span, name))
        }
        (Term::Const(a), Term::Const(b)) => {
            let comparable = |v: &Json| matches!(v, Json::String(_) | Json::Bool(_) | Json::Null);
            if !(comparable(a) && comparable(b)) {
                return Err(no(span, "a comparison of numbers or collections"));
            }
            Ok(bool_cond((a == b) == equal))
        }
        (Term::Attr(a), Term::Const(c)) | (Term::Const(c), Term::Attr(a)) => {
            let present = Cond::Match(a.clone(), Test::Present);
            let eq = match c {
                Json::String(s) => attr_test(span, a.clone(), Test::Exact(s.clone()))?,
                // A string field never equals a non-string.
                _ => Cond::False,
            };
            Ok(if equal {
                eq
            } else {
                Cond::all(vec![present, eq.negate()])
            })
        }
        (Term::Attr(_), Term::Attr(_)) => Err(no(span, "a comparison between two request fields")),
    }
}

/// `value in collection`.
pub(super) fn membership(span: &Span, value: &Term, coll: &Term) -> Result<Cond, NotNative> {
    let items: Vec<Json> = match coll {
        Term::Undefined => return Ok(Cond::False),
        Term::Const(Json::Array(items)) | Term::Set(items) => items.clone(),
        Term::Const(Json::Object(map)) => map.values().cloned().collect(),
        Term::Const(_) => return Ok(Cond::False),
        Term::Attr(_) => return Err(no(span, "`in` over a request field")),
    };
    let mut alternatives = Vec::new();
    for item in &items {
        alternatives.push(compare(span, value, &Term::Const(item.clone()), true)?);
    }
    Ok(Cond::any(alternatives))
}

/// Longest pattern compiled to RBAC, in bytes.
const MAX_REGEX_LEN: usize = 64;
/// Most `|` alternatives in one pattern.
const MAX_REGEX_ALTERNATIVES: usize = 16;

/// Whether the pattern stays well under Envoy's RE2 program-size limit (runtime
/// `re2.max_program_size.error_level`, 100 by default; over it Envoy refuses the whole
/// filter config, so the listener would not load). In the subset `portable_regex`
/// admits, each byte costs at most about one RE2 instruction (a literal, a quantifier's
/// or `|`'s split, a group's captures, an ASCII class range), `.` and `[^` up to ~8
/// (UTF-8 any-char), and the `(?s:.*)` wrappers of `searching` ~20. So 64 bytes, with
/// `.`/`[^` counted as 8, plus the wrappers stays below 100; the alternative cap keeps
/// data-built alternations (400 of them gave "RE2 program size 103 > max 100") out.
pub(super) fn small_regex(p: &str) -> bool {
    let wide = p.matches('.').count() + p.matches("[^").count();
    p.len() + 7 * wide <= MAX_REGEX_LEN && p.matches('|').count() < MAX_REGEX_ALTERNATIVES
}

/// A pattern Envoy (RE2, whole-value match) reads as `regex.match` (Rust's `regex`,
/// search) does: `p` somewhere in the value.
pub(super) fn searching(p: &str) -> String {
    format!("(?s:.*)(?:{p})(?s:.*)")
}

/// Whether RE2 and Rust's `regex` read `p` alike and both accept it: ASCII letters,
/// digits and `/_-~:=,@!&%'` as literals; `.`; `^`/`$`; `|`; plain groups `( )`;
/// bracket classes; `*`, `+`, `?` (and their lazy forms) after an atom; `\` before
/// punctuation. No flags, counted repetition, `\w`-style classes or Unicode classes
/// (their meanings differ between the two engines). Anything else keeps Wasm.
///
/// Unless `any_char` (a subject that is always ASCII, the method), no `.` and no negated
/// class either: the filter shows bytes that are not UTF-8 as U+FFFD, one per invalid
/// sequence, while RE2 reads them one per byte, so only ASCII literals and classes are
/// sure to match alike.
pub(super) fn portable_regex(p: &str, any_char: bool) -> bool {
    const LITERAL: &[u8] = b"/_-~:=,@!&%'";
    const PUNCT: &[u8] = b".^$|()[]*+?/-\\";
    // Rust's `regex` reads `&&`, `--` and `~~` in a class as set operations (intersection,
    // difference, symmetric difference); RE2 reads literals and a range. Refused anywhere.
    if ["&&", "--", "~~"].iter().any(|op| p.contains(op)) {
        return false;
    }
    let bytes = p.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    // Whether the previous token can take a quantifier.
    let mut atom = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                if !bytes.get(i + 1).is_some_and(|n| PUNCT.contains(n)) {
                    return false;
                }
                i += 2;
                atom = true;
                continue;
            }
            _ if in_class => {
                if b == b']' {
                    in_class = false;
                    atom = true;
                } else if !(b.is_ascii_alphanumeric() || LITERAL.contains(&b) || b == b'.') {
                    return false;
                }
            }
            b'[' => {
                in_class = true;
                // `[]` and `[^]` would read differently: a class must not open with `]`.
                let negated = bytes.get(i + 1) == Some(&b'^');
                if negated && !any_char {
                    return false;
                }
                let first = if negated { i + 2 } else { i + 1 };
                if matches!(bytes.get(first), Some(b']') | None) {
                    return false;
                }
                atom = false;
                i = first;
                continue;
            }
            b'*' | b'+' | b'?' => {
                if !atom {
                    return false;
                }
                // One lazy `?` may follow; nothing else may.
                if bytes.get(i + 1) == Some(&b'?') {
                    i += 1;
                }
                atom = false;
            }
            b'(' => {
                if bytes.get(i + 1) == Some(&b'?') {
                    return false;
                }
                atom = false;
            }
            b'.' if !any_char => return false,
            b')' | b'.' => atom = true,
            b'^' | b'$' | b'|' => atom = false,
            _ if b.is_ascii_alphanumeric() || LITERAL.contains(&b) => atom = true,
            _ => return false,
        }
        i += 1;
    }
    !in_class && regex::Regex::new(&searching(p)).is_ok()
}
