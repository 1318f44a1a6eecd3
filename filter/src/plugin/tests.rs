//! The request flow against a scripted host.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::policy::with_program;
use crate::PluginConfig;

/// A local response: status, headers, body.
type Sent = (u16, Vec<(String, String)>, String);

#[derive(Default)]
struct FakeHost {
    properties: BTreeMap<String, Vec<u8>>,
    headers: Vec<(String, String)>,
    raw_headers: Vec<(String, Vec<u8>)>,
    fail_properties: bool,
    set: RefCell<Vec<(String, Option<String>)>>,
    sent: RefCell<Option<Sent>>,
    logs: RefCell<Vec<String>>,
    counters: RefCell<Vec<Counter>>,
    header_reads: RefCell<usize>,
    property_reads: RefCell<Vec<String>>,
    props_set: RefCell<Vec<(String, String)>>,
}

impl FakeHost {
    fn peer(id: &str) -> Self {
        Self::peer_on_connection(id, 1)
    }

    fn peer_on_connection(id: &str, connection: u64) -> Self {
        let mut host = Self::default();
        host.properties
            .insert("connection.id".into(), connection.to_le_bytes().to_vec());
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
        self.property_reads.borrow_mut().push(path.join("."));
        if self.fail_properties {
            return Err(HostError {
                call: "get_property",
                detail: "InternalFailure".into(),
            });
        }
        Ok(self.properties.get(&path.join(".")).cloned())
    }
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        *self.header_reads.borrow_mut() += 1;
        let text = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
        Ok(text.chain(self.raw_headers.iter().cloned()).collect())
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
    fn increment(&self, counter: Counter, by: u64) {
        for _ in 0..by {
            self.counters.borrow_mut().push(counter);
        }
    }
    fn now_micros(&self) -> u64 {
        0
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.props_set
            .borrow_mut()
            .push((path.join("."), String::from_utf8_lossy(value).into_owned()));
        Ok(())
    }
}

const POLICY: &str = r#"package envoy.authz

default allow := false

allow if {
    input.attributes.source.principal == "spiffe://example.org/ns/demo/sa/frontend"
    input.attributes.request.http.method == "GET"
}
"#;

/// The JSON the control plane would send: settings, sources and the compiled program.
fn config_json(mode: &str, expose: bool) -> String {
    let settings = serde_json::json!({
        "policy_version": "v7",
        "mode": mode,
        "expose_reason": expose,
        "destination_principal": "spiffe://example.org/ns/demo/sa/backend",
        "modules": [{"name": "policies/authz.rego", "source": POLICY}],
    });
    let config = PluginConfig::from_json(settings.to_string().as_bytes()).unwrap();
    with_program(config).unwrap().to_json()
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
    assert!(
        host.counters.borrow().is_empty(),
        "counted on the timer, not per request"
    );
    plugin.flush_counters(&host);
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
    plugin.flush_counters(&host);
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
    plugin.flush_counters(&host);
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
    plugin.flush_counters(&host);
    assert!(host.counters.borrow().contains(&Counter::Errors));
}

#[test]
fn bad_configuration_is_rejected_and_the_old_policy_keeps_enforcing() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::default();
    assert!(!plugin.configure(&host, b"{not json"));
    let modules =
        serde_json::json!([{"name": "a.rego", "source": "package envoy.authz\nallow if {"}]);
    for program in [None, Some("%%% not base64"), Some("bm90IGEgcHJvZ3JhbQ==")] {
        let mut bad = serde_json::json!({"modules": modules});
        if let Some(program) = program {
            bad["program"] = program.into();
        }
        assert!(
            !plugin.configure(&host, bad.to_string().as_bytes()),
            "{bad}"
        );
    }
    let logs = host.logs.borrow().join("\n");
    assert!(logs.contains("no compiled program"), "{logs}");
    assert!(logs.contains("not base64"), "{logs}");
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
fn a_request_reads_all_headers_in_one_call() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    plugin.on_request_headers(&host);
    assert_eq!(*host.header_reads.borrow(), 1);
}

#[test]
fn a_known_connection_reads_only_its_id() {
    let mut plugin = configured("enforce", false);
    let frontend = "spiffe://example.org/ns/demo/sa/frontend";
    let first = FakeHost::peer_on_connection(frontend, 7).request("GET", "/", &[]);
    assert_eq!(plugin.on_request_headers(&first), Flow::Continue);
    assert_eq!(first.property_reads.borrow().len(), 3);
    let again = FakeHost::peer_on_connection(frontend, 7).request("GET", "/", &[]);
    assert_eq!(plugin.on_request_headers(&again), Flow::Continue);
    assert_eq!(*again.property_reads.borrow(), vec!["connection.id"]);
    // Another connection is read afresh: its peer is not the cached one.
    let mut other = FakeHost::peer_on_connection(frontend, 8).request("GET", "/", &[]);
    other
        .properties
        .insert("connection.peer_certificate_valid".into(), vec![0]);
    assert_eq!(plugin.on_request_headers(&other), Flow::Stop);
}

