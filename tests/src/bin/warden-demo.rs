//! `warden-demo`: the sample mesh of `examples/mesh/` on 127.0.0.1 — `warden serve`, one
//! stock Envoy sidecar and one tiny app per workload — and a guided tour printed as tables:
//! an allowed call, a denied call with its reason, a caller with no certificate, every
//! workload's SPIFFE ID and certificate, how the sidecars attested on the xDS channel and
//! the CA's rotation state, and a live policy change from deny to allow.
//!
//! By default it stays up (a progress line every few seconds) until Ctrl-C; `--once` runs
//! the tour and exits, non-zero if any step did not behave as it should. Everything it
//! starts is stopped by PID on exit, Ctrl-C or panic (the harness's process guard).
//! Run it through `./dev demo` (which builds the CLI and the filter first).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_e2e::app::EchoApp;
use warden_e2e::envoy::{self, Envoy};
use warden_e2e::http::{self, Response};
use warden_e2e::warden::{self as wcli, Warden};
use warden_e2e::{locate, tls, wait};

#[path = "warden-demo/audit.rs"]
mod audit;
#[path = "warden-demo/print.rs"]
mod print;
use print::{explain, print_control_plane, print_identities, print_table};

/// Appended to the policy during the tour: the frontend may now read the database.
const POLICY_CHANGE: &str = r#"
# Added by the demo tour: the frontend may now read the database's /query.
allow if {
	destination == database
	source == frontend
	method == "GET"
	startswith(path, "/query")
}
"#;

fn main() {
    let once = std::env::args().any(|a| a == "--once");
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: warden-demo [--once]\n  runs the sample mesh of examples/mesh on 127.0.0.1 and a guided tour;\n  --once: run the tour and exit (non-zero if a step misbehaved)");
        return;
    }
    match run(once) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::exit(2);
        }
    }
}

/// One started process set; field order is drop order.
struct Demo {
    sidecars: Vec<(String, Envoy)>,
    _apps: Vec<EchoApp>,
    warden: Warden,
    cfg: warden_cp::config::Config,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

fn run(once: bool) -> Result<bool> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let started = Instant::now();
    let demo = start()?;
    println!(
        "\nWarden demo — mesh up in {:.1} s (config: {})\n",
        started.elapsed().as_secs_f64(),
        demo.cfg.dir.display()
    );
    let ok = tour(&demo)?;
    if once {
        println!("\n--once: tour finished, stopping everything.");
        return Ok(ok);
    }
    println!("\nThe mesh stays up; Ctrl-C stops every process it started.");
    let (fe, be) = (demo.outbound("frontend", "backend")?, 0u64);
    let mut sent = be;
    while !stop.load(Ordering::SeqCst) {
        let status = http::get(fe, "/api/items")
            .map(|r| r.status.to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        sent += 1;
        eprint!(
            "\r[{:>5} s] frontend → backend: {status} · {sent} requests sent · Ctrl-C to stop ",
            started.elapsed().as_secs()
        );
        for _ in 0..20 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("\nstopping…");
    Ok(ok)
}

fn start() -> Result<Demo> {
    let root = locate::workspace_root();
    let work = root.join("target/demo");
    let dir = work.join("mesh");
    let logs = work.join("logs");
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root.join("examples/mesh"), &dir)?;
    std::fs::create_dir_all(&logs)?;
    let cfg = warden_cp::config::load(&dir).map_err(|d| anyhow::anyhow!("{d}"))?;
    check_ports(&cfg)?;
    let env = locate::filter_module_env()?;
    // One join token per sidecar, made fresh for this run and kept outside the config
    // (only their hashes land in the copied config's tokens.yaml).
    let tokens = work.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    for w in &cfg.workloads {
        let out = tokens.join(&w.name);
        wcli::cli(
            &[
                "token",
                "create",
                "--config",
                &dir.display().to_string(),
                "--workload",
                &w.name,
                "--ttl",
                "24h",
                "--out",
                &out.display().to_string(),
            ],
            &env,
        )?;
    }
    println!(
        "starting warden serve ({} → xds {} over TLS with join-token attestation, admin {})",
        dir.display(),
        cfg.server.xds_listen,
        cfg.server.admin_listen
    );
    let mut warden = Warden::serve(&dir, cfg.server.admin_listen, &logs, &env)?;
    warden.wait_ready(wcli::READY_TIMEOUT)?;
    let mut apps = Vec::new();
    let mut sidecars = Vec::new();
    for w in &cfg.workloads {
        apps.push(EchoApp::start(&w.name, w.inbound.app)?);
        let yaml = wcli::cli(
            &[
                "bootstrap",
                "--config",
                &dir.display().to_string(),
                "--workload",
                &w.name,
                "--token-file",
                &tokens.join(&w.name).display().to_string(),
            ],
            &env,
        )?;
        let path = work.join(format!("bootstrap-{}.yaml", w.name));
        std::fs::write(&path, yaml)?;
        println!(
            "starting Envoy sidecar for {:<9} (node {}, admin http://{})",
            w.name, w.node_id, w.sidecar_admin
        );
        sidecars.push((
            w.name.clone(),
            Envoy::start(&format!("envoy-{}", w.name), &path, w.sidecar_admin, &logs)?,
        ));
    }
    for (_, envoy) in &mut sidecars {
        envoy.wait_ready(envoy::READY_TIMEOUT)?;
    }
    let demo = Demo {
        sidecars,
        _apps: apps,
        warden,
        cfg,
        dir,
        env,
    };
    let fe = demo.outbound("frontend", "backend")?;
    wait::until_true(
        "frontend → backend route",
        Duration::from_secs(30),
        || Ok(http::get(fe, "/healthz").is_ok_and(|r| r.status != 503)),
    )?;
    Ok(demo)
}

impl Demo {
    fn outbound(&self, from: &str, to: &str) -> Result<SocketAddr> {
        let w = self
            .cfg
            .workload(from)
            .with_context(|| format!("no workload {from}"))?;
        w.upstreams
            .iter()
            .find(|u| u.workload == to)
            .map(|u| u.listen)
            .with_context(|| format!("{from} has no upstream {to}"))
    }

