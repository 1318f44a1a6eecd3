use super::event::{Decision, Event, Mode, What};
use super::query::Query;
use super::sink::{AuditSink, SinkConfig};
use super::store::{Retention, Store};

fn decision(id: &str, verdict: &str, path: &str) -> What {
    What::Decision(Decision {
        decision_id: id.into(),
        source: "spiffe://t.example/a".into(),
        destination: "spiffe://t.example/b".into(),
        instance: "b-1".into(),
        method: "GET".into(),
        host: "b".into(),
        path: path.into(),
        decision: verdict.into(),
        reason: "no rule allows".into(),
        rules: vec!["policies/b.rego:7".into()],
        policy_version: "abc".into(),
        mode: Mode::Enforce,
        engine: "filter".into(),
        eval_us: Some(12),
        response_code: 403,
    })
}

fn filled(n: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("audit.db")).unwrap();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::at(
                1_000 + i as i64,
                "t.example",
                decision(&format!("d{i}"), "deny", "/x"),
            )
        })
        .collect();
    s.append(&events).unwrap();
    (dir, s)
}

#[test]
fn records_survive_a_restart_and_the_chain_continues() {
    let (dir, mut s) = filled(3);
    drop(s);
    s = Store::open(&dir.path().join("audit.db")).unwrap();
    assert_eq!(s.head_seq(), 3);
    s.append(&[Event::at(
        5,
        "t.example",
        What::TokenRevoked { id: "x".into() },
    )])
    .unwrap();
    let v = s.verify().unwrap().unwrap();
    assert_eq!(v.records, 4);
}

#[test]
fn an_edited_record_fails_verify_and_is_named() {
    let (_d, s) = filled(5);
    s.connection()
        .execute(
            "UPDATE records SET body = replace(body, 'no rule allows', 'allowed') WHERE seq = 3",
            [],
        )
        .unwrap();
    let broken = s.verify().unwrap().unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
}

#[test]
fn an_edited_indexed_column_fails_verify() {
    let (_d, s) = filled(5);
    s.connection()
        .execute("UPDATE records SET decision = 'allow' WHERE seq = 2", [])
        .unwrap();
    assert_eq!(s.verify().unwrap().unwrap_err().seq, 2);
}

#[test]
fn a_deleted_record_fails_verify_and_is_named() {
    let (_d, s) = filled(5);
    s.connection()
        .execute("DELETE FROM records WHERE seq = 4", [])
        .unwrap();
    assert_eq!(s.verify().unwrap().unwrap_err().seq, 4);
}

#[test]
fn a_truncated_tail_fails_verify() {
    let (_d, s) = filled(5);
    s.connection()
        .execute("DELETE FROM records WHERE seq >= 4", [])
        .unwrap();
    assert_eq!(s.verify().unwrap().unwrap_err().seq, 4);
}

#[test]
fn retention_by_age_keeps_the_rest_verifiable() {
    let (_d, mut s) = filled(10);
    let r = Retention {
        max_age_ms: 5,
        max_bytes: u64::MAX,
    };
    assert_eq!(s.prune(r, 1_010).unwrap(), 5);
    let v = s.verify().unwrap().unwrap();
    assert_eq!((v.records, v.first_seq), (5, 6));
    s.append(&[Event::at(
        2_000,
        "t.example",
        What::TokenRevoked { id: "y".into() },
    )])
    .unwrap();
    assert_eq!(s.verify().unwrap().unwrap().records, 6);
}

#[test]
fn retention_by_size_deletes_oldest_first() {
    let (_d, mut s) = filled(3_000);
    let r = Retention {
        max_age_ms: i64::MAX,
        max_bytes: 128 * 1024,
    };
    let deleted = s.prune(r, 0).unwrap();
    assert!(deleted > 0);
    let v = s.verify().unwrap().unwrap();
    assert_eq!(v.first_seq, deleted as i64 + 1);
}

#[test]
fn queries_filter_by_decision_id_path_prefix_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("audit.db")).unwrap();
    s.append(&[
        Event::at(1, "t", decision("a", "deny", "/admin/x")),
        Event::at(2, "t", decision("b", "allow", "/public")),
        Event::at(
            3,
            "t",
            What::ReloadRefused {
                diagnostics: vec!["bad".into()],
            },
        ),
    ])
    .unwrap();
    let ids = |q: Query| -> Vec<i64> { s.query(&q).unwrap().iter().map(|r| r.seq).collect() };
    let q = Query {
        decision_id: Some("b".into()),
        ..Query::default()
    };
    assert_eq!(ids(q), vec![2]);
    let q = Query {
        path_prefix: Some("/adm".into()),
        ..Query::default()
    };
    assert_eq!(ids(q), vec![1]);
    let q = Query {
        path_prefix: Some("/%".into()),
        ..Query::default()
    };
    assert_eq!(ids(q), Vec::<i64>::new());
    let q = Query {
        kind: Some("reload_refused".into()),
        ..Query::default()
    };
    assert_eq!(ids(q), vec![3]);
    let q = Query {
        since_ms: Some(2),
        limit: Some(1),
        ..Query::default()
    };
    assert_eq!(ids(q), vec![3]);
}

#[test]
fn a_full_sink_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SinkConfig {
        capacity: 4,
        batch: 2,
        ..SinkConfig::default()
    };
    let sink = AuditSink::start(&dir.path().join("audit.db"), "t", cfg).unwrap();
    let t = std::time::Instant::now();
    for i in 0..10_000 {
        sink.emit(What::TokenRevoked { id: format!("{i}") });
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st = sink.stats();
        if st.written + st.dropped + st.failed == 10_000 {
            assert!(st.dropped > 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let s = Store::open_read_only(&dir.path().join("audit.db")).unwrap();
    assert!(s.verify().unwrap().is_ok());
    let text = sink.render_metrics();
    let dropped = format!(
        "warden_audit_records_dropped_total {}",
        sink.stats().dropped
    );
    assert!(text.contains(&dropped), "{text}");
}

#[test]
fn an_event_round_trips_through_its_canonical_encoding() {
    let e = Event::at(7, "t", decision("a", "deny", "/p"));
    let back: Event = serde_json::from_slice(&e.canonical()).unwrap();
    assert_eq!(back, e);
}
