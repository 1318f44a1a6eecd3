//! A real DNS server for the discovery tests: `hickory-server` answering one zone from an
//! in-memory authority, on UDP and TCP at 127.0.0.1:<free port>. The test sets a name's
//! A records ([`DnsServer::set_a`]) and Envoy, pointed at the server with
//! `warden bootstrap --dns-resolver`, picks the change up at the record's TTL.
//!
//! The server runs on its own thread with a current-thread Tokio runtime; dropping the
//! [`DnsServer`] stops it.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hickory_server::authority::{AuthorityObject, Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;

/// TTL of the records the test sets: Envoy (with `respect_dns_ttl`) re-resolves this often.
pub const TTL_SECS: u32 = 1;

/// A running DNS server for one zone.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Name,
    authority: Arc<InMemoryAuthority>,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `zone` (e.g. `demo.test`) on 127.0.0.1, UDP and TCP on one free port.
    pub fn start(zone: &str) -> Result<Self> {
        let zone = Name::from_str(&format!("{}.", zone.trim_end_matches('.')))
            .with_context(|| format!("zone `{zone}`"))?;
        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        let mut authority = InMemoryAuthority::empty(zone.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_str(&format!("ns.{zone}"))?,
            Name::from_str(&format!("admin.{zone}"))?,
            1,
            60,
            60,
            600,
            TTL_SECS,
        );
        authority.upsert_mut(
            Record::from_rdata(zone.clone(), TTL_SECS, RData::SOA(soa)),
            1,
        );
        let authority = Arc::new(authority);
        let mut catalog = Catalog::new();
        let object: Arc<dyn AuthorityObject> = authority.clone();
        catalog.upsert(LowerName::new(&zone), vec![object]);
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(anyhow!("tokio runtime: {e}")));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let mut server = ServerFuture::new(catalog);
                    match (
                        tokio::net::UdpSocket::from_std(udp),
                        tokio::net::TcpListener::from_std(tcp),
                    ) {
                        (Ok(u), Ok(t)) => {
                            server.register_socket(u);
                            server.register_listener(t, Duration::from_secs(5));
                        }
                        _ => return,
                    }
                    let _ = stop_rx.await;
                    let _ = server.shutdown_gracefully().await;
                });
            })?;
        let runtime = handle_rx
            .recv_timeout(Duration::from_secs(10))
            .context("DNS server thread did not start")??;
        Ok(Self {
            addr,
            zone,
            authority,
            runtime,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `label` within the zone as a fully qualified name (`backend` → `backend.demo.test`).
    pub fn fqdn(&self, label: &str) -> String {
        format!("{label}.{}", self.zone.to_ascii().trim_end_matches('.'))
    }

    /// Replaces the A records of `label` (within the zone) with `ips` (TTL [`TTL_SECS`]);
    /// an empty list removes the name.
    pub fn set_a(&self, label: &str, ips: &[Ipv4Addr]) -> Result<()> {
        // Fully qualified (trailing dot), as queries name it.
        let name = Name::from_str(&format!("{}.", self.fqdn(label)))?;
        let authority = self.authority.clone();
        let ips = ips.to_vec();
        self.runtime.block_on(async move {
            let key = RrKey::new(LowerName::new(&name), RecordType::A);
            authority.records_mut().await.remove(&key);
            let serial = authority.serial().await + 1;
            for ip in ips {
                let r = Record::from_rdata(name.clone(), TTL_SECS, RData::A(A(ip)));
                if !authority.upsert(r, serial).await {
                    return Err(anyhow!("could not set {name} A {ip}"));
                }
            }
            Ok(())
        })
    }
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1 (non-blocking).
fn bind_pair() -> Result<(std::net::UdpSocket, std::net::TcpListener)> {
    for _ in 0..50 {
        let port = crate::ports::free_port()?;
        let at = SocketAddr::from(([127, 0, 0, 1], port));
        let (Ok(udp), Ok(tcp)) = (
            std::net::UdpSocket::bind(at),
            std::net::TcpListener::bind(at),
        ) else {
            continue;
        };
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        return Ok((udp, tcp));
    }
    Err(anyhow!("no free port for the DNS server"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal DNS query for `name` A over UDP, returning the answer's IPv4 addresses
    /// (parsed with hickory's own message type).
    fn query(server: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
        use hickory_server::proto::op::{Message, Query};
        use hickory_server::proto::serialize::binary::BinDecodable;
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        sock.send_to(&m.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).unwrap();
        let reply = Message::from_bytes(&buf[..n]).unwrap();
        let mut ips: Vec<Ipv4Addr> = reply
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        ips.sort();
        ips
    }

    #[test]
    fn the_server_answers_what_the_test_set_and_follows_updates() {
        let dns = DnsServer::start("demo.test").unwrap();
        let a: Ipv4Addr = "127.0.0.11".parse().unwrap();
        let b: Ipv4Addr = "127.0.0.12".parse().unwrap();
        dns.set_a("backend", &[a, b]).unwrap();
        assert_eq!(query(dns.addr(), "backend.demo.test."), vec![a, b]);
        dns.set_a("backend", &[b]).unwrap();
        assert_eq!(query(dns.addr(), "backend.demo.test."), vec![b]);
        assert!(query(dns.addr(), "other.demo.test.").is_empty());
    }
}
