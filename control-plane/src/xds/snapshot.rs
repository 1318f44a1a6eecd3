//! A node's complete configuration at one moment: resources per type, a content-hash
//! version per type and per resource, and the references between resources so a
//! snapshot can be checked before it is published. Pure data, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Name;
use xds_api::pb::google::protobuf::Any;

use super::types::{ResourceType, Version};

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A resource names another resource (a secret, a cluster, a filter config) that the
    /// snapshot does not contain; Envoy would keep the listener or cluster warming.
    #[error(
        "{from_type} resource `{from}` references {to_type} `{to}`, which is not in the snapshot"
    )]
    DanglingReference {
        /// Type of the referring resource.
        from_type: ResourceType,
        /// Name of the referring resource.
        from: String,
        /// Type of the missing resource.
        to_type: ResourceType,
        /// Name of the missing resource.
        to: String,
    },
    /// Two resources of one type share a name.
    #[error("two {resource_type} resources are named `{name}`")]
    DuplicateName {
        /// The type.
        resource_type: ResourceType,
        /// The name.
        name: String,
    },
    /// A resource's message type does not match the type it was filed under.
    #[error("{resource_type} resource `{name}` has message type `{type_url}`")]
    WrongType {
        /// The type it was filed under.
        resource_type: ResourceType,
        /// Its name.
        name: String,
        /// Its actual type URL.
        type_url: String,
    },
    /// Encoding a message failed (cannot happen with in-memory buffers; kept typed).
    #[error("encoding {name}: {message}")]
    Encode {
        /// Resource name.
        name: String,
        /// Encoder message.
        message: String,
    },
}

/// One resource ready to send: its name, the encoded `Any`, and its content version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Resource name (what Envoy subscribes to).
    pub name: String,
    /// The message packed as `google.protobuf.Any`.
    pub body: Any,
    /// Content hash of `body` (used as the per-resource version in delta xDS).
    pub version: Version,
}

/// All resources of one type for one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypeSnapshot {
    /// Content hash over every resource of this type.
    pub version: Version,
    /// Resources by name (shared: instances of one workload hold the same bundle secrets).
    pub resources: BTreeMap<String, Arc<Resource>>,
}

/// A reference from one resource to another, checked by [`Snapshot::validate`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// Referring resource.
    pub from: (ResourceType, String),
    /// Referred resource.
    pub to: (ResourceType, String),
}

/// A validated snapshot for one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Shared: the instances of one workload hold the same clusters, listeners and
    /// filter config (only their secrets differ), so they share these, not copies.
    types: BTreeMap<ResourceType, Arc<TypeSnapshot>>,
}

impl Snapshot {
    /// Resources of one type (empty when none).
    pub fn get(&self, t: ResourceType) -> Option<&TypeSnapshot> {
        self.types.get(&t).map(|s| &**s)
    }

    /// This snapshot with the types `from` holds (its secrets, for one instance of a
    /// workload) taken from `from`; every other type stays shared with `self`. Both were
    /// validated; references between the types stay satisfied as long as `from` holds
    /// the same resource names, which instances of one workload do.
    pub fn with_types_of(&self, from: &Snapshot, types: &[ResourceType]) -> Snapshot {
        let mut out = self.clone();
        for t in types {
            match from.types.get(t) {
                Some(s) => out.types.insert(*t, s.clone()),
                None => out.types.remove(t),
            };
        }
        out
    }

    /// `self` sharing with `base` every type whose version equals `base`'s, and within
    /// the other types every resource with the same name and version (same content, one
    /// copy in memory).
    pub fn shared_with(mut self, base: &Snapshot) -> Snapshot {
        for (t, s) in self.types.iter_mut() {
            let Some(b) = base.types.get(t) else { continue };
            if b.version == s.version {
                *s = b.clone();
                continue;
            }
            for (name, r) in Arc::make_mut(s).resources.iter_mut() {
                if let Some(br) = b.resources.get(name).filter(|br| br.version == r.version) {
                    *r = br.clone();
                }
            }
        }
        self
    }

    /// The version of one type; the version of "no resources" when absent.
    pub fn version(&self, t: ResourceType) -> Version {
        self.types
            .get(&t)
            .map(|s| s.version.clone())
            .unwrap_or_else(|| Version::of_bytes([]))
    }

    /// The types whose version differs between `self` and `other`.
    pub fn changed_types(&self, other: &Snapshot) -> Vec<ResourceType> {
        ResourceType::PUSH_ORDER
            .into_iter()
            .filter(|t| self.version(*t) != other.version(*t))
            .collect()
    }
}

/// Collects resources and references, then checks and freezes them into a [`Snapshot`].
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    entries: Vec<(ResourceType, Resource)>,
    references: BTreeSet<Reference>,
}

