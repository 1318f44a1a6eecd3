//! Request attributes and the OPA-Envoy-shaped Rego input built from them.
//!
//! Shape (as the OPA-Envoy plugin builds it from an ext_authz `CheckRequest`):
//! `input.attributes.source.{principal,address}`,
//! `input.attributes.destination.{principal,address}`, `input.attributes.request.time`,
//! `input.attributes.request.http.{method,path,host,scheme,headers,id}`, `input.parsed_path`
//! and `input.parsed_query` (Go `net/url` rules, see [`url`]), and `input.source_principal`.
//! Request bodies never reach the filter: `body`, `raw_body`, `parsed_body` are absent.
//!
//! Header values arrive as bytes; invalid UTF-8 becomes U+FFFD in the input
//! ([`RequestAttributes::from_raw_headers`]). A path Go cannot parse, or one carrying `;`
//! parameters, is refused before the policy runs ([`RequestAttributes::check`]).
//!
//! Identity comes only from the verified peer: a [`Peer::Verified`] is built by the filter
//! from `connection.peer_certificate_valid` and `connection.uri_san_peer_certificate`,
//! whose value must parse as a [`SpiffeId`] (the shared `warden-spiffe` parser).
//! Without one, `source.principal` and `source_principal` are absent (undefined in Rego).
//! Client-supplied identity headers (`x-spiffe-id`, `x-forwarded-client-cert`) are removed
//! from `input…headers` so no policy can mistake them for identity; the filter sets its own
//! `x-spiffe-id` for the app after an allow. This module does no I/O.

use std::collections::BTreeMap;

use regorus::Value;
use warden_spiffe::SpiffeId;

use crate::needs::InputNeeds;

pub mod url;

pub use url::UrlError;

/// Headers a client could forge to claim an identity; never part of the input.
pub const IDENTITY_HEADERS: [&str; 2] = ["x-spiffe-id", "x-forwarded-client-cert"];

/// The peer of the connection, as the TLS layer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A certificate that chains to a trusted bundle, with this SPIFFE ID as URI SAN.
    Verified(SpiffeId),
    /// Plaintext, no certificate, an unverified certificate, or a URI SAN that is not a
    /// SPIFFE ID.
    None,
}

impl Peer {
    /// Builds the peer from the two connection properties Envoy exposes.
    /// `valid` is `connection.peer_certificate_valid`; `uri_san` is
    /// `connection.uri_san_peer_certificate`. Anything but a valid certificate whose URI
    /// SAN parses as a SPIFFE ID (the same parser the control plane mints IDs with) is
    /// no identity: fail closed, never a half-checked string in the policy input.
    pub fn from_connection(valid: bool, uri_san: Option<&str>) -> Self {
        match uri_san.map(str::parse::<SpiffeId>) {
            Some(Ok(id)) if valid => Self::Verified(id),
            _ => Self::None,
        }
    }

    /// The SPIFFE ID, if verified, exactly as the certificate carries it.
    pub fn principal(&self) -> Option<&str> {
        self.id().map(SpiffeId::as_str)
    }

