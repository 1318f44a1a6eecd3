//! `parsed_path` and `parsed_query` exactly as OPA-Envoy computes them from `:path`
//! (opa-envoy-plugin `envoyauth/request.go`): Go's `url.Parse` of the whole value, the
//! decoded `URL.Path` with leading slashes trimmed split on `/`, and `URL.Query()`.
//!
//! The Go rules followed (net/url, Go ≥ 1.17): a control byte (< 0x20 or 0x7f) anywhere
//! is an error; the fragment is cut at the first `#`; the query at the first `?`; a path
//! starting with `//` (but not `///`) has an authority, which is not part of the path;
//! a `%` not followed by two hex digits in the path or fragment is an error; the path
//! is fully percent-decoded (so `%2F` becomes `/` and splits). The query is parsed
//! leniently as `URL.Query()` does: pairs are split on `&`, a pair containing `;` is
//! dropped, a pair whose name or value has a bad escape is dropped, `+` is a space,
//! empty pairs are skipped, a pair without `=` has the empty value. No I/O.

use std::collections::BTreeMap;

/// Why Go's `url.Parse` would refuse a `:path` (OPA-Envoy then fails the check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// A byte below 0x20 or 0x7f.
    #[error("invalid control character in URL")]
    ControlCharacter,
    /// `%` not followed by two hex digits.
    #[error("invalid URL escape {0:?}")]
    Escape(String),
    /// The authority of a `//host/...` path is not a valid host.
    #[error("invalid authority {0:?}")]
    Authority(String),
    /// No scheme and a colon in the first segment (`a:b`).
    #[error("first path segment in URL cannot contain colon")]
    ColonInFirstSegment,
}

/// Query parameters: name → values in order.
pub type Query = BTreeMap<String, Vec<String>>;

/// The decoded path segments and the query of a request target.
pub fn parse(target: &str) -> Result<(Vec<String>, Query), UrlError> {
    if target.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(UrlError::ControlCharacter);
    }
    let (rest, fragment) = target.split_once('#').unwrap_or((target, ""));
    unescape(fragment, false)?;
    if rest == "*" {
        return Ok((vec!["*".to_string()], Query::new()));
    }
    let (rest, raw_query) = match rest.strip_suffix('?') {
        Some(before) if !before.contains('?') => (before, ""),
        _ => rest.split_once('?').unwrap_or((rest, "")),
    };
    let path = if let Some(after) = rest.strip_prefix("//").filter(|_| !rest.starts_with("///")) {
        let (authority, path) = match after.find('/') {
            Some(at) => after.split_at(at),
            None => (after, ""),
        };
        check_authority(authority)?;
        path
    } else {
        if !rest.starts_with('/') && has_scheme_like_colon(rest) {
            return Err(UrlError::ColonInFirstSegment);
        }
        rest
    };
    let decoded = unescape(path, false)?;
    let segments = decoded
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    Ok((segments, parse_query(raw_query)))
}

/// The errors of [`parse`] without building anything (run on every request).
pub fn validate(target: &str) -> Result<(), UrlError> {
    if target.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(UrlError::ControlCharacter);
    }
    let (rest, fragment) = target.split_once('#').unwrap_or((target, ""));
    check_escapes(fragment)?;
    let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
    if rest.starts_with("//") && !rest.starts_with("///") {
        // Rare (Envoy merges slashes before the filter): the full parse decides.
        return parse(target).map(|_| ());
    }
    if rest != "*" && !rest.starts_with('/') && has_scheme_like_colon(rest) {
        return Err(UrlError::ColonInFirstSegment);
    }
    check_escapes(rest)
}

/// Every `%` is followed by two hex digits.
fn check_escapes(s: &str) -> Result<(), UrlError> {
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        let ok = matches!(
            (
                bytes.get(i + 1).and_then(|&h| hex(h)),
                bytes.get(i + 2).and_then(|&l| hex(l))
            ),
            (Some(_), Some(_))
        );
        if !ok {
            let end = (i + 3).min(s.len());
            return Err(UrlError::Escape(
                String::from_utf8_lossy(&bytes[i..end]).into_owned(),
            ));
        }
    }
    Ok(())
}

/// Go's `ParseQuery`, keeping what parsed (as `URL.Query()` does).
pub fn parse_query(raw: &str) -> Query {
    let mut query = Query::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Ok(name), Ok(value)) = (unescape(name, true), unescape(value, true)) {
            query.entry(name).or_default().push(value);
        }
    }
    query
}

/// In Go, a relative reference without a scheme must not have `:` in its first segment.
/// A leading letter followed by scheme characters up to `:` would be a scheme instead;
/// both cases are outside what Envoy sends (`:path` starts with `/`), so refuse them.
fn has_scheme_like_colon(rest: &str) -> bool {
    rest.split('/')
        .next()
        .is_some_and(|first| first.contains(':'))
}

