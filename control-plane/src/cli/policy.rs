//! `warden policy test DIR` and `warden policy eval …`: the filter's own core
//! (`warden_filter`) run from the command line, so the CLI and Envoy never disagree.
//!
//! `test` runs every `test_*` rule in `*_test.rego` files like `opa test` (exit 1 on any
//! failure). `eval` builds the same plugin configuration the control plane pushes for a
//! workload, authorizes one described request and prints the decision and why (exit 0
//! allow, 1 deny; in dry-run mode the exit code still follows the policy's decision).
//! `config` prints the filter configuration a workload's sidecar receives.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use warden_filter::testing::{run_tests, TestStatus};
use warden_filter::{
    authorize, to_json, Action, Decision, DecisionIds, Peer, PolicyModule, RequestAttributes, Value,
};

use warden::config::{MAIN_FILE, POLICIES_DIR};
use warden::identity::SpiffeId;

/// `warden policy` verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run the `test_*` rules of `*_test.rego` files (like `opa test`); exit 1 on any failure.
    Test(TestArgs),
    /// Authorize one request as the workload's filter would; exit 0 allow, 1 deny.
    Eval(EvalArgs),
    /// Print the filter configuration the control plane sends to a workload's sidecar
    /// (JSON: settings, Rego sources and the compiled RVM program).
    Config(ConfigArgs),
}

/// Arguments of `warden policy config`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// The config directory.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// The workload whose sidecar filter configuration to print.
    #[arg(long, value_name = "NAME")]
    workload: String,
    /// Print the Envoy RBAC filter config (proto-JSON) the policy compiles to for this
    /// workload instead; exit 1 when it stays on the Wasm filter.
    #[arg(long)]
    rbac: bool,
}

/// Arguments of `warden policy test`.
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// A config directory (with warden.yaml) or any directory of .rego files.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print only failures and the summary.
    #[arg(long, short)]
    quiet: bool,
}

