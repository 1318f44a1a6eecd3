//! Builder tests on the sample mesh (`examples/mesh`) with a CA in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::core::v3::{transport_socket, TypedExtensionConfig};
use xds_api::pb::envoy::config::listener::v3::{filter, Listener};
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::PathWithEscapedSlashesAction, http_filter, HttpConnectionManager,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use xds_api::pb::google::protobuf::{Any, StringValue};

use super::*;
use crate::identity::{Ca, CaParams, SystemClock};
use crate::xds::ext::{self, DownstreamTlsContext, SpiffeCertValidatorConfig, UpstreamTlsContext};

struct Mesh {
    config: Config,
    ca: Ca,
    _dir: tempfile::TempDir,
}

fn mesh() -> Mesh {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let config = crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"));
    let dir = tempfile::tempdir().unwrap();
    let params = CaParams {
        state_dir: dir.path().to_path_buf(),
        ..config.ca_params()
    };
    let ca = Ca::load_or_init(&params, &SystemClock).unwrap();
    Mesh {
        config,
        ca,
        _dir: dir,
    }
}

fn snapshot_for(m: &Mesh, name: &str) -> Snapshot {
    let w = m.config.workload(name).unwrap();
    let svid =
        m.ca.mint(
            &crate::identity::SvidParams {
                id: w.spiffe_id.clone(),
                ttl: Duration::from_secs(600),
            },
            &SystemClock,
        )
        .unwrap();
    let bundle = m.ca.bundle();
    let module = PathBuf::from("/opt/warden/warden_filter.wasm");
    build_node_snapshot(&NodeInputs {
        config: &m.config,
        workload: w,
        svid: &svid,
        bundle: &bundle,
        federated: &[],
        filter_module: &module,
    })
    .unwrap()
}

fn decode<M: Message + Default>(snap: &Snapshot, t: ResourceType, name: &str) -> M {
    let r = &snap.get(t).unwrap().resources[name];
    M::decode(r.body.value.as_slice()).unwrap()
}

fn unpack<M: Message + Default>(any: &Any) -> M {
    M::decode(any.value.as_slice()).unwrap()
}

#[test]
fn every_workload_of_the_sample_mesh_gets_a_valid_snapshot() {
    let m = mesh();
    for w in &m.config.workloads {
        let snap = snapshot_for(&m, &w.name);
        let listeners = &snap.get(ResourceType::Listener).unwrap().resources;
        assert_eq!(listeners.len(), 1 + w.upstreams.len(), "{}", w.name);
    }
}

#[test]
fn a_node_gets_its_own_svid_under_the_contract_names_and_no_other() {
    let m = mesh();
    let snap = snapshot_for(&m, "frontend");
    let names: Vec<&str> = snap
        .get(ResourceType::Secret)
        .unwrap()
        .resources
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        vec![
            "ALL",
            "ROOTCA",
            "default",
            "spiffe://example.org",
            "spiffe://example.org/ns/demo/sa/frontend"
        ]
    );
    let s: Secret = decode(&snap, ResourceType::Secret, "default");
    assert_eq!(
        s.name, "default",
        "Secret.name must equal the requested name"
    );
    assert!(matches!(s.r#type, Some(secret::Type::TlsCertificate(_))));
}

#[test]
fn the_bundle_secret_carries_the_spiffe_validator_without_the_scheme() {
    let m = mesh();
    let snap = snapshot_for(&m, "backend");
    let s: Secret = decode(&snap, ResourceType::Secret, "spiffe://example.org");
    let Some(secret::Type::ValidationContext(vc)) = s.r#type else {
        panic!("not a validation context")
    };
    let custom = vc.custom_validator_config.unwrap();
    assert_eq!(custom.name, "envoy.tls.cert_validator.spiffe");
    let any = custom.typed_config.unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
    );
    let cfg: SpiffeCertValidatorConfig = unpack(&any);
    assert_eq!(cfg.trust_domains[0].name, "example.org");
}

