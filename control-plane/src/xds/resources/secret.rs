//! SDS secrets: a workload's SVID (certificate chain + key) and validation contexts that
//! carry the trust bundle inside Envoy's SPIFFE certificate validator, as SPIRE sends them.

use xds_api::pb::envoy::config::core::v3::{data_source, DataSource, TypedExtensionConfig};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};

use super::common::any;
use crate::identity::{Svid, TrustBundle};
use crate::xds::ext::{SpiffeCertValidatorConfig, SpiffeTrustDomain};
use crate::xds::snapshot::{SnapshotBuilder, SnapshotError};
use crate::xds::types::{ResourceType, SecretName};

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

/// Adds the validation-context secrets under SPIRE's names: our bundle as
/// `spiffe://<td>` and `ROOTCA`, each federated bundle as `spiffe://<its td>`, and `ALL`
/// with every trust domain (one CA set each, so a CA of one trust domain never vouches
/// for an ID of another). Returns the name listeners and clusters validate with: our
/// own bundle without federation, `ALL` with it.
pub(super) fn add_bundles(
    b: &mut SnapshotBuilder,
    own: &TrustBundle,
    federated: &[TrustBundle],
) -> Result<String, SnapshotError> {
    let own_name = own.trust_domain.to_spiffe_id_string();
    for name in [own_name.as_str(), SecretName::ROOTCA] {
        b.add(
            ResourceType::Secret,
            name,
            &bundle(name, std::slice::from_ref(own)),
        )?;
    }
    let mut all = vec![own.clone()];
    for f in federated
        .iter()
        .filter(|f| f.trust_domain != own.trust_domain)
    {
        let name = f.trust_domain.to_spiffe_id_string();
        b.add(
            ResourceType::Secret,
            &name,
            &bundle(&name, std::slice::from_ref(f)),
        )?;
        all.push(f.clone());
    }
    b.add(
        ResourceType::Secret,
        SecretName::ALL,
        &bundle(SecretName::ALL, &all),
    )?;
    Ok(if all.len() == 1 {
        own_name
    } else {
        SecretName::ALL.to_string()
    })
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
