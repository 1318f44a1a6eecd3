//! SDS secrets: a workload's SVID (certificate chain + key) and validation contexts that
//! carry the trust bundle inside Envoy's SPIFFE certificate validator, as SPIRE sends them.

use xds_api::pb::envoy::config::core::v3::{data_source, DataSource, TypedExtensionConfig};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};

use super::common::any;
use crate::identity::{Svid, TrustBundle};
use crate::xds::ext::{SpiffeCertValidatorConfig, SpiffeTrustDomain};

fn inline(bytes: &[u8]) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    })
}

/// The SVID as a `TlsCertificate` secret named `name`.
pub(super) fn svid(name: &str, svid: &Svid) -> Secret {
    Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(svid.cert_chain_pem.as_bytes()),
            private_key: inline(svid.private_key_pem.as_bytes()),
            ..Default::default()
        })),
    }
}

/// A validation context named `name` that accepts SVIDs of the given trust domains,
/// checked by `envoy.tls.cert_validator.spiffe` (trust domain names without `spiffe://`).
pub(super) fn bundle(name: &str, bundles: &[TrustBundle]) -> Secret {
    let trust_domains = bundles
        .iter()
        .map(|b| SpiffeTrustDomain {
            name: b.trust_domain.as_str().to_string(),
            trust_bundle: inline(b.to_pem().as_bytes()),
        })
        .collect();
    let validator = SpiffeCertValidatorConfig { trust_domains };
    Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                custom_validator_config: Some(TypedExtensionConfig {
                    name: "envoy.tls.cert_validator.spiffe".to_string(),
                    typed_config: Some(any(&validator)),
                }),
                ..Default::default()
            },
        )),
    }
}
