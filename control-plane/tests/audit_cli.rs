//! `warden audit` as a user runs it on a store: queries, `show`, and `verify` naming the
//! first bad record after an edit or a deletion.

mod common;
use common::warden;

use std::path::Path;

use warden::audit::event::{Decision, Event, Mode, What};
use warden::audit::Store;

fn decision(i: usize, verdict: &str) -> Event {
    Event::at(
        1_700_000_000_000 + i as i64,
        "example.org",
        What::Decision(Decision {
            decision_id: format!("id-{i}"),
            source: "spiffe://example.org/frontend".into(),
            destination: "spiffe://example.org/backend".into(),
            instance: "backend-sidecar".into(),
            method: "GET".into(),
            host: "backend".into(),
            path: format!("/p/{i}"),
            decision: verdict.into(),
            reason: "data.envoy.authz.allow is false".into(),
            rules: vec!["policies/authz.rego:5".into()],
            policy_version: "v1".into(),
            mode: Mode::Enforce,
            engine: "filter".into(),
            eval_us: Some(10),
            response_code: 403,
        }),
    )
}

fn store(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("audit.db");
    let mut s = Store::open(&path).unwrap();
    let events: Vec<Event> = (0..n)
        .map(|i| decision(i, if i % 2 == 0 { "deny" } else { "allow" }))
        .collect();
    s.append(&events).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String) {
    let out = warden(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn verify_passes_on_an_intact_store_and_names_an_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path(), 10);
    let db = db.to_str().unwrap();
    let (code, out) = run(&["audit", "verify", "--db", db]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 10 record(s)"), "{out}");
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE records SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = 7",
        [],
    )
    .unwrap();
    let (code, out) = run(&["audit", "verify", "--db", db]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 7"), "{out}");
}

#[test]
fn verify_names_a_deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path(), 10);
    let db = db.to_str().unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute("DELETE FROM records WHERE seq = 4", [])
        .unwrap();
    let (code, out) = run(&["audit", "verify", "--db", db]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 4: missing"), "{out}");
}

#[test]
fn show_tells_the_whole_story_and_filters_select_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path(), 6);
    let db = db.to_str().unwrap();
    let (code, out) = run(&["audit", "show", "id-2", "--db", db]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "spiffe://example.org/frontend",
        "/p/2",
        "policies/authz.rego:5",
        "is false",
    ] {
        assert!(out.contains(needle), "{needle} missing: {out}");
    }
    let (code, out) = run(&["audit", "show", "nope", "--db", db]);
    assert_eq!(code, 1, "{out}");
    let (_, out) = run(&["audit", "--db", db, "--decision", "deny", "--json"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (_, out) = run(&["audit", "--db", db, "--path-prefix", "/p/5", "--json"]);
    assert!(
        out.contains("\"id-5\"") && out.lines().count() == 1,
        "{out}"
    );
    let (code, out) = run(&["audit", "--db", db, "--kind", "nonsense"]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn a_file_that_is_not_a_store_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    std::fs::write(&path, b"this is not sqlite at all, just bytes\x00\xff").unwrap();
    let (code, out) = run(&["audit", "verify", "--db", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains("panicked"), "{out}");
    let (code, out) = run(&[
        "audit",
        "--db",
        dir.path().join("missing.db").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no audit store"), "{out}");
}
