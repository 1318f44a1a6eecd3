//! The SPIFFE Workload API on the wire: the messages and the tonic server for
//! `SpiffeWorkloadAPI`, generated from `proto/spiffe/workload.proto` by `warden-proto-gen`
//! into `generated/` (committed; its test fails when they are stale). No package, so the
//! gRPC paths are `/SpiffeWorkloadAPI/<Method>`, as the spec and every SPIFFE client use.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

include!("generated/workload.rs");

#[cfg(test)]
mod tests {
    use prost::Message;
    use tonic::server::NamedService;

    use super::spiffe_workload_api_server::SpiffeWorkloadApiServer;
    use super::*;

    #[test]
    fn the_service_is_served_under_the_spec_name() {
        assert_eq!(
            <SpiffeWorkloadApiServer<crate::workload_api::service::Rpc> as NamedService>::NAME,
            "SpiffeWorkloadAPI"
        );
    }

    #[test]
    fn a_response_round_trips_with_the_spec_field_numbers() {
        let resp = X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: "spiffe://example.org/app".into(),
                x509_svid: vec![1],
                x509_svid_key: vec![2],
                bundle: vec![3],
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: Default::default(),
        };
        let bytes = resp.encode_to_vec();
        assert_eq!(X509svidResponse::decode(bytes.as_slice()).unwrap(), resp);
        // svids = 1 (length-delimited); inside: spiffe_id = 1, x509_svid = 2, key = 3, bundle = 4.
        assert_eq!(bytes[0], 1 << 3 | 2);
        assert_eq!(
            &bytes[bytes.len() - 9..],
            &[2 << 3 | 2, 1, 1, 3 << 3 | 2, 1, 2, 4 << 3 | 2, 1, 3]
        );
    }
}
