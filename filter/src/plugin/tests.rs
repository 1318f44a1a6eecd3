//! The request flow against a scripted host.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;

#[derive(Default)]
struct FakeHost {
    properties: BTreeMap<String, Vec<u8>>,
    headers: Vec<(String, String)>,
    fail_properties: bool,
    set: RefCell<Vec<(String, Option<String>)>>,
    sent: RefCell<Option<(u16, Vec<(String, String)>, String)>>,
    logs: RefCell<Vec<String>>,
    counters: RefCell<Vec<Counter>>,
    header_reads: RefCell<usize>,
}

impl FakeHost {
    fn peer(id: &str) -> Self {
        let mut host = Self::default();
        host.properties
            .insert("connection.peer_certificate_valid".into(), vec![1]);
        host.properties.insert(
            "connection.uri_san_peer_certificate".into(),
            id.as_bytes().to_vec(),
        );
        host
    }

    fn request(mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> Self {
        self.headers = vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
            (":authority".into(), "backend".into()),
            (":scheme".into(), "https".into()),
        ];
        self.headers
            .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }
}

impl Host for FakeHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        if self.fail_properties {
            return Err(HostError {
                call: "get_property",
                detail: "InternalFailure".into(),
            });
        }
        Ok(self.properties.get(&path.join(".")).cloned())
    }
    fn request_headers(&self) -> Result<Vec<(String, String)>, HostError> {
        *self.header_reads.borrow_mut() += 1;
        Ok(self.headers.clone())
    }
    fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
        *self.header_reads.borrow_mut() += 1;
        Ok(self
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.set
            .borrow_mut()
            .push((name.to_string(), value.map(str::to_string)));
        Ok(())
    }
    fn send_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &str,
    ) -> Result<(), HostError> {
        *self.sent.borrow_mut() = Some((status, headers.to_vec(), body.to_string()));
        Ok(())
    }
    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.to_string());
    }
    fn increment(&self, counter: Counter) {
        self.counters.borrow_mut().push(counter);
    }
    fn now_micros(&self) -> u64 {
        0
    }
}

const POLICY: &str = r#"package envoy.authz

default allow := false

allow if {
    input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
    input.attributes.request.http.method == "GET"
}
"#;

fn config_json(mode: &str, expose: bool) -> String {
    serde_json::json!({
        "policy_version": "v7",
        "mode": mode,
        "expose_reason": expose,
        "destination_principal": "spiffe://example.org/ns/demo/sa/backend",
        "modules": [{"name": "policies/authz.rego", "source": POLICY}],
    })
    .to_string()
}

fn configured(mode: &str, expose: bool) -> Plugin {
    let mut plugin = Plugin::new(7);
    assert!(plugin.configure(&FakeHost::default(), config_json(mode, expose).as_bytes()));
    plugin
}

#[test]
fn verified_peer_is_allowed_and_gets_the_trusted_spiffe_header() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request(
        "GET",
        "/",
        &[("x-spiffe-id", "spiffe://example.org/ns/demo/sa/admin")],
    );
    assert_eq!(plugin.on_request_headers(&host), Flow::Continue);
    assert_eq!(
        host.set.borrow().last(),
        Some(&(
            "x-spiffe-id".to_string(),
            Some("spiffe://example.org/ns/demo/sa/frontend".to_string())
        ))
    );
    assert_eq!(*host.counters.borrow(), vec![Counter::Allowed]);
    assert!(host.sent.borrow().is_none());
}

#[test]
fn forged_identity_header_without_verified_peer_is_denied_with_decision_id() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::default().request(
        "GET",
        "/",
        &[
            ("x-spiffe-id", "spiffe://example.org/ns/demo/sa/frontend"),
            (
                "x-forwarded-client-cert",
                "URI=spiffe://example.org/ns/demo/sa/frontend",
            ),
        ],
    );
    assert_eq!(plugin.on_request_headers(&host), Flow::Stop);
    let sent = host.sent.borrow().clone();
    let (status, headers, body) = sent.unwrap_or_default();
    assert_eq!(status, 403);
    assert!(headers.iter().any(|(k, _)| k == "x-warden-decision-id"));
    assert!(body.contains("decision"));
    assert!(
        !body.contains("undefined") && !body.contains("false"),
        "reason hidden: {body}"
    );
    assert_eq!(*host.counters.borrow(), vec![Counter::Denied]);
    let logs = host.logs.borrow();
    assert!(logs
        .iter()
        .any(|l| l.contains("\"decision\":\"deny\"") && l.contains("v7")));
}

#[test]
fn unvalidated_certificate_is_no_identity() {
    let mut plugin = configured("enforce", false);
    let mut host =
        FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    host.properties
        .insert("connection.peer_certificate_valid".into(), vec![0]);
    assert_eq!(plugin.on_request_headers(&host), Flow::Stop);
}

#[test]
fn expose_reason_puts_rule_version_and_peer_in_the_body() {
    let mut plugin = configured("enforce", true);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("POST", "/", &[]);
    assert_eq!(plugin.on_request_headers(&host), Flow::Stop);
    let body = host.sent.borrow().clone().map(|s| s.2).unwrap_or_default();
    assert!(body.contains("data.envoy.authz.allow is false"), "{body}");
    assert!(
        body.contains("v7") && body.contains("sa/frontend"),
        "{body}"
    );
}

#[test]
fn dry_run_lets_a_deny_through_and_counts_it() {
    let mut plugin = configured("dry_run", false);
    let host = FakeHost::default().request("GET", "/", &[("x-spiffe-id", "forged")]);
    assert_eq!(plugin.on_request_headers(&host), Flow::Continue);
    assert_eq!(*host.counters.borrow(), vec![Counter::DryRunDenied]);
    // The forged header is removed, not passed to the app.
    assert_eq!(
        host.set.borrow().last(),
        Some(&("x-spiffe-id".to_string(), None))
    );
}

#[test]
fn host_failure_denies_and_counts_an_error() {
    let mut plugin = configured("enforce", false);
    let mut host =
        FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    host.fail_properties = true;
    assert_eq!(plugin.on_request_headers(&host), Flow::Stop);
    assert!(host.counters.borrow().contains(&Counter::Errors));
}

#[test]
fn bad_configuration_is_rejected_and_the_old_policy_keeps_enforcing() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::default();
    assert!(!plugin.configure(&host, b"{not json"));
    let bad_rego = serde_json::json!({"modules": [{"name": "a.rego", "source": "package envoy.authz\nallow if {"}]});
    assert!(!plugin.configure(&host, bad_rego.to_string().as_bytes()));
    assert_eq!(
        plugin.policy().map(|p| p.config().policy_version.clone()),
        Some("v7".to_string())
    );
}

#[test]
fn unconfigured_plugin_denies() {
    let mut plugin = Plugin::new(1);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    assert_eq!(plugin.on_request_headers(&host), Flow::Stop);
}

#[test]
fn policy_without_headers_reads_only_method_and_path() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    plugin.on_request_headers(&host);
    assert_eq!(*host.header_reads.borrow(), 2);
}

#[test]
fn decision_ids_differ_between_requests() {
    let mut plugin = configured("enforce", false);
    let first = FakeHost::default().request("GET", "/", &[]);
    let second = FakeHost::default().request("GET", "/", &[]);
    plugin.on_request_headers(&first);
    plugin.on_request_headers(&second);
    let id = |h: &FakeHost| {
        h.sent
            .borrow()
            .clone()
            .and_then(|s| s.1.into_iter().find(|(k, _)| k == "x-warden-decision-id"))
    };
    assert_ne!(id(&first), id(&second));
}
