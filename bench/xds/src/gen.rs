//! A config directory with N workloads for the benchmark. Workload `i` is named
//! `bench-i` (node id `bench-i`) and calls workload `i+1`, so each node gets a cluster,
//! an outbound and an inbound listener, secrets and the filter config. Addresses spread
//! over 127.1.0.0/16 (all loopback; nothing binds them) so N can exceed the port range.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Result;

/// The policy the bench starts from; [`changed_policy`] is the config change it times.
pub(crate) const POLICY: &str =
    "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n\
allow if {\n\tstartswith(input.attributes.source.principal, \"spiffe://example.org/\")\n}\n";

/// The policy plus one rule, unique per `round`.
pub(crate) fn changed_policy(round: u32) -> String {
    format!(
        "{POLICY}\nallow if {{\n\tinput.attributes.request.http.path == \"/bench-{round}\"\n}}\n"
    )
}

/// Node id of workload `i`.
pub(crate) fn node_id(i: usize) -> String {
    format!("bench-{i}")
}

/// The node of stream `i` with `instances` per workload: `(node.id, node.cluster)`. One
/// instance per workload: the workload's default instance (id = its node id).
pub(crate) fn node(i: usize, instances: usize) -> (String, String) {
    if instances <= 1 {
        (node_id(i), "bench".to_owned())
    } else {
        (format!("inst-{i}"), node_id(i / instances))
    }
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Writes `warden.yaml`, N workload files and the policy into `dir`.
pub(crate) fn write(
    dir: &Path,
    n: usize,
    xds: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    svid_ttl: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir.join("workloads"))?;
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(
        dir.join("warden.yaml"),
        format!(
            "trust_domain: example.org\nca:\n  key_type: ec-p256\n  ttl: 24h\n  svid_ttl: {svid_ttl}\n  state_dir: .warden\n\
             server:\n  xds_listen: {xds}\n  admin_listen: {admin}\n\
             policy:\n  entrypoint: data.envoy.authz.allow\n  mode: enforce\n  deny_status: 403\n  expose_reason: false\n"
        ),
    )?;
    for i in 0..n {
        let next = (i + 1) % n;
        let yaml = format!(
            "name: bench-{i}\nspiffe_id: spiffe://example.org/ns/bench/sa/w{i}\nnode_id: {node}\n\
             sidecar:\n  admin: {ip}:19000\ninbound:\n  listen: {ip}:15000\n  app: {ip}:8000\n\
             upstreams:\n  - workload: bench-{next}\n    listen: {ip}:16000\n",
            node = node_id(i),
            ip = ip(i),
        );
        std::fs::write(dir.join(format!("workloads/bench-{i}.yaml")), yaml)?;
    }
    std::fs::write(dir.join("policies/authz.rego"), POLICY)?;
    Ok(())
}
