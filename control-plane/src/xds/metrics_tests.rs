//! The rendered exposition: names, label sets, escaping and format.

use super::*;

#[test]
fn faults_are_rendered_resets_per_node_left_behind_nodes_and_an_expired_ca() {
    let m = Metrics::default();
    m.stream_reset("a-sidecar");
    m.stream_reset("a-sidecar");
    m.set_left_behind(&["db-sidecar".to_string()]);
    m.set_ca_expired(true);
    m.oversized_refused();
    let text = m.render();
    for line in [
        "warden_xds_stream_resets_total{node=\"a-sidecar\"} 2",
        // OpenMetrics names a counter family without `_total`; its samples keep it.
        "# TYPE warden_xds_stream_resets counter",
        "warden_ca_nodes_left_behind{node=\"db-sidecar\"} 1",
        "warden_ca_expired 1",
        "warden_xds_oversized_refused_total 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    m.set_ca_expired(false);
    assert!(m.render().contains("warden_ca_expired 0"));
}

#[test]
fn nacks_are_rendered_per_type() {
    let m = Metrics::default();
    m.nack(ResourceType::Listener);
    m.stream_opened();
    let text = m.render();
    assert!(
        text.contains("warden_xds_nacks_total{type=\"lds\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("warden_xds_nacks_total{type=\"cds\"} 0"),
        "{text}"
    );
    assert!(text.contains("warden_xds_connected_proxies 1"), "{text}");
}

#[test]
fn expiry_gauges_are_rendered_with_labels() {
    let m = Metrics::default();
    let mut e = Expiry::default();
    e.svids.insert("backend".into(), 42);
    e.cas.insert("current".into(), 3600);
    e.bundle_sequence = 2;
    m.set_expiry(e);
    m.svid_renewal_failed();
    let text = m.render();
    assert!(
        text.contains("warden_svid_expiry_seconds{workload=\"backend\"} 42"),
        "{text}"
    );
    assert!(
        text.contains("warden_ca_expiry_seconds{slot=\"current\"} 3600"),
        "{text}"
    );
    assert!(text.contains("warden_ca_bundle_sequence 2"), "{text}");
    assert!(
        text.contains("warden_svid_renewal_failures_total 1"),
        "{text}"
    );
}

#[test]
fn label_values_are_escaped_so_a_hostile_node_name_cannot_forge_a_line() {
    let m = Metrics::default();
    m.stream_reset("evil\"} 99\nwarden_ca_expired 1\n\\");
    let text = m.render();
    assert!(
        text.contains(
            "warden_xds_stream_resets_total{node=\"evil\\\"} 99\\nwarden_ca_expired 1\\n\\\\\"} 1\n"
        ),
        "{text}"
    );
    // The forged sample stays inside the label: no line of its own.
    assert!(text.lines().any(|l| l == "warden_ca_expired 0"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("warden_ca_expired 1")),
        "{text}"
    );
}

#[test]
fn the_exposition_is_well_formed_openmetrics_text() {
    let m = Metrics::default();
    m.stream_opened();
    m.stream_reset("a");
    m.set_left_behind(&["n".into()]);
    let mut e = Expiry::default();
    e.svids.insert("w".into(), -5);
    m.set_expiry(e);
    let text = m.render() + EOF;
    let mut family = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            family = name.to_string();
        } else if line.starts_with("# HELP ") || line == "# EOF" {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("value in {line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name == family || name == format!("{family}_total"),
                "{line} outside its family {family}"
            );
        }
    }
    assert!(text.ends_with("# EOF\n"));
    // A replaced gauge family keeps only the new series.
    m.set_left_behind(&[]);
    assert!(!m.render().contains("warden_ca_nodes_left_behind{"));
}
