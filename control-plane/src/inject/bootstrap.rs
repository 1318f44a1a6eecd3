//! The sidecar's bootstrap for a pod: `warden bootstrap`'s rendering for the workload
//! (attested channel, trust anchor and token from the pod's volumes), with the xDS
//! target set to the control plane's Service and the node metadata `INSTANCE_IP` set to
//! `$(POD_IP)` (the kubelet expands it in container args). Returned as one-line JSON
//! for Envoy's `--config-yaml`.

use serde_yaml::Value;

use super::{InjectError, Options, CA_DIR, TOKEN_DIR};
use crate::config::{Config, Workload};
use crate::xds::bootstrap::{AdsFlavor, Channel, RootCerts};

pub(super) fn render(cfg: &Config, w: &Workload, opts: &Options) -> Result<String, InjectError> {
    let fail = |reason: String| InjectError::Bootstrap {
        workload: w.name.clone(),
        reason,
    };
    let channel = Channel::Attested {
        roots: RootCerts::File(format!("{CA_DIR}/ca.crt").into()),
        token_file: format!("{TOKEN_DIR}/token").into(),
    };
    let text = crate::xds::bootstrap::render(cfg, w, AdsFlavor::Sotw, &channel);
    let mut boot: Value = serde_yaml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let services = boot
        .get_mut("dynamic_resources")
        .and_then(|d| d.get_mut("ads_config"))
        .and_then(|a| a.get_mut("grpc_services"))
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| fail("no dynamic_resources.ads_config.grpc_services".into()))?;
    for s in services.iter_mut() {
        let g = s
            .get_mut("google_grpc")
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| fail("the ADS channel is not google_grpc".into()))?;
        g.insert("target_uri".into(), opts.xds_address.clone().into());
    }
    let node = super::mapping_at(&mut boot, "node", &w.name)?;
    let meta = node.entry("metadata".into()).or_insert(Value::Null);
    if meta.is_null() {
        *meta = Value::Mapping(Default::default());
    }
    if let Some(m) = meta.as_mapping_mut() {
        m.insert("INSTANCE_IP".into(), "$(POD_IP)".into());
    }
    serde_json::to_string(&boot).map_err(|e| fail(e.to_string()))
}
