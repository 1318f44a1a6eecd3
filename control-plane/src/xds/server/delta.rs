//! Incremental (delta) ADS protocol state for one stream, as a pure state machine.
//! Tracks per type the subscription (wildcard and/or names) and the version of each
//! resource the client has; a response carries only resources whose version differs
//! and names the removed ones in `removed_resources`. Subscription changes are applied
//! and answered whatever the nonce and whether the request is an ACK or a NACK (the
//! xDS protocol makes the names of every request count); ACK/NACK are recognised by the
//! latest nonce, older nonces are stale. A NACK gets no reply of its own, and the
//! resources it rejected are not assumed applied: they are sent again when a type they
//! depend on ([`ResourceType::depends_on`]) is ACKed, or when they change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::event::Event;
use crate::xds::snapshot::Snapshot;
use crate::xds::types::{Nonce, ResourceType, Version};

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Resource name -> version the client has (as far as we know).
    known: BTreeMap<String, Version>,
    last_nonce: Option<Nonce>,
    /// `system_version_info` of the last response (reported on ACK).
    last_version: Version,
    /// Names of the resources in the last response.
    last_sent: Vec<String>,
    /// Resources whose last sent version Envoy rejected (sent again on recovery).
    rejected: BTreeSet<String>,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

impl TypeState {
    /// Reads the request's response nonce: an ACK or NACK of the last response, or a stale
    /// nonce. Returns `(nack, ack)`.
    fn on_response_nonce(
        &mut self,
        t: ResourceType,
        req: &DeltaDiscoveryRequest,
        events: &mut Vec<Event>,
    ) -> (bool, bool) {
        if req.response_nonce.is_empty() {
            return (false, false);
        }
        let nonce = Nonce::new(req.response_nonce.as_str());
        if self.last_nonce.as_ref() != Some(&nonce) {
            events.push(Event::StaleNonce { t, nonce });
            return (false, false);
        }
        if let Some(err) = &req.error_detail {
            let sent = std::mem::take(&mut self.last_sent);
            self.rejected.extend(sent);
            events.push(Event::Nack {
                t,
                version: self.last_version.clone(),
                nonce,
                detail: err.message.clone(),
            });
            return (true, false);
        }
        // An ACK covers only this response's resources: with earlier ones still rejected,
        // the node does not run the snapshot's version of this type (a rejected trust
        // bundle must keep the node lagging for CA activation).
        events.push(if self.rejected.is_empty() {
            Event::Ack {
                t,
                version: self.last_version.clone(),
                nonce,
            }
        } else {
            Event::PartialAck {
                t,
                nonce,
                still_rejected: self.rejected.iter().cloned().collect(),
            }
        });
        (false, true)
    }

    /// Applies the request's subscribe / unsubscribe lists; true when the subscription
    /// changed or names were (re)subscribed, which must be answered.
    fn apply_subscriptions(&mut self, req: &DeltaDiscoveryRequest, first: bool) -> bool {
        let before = (self.wildcard, self.names.clone());
        for n in &req.resource_names_subscribe {
            if n == "*" {
                self.wildcard = true;
            } else {
                self.names.insert(n.clone());
                if !first {
                    // A (re)subscription must be answered even if we think the client has it.
                    self.known.remove(n);
                }
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                self.wildcard = false;
            } else {
                self.names.remove(n);
                self.known.remove(n);
            }
        }
        let resubscribed = !first && !req.resource_names_subscribe.is_empty();
        resubscribed || before != (self.wildcard, self.names.clone())
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
    ) -> (Vec<Event>, Vec<DeltaDiscoveryResponse>) {
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            return (
                vec![Event::UnsupportedType {
                    type_url: req.type_url.clone(),
                }],
                Vec::new(),
            );
        };
        let mut events = Vec::new();
        let first = !self.types.contains_key(&t);
        let st = self.types.entry(t).or_default();
        if first {
            st.known = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), Version::new(v.as_str())))
                .collect();
            st.wildcard = t.wildcard_by_default() && req.resource_names_subscribe.is_empty();
        }
        let (nack, ack) = st.on_response_nonce(t, req, &mut events);
        let subscription_changed = st.apply_subscriptions(req, first);
        let mut out = Vec::new();
        if !nack || subscription_changed {
            out.extend(self.diff(t, snap, first, &mut events));
        }
        if ack {
            out.extend(self.resend_rejected_dependents(t, snap, &mut events));
        }
        (events, out)
    }

    /// After an ACK of `t`: resources of types that depend on `t` and were rejected are
    /// sent again (the cause of their rejection may be gone).
    fn resend_rejected_dependents(
        &mut self,
        t: ResourceType,
        snap: &Snapshot,
        events: &mut Vec<Event>,
    ) -> Vec<DeltaDiscoveryResponse> {
        let mut out = Vec::new();
        for d in ResourceType::PUSH_ORDER {
            if !d.depends_on().contains(&t) {
                continue;
            }
            let Some(st) = self.types.get_mut(&d) else {
                continue;
            };
            if st.rejected.is_empty() {
                continue;
            }
            for n in std::mem::take(&mut st.rejected) {
                st.known.remove(&n);
            }
            out.extend(self.diff(d, snap, false, events));
        }
        out
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
            if st.known.get(name) != Some(&r.version) {
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
            st.known
                .insert(r.name.clone(), Version::new(r.version.as_str()));
            st.rejected.remove(&r.name);
        }
        st.last_sent = resources.iter().map(|r| r.name.clone()).collect();
        for n in &removed {
            st.known.remove(n);
        }
        self.nonce_counter += 1;
        let nonce = Nonce::nth(self.nonce_counter);
        st.last_nonce = Some(nonce.clone());
        let version = snap.version(t);
        st.last_version = version.clone();
        let response = DeltaDiscoveryResponse {
            system_version_info: version.to_string(),
            resources,
            type_url: t.type_url().to_string(),
            removed_resources: removed,
            nonce: nonce.to_string(),
            ..Default::default()
        };
        events.push(Event::Sent {
            t,
            version,
            nonce,
            resources: response.resources.len(),
        });
        Some(response)
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