/// Arguments of `warden policy eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// The config directory.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// The caller's verified SPIFFE ID; omit for a caller without a verified certificate.
    #[arg(long, value_name = "SPIFFE_ID")]
    source: Option<String>,
    /// The workload receiving the request (its sidecar's filter decides).
    #[arg(long, value_name = "NAME")]
    workload: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request path, with query string if any.
    #[arg(long, default_value = "/")]
    path: String,
    /// `:authority` (default: the workload name).
    #[arg(long)]
    host: Option<String>,
    /// Extra request header `name=value` (repeatable).
    #[arg(long = "header", value_name = "K=V")]
    headers: Vec<String>,
    /// Print one JSON object (decision, reason, result, input) instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Test(args) => test(args),
        Command::Eval(args) => eval(args),
        Command::Config(args) => {
            let cfg = super::common::load_config(&args.config)?;
            let workload = find_workload(&cfg, &args.workload, &args.config)?;
            // On stderr, so stdout stays the JSON the sidecar would get.
            let path = warden::rbac::path_for(&cfg, workload);
            eprintln!(
                "workload `{}`: authorization on {}",
                workload.name,
                path.describe()
            );
            if !args.rbac {
                println!(
                    "{}",
                    warden::policy::plugin_config(&cfg, workload).to_json()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let warden::rbac::AuthzPath::Native(rules) = path else {
                return Ok(ExitCode::from(1));
            };
            let dry_run = cfg.policy.mode == warden::config::PolicyMode::DryRun;
            // As `warden serve` emits it once any federated bundle is trusted.
            let federated = warden::config::federation::FederationSettings::load(&cfg)
                .is_ok_and(|f| f.is_some_and(|f| !f.relationships.is_empty()));
            let peers = warden::rbac::emit::Peers::from_federated(federated);
            let config = warden::rbac::emit::http_rbac(&rules, dry_run, peers);
            println!("{:#}", warden::rbac::json::http_rbac(&config));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn find_workload<'a>(
    cfg: &'a warden::config::Config,
    name: &str,
    dir: &Path,
) -> anyhow::Result<&'a warden::config::Workload> {
    cfg.workload(name).ok_or_else(|| {
        let names: Vec<&str> = cfg.workloads.iter().map(|w| w.name.as_str()).collect();
        anyhow::anyhow!(
            "no workload named {name:?} in {} (workloads: {})",
            dir.display(),
            names.join(", ")
        )
    })
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let (modules, tests, data) = if args.dir.join(MAIN_FILE).is_file() {
        let cfg = match warden::config::load(&args.dir) {
            Ok(cfg) => cfg,
            Err(diags) => {
                eprintln!("{diags}");
                return Ok(ExitCode::from(1));
            }
        };
        let to_module = |f: &warden::config::RegoFile| PolicyModule {
            name: f.name.clone(),
            source: f.source.clone(),
        };
        let modules = cfg.policies.modules.iter().map(to_module).collect();
        let tests = cfg.policies.tests.iter().map(to_module).collect();
        (modules, tests, cfg.policies.data)
    } else {
        read_rego_dir(&args.dir)?
    };
    if tests.is_empty() {
        eprintln!("{}: no *_test.rego files found", args.dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let results = match run_tests(&modules, &tests, &data) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("{}", error.summary());
            return Ok(ExitCode::from(1));
        }
    };
    let mut failed = 0usize;
    let mut module = String::new();
    for result in &results {
        let (word, detail) = match &result.status {
            TestStatus::Pass => ("PASS", String::new()),
            TestStatus::Fail => ("FAIL", String::new()),
            TestStatus::Error(message) => ("ERROR", format!("\n    {message}")),
        };
        if result.status != TestStatus::Pass {
            failed += 1;
        } else if args.quiet {
            continue;
        }
        if result.module != module {
            module.clone_from(&result.module);
            println!("{module}:");
        }
        println!(
            "{}: {word} ({:.1}ms){detail}",
            result.rule,
            result.duration.as_secs_f64() * 1000.0
        );
    }
    println!("{}", "-".repeat(80));
    if failed == 0 {
        println!("PASS: {}/{}", results.len(), results.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("PASS: {}/{}", results.len() - failed, results.len());
        println!("FAIL: {failed}/{}", results.len());
        Ok(ExitCode::from(1))
    }
}

/// The policies of a bare directory (no `warden.yaml`): `*.rego` under `dir` and its data
/// document (`data.json` or `data.yaml` in `dir`, else in `dir/policies`), read by the
/// same reader as `config::load`. Warnings are printed; any error fails.
fn read_rego_dir(
    dir: &Path,
) -> anyhow::Result<(Vec<PolicyModule>, Vec<PolicyModule>, serde_json::Value)> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let has_data = |d: &Path| d.join("data.json").is_file() || d.join("data.yaml").is_file();
    let nested = dir.join(POLICIES_DIR);
    let data_dir = if !has_data(dir) && has_data(&nested) {
        nested.as_path()
    } else {
        dir
    };
    let found = warden::config::read_policy_dir(dir, dir, data_dir);
    if found.diagnostics.0.iter().any(|d| !d.is_warning()) {
        bail!("{}", found.diagnostics);
    }
    if !found.diagnostics.0.is_empty() {
        eprintln!("{}", found.diagnostics);
    }
    let to_module = |f: warden::config::RegoFile| PolicyModule {
        name: f.name,
        source: f.source,
    };
    Ok((
        found.modules.into_iter().map(to_module).collect(),
        found.tests.into_iter().map(to_module).collect(),
        found.data,
    ))
}

fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::common::load_config(&args.config)?;
    let workload = find_workload(&cfg, &args.workload, &args.config)?;
    let peer = match &args.source {
        Some(text) => {
            let id: SpiffeId = text
                .parse()
                .with_context(|| format!("--source {text:?} is not a SPIFFE ID"))?;
            Peer::Verified(id)
        }
        None => Peer::None,
    };
    let mut headers = vec![
        (":method".to_string(), args.method.clone()),
        (":path".to_string(), args.path.clone()),
        (
            ":authority".to_string(),
            args.host.clone().unwrap_or_else(|| workload.name.clone()),
        ),
        (":scheme".to_string(), "https".to_string()),
    ];
    for header in &args.headers {
        let Some((name, value)) = header.split_once('=') else {
            bail!("--header {header:?} must be name=value");
        };
        headers.push((name.trim().to_ascii_lowercase(), value.to_string()));
    }
    let request = RequestAttributes::from_headers(peer, headers);
    let (plugin, policy) = warden::policy::compile_for(&cfg, workload)
        .map_err(|e| anyhow::anyhow!("the policy does not compile: {}", e.summary()))?;
    let input = policy.input_for(&request);
    let result = policy.evaluate(input.clone());
    let verdict = authorize(&policy, &request, DecisionIds::new(0).next_id());
    let allowed = verdict.decision.is_allow();
    let reason = verdict.reason_text(&policy, &request);
    let action = verdict.action(&policy, &request);
    if args.json {
        let to_json = |v: &Value| to_json(v).unwrap_or(serde_json::Value::Null);
        let (status, filter) = match &action {
            Action::Continue { .. } => (None, "continue"),
            Action::Respond { status, .. } => (Some(*status), "respond"),
        };
        let out = serde_json::json!({
            "decision": if allowed { "allow" } else { "deny" },
            "reason": reason,
            "filter_action": filter,
            "status": status,
            "result": result.as_ref().map_or(serde_json::Value::Null, to_json),
            "result_defined": matches!(&result, Ok(v) if *v != Value::Undefined),
            "error": result.as_ref().err().map(|e| e.summary()),
            "input": to_json(&input),
            "policy_version": plugin.policy_version,
        });
        println!("{out}");
    } else {
        let peer = request
            .peer
            .principal()
            .unwrap_or("none (no verified mTLS peer)");
        println!(
            "{} {} {} -> {} (peer {peer})",
            if allowed { "ALLOW" } else { "DENY" },
            args.method,
            args.path,
            workload.name
        );
        match &verdict.decision {
            Decision::Allow { .. } => println!(
                "  why: {} is true for this input (policy version {})",
                plugin.entrypoint, plugin.policy_version
            ),
            Decision::Deny { .. } => println!("  why: {}", reason.unwrap_or_default()),
        }
        match &action {
            Action::Continue { set_headers } => {
                if !allowed {
                    println!("  dry-run mode: the filter would let this request through");
                }
                for (name, value) in set_headers {
                    match value {
                        Some(v) => println!("  sets request header {name}: {v}"),
                        None => println!("  removes request header {name}"),
                    }
                }
            }
            Action::Respond { status, .. } => println!("  the filter answers {status}"),
        }
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "package authz\n\nimport rego.v1\n\nallow if input.user in data.admins\n";
    const TEST: &str = "package authz_test\n\nimport rego.v1\n\n\
        test_admin_from_data if data.authz.allow with input as {\"user\": \"ada\"}\n\n\
        test_others_refused if not data.authz.allow with input as {\"user\": \"eve\"}\n";

    fn policy_dir(data_file: &str, data: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("authz.rego"), POLICY).unwrap();
        std::fs::write(dir.path().join("authz_test.rego"), TEST).unwrap();
        std::fs::write(dir.path().join(data_file), data).unwrap();
        dir
    }

    #[test]
    fn policy_test_on_a_bare_directory_sees_data_yaml() {
        let dir = policy_dir("data.yaml", "admins:\n  - ada\n");
        let (modules, tests, data) = read_rego_dir(dir.path()).unwrap();
        assert_eq!(data, serde_json::json!({"admins": ["ada"]}));
        let results = run_tests(&modules, &tests, &data).unwrap();
        assert_eq!(results.len(), 2);
        assert!(
            results.iter().all(|r| r.status == TestStatus::Pass),
            "{results:?}"
        );
    }

    #[test]
    fn policy_test_reads_data_json_and_reports_bad_data_with_its_position() {
        let dir = policy_dir("data.json", "{\"admins\": [\"ada\"]}");
        assert_eq!(
            read_rego_dir(dir.path()).unwrap().2,
            serde_json::json!({"admins": ["ada"]})
        );
        let bad = policy_dir("data.yaml", "admins: [ada\n");
        let err = read_rego_dir(bad.path()).unwrap_err().to_string();
        assert!(err.contains("data.yaml"), "{err}");
    }
}
