//! The filter's request flow, written against a [`Host`] trait so it runs and is tested
//! natively; `wasm/` binds the trait to proxy-wasm host calls (Kuadrant's wasm-shim
//! layout). Every host failure and every policy failure ends in a deny (fail closed);
//! nothing here panics.

use std::collections::HashMap;
use std::sync::Arc;

use crate::authorize::{authorize_cached, Action, Counter, DecisionIds, DECISION_ID_HEADER};
use crate::cache::DecisionCache;
use crate::config::PluginConfig;
use crate::input::{Peer, RequestAttributes};
use crate::needs::InputNeeds;
use crate::policy::CompiledPolicy;

/// A host call failed (proxy-wasm `Status` or a malformed value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host call {call} failed: {detail}")]
pub struct HostError {
    /// Which call.
    pub call: &'static str,
    /// The host's status or what was wrong.
    pub detail: String,
}

/// Log levels the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Decision lines and normal events.
    Info,
    /// Denies caused by errors, bad configuration.
    Warn,
}

/// What the filter needs from Envoy. Contract: calls never panic; a failure is an `Err`.
pub trait Host {
    /// `get_property(path)`; `Ok(None)` when the property is absent.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// All request headers (pseudo-headers included) in one call, values as raw bytes
    /// (RFC 9110 allows non-UTF-8 `obs-text`; the core decides how to read them).
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// Answers the request locally.
    fn send_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &str,
    ) -> Result<(), HostError>;
    /// Writes a log line.
    fn log(&self, level: Level, message: &str);
    /// Adds `by` to a counter.
    fn increment(&self, counter: Counter, by: u64);
    /// Microseconds from some fixed point (only differences are used).
    fn now_micros(&self) -> u64;
    /// `set_property(path, value)`: Envoy keeps it in the request's filter state as
    /// `wasm.<path>` (read by the access log).
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
}

/// The filter-state property holding a decision record (`wasm.warden_decision` in Envoy).
pub const DECISION_RECORD_PROPERTY: &str = "warden_decision";

/// What the HTTP context returns to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Continue the filter chain.
    Continue,
    /// Stop: a local response was sent.
    Stop,
}

/// Verified peers remembered per VM, keyed by Envoy's connection id (unique for the life
/// of the process), so a request on a known connection costs one property read instead
/// of two. Cleared when full.
const PEER_CACHE_SIZE: usize = 4096;

/// The root state: the compiled policy (swapped on each configure), the id source, the
/// peer cache and the counts not yet added to Envoy's counters.
#[derive(Debug)]
pub struct Plugin {
    policy: Option<Arc<CompiledPolicy>>,
    ids: DecisionIds,
    peers: HashMap<u64, Peer>,
    decisions: DecisionCache,
    pending: [u64; Counter::ALL.len()],
}

impl Plugin {
    /// A plugin with no policy yet (requests are denied until configured).
    pub fn new(seed: u64) -> Self {
        Self {
            policy: None,
            ids: DecisionIds::new(seed),
            peers: HashMap::new(),
            decisions: DecisionCache::default(),
            pending: [0; Counter::ALL.len()],
        }
    }

    /// Adds the counts gathered since the last flush to the host's counters (the Wasm
    /// adapter calls this on its timer, so a request makes no metric host call).
    pub fn flush_counters(&mut self, host: &dyn Host) {
        for (counter, pending) in Counter::ALL.into_iter().zip(&mut self.pending) {
            if *pending > 0 {
                host.increment(counter, std::mem::take(pending));
            }
        }
    }

    fn count(&mut self, counter: Counter) {
        if let Some(pending) = self.pending.get_mut(counter as usize) {
            *pending += 1;
        }
    }

    /// Parses a configuration and loads its compiled program. On failure the previous
    /// policy stays and `false` tells Envoy to reject the configuration.
    pub fn configure(&mut self, host: &dyn Host, bytes: &[u8]) -> bool {
        let compiled = PluginConfig::from_json(bytes)
            .map_err(|e| e.to_string())
            .and_then(|config| CompiledPolicy::load(&config).map_err(|e| e.to_string()));
        match compiled {
            Ok(policy) => {
                host.log(
                    Level::Info,
                    &format!(
                        "warden: policy version {:?} loaded",
                        policy.config().policy_version
                    ),
                );
                self.policy = Some(Arc::new(policy));
                self.decisions.clear();
                true
            }
            Err(message) => {
                host.log(
                    Level::Warn,
                    &format!("warden: configuration rejected: {message}"),
                );
                false
            }
        }
    }

    /// The current policy (each request holds its own `Arc`).
    pub fn policy(&self) -> Option<Arc<CompiledPolicy>> {
        self.policy.clone()
    }

