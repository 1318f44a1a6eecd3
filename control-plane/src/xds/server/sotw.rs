//! State-of-the-world ADS protocol state for one stream, as a pure state machine:
//! requests and snapshots in, responses and [`Event`]s out. Follows the xDS protocol
//! doc ("ACK and NACK semantics", "When to send an update"): a request whose
//! `response_nonce` is not the latest sent for its type is stale and ignored; an ACK
//! (latest nonce, no `error_detail`) gets no reply unless it changes the subscribed
//! names; a NACK gets no reply (the last good config keeps serving).

use std::collections::{BTreeSet, HashMap};

use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::event::Event;
use crate::xds::snapshot::Snapshot;
use crate::xds::types::{ResourceType, Version};

#[derive(Debug, Default)]
struct TypeState {
    /// Subscribed names; empty with a wildcard type means everything.
    names: BTreeSet<String>,
    last_nonce: Option<String>,
    last_version: Option<Version>,
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

    /// Handles one request against the node's current snapshot.
    pub fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<Event>, Option<DiscoveryResponse>) {
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            return (
                vec![Event::UnsupportedType {
                    type_url: req.type_url.clone(),
                }],
                None,
            );
        };
        let mut events = Vec::new();
        let st = self.types.entry(t).or_default();
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        if !req.response_nonce.is_empty() {
            if st.last_nonce.as_deref() != Some(req.response_nonce.as_str()) {
                events.push(Event::StaleNonce {
                    t,
                    nonce: req.response_nonce.clone(),
                });
                return (events, None);
            }
            if let Some(err) = &req.error_detail {
                events.push(Event::Nack {
                    t,
                    version: st
                        .last_version
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    nonce: req.response_nonce.clone(),
                    detail: err.message.clone(),
                });
                st.names = names;
                return (events, None);
            }
            events.push(Event::Ack {
                t,
                version: req.version_info.clone(),
                nonce: req.response_nonce.clone(),
            });
            if st.names == names {
                return (events, None);
            }
        }
        st.names = names;
        let resp = self.respond(t, snap, &mut events);
        (events, Some(resp))
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
        let nonce = self.nonce_counter.to_string();
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
        events.push(Event::Sent {
            t,
            version: version.to_string(),
            nonce: nonce.clone(),
            resources: resources.len(),
        });
        DiscoveryResponse {
            version_info: version.to_string(),
            resources,
            type_url: t.type_url().to_string(),
            nonce,
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