    /// The verified SPIFFE ID.
    pub fn id(&self) -> Option<&SpiffeId> {
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
    /// The downstream peer's address (`ip:port`), when the policy reads it.
    pub source_address: Option<String>,
    /// The local address the request arrived on (`ip:port`), when the policy reads it.
    pub destination_address: Option<String>,
    /// When the request arrived (microseconds since the Unix epoch), when the policy
    /// reads `attributes.request.time`.
    pub time_micros: Option<u64>,
}

/// Why a request is refused before its policy runs (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `:path` is not a URL Go's `url.Parse` accepts (OPA-Envoy fails such a check too).
    #[error("request path is not a valid URL: {0}")]
    Url(#[from] UrlError),
    /// A `;` in the path: many servers and frameworks drop `;params` from a segment
    /// (`/admin;x=1` is served as `/admin`) while the policy would see `admin;x=1`, so
    /// the policy and the app would disagree on the path. Refused.
    #[error("path parameters (`;`) are not accepted")]
    PathParameters,
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
            source_address: None,
            destination_address: None,
            time_micros: None,
        }
    }

    /// [`from_headers`](Self::from_headers) for header values as the host gives them:
    /// raw bytes. RFC 9110 allows non-UTF-8 bytes (obs-text) and Envoy forwards them;
    /// Rego strings are UTF-8, so each invalid sequence becomes U+FFFD in the input
    /// (the app still receives the original bytes). Never fails, never panics.
    pub fn from_raw_headers(peer: Peer, headers: Vec<(String, Vec<u8>)>) -> Self {
        let headers = headers
            .into_iter()
            .map(|(name, value)| (name, lossy(value)))
            .collect();
        Self::from_headers(peer, headers)
    }

    /// Checks the request target before any policy runs: a path Go's `url.Parse`
    /// rejects, or one with `;` path parameters, is refused.
    pub fn check(&self) -> Result<(), RequestError> {
        let before_query = self.path.split(['?', '#']).next().unwrap_or_default();
        if before_query.contains(';') {
            return Err(RequestError::PathParameters);
        }
        url::validate(&self.path)?;
        Ok(())
    }

    /// The `x-request-id` header, OPA-Envoy's `attributes.request.http.id`.
    pub fn request_id(&self) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
            .map_or("", |(_, v)| v.as_str())
    }

    /// The full Rego input document (every field), as [`InputShape`] builds it.
    pub fn to_input(&self, destination_principal: &str) -> Value {
        InputShape::new(destination_principal, InputNeeds::ALL).build(self)
    }
}

/// Bytes to a string, replacing invalid UTF-8 (no copy when valid).
pub fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Builds input documents for one policy: the keys and this workload's principal are made
/// once, and fields the policy never names ([`InputNeeds`]) are left out, so a request
/// costs as few allocations as its input needs. `method` and `path` are always there.
#[derive(Debug, Clone)]
pub struct InputShape {
    needs: InputNeeds,
    destination: Value,
    version: Value,
    keys: Keys,
}

