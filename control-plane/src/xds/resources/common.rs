//! Small shared pieces of Envoy config: addresses, the ADS config source, SDS references,
//! TLS transport sockets.

use std::net::SocketAddr;

use prost::Name;
use xds_api::pb::envoy::config::core::v3::{
    address, config_source, socket_address, transport_socket, Address, AggregatedConfigSource,
    ApiVersion, ConfigSource, SocketAddress, TransportSocket,
};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use xds_api::pb::google::protobuf::Any;

/// `{socket_address: {address, port_value}}`.
pub(super) fn address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// `{ads: {}, resource_api_version: V3}`: fetch over the node's ADS stream.
pub(super) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// An SDS reference to the secret `name`, over ADS (REFERENCE.md: SDS over ADS).
pub(super) fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads()),
    }
}

/// Packs `m` into an `Any`. Encoding into a `Vec` cannot fail; an empty `Any` would be
/// rejected by Envoy (a NACK), never a silent misconfiguration.
pub(super) fn any<M: prost::Message + Name>(m: &M) -> Any {
    // Always the `type.googleapis.com/` form: some prost types (google.protobuf.*) answer
    // `type_url()` without the host, which Envoy accepts but cannot render in /config_dump.
    Any {
        type_url: format!("type.googleapis.com/{}", M::full_name()),
        value: m.encode_to_vec(),
    }
}

/// `envoy.transport_sockets.tls` with the given TLS context.
pub(super) fn tls_socket<M: prost::Message + Name>(ctx: &M) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(ctx))),
    }
}
