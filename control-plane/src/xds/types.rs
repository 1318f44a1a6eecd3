//! Vocabulary of the xDS server: node ids, resource types, versions, nonces and secret
//! names. Pure types, no I/O.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The string-backed newtypes here read as their string: `Display`, `Deref<Target = str>`
/// (so `Option<Version>::as_deref()` gives `Option<&str>`), equality with string types,
/// and `From` a string (a value received from Envoy or written in a test).
macro_rules! string_newtype {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

/// The id an Envoy sends in `DiscoveryRequest.node.id` (its `--service-node`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps a node id as Envoy sent it.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The raw id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(NodeId);

/// The resource types Warden serves. The order of [`ResourceType::PUSH_ORDER`] is the
/// make-before-break order used when several types change at once: clusters before the
/// listeners that route to them, secrets and the filter config before listeners too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// SDS: `envoy.extensions.transport_sockets.tls.v3.Secret`.
    Secret,
    /// ECDS: `envoy.config.core.v3.TypedExtensionConfig`.
    ExtensionConfig,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
}

impl ResourceType {
    /// Every type, in make-before-break push order.
    pub const PUSH_ORDER: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Secret,
        ResourceType::ExtensionConfig,
        ResourceType::Listener,
    ];

    /// The type URL Envoy uses in requests and responses.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
            ResourceType::ExtensionConfig => {
                "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
        }
    }

    /// Parses a type URL; `None` for types Warden does not serve (RDS, EDS, ...).
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::PUSH_ORDER.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name for logs, metrics labels and the config dump.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "cds",
            ResourceType::Secret => "sds",
            ResourceType::ExtensionConfig => "ecds",
            ResourceType::Listener => "lds",
        }
    }

    /// The types a resource of this type references, so it can be rejected because of
    /// them: a listener names its secrets, the filter config (ECDS) and clusters; a
    /// cluster names its secrets. When one of them is accepted again, a rejected
    /// resource of this type is sent again (NACK recovery).
    pub fn depends_on(self) -> &'static [ResourceType] {
        match self {
            ResourceType::Listener => &[
                ResourceType::Cluster,
                ResourceType::Secret,
                ResourceType::ExtensionConfig,
            ],
            ResourceType::Cluster => &[ResourceType::Secret],
            ResourceType::Secret | ResourceType::ExtensionConfig => &[],
        }
    }

    /// Whether an empty subscription means "everything" (LDS and CDS) rather than
    /// "nothing" (SDS and ECDS are always requested by name).
    pub fn wildcard_by_default(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// An opaque version string: a content hash, so equal content means equal version and a
/// replica building the same config serves the same versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    /// The version of a byte sequence (first 16 hex digits of its SHA-256).
    pub fn of_bytes<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(hex::encode(&h.finalize()[..8]))
    }
    /// Wraps a version received from Envoy.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The version string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Version);

/// A response nonce, unique within one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Nonce(String);

impl Nonce {
    /// Wraps a nonce (from a counter or from a request).
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The nonce of a stream's `n`-th response (a per-stream counter).
    pub fn nth(n: u64) -> Self {
        Self(n.to_string())
    }
    /// The nonce string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_newtype!(Nonce);

/// Names under which secrets are served (SPIRE/Istio compatible, see ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    /// Own SVID, SPIRE/Istio alias.
    pub const DEFAULT: &'static str = "default";
    /// Own trust domain bundle, SPIRE/Istio alias.
    pub const ROOTCA: &'static str = "ROOTCA";
    /// All bundles, federated ones included.
    pub const ALL: &'static str = "ALL";

    /// Wraps a secret name.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip() {
        for t in ResourceType::PUSH_ORDER {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
        }
        assert_eq!(
            ResourceType::from_type_url(
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
            ),
            None
        );
    }

    #[test]
    fn clusters_are_pushed_before_listeners() {
        let pos = |t| ResourceType::PUSH_ORDER.iter().position(|x| *x == t);
        assert!(pos(ResourceType::Cluster) < pos(ResourceType::Listener));
        assert!(pos(ResourceType::Secret) < pos(ResourceType::Listener));
    }

    #[test]
    fn version_depends_on_boundaries_not_only_bytes() {
        let a = Version::of_bytes([b"ab".as_slice(), b"c".as_slice()]);
        let b = Version::of_bytes([b"a".as_slice(), b"bc".as_slice()]);
        assert_ne!(a, b);
        assert_eq!(a, Version::of_bytes([b"ab".as_slice(), b"c".as_slice()]));
    }
}
