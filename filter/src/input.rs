//! Request attributes and the OPA-Envoy-shaped Rego input built from them.
//!
//! Shape (as the OPA-Envoy plugin builds it from an ext_authz `CheckRequest`):
//! `input.attributes.source.principal`, `input.attributes.destination.principal`,
//! `input.attributes.request.http.{method,path,host,scheme,headers}`, `input.parsed_path`
//! (path segments, percent-decoded, no query), `input.parsed_query` (name → list of
//! values), and `input.source_principal`.
//!
//! Identity comes only from the verified peer: a [`Peer::Verified`] is built by the filter
//! from `connection.peer_certificate_valid` and `connection.uri_san_peer_certificate`.
//! Without one, `source.principal` and `source_principal` are absent (undefined in Rego).
//! Client-supplied identity headers (`x-spiffe-id`, `x-forwarded-client-cert`) are removed
//! from `input…headers` so no policy can mistake them for identity; the filter sets its own
//! `x-spiffe-id` for the app after an allow. This module does no I/O.

use std::collections::BTreeMap;

use regorus::Value;

use crate::policy::InputNeeds;

/// Headers a client could forge to claim an identity; never part of the input.
pub const IDENTITY_HEADERS: [&str; 2] = ["x-spiffe-id", "x-forwarded-client-cert"];

/// The peer of the connection, as the TLS layer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A certificate that chains to a trusted bundle, with this SPIFFE ID as URI SAN.
    Verified(String),
    /// Plaintext, no certificate, an unverified certificate, or no SPIFFE URI SAN.
    None,
}

impl Peer {
    /// Builds the peer from the two connection properties Envoy exposes.
    /// `valid` is `connection.peer_certificate_valid`; `uri_san` is
    /// `connection.uri_san_peer_certificate`. Anything but a valid certificate carrying a
    /// `spiffe://` URI is no identity.
    pub fn from_connection(valid: bool, uri_san: Option<&str>) -> Self {
        match uri_san {
            Some(id) if valid && id.starts_with("spiffe://") && id.len() > "spiffe://".len() => {
                Self::Verified(id.to_string())
            }
            _ => Self::None,
        }
    }

    /// The SPIFFE ID, if verified.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Self::Verified(id) => Some(id),
            Self::None => None,
        }
    }
}

/// What the filter knows about one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    /// The verified peer.
    pub peer: Peer,
    /// `:method`.
    pub method: String,
    /// `:path` including the query string.
    pub path: String,
    /// `:authority`.
    pub host: String,
    /// `:scheme`.
    pub scheme: String,
    /// Lowercase header names with values (pseudo-headers included, as ext_authz sends them).
    pub headers: Vec<(String, String)>,
}

impl RequestAttributes {
    /// Builds attributes from a header list that includes the HTTP/2-style pseudo-headers
    /// (`:method`, `:path`, `:authority`, `:scheme`), which is how Envoy exposes them.
    pub fn from_headers(peer: Peer, headers: Vec<(String, String)>) -> Self {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Self {
            peer,
            method: find(":method"),
            path: find(":path"),
            host: find(":authority"),
            scheme: find(":scheme"),
            headers,
        }
    }

    /// The full Rego input document (every field), as [`InputShape`] builds it.
    pub fn to_input(&self, destination_principal: &str) -> Value {
        InputShape::new(destination_principal, InputNeeds::ALL).build(self)
    }
}

/// Builds input documents for one policy: the keys and this workload's principal are made
/// once, and fields the policy never names ([`InputNeeds`]) are left out, so a request
/// costs as few allocations as its input needs. `method` and `path` are always there.
#[derive(Debug, Clone)]
pub struct InputShape {
    needs: InputNeeds,
    destination: Value,
    keys: Keys,
}

/// Object keys of the input document, made once.
#[derive(Debug, Clone)]
struct Keys {
    attributes: Value,
    source: Value,
    destination: Value,
    principal: Value,
    request: Value,
    http: Value,
    method: Value,
    path: Value,
    host: Value,
    scheme: Value,
    headers: Value,
    parsed_path: Value,
    parsed_query: Value,
    source_principal: Value,
}

