//! Workload instances: every sidecar of a workload is one instance with its own SVID
//! (own private key, same SPIFFE ID), its own renewal and its own ACK state. A workload's
//! default instance (node id = the workload's node id, today's bootstraps) is minted at
//! start like before; any other instance (`node.cluster` = the workload's node id,
//! `node.id` = the instance name) is created when its sidecar connects ([`Joiner`]) and
//! forgotten [`INSTANCE_LINGER`] after its last stream closed.
//!
//! Memory: an instance's snapshot shares the workload's clusters, listeners and filter
//! config (one copy per workload, the "base"); only its secrets are its own, and its
//! listeners and local-app cluster when the workload uses `${INSTANCE_IP}`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::book::{Renewed, Target};
use super::ControlPlane;
use crate::config::{Config, Workload};
use crate::identity::{Svid, TrustBundle};
use crate::xds::cache::Joiner;
use crate::xds::limits::{oversized, ADS_MESSAGE_LIMIT};
use crate::xds::node::{split_key, NodeClaim};
use crate::xds::resources::{build_node_snapshot, build_secrets, NodeInputs, ResourceError};
use crate::xds::snapshot::Snapshot;
use crate::xds::types::{NodeId, ResourceType};

/// How long an instance's SVID and snapshot are kept after its last stream closed (a
/// sidecar that reconnects within this keeps its SVID; after it, memory is freed).
pub const INSTANCE_LINGER: Duration = Duration::from_secs(300);

/// Most instances one workload may have at once (a credential cannot grow memory
/// without bound by inventing instance names).
pub const MAX_INSTANCES_PER_WORKLOAD: usize = 4096;

/// How often the control plane looks for instances to forget.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// An instance created when its sidecar connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// The workload's name.
    pub(crate) workload: String,
    /// Its `INSTANCE_IP` (only kept for workloads that use `${INSTANCE_IP}`).
    pub(crate) ip: Option<IpAddr>,
    /// When a stream of it was last seen open (or when it joined).
    pub(crate) last_seen: SystemTime,
}

/// Every node `config` serves: each workload's default instance (unless it uses
/// `${INSTANCE_IP}`: then every instance, the default one too, brings its address) and
/// the joined instances whose workload is still in the config with the same node id.
pub(crate) fn targets<'c>(
    config: &'c Config,
    instances: &BTreeMap<NodeId, Instance>,
) -> Vec<Target<'c>> {
    let mut out: Vec<Target<'c>> = config
        .workloads
        .iter()
        .filter(|w| !w.inbound.instance_ip.any())
        .map(|w| Target {
            key: NodeId::new(w.node_id.clone()),
            workload: w,
            ip: None,
        })
        .collect();
    for (key, inst) in instances {
        let Some(w) = config.workload(&inst.workload) else {
            continue;
        };
        let (node_id, instance) = split_key(key);
        let default_static = instance.is_none() && !w.inbound.instance_ip.any();
        if w.node_id == node_id && !default_static {
            out.push(Target {
                key: key.clone(),
                workload: w,
                ip: inst.ip,
            });
        }
    }
    out
}

/// The SVID a workload's base snapshot is built with: never sent (every node's secrets
/// replace the base's), so it holds no key.
fn placeholder_svid(w: &Workload) -> Svid {
    Svid {
        id: w.spiffe_id.clone(),
        cert_chain_pem: String::new(),
        private_key_pem: String::new().into(),
        not_before: UNIX_EPOCH,
        not_after: UNIX_EPOCH,
        serial_hex: String::new(),
    }
}

/// Everything the base and node builders share.
#[derive(Debug, Clone, Copy)]
pub(super) struct BuildCtx<'a> {
    pub(super) config: &'a Config,
    pub(super) bundle: &'a TrustBundle,
    pub(super) federated: &'a [TrustBundle],
    pub(super) filter_module: &'a std::path::Path,
}

/// A workload's base snapshot: what all its instances share.
pub(super) fn base(ctx: BuildCtx<'_>, w: &Workload) -> Result<Arc<Snapshot>, ResourceError> {
    let svid = placeholder_svid(w);
    let inputs = NodeInputs {
        config: ctx.config,
        workload: w,
        svid: &svid,
        bundle: ctx.bundle,
        federated: ctx.federated,
        filter_module: ctx.filter_module,
    };
    build_node_snapshot(&inputs).map(Arc::new)
}