/// The input document's object keys, made once per policy (a request then allocates
/// no key strings).
#[derive(Debug, Clone)]
struct Keys(BTreeMap<&'static str, Value>);

impl Keys {
    const NAMES: [&'static str; 20] = [
        "attributes",
        "source",
        "destination",
        "principal",
        "address",
        "request",
        "time",
        "http",
        "method",
        "path",
        "host",
        "scheme",
        "headers",
        "id",
        "parsed_path",
        "parsed_query",
        "source_principal",
        "version",
        "socketAddress",
        "portValue",
    ];

    fn new() -> Self {
        Self(Self::NAMES.iter().map(|n| (*n, Value::from(*n))).collect())
    }

    fn get(&self, name: &'static str) -> Value {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::from(name))
    }
}

impl InputShape {
    /// The shape for a workload (`destination_principal`) and what its policy reads.
    pub fn new(destination_principal: &str, needs: InputNeeds) -> Self {
        let mut version = Object::new();
        version.put("encoding", "protojson");
        version.put("ext_authz", "v3");
        Self {
            needs,
            destination: Value::from(destination_principal),
            version: version.into_value(),
            keys: Keys::new(),
        }
    }

    /// What this shape builds.
    pub fn needs(&self) -> InputNeeds {
        self.needs
    }

    /// The input document for one request. A path Go cannot parse gives no
    /// `parsed_path` / `parsed_query` ([`RequestAttributes::check`] refuses it first).
    pub fn build(&self, request: &RequestAttributes) -> Value {
        let (needs, keys) = (self.needs, &self.keys);
        let object = || Object::with(keys);
        let mut http = object();
        http.put("method", request.method.as_str());
        http.put("path", request.path.as_str());
        if needs.host {
            http.put("host", request.host.as_str());
        }
        if needs.scheme {
            http.put("scheme", request.scheme.as_str());
        }
        if needs.headers {
            http.put("headers", headers_object(&request.headers));
        }
        if needs.request_id {
            http.put("id", request.request_id());
        }
        let principal = request.peer.principal().map(Value::from);
        let mut source = object();
        if let Some(principal) = &principal {
            source.put("principal", principal.clone());
        }
        if let Some(address) = request
            .source_address
            .as_deref()
            .filter(|_| needs.source_address)
        {
            source.put("address", socket_address(keys, address));
        }
        let mut destination = object();
        destination.put("principal", self.destination.clone());
        if let Some(address) =
            (request.destination_address.as_deref()).filter(|_| needs.destination_address)
        {
            destination.put("address", socket_address(keys, address));
        }
        let mut req = object();
        req.put("http", http.into_value());
        if let Some(micros) = request.time_micros.filter(|_| needs.time) {
            req.put("time", rfc3339(micros));
        }
        let mut attributes = object();
        attributes.put("source", source.into_value());
        attributes.put("destination", destination.into_value());
        attributes.put("request", req.into_value());
        let mut input = object();
        input.put("attributes", attributes.into_value());
        if needs.parsed_path || needs.parsed_query {
            if let Ok((segments, query)) = url::parse(&request.path) {
                if needs.parsed_path {
                    let segments: Vec<Value> = segments.into_iter().map(Value::from).collect();
                    input.put("parsed_path", Value::from(segments));
                }
                if needs.parsed_query {
                    input.put("parsed_query", query_object(query));
                }
            }
        }
        if let Some(principal) = principal {
            input.put("source_principal", principal);
        }
        input.put("version", self.version.clone());
        input.into_value()
    }
}

/// A Rego object under construction, its keys taken from [`Keys`] (or made when the
/// object is built outside a shape).
struct Object<'k> {
    map: BTreeMap<Value, Value>,
    keys: Option<&'k Keys>,
}

impl<'k> Object<'k> {
    fn new() -> Self {
        Self {
            map: BTreeMap::new(),
            keys: None,
        }
    }

    fn with(keys: &'k Keys) -> Self {
        Self {
            map: BTreeMap::new(),
            keys: Some(keys),
        }
    }

    fn put(&mut self, key: &'static str, value: impl Into<Value>) {
        let key = self.keys.map_or_else(|| Value::from(key), |k| k.get(key));
        self.map.insert(key, value.into());
    }

    fn into_value(self) -> Value {
        Value::from(self.map)
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

fn query_object(query: url::Query) -> Value {
    Value::from(
        query
            .into_iter()
            .map(|(k, v)| {
                let values: Vec<Value> = v.into_iter().map(Value::from).collect();
                (Value::from(k), Value::from(values))
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

/// `ip:port` (IPv6 in brackets) as ext_authz's `config.core.v3.Address` in JSON:
/// `{"socketAddress": {"address": ip, "portValue": port}}`.
fn socket_address(keys: &Keys, text: &str) -> Value {
    let (ip, port) = text.rsplit_once(':').unwrap_or((text, "0"));
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let mut socket = Object::with(keys);
    socket.put("address", ip);
    socket.put("portValue", Value::from(port.parse::<u64>().unwrap_or(0)));
    let mut address = Object::with(keys);
    address.put("socketAddress", socket.into_value());
    address.into_value()
}

/// RFC 3339 UTC with microseconds, as protobuf's JSON form of a `Timestamp`.
pub fn rfc3339(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        micros % 1_000_000
    )
}

/// Path segments as OPA-Envoy computes them (see [`url`]); a path Go rejects gives `[]`.
pub fn parse_path(path: &str) -> Vec<String> {
    url::parse(path)
        .map(|(segments, _)| segments)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
