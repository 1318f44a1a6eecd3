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

/// A self-signed upstream root with the given defects, written as up.pem / up.key.
fn write_upstream(
    dir: &Path,
    pathlen: Option<u8>,
    key_cert_sign: bool,
    expired: bool,
    with_root: bool,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca = |cn: &str, pathlen: Option<u8>| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(pathlen.map_or(
            BasicConstraints::Unconstrained,
            BasicConstraints::Constrained,
        ));
        p.key_usages = if key_cert_sign {
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("Upstream Root", pathlen);
    let root = root_params.self_signed(&root_key).unwrap();
    let (pem, key) = if with_root {
        (root.pem(), root_key.serialize_pem())
    } else {
        // Only an intermediate, without the root it chains to.
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&root_params, &root_key);
        let int = ca("Upstream Intermediate", None)
            .signed_by(&key, &issuer)
            .unwrap();
        (int.pem(), key.serialize_pem())
    };
    fs::write(dir.join("up.pem"), pem).unwrap();
    fs::write(dir.join("up.key"), key).unwrap();
}

#[test]
fn validate_and_serve_refuse_each_unusable_upstream_ca_and_write_nothing() {
    let dir = sample();
    edit(
        &dir.path().join("warden.yaml"),
        "  state_dir: .warden",
        "  state_dir: .warden\n  upstream: { cert: up.pem, key: up.key }",
    );
    let cases = [
        ((Some(0), true, false, true), "pathLenConstraint 0"),
        ((None, false, false, true), "without keyCertSign"),
        ((None, true, true, true), "expired on 2021-01-01"),
        ((None, true, false, false), "not a self-signed root"),
    ];
    for ((pathlen, kcs, expired, root), want) in cases {
        write_upstream(dir.path(), pathlen, kcs, expired, root);
        let out = warden(&["validate", s(dir.path())]);
        assert_eq!(out.status.code(), Some(1), "{want}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("warden.yaml:") && err.contains(want) && err.contains("hint:"),
            "{want}: {err}"
        );
        let serve = warden(&["serve", "--config", s(dir.path())]);
        assert_eq!(serve.status.code(), Some(1), "{want}: {}", stderr(&serve));
        assert!(stderr(&serve).contains(want), "{want}: {}", stderr(&serve));
        let mint = warden(&[
            "mint",
            "--config",
            s(dir.path()),
            "--id",
            "spiffe://example.org/x",
            "--out",
            s(&dir.path().join("out")),
        ]);
        assert!(
            matches!(mint.status.code(), Some(1 | 2)),
            "{want}: {}",
            stderr(&mint)
        );
        assert!(
            !dir.path().join(".warden").exists(),
            "{want}: state written"
        );
    }
    write_upstream(dir.path(), Some(1), true, false, true);
    let out = warden(&["validate", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn validate_reports_every_workload_api_problem_at_its_line() {
    let dir = sample();
    let file = dir.path().join("workload-api.yaml");
    fs::write(
        &file,
        "socket: wl.sock\njwt_ttl: 99999999999999999999s\nworkloads:\n  - name: job\n    spiffe_id: spiffe://example.org\n    selectors: [uid:1]\n",
    )
    .unwrap();
    let out = warden(&["validate", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for (line, want) in [
        (2, "maximum 3650d"),
        (5, "needs a path"),
        (6, "selector `uid:1`"),
    ] {
        assert!(
            err.contains(&format!("{}:{line}:", file.display())) && err.contains(want),
            "{want}: {err}"
        );
    }
    assert!(err.contains("3 problem(s) found"), "{err}");
}

/// Runs `warden validate DIR`, failing the test if it takes longer than `limit` (the
/// child is killed by its pid, never by name).
fn validate_within(dir: &Path, limit: std::time::Duration) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["validate", s(dir)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "warden validate {} still running after {limit:?}",
                dir.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn validate_refuses_a_fifo_a_folder_loop_and_deep_yaml_promptly_with_exit_one() {
    let limit = std::time::Duration::from_secs(20);
    // A FIFO among the workloads used to block `validate` forever.
    let dir = sample();
    let fifo = dir.path().join("workloads/pipe.yaml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = validate_within(dir.path(), limit);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pipe.yaml: error: cannot read: is not a regular file"),
        "{}",
        stderr(&out)
    );
    // Two links back to the folder used to make the walk exponential; each file counts once.
    let dir = sample();
    std::os::unix::fs::symlink(".", dir.path().join("workloads/a")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("workloads/b")).unwrap();
    let out = validate_within(dir.path(), limit);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 workloads"));
    // 100,000 nested `[` took the YAML scanner about 40 s.
    let dir = sample();
    let n = 100_000;
    fs::write(
        dir.path().join("policies/data.yaml"),
        format!("a: {}{}\n", "[".repeat(n), "]".repeat(n)),
    )
    .unwrap();
    let out = validate_within(dir.path(), limit);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("data.yaml:1:"), "{}", stderr(&out));
}
