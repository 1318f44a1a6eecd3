//! `warden inject`: adds the Warden sidecar to the pod templates of Kubernetes manifests,
//! like `istioctl kube-inject`. Pure: YAML text and a loaded config in, YAML text out.
//!
//! Each Deployment, StatefulSet, DaemonSet, Job or Pod gets, in its pod template:
//! - an init container `warden-filter` (the warden image) copying the filter modules into
//!   an `emptyDir`, where Envoy opens them at the path `warden serve` sends
//!   (`/opt/warden/filter/…`);
//! - the Envoy sidecar `warden-sidecar` as a native sidecar (init container with
//!   `restartPolicy: Always`, Kubernetes 1.29+), started before the app and ready once
//!   its inbound listener (pushed over xDS) accepts connections;
//! - its bootstrap, rendered by [`crate::xds::bootstrap::render`] for the workload and
//!   passed inline (`--config-yaml`): the instance name is the pod name
//!   (`--service-node $(POD_NAME)`), the node cluster the workload's node id, the node
//!   metadata `INSTANCE_IP` the pod IP (both from the downward API, expanded by the
//!   kubelet), the xDS address the control plane's Service;
//! - the projected service-account token (audience from `attestation.kubernetes`, 600 s,
//!   the shortest the API server issues) the sidecar attests with, and the trust anchor
//!   (ConfigMap `warden-ca`, key `ca.crt`) it verifies the control plane with.
//!
//! The workload is the one the annotation `warden.dev/workload` names, else the one whose
//! SPIFFE ID is `spiffe://<td>/ns/<namespace>/sa/<serviceAccountName>`. Injection is
//! idempotent: earlier Warden additions are removed before adding them again.
//! Services, ServiceAccounts, ConfigMaps, Secrets and Namespaces pass through unchanged;
//! other kinds are refused. `warden.dev/inject: "false"` leaves a workload untouched.

mod bootstrap;
mod emit;
mod pod;

use serde_yaml::{Mapping, Value};

use crate::config::{Config, Workload};

/// Where the projected token is mounted (the file is `token`).
pub(super) const TOKEN_DIR: &str = "/var/run/secrets/warden";
/// Where the trust anchor ConfigMap `warden-ca` is mounted (the file is `ca.crt`).
pub(super) const CA_DIR: &str = "/etc/warden/ca";

/// The annotation naming the workload of a pod template.
pub const WORKLOAD_ANNOTATION: &str = "warden.dev/workload";
/// `"false"` skips a manifest.
pub const INJECT_ANNOTATION: &str = "warden.dev/inject";
/// Set on injected pod templates (the workload's name).
pub const INJECTED_ANNOTATION: &str = "warden.dev/injected";
/// Set (`"true"`) on injected pod templates; the install's NetworkPolicy admits only
/// such pods to xDS.
pub const MESHED_LABEL: &str = "warden.dev/meshed";
/// Largest input accepted (bytes).
pub const MAX_INPUT: usize = 8 << 20;

/// Where the sidecar finds things; defaults fit `deploy/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The control plane's xDS Service, `host:port`.
    pub xds_address: String,
    /// The Envoy image of the sidecar.
    pub envoy_image: String,
    /// The warden image (it holds the filter modules).
    pub warden_image: String,
    /// Namespace of manifests that name none.
    pub default_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            xds_address: "warden-xds.warden-system.svc.cluster.local:18000".into(),
            envoy_image: "envoyproxy/envoy:v1.40.0".into(),
            warden_image: "warden:dev".into(),
            default_namespace: "default".into(),
        }
    }
}

