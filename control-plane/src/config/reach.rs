//! How a workload's instances are reached and addressed: `inbound.service` (a DNS name
//! Envoy resolves, e.g. a Kubernetes headless Service), `inbound.endpoints` (a fixed
//! address list) or neither (today's single `inbound.listen`), and the `${INSTANCE_IP}`
//! host that each instance fills with its own address. Pure parsing and checks; the
//! clusters are built in `xds/resources/cluster.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The host callers write in `inbound.listen` / `inbound.app` for "this instance's IP".
pub const INSTANCE_IP_HOST: &str = "${INSTANCE_IP}";

/// Most addresses in `inbound.endpoints` (an Envoy cluster holds them all in each caller).
pub const MAX_ENDPOINTS: usize = 256;

/// How callers reach the workload's instances.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reach {
    /// One address: `inbound.listen` (the default; a single instance).
    #[default]
    Listen,
    /// A DNS name Envoy resolves (STRICT_DNS): every address it returns is an instance.
    Service {
        /// The name, lowercase, without a trailing dot.
        host: String,
        /// The port every instance listens on.
        port: u16,
    },
    /// A fixed list of instance addresses.
    Endpoints(Vec<SocketAddr>),
}

/// Which inbound hosts are `${INSTANCE_IP}` (stored as `0.0.0.0` until an instance's
/// address replaces them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InstanceIpHosts {
    /// `inbound.listen` is `${INSTANCE_IP}:PORT`.
    pub listen: bool,
    /// `inbound.app` is `${INSTANCE_IP}:PORT`.
    pub app: bool,
}

impl InstanceIpHosts {
    /// Whether any host is the instance's IP (its sidecars must send `INSTANCE_IP`).
    pub fn any(self) -> bool {
        self.listen || self.app
    }
}

/// Why an address or name was refused; the message says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReachError {
    /// Not `IP:PORT` nor `${INSTANCE_IP}:PORT`.
    #[error("`{0}` is not an IP:port address nor `${{INSTANCE_IP}}:PORT`")]
    Address(String),
    /// Not `NAME:PORT` with a DNS name.
    #[error("`{0}` is not a DNS name and port: write it like backend.demo.svc.cluster.local:15006 (lowercase letters, digits, `-`, `.`; an IP belongs in inbound.endpoints)")]
    Service(String),
    /// A bad entry in `inbound.endpoints`.
    #[error("`{0}` is not an IP:port address (inbound.endpoints lists instance addresses)")]
    Endpoint(String),
    /// Both `service` and `endpoints`.
    #[error("inbound.service and inbound.endpoints exclude each other: keep one")]
    Both,
    /// An empty or too long endpoint list, or a duplicate.
    #[error("inbound.endpoints needs 1-{MAX_ENDPOINTS} distinct addresses")]
    EndpointCount,
    /// `${INSTANCE_IP}` in `inbound.listen` without a way for callers to find instances.
    #[error("inbound.listen uses ${{INSTANCE_IP}}, so callers cannot use it as the address: set inbound.service (a DNS name with every instance's address) or inbound.endpoints")]
    Unreachable,
}

/// `IP:PORT` or `${INSTANCE_IP}:PORT` (returned as `0.0.0.0:PORT`, `true`).
pub fn inbound_addr(text: &str) -> Result<(SocketAddr, bool), ReachError> {
    if let Some(port) = text
        .strip_prefix(INSTANCE_IP_HOST)
        .and_then(|r| r.strip_prefix(':'))
    {
        let port: u16 = port.parse().map_err(|_| ReachError::Address(text.into()))?;
        return Ok((
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            true,
        ));
    }
    text.parse()
        .map(|a| (a, false))
        .map_err(|_| ReachError::Address(text.into()))
}

/// `inbound.service` and `inbound.endpoints` to a [`Reach`].
pub fn reach(
    service: Option<&str>,
    endpoints: Option<&[String]>,
    ip_hosts: InstanceIpHosts,
) -> Result<Reach, ReachError> {
    let r = match (service, endpoints) {
        (Some(_), Some(_)) => return Err(ReachError::Both),
        (Some(s), None) => service_name(s)?,
        (None, Some(list)) => endpoint_list(list)?,
        (None, None) => Reach::Listen,
    };
    if ip_hosts.listen && r == Reach::Listen {
        return Err(ReachError::Unreachable);
    }
    Ok(r)
}

