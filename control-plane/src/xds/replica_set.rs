//! The control-plane replica set a sidecar's bootstrap names (`warden bootstrap
//! --xds-server host:port[,host:port...]`): a list of IP addresses tried in order, or one
//! DNS name whose every address is a replica. Parsed and checked here, then rendered into
//! the two ADS channel shapes of `bootstrap.rs`:
//!
//! - the attested `google_grpc` channel takes a gRPC target URI (`ipv4:a:p,b:p`,
//!   `ipv6:[a]:p,...` or `dns:///name:port`, per gRPC's naming doc); gRPC's default
//!   `pick_first` policy connects to the first address that answers, so the list order
//!   spreads sidecars over replicas;
//! - the plaintext `envoy_grpc` channel gets a `STATIC` cluster with one endpoint per
//!   address, each at its own priority (list order), or a `STRICT_DNS` cluster for a name.
//!
//! Pure: no I/O, no DNS lookups.

use std::net::SocketAddr;

/// The most replicas one bootstrap may list (a typo guard, not a protocol limit).
pub const MAX_REPLICAS: usize = 16;

/// Where a sidecar finds `warden serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsServers {
    /// Replicas by address, in the order the sidecar tries them (all IPv4 or all IPv6).
    Addresses(Vec<SocketAddr>),
    /// One DNS name; each address it resolves to is a replica.
    Dns {
        /// The host name (letters, digits, `-`, `.`).
        host: String,
        /// The ADS port of every replica.
        port: u16,
    },
}

/// Why `--xds-server` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdsServersError {
    /// Nothing between the commas.
    #[error("--xds-server: empty entry in `{0}` (expected host:port[,host:port...])")]
    Empty(String),
    /// Not `host:port`.
    #[error("--xds-server: `{0}` is not host:port (IPv6 as [addr]:port)")]
    NotHostPort(String),
    /// Port 0 or not a number.
    #[error("--xds-server: `{0}` has no valid port (1-65535)")]
    BadPort(String),
    /// A host name that is not a DNS name.
    #[error("--xds-server: `{0}` is not a valid DNS name")]
    BadHost(String),
    /// A host name in a list (gRPC resolves one name, or a list of addresses).
    #[error("--xds-server: `{0}` is a host name in a list; give either one DNS name (each of its addresses is a replica) or a list of IP addresses")]
    NameInList(String),
    /// IPv4 and IPv6 in one list (gRPC's `ipv4:`/`ipv6:` targets take one family).
    #[error("--xds-server: IPv4 and IPv6 addresses in one list; use one family (or a DNS name)")]
    MixedFamilies,
    /// The same address twice.
    #[error("--xds-server: {0} is listed twice")]
    Duplicate(SocketAddr),
    /// More than [`MAX_REPLICAS`].
    #[error("--xds-server: {0} replicas listed, at most {MAX_REPLICAS}")]
    TooMany(usize),
    /// Several replicas with a self-signed CA: each would have its own root.
    #[error("--xds-server lists {0} replicas but the CA is self-signed (no ca.upstream in warden.yaml): each replica would create its own root and a sidecar would trust only one of them. Configure a shared ca.upstream (see README, \"Control-plane replicas\")")]
    ReplicasNeedUpstream(usize),
}

impl XdsServers {
    /// The one address of `server.xds_listen` (the default without `--xds-server`).
    pub fn single(addr: SocketAddr) -> Self {
        Self::Addresses(vec![addr])
    }