/// Why a manifest cannot be injected. Names the document and the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("input is larger than {MAX_INPUT} bytes")]
    TooLarge,
    #[error("document {doc}: not YAML: {reason}")]
    Yaml { doc: usize, reason: String },
    #[error("document {doc}: not a Kubernetes object (no `kind`)")]
    NoKind { doc: usize },
    #[error("document {doc}: kind `{kind}` is not supported (Deployment, StatefulSet, DaemonSet, Job, Pod; Service, ServiceAccount, ConfigMap, Secret, Namespace pass through)")]
    UnknownKind { doc: usize, kind: String },
    #[error("{object}: no pod template at `{path}`")]
    NoTemplate { object: String, path: &'static str },
    #[error("{object}: {reason}")]
    Shape { object: String, reason: String },
    #[error("{object}: no workload `{name}` in the config (known: {known})")]
    UnknownWorkload {
        object: String,
        name: String,
        known: String,
    },
    #[error("{object}: no workload has SPIFFE ID {id} (the pod's service account); add the annotation `warden.dev/workload: NAME` or a workload with that spiffe_id")]
    NoWorkloadForServiceAccount { object: String, id: String },
    #[error("{object}: workload `{workload}` is {expected}, but the pod runs as service account {namespace}/{account}: its token would not attest (set serviceAccountName or the namespace)")]
    ServiceAccountMismatch {
        object: String,
        workload: String,
        expected: String,
        namespace: String,
        account: String,
    },
    #[error("{object}: workload `{workload}` does not allow Kubernetes attestation (its `attestation:` list)")]
    AttestationNotAllowed { object: String, workload: String },
    #[error("the config has no `attestation.kubernetes` (issuer + jwks_file): injected sidecars could not attest")]
    NoKubernetesAttestation,
    #[error("{object}: workload `{workload}` has inbound.listen {listen}: on Kubernetes it must listen on the pod IP, e.g. inbound.listen: 0.0.0.0:{port}")]
    LoopbackInbound {
        object: String,
        workload: String,
        listen: std::net::SocketAddr,
        port: u16,
    },
    #[error("{object}: workload `{workload}` sends inbound traffic to the app on port {port} (inbound.app), but no container declares that containerPort (declared: {declared})")]
    AppPort {
        object: String,
        workload: String,
        port: u16,
        declared: String,
    },
    #[error("bootstrap for workload `{workload}`: {reason}")]
    Bootstrap { workload: String, reason: String },
}

/// Inject every workload manifest of `input` (multi-document YAML).
pub fn inject(input: &str, cfg: &Config, opts: &Options) -> Result<String, InjectError> {
    if input.len() > MAX_INPUT {
        return Err(InjectError::TooLarge);
    }
    if cfg.attestation.kubernetes.is_none() {
        return Err(InjectError::NoKubernetesAttestation);
    }
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let doc = i + 1;
        let yaml_error = |reason: String| InjectError::Yaml { doc, reason };
        let mut value = <Value as serde::Deserialize>::deserialize(de)
            .map_err(|e| yaml_error(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        // `<<: *anchor` merge keys, as Kubernetes' YAML 1.1 parser applies them.
        value.apply_merge().map_err(|e| yaml_error(e.to_string()))?;
        let value = inject_object(value, doc, cfg, opts)?;
        out.push(emit::document(&value).map_err(|e| yaml_error(e.to_string()))?);
    }
    Ok(out.join("---\n"))
}

fn inject_object(
    mut obj: Value,
    doc: usize,
    cfg: &Config,
    opts: &Options,
) -> Result<Value, InjectError> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or(InjectError::NoKind { doc })?
        .to_owned();
    let path: &[&'static str] = match kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &["spec", "template"],
        "Pod" => &[],
        "List" => return inject_list(obj, doc, cfg, opts),
        "Service" | "ServiceAccount" | "ConfigMap" | "Secret" | "Namespace" => return Ok(obj),
        _ => return Err(InjectError::UnknownKind { doc, kind }),
    };
    let name = meta_str(&obj, "name").unwrap_or("(unnamed)").to_owned();
    let namespace = meta_str(&obj, "namespace")
        .unwrap_or(&opts.default_namespace)
        .to_owned();
    let object = format!("{kind} {namespace}/{name}");
    let skip = annotation(&obj, INJECT_ANNOTATION) == Some("false");
    let outer_choice = annotation(&obj, WORKLOAD_ANNOTATION).map(str::to_owned);
    let mut template = &mut obj;
    for key in path {
        template =
            template
                .get_mut(*key)
                .filter(|v| v.is_mapping())
                .ok_or(InjectError::NoTemplate {
                    object: object.clone(),
                    path: "spec.template",
                })?;
    }
    if skip || annotation(template, INJECT_ANNOTATION) == Some("false") {
        return Ok(obj);
    }
    let choice = annotation(template, WORKLOAD_ANNOTATION)
        .map(str::to_owned)
        .or(outer_choice);
    let pod = PodRef {
        object: &object,
        namespace: &namespace,
    };
    let w = choose_workload(template, &pod, choice.as_deref(), cfg)?;
    pod::inject(template, &pod, w, cfg, opts)?;
    Ok(obj)
}

