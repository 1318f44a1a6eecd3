//! The size limit of one ADS message, and the checks that keep every response under it.
//!
//! gRPC clients refuse a message larger than their receive limit (4 MiB by default)
//! and reset the stream; Envoy then reconnects, is sent the same response again and the
//! loop never ends, without a NACK. So Warden has one documented limit,
//! [`ADS_MESSAGE_LIMIT`]: the sidecar bootstrap raises Envoy's receive limit to it, and
//! no response Warden can send is allowed to exceed it. A state-of-the-world response
//! carries every resource of one type, so the bound is checked per type (a delta
//! response never carries more than that). Pure; `warden validate` and the control
//! loop call [`oversized`].

use std::time::SystemTime;

use prost::Message;

use super::resources::{build_node_snapshot, FilterModules, NodeInputs, ResourceError};
use super::snapshot::Snapshot;
use super::types::ResourceType;
use crate::config::Config;
use crate::identity::{Svid, TrustBundle};

/// The largest ADS response Warden sends (and the receive limit set in the sidecar's
/// bootstrap): 8 MiB.
pub const ADS_MESSAGE_LIMIT: usize = 8 * 1024 * 1024;

/// Bytes per response for its envelope (type URL, version, nonce, control plane id).
const ENVELOPE: usize = 1024;

/// A type whose response would exceed the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// Resource type.
    pub t: ResourceType,
    /// Its largest resource.
    pub resource: String,
    /// That resource's encoded size.
    pub resource_bytes: usize,
    /// The whole response's estimated size.
    pub response_bytes: usize,
    /// The limit.
    pub limit: usize,
}

impl std::fmt::Display for Oversized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} response would be {} bytes, over the ADS message limit of {} bytes; its largest resource `{}` is {} bytes (shrink the policy data, e.g. policies/data.json)",
            self.t, self.response_bytes, self.limit, self.resource, self.resource_bytes
        )
    }
}

/// The encoded size of a response carrying every resource of `t` (upper bound for the
/// delta form too: a delta `Resource` adds its name and version around the `Any`).
pub fn response_bytes(snap: &Snapshot, t: ResourceType) -> (usize, Option<(String, usize)>) {
    let Some(ts) = snap.get(t) else {
        return (ENVELOPE, None);
    };
    let mut total = ENVELOPE;
    let mut largest: Option<(String, usize)> = None;
    for r in ts.resources.values() {
        let body = r.body.encoded_len();
        // Field tags and length prefixes, name and version of a delta `Resource`.
        total += body + r.name.len() + r.version.as_str().len() + 32;
        if largest.as_ref().is_none_or(|(_, b)| body > *b) {
            largest = Some((r.name.clone(), body));
        }
    }
    (total, largest)
}

/// The first type (in push order) whose response would exceed `limit`.
pub fn oversized(snap: &Snapshot, limit: usize) -> Option<Oversized> {
    ResourceType::PUSH_ORDER.into_iter().find_map(|t| {
        let (total, largest) = response_bytes(snap, t);
        let (resource, resource_bytes) = largest?;
        (total > limit).then_some(Oversized {
            t,
            resource,
            resource_bytes,
            response_bytes: total,
            limit,
        })
    })
}

/// For `warden validate`: every workload whose sidecar would be sent a response over
/// `limit`, built with placeholder SVIDs and bundle of realistic size (they are a few
/// KB; the policy data dominates).
pub fn check_config(
    config: &Config,
    modules: &FilterModules,
    limit: usize,
) -> Result<Vec<(String, Oversized)>, ResourceError> {
    let bundle = TrustBundle {
        trust_domain: config.trust_domain.clone(),
        x509_authorities_der: vec![vec![0u8; 1024]; 3],
        sequence: 1,
    };
    let mut out = Vec::new();
    for w in &config.workloads {
        let svid = Svid {
            id: w.spiffe_id.clone(),
            cert_chain_pem: "-".repeat(2048),
            private_key_pem: "-".repeat(512).into(),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
            serial_hex: "00".into(),
        };
        let inputs = NodeInputs {
            config,
            workload: w,
            svid: &svid,
            bundle: &bundle,
            federated: &[],
            filter_module: modules.for_config(config),
        };
        if let Some(o) = oversized(&build_node_snapshot(&inputs)?, limit) {
            out.push((w.name.clone(), o));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::snapshot::tests::sample;

    #[test]
    fn a_small_snapshot_is_under_the_limit() {
        assert_eq!(
            oversized(&sample(&[("a", "1")], 1), ADS_MESSAGE_LIMIT),
            None
        );
    }

    #[test]
    fn a_type_over_the_limit_is_named_with_its_largest_resource() {
        let snap = sample(&[("small", "x"), ("big", &"y".repeat(5000))], 1);
        let o = oversized(&snap, 4096).unwrap();
        assert_eq!((o.t, o.resource.as_str()), (ResourceType::Secret, "big"));
        assert!(o.resource_bytes > 5000 && o.response_bytes > o.resource_bytes);
        let words = o.to_string();
        assert!(words.contains("`big`") && words.contains("4096"), "{words}");
    }

    #[test]
    fn the_estimate_bounds_the_real_encoded_response() {
        use xds_api::pb::envoy::service::discovery::v3::DiscoveryResponse;
        let snap = sample(&[("a", &"z".repeat(10_000)), ("b", "1")], 1);
        let t = ResourceType::Secret;
        let real = DiscoveryResponse {
            version_info: snap.version(t).to_string(),
            resources: snap
                .get(t)
                .unwrap()
                .resources
                .values()
                .map(|r| r.body.clone())
                .collect(),
            type_url: t.type_url().into(),
            nonce: "18446744073709551615".into(),
            ..Default::default()
        }
        .encoded_len();
        let (estimate, _) = response_bytes(&snap, t);
        assert!(estimate >= real, "{estimate} < {real}");
        assert!(estimate < real + 2048, "{estimate} far above {real}");
    }
}
