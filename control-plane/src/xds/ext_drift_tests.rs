//! Drift test: the `.proto` subsets under `proto/` and the hand-written structs in
//! `ext.rs` must agree on every field number and wire type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prost::Message;
use xds_api::pb::envoy::config::core::v3::{AsyncDataSource, DataSource};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, SdsSecretConfig,
};
use xds_api::pb::google::protobuf::{Any, BoolValue};

use super::*;

/// (field number, wire type) pairs.
type Fields = BTreeSet<(u32, u8)>;

/// Parses every message of a minimal `.proto` file into `full.name -> fields`.
fn parse_proto(text: &str) -> BTreeMap<String, Fields> {
    let mut package = String::new();
    let mut enums = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("enum ") {
            enums.insert(rest.trim_end_matches('{').trim().to_string());
        }
    }
    // Stack of open blocks: Some(message name) or None for oneof/enum blocks.
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut out: BTreeMap<String, Fields> = BTreeMap::new();
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if let Some(p) = line.strip_prefix("package ") {
            package = p.trim_end_matches(';').to_string();
        } else if let Some(m) = line.strip_prefix("message ") {
            stack.push(Some(m.trim_end_matches('{').trim().to_string()));
            out.entry(current(&package, &stack)).or_default();
        } else if line.starts_with("oneof ") || line.starts_with("enum ") {
            stack.push(None);
        } else if line == "}" {
            stack.pop();
        } else if let Some((lhs, rhs)) = line.split_once('=') {
            let in_enum = stack.last().is_some_and(|s| s.is_none()) && !lhs.trim().contains(' ');
            if in_enum || stack.is_empty() {
                continue;
            }
            let number: u32 = rhs.trim().trim_end_matches(';').trim().parse().unwrap();
            let tokens: Vec<&str> = lhs.split_whitespace().collect();
            let (repeated, ty) = match tokens.as_slice() {
                ["repeated", ty, _] => (true, *ty),
                [ty, _] => (false, *ty),
                other => panic!("unparsed field {other:?}"),
            };
            let varint = matches!(ty, "bool" | "int32" | "uint32" | "int64" | "uint64")
                || enums.contains(ty);
            let wire = if varint && !repeated { 0 } else { 2 };
            out.entry(current(&package, &stack))
                .or_default()
                .insert((number, wire));
        }
    }
    out
}

fn current(package: &str, stack: &[Option<String>]) -> String {
    let names: Vec<&str> = stack.iter().flatten().map(String::as_str).collect();
    format!("{package}.{}", names.join("."))
}

/// Top-level (field number, wire type) pairs of an encoded message.
fn encoded_fields(bytes: &[u8]) -> Fields {
    let mut buf = bytes;
    let mut out = Fields::new();
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).unwrap();
        let wire = (key & 7) as u8;
        out.insert(((key >> 3) as u32, wire));
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut buf).unwrap();
            }
            2 => {
                let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
                buf = &buf[len..];
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

fn fields_of<M: Message + Name>(samples: &[M]) -> (String, Fields) {
    let fields = samples
        .iter()
        .flat_map(|m| encoded_fields(&m.encode_to_vec()))
        .collect();
    (M::full_name(), fields)
}

fn sds() -> SdsSecretConfig {
    SdsSecretConfig {
        name: "x".into(),
        ..Default::default()
    }
}

fn ctx(v: ValidationContextType) -> CommonTlsContext {
    CommonTlsContext {
        alpn_protocols: vec!["h2".into()],
        tls_certificate_sds_secret_configs: vec![sds()],
        validation_context_type: Some(v),
    }
}

#[test]
fn hand_written_structs_match_the_proto_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/envoy/extensions");
    let mut proto = BTreeMap::new();
    for file in [
        "transport_sockets/tls/v3/tls.proto",
        "transport_sockets/tls/v3/tls_spiffe_validator_config.proto",
        "filters/http/wasm/v3/wasm.proto",
        "wasm/v3/wasm.proto",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        proto.extend(parse_proto(&text));
    }
    let combined = CombinedCertificateValidationContext {
        default_validation_context: Some(CertificateValidationContext {
            allow_expired_certificate: true,
            ..Default::default()
        }),
        validation_context_sds_secret_config: Some(sds()),
    };
    let full_ctx = [
        ctx(ValidationContextType::ValidationContextSdsSecretConfig(
            sds(),
        )),
        ctx(ValidationContextType::CombinedValidationContext(
            combined.clone(),
        )),
    ];
    let plugin = PluginConfig {
        name: "n".into(),
        root_id: "r".into(),
        vm_config: Some(VmConfig::default()),
        configuration: Some(Any::default()),
        failure_policy: FAIL_CLOSED,
        reload_config: Some(ReloadConfig {
            backoff: Some(Default::default()),
        }),
    };
    let rust = [
        fields_of(&[UpstreamTlsContext {
            common_tls_context: Some(full_ctx[0].clone()),
            sni: "s".into(),
        }]),
        fields_of(&[DownstreamTlsContext {
            common_tls_context: Some(full_ctx[0].clone()),
            require_client_certificate: Some(BoolValue { value: true }),
            disable_stateless_session_resumption: true,
            disable_stateful_session_resumption: true,
        }]),
        fields_of(&full_ctx),
        fields_of(&[combined]),
        fields_of(&[SpiffeCertValidatorConfig {
            trust_domains: vec![SpiffeTrustDomain::default()],
        }]),
        fields_of(&[SpiffeTrustDomain {
            name: "td".into(),
            trust_bundle: Some(DataSource::default()),
        }]),
        fields_of(&[Wasm {
            config: Some(plugin.clone()),
        }]),
        fields_of(std::slice::from_ref(&plugin)),
        fields_of(&[plugin.reload_config.clone().unwrap_or_default()]),
        fields_of(&[VmConfig {
            vm_id: "v".into(),
            runtime: "r".into(),
            code: Some(AsyncDataSource::default()),
        }]),
    ];
    let rust: BTreeMap<String, Fields> = rust.into_iter().collect();
    assert_eq!(rust, proto);
}
