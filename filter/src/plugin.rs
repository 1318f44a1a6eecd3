//! The filter's request flow, written against a [`Host`] trait so it runs and is tested
//! natively; `wasm/` binds the trait to proxy-wasm host calls (Kuadrant's wasm-shim
//! layout). Every host failure and every policy failure ends in a deny (fail closed);
//! nothing here panics.

use std::sync::Arc;

use crate::authorize::{authorize, Action, Counter, DecisionIds, DECISION_ID_HEADER};
use crate::config::PluginConfig;
use crate::input::{Peer, RequestAttributes};
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
    /// All request headers (pseudo-headers included) in one call.
    fn request_headers(&self) -> Result<Vec<(String, String)>, HostError>;
    /// One request header.
    fn request_header(&self, name: &str) -> Result<Option<String>, HostError>;
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
    /// Adds to a counter.
    fn increment(&self, counter: Counter);
    /// Microseconds from some fixed point (only differences are used).
    fn now_micros(&self) -> u64;
}

/// What the HTTP context returns to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Continue the filter chain.
    Continue,
    /// Stop: a local response was sent.
    Stop,
}

/// The root state: the compiled policy (swapped on each configure) and the id source.
#[derive(Debug)]
pub struct Plugin {
    policy: Option<Arc<CompiledPolicy>>,
    ids: DecisionIds,
}

impl Plugin {
    /// A plugin with no policy yet (requests are denied until configured).
    pub fn new(seed: u64) -> Self {
        Self {
            policy: None,
            ids: DecisionIds::new(seed),
        }
    }

    /// Parses and compiles a configuration. On failure the previous policy stays and
    /// `false` tells Envoy to reject the configuration.
    pub fn configure(&mut self, host: &dyn Host, bytes: &[u8]) -> bool {
        let compiled = PluginConfig::from_json(bytes)
            .map_err(|e| e.to_string())
            .and_then(|config| CompiledPolicy::compile(&config).map_err(|e| e.to_string()));
        match compiled {
            Ok(policy) => {
                host.log(
                    Level::Info,
                    &format!(
                        "warden: policy version {:?} compiled ({:?} engine)",
                        policy.config().policy_version,
                        policy.engine_kind()
                    ),
                );
                self.policy = Some(Arc::new(policy));
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
            host.increment(Counter::Denied);
            host.increment(Counter::Errors);
            return respond(
                host,
                403,
                &[(DECISION_ID_HEADER.into(), id.to_string())],
                "no policy\n",
            );
        };
        let request = match read_request(host, &policy) {
            Ok(request) => request,
            Err(error) => {
                host.log(
                    Level::Warn,
                    &format!("warden: {error}; denying (decision {id})"),
                );
                host.increment(Counter::Errors);
                host.increment(Counter::Denied);
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
        let logging = policy.config().log_decisions;
        let started = if logging { host.now_micros() } else { 0 };
        let verdict = authorize(&policy, &request, id);
        for counter in verdict.counters() {
            host.increment(counter);
        }
        if verdict.should_log(&policy) {
            let elapsed = if logging {
                host.now_micros().saturating_sub(started)
            } else {
                0
            };
            host.log(Level::Info, &verdict.log_line(&policy, &request, elapsed));
        }
        match verdict.action(&policy, &request) {
            Action::Continue { set_headers } => {
                for (name, value) in &set_headers {
                    if let Err(error) = host.set_request_header(name, value.as_deref()) {
                        host.log(Level::Warn, &format!("warden: {error}"));
                        // Without the trusted header the app could see a forged one.
                        host.increment(Counter::Errors);
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
}

fn respond(host: &dyn Host, status: u16, headers: &[(String, String)], body: &str) -> Flow {
    if let Err(error) = host.send_response(status, headers, body) {
        host.log(Level::Warn, &format!("warden: {error}"));
    }
    Flow::Stop
}

/// Reads the peer and the request parts the policy needs.
fn read_request(host: &dyn Host, policy: &CompiledPolicy) -> Result<RequestAttributes, HostError> {
    let valid = host
        .property(&["connection", "peer_certificate_valid"])?
        .is_some_and(|v| v.first() == Some(&1));
    let uri_san = if valid {
        host.property(&["connection", "uri_san_peer_certificate"])?
    } else {
        None
    };
    let uri_san = uri_san.map(|b| String::from_utf8_lossy(&b).into_owned());
    let peer = Peer::from_connection(valid, uri_san.as_deref());
    let needs = policy.needs();
    let headers = if needs.headers {
        host.request_headers()?
    } else {
        let mut wanted = vec![":method", ":path"];
        if needs.host {
            wanted.push(":authority");
        }
        if needs.scheme {
            wanted.push(":scheme");
        }
        let mut headers = Vec::with_capacity(wanted.len());
        for name in wanted {
            if let Some(value) = host.request_header(name)? {
                headers.push((name.to_string(), value));
            }
        }
        headers
    };
    Ok(RequestAttributes::from_headers(peer, headers))
}

#[cfg(test)]
mod tests;