#[test]
fn the_inbound_listener_requires_a_client_certificate_and_uses_the_authz_filter() {
    let m = mesh();
    let snap = snapshot_for(&m, "backend");
    let l: Listener = decode(&snap, ResourceType::Listener, names::INBOUND_LISTENER);
    assert!(!l.enable_reuse_port.unwrap().value);
    let chain = &l.filter_chains[0];
    let Some(transport_socket::ConfigType::TypedConfig(any)) =
        &chain.transport_socket.as_ref().unwrap().config_type
    else {
        panic!("no TLS")
    };
    let tls: DownstreamTlsContext = unpack(any);
    assert!(tls.require_client_certificate.unwrap().value);
    assert!(tls.disable_stateless_session_resumption && tls.disable_stateful_session_resumption);
    let common = tls.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "spiffe://example.org/ns/demo/sa/backend"
    );
    assert_eq!(
        common.validation_context_type,
        Some(
            ext::ValidationContextType::ValidationContextSdsSecretConfig(super::common::sds(
                "spiffe://example.org"
            ))
        )
    );
    let Some(filter::ConfigType::TypedConfig(hcm_any)) = &chain.filters[0].config_type else {
        panic!()
    };
    let hcm: HttpConnectionManager = unpack(hcm_any);
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec![AUTHZ_FILTER_NAME, "envoy.filters.http.router"]);
    assert!(matches!(
        hcm.http_filters[0].config_type,
        Some(http_filter::ConfigType::ConfigDiscovery(_))
    ));
    assert!(hcm.set_current_client_cert_details.unwrap().uri);
    // The policy and the app see one canonical path.
    assert_eq!(hcm.normalize_path.map(|b| b.value), Some(true));
    assert!(hcm.merge_slashes);
    assert_eq!(
        hcm.path_with_escaped_slashes_action,
        PathWithEscapedSlashesAction::RejectRequest as i32
    );
}

#[test]
fn escaped_slashes_follow_the_policy_setting() {
    let mut m = mesh();
    m.config.policy.escaped_slashes = crate::config::EscapedSlashes::UnescapeAndRedirect;
    let snap = snapshot_for(&m, "backend");
    let listener: Listener = decode(&snap, ResourceType::Listener, names::INBOUND_LISTENER);
    let Some(filter::ConfigType::TypedConfig(hcm_any)) =
        &listener.filter_chains[0].filters[0].config_type
    else {
        panic!()
    };
    let hcm: HttpConnectionManager = unpack(hcm_any);
    assert_eq!(
        hcm.path_with_escaped_slashes_action,
        PathWithEscapedSlashesAction::UnescapeAndRedirect as i32
    );
}

#[test]
fn the_upstream_cluster_accepts_only_the_upstream_spiffe_id() {
    let m = mesh();
    let snap = snapshot_for(&m, "frontend");
    let c: Cluster = decode(
        &snap,
        ResourceType::Cluster,
        &names::upstream_cluster("backend"),
    );
    let Some(transport_socket::ConfigType::TypedConfig(any)) =
        c.transport_socket.unwrap().config_type
    else {
        panic!()
    };
    let tls: UpstreamTlsContext = unpack(&any);
    let common = tls.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "spiffe://example.org/ns/demo/sa/frontend"
    );
    let Some(ext::ValidationContextType::CombinedValidationContext(combined)) =
        common.validation_context_type
    else {
        panic!("expected a combined validation context")
    };
    let san = &combined
        .default_validation_context
        .unwrap()
        .match_typed_subject_alt_names[0];
    let debug = format!("{:?}", san.matcher);
    assert!(
        debug.contains("spiffe://example.org/ns/demo/sa/backend"),
        "{debug}"
    );
    assert_eq!(
        combined.validation_context_sds_secret_config.unwrap().name,
        "spiffe://example.org"
    );
}

#[test]
fn the_filter_config_points_at_the_module_and_carries_the_policy() {
    let mut m = mesh();
    m.config.policy.native_rbac = false;
    let snap = snapshot_for(&m, "database");
    let ecds: TypedExtensionConfig =
        decode(&snap, ResourceType::ExtensionConfig, AUTHZ_FILTER_NAME);
    let wasm: ext::Wasm = unpack(ecds.typed_config.as_ref().unwrap());
    let plugin = wasm.config.unwrap();
    // A trapped VM is reloaded (with backoff), failing closed meanwhile.
    assert_eq!(plugin.failure_policy, ext::FAIL_RELOAD);
    let backoff = plugin
        .reload_config
        .as_ref()
        .and_then(|r| r.backoff.as_ref());
    assert!(backoff.is_some_and(|b| b.base_interval.is_some() && b.max_interval.is_some()));
    assert!(
        json_needs(&plugin).is_some(),
        "the analysed input needs are shipped"
    );
    let vm = plugin.vm_config.unwrap();
    assert_eq!(vm.runtime, "envoy.wasm.runtime.v8");
    assert!(format!("{:?}", vm.code).contains("/opt/warden/warden_filter.wasm"));
    let sv: StringValue = unpack(plugin.configuration.as_ref().unwrap());
    let json: serde_json::Value = serde_json::from_str(&sv.value).unwrap();
    assert_eq!(
        json["destination_principal"],
        "spiffe://example.org/ns/demo/sa/database"
    );
    assert_eq!(json["entrypoint"], "data.envoy.authz.allow");
    assert!(json["modules"][0]["source"]
        .as_str()
        .unwrap()
        .contains("package envoy.authz"));
}