impl InputShape {
    /// The shape for a workload (`destination_principal`) and what its policy reads.
    pub fn new(destination_principal: &str, needs: InputNeeds) -> Self {
        let key = Value::from;
        Self {
            needs,
            destination: Value::from(destination_principal),
            keys: Keys {
                attributes: key("attributes"),
                source: key("source"),
                destination: key("destination"),
                principal: key("principal"),
                request: key("request"),
                http: key("http"),
                method: key("method"),
                path: key("path"),
                host: key("host"),
                scheme: key("scheme"),
                headers: key("headers"),
                parsed_path: key("parsed_path"),
                parsed_query: key("parsed_query"),
                source_principal: key("source_principal"),
            },
        }
    }

    /// The input document for one request.
    pub fn build(&self, request: &RequestAttributes) -> Value {
        let (k, needs) = (&self.keys, self.needs);
        let mut http = BTreeMap::new();
        http.insert(k.method.clone(), Value::from(request.method.as_str()));
        http.insert(k.path.clone(), Value::from(request.path.as_str()));
        if needs.host {
            http.insert(k.host.clone(), Value::from(request.host.as_str()));
        }
        if needs.scheme {
            http.insert(k.scheme.clone(), Value::from(request.scheme.as_str()));
        }
        if needs.headers {
            http.insert(k.headers.clone(), headers_object(&request.headers));
        }
        let principal = request.peer.principal().map(Value::from);
        let mut source = BTreeMap::new();
        if let Some(principal) = &principal {
            source.insert(k.principal.clone(), principal.clone());
        }
        let mut destination = BTreeMap::new();
        destination.insert(k.principal.clone(), self.destination.clone());
        let mut req = BTreeMap::new();
        req.insert(k.http.clone(), Value::from(http));
        let mut attributes = BTreeMap::new();
        attributes.insert(k.source.clone(), Value::from(source));
        attributes.insert(k.destination.clone(), Value::from(destination));
        attributes.insert(k.request.clone(), Value::from(req));
        let mut input = BTreeMap::new();
        input.insert(k.attributes.clone(), Value::from(attributes));
        if needs.parsed_path || needs.parsed_query {
            let (path_only, query) = split_query(&request.path);
            if needs.parsed_path {
                let segments: Vec<Value> =
                    parse_path(path_only).into_iter().map(Value::from).collect();
                input.insert(k.parsed_path.clone(), Value::from(segments));
            }
            if needs.parsed_query {
                input.insert(k.parsed_query.clone(), parse_query(query));
            }
        }
        if let Some(principal) = principal {
            input.insert(k.source_principal.clone(), principal);
        }
        Value::from(input)
    }
}

/// Lowercase names; identity headers left out; repeated headers joined with a comma, as
/// Envoy does for ext_authz.
fn headers_object(list: &[(String, String)]) -> Value {
    let mut headers: BTreeMap<Value, Value> = BTreeMap::new();
    for (name, value) in list {
        let name = name.to_ascii_lowercase();
        if IDENTITY_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let key = Value::from(name);
        let joined = match headers.get(&key).and_then(|v| v.as_string().ok()) {
            Some(prev) => format!("{prev},{value}"),
            None => value.clone(),
        };
        headers.insert(key, Value::from(joined));
    }
    Value::from(headers)
}

fn split_query(path: &str) -> (&str, &str) {
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    path.split_once('?').unwrap_or((path, ""))
}

/// Path segments as OPA-Envoy computes them: leading slashes trimmed, split on `/`,
/// each segment percent-decoded. `/` gives `[""]`.
pub fn parse_path(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect()
}

