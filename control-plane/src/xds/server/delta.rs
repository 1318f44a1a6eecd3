//! Incremental (delta) ADS protocol state for one stream, as a pure state machine.
//! Tracks per type the subscription (wildcard and/or names) and the version of each
//! resource the client has; a response carries only resources whose version differs
//! and names the removed ones in `removed_resources`. Subscription changes are applied
//! whatever the nonce; ACK/NACK are recognised by the latest nonce, older nonces are
//! stale. A NACK gets no reply.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::event::Event;
use crate::xds::snapshot::Snapshot;
use crate::xds::types::ResourceType;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Resource name -> version the client has (as far as we know).
    known: BTreeMap<String, String>,
    last_nonce: Option<String>,
    /// `system_version_info` of the last response (reported on ACK).
    last_version: String,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Protocol state of one delta stream.
#[derive(Debug, Default)]
pub struct DeltaState {
    types: HashMap<ResourceType, TypeState>,
    nonce_counter: u64,
}

impl DeltaState {
    /// A fresh stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one request against the node's current snapshot.
    pub fn on_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<Event>, Option<DeltaDiscoveryResponse>) {
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            return (
                vec![Event::UnsupportedType {
                    type_url: req.type_url.clone(),
                }],
                None,
            );
        };
        let mut events = Vec::new();
        let first = !self.types.contains_key(&t);
        let st = self.types.entry(t).or_default();
        if first {
            st.known = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            st.wildcard = t.wildcard_by_default() && req.resource_names_subscribe.is_empty();
        }
        let mut nack = false;
        if !req.response_nonce.is_empty() {
            if st.last_nonce.as_deref() != Some(req.response_nonce.as_str()) {
                events.push(Event::StaleNonce {
                    t,
                    nonce: req.response_nonce.clone(),
                });
            } else if let Some(err) = &req.error_detail {
                nack = true;
                events.push(Event::Nack {
                    t,
                    version: st.last_version.clone(),
                    nonce: req.response_nonce.clone(),
                    detail: err.message.clone(),
                });
            } else {
                events.push(Event::Ack {
                    t,
                    version: st.last_version.clone(),
                    nonce: req.response_nonce.clone(),
                });
            }
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                st.wildcard = true;
            } else {
                st.names.insert(n.clone());
                if !first {
                    // A (re)subscription must be answered even if we think the client has it.
                    st.known.remove(n);
                }
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                st.wildcard = false;
            } else {
                st.names.remove(n);
                st.known.remove(n);
            }
        }
        if nack {
            return (events, None);
        }
        let resp = self.diff(t, snap, first, &mut events);
        (events, resp)
    }

    /// Handles a new snapshot: per subscribed type, in make-before-break order, the
    /// changed and removed resources.
    pub fn on_snapshot(&mut self, snap: &Snapshot) -> (Vec<Event>, Vec<DeltaDiscoveryResponse>) {
        let mut events = Vec::new();
        let subscribed: Vec<ResourceType> = ResourceType::PUSH_ORDER
            .into_iter()
            .filter(|t| self.types.contains_key(t))
            .collect();
        let out = subscribed
            .into_iter()
            .filter_map(|t| self.diff(t, snap, false, &mut events))
            .collect();
        (events, out)
    }

    fn diff(
        &mut self,
        t: ResourceType,
        snap: &Snapshot,
        always: bool,
        events: &mut Vec<Event>,
    ) -> Option<DeltaDiscoveryResponse> {
        let st = self.types.entry(t).or_default();
        let empty = BTreeMap::new();
        let all = snap.get(t).map(|s| &s.resources).unwrap_or(&empty);
        let mut resources = Vec::new();
        for (name, r) in all.iter().filter(|(n, _)| st.wants(n)) {
            if st.known.get(name).map(String::as_str) != Some(r.version.as_str()) {
                resources.push(Resource {
                    name: name.clone(),
                    version: r.version.to_string(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = st
            .known
            .keys()
            .filter(|n| !all.contains_key(*n))
            .cloned()
            .collect();
        let missing: Vec<String> = st
            .names
            .iter()
            .filter(|n| !all.contains_key(*n))
            .cloned()
            .collect();
        if !missing.is_empty() && (always || !resources.is_empty()) {
            events.push(Event::Missing { t, names: missing });
        }
        if resources.is_empty() && removed.is_empty() && !always {
            return None;
        }
        for r in &resources {
            st.known.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            st.known.remove(n);
        }
        self.nonce_counter += 1;
        let nonce = self.nonce_counter.to_string();
        st.last_nonce = Some(nonce.clone());
        let version = snap.version(t).to_string();
        st.last_version = version.clone();
        events.push(Event::Sent {
            t,
            version: version.clone(),
            nonce: nonce.clone(),
            resources: resources.len(),
        });
        Some(DeltaDiscoveryResponse {
            system_version_info: version,
            resources,
            type_url: t.type_url().to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