fn service_name(text: &str) -> Result<Reach, ReachError> {
    let bad = || ReachError::Service(text.chars().take(80).collect());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host.strip_suffix('.').unwrap_or(host);
    if !is_dns_name(host) || host.parse::<IpAddr>().is_ok() {
        return Err(bad());
    }
    Ok(Reach::Service {
        host: host.to_string(),
        port,
    })
}

/// RFC 1123 host name: labels of 1-63 `[a-z0-9-]`, not starting or ending with `-`,
/// at most 253 bytes, and not all digits in the last label (that reads as an address).
fn is_dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    };
    (1..=253).contains(&host.len())
        && host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|l| !l.bytes().all(|c| c.is_ascii_digit()))
}

fn endpoint_list(list: &[String]) -> Result<Reach, ReachError> {
    if list.is_empty() || list.len() > MAX_ENDPOINTS {
        return Err(ReachError::EndpointCount);
    }
    let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for e in list {
        let a: SocketAddr = e
            .parse()
            .ok()
            .filter(|a: &SocketAddr| a.port() != 0 && !a.ip().is_unspecified())
            .ok_or_else(|| ReachError::Endpoint(e.chars().take(80).collect()))?;
        if out.contains(&a) {
            return Err(ReachError::EndpointCount);
        }
        out.push(a);
    }
    Ok(Reach::Endpoints(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_ip_host_reads_as_a_placeholder_with_a_port() {
        assert_eq!(
            inbound_addr("${INSTANCE_IP}:15006").unwrap(),
            ("0.0.0.0:15006".parse().unwrap(), true)
        );
        assert_eq!(
            inbound_addr("127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".parse().unwrap(), false)
        );
        for bad in [
            "${INSTANCE_IP}",
            "${INSTANCE_IP}:",
            "${INSTANCE_IP}:99999",
            "${INSTANCE_IP }:1",
            "$INSTANCE_IP:1",
            "${POD_IP}:1",
            "x${INSTANCE_IP}:1",
        ] {
            assert!(inbound_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_service_is_a_dns_name_and_a_port() {
        assert_eq!(
            reach(
                Some("backend.demo.svc.cluster.local.:15002"),
                None,
                InstanceIpHosts::default()
            )
            .unwrap(),
            Reach::Service {
                host: "backend.demo.svc.cluster.local".into(),
                port: 15002
            }
        );
        let long = format!("{}.x:1", "a".repeat(64));
        for bad in [
            "backend",
            "backend:0",
            "backend:http",
            "127.0.0.1:80",
            "Backend.demo:80",
            "-a.demo:80",
            "a..b:80",
            "a b:80",
            long.as_str(),
            "[::1]:80",
        ] {
            assert!(
                matches!(
                    reach(Some(bad), None, InstanceIpHosts::default()),
                    Err(ReachError::Service(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_are_distinct_addresses_and_exclude_a_service() {
        let list = vec!["127.0.0.11:15006".to_string(), "127.0.0.12:15006".into()];
        assert!(matches!(
            reach(None, Some(&list), InstanceIpHosts::default()).unwrap(),
            Reach::Endpoints(v) if v.len() == 2
        ));
        let dup = vec!["127.0.0.11:1".to_string(), "127.0.0.11:1".into()];
        assert_eq!(
            reach(None, Some(&dup), InstanceIpHosts::default()),
            Err(ReachError::EndpointCount)
        );
        assert_eq!(
            reach(None, Some(&[]), InstanceIpHosts::default()),
            Err(ReachError::EndpointCount)
        );
        for bad in ["0.0.0.0:1", "127.0.0.1:0", "host:1"] {
            assert!(matches!(
                reach(None, Some(&[bad.to_string()]), InstanceIpHosts::default()),
                Err(ReachError::Endpoint(_))
            ));
        }
        assert_eq!(
            reach(Some("a.b:1"), Some(&list), InstanceIpHosts::default()),
            Err(ReachError::Both)
        );
    }

    #[test]
    fn an_instance_ip_listener_needs_a_way_for_callers_to_find_instances() {
        let ip = InstanceIpHosts {
            listen: true,
            app: false,
        };
        assert_eq!(reach(None, None, ip), Err(ReachError::Unreachable));
        assert!(reach(Some("backend.demo:15006"), None, ip).is_ok());
    }
}
