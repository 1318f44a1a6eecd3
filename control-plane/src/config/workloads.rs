//! Workload checks: each workload file on its own (name, SPIFFE ID in the trust domain,
//! addresses), then across workloads (unique names, IDs and node ids, known upstreams,
//! no two listeners on one address).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::ctx::Ctx;
use super::diag::{clip, did_you_mean, Diagnostic};
use super::files::{Files, Parsed};
use super::raw::RawWorkload;
use super::reach::{self, InstanceIpHosts, Reach, ReachError};
use super::{AttestMethod, Inbound, ServerSettings, Upstream, Workload};
use crate::identity::TrustDomain;

/// Longest workload name (a DNS label's 63 bytes: names become Envoy cluster names).
const MAX_NAME_LEN: usize = 63;
/// Longest node id.
const MAX_NODE_ID_LEN: usize = 128;

/// 1-63 of `[a-z0-9-]`, no `-` at either end (a leading one would read as a CLI flag).
fn is_workload_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// 1-128 of `[A-Za-z0-9._:~-]`, no leading `-`: nothing that needs quoting in YAML, JSON
/// or a shell, and no line breaks (the id goes into bootstrap files and log lines).
fn is_node_id(id: &str) -> bool {
    (1..=MAX_NODE_ID_LEN).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'~' | b'-'))
}

pub(super) fn workload(
    file: &Parsed<RawWorkload>,
    td: Option<&TrustDomain>,
    ctx: &mut Ctx<'_, RawWorkload>,
) -> Option<Workload> {
    let raw = &file.value;
    let names_ok = check_names(raw, ctx);
    let spiffe_id = spiffe_id(raw, td, ctx);
    let admin = ctx.addr("sidecar.admin", &raw.sidecar.admin);
    let listen = inbound_addr("inbound.listen", &raw.inbound.listen, ctx);
    let app = inbound_addr("inbound.app", &raw.inbound.app, ctx);
    let hosts = InstanceIpHosts {
        listen: listen.is_some_and(|l| l.1),
        app: app.is_some_and(|a| a.1),
    };
    let reach = reach_of(raw, hosts, ctx);
    let upstreams = upstreams(raw, ctx);
    let attestation = attestation(raw, ctx);
    let ok = names_ok && upstreams.is_some() && attestation.is_some();
    Some(Workload {
        attestation: attestation?,
        name: raw.name.clone(),
        spiffe_id: spiffe_id?,
        node_id: raw.node_id.clone().unwrap_or_else(|| raw.name.clone()),
        sidecar_admin: admin?,
        inbound: Inbound {
            listen: listen?.0,
            app: app?.0,
            instance_ip: hosts,
            reach: reach?,
        },
        upstreams: upstreams?,
        file: file.path.clone(),
    })
    .filter(|_| ok)
}

/// An inbound address: `IP:PORT` or `${INSTANCE_IP}:PORT` (with `true`).
fn inbound_addr(
    path: &str,
    text: &str,
    ctx: &mut Ctx<'_, RawWorkload>,
) -> Option<(SocketAddr, bool)> {
    match reach::inbound_addr(text) {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.error(
                path,
                e.to_string(),
                Some("write it like 127.0.0.1:15001, or ${INSTANCE_IP}:15001 for each instance's own address (from its sidecar's INSTANCE_IP node metadata)".into()),
            );
            None
        }
    }
}

/// How callers reach the instances (`None` after reporting a bad setting).
fn reach_of(
    raw: &RawWorkload,
    hosts: InstanceIpHosts,
    ctx: &mut Ctx<'_, RawWorkload>,
) -> Option<Reach> {
    let (service, endpoints) = (&raw.inbound.service, &raw.inbound.endpoints);
    match reach::reach(service.as_deref(), endpoints.as_deref(), hosts) {
        Ok(r) => Some(r),
        Err(e) => {
            let path = match &e {
                ReachError::Service(_) | ReachError::Both => "inbound.service",
                ReachError::Endpoint(_) | ReachError::EndpointCount => "inbound.endpoints",
                ReachError::Address(_) | ReachError::Unreachable => "inbound.listen",
            };
            ctx.error(path, e.to_string(), None);
            None
        }
    }
}

