//! Hostile input to the loader: files that are not files, endless or huge files, bytes
//! that are not UTF-8, folder loops, pathological YAML, names that would break the
//! bootstrap file. Each is refused at its file (and line, when it has one) with a hint,
//! quickly, and never blocks or panics.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use super::tests::{edit, errors, sample};
use super::*;

fn message_for<'a>(diags: &'a [Diagnostic], file: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.file.ends_with(file))
        .unwrap_or_else(|| panic!("no diagnostic for {file}: {diags:?}"))
}

#[test]
fn a_fifo_in_the_workloads_folder_is_refused_without_blocking() {
    let dir = sample();
    let fifo = dir.path().join("workloads/pipe.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let d = errors(dir.path());
    let d = message_for(&d, "pipe.yaml");
    assert!(d.message.contains("not a regular file"), "{d}");
    assert!(d.hint.is_some(), "{d}");
}

#[test]
fn an_upstream_ca_file_that_is_dev_zero_is_refused_instead_of_read_forever() {
    let dir = sample();
    let main = dir.path().join("warden.yaml");
    fs::write(
        &main,
        "trust_domain: example.org\nca:\n  upstream:\n    cert: /dev/zero\n    key: /dev/zero\n",
    )
    .unwrap();
    let d = errors(dir.path());
    assert_eq!(d.len(), 2, "{d:?}");
    for (d, key) in d.iter().zip(["cert:", "key:"]) {
        assert!(d.message.contains("not a regular file"), "{d}");
        assert_eq!(d.line, super::tests::line_of(&main, key), "{d}");
    }
}

#[test]
fn a_file_over_16_mib_is_refused_before_parsing() {
    let dir = sample();
    let big = dir.path().join("policies/data.json");
    fs::write(
        &big,
        vec![b' '; (crate::fsutil::MAX_INPUT_FILE + 1) as usize],
    )
    .unwrap();
    let d = errors(dir.path());
    assert!(message_for(&d, "data.json")
        .message
        .contains("larger than 16 MiB"));
}

#[test]
fn bytes_that_are_not_utf8_are_refused_at_their_line_and_column() {
    let dir = sample();
    fs::write(
        dir.path().join("warden.yaml"),
        b"trust_domain: example.org\n# caf\xe9\n",
    )
    .unwrap();
    let d = errors(dir.path());
    let msg = &message_for(&d, "warden.yaml").message;
    assert!(
        msg.contains("not UTF-8") && msg.contains("line 2, column 6"),
        "{msg}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = sample();
    let main = dir.path().join("warden.yaml");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(&main, format!("\u{feff}{text}")).unwrap();
    assert!(load(dir.path()).is_ok());
}

#[test]
fn folder_symlink_loops_list_each_file_once_and_end() {
    let dir = sample();
    // Two links back to the folder: followed naively, 2^40 paths before ELOOP.
    symlink(".", dir.path().join("workloads/a")).unwrap();
    symlink("../workloads", dir.path().join("workloads/b")).unwrap();
    symlink("../policies", dir.path().join("policies/again")).unwrap();
    let start = Instant::now();
    let cfg = load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.workloads.len(), 3);
    assert_eq!(cfg.policies.modules.len(), 1);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn flow_collections_nested_100k_deep_are_refused_quickly() {
    let dir = sample();
    let n = 100_000;
    let deep = format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
    fs::write(dir.path().join("policies/data.yaml"), deep).unwrap();
    let start = Instant::now();
    let d = errors(dir.path());
    let d = message_for(&d, "data.yaml");
    assert!(d.message.contains("nested more than 1000 levels"), "{d}");
    assert_eq!(d.line, 1);
    // The YAML scanner alone needed about 40 s for this input.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn brackets_inside_plain_text_do_not_count_as_nesting() {
    let dir = sample();
    let text: String = (0..2000).map(|i| format!("k{i}: see [note\n")).collect();
    fs::write(dir.path().join("policies/data.yaml"), text).unwrap();
    assert!(load(dir.path()).is_ok());
}

#[test]
fn a_tab_in_the_indentation_gets_a_hint() {
    let dir = sample();
    edit(dir.path(), "warden.yaml", "  ttl: 24h", "\tttl: 24h");
    let d = errors(dir.path());
    let hint = message_for(&d, "warden.yaml")
        .hint
        .clone()
        .unwrap_or_default();
    assert!(hint.contains("tab"), "{hint}");
}

#[test]
fn duplicate_keys_are_refused() {
    let dir = sample();
    edit(
        dir.path(),
        "warden.yaml",
        "trust_domain: example.org",
        "trust_domain: example.org\ntrust_domain: evil.example",
    );
    let d = errors(dir.path());
    assert!(message_for(&d, "warden.yaml")
        .message
        .contains("duplicate field"));
}

#[test]
fn workload_names_that_are_not_dns_labels_are_refused() {
    for bad in ["-backend", "backend-", &"a".repeat(64)] {
        let dir = sample();
        edit(
            dir.path(),
            "workloads/backend.yaml",
            "name: backend",
            &format!("name: \"{bad}\""),
        );
        let d = errors(dir.path());
        let d = message_for(&d, "backend.yaml");
        assert!(d.message.contains("invalid workload name"), "{bad}: {d}");
        assert_eq!(d.line, 2, "{d}");
    }
}

#[test]
fn node_ids_that_would_break_the_bootstrap_file_are_refused() {
    for bad in [
        "x\\\", admin: evil",
        "two\\nlines",
        "-flag",
        "",
        &"n".repeat(129),
        "sp ace",
    ] {
        let dir = sample();
        edit(
            dir.path(),
            "workloads/backend.yaml",
            "node_id: backend-sidecar",
            &format!("node_id: \"{bad}\""),
        );
        let d = errors(dir.path());
        let d = message_for(&d, "backend.yaml");
        assert!(d.message.contains("invalid node id"), "{bad}: {d}");
        assert!(d.hint.is_some());
    }
}

#[test]
fn a_huge_value_is_quoted_clipped_in_its_message() {
    let dir = sample();
    let long = "x".repeat(1 << 20);
    edit(
        dir.path(),
        "warden.yaml",
        "trust_domain: example.org",
        &format!("trust_domain: {long}"),
    );
    let d = errors(dir.path());
    let d = message_for(&d, "warden.yaml");
    assert!(d.message.len() < 400, "{} bytes", d.message.len());
    assert!(d.message.contains('…'));
}

#[test]
fn symlinks_out_of_the_config_directory_are_refused() {
    let dir = sample();
    let outside = tempfile::tempdir().unwrap();
    fs::copy(
        dir.path().join("workloads/backend.yaml"),
        outside.path().join("elsewhere.yaml"),
    )
    .unwrap();
    symlink(
        outside.path().join("elsewhere.yaml"),
        dir.path().join("workloads/x.yaml"),
    )
    .unwrap();
    symlink(outside.path(), dir.path().join("policies/ext")).unwrap();
    let d = errors(dir.path());
    for link in ["x.yaml", "ext"] {
        let d = message_for(&d, link);
        assert!(
            d.message.contains("links outside the config directory"),
            "{d}"
        );
    }
    // The workloads folder itself too.
    let dir = sample();
    let elsewhere = outside.path().join("workloads");
    fs::rename(dir.path().join("workloads"), &elsewhere).unwrap();
    symlink(&elsewhere, dir.path().join("workloads")).unwrap();
    let d = errors(dir.path());
    assert!(message_for(&d, "workloads")
        .message
        .contains("links outside the config directory"));
    // A link inside the directory is fine.
    let dir = sample();
    fs::rename(
        dir.path().join("workloads/backend.yaml"),
        dir.path().join("backend.yaml"),
    )
    .unwrap();
    symlink("../backend.yaml", dir.path().join("workloads/backend.yaml")).unwrap();
    assert!(load(dir.path()).is_ok());
}

#[test]
fn a_state_dir_among_the_config_files_is_refused() {
    for bad in [".", "\"\"", "policies", "./workloads/keys", "x/.."] {
        let dir = sample();
        let main = edit(
            dir.path(),
            "warden.yaml",
            "state_dir: .warden",
            &format!("state_dir: {bad}"),
        );
        let d = errors(dir.path());
        assert_eq!(d.len(), 1, "{bad}: {d:?}");
        assert!(
            d[0].message.contains("among the config files"),
            "{bad}: {}",
            d[0]
        );
        assert_eq!(
            d[0].line,
            super::tests::line_of(&main, "state_dir"),
            "{}",
            d[0]
        );
    }
    for ok in [".warden", "state", "../elsewhere"] {
        let dir = sample();
        edit(
            dir.path(),
            "warden.yaml",
            "state_dir: .warden",
            &format!("state_dir: {ok}"),
        );
        assert!(load(dir.path()).is_ok(), "{ok}");
    }
}

#[test]
fn policy_data_with_a_key_given_twice_is_refused_at_its_line() {
    let dir = sample();
    fs::write(
        dir.path().join("policies/data.yaml"),
        "roles:\n  admin: [alice]\n  viewer: [bob]\n  admin: [mallory]\n",
    )
    .unwrap();
    let d = errors(dir.path());
    let d = message_for(&d, "data.yaml");
    // serde_yaml places it at the mapping that holds the key, and names its path.
    assert!(d.message.contains("roles: duplicate key `admin`"), "{d}");
    assert_eq!(d.line, 2, "{d}");
    let dir = sample();
    fs::write(
        dir.path().join("policies/data.json"),
        "{\"roles\": {\"admin\": 1,\n \"admin\": 2}}",
    )
    .unwrap();
    let d = errors(dir.path());
    let d = message_for(&d, "data.json");
    assert!(d.message.contains("duplicate key `admin`"), "{d}");
    assert_eq!(d.line, 2, "{d}");
}

#[test]
fn policy_data_with_numbers_json_cannot_hold_is_refused() {
    let dir = sample();
    fs::write(dir.path().join("policies/data.yaml"), "limit: .inf\n").unwrap();
    let d = errors(dir.path());
    assert!(message_for(&d, "data.yaml")
        .message
        .contains("not a number JSON can hold"));
    // Ordinary data still loads, nested and typed as before.
    let dir = sample();
    fs::write(
        dir.path().join("policies/data.yaml"),
        "roles: {admin: [alice, 7, 1.5, true, null]}\n",
    )
    .unwrap();
    let cfg = load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        cfg.policies.data,
        serde_json::json!({"roles": {"admin": ["alice", 7, 1.5, true, null]}})
    );
}

#[test]
fn token_records_with_a_repeated_or_malformed_id_are_refused() {
    let dir = sample();
    let record = |id: &str| {
        format!("  - id: {id}\n    workload: backend\n    sha256: {}\n    expires: 2030-01-01T00:00:00Z\n", "ab".repeat(32))
    };
    let text = format!(
        "tokens:\n{}{}{}",
        record("0a1b2c3d"),
        record("0a1b2c3d"),
        record("XYZ")
    );
    fs::write(dir.path().join(TOKENS_FILE), text).unwrap();
    let d = errors(dir.path());
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d[0].message.contains("listed twice") && d[0].line == 6,
        "{}",
        d[0]
    );
    assert!(
        d[1].message.contains("8 lowercase hex") && d[1].line == 10,
        "{}",
        d[1]
    );
}

