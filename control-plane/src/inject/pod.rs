//! The pod template edits: Warden's init containers and volumes, replacing earlier ones
//! (so injecting twice changes nothing), and the checks that the workload fits the pod.

use serde_json::json;
use serde_yaml::{Mapping, Value};

use super::{
    bootstrap, mapping_at, InjectError, Options, PodRef, CA_DIR, INJECTED_ANNOTATION, MESHED_LABEL,
    TOKEN_DIR,
};
use crate::config::{Config, Workload};

/// Everything Warden adds is named with this prefix (and only that is removed again).
const PREFIX: &str = "warden-";
/// Where the filter modules are in the warden image, and where Envoy opens them.
pub(super) const FILTER_DIR: &str = "/opt/warden/filter";
/// Lifetime of the projected token: the shortest the API server issues.
const TOKEN_SECONDS: u64 = 600;
/// The sidecar's uid in the Envoy image.
const ENVOY_UID: u64 = 101;

pub(super) fn inject(
    template: &mut Value,
    pod: &PodRef<'_>,
    w: &Workload,
    cfg: &Config,
    opts: &Options,
) -> Result<(), InjectError> {
    check_ports(template, pod, w)?;
    let boot = bootstrap::render(cfg, w, opts)?;
    let audience = cfg
        .attestation
        .kubernetes
        .as_ref()
        .map_or("warden", |k| k.audience.as_str());
    let meta = mapping_at(template, "metadata", pod.object)?;
    let ann = meta.entry("annotations".into()).or_insert(Value::Null);
    if ann.is_null() {
        *ann = Value::Mapping(Mapping::new());
    }
    if let Some(ann) = ann.as_mapping_mut() {
        ann.insert(INJECTED_ANNOTATION.into(), w.name.clone().into());
    }
    // The install's NetworkPolicy lets only pods with this label reach xDS.
    let labels = meta.entry("labels".into()).or_insert(Value::Null);
    if labels.is_null() {
        *labels = Value::Mapping(Mapping::new());
    }
    if let Some(labels) = labels.as_mapping_mut() {
        labels.insert(MESHED_LABEL.into(), "true".into());
    }
    let spec = mapping_at(template, "spec", pod.object)?;
    let mut inits = take_seq(spec, "initContainers", pod)?;
    inits.retain(|c| !is_ours(c));
    inits.insert(0, yaml(sidecar(w, &boot, opts)));
    inits.insert(0, yaml(filter_copier(opts)));
    spec.insert("initContainers".into(), Value::Sequence(inits));
    let mut volumes = take_seq(spec, "volumes", pod)?;
    volumes.retain(|v| !is_ours(v));
    volumes.extend(volumes_for(audience).into_iter().map(yaml));
    spec.insert("volumes".into(), Value::Sequence(volumes));
    Ok(())
}

fn take_seq(spec: &mut Mapping, key: &str, pod: &PodRef<'_>) -> Result<Vec<Value>, InjectError> {
    match spec.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(s)) => Ok(s),
        Some(_) => Err(InjectError::Shape {
            object: pod.object.to_owned(),
            reason: format!("spec.{key} is not a list"),
        }),
    }
}

fn is_ours(v: &Value) -> bool {
    v.get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with(PREFIX))
}

fn yaml(v: serde_json::Value) -> Value {
    serde_yaml::to_value(v).unwrap_or(Value::Null)
}

/// The inbound listener must be reachable on the pod IP, and the app port it forwards to
/// must be one the app declares (when the app declares any).
fn check_ports(template: &Value, pod: &PodRef<'_>, w: &Workload) -> Result<(), InjectError> {
    let listen = w.inbound.listen;
    if listen.ip().is_loopback() {
        return Err(InjectError::LoopbackInbound {
            object: pod.object.to_owned(),
            workload: w.name.clone(),
            listen,
            port: listen.port(),
        });
    }
    let declared: Vec<u64> = template
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_sequence))
        .flatten()
        .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
        .collect();
    let app = u64::from(w.inbound.app.port());
    if !declared.is_empty() && !declared.contains(&app) {
        return Err(InjectError::AppPort {
            object: pod.object.to_owned(),
            workload: w.name.clone(),
            port: w.inbound.app.port(),
            declared: declared
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}

fn restricted() -> serde_json::Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": ENVOY_UID,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// Copies the filter modules from the warden image into the shared `emptyDir`.
fn filter_copier(opts: &Options) -> serde_json::Value {
    json!({
        "name": "warden-filter",
        "image": opts.warden_image,
        "command": ["cp", "-r", format!("{FILTER_DIR}/."), "/mnt/warden-filter/"],
        "volumeMounts": [{ "name": "warden-filter", "mountPath": "/mnt/warden-filter" }],
        "securityContext": restricted(),
        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
    })
}

/// The Envoy sidecar: a native sidecar, started (listener up) before the app.
fn sidecar(w: &Workload, boot: &str, opts: &Options) -> serde_json::Value {
    let inbound = w.inbound.listen.port();
    let probe =
        json!({ "tcpSocket": { "port": inbound }, "periodSeconds": 1, "failureThreshold": 120 });
    json!({
        "name": "warden-sidecar",
        "image": opts.envoy_image,
        "restartPolicy": "Always",
        "command": ["envoy"],
        "args": [
            "--config-yaml", boot,
            "--service-node", "$(POD_NAME)",
            "--service-cluster", w.node_id,
            "--log-level", "info",
            "--disable-hot-restart",
        ],
        "env": [
            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        ],
        "ports": [{ "name": "warden-in", "containerPort": inbound, "protocol": "TCP" }],
        "startupProbe": probe,
        "readinessProbe": { "tcpSocket": { "port": inbound }, "periodSeconds": 5 },
        "volumeMounts": [
            { "name": "warden-token", "mountPath": TOKEN_DIR, "readOnly": true },
            { "name": "warden-filter", "mountPath": FILTER_DIR, "readOnly": true },
            { "name": "warden-ca", "mountPath": CA_DIR, "readOnly": true },
        ],
        "securityContext": restricted(),
        "resources": { "requests": { "cpu": "50m", "memory": "64Mi" } },
    })
}

fn volumes_for(audience: &str) -> Vec<serde_json::Value> {
    vec![
        json!({ "name": "warden-token", "projected": { "sources": [
            { "serviceAccountToken": { "audience": audience, "expirationSeconds": TOKEN_SECONDS, "path": "token" } }
        ] } }),
        json!({ "name": "warden-filter", "emptyDir": { "sizeLimit": "64Mi" } }),
        json!({ "name": "warden-ca", "configMap": { "name": "warden-ca", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } }),
    ]
}