    /// Handles a request's headers end to end.
    pub fn on_request_headers(&mut self, host: &dyn Host) -> Flow {
        let id = self.ids.next_id();
        let Some(policy) = self.policy.clone() else {
            host.log(
                Level::Warn,
                &format!("warden: no policy, denying (decision {id})"),
            );
            self.count(Counter::Denied);
            self.count(Counter::Errors);
            return respond(
                host,
                403,
                &[(DECISION_ID_HEADER.into(), id.to_string())],
                "no policy\n",
            );
        };
        let request = match self.read_request(host, policy.needs()) {
            Ok(request) => request,
            Err(error) => {
                host.log(
                    Level::Warn,
                    &format!("warden: {error}; denying (decision {id})"),
                );
                self.count(Counter::Errors);
                self.count(Counter::Denied);
                let status = policy.config().deny_status;
                let headers = [(DECISION_ID_HEADER.to_string(), id.to_string())];
                return respond(
                    host,
                    status,
                    &headers,
                    "denied: request could not be read\n",
                );
            }
        };
        let logging = policy.config().log_decisions || policy.config().audit_records;
        let started = if logging { host.now_micros() } else { 0 };
        let verdict = authorize_cached(&policy, &request, id, &mut self.decisions);
        for counter in verdict.counters() {
            self.count(counter);
        }
        let elapsed = if logging {
            host.now_micros().saturating_sub(started)
        } else {
            0
        };
        if policy.config().audit_records {
            let record = verdict.record(&policy, elapsed);
            if let Err(error) = host.set_property(&[DECISION_RECORD_PROPERTY], record.as_bytes()) {
                host.log(Level::Warn, &format!("warden: {error}"));
            }
        }
        if verdict.should_log(&policy) {
            host.log(Level::Info, &verdict.log_line(&policy, &request, elapsed));
        }
        match verdict.action(&policy, &request) {
            Action::Continue { set_headers } => {
                for (name, value) in &set_headers {
                    if let Err(error) = host.set_request_header(name, value.as_deref()) {
                        host.log(Level::Warn, &format!("warden: {error}"));
                        // Without the trusted header the app could see a forged one.
                        self.count(Counter::Errors);
                        return respond(host, 500, &[], "internal error\n");
                    }
                }
                Flow::Continue
            }
            Action::Respond {
                status,
                headers,
                body,
            } => respond(host, status, &headers, &body),
        }
    }

    /// Reads the peer and the request headers: two host calls on a known connection
    /// (connection id, then all headers in one map read), plus one per address or the
    /// clock when the policy reads them.
    fn read_request(
        &mut self,
        host: &dyn Host,
        needs: InputNeeds,
    ) -> Result<RequestAttributes, HostError> {
        let peer = self.read_peer(host)?;
        let mut request = RequestAttributes::from_raw_headers(peer, host.request_headers()?);
        let text = |bytes: Vec<u8>| crate::input::lossy(bytes);
        if needs.source_address {
            request.source_address = host.property(&["source", "address"])?.map(text);
        }
        if needs.destination_address {
            request.destination_address = host.property(&["destination", "address"])?.map(text);
        }
        if needs.time {
            request.time_micros = Some(host.now_micros());
        }
        Ok(request)
    }

    /// The connection's verified peer, from the cache when the connection is known.
    fn read_peer(&mut self, host: &dyn Host) -> Result<Peer, HostError> {
        let connection = host
            .property(&["connection", "id"])?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(u64::from_le_bytes);
        if let Some(peer) = connection.and_then(|id| self.peers.get(&id)) {
            return Ok(peer.clone());
        }
        let peer = read_peer_properties(host)?;
        if let Some(id) = connection {
            if self.peers.len() >= PEER_CACHE_SIZE {
                self.peers.clear();
            }
            self.peers.insert(id, peer.clone());
        }
        Ok(peer)
    }
}

/// The peer as the TLS layer established it: a SPIFFE ID only with a valid certificate.
fn read_peer_properties(host: &dyn Host) -> Result<Peer, HostError> {
    let valid = host
        .property(&["connection", "peer_certificate_valid"])?
        .is_some_and(|v| v.first() == Some(&1));
    let uri_san = if valid {
        host.property(&["connection", "uri_san_peer_certificate"])?
    } else {
        None
    };
    let uri_san = uri_san.map(crate::input::lossy);
    Ok(Peer::from_connection(valid, uri_san.as_deref()))
}

fn respond(host: &dyn Host, status: u16, headers: &[(String, String)], body: &str) -> Flow {
    if let Err(error) = host.send_response(status, headers, body) {
        host.log(Level::Warn, &format!("warden: {error}"));
    }
    Flow::Stop
}

#[cfg(test)]
mod tests;