#[test]
fn without_a_connection_id_the_peer_is_read_every_time() {
    let mut plugin = configured("enforce", false);
    for _ in 0..2 {
        let mut host =
            FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
        host.properties.remove("connection.id");
        assert_eq!(plugin.on_request_headers(&host), Flow::Continue);
        assert_eq!(host.property_reads.borrow().len(), 3);
    }
}

#[test]
fn counters_add_up_across_requests_and_reset_after_a_flush() {
    let mut plugin = configured("enforce", false);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    for _ in 0..3 {
        plugin.on_request_headers(&host);
    }
    plugin.flush_counters(&host);
    plugin.flush_counters(&host);
    assert_eq!(*host.counters.borrow(), vec![Counter::Allowed; 3]);
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

fn plugin_with(source: &str) -> Plugin {
    let config = PluginConfig::new(vec![crate::PolicyModule {
        name: "policies/authz.rego".into(),
        source: source.into(),
    }]);
    let mut plugin = Plugin::new(3);
    let json = with_program(config).unwrap().to_json();
    assert!(plugin.configure(&FakeHost::default(), json.as_bytes()));
    plugin
}

#[test]
fn a_new_policy_does_not_reuse_decisions_of_the_old_one() {
    let mut plugin = configured("enforce", false);
    let frontend = "spiffe://example.org/ns/demo/sa/frontend";
    let host = || FakeHost::peer(frontend).request("GET", "/", &[]);
    assert_eq!(plugin.on_request_headers(&host()), Flow::Continue);
    assert_eq!(plugin.on_request_headers(&host()), Flow::Continue);
    let deny_all = with_program(PluginConfig::new(vec![crate::PolicyModule {
        name: "policies/authz.rego".into(),
        source: "package envoy.authz\ndefault allow := false\n".into(),
    }]))
    .unwrap();
    assert!(plugin.configure(&FakeHost::default(), deny_all.to_json().as_bytes()));
    assert_eq!(plugin.on_request_headers(&host()), Flow::Stop);
}

#[test]
fn a_policy_reading_headers_is_evaluated_for_every_request() {
    let mut plugin = plugin_with(
        "package envoy.authz\nallow if input.attributes.request.http.headers[\"x-ok\"] == \"1\"\n",
    );
    assert!(!plugin.policy().unwrap().decisions_cacheable());
    let peer = "spiffe://example.org/ns/demo/sa/frontend";
    let yes = FakeHost::peer(peer).request("GET", "/", &[("x-ok", "1")]);
    let no = FakeHost::peer(peer).request("GET", "/", &[("x-ok", "0")]);
    assert_eq!(plugin.on_request_headers(&yes), Flow::Continue);
    assert_eq!(plugin.on_request_headers(&no), Flow::Stop);
}

#[test]
fn a_policy_of_peer_method_and_path_is_cached() {
    let plain = plugin_with(
        "package envoy.authz\nallow if startswith(input.attributes.request.http.path, \"/a\")\n",
    );
    assert!(plain.policy().unwrap().decisions_cacheable());
}

#[test]
fn a_non_utf8_header_value_gets_a_normal_decision_and_later_requests_still_work() {
    let mut plugin = plugin_with(
        "package envoy.authz\nallow if input.attributes.request.http.headers[\"x-a\"] != \"evil\"\n",
    );
    let peer = "spiffe://example.org/ns/demo/sa/frontend";
    let mut bad = FakeHost::peer(peer).request("GET", "/api/items", &[]);
    bad.raw_headers = vec![("x-a".into(), vec![0xc0, 0xa7]), ("x-b".into(), vec![0xff])];
    assert_eq!(plugin.on_request_headers(&bad), Flow::Continue);
    for _ in 0..20 {
        let good = FakeHost::peer(peer).request("GET", "/api/items", &[("x-a", "fine")]);
        assert_eq!(plugin.on_request_headers(&good), Flow::Continue);
    }
    let evil = FakeHost::peer(peer).request("GET", "/api/items", &[("x-a", "evil")]);
    assert_eq!(plugin.on_request_headers(&evil), Flow::Stop);
}

#[test]
fn a_path_with_parameters_or_a_bad_escape_is_answered_400_before_the_policy() {
    let mut plugin = plugin_with("package envoy.authz\nallow := true\n");
    for path in ["/admin;x=1", "/files/100%", "/a%zz/b"] {
        let host = FakeHost::peer("spiffe://example.org/a").request("GET", path, &[]);
        assert_eq!(plugin.on_request_headers(&host), Flow::Stop, "{path}");
        assert_eq!(
            host.sent.borrow().as_ref().map(|s| s.0),
            Some(400),
            "{path}"
        );
    }
    let fine = FakeHost::peer("spiffe://example.org/a").request("GET", "/a?x=1;y", &[]);
    assert_eq!(plugin.on_request_headers(&fine), Flow::Continue);
}

#[test]
fn addresses_and_time_are_read_only_when_the_policy_reads_them() {
    let mut lean = plugin_with("package envoy.authz\nallow := true\n");
    let host = FakeHost::peer("spiffe://example.org/a").request("GET", "/", &[]);
    lean.on_request_headers(&host);
    assert!(!host
        .property_reads
        .borrow()
        .iter()
        .any(|p| p.ends_with("address")));
    let mut reads = plugin_with(
        "package envoy.authz\nallow if input.attributes.source.address.socketAddress.portValue > 0\n",
    );
    let mut host = FakeHost::peer("spiffe://example.org/a").request("GET", "/", &[]);
    host.properties
        .insert("source.address".into(), b"127.0.0.1:4000".to_vec());
    assert_eq!(reads.on_request_headers(&host), Flow::Continue);
    assert!(host
        .property_reads
        .borrow()
        .iter()
        .any(|p| p == "source.address"));
}

#[test]
fn a_validated_certificate_whose_uri_san_is_not_a_spiffe_id_is_no_identity() {
    // A policy that admits any verified caller: only the parse decides.
    let mut plugin = plugin_with("package envoy.authz\nallow if input.source_principal\n");
    let good = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    assert_eq!(plugin.on_request_headers(&good), Flow::Continue);
    let bad: [&[u8]; 8] = [
        b"spiffe://",
        b"spiffe://Example.org/a",
        b"spiffe://example.org/a/",
        b"spiffe://example.org/a%2Fb",
        b"spiffe://example.org:8443/a",
        b"spiffe://example.org/a?x=1",
        b"spiffe://example.org/\xff",
        b"https://example.org/a",
    ];
    for (i, san) in bad.into_iter().enumerate() {
        let mut host = FakeHost::peer_on_connection("", 100 + i as u64).request("GET", "/", &[]);
        host.properties
            .insert("connection.uri_san_peer_certificate".into(), san.to_vec());
        assert_eq!(
            plugin.on_request_headers(&host),
            Flow::Stop,
            "{}",
            String::from_utf8_lossy(san)
        );
        assert!(
            host.set
                .borrow()
                .iter()
                .all(|(name, _)| name != "x-spiffe-id"),
            "no identity header for {}",
            String::from_utf8_lossy(san)
        );
    }
}

fn configured_with_records(records: bool) -> Plugin {
    let mut config: serde_json::Value =
        serde_json::from_str(&config_json("enforce", false)).unwrap();
    config["audit_records"] = serde_json::Value::Bool(records);
    let mut plugin = Plugin::new(7);
    assert!(plugin.configure(&FakeHost::default(), config.to_string().as_bytes()));
    plugin
}

#[test]
fn with_audit_records_a_deny_leaves_its_record_with_id_reason_and_rule_in_filter_state() {
    let mut plugin = configured_with_records(true);
    let host = FakeHost::default().request("GET", "/admin", &[]);
    assert_eq!(plugin.on_request_headers(&host), Flow::Stop);
    let sent = host.sent.borrow().clone().unwrap_or_default();
    let id = sent
        .1
        .iter()
        .find(|(k, _)| k == "x-warden-decision-id")
        .unwrap()
        .1
        .clone();
    let props = host.props_set.borrow();
    assert_eq!(props.len(), 1);
    assert_eq!(props[0].0, "warden_decision");
    let record: serde_json::Value = serde_json::from_str(&props[0].1).unwrap();
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["rule"], "data.envoy.authz.allow");
    assert_eq!(record["policy_version"], "v7");
    assert!(record["reason"].as_str().unwrap().contains("allow"));
}

#[test]
fn with_audit_records_an_allow_is_recorded_and_without_them_nothing_is_set() {
    let mut plugin = configured_with_records(true);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    assert_eq!(plugin.on_request_headers(&host), Flow::Continue);
    assert!(host.props_set.borrow()[0]
        .1
        .contains("\"decision\":\"allow\""));
    let mut plugin = configured_with_records(false);
    let host = FakeHost::peer("spiffe://example.org/ns/demo/sa/frontend").request("GET", "/", &[]);
    plugin.on_request_headers(&host);
    assert!(host.props_set.borrow().is_empty());
}