    /// Parses `host:port[,host:port...]`.
    pub fn parse(text: &str) -> Result<Self, XdsServersError> {
        let entries: Vec<&str> = text.split(',').map(str::trim).collect();
        if entries.iter().any(|e| e.is_empty()) {
            return Err(XdsServersError::Empty(text.to_owned()));
        }
        if entries.len() > MAX_REPLICAS {
            return Err(XdsServersError::TooMany(entries.len()));
        }
        let mut addrs = Vec::with_capacity(entries.len());
        for entry in &entries {
            match entry.parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => return Err(XdsServersError::BadPort((*entry).into())),
                Ok(a) if addrs.contains(&a) => return Err(XdsServersError::Duplicate(a)),
                Ok(a) => addrs.push(a),
                Err(_) if entries.len() > 1 => {
                    parse_name(entry)?;
                    return Err(XdsServersError::NameInList((*entry).into()));
                }
                Err(_) => {
                    let (host, port) = parse_name(entry)?;
                    return Ok(Self::Dns { host, port });
                }
            }
        }
        if addrs.iter().any(SocketAddr::is_ipv4) && addrs.iter().any(SocketAddr::is_ipv6) {
            return Err(XdsServersError::MixedFamilies);
        }
        Ok(Self::Addresses(addrs))
    }

    /// Refuses a list of several replicas when the CA has no shared upstream root. A DNS
    /// name may stand for one replica, so it passes (`warden serve --state-dir` warns on
    /// the replica's side).
    pub fn check_trust(&self, has_upstream: bool) -> Result<(), XdsServersError> {
        match self {
            Self::Addresses(a) if a.len() > 1 && !has_upstream => {
                Err(XdsServersError::ReplicasNeedUpstream(a.len()))
            }
            _ => Ok(()),
        }
    }

    /// The gRPC target URI for the `google_grpc` channel. One IPv4 address stays the bare
    /// `ip:port` earlier bootstraps had.
    pub fn grpc_target_uri(&self) -> String {
        match self {
            Self::Addresses(a) if a.len() == 1 && a[0].is_ipv4() => a[0].to_string(),
            Self::Addresses(a) => {
                let scheme = if a.iter().all(SocketAddr::is_ipv4) {
                    "ipv4"
                } else {
                    "ipv6"
                };
                let list: Vec<String> = a.iter().map(SocketAddr::to_string).collect();
                format!("{scheme}:{}", list.join(","))
            }
            Self::Dns { host, port } => format!("dns:///{host}:{port}"),
        }
    }

    /// The Envoy cluster discovery type for the plaintext `warden-xds` cluster.
    pub fn cluster_type(&self) -> &'static str {
        match self {
            Self::Addresses(_) => "STATIC",
            Self::Dns { .. } => "STRICT_DNS",
        }
    }

    /// The `load_assignment.endpoints` items (flow-style YAML, one line each, indented by
    /// `indent`): one locality per address with priority = its place in the list, so
    /// Envoy uses the first replica while it is healthy and fails over in order (as
    /// `pick_first` does on the gRPC channel); a DNS name is one locality.
    pub fn endpoints_yaml(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let item = |priority: usize, host: &str, port: u16| {
            let host = serde_json::Value::from(host);
            format!("{pad}- {{ priority: {priority}, lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }} }} ] }}")
        };
        match self {
            Self::Addresses(a) => a
                .iter()
                .enumerate()
                .map(|(i, s)| item(i, &s.ip().to_string(), s.port()))
                .collect::<Vec<_>>()
                .join("\n"),
            Self::Dns { host, port } => item(0, host, *port),
        }
    }

    /// How many replicas are named (a DNS name counts as one: its size is unknown here).
    pub fn len(&self) -> usize {
        match self {
            Self::Addresses(a) => a.len(),
            Self::Dns { .. } => 1,
        }
    }

    /// Never true (a parsed set names at least one server); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `name:port` with a valid DNS name (RFC 1123 labels, at most 253 characters).
fn parse_name(entry: &str) -> Result<(String, u16), XdsServersError> {
    let (host, port) = entry
        .rsplit_once(':')
        .ok_or_else(|| XdsServersError::NotHostPort(entry.into()))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| XdsServersError::BadPort(entry.into()))?;
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(XdsServersError::BadHost(host.into()));
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
#[path = "replica_set_tests.rs"]
mod tests;
