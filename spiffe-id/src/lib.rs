//! SPIFFE IDs and trust domains, parsed exactly as the SPIFFE ID specification says
//! (SPIFFE-ID.md §2): `spiffe://` + trust domain of `[a-z0-9._-]` + optional path of
//! `/`-separated segments of `[A-Za-z0-9._-]`, no empty, `.` or `..` segment, no trailing
//! slash, no query, fragment, port, userinfo or percent-encoding, at most 2048 bytes.
//!
//! Uppercase in the trust domain is rejected, not folded: an ID that another component
//! would lowercase is a different string, and silently accepting it hides config mistakes.
//!
//! Trust domains are also held to DNS host-name rules (RFC 1123 §2.1, RFC 1035 §2.3.4):
//! dot-separated labels of 1 to 63 bytes of `[a-z0-9-]`, no label starting or ending with
//! `-`, at most 253 bytes. The SPIFFE spec alone allows more (`_`, empty labels), but
//! Warden derives host names from the trust domain (the xDS server's TLS name
//! `warden-control-plane.<td>`), and TLS stacks refuse such names as SNI: a trust domain
//! that passes here yields a valid host name everywhere.
//!
//! These types do no I/O and have no heavy dependencies (`thiserror`, `serde`), so the
//! same parser serves the control plane (config, CA, Workload API), the Envoy filter
//! (the verified caller) and the browser playground, all built from this one crate.
//!
//! Why not the `spiffe` crate's `SpiffeId`/`TrustDomain`: it lowercases an uppercase
//! trust domain instead of rejecting it and accepts `_` and other non-host-name trust
//! domains, and its ID types sit in a crate whose other features pull tonic/prost 0.14.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const SCHEME: &str = "spiffe://";
/// The SPIFFE ID spec limits a whole ID (scheme included) to 2048 bytes.
pub const MAX_ID_LEN: usize = 2048;
/// The trust domain is a DNS host name: at most 253 bytes (RFC 1035 §2.3.4; the SPIFFE
/// spec's own cap is 255).
pub const MAX_TRUST_DOMAIN_LEN: usize = 253;
/// A DNS label is at most 63 bytes (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty")]
    Empty,
    #[error("scheme must be `spiffe://`")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error(
        "trust domain has a character that is not allowed: {0:?} (only a-z, 0-9, `.` and `-`; uppercase is not allowed)"
    )]
    BadTrustDomainChar(char),
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    #[error("trust domain has an empty label (a leading, trailing or doubled `.`)")]
    EmptyLabel,
    #[error("trust domain label `{0}` is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong(String),
    #[error("trust domain label `{0}` starts or ends with `-`")]
    LabelHyphen(String),
    #[error("trust domain `{0}` ends in an all-numeric label, which host names may not (RFC 3696 §2; TLS stacks read it as an IP address)")]
    NumericLastLabel(String),
    #[error("trust domain has `_`, which the SPIFFE spec allows but host names do not (Warden derives the TLS name `warden-control-plane.<trust domain>` from it)")]
    Underscore,
    #[error("a workload ID needs a path after the trust domain (X509-SVID spec §3.1 and §5.2; JWT-SVID `sub`): `{0}` names the trust domain itself")]
    NoPath(String),
    #[error("path segment has a character that is not allowed: {0:?} (only A-Z, a-z, 0-9, `.`, `-`, `_`)")]
    BadPathChar(char),
    #[error("path has an empty segment (`//` or a trailing `/`)")]
    EmptySegment,
    #[error("path has a `.` or `..` segment")]
    DotSegment,
    #[error("ID is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("ID is not in trust domain {expected} (it is in {actual})")]
    ForeignTrustDomain { expected: String, actual: String },
}

/// A SPIFFE trust domain, e.g. `example.org` (no scheme).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The bare name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://example.org`.
    pub fn to_spiffe_id_string(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }

    /// The ID of the trust domain itself (no path), as carried by CA certificates.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            full: self.to_spiffe_id_string(),
            td_len: self.0.len(),
        }
    }

    /// Parse `spiffe://<td>/path` and check that it is in this trust domain.
    pub fn parse_member(&self, id: &str) -> Result<SpiffeId, IdError> {
        let id: SpiffeId = id.parse()?;
        if id.trust_domain_str() != self.0 {
            return Err(IdError::ForeignTrustDomain {
                expected: self.0.clone(),
                actual: id.trust_domain_str().to_owned(),
            });
        }
        Ok(id)
    }

    /// [`parse_member`](Self::parse_member) for an ID that becomes a leaf SVID (a
    /// workload): it must have a path.
    pub fn parse_workload(&self, id: &str) -> Result<SpiffeId, IdError> {
        self.parse_member(id)?.require_path()
    }
}

