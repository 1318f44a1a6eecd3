//! Rego compiled to Envoy's RBAC filter decides as the Wasm filter: the sample mesh's
//! policy (`examples/mesh/policies/authz.rego`) on four workloads (the three it names and
//! a `stranger` it does not), once with `policy.native_rbac` left on auto (every workload
//! on RBAC) and once forced to Wasm (`WARDEN_NATIVE_RBAC=off`). Each callee gets the same
//! requests on both meshes, from every other workload through its sidecar: methods, the
//! path literals of the policy with boundary variants (trailing slash, one more
//! character, case, dot segments, merged slashes, escapes, query, `;`), and seeded
//! random paths. Decisions must be equal, and for canonical paths equal to the one
//! `warden policy eval` computes (the same code, run here in-process).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rand::{Rng, SeedableRng};
use warden_e2e::http::Conn;
use warden_e2e::mesh::spiffe_id;
use warden_e2e::{Mesh, MeshSpec, XdsMode};

const WORKLOADS: [&str; 4] = ["frontend", "backend", "database", "stranger"];
const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "DELETE"];

fn sample_policy() -> Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/mesh/policies/authz.rego"
    );
    std::fs::read_to_string(path).context(path)
}

/// The policy's path literals, their boundary variants, and random paths.
fn paths() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for lit in ["/api/", "/query", "/healthz"] {
        let bare = lit.trim_end_matches('/');
        out.extend([
            lit.to_string(),
            bare.to_string(),
            format!("{bare}/"),
            format!("{lit}x"),
            format!("{bare}x"),
            format!("{bare}/x/y"),
            bare[..bare.len() - 1].to_string(),
            bare.to_uppercase(),
            format!("{}{}", &bare[..2].to_uppercase(), &bare[2..]),
            format!("/x/..{bare}"),
            format!("{bare}/./x"),
            format!("/{bare}//x"),
            format!("{bare}/%2e%2e/admin"),
            format!("/%{:02X}{}", bare.as_bytes()[1], &bare[2..]),
            format!("{bare}?x=1"),
            format!("{lit}?a=%zz"),
            format!("{bare};x=1"),
            format!("{bare}/%zz"),
            format!("{bare}%20"),
        ]);
    }
    out.extend(["/".to_string(), "/admin".to_string(), "/api".to_string()]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let alphabet = b"abcdehilpqruyz/._-AQ";
    while out.len() < 90 {
        let len = rng.gen_range(1..12);
        let tail: String = (0..len)
            .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
            .collect();
        out.push(format!("/{tail}"));
    }
    out.sort();
    out.dedup();
    out
}

fn spec(env: &[(&str, &str)]) -> Result<MeshSpec> {
    let mut spec = MeshSpec::new(XdsMode::Sotw);
    for name in WORKLOADS {
        let others: Vec<&str> = WORKLOADS.iter().copied().filter(|w| *w != name).collect();
        spec = spec.workload(name, &others);
    }
    spec.policy = sample_policy()?;
    spec.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Ok(spec)
}

/// Allowed (the app answered), or denied (403 from the filter, 400 for a request
/// refused as malformed, by the HCM or the Wasm filter).
fn decisions(mesh: &Mesh, callee: &str, paths: &[String]) -> Result<BTreeMap<String, bool>> {
    let mut out = BTreeMap::new();
    for caller in WORKLOADS.iter().filter(|w| **w != callee) {
        let mut conn = Conn::connect(mesh.outbound(caller, callee)?)?;
        for method in METHODS {
            for path in paths {
                let response = match conn.send(method, path, &[], b"") {
                    Ok(r) => r,
                    // Envoy closes the connection after a 400; open a new one.
                    Err(_) => {
                        conn = Conn::connect(mesh.outbound(caller, callee)?)?;
                        conn.send(method, path, &[], b"")?
                    }
                };
                ensure!(
                    matches!(response.status, 200 | 400 | 403),
                    "{caller} → {callee} {method} {path}: status {}",
                    response.status
                );
                if response.status == 400 {
                    conn = Conn::connect(mesh.outbound(caller, callee)?)?;
                }
                out.insert(format!("{caller} {method} {path}"), response.status == 200);
            }
        }
    }
    Ok(out)
}

/// The policy as `warden policy eval` compiles it for `callee`.
fn compiled_for(mesh: &Mesh, callee: &str) -> Result<warden_filter::CompiledPolicy> {
    let config = warden_cp::config::load(&mesh.config_dir()).map_err(|d| anyhow::anyhow!("{d}"))?;
    let workload = config.workload(callee).context("callee")?;
    Ok(warden_cp::policy::compile_for(&config, workload)?.1)
}