#[test]
fn adding_a_token_whose_id_is_taken_is_refused_not_shadowed() {
    let dir = sample();
    let record = |sha: &'static str| tokens_file::NewRecord {
        id: "0a1b2c3d",
        workload: "backend",
        sha256_hex: sha,
        expires: std::time::SystemTime::now() + Duration::from_secs(3600),
    };
    tokens_file::add(dir.path(), &record("aa")).unwrap();
    let again = tokens_file::add(dir.path(), &record("bb"));
    assert!(
        matches!(again, Err(tokens_file::TokensFileError::IdTaken(_))),
        "{again:?}"
    );
}

#[test]
fn an_empty_kubernetes_issuer_or_audience_is_refused() {
    let dir = sample();
    fs::write(dir.path().join("jwks.json"), r#"{"keys": []}"#).unwrap();
    let main = dir.path().join("warden.yaml");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(
        &main,
        format!("{text}\nattestation:\n  kubernetes:\n    issuer: \"\"\n    audience: \" \"\n    jwks_file: jwks.json\n"),
    )
    .unwrap();
    let d = errors(dir.path());
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        msgs,
        ["kubernetes issuer is empty", "kubernetes audience is empty"]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Bracket soup, anchors, tabs and odd bytes: the depth pre-check and the policy
    /// data reader return a value or an error, never a panic.
    #[test]
    fn no_text_makes_the_data_reader_panic(text in "[\\[\\]{}:,\\- \\t\\n'\"#&*a1.\\u{feff}\\u{e9}]{0,300}") {
        let _ = super::files::parse_yaml::<super::data_value::Data>(std::path::Path::new("d.yaml"), &text);
        let _ = serde_json::from_str::<super::data_value::Data>(&text);
    }
}

#[test]
fn a_jwks_file_serve_could_not_parse_is_refused_by_validate() {
    let dir = sample();
    // A `keys` array, but a key type jsonwebtoken (what `serve` uses) does not know.
    fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys": [{"kty": "weird", "kid": "k"}]}"#,
    )
    .unwrap();
    let main = dir.path().join("warden.yaml");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(
        &main,
        format!("{text}\nattestation:\n  kubernetes:\n    issuer: https://k8s\n    jwks_file: jwks.json\n"),
    )
    .unwrap();
    let d = errors(dir.path());
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.contains("not a JWKS document `serve` can use"),
        "{}",
        d[0]
    );
}