/// One node's snapshot: the base with the node's own secrets; with `${INSTANCE_IP}`, a
/// full build at the instance's address sharing what equals the base.
pub(super) fn node_snapshot(
    ctx: BuildCtx<'_>,
    base: &Snapshot,
    t: &Target<'_>,
    svid: &Svid,
) -> Result<Snapshot, ResourceError> {
    let w = t.workload;
    match t.ip.filter(|_| w.inbound.instance_ip.any()) {
        None => {
            let inputs = NodeInputs {
                config: ctx.config,
                workload: w,
                svid,
                bundle: ctx.bundle,
                federated: ctx.federated,
                filter_module: ctx.filter_module,
            };
            // The bundle secrets are the base's: shared, not copied.
            let secrets = build_secrets(&inputs)?.shared_with(base);
            Ok(base.with_types_of(&secrets, &[ResourceType::Secret]))
        }
        Some(ip) => {
            let at = w.at_instance_ip(ip);
            let inputs = NodeInputs {
                config: ctx.config,
                workload: &at,
                svid,
                bundle: ctx.bundle,
                federated: ctx.federated,
                filter_module: ctx.filter_module,
            };
            Ok(build_node_snapshot(&inputs)?.shared_with(base))
        }
    }
}

/// The workload `claim` names and its address when the workload uses `${INSTANCE_IP}`;
/// `Err`: why it cannot join.
fn admissible<'c>(
    config: &'c Config,
    claim: &NodeClaim,
) -> Result<(&'c Workload, Option<IpAddr>), String> {
    let node_id = claim.workload_node_id();
    let w = config
        .workloads
        .iter()
        .find(|w| w.node_id == node_id)
        .ok_or_else(|| {
            format!(
                "node id `{node_id}` is not a workload in the Warden config; start Envoy with \
                 the bootstrap from `warden bootstrap --workload NAME [--instance NAME]`"
            )
        })?;
    let ip = claim.instance_ip().map_err(|e| e.to_string())?;
    if !w.inbound.instance_ip.any() {
        return Ok((w, None));
    }
    match ip {
        Some(ip) => Ok((w, Some(ip))),
        None => Err(format!(
            "workload `{}` uses ${{INSTANCE_IP}} in its inbound addresses: its sidecars must send \
             node metadata INSTANCE_IP (their own address; `warden bootstrap --instance-ip`)",
            w.name
        )),
    }
}

/// Whether `key` needs an SVID and snapshot now: `false` for a known instance at the same
/// address holding an SVID (its last-seen time is refreshed); `Err` when a new one would
/// exceed [`MAX_INSTANCES_PER_WORKLOAD`].
pub(super) fn room_for(
    state: &mut super::State,
    w: &Workload,
    key: &NodeId,
    ip: Option<IpAddr>,
    now: SystemTime,
) -> Result<bool, String> {
    let minted = state.book.svids.contains_key(key);
    if let Some(i) = state.instances.get_mut(key) {
        if i.ip == ip && minted {
            i.last_seen = now;
            return Ok(false);
        }
        return Ok(true);
    }
    let count = state
        .instances
        .values()
        .filter(|i| i.workload == w.name)
        .count();
    if count >= MAX_INSTANCES_PER_WORKLOAD {
        return Err(format!(
            "workload `{}` already has {count} instances (the limit); instances are forgotten {} s after their last stream closed",
            w.name,
            INSTANCE_LINGER.as_secs()
        ));
    }
    Ok(true)
}

impl ControlPlane {
    /// Lets sidecars of new instances join: the cache asks this control plane to create
    /// an instance when its first stream arrives. Call once, on the shared control plane.
    pub fn accept_instances(self: &Arc<Self>) {
        let weak: std::sync::Weak<dyn Joiner> = Arc::downgrade(self) as _;
        self.xds.cache.set_joiner(weak);
    }

    fn join_instance(&self, claim: &NodeClaim) -> Result<(), String> {
        let mut state = self.lock();
        let config = state.config.clone();
        let (w, ip) = admissible(&config, claim)?;
        if claim.instance_name().is_none() && !w.inbound.instance_ip.any() {
            return Ok(()); // the default instance, published at every apply
        }
        let key = claim.key();
        let now = self.clock.now();
        if !room_for(&mut state, w, &key, ip, now)? {
            return Ok(()); // known, same address, SVID held: a reconnect
        }
        let target = Target {
            key: key.clone(),
            workload: w,
            ip,
        };
        self.mint_and_publish(&mut state, &config, &target, now)?;
        tracing::info!(instance = %key, workload = %w.name, ip = ?ip, "instance joined");
        Ok(())
    }