impl SnapshotBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resource of type `t` named `name`.
    pub fn add<M: prost::Message + Name>(
        &mut self,
        t: ResourceType,
        name: &str,
        message: &M,
    ) -> Result<&mut Self, SnapshotError> {
        let body = Any::from_msg(message).map_err(|e| SnapshotError::Encode {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let version = Version::of_bytes([body.type_url.as_bytes(), body.value.as_slice()]);
        self.entries.push((
            t,
            Resource {
                name: name.to_string(),
                body,
                version,
            },
        ));
        Ok(self)
    }

    /// Records that resource `from` needs resource `to`.
    pub fn reference(&mut self, from: (ResourceType, &str), to: (ResourceType, &str)) -> &mut Self {
        self.references.insert(Reference {
            from: (from.0, from.1.to_string()),
            to: (to.0, to.1.to_string()),
        });
        self
    }

    /// Validates (unique names, right message types, no dangling references) and builds.
    pub fn build(self) -> Result<Snapshot, SnapshotError> {
        let mut types: BTreeMap<ResourceType, TypeSnapshot> = ResourceType::PUSH_ORDER
            .into_iter()
            .map(|t| (t, TypeSnapshot::default()))
            .collect();
        for (t, r) in self.entries {
            if r.body.type_url != t.type_url() {
                return Err(SnapshotError::WrongType {
                    resource_type: t,
                    name: r.name,
                    type_url: r.body.type_url,
                });
            }
            let slot = types.entry(t).or_default();
            if slot.resources.contains_key(&r.name) {
                return Err(SnapshotError::DuplicateName {
                    resource_type: t,
                    name: r.name,
                });
            }
            slot.resources.insert(r.name.clone(), Arc::new(r));
        }
        for slot in types.values_mut() {
            slot.version = Version::of_bytes(
                slot.resources
                    .values()
                    .flat_map(|r| [r.name.as_bytes(), r.version.as_str().as_bytes()]),
            );
        }
        let snapshot = Snapshot {
            types: types.into_iter().map(|(t, s)| (t, Arc::new(s))).collect(),
        };
        snapshot.validate(&self.references)?;
        Ok(snapshot)
    }
}

impl Snapshot {
    /// Checks that every reference points at a resource in this snapshot.
    pub fn validate(&self, references: &BTreeSet<Reference>) -> Result<(), SnapshotError> {
        for r in references {
            let exists = self
                .get(r.to.0)
                .is_some_and(|s| s.resources.contains_key(&r.to.1));
            if !exists {
                return Err(SnapshotError::DanglingReference {
                    from_type: r.from.0,
                    from: r.from.1.clone(),
                    to_type: r.to.0,
                    to: r.to.1.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use xds_api::pb::envoy::config::cluster::v3::Cluster;
    use xds_api::pb::envoy::config::listener::v3::Listener;
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

    /// A snapshot with one cluster, one listener and the named secrets (test helper).
    pub(crate) fn sample(secrets: &[(&str, &str)], cluster_timeout_s: i64) -> Snapshot {
        let mut b = SnapshotBuilder::new();
        let cluster = Cluster {
            name: "c".into(),
            connect_timeout: Some(xds_api::pb::google::protobuf::Duration {
                seconds: cluster_timeout_s,
                nanos: 0,
            }),
            ..Default::default()
        };
        b.add(ResourceType::Cluster, "c", &cluster).unwrap();
        b.add(
            ResourceType::Listener,
            "l",
            &Listener {
                name: "l".into(),
                ..Default::default()
            },
        )
        .unwrap();
        for (name, content) in secrets {
            let secret = Secret {
                name: format!("{name}{content}"),
                ..Default::default()
            };
            b.add(ResourceType::Secret, name, &secret).unwrap();
        }
        b.build().unwrap()
    }

    #[test]
    fn a_dangling_secret_reference_is_refused() {
        let mut b = SnapshotBuilder::new();
        b.add(ResourceType::Listener, "l", &Listener::default())
            .unwrap();
        b.reference(
            (ResourceType::Listener, "l"),
            (ResourceType::Secret, "spiffe://x/y"),
        );
        let err = b.build().unwrap_err();
        assert!(
            matches!(err, SnapshotError::DanglingReference { ref to, .. } if to == "spiffe://x/y")
        );
    }

    #[test]
    fn a_resource_filed_under_the_wrong_type_is_refused() {
        let mut b = SnapshotBuilder::new();
        b.add(ResourceType::Cluster, "l", &Listener::default())
            .unwrap();
        assert!(matches!(b.build(), Err(SnapshotError::WrongType { .. })));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut b = SnapshotBuilder::new();
        b.add(ResourceType::Listener, "l", &Listener::default())
            .unwrap();
        b.add(ResourceType::Listener, "l", &Listener::default())
            .unwrap();
        assert!(matches!(
            b.build(),
            Err(SnapshotError::DuplicateName { .. })
        ));
    }

    #[test]
    fn changing_a_secret_changes_only_the_secret_version() {
        let a = sample(&[("s", "1")], 1);
        let b = sample(&[("s", "2")], 1);
        assert_eq!(a.changed_types(&b), vec![ResourceType::Secret]);
        assert_eq!(a.changed_types(&sample(&[("s", "1")], 1)), vec![]);
        assert_eq!(
            a.changed_types(&sample(&[("s", "1")], 2)),
            vec![ResourceType::Cluster]
        );
    }
}
