//! Keeps `proto.rs` honest against `proto/spiffe/workload.proto`: every field number in the
//! file appears in the encoding of the fully populated Rust struct and vice versa.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;

use super::proto::*;

const PROTO: &str = include_str!("../../../proto/spiffe/workload.proto");

/// `message Name { ... }` → field numbers, from the `.proto` text.
fn proto_fields() -> BTreeMap<String, BTreeSet<u32>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in PROTO
        .lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
    {
        if let Some(rest) = line.strip_prefix("message ") {
            let name = rest.split_whitespace().next().unwrap().to_string();
            out.insert(name.clone(), BTreeSet::new());
            current = (!line.ends_with("{}")).then_some(name);
        } else if line == "}" {
            current = None;
        } else if let (Some(msg), Some((_, num))) = (&current, line.rsplit_once('=')) {
            let num: u32 = num.trim_end_matches(';').trim().parse().unwrap();
            out.get_mut(msg).unwrap().insert(num);
        }
    }
    out
}

/// Field numbers present in an encoded message (all Workload API fields are length-delimited).
fn encoded_fields(bytes: &[u8]) -> BTreeSet<u32> {
    let mut buf = bytes;
    let mut out = BTreeSet::new();
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).unwrap();
        assert_eq!(key & 7, 2, "unexpected wire type in key {key}");
        out.insert((key >> 3) as u32);
        let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
        buf = &buf[len..];
    }
    out
}

fn s() -> String {
    "x".into()
}

#[test]
fn hand_written_structs_match_the_proto_file() {
    let map = || HashMap::from([(s(), vec![1u8])]);
    let svid = X509Svid {
        spiffe_id: s(),
        x509_svid: vec![1],
        x509_svid_key: vec![1],
        bundle: vec![1],
        hint: s(),
    };
    let jwt = JwtSvid {
        spiffe_id: s(),
        svid: s(),
        hint: s(),
    };
    let claims = prost_types::Struct {
        fields: Default::default(),
    };
    let rust: Vec<(&str, Vec<u8>)> = vec![
        ("X509SVIDRequest", X509SvidRequest {}.encode_to_vec()),
        (
            "X509SVIDResponse",
            X509SvidResponse {
                svids: vec![svid.clone()],
                crl: vec![vec![1]],
                federated_bundles: map(),
            }
            .encode_to_vec(),
        ),
        ("X509SVID", svid.encode_to_vec()),
        ("X509BundlesRequest", X509BundlesRequest {}.encode_to_vec()),
        (
            "X509BundlesResponse",
            X509BundlesResponse {
                crl: vec![vec![1]],
                bundles: map(),
            }
            .encode_to_vec(),
        ),
        (
            "JWTSVIDRequest",
            JwtSvidRequest {
                audience: vec![s()],
                spiffe_id: s(),
            }
            .encode_to_vec(),
        ),
        (
            "JWTSVIDResponse",
            JwtSvidResponse {
                svids: vec![jwt.clone()],
            }
            .encode_to_vec(),
        ),
        ("JWTSVID", jwt.encode_to_vec()),
        ("JWTBundlesRequest", JwtBundlesRequest {}.encode_to_vec()),
        (
            "JWTBundlesResponse",
            JwtBundlesResponse { bundles: map() }.encode_to_vec(),
        ),
        (
            "ValidateJWTSVIDRequest",
            ValidateJwtSvidRequest {
                audience: s(),
                svid: s(),
            }
            .encode_to_vec(),
        ),
        (
            "ValidateJWTSVIDResponse",
            ValidateJwtSvidResponse {
                spiffe_id: s(),
                claims: Some(claims),
            }
            .encode_to_vec(),
        ),
    ];
    let proto = proto_fields();
    assert_eq!(
        proto.len(),
        rust.len(),
        "message count differs: {:?}",
        proto.keys()
    );
    for (name, bytes) in rust {
        let expected = proto
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing in .proto"));
        assert_eq!(&encoded_fields(&bytes), expected, "{name}");
    }
}
