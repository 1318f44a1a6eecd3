//! Decisions remembered per policy, so a repeated request (same verified peer, method and
//! path) skips building the input and evaluating Rego. Only for policies whose answer
//! depends on nothing else: they read no headers, host, scheme, request id, time or
//! addresses (`InputNeeds::varies_per_request`), and call no builtin (`needs::cacheable`)
//! whose result can change between calls (clock, randomness, network, ...). A new policy
//! starts with an empty cache. No I/O here.

use std::collections::HashMap;

use crate::decision::Decision;
use crate::input::RequestAttributes;
pub use crate::needs::{cacheable, is_nondeterministic};
use crate::policy::CompiledPolicy;

/// Entries kept per policy and VM; the cache is emptied when full.
pub const DECISION_CACHE_SIZE: usize = 4096;

/// Decisions of one policy, keyed by peer, method and path.
#[derive(Debug, Default)]
pub struct DecisionCache {
    entries: HashMap<String, Decision>,
}

impl DecisionCache {
    /// The remembered decision for this request, if the policy allows caching.
    pub fn get(&self, policy: &CompiledPolicy, request: &RequestAttributes) -> Option<Decision> {
        if !policy.decisions_cacheable() {
            return None;
        }
        self.entries.get(&key(request)).cloned()
    }

    /// Remembers a decision (ignored when the policy does not allow caching).
    pub fn put(
        &mut self,
        policy: &CompiledPolicy,
        request: &RequestAttributes,
        decision: &Decision,
    ) {
        if !policy.decisions_cacheable() {
            return;
        }
        if self.entries.len() >= DECISION_CACHE_SIZE {
            self.entries.clear();
        }
        self.entries.insert(key(request), decision.clone());
    }

    /// Forgets everything (a new policy).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of remembered decisions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// NUL cannot occur in a SPIFFE ID or an HTTP header value, so the parts cannot run
/// into each other; the first byte tells a verified peer from none.
fn key(request: &RequestAttributes) -> String {
    let peer = request.peer.principal();
    let mut key = String::with_capacity(
        3 + peer.map_or(0, str::len) + request.method.len() + request.path.len(),
    );
    match peer {
        Some(id) => {
            key.push('v');
            key.push_str(id);
        }
        None => key.push('n'),
    }
    key.push('\0');
    key.push_str(&request.method);
    key.push('\0');
    key.push_str(&request.path);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::needs::InputNeeds;

    #[test]
    fn clock_random_and_network_builtins_are_nondeterministic() {
        for name in [
            "time.now_ns",
            "rand.intn",
            "http.send",
            "net.lookup_ip_addr",
            "uuid.rfc4122",
        ] {
            assert!(is_nondeterministic(name), "{name}");
        }
        for name in [
            "startswith",
            "time.parse_ns",
            "glob.match",
            "regex.match",
            "count",
        ] {
            assert!(!is_nondeterministic(name), "{name}");
        }
    }

    #[test]
    fn only_policies_of_peer_method_and_path_without_clock_are_cacheable() {
        let plain = InputNeeds::scan(["allow if input.attributes.request.http.path == \"/\""]);
        assert!(cacheable(plain, ["startswith", "glob.match"].into_iter()));
        assert!(!cacheable(plain, ["startswith", "time.now_ns"].into_iter()));
        let headers = InputNeeds::scan(["allow if input.attributes.request.http.headers.a"]);
        assert!(!cacheable(headers, std::iter::empty()));
        assert!(!cacheable(InputNeeds::ALL, std::iter::empty()));
    }

    #[test]
    fn no_peer_and_an_empty_peer_have_different_keys() {
        let request = |peer| {
            RequestAttributes::from_headers(
                peer,
                vec![
                    (":method".into(), "GET".into()),
                    (":path".into(), "/".into()),
                ],
            )
        };
        let none = key(&request(crate::Peer::None));
        let some = key(&request(crate::Peer::from_connection(
            true,
            Some("spiffe://a/b"),
        )));
        assert_ne!(none, some);
        assert_eq!(some, "vspiffe://a/b\0GET\0/");
    }
}
