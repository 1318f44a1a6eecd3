//! CLI inputs that once passed one verb and broke another (issue 15), run as a user would:
//! each bad input exits 1 (config) or 2 (flag) with a message, never 101 (a panic).

mod common;
use common::{sample, warden};

use std::fs;
use std::path::Path;
use std::process::Output;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn huge_or_tiny_ttls_are_refused_by_every_verb_with_exit_two() {
    let dir = sample();
    let out_dir = dir.path().join("out");
    for ttl in [
        "9223372036854775807s",
        "18446744073709551616s",
        "3651d",
        "9s",
    ] {
        let mint = warden(&[
            "mint",
            "--config",
            s(dir.path()),
            "--id",
            "spiffe://example.org/jobs/x",
            "--out",
            s(&out_dir),
            "--ttl",
            ttl,
        ]);
        assert_eq!(
            mint.status.code(),
            Some(2),
            "mint --ttl {ttl}: {}",
            stderr(&mint)
        );
        let token = warden(&[
            "token",
            "create",
            "--config",
            s(dir.path()),
            "--workload",
            "backend",
            "--ttl",
            ttl,
        ]);
        assert_eq!(
            token.status.code(),
            Some(2),
            "token --ttl {ttl}: {}",
            stderr(&token)
        );
        let want = if ttl == "9s" {
            "minimum 10s"
        } else {
            "maximum 3650d"
        };
        for out in [&mint, &token] {
            assert!(stderr(out).contains(want), "{ttl}: {}", stderr(out));
        }
    }
    assert!(!out_dir.exists());
    assert!(!dir.path().join("tokens.yaml").exists());
    // The bounds are the config's: 10s is the shortest lifetime everywhere.
    let ok = warden(&[
        "mint",
        "--config",
        s(dir.path()),
        "--id",
        "spiffe://example.org/jobs/x",
        "--out",
        s(&out_dir),
        "--ttl",
        "59s",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn mint_refuses_a_leaf_id_without_a_path() {
    let dir = sample();
    let out_dir = dir.path().join("out");
    let out = warden(&[
        "mint",
        "--config",
        s(dir.path()),
        "--id",
        "spiffe://example.org",
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a path"), "{}", stderr(&out));
    assert!(!out_dir.exists());
}

#[test]
fn validate_refuses_what_serve_and_mint_would_choke_on() {
    for (file, from, to, want) in [
        (
            "warden.yaml",
            "trust_domain: example.org",
            "trust_domain: example..org",
            "empty label",
        ),
        (
            "warden.yaml",
            "trust_domain: example.org",
            "trust_domain: a_b.org",
            "`_`",
        ),
        ("warden.yaml", "ttl: 24h", "ttl: 87600000h", "maximum 3650d"),
        ("warden.yaml", "svid_ttl: 1h", "svid_ttl: 5s", "minimum 10s"),
        (
            "workloads/backend.yaml",
            "spiffe://example.org/ns/demo/sa/backend",
            "spiffe://example.org",
            "needs a path",
        ),
    ] {
        let dir = sample();
        let path = dir.path().join(file);
        edit(&path, from, to);
        let out = warden(&["validate", s(dir.path())]);
        assert_eq!(out.status.code(), Some(1), "{to}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("{}:", path.display())), "{err}");
        assert!(err.contains(want) && err.contains("hint:"), "{to}: {err}");
        // mint (which opens the CA) refuses the same config with a message, no panic.
        let mint = warden(&[
            "mint",
            "--config",
            s(dir.path()),
            "--id",
            "spiffe://example.org/jobs/x",
            "--out",
            s(&dir.path().join("out")),
        ]);
        assert!(
            matches!(mint.status.code(), Some(1 | 2)),
            "{to}: {}",
            stderr(&mint)
        );
        assert!(stderr(&mint).contains(want), "{to}: {}", stderr(&mint));
    }
}

#[test]
fn validate_warns_when_svid_ttl_exceeds_a_sixth_of_the_ca_ttl() {
    let dir = sample();
    edit(&dir.path().join("warden.yaml"), "ttl: 24h", "ttl: 2h");
    let out = warden(&["validate", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: svid_ttl 1h is more than 1/6"),
        "{}",
        stderr(&out)
    );
}
