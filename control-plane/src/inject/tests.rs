//! `warden inject` over the Kubernetes sample (golden files in
//! `examples/kubernetes/injected/`, rewritten with `WARDEN_BLESS=1`), idempotence, every
//! supported kind, every refusal, hostile input, and the injected bootstrap checked by a
//! real Envoy (`--mode validate`).

use std::path::{Path, PathBuf};

use super::*;
use crate::config::Config;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes")
}

/// examples/kubernetes/config plus the files a cluster supplies (an upstream CA made
/// here, an operator token, an empty JWKS): none of them reaches the output.
fn k8s_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("config"), dir.path());
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test upstream");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("upstream-ca.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("upstream-ca.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.path().join("admin-token"),
        "test-operator-token-0123456789\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    let cfg = crate::config::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    (dir, cfg)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn run(input: &str, cfg: &Config) -> Result<String, InjectError> {
    inject(input, cfg, &Options::default())
}

/// A Deployment of `account` in `demo` (annotation `ann` if any) around one app container.
fn deployment(kind: &str, account: &str, ann: Option<&str>) -> String {
    let ann = ann.map_or(String::new(), |w| {
        format!("      annotations: {{ warden.dev/workload: {w} }}\n")
    });
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{ name: x, namespace: demo }}\nspec:\n  template:\n    metadata:\n{ann}      labels: {{ app: x }}\n    spec:\n      serviceAccountName: {account}\n      containers:\n        - name: app\n          image: busybox\n"
    )
}

#[test]
fn the_sample_apps_inject_to_their_golden_files() {
    let (_dir, cfg) = k8s_config();
    let bless = std::env::var_os("WARDEN_BLESS").is_some();
    for app in ["frontend", "backend", "database"] {
        let input = std::fs::read_to_string(examples().join(format!("{app}.yaml"))).unwrap();
        let out = run(&input, &cfg).unwrap();
        let golden = examples().join(format!("injected/{app}.yaml"));
        if bless {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &out).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        assert!(
            out == want,
            "{app}: output differs from {} (rerun with WARDEN_BLESS=1 and review the diff)",
            golden.display()
        );
        for needle in [
            "name: warden-sidecar",
            "restartPolicy: Always",
            "audience: warden",
            "expirationSeconds: 600",
            "--service-node",
            "$(POD_NAME)",
            "fieldPath: status.podIP",
            "warden-xds.warden-system.svc.cluster.local:18000",
            "name: warden-filter",
        ] {
            assert!(out.contains(needle), "{app}: no `{needle}`");
        }
    }
}

#[test]
fn injecting_the_output_again_changes_nothing() {
    let (_dir, cfg) = k8s_config();
    let mut inputs: Vec<String> = ["frontend", "backend", "database"]
        .iter()
        .map(|a| std::fs::read_to_string(examples().join(format!("{a}.yaml"))).unwrap())
        .collect();
    // The user's own init containers and volumes stay, after Warden's, in their order.
    inputs.push(deployment("StatefulSet", "backend", None).replace(
        "      containers:",
        "      initContainers:\n        - { name: migrate, image: busybox }\n      volumes:\n        - { name: data, emptyDir: {} }\n      containers:",
    ));
    for input in inputs {
        let once = run(&input, &cfg).unwrap();
        let twice = run(&once, &cfg).unwrap();
        assert_eq!(once, twice);
        assert_eq!(
            once.matches("name: warden-sidecar").count(),
            input.matches("kind: Deployment").count().max(1)
        );
        if input.contains("migrate") {
            let filter = once.find("name: warden-filter").unwrap();
            let migrate = once.find("name: migrate").unwrap();
            assert!(filter < migrate, "Warden's init containers come first");
            assert!(once.contains("name: data"));
        }
    }
}