/// Go's host rules, simplified to what matters here: optional `userinfo@`, a host of
/// unreserved characters and sub-delimiters (or a bracketed IPv6 literal), an optional
/// numeric port.
fn check_authority(authority: &str) -> Result<(), UrlError> {
    let bad = || UrlError::Authority(authority.to_string());
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host.strip_prefix('[') {
        let (_, after) = v6.split_once(']').ok_or_else(bad)?;
        ("", after.strip_prefix(':').unwrap_or(after))
    } else {
        host.rsplit_once(':').unwrap_or((host, ""))
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80 || b"-._~!$&'()*+,;=".contains(&b);
    if !host.bytes().all(allowed) {
        return Err(bad());
    }
    Ok(())
}

/// Percent-decodes; `query` also turns `+` into a space. Invalid UTF-8 after decoding
/// is replaced by U+FFFD (Go keeps the bytes; Rego strings are UTF-8).
pub fn unescape(s: &str, query: bool) -> Result<String, UrlError> {
    if !(s.contains('%') || query && s.contains('+')) {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let pair = (
                    bytes.get(i + 1).and_then(|&h| hex(h)),
                    bytes.get(i + 2).and_then(|&l| hex(l)),
                );
                let (Some(h), Some(l)) = pair else {
                    let end = (i + 3).min(s.len());
                    return Err(UrlError::Escape(
                        String::from_utf8_lossy(&bytes[i..end]).into_owned(),
                    ));
                };
                out.push(h << 4 | l);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(target: &str) -> Result<Vec<String>, UrlError> {
        parse(target).map(|(segments, _)| segments)
    }

    fn query(target: &str) -> Query {
        parse(target).map(|(_, q)| q).unwrap_or_default()
    }

    fn q(pairs: &[(&str, &[&str])]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn the_issue_table_matches_opa_envoy() {
        assert_eq!(path("/a%2Fb"), Ok(vec!["a".into(), "b".into()]));
        assert!(matches!(path("/files/100%"), Err(UrlError::Escape(_))));
        assert_eq!(path("//admin/x"), Ok(vec!["x".into()]));
        assert_eq!(query("/p?a=1;b=2&c=3"), q(&[("c", &["3"])]));
        assert_eq!(query("/p?id=evil%&id=good"), q(&[("id", &["good"])]));
    }

    // Vectors from Go's net/url documentation and tests (url.Parse, ParseQuery).
    #[test]
    fn go_net_url_documented_behaviour() {
        assert_eq!(path("/"), Ok(vec!["".into()]));
        assert_eq!(path(""), Ok(vec!["".into()]));
        assert_eq!(path("/a/b/"), Ok(vec!["a".into(), "b".into(), "".into()]));
        assert_eq!(path("///x"), Ok(vec!["x".into()]));
        assert_eq!(path("/a+b%20c"), Ok(vec!["a+b c".into()]));
        assert_eq!(path("/x#frag"), Ok(vec!["x".into()]));
        assert!(path("/x#%zz").is_err());
        assert!(matches!(path("/a\u{7f}"), Err(UrlError::ControlCharacter)));
        assert!(matches!(path("/a\tb"), Err(UrlError::ControlCharacter)));
        assert!(matches!(path("/%4"), Err(UrlError::Escape(_))));
        assert!(matches!(path("/%zz"), Err(UrlError::Escape(_))));
        assert!(matches!(path("//ho st/x"), Err(UrlError::Authority(_))));
        assert!(matches!(path("//host:8x/x"), Err(UrlError::Authority(_))));
        assert_eq!(path("//user@host:80/x/y"), Ok(vec!["x".into(), "y".into()]));
        assert!(matches!(path("a:b"), Err(UrlError::ColonInFirstSegment)));
        // ParseQuery: "x=1&y=2&y=3" → x:[1] y:[2 3]; `+` is a space; no `=` is "".
        assert_eq!(
            query("/?x=1&y=2&y=3&z"),
            q(&[("x", &["1"]), ("y", &["2", "3"]), ("z", &[""])])
        );
        assert_eq!(query("/?a+b=c%20d&&"), q(&[("a b", &["c d"])]));
        assert_eq!(query("/?=v"), q(&[("", &["v"])]));
        assert_eq!(query("/p?"), Query::new());
        assert_eq!(query("/p?a=1?b"), q(&[("a", &["1?b"])]));
    }

    #[test]
    fn validate_agrees_with_parse() {
        for target in [
            "/",
            "",
            "*",
            "/a%2Fb",
            "/files/100%",
            "//admin/x",
            "//ho st/x",
            "/x#%zz",
            "/x?%zz",
            "/a\u{7f}",
            "a:b",
            "/p?a=1;b=2",
            "/%c0%a7",
            "///x",
            "/a/%4",
            "/%zz",
        ] {
            assert_eq!(
                validate(target).is_ok(),
                parse(target).is_ok(),
                "{target:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_after_decoding_is_replaced_not_a_panic() {
        assert_eq!(path("/%c0%a7"), Ok(vec!["\u{fffd}\u{fffd}".into()]));
    }
}
