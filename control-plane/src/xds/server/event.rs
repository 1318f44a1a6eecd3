//! What a protocol state machine observed while handling a request or a snapshot: data
//! the stream task logs, counts and records (ACK/NACK state for the config dump).

use crate::xds::types::{Nonce, ResourceType, Version};

/// One observation of a stream's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Envoy accepted the response with `nonce`, now running `version`.
    Ack {
        /// Resource type.
        t: ResourceType,
        /// Version Envoy reports running.
        version: Version,
        /// Nonce of the accepted response.
        nonce: Nonce,
    },
    /// Delta: Envoy accepted the response with `nonce`, but resources of the type it
    /// rejected earlier are still rejected: an ACK covers only the resources of its own
    /// response, so the type as a whole is not at the snapshot's version.
    PartialAck {
        /// Resource type.
        t: ResourceType,
        /// Nonce of the accepted response.
        nonce: Nonce,
        /// The resources still rejected.
        still_rejected: Vec<String>,
    },
    /// Envoy rejected the response with `nonce` and keeps running its last good config.
    Nack {
        /// Resource type.
        t: ResourceType,
        /// The rejected version (the one sent with `nonce`).
        version: Version,
        /// Nonce of the rejected response.
        nonce: Nonce,
        /// Envoy's error message.
        detail: String,
    },
    /// A request answered an older response; ignored (the xDS protocol's stale nonce).
    StaleNonce {
        /// Resource type.
        t: ResourceType,
        /// The stale nonce.
        nonce: Nonce,
    },
    /// A request for a type Warden does not serve.
    UnsupportedType {
        /// The type URL.
        type_url: String,
    },
    /// Envoy asked for resources this node's snapshot does not have.
    Missing {
        /// Resource type.
        t: ResourceType,
        /// Names not found.
        names: Vec<String>,
    },
    /// A response was produced.
    Sent {
        /// Resource type.
        t: ResourceType,
        /// Its version.
        version: Version,
        /// Its nonce.
        nonce: Nonce,
        /// How many resources it carries.
        resources: usize,
    },
}