/// The `input_needs` the plugin configuration carries.
fn json_needs(plugin: &ext::PluginConfig) -> Option<serde_json::Value> {
    let sv: StringValue = unpack(plugin.configuration.as_ref()?);
    let json: serde_json::Value = serde_json::from_str(&sv.value).ok()?;
    json.get("input_needs").cloned()
}

#[test]
fn the_same_inputs_give_the_same_versions_so_replicas_agree() {
    let m = mesh();
    let a = snapshot_for(&m, "backend");
    let b = snapshot_for(&m, "backend");
    // Different SVIDs (fresh keys): only SDS differs.
    assert_eq!(a.changed_types(&b), vec![ResourceType::Secret]);
}

#[test]
fn a_policy_that_compiles_to_rbac_is_served_as_the_rbac_filter_with_its_rules() {
    let m = mesh();
    let snap = snapshot_for(&m, "database");
    let ecds: TypedExtensionConfig =
        decode(&snap, ResourceType::ExtensionConfig, AUTHZ_FILTER_NAME);
    let any = ecds.typed_config.as_ref().unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
    );
    let rbac: crate::rbac::proto::HttpRbac = unpack(any);
    let rules = rbac.rules.expect("enforced rules");
    let names: Vec<&str> = rules.policies.keys().map(String::as_str).collect();
    assert_eq!(names, ["policies/authz.rego:34", "policies/authz.rego:42"]);
    assert_eq!(rbac.rules_stat_prefix, "warden_authz");

    // The listener accepts both filter types, maps RBAC denies and logs them.
    let listener: Listener = decode(&snap, ResourceType::Listener, names::INBOUND_LISTENER);
    let hcm = inbound_hcm(&listener);
    let http_filter::ConfigType::ConfigDiscovery(source) =
        hcm.http_filters[0].config_type.as_ref().unwrap()
    else {
        panic!("the authz filter is not from ECDS");
    };
    assert_eq!(source.type_urls.len(), 2);
    let mapper = &hcm.local_reply_config.as_ref().unwrap().mappers[0];
    // deny_status is 403 already: only the decision id is added.
    assert_eq!(mapper.status_code, None);
    let added = mapper.headers_to_add[0].header.as_ref().unwrap();
    assert_eq!(added.key, "x-warden-decision-id");
    let loggers: Vec<&str> = hcm.access_log.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        loggers,
        [
            "envoy.access_loggers.stderr",
            "envoy.access_loggers.http_grpc"
        ],
        "the deny line, and the audit trail (the sample sets audit.listen)"
    );
}

#[test]
fn another_deny_status_is_mapped_onto_rbac_denies() {
    let mut m = mesh();
    m.config.policy.deny_status = 401;
    let snap = snapshot_for(&m, "backend");
    let listener: Listener = decode(&snap, ResourceType::Listener, names::INBOUND_LISTENER);
    let hcm = inbound_hcm(&listener);
    let mapper = &hcm.local_reply_config.as_ref().unwrap().mappers[0];
    assert_eq!(mapper.status_code.as_ref().map(|c| c.value), Some(401));
}

#[test]
fn switching_native_rbac_off_changes_only_the_filter_config() {
    let m = mesh();
    let mut off = mesh();
    off.config.policy.native_rbac = false;
    let (a, b) = (snapshot_for(&m, "backend"), snapshot_for(&off, "backend"));
    let version = |s: &Snapshot, t| s.get(t).unwrap().version.clone();
    assert_eq!(
        version(&a, ResourceType::Listener),
        version(&b, ResourceType::Listener)
    );
    assert_ne!(
        version(&a, ResourceType::ExtensionConfig),
        version(&b, ResourceType::ExtensionConfig)
    );
}

fn inbound_hcm(listener: &Listener) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(hcm_any)) =
        &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("no HCM")
    };
    unpack(hcm_any)
}