/// What `warden policy eval` says (same library code, in-process).
fn eval(compiled: &warden_filter::CompiledPolicy, caller: &str, method: &str, path: &str) -> bool {
    let request = warden_filter::RequestAttributes {
        peer: warden_filter::Peer::Verified(
            spiffe_id(caller)
                .parse()
                .expect("mesh workloads have SPIFFE IDs"),
        ),
        method: method.into(),
        path: path.into(),
        host: "h".into(),
        scheme: "https".into(),
        headers: vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
        ],
        source_address: None,
        destination_address: None,
        time_micros: None,
    };
    let id = warden_filter::DecisionIds::new(1).next_id();
    warden_filter::authorize(compiled, &request, id)
        .decision
        .is_allow()
}

fn stat_sum(mesh: &Mesh, workload: &str, pattern: &str) -> Result<u64> {
    let stats = mesh.sidecar(workload)?.stats(pattern)?;
    Ok(stats.values().filter_map(|v| v.parse::<u64>().ok()).sum())
}

/// `warden policy eval` (exit 0 allow, 1 deny).
fn cli_allows(mesh: &Mesh, callee: &str, caller: &str, method: &str, path: &str) -> Result<bool> {
    let status = std::process::Command::new(warden_e2e::locate::warden()?)
        .args(["policy", "eval", "--config"])
        .arg(mesh.config_dir())
        .args(["--workload", callee, "--source", &spiffe_id(caller)])
        .args(["--method", method, "--path", path])
        .stdout(std::process::Stdio::null())
        .status()?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        other => anyhow::bail!("warden policy eval exited with {other:?}"),
    }
}

fn canonical(path: &str) -> bool {
    !(path.contains("/.") || path.contains("//") || path.contains('%') || path.contains(';'))
}

#[test]
fn native_rbac_decides_as_the_wasm_filter_for_every_sample_workload() -> Result<()> {
    warden_e2e::process::report_failure(run())
}

fn run() -> Result<()> {
    let paths = paths();
    let started = Instant::now();
    let native = Mesh::start(spec(&[])?)?;
    let wasm = Mesh::start(spec(&[("WARDEN_NATIVE_RBAC", "off")])?)?;
    let mut total = 0;
    for callee in WORKLOADS {
        let got = decisions(&native, callee, &paths)?;
        let want = decisions(&wasm, callee, &paths)?;
        ensure!(got.len() >= 1000, "{callee}: only {} requests", got.len());
        let differ: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(v))
            .collect();
        ensure!(
            differ.is_empty(),
            "{callee}: RBAC and Wasm differ on {differ:?}"
        );
        let compiled = compiled_for(&native, callee)?;
        let mut cli_checked = [0, 0]; // denies, allows
        for (key, allowed) in &got {
            let mut parts = key.splitn(3, ' ');
            let (caller, method, path) = (parts.next(), parts.next(), parts.next());
            let (Some(caller), Some(method), Some(path)) = (caller, method, path) else {
                continue;
            };
            if canonical(path) && cli_checked[usize::from(*allowed)] < 4 {
                // A few allows and denies through the CLI itself.
                let cli = cli_allows(&native, callee, caller, method, path)?;
                ensure!(
                    cli == *allowed,
                    "`warden policy eval` disagrees: {caller} → {callee} {method} {path}"
                );
                cli_checked[usize::from(*allowed)] += 1;
            }
            if canonical(path) {
                let expected = eval(&compiled, caller, method, path);
                ensure!(
                    expected == *allowed,
                    "{caller} → {callee} {method} {path}: eval {expected}, Envoy {allowed}"
                );
            }
        }
        ensure!(
            got.values().any(|a| *a),
            "{callee}: nothing allowed, the test would prove little"
        );
        ensure!(
            cli_checked[0] > 0 && cli_checked[1] > 0,
            "{callee}: CLI checks {cli_checked:?}"
        );
        total += got.len();
        // Each mesh really ran its path: RBAC counters on one, Wasm counters on the other.
        ensure!(stat_sum(&native, callee, r"rbac\.warden_authz\.(allowed|denied)$")? > 0);
        ensure!(stat_sum(&native, callee, r"wasmcustom\.warden_authz")? == 0);
        ensure!(stat_sum(&wasm, callee, r"rbac\.warden_authz")? == 0);
        // The filter flushes its counters once a second.
        let wasm_counted = || {
            let n = stat_sum(
                &wasm,
                callee,
                r"wasmcustom\.warden_authz\.(allowed|denied)$",
            )?;
            Ok(n > 0)
        };
        warden_e2e::wait::until_true(
            "the Wasm filter's counters",
            Duration::from_secs(5),
            wasm_counted,
        )?;
    }
    eprintln!("{total} requests per mesh, {:?} in all", started.elapsed());
    Ok(())
}