/// The workload name and node id; `false` after reporting a bad one.
fn check_names(raw: &RawWorkload, ctx: &mut Ctx<'_, RawWorkload>) -> bool {
    let mut ok = true;
    if !is_workload_name(&raw.name) {
        ctx.error(
            "name",
            format!("invalid workload name `{}`", clip(&raw.name)),
            Some(format!("use 1-{MAX_NAME_LEN} lowercase letters, digits and `-`, not starting or ending with `-` (the name is an Envoy cluster name and a CLI argument)")),
        );
        ok = false;
    }
    if let Some(node) = raw.node_id.as_deref().filter(|n| !is_node_id(n)) {
        ctx.error(
            "node_id",
            format!("invalid node id `{}`", clip(node)),
            Some(format!("use 1-{MAX_NODE_ID_LEN} letters, digits and `.`, `_`, `-`, `:`, `~`, not starting with `-` (the node id is written into the sidecar's bootstrap file)")),
        );
        ok = false;
    }
    ok
}

/// The workload's SPIFFE ID in `td` (`None` without a trust domain or after an error).
fn spiffe_id(
    raw: &RawWorkload,
    td: Option<&TrustDomain>,
    ctx: &mut Ctx<'_, RawWorkload>,
) -> Option<crate::identity::SpiffeId> {
    match td.map(|td| td.parse_workload(&raw.spiffe_id)) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            let hint = td.map(|td| {
                format!(
                    "IDs look like {}/ns/<namespace>/sa/<service-account>",
                    td.to_spiffe_id_string()
                )
            });
            ctx.error(
                "spiffe_id",
                format!("invalid SPIFFE ID `{}`: {e}", clip(&raw.spiffe_id)),
                hint,
            );
            None
        }
    }
}

/// The upstreams with their listen addresses (`None` after reporting a bad address).
fn upstreams(raw: &RawWorkload, ctx: &mut Ctx<'_, RawWorkload>) -> Option<Vec<Upstream>> {
    let mut upstreams = Vec::new();
    let mut ok = true;
    for (i, u) in raw.upstreams.iter().enumerate() {
        let foreign = super::federation::foreign_upstream(i, u, ctx);
        if let (Some(l), Some(foreign)) = (
            ctx.addr(&format!("upstreams[{i}].listen"), &u.listen),
            foreign,
        ) {
            upstreams.push(Upstream {
                workload: u.workload.clone(),
                listen: l,
                foreign,
            });
        } else {
            ok = false;
        }
    }
    ok.then_some(upstreams)
}

/// The attestation methods (all when unset; `None` after reporting a bad list).
fn attestation(raw: &RawWorkload, ctx: &mut Ctx<'_, RawWorkload>) -> Option<Vec<AttestMethod>> {
    let Some(list) = &raw.attestation else {
        return Some(AttestMethod::ALL.to_vec());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, m) in list.iter().enumerate() {
        match AttestMethod::ALL.iter().find(|k| k.as_str() == m) {
            Some(k) => out.push(*k),
            None => {
                ctx.error(
                    &format!("attestation[{i}]"),
                    format!("unknown attestation method `{m}`"),
                    Some("use `join_token` and/or `kubernetes`".into()),
                );
                ok = false;
            }
        }
    }
    if list.is_empty() {
        ctx.error(
            "attestation",
            "a workload needs at least one attestation method",
            Some("e.g. attestation: [join_token]".into()),
        );
        ok = false;
    }
    ok.then_some(out)
}