#[test]
fn every_pod_bearing_kind_is_injected_and_others_are_refused_or_passed() {
    let (_dir, cfg) = k8s_config();
    for kind in ["Deployment", "StatefulSet", "DaemonSet", "Job"] {
        let out = run(&deployment(kind, "backend", None), &cfg).unwrap();
        assert!(out.contains("name: warden-sidecar"), "{kind}");
    }
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: demo }\nspec:\n  serviceAccountName: database\n  containers: [{ name: app, image: busybox }]\n";
    let out = run(pod, &cfg).unwrap();
    assert!(out.contains("warden.dev/injected: database"), "{out}");
    for kind in ["CronJob", "ReplicaSet", "Widget"] {
        let err = run(&deployment(kind, "backend", None), &cfg).unwrap_err();
        assert_eq!(
            err,
            InjectError::UnknownKind {
                doc: 1,
                kind: kind.into()
            }
        );
        assert!(err.to_string().contains("is not supported"));
    }
    let svc =
        "apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { ports: [{ port: 1 }] }\n";
    assert_eq!(
        run(svc, &cfg).unwrap(),
        serde_yaml::to_string(&serde_yaml::from_str::<Value>(svc).unwrap()).unwrap()
    );
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n  - {}",
        serde_json::to_string(
            &serde_yaml::from_str::<serde_json::Value>(&deployment("Deployment", "backend", None))
                .unwrap()
        )
        .unwrap()
    );
    assert!(run(&list, &cfg).unwrap().contains("warden-sidecar"));
}

