//! Reading Envoy's `/certs` admin output: which leaf certificates (by serial) a sidecar
//! currently serves for a SPIFFE ID, and which CA certificates it trusts. Pure functions
//! over the JSON, so rotation scenarios can watch serials change.
//!
//! Shape (Envoy 1.40): `{"certificates": [{"ca_cert": [cert..], "cert_chain": [cert..]}]}`
//! with one entry per TLS context, each cert `{"serial_number", "subject_alt_names":
//! [{"uri": ..}], "valid_from", "expiration_time", ..}`.

use std::collections::BTreeSet;

use serde_json::Value;

fn certs<'a>(dump: &'a Value, field: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    dump["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(move |context| context[field].as_array().into_iter().flatten())
}

fn has_uri_san(cert: &Value, uri: &str) -> bool {
    cert["subject_alt_names"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|san| san["uri"].as_str() == Some(uri))
}

fn serial(cert: &Value) -> Option<String> {
    cert["serial_number"]
        .as_str()
        .map(|s| s.trim_start_matches('0').to_ascii_lowercase())
}

/// Serials of the leaf certificates with URI SAN `spiffe_id` in any TLS context.
pub fn svid_serials(dump: &Value, spiffe_id: &str) -> BTreeSet<String> {
    certs(dump, "cert_chain")
        .filter(|c| has_uri_san(c, spiffe_id))
        .filter_map(serial)
        .collect()
}

/// Every leaf certificate served in any TLS context: (serial, `expiration_time` as Unix
/// seconds). A leaf whose expiration cannot be read is reported with `i64::MIN`, so a
/// caller checking "not expired" fails on it instead of skipping it.
pub fn leaf_expirations(dump: &Value) -> Vec<(String, i64)> {
    certs(dump, "cert_chain")
        .map(|c| {
            let at = c["expiration_time"]
                .as_str()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map_or(i64::MIN, |t| t.unix_timestamp());
            (serial(c).unwrap_or_default(), at)
        })
        .collect()
}

/// Serials of every trusted CA certificate in any TLS context.
pub fn ca_serials(dump: &Value) -> BTreeSet<String> {
    certs(dump, "ca_cert").filter_map(serial).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump() -> Value {
        serde_json::json!({"certificates": [
            {"ca_cert": [{"serial_number": "0a1b", "subject_alt_names": []}],
             "cert_chain": [{"serial_number": "ff01",
                             "subject_alt_names": [{"uri": "spiffe://example.org/a"}]}]},
            {"ca_cert": [{"serial_number": "0A1B"}, {"serial_number": "c0de"}],
             "cert_chain": [{"serial_number": "ff02",
                             "subject_alt_names": [{"uri": "spiffe://example.org/b"}]}]}
        ]})
    }

    #[test]
    fn leaf_expirations_are_read_and_unreadable_ones_count_as_expired() {
        let dump = serde_json::json!({"certificates": [{"cert_chain": [
            {"serial_number": "01", "expiration_time": "2026-11-30T08:00:00Z"},
            {"serial_number": "02"}
        ]}]});
        assert_eq!(
            leaf_expirations(&dump),
            vec![("1".to_owned(), 1_796_025_600), ("2".to_owned(), i64::MIN)]
        );
    }

    #[test]
    fn leaf_serials_are_picked_by_uri_san() {
        let serials = svid_serials(&dump(), "spiffe://example.org/a");
        assert_eq!(serials, BTreeSet::from(["ff01".to_owned()]));
        assert!(svid_serials(&dump(), "spiffe://example.org/c").is_empty());
    }

    #[test]
    fn ca_serials_are_normalised_and_deduplicated() {
        let serials = ca_serials(&dump());
        assert_eq!(
            serials,
            BTreeSet::from(["a1b".to_owned(), "c0de".to_owned()])
        );
    }

    #[test]
    fn a_dump_without_certificates_has_no_serials() {
        assert!(ca_serials(&serde_json::json!({})).is_empty());
    }
}