/// Checks across workloads: unique names, ids and node ids, known upstreams, port clashes.
pub(super) fn cross_checks(
    files: &Files,
    workloads: &[Workload],
    server: &ServerSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let by_file: HashMap<&Path, &Parsed<RawWorkload>> = files
        .workloads
        .iter()
        .map(|p| (p.path.as_path(), p))
        .collect();
    let at = |w: &Workload, path: &str| {
        let spans = by_file
            .get(w.file.as_path())
            .map(|p| p.spans().value(path))
            .unwrap_or_default();
        (w.file.clone(), spans)
    };
    let mut seen_name: HashMap<&str, &Workload> = HashMap::new();
    let mut seen_id: HashMap<&str, &Workload> = HashMap::new();
    let mut seen_node: HashMap<&str, &Workload> = HashMap::new();
    for w in workloads {
        for (map, key, path, what) in [
            (&mut seen_name, w.name.as_str(), "name", "workload name"),
            (&mut seen_id, w.spiffe_id.as_str(), "spiffe_id", "SPIFFE ID"),
            (&mut seen_node, w.node_id.as_str(), "node_id", "node id"),
        ] {
            if let Some(first) = map.insert(key, w) {
                let (file, pos) = at(w, path);
                diags.push(
                    Diagnostic::at(&file, pos, format!("duplicate {what} `{key}`"))
                        .hint(format!("already used in {}", first.file.display())),
                );
            }
        }
    }
    // Names of every workload file, valid or not, so one bad file does not cascade.
    let names: Vec<&str> = files
        .workloads
        .iter()
        .map(|p| p.value.name.as_str())
        .collect();
    let known: std::collections::HashSet<&str> = names.iter().copied().collect();
    for w in workloads {
        for (i, u) in w.upstreams.iter().enumerate() {
            if u.foreign.is_some() {
                continue;
            }
            if !known.contains(u.workload.as_str()) {
                let (file, pos) = at(w, &format!("upstreams[{i}].workload"));
                let hint = match did_you_mean(&u.workload, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("known workloads: {}", names.join(", ")),
                };
                diags.push(
                    Diagnostic::at(
                        &file,
                        pos,
                        format!("unknown upstream workload `{}`", u.workload),
                    )
                    .hint(hint),
                );
            } else if u.workload == w.name {
                let (file, pos) = at(w, &format!("upstreams[{i}].workload"));
                diags.push(Diagnostic::at(
                    &file,
                    pos,
                    "a workload cannot be its own upstream",
                ));
            }
        }
    }
    port_clashes(files, workloads, server, &at, diags);
}

fn port_clashes(
    files: &Files,
    workloads: &[Workload],
    server: &ServerSettings,
    at: &dyn Fn(&Workload, &str) -> (PathBuf, super::Pos),
    diags: &mut Vec<Diagnostic>,
) {
    let main = &files.main;
    // (address, who uses it, the workload (None: warden.yaml), YAML path); positions are
    // looked up only for a clash.
    let mut bound: Vec<(SocketAddr, String, Option<&Workload>, String)> = vec![
        (
            server.xds_listen,
            "server.xds_listen".into(),
            None,
            "server.xds_listen".into(),
        ),
        (
            server.admin_listen,
            "server.admin_listen".into(),
            None,
            "server.admin_listen".into(),
        ),
    ];
    for w in workloads {
        let mut add = |addr: SocketAddr, path: String| {
            bound.push((addr, format!("{}: {path}", w.name), Some(w), path));
        };
        add(w.sidecar_admin, "sidecar.admin".into());
        // `${INSTANCE_IP}` hosts are each instance's own address, unknown here.
        if !w.inbound.instance_ip.listen {
            add(w.inbound.listen, "inbound.listen".into());
        }
        if !w.inbound.instance_ip.app {
            add(w.inbound.app, "inbound.app".into());
        }
        for (i, u) in w.upstreams.iter().enumerate() {
            add(u.listen, format!("upstreams[{i}].listen"));
        }
    }
    // Indexed so the check stays linear with thousands of workloads: the first user of
    // each exact address, of each port on a wildcard IP, and of each port on any IP.
    let mut exact: HashMap<SocketAddr, usize> = HashMap::new();
    let mut wildcard: HashMap<u16, usize> = HashMap::new();
    let mut any: HashMap<u16, usize> = HashMap::new();
    for (i, (addr, what, owner, path)) in bound.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        let candidates = if addr.ip().is_unspecified() {
            [any.get(&addr.port()), None]
        } else {
            [exact.get(addr), wildcard.get(&addr.port())]
        };
        let first = candidates.into_iter().flatten().min().map(|&j| &bound[j]);
        exact.entry(*addr).or_insert(i);
        any.entry(addr.port()).or_insert(i);
        if addr.ip().is_unspecified() {
            wildcard.entry(addr.port()).or_insert(i);
        }
        if let Some((_, first, ..)) = first.filter(|(a, ..)| clash(*a, *addr)) {
            let (file, pos) = match owner {
                Some(w) => at(w, path),
                None => (main.path.clone(), main.spans().value(path)),
            };
            diags.push(
                Diagnostic::at(
                    &file,
                    pos,
                    format!("port clash: {what} uses {addr}, already used by {first}"),
                )
                .hint("every listener, app and admin address needs its own port"),
            );
        }
    }
}

/// Two addresses clash when the ports match and the IPs overlap (equal, or one unspecified).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