fn inject_list(
    mut obj: Value,
    doc: usize,
    cfg: &Config,
    opts: &Options,
) -> Result<Value, InjectError> {
    if let Some(items) = obj.get_mut("items").and_then(Value::as_sequence_mut) {
        for item in items.iter_mut() {
            *item = inject_object(std::mem::take(item), doc, cfg, opts)?;
        }
    }
    Ok(obj)
}

/// The object being injected, for messages and the service-account check.
pub(crate) struct PodRef<'a> {
    pub object: &'a str,
    pub namespace: &'a str,
}

fn choose_workload<'c>(
    template: &Value,
    pod: &PodRef<'_>,
    choice: Option<&str>,
    cfg: &'c Config,
) -> Result<&'c Workload, InjectError> {
    let account = template
        .get("spec")
        .and_then(|s| {
            s.get("serviceAccountName")
                .or_else(|| s.get("serviceAccount"))
        })
        .and_then(Value::as_str)
        .unwrap_or("default");
    let id = format!(
        "{}/ns/{}/sa/{}",
        cfg.trust_domain.to_spiffe_id_string(),
        pod.namespace,
        account
    );
    let w = match choice {
        Some(name) => cfg
            .workload(name)
            .ok_or_else(|| InjectError::UnknownWorkload {
                object: pod.object.to_owned(),
                name: name.to_owned(),
                known: cfg
                    .workloads
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => cfg
            .workloads
            .iter()
            .find(|w| w.spiffe_id.as_str() == id)
            .ok_or_else(|| InjectError::NoWorkloadForServiceAccount {
                object: pod.object.to_owned(),
                id: id.clone(),
            })?,
    };
    if w.spiffe_id.as_str() != id {
        return Err(InjectError::ServiceAccountMismatch {
            object: pod.object.to_owned(),
            workload: w.name.clone(),
            expected: w.spiffe_id.to_string(),
            namespace: pod.namespace.to_owned(),
            account: account.to_owned(),
        });
    }
    if !w
        .attestation
        .contains(&crate::config::AttestMethod::Kubernetes)
    {
        return Err(InjectError::AttestationNotAllowed {
            object: pod.object.to_owned(),
            workload: w.name.clone(),
        });
    }
    Ok(w)
}

fn meta_str<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj.get("metadata")?.get(key)?.as_str()
}

fn annotation<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// `map[key]`, created as an empty mapping when absent or null.
pub(crate) fn mapping_at<'v>(
    map: &'v mut Value,
    key: &str,
    object: &str,
) -> Result<&'v mut Mapping, InjectError> {
    let m = map.as_mapping_mut().ok_or_else(|| InjectError::Shape {
        object: object.to_owned(),
        reason: format!("expected a mapping around `{key}`"),
    })?;
    let slot = m.entry(Value::from(key)).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Mapping(Mapping::new());
    }
    slot.as_mapping_mut().ok_or_else(|| InjectError::Shape {
        object: object.to_owned(),
        reason: format!("`{key}` is not a mapping"),
    })
}

#[cfg(test)]
mod tests;