/// Query parameters: name → list of values in order; `+` is a space; pairs without `=`
/// have an empty value; empty pairs are skipped.
fn parse_query(query: &str) -> Value {
    let mut params: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params
            .entry(percent_decode(k, true))
            .or_default()
            .push(Value::from(percent_decode(v, true)));
    }
    Value::from(
        params
            .into_iter()
            .map(|(k, v)| (Value::from(k), Value::from(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Percent-decodes; invalid escapes are kept verbatim, invalid UTF-8 is replaced.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    fn json(v: &Value) -> serde_json::Value {
        serde_json::from_str(&v.to_json_str().unwrap_or_default()).unwrap_or_default()
    }

    fn request(peer: Peer, path: &str, extra: &[(&str, &str)]) -> RequestAttributes {
        let mut headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "backend".to_string()),
            (":scheme".to_string(), "https".to_string()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        RequestAttributes::from_headers(peer, headers)
    }

    #[test]
    fn verified_peer_fills_both_principal_fields() {
        let peer = Peer::from_connection(true, Some("spiffe://example.org/ns/demo/sa/frontend"));
        let input = json(&request(peer, "/a", &[]).to_input("spiffe://example.org/b"));
        assert_eq!(
            input["attributes"]["source"]["principal"],
            "spiffe://example.org/ns/demo/sa/frontend"
        );
        assert_eq!(
            input["source_principal"],
            "spiffe://example.org/ns/demo/sa/frontend"
        );
        assert_eq!(
            input["attributes"]["destination"]["principal"],
            "spiffe://example.org/b"
        );
        assert_eq!(input["attributes"]["request"]["http"]["method"], "GET");
        assert_eq!(input["attributes"]["request"]["http"]["host"], "backend");
    }

    #[test]
    fn unverified_or_non_spiffe_peer_has_no_principal() {
        for peer in [
            Peer::from_connection(false, Some("spiffe://example.org/x")),
            Peer::from_connection(true, Some("https://example.org/x")),
            Peer::from_connection(true, Some("spiffe://")),
            Peer::from_connection(true, None),
        ] {
            let input = json(&request(peer, "/", &[]).to_input(""));
            assert!(input["attributes"]["source"].get("principal").is_none());
            assert!(input.get("source_principal").is_none());
        }
    }

    #[test]
    fn forged_identity_headers_are_removed_from_the_input() {
        let input = json(
            &request(
                Peer::None,
                "/",
                &[
                    ("x-spiffe-id", "spiffe://example.org/admin"),
                    ("x-forwarded-client-cert", "URI=spiffe://example.org/admin"),
                    ("x-other", "kept"),
                ],
            )
            .to_input(""),
        );
        let headers = &input["attributes"]["request"]["http"]["headers"];
        assert!(headers.get("x-spiffe-id").is_none());
        assert!(headers.get("x-forwarded-client-cert").is_none());
        assert_eq!(headers["x-other"], "kept");
    }

    #[test]
    fn parsed_path_and_query_match_opa_envoy() {
        let input =
            json(&request(Peer::None, "/api/v1/a%20b?x=1&x=2&y=a+b&flag", &[]).to_input(""));
        assert_eq!(
            input["parsed_path"],
            serde_json::json!(["api", "v1", "a b"])
        );
        assert_eq!(
            input["parsed_query"],
            serde_json::json!({"x": ["1", "2"], "y": ["a b"], "flag": [""]})
        );
        let root = json(&request(Peer::None, "/", &[]).to_input(""));
        assert_eq!(root["parsed_path"], serde_json::json!([""]));
        assert_eq!(root["parsed_query"], serde_json::json!({}));
    }

    #[test]
    fn repeated_headers_are_joined_with_a_comma() {
        let input = json(&request(Peer::None, "/", &[("x-a", "1"), ("X-A", "2")]).to_input(""));
        assert_eq!(
            input["attributes"]["request"]["http"]["headers"]["x-a"],
            "1,2"
        );
    }

    #[test]
    fn a_lean_shape_leaves_out_what_the_policy_never_names() {
        let needs = InputNeeds::scan(["allow if input.attributes.request.http.method == \"GET\""]);
        let peer = Peer::from_connection(true, Some("spiffe://example.org/a"));
        let request = request(peer, "/x?y=1", &[("x-a", "1")]);
        let lean = json(&InputShape::new("spiffe://example.org/b", needs).build(&request));
        let http = &lean["attributes"]["request"]["http"];
        assert_eq!(http["method"], "GET");
        assert_eq!(http["path"], "/x?y=1");
        for absent in ["headers", "host", "scheme"] {
            assert!(http.get(absent).is_none(), "{absent}: {lean}");
        }
        assert!(lean.get("parsed_path").is_none() && lean.get("parsed_query").is_none());
        assert_eq!(lean["source_principal"], "spiffe://example.org/a");
        assert_eq!(
            lean["attributes"]["destination"]["principal"],
            "spiffe://example.org/b"
        );
        // The full shape has everything.
        let full = json(&request.to_input("spiffe://example.org/b"));
        assert_eq!(full["attributes"]["request"]["http"]["headers"]["x-a"], "1");
        assert_eq!(full["parsed_query"]["y"], serde_json::json!(["1"]));
    }

    #[test]
    fn invalid_percent_escapes_are_kept_verbatim() {
        assert_eq!(parse_path("/a%zz/%4"), vec!["a%zz", "%4"]);
    }
}