    /// Mints `t`'s SVID, builds its snapshot from its workload's base and publishes it.
    fn mint_and_publish(
        &self,
        state: &mut super::State,
        config: &Config,
        t: &Target<'_>,
        now: SystemTime,
    ) -> Result<(), String> {
        let key = &t.key;
        let (ca, bundle) = {
            let a = self.authority();
            (a.active(), a.bundle())
        };
        let base = state
            .bases
            .get(&t.workload.name)
            .cloned()
            .ok_or_else(|| format!("workload `{}` is not built yet; retry", t.workload.name))?;
        let mut renewed = Renewed::default();
        let never: &dyn Fn(&str, &Svid) -> bool = &|_, _| false;
        self.renew_one(&mut state.book, config, t, (&ca, now, never), &mut renewed)
            .map_err(|e| format!("no SVID for instance `{key}`: {e}"))?;
        let svid = renewed
            .svids
            .get(key)
            .ok_or_else(|| format!("no SVID for instance `{key}`"))?;
        let federated = self.federated_trust_bundles();
        let ctx = BuildCtx {
            config,
            bundle: &bundle,
            federated: &federated,
            filter_module: self.filter_modules().for_config(config),
        };
        let snap = node_snapshot(ctx, &base, t, svid).map_err(|e| e.to_string())?;
        if let Some(detail) = oversized(&snap, ADS_MESSAGE_LIMIT) {
            return Err(format!("instance `{key}`: {detail}"));
        }
        state.instances.insert(
            key.clone(),
            Instance {
                workload: t.workload.name.clone(),
                ip: t.ip,
                last_seen: now,
            },
        );
        state.book.svids.extend(renewed.svids);
        state.book.signers.extend(renewed.signers);
        let mut applied = super::Applied::default();
        self.publish_one(state, key.clone(), snap, bundle.sequence, &mut applied);
        Ok(())
    }

    /// Forgets instances whose last stream closed more than [`INSTANCE_LINGER`] ago:
    /// their SVID, snapshot, ACK history and status. Runs from the tick.
    pub(super) fn forget_gone_instances(&self) {
        let now = self.clock.now();
        let mut state = self.lock();
        if state
            .swept_at
            .is_some_and(|t| now < t + SWEEP_EVERY && now >= t)
        {
            return;
        }
        state.swept_at = Some(now);
        let mut gone = Vec::new();
        for (key, inst) in state.instances.iter_mut() {
            if self.xds.status.open_streams(key) > 0 {
                inst.last_seen = now;
            } else if now.duration_since(inst.last_seen).unwrap_or_default() > INSTANCE_LINGER {
                gone.push(key.clone());
            }
        }
        for key in gone {
            state.instances.remove(&key);
            state.book.svids.remove(&key);
            state.book.signers.remove(&key);
            state.book.failing.remove(&key);
            state.published.remove(&key);
            self.xds.cache.remove(&key);
            self.xds.status.forget(&key);
            tracing::info!(instance = %key, linger_s = INSTANCE_LINGER.as_secs(), "instance forgotten: no stream since the linger time");
        }
    }

    /// Instances per workload (name): those holding an SVID, for views and metrics.
    pub fn instance_counts(&self) -> BTreeMap<String, usize> {
        let state = self.lock();
        let by_node: BTreeMap<&str, &str> = state
            .config
            .workloads
            .iter()
            .map(|w| (w.node_id.as_str(), w.name.as_str()))
            .collect();
        let mut out = BTreeMap::new();
        for key in state.book.svids.keys() {
            if let Some(name) = by_node.get(split_key(key).0) {
                *out.entry((*name).to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    /// The keys of every instance holding an SVID (default instances included).
    pub fn instance_keys(&self) -> BTreeSet<NodeId> {
        self.lock().book.svids.keys().cloned().collect()
    }
}

impl Joiner for ControlPlane {
    fn join(&self, claim: &NodeClaim) -> Result<(), String> {
        self.join_instance(claim)
    }
}