    fn call(&self, from: &str, to: &str, method: &str, path: &str) -> Result<Response> {
        http::request(self.outbound(from, to)?, method, path, &[])
    }
}

/// Each step: what, expected status, the response, and a detail line.
fn tour(demo: &Demo) -> Result<bool> {
    let mut ok = true;
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut step = |what: &str,
                    want: u16,
                    resp: Result<Response>,
                    rows: &mut Vec<[String; 4]>|
     -> Result<()> {
        let (got, detail) = match &resp {
            Ok(r) => (r.status.to_string(), explain(r)),
            Err(e) => ("error".into(), format!("{e:#}")),
        };
        let good = resp.as_ref().is_ok_and(|r| r.status == want);
        ok &= good;
        rows.push([
            what.into(),
            format!("{got}{}", if good { "" } else { " (unexpected!)" }),
            format!("expect {want}"),
            detail,
        ]);
        Ok(())
    };
    step(
        "frontend → backend   GET /api/items",
        200,
        demo.call("frontend", "backend", "GET", "/api/items"),
        &mut rows,
    )?;
    step(
        "backend  → database  POST /query",
        200,
        demo.call("backend", "database", "POST", "/query"),
        &mut rows,
    )?;
    step(
        "frontend → database  GET /query",
        403,
        demo.call("frontend", "database", "GET", "/query"),
        &mut rows,
    )?;
    let delete = demo.call("frontend", "backend", "DELETE", "/api/items");
    let delete_id = delete
        .as_ref()
        .ok()
        .and_then(|r| r.header("x-warden-decision-id").map(str::to_owned));
    step(
        "frontend → backend   DELETE /api/items",
        403,
        delete,
        &mut rows,
    )?;
    let backend = demo.cfg.workload("backend").context("backend")?;
    let refused = tls::attempt(backend.inbound.listen, None, "/api/items")?.refused();
    let foreign = tls::foreign_ca_identity("spiffe://example.org/ns/demo/sa/frontend")?;
    let forged_refused =
        tls::attempt(backend.inbound.listen, Some(&foreign), "/api/items")?.refused();
    ok &= refused && forged_refused;
    rows.push([
        format!(
            "client without certificate → backend {}",
            backend.inbound.listen
        ),
        if refused {
            "refused".into()
        } else {
            "ACCEPTED (unexpected!)".into()
        },
        "expect refused".into(),
        "mTLS: the sidecar requires a client certificate".into(),
    ]);
    rows.push([
        "frontend's ID on a certificate from another CA → backend".into(),
        if forged_refused {
            "refused".into()
        } else {
            "ACCEPTED (unexpected!)".into()
        },
        "expect refused".into(),
        "the SPIFFE validator checks the chain against the trust bundle".into(),
    ]);
    print_table(
        "Tour: requests through the sidecars",
        &["step", "result", "", "detail"],
        &rows,
    );

    ok &= audit::print_story(&demo.dir, &demo.env, delete_id.as_deref())?;
    print_identities(demo)?;
    ok &= print_control_plane(demo)?;

    // Live policy change.
    let policy = demo.dir.join("policies/authz.rego");
    let mut text = std::fs::read_to_string(&policy)?;
    text.push_str(POLICY_CHANGE);
    std::fs::write(&policy, text)?;
    let t0 = Instant::now();
    demo.warden.reload()?;
    let changed = wait::until_true(
        "frontend → database allowed",
        Duration::from_secs(20),
        || {
            Ok(demo
                .call("frontend", "database", "GET", "/query")
                .is_ok_and(|r| r.status == 200))
        },
    );
    ok &= changed.is_ok();
    let rows = vec![[
        "policies/authz.rego: allow frontend → database GET /query".to_string(),
        if changed.is_ok() {
            format!("200 after {:.2} s", t0.elapsed().as_secs_f64())
        } else {
            "still denied (unexpected!)".into()
        },
        "pushed over ECDS; no listener drained, no restart".into(),
    ]];
    print_table(
        "Live policy change (SIGHUP to warden serve; file edits are picked up too)",
        &["change", "frontend → database GET /query", "how"],
        &rows,
    );

    let w = |n: &str| {
        demo.cfg
            .workload(n)
            .map(|w| w.sidecar_admin.to_string())
            .unwrap_or_default()
    };
    println!("\nWhere to look next:");
    println!(
        "  warden admin     http://{0}/metrics   http://{0}/config_dump",
        demo.cfg.server.admin_listen
    );
    println!(
        "  Envoy admin      frontend http://{}  backend http://{}  database http://{}",
        w("frontend"),
        w("backend"),
        w("database")
    );
    println!(
        "  why denied?      ./target/debug/warden audit --config {} --decision deny",
        demo.dir.display()
    );
    println!(
        "                   ./target/debug/warden policy eval --config {} --workload backend \\",
        demo.dir.display()
    );
    println!("                     --source spiffe://example.org/ns/demo/sa/frontend --method DELETE --path /api/items");
    println!(
        "  logs             {}",
        demo.dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("logs")
            .display()
    );
    let _ = &demo.env;
    println!(
        "\nTour {}.",
        if ok {
            "passed: every step behaved as expected"
        } else {
            "FAILED: see the steps marked unexpected"
        }
    );
    Ok(ok)
}

/// Every address of the sample must be free, or the demo says which and why.
fn check_ports(cfg: &warden_cp::config::Config) -> Result<()> {
    let mut addrs = vec![
        (
            cfg.server.xds_listen,
            "server.xds_listen in warden.yaml".to_string(),
        ),
        (
            cfg.server.admin_listen,
            "server.admin_listen in warden.yaml".to_string(),
        ),
    ];
    if let Some(audit) = cfg.audit.listen {
        addrs.push((audit, "audit.listen in warden.yaml".to_string()));
    }
    for w in &cfg.workloads {
        addrs.push((w.sidecar_admin, format!("sidecar.admin of {}", w.name)));
        addrs.push((w.inbound.listen, format!("inbound.listen of {}", w.name)));
        addrs.push((w.inbound.app, format!("inbound.app of {}", w.name)));
        for u in &w.upstreams {
            addrs.push((u.listen, format!("upstream {} of {}", u.workload, w.name)));
        }
    }
    for (addr, what) in addrs {
        if TcpListener::bind(addr).is_err() {
            bail!("{addr} ({what}) is already in use — is another demo running? Stop it, or change the port in examples/mesh/");
        }
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        if e.file_name() == ".warden" {
            continue;
        }
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), to)?;
        }
    }
    Ok(())
}
