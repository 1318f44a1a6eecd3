//! `warden-mesh`: the e2e harness's mesh (every port freshly allocated, real Envoy
//! sidecars attested with join tokens, real TLS) for tests written in other languages,
//! such as the browser tests (`tests/browser/`). It runs the sample mesh's workloads and
//! policy (`examples/mesh`), prints one JSON line with the addresses, and stays up until
//! its standard input closes (or Ctrl-C); then everything it started is stopped by PID.
//!
//! Output: `{"admin": "127.0.0.1:P", "config": DIR, "workloads": {NAME: {"id": ID,
//! "outbound": {UPSTREAM: "127.0.0.1:P"}}}}`.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use warden_e2e::mesh::spiffe_id;
use warden_e2e::{Mesh, MeshSpec, XdsMode};

const SAMPLE_POLICY: &str = include_str!("../../../examples/mesh/policies/authz.rego");

fn main() {
    if let Err(e) = run() {
        eprintln!("warden-mesh: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let mut spec = MeshSpec::new(XdsMode::Sotw)
        .workload("frontend", &["backend", "database"])
        .workload("backend", &["database"])
        .workload("database", &[]);
    spec.policy = SAMPLE_POLICY.to_string();
    spec.expose_reason = true;
    let mesh = Mesh::start(spec).context("starting the mesh")?;
    let mut workloads = serde_json::Map::new();
    for name in ["frontend", "backend", "database"] {
        let w = mesh.workload(name)?;
        let outbound: serde_json::Map<String, serde_json::Value> = w
            .upstreams
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string().into()))
            .collect();
        workloads.insert(
            name.to_string(),
            serde_json::json!({"id": spiffe_id(name), "outbound": outbound}),
        );
    }
    let line = serde_json::json!({
        "admin": mesh.warden().admin().to_string(),
        "config": mesh.config_dir().display().to_string(),
        "workloads": workloads,
    });
    let mut out = std::io::stdout();
    writeln!(out, "{line}")?;
    out.flush()?;
    // Stay up until stdin closes or Ctrl-C; a reader thread turns EOF into the flag.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))?;
    }
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::SeqCst);
        });
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(mesh);
    Ok(())
}