fn check_trust_domain(td: &str) -> Result<(), IdError> {
    if td.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong);
    }
    if let Some(c) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(IdError::BadTrustDomainChar(c));
    }
    if td.contains('_') {
        return Err(IdError::Underscore);
    }
    for label in td.split('.') {
        if label.is_empty() {
            return Err(IdError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(IdError::LabelTooLong(label.to_owned()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(IdError::LabelHyphen(label.to_owned()));
        }
    }
    if td
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(IdError::NumericLastLabel(td.to_owned()));
    }
    Ok(())
}

impl FromStr for TrustDomain {
    type Err = IdError;

    /// Accepts `example.org` or `spiffe://example.org` (no path).
    fn from_str(s: &str) -> Result<Self, IdError> {
        let td = s.strip_prefix(SCHEME).unwrap_or(s);
        check_trust_domain(td)?;
        Ok(TrustDomain(td.to_owned()))
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<TrustDomain> for String {
    fn from(td: TrustDomain) -> String {
        td.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

/// A validated SPIFFE ID, e.g. `spiffe://example.org/ns/demo/sa/backend`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    full: String,
    td_len: usize,
}

impl SpiffeId {
    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_str().to_owned())
    }

    fn trust_domain_str(&self) -> &str {
        &self.full[SCHEME.len()..SCHEME.len() + self.td_len]
    }

    /// The path, `""` for a trust domain ID, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        &self.full[SCHEME.len() + self.td_len..]
    }

    /// Whether this ID is in `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_str() == td.as_str()
    }

    /// This ID if it has a path, as every leaf SVID's ID must (X509-SVID spec §3.1 and
    /// §5.2; likewise a JWT-SVID `sub`); the trust domain's own ID is for CAs only.
    pub fn require_path(self) -> Result<SpiffeId, IdError> {
        if self.path().is_empty() {
            return Err(IdError::NoPath(self.full));
        }
        Ok(self)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(IdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(td)?;
        if !path.is_empty() {
            // Path starts with '/': every segment after it must be non-empty and legal.
            for seg in path[1..].split('/') {
                match seg {
                    "" => return Err(IdError::EmptySegment),
                    "." | ".." => return Err(IdError::DotSegment),
                    _ => {}
                }
                if let Some(c) = seg
                    .chars()
                    .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
                {
                    return Err(IdError::BadPathChar(c));
                }
            }
        }
        Ok(SpiffeId {
            full: s.to_owned(),
            td_len: td.len(),
        })
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.full
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn well_formed_ids_parse_and_expose_their_parts() {
        let id: SpiffeId = "spiffe://example.org/ns/demo/sa/backend".parse().unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.path(), "/ns/demo/sa/backend");
        let td_id: SpiffeId = "spiffe://example.org".parse().unwrap();
        assert_eq!(td_id.path(), "");
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_reason() {
        let cases: &[(&str, IdError)] = &[
            ("", IdError::Empty),
            ("http://example.org/a", IdError::WrongScheme),
            ("SPIFFE://example.org/a", IdError::WrongScheme),
            ("spiffe:///a", IdError::MissingTrustDomain),
            ("spiffe://Example.org/a", IdError::BadTrustDomainChar('E')),
            (
                "spiffe://example.org:8080/a",
                IdError::BadTrustDomainChar(':'),
            ),
            (
                "spiffe://user@example.org/a",
                IdError::BadTrustDomainChar('@'),
            ),
            ("spiffe://example.org/a/", IdError::EmptySegment),
            ("spiffe://example.org//a", IdError::EmptySegment),
            ("spiffe://example.org/", IdError::EmptySegment),
            ("spiffe://example.org/./a", IdError::DotSegment),
            ("spiffe://example.org/a/..", IdError::DotSegment),
            ("spiffe://example.org/a%20b", IdError::BadPathChar('%')),
            ("spiffe://example.org/a?x=1", IdError::BadPathChar('?')),
            ("spiffe://example.org/a#frag", IdError::BadPathChar('#')),
            ("spiffe://example.org/a b", IdError::BadPathChar(' ')),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<SpiffeId>().unwrap_err(), *want, "{input}");
        }
    }

    #[test]
    fn ids_longer_than_2048_bytes_are_rejected() {
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_LEN));
        assert_eq!(long.parse::<SpiffeId>().unwrap_err(), IdError::TooLong);
        let exact = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_LEN - 21));
        assert_eq!(exact.len(), MAX_ID_LEN);
        assert!(exact.parse::<SpiffeId>().is_ok());
    }

    #[test]
    fn uppercase_trust_domain_is_rejected_not_folded() {
        assert!("Example.org".parse::<TrustDomain>().is_err());
        assert!("spiffe://EXAMPLE.org/x".parse::<SpiffeId>().is_err());
    }

    #[test]
    fn member_check_refuses_ids_from_another_trust_domain() {
        let td: TrustDomain = "example.org".parse().unwrap();
        assert!(td.parse_member("spiffe://example.org/a").is_ok());
        assert_eq!(
            td.parse_member("spiffe://evil.org/a").unwrap_err(),
            IdError::ForeignTrustDomain {
                expected: "example.org".into(),
                actual: "evil.org".into()
            }
        );
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let ok: SpiffeId = serde_json::from_str("\"spiffe://a.b/c\"").unwrap();
        assert_eq!(ok.as_str(), "spiffe://a.b/c");
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://a.b/c/\"").is_err());
    }

    #[test]
    fn trust_domains_that_are_not_host_names_are_rejected() {
        let long_label = "a".repeat(64);
        let cases: Vec<(String, IdError)> = vec![
            ("example..org".into(), IdError::EmptyLabel),
            (".x".into(), IdError::EmptyLabel),
            ("x.".into(), IdError::EmptyLabel),
            (".".into(), IdError::EmptyLabel),
            (
                "10.0.0.1".into(),
                IdError::NumericLastLabel("10.0.0.1".into()),
            ),
            (
                "example.123".into(),
                IdError::NumericLastLabel("example.123".into()),
            ),
            ("a-.org".into(), IdError::LabelHyphen("a-".into())),
            ("-a.org".into(), IdError::LabelHyphen("-a".into())),
            ("a_b.org".into(), IdError::Underscore),
            (
                format!("{long_label}.org"),
                IdError::LabelTooLong(long_label.clone()),
            ),
            (
                vec!["a".repeat(63); 4].join("."),
                IdError::TrustDomainTooLong,
            ),
        ];
        for (td, want) in &cases {
            assert_eq!(td.parse::<TrustDomain>().unwrap_err(), *want, "{td}");
            let id = format!("spiffe://{td}/x");
            assert_eq!(id.parse::<SpiffeId>().unwrap_err(), *want, "{id}");
        }
        let max_label = "a".repeat(63);
        assert!(format!("{max_label}.org").parse::<TrustDomain>().is_ok());
        assert!("a-b.example-1.org".parse::<TrustDomain>().is_ok());
        assert!("localhost".parse::<TrustDomain>().is_ok());
        assert!("123.example.org".parse::<TrustDomain>().is_ok());
    }

    #[test]
    fn workload_ids_need_a_path() {
        let td: TrustDomain = "example.org".parse().unwrap();
        assert_eq!(
            td.parse_workload("spiffe://example.org").unwrap_err(),
            IdError::NoPath("spiffe://example.org".into())
        );
        assert!(td.parse_workload("spiffe://example.org/a").is_ok());
        assert!(td.parse_member("spiffe://example.org").is_ok());
    }

    fn td_strategy() -> impl Strategy<Value = String> {
        (
            prop::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 0..4),
            "[a-z]([a-z0-9-]{0,8}[a-z0-9])?",
        )
            .prop_map(|(mut labels, last)| {
                labels.push(last);
                labels.join(".")
            })
    }
    fn segment_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,12}".prop_filter("no dot segments", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip_through_display(td in td_strategy(), segs in prop::collection::vec(segment_strategy(), 0..6)) {
            let s = format!("spiffe://{td}{}", segs.iter().map(|s| format!("/{s}")).collect::<String>());
            let id: SpiffeId = s.parse().unwrap();
            prop_assert_eq!(id.to_string(), s.clone());
            prop_assert_eq!(id.trust_domain().to_string(), td);
            let again: SpiffeId = id.to_string().parse().unwrap();
            prop_assert_eq!(again, id);
        }

        #[test]
        fn any_illegal_character_in_a_path_is_rejected(td in td_strategy(), seg in segment_strategy(), bad in "[^A-Za-z0-9._/-]") {
            let s = format!("spiffe://{td}/{seg}{bad}");
            prop_assert!(s.parse::<SpiffeId>().is_err());
        }

        #[test]
        fn no_string_makes_the_parsers_panic(s in "\\PC{0,300}", bytes in "(spiffe://)?[a-z0-9._/-]{0,80}") {
            let _ = s.parse::<SpiffeId>();
            let _ = s.parse::<TrustDomain>();
            let _ = bytes.parse::<SpiffeId>();
            if let Ok(td) = bytes.parse::<TrustDomain>() {
                // Every accepted trust domain yields a host name TLS accepts.
                let host = format!("warden-control-plane.{td}");
                prop_assert!(rustls_pki_types::DnsName::try_from(host.as_str()).is_ok(), "{}", host);
            }
        }

        #[test]
        fn any_illegal_character_in_a_trust_domain_is_rejected(td in td_strategy(), bad in "[^a-z0-9._/-]") {
            let s = format!("spiffe://{td}{bad}/x");
            prop_assert!(s.parse::<SpiffeId>().is_err());
        }
    }
}