#[test]
fn unknown_or_mismatched_workloads_are_refused_with_the_reason() {
    let (_dir, cfg) = k8s_config();
    let err = run(&deployment("Deployment", "backend", Some("ghost")), &cfg).unwrap_err();
    assert!(
        matches!(&err, InjectError::UnknownWorkload { name, .. } if name == "ghost"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("known: backend, database, frontend"),
        "{err}"
    );
    let err = run(&deployment("Deployment", "default", None), &cfg).unwrap_err();
    assert!(
        err.to_string()
            .contains("spiffe://example.org/ns/demo/sa/default"),
        "{err}"
    );
    assert!(err.to_string().contains("Deployment demo/x"), "{err}");
    let err = run(
        &deployment("Deployment", "frontend", Some("database")),
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(err, InjectError::ServiceAccountMismatch { .. }),
        "{err}"
    );
    let other_ns =
        deployment("Deployment", "backend", None).replace("namespace: demo", "namespace: prod");
    assert!(
        run(&other_ns, &cfg).is_err(),
        "the namespace is part of the identity"
    );
    let mut opted_out = deployment("Deployment", "nobody", None);
    opted_out = opted_out.replace(
        "metadata: { name: x, namespace: demo }",
        "metadata: { name: x, namespace: demo, annotations: { warden.dev/inject: \"false\" } }",
    );
    assert!(!run(&opted_out, &cfg).unwrap().contains("warden-sidecar"));
}

#[test]
fn a_pod_whose_app_ports_miss_the_workloads_app_port_is_refused() {
    let (_dir, cfg) = k8s_config();
    let input = deployment("Deployment", "backend", None).replace(
        "          image: busybox\n",
        "          image: busybox\n          ports: [{ containerPort: 8080 }]\n",
    );
    let err = run(&input, &cfg).unwrap_err();
    assert!(err.to_string().contains("port 18082"), "{err}");
    assert!(err.to_string().contains("declared: 8080"), "{err}");
}

#[test]
fn a_config_without_kubernetes_attestation_or_with_loopback_inbound_is_refused() {
    let mesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    let cfg = crate::config::load(&mesh).unwrap_or_else(|d| panic!("{d}"));
    let input = deployment("Deployment", "backend", None);
    assert_eq!(
        run(&input, &cfg).unwrap_err(),
        InjectError::NoKubernetesAttestation
    );
    let (_dir, mut cfg) = k8s_config();
    for w in &mut cfg.workloads {
        w.inbound.listen = "127.0.0.1:15002".parse().unwrap();
    }
    let err = run(&input, &cfg).unwrap_err();
    assert!(
        err.to_string().contains("inbound.listen: 0.0.0.0:15002"),
        "{err}"
    );
}

#[test]
fn hostile_input_is_an_error_not_a_panic_or_a_hang() {
    let (_dir, cfg) = k8s_config();
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\nkind: Deployment\n";
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<String> = vec![
        "kind: [".into(),
        "just a string".into(),
        "42".into(),
        "apiVersion: v1\n".into(),
        "kind: Deployment\nmetadata: { name: x }\nspec: { template: 5 }\n".into(),
        "kind: Deployment\nmetadata: { name: x }\nspec: { template: { spec: { serviceAccountName: backend, initContainers: 5 } } }\n".into(),
        "kind: Pod\nmetadata: { namespace: demo }\nspec: [1, 2]\n".into(),
        "kind: Pod\nmetadata: 7\nspec: {}\n".into(),
        bomb.into(),
        deep,
        "\u{0}\u{1}\u{2}".into(),
        "x".repeat(MAX_INPUT + 1),
    ];
    let start = std::time::Instant::now();
    for c in &cases {
        assert!(
            run(c, &cfg).is_err(),
            "accepted: {:?}",
            &c[..c.len().min(80)]
        );
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(run("", &cfg).unwrap(), "", "no documents, no output");
    assert_eq!(run("---\n---\n", &cfg).unwrap(), "");
}

/// Envoy as the project locates it: `WARDEN_ENVOY`, `<workspace>/.venv/bin/envoy`.
fn envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_ENVOY") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    venv.is_file().then_some(venv)
}

#[test]
fn the_injected_bootstrap_validates_in_envoy_with_the_pods_values() {
    let Some(envoy) = envoy() else {
        eprintln!("SKIPPED: no Envoy found (set WARDEN_ENVOY)");
        return;
    };
    let (dir, cfg) = k8s_config();
    let input = std::fs::read_to_string(examples().join("backend.yaml")).unwrap();
    let out = run(&input, &cfg).unwrap();
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let inits = deploy["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap();
    let sidecar = inits
        .iter()
        .find(|c| c["name"] == "warden-sidecar")
        .unwrap();
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    // What the kubelet does: expand $(POD_IP) and $(POD_NAME); the mounted CA file.
    let ca = dir.path().join("upstream-ca.crt").display().to_string();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("$(POD_IP)", "10.244.1.7")
                .replace("$(POD_NAME)", "backend-7c9d8f5b4-x2x7q")
                .replace("/etc/warden/ca/ca.crt", &ca)
        })
        .collect();
    assert!(args
        .iter()
        .any(|a| a.contains(r#""INSTANCE_IP":"10.244.1.7""#)));
    let status = std::process::Command::new(envoy)
        .args(["--mode", "validate"])
        .args(&args)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn strings_that_yaml_1_1_reads_as_booleans_or_numbers_stay_quoted_strings() {
    let (_dir, cfg) = k8s_config();
    let input = deployment("Deployment", "backend", None).replace(
        "      labels: { app: x }\n",
        "      labels: { app: x, canary: \"on\", tier: \"NO\" }\n",
    )
        + "          env: [{ name: AT, value: \"12:30\" }, { name: DEBUG, value: \"yes\" }]\n";
    let out = run(&input, &cfg).unwrap();
    for quoted in [
        "canary: \"on\"",
        "tier: \"NO\"",
        "value: \"12:30\"",
        "value: \"yes\"",
    ] {
        assert!(out.contains(quoted), "`{quoted}` not in\n{out}");
    }
    let merged = "apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: demo }\nx: &base { serviceAccountName: backend, containers: [{ name: app, image: busybox }] }\nspec:\n  <<: *base\n";
    let out = run(merged, &cfg).unwrap();
    assert!(
        out.contains("warden.dev/injected: backend"),
        "merge keys applied: {out}"
    );
    assert!(!out.contains("<<"), "{out}");
}
