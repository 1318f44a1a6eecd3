//! State-of-the-world ADS protocol state for one stream, as a pure state machine:
//! requests and snapshots in, responses and [`Event`]s out. Follows the xDS protocol
//! doc ("ACK and NACK semantics", "When to send an update"):
//!
//! - a request whose `response_nonce` is not the latest sent for its type is stale and
//!   ignored (a response to it must not be sent; the client answers the newer response
//!   with its current names anyway);
//! - the resource names of every other request count, ACK or NACK: when they differ
//!   from the names the last response answered, the new set is answered;
//! - an ACK with unchanged names and a NACK with unchanged names get no reply (a NACK
//!   keeps the last good config serving);
//! - a NACKed version is never assumed applied: when a type it depends on
//!   ([`ResourceType::depends_on`], e.g. the filter config a listener references) is
//!   ACKed afterwards, the rejected type is sent again; when its own version changes it
//!   is pushed as usual.

use std::collections::{BTreeSet, HashMap};

use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::event::Event;
use crate::xds::snapshot::Snapshot;
use crate::xds::types::{Nonce, ResourceType, Version};

#[derive(Debug, Default)]
struct TypeState {
    /// Subscribed names; empty with a wildcard type means everything.
    names: BTreeSet<String>,
    /// The names the last response answered.
    answered: Option<BTreeSet<String>>,
    last_nonce: Option<Nonce>,
    last_version: Option<Version>,
    /// The version of the last response, when Envoy rejected it (until the next one).
    rejected: Option<Version>,
}

/// Protocol state of one SotW stream.
#[derive(Debug, Default)]
pub struct SotwState {
    types: HashMap<ResourceType, TypeState>,
    nonce_counter: u64,
}

impl SotwState {
    /// A fresh stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one request against the node's current snapshot: at most one response
    /// for the requested type, plus re-sends of rejected types that depend on it.
    pub fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<Event>, Vec<DiscoveryResponse>) {
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            return (
                vec![Event::UnsupportedType {
                    type_url: req.type_url.clone(),
                }],
                Vec::new(),
            );
        };
        let mut events = Vec::new();
        let mut out = Vec::new();
        let st = self.types.entry(t).or_default();
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        if req.response_nonce.is_empty() {
            // A first request (or a new subscription after a reconnect): always answered.
            st.names = names;
            out.push(self.respond(t, snap, &mut events));
            return (events, out);
        }
        let nonce = Nonce::new(req.response_nonce.as_str());
        if st.last_nonce.as_ref() != Some(&nonce) {
            events.push(Event::StaleNonce { t, nonce });
            return (events, out);
        }
        let acked = req.error_detail.is_none();
        match &req.error_detail {
            Some(err) => {
                st.rejected = st.last_version.clone();
                events.push(Event::Nack {
                    t,
                    version: st.last_version.clone().unwrap_or_default(),
                    nonce,
                    detail: err.message.clone(),
                });
            }
            None => events.push(Event::Ack {
                t,
                version: Version::new(req.version_info.as_str()),
                nonce,
            }),
        }
        let changed = st.answered.as_ref() != Some(&names);
        st.names = names;
        if changed {
            out.push(self.respond(t, snap, &mut events));
        }
        if acked {
            // What was rejected because of this type may be accepted now.
            for d in ResourceType::PUSH_ORDER {
                let waiting = self
                    .types
                    .get(&d)
                    .is_some_and(|s| s.rejected.is_some() && s.last_nonce.is_some());
                if waiting && d.depends_on().contains(&t) {
                    out.push(self.respond(d, snap, &mut events));
                }
            }
        }
        (events, out)
    }

    /// Handles a new snapshot: one response per subscribed type whose version changed,
    /// in make-before-break order.
    pub fn on_snapshot(&mut self, snap: &Snapshot) -> (Vec<Event>, Vec<DiscoveryResponse>) {
        let mut events = Vec::new();
        let mut out = Vec::new();
        for t in ResourceType::PUSH_ORDER {
            let due = self.types.get(&t).is_some_and(|st| {
                st.last_nonce.is_some() && st.last_version.as_ref() != Some(&snap.version(t))
            });
            if due {
                out.push(self.respond(t, snap, &mut events));
            }
        }
        (events, out)
    }

    fn respond(
        &mut self,
        t: ResourceType,
        snap: &Snapshot,
        events: &mut Vec<Event>,
    ) -> DiscoveryResponse {
        self.nonce_counter += 1;
        let nonce = Nonce::nth(self.nonce_counter);
        let version = snap.version(t);
        let st = self.types.entry(t).or_default();
        let all = snap.get(t).map(|s| &s.resources);
        let wildcard = st.names.contains("*") || (t.wildcard_by_default() && st.names.is_empty());
        let resources: Vec<_> = match all {
            Some(all) if wildcard => all.values().map(|r| r.body.clone()).collect(),
            Some(all) => st
                .names
                .iter()
                .filter_map(|n| all.get(n))
                .map(|r| r.body.clone())
                .collect(),
            None => Vec::new(),
        };
        if !wildcard {
            let missing: Vec<String> = st
                .names
                .iter()
                .filter(|n| all.is_none_or(|a| !a.contains_key(*n)))
                .cloned()
                .collect();
            if !missing.is_empty() {
                events.push(Event::Missing { t, names: missing });
            }
        }
        st.last_nonce = Some(nonce.clone());
        st.last_version = Some(version.clone());
        st.answered = Some(st.names.clone());
        st.rejected = None;
        let response = DiscoveryResponse {
            version_info: version.to_string(),
            resources,
            type_url: t.type_url().to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        };
        events.push(Event::Sent {
            t,
            version,
            nonce,
            resources: response.resources.len(),
        });
        response
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
