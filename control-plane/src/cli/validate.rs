//! `warden validate DIR`: check a config directory and print every problem as
//! `file:line:col: error: message` with a hint. Exit 0 when valid, 1 when not.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `warden validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config directory (holds warden.yaml, workloads/, policies/).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = warden::config::load(&args.dir).and_then(|cfg| {
        // workload-api.yaml is optional; when present it must be valid too.
        match warden::workload_api::Settings::load(&cfg) {
            Ok(_) => {}
            Err(e) => return Err(e.into_diagnostics()),
        }
        // So is federation.yaml.
        match warden::config::federation::FederationSettings::load(&cfg) {
            Ok(_) => Ok(cfg),
            Err(e) => Err(e.into_diagnostics()),
        }
    });
    match loaded {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            unfederated_upstreams(&cfg, &args.dir);
            // Every sidecar's responses must fit in one ADS message (the module paths do
            // not change sizes, placeholders do).
            let modules = warden::xds::resources::FilterModules::from("/warden_filter.wasm");
            let limit = warden::xds::limits::ADS_MESSAGE_LIMIT;
            let over = warden::xds::limits::check_config(&cfg, &modules, limit)?;
            if !over.is_empty() {
                for (workload, o) in &over {
                    eprintln!("{}: error: workload `{workload}`: {o}", args.dir.display());
                }
                eprintln!(
                    "{}: {} sidecar(s) would be sent a response over the ADS message limit ({limit} bytes); `warden serve` refuses to publish them",
                    args.dir.display(),
                    over.len()
                );
                return Ok(ExitCode::from(1));
            }
            println!(
                "{}: valid — trust domain {}, {} workloads, {} policy modules, {} policy test files",
                args.dir.display(),
                cfg.trust_domain,
                cfg.workloads.len(),
                cfg.policies.modules.len(),
                cfg.policies.tests.len()
            );
            let mut native = 0;
            for w in &cfg.workloads {
                let path = warden::rbac::path_for(&cfg, w);
                native += usize::from(matches!(path, warden::rbac::AuthzPath::Native(_)));
                println!(
                    "  workload `{}`: authorization on {}",
                    w.name,
                    path.describe()
                );
            }
            if native > 0 && cfg.policy.expose_reason {
                println!(
                    "  note: policy.expose_reason does not reach callers of the {native} workload(s) on native RBAC (Envoy's RBAC filter knows only that no rule allowed); set `policy.native_rbac: off` to keep reasons"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{}: {} problem(s) found", args.dir.display(), diags.0.len());
            Ok(ExitCode::from(1))
        }
    }
}

/// Warns about upstreams in a trust domain `federation.yaml` does not federate with:
/// their handshakes would fail (the sidecar has no CA of that trust domain).
fn unfederated_upstreams(cfg: &warden::config::Config, dir: &std::path::Path) {
    let federated: Vec<String> = warden::config::federation::FederationSettings::load(cfg)
        .ok()
        .flatten()
        .map(|s| {
            s.relationships
                .iter()
                .map(|r| r.trust_domain.to_string())
                .collect()
        })
        .unwrap_or_default();
    for w in &cfg.workloads {
        for up in &w.upstreams {
            let Some(f) = &up.foreign else { continue };
            let td = f.spiffe_id.trust_domain().to_string();
            if td != cfg.trust_domain.to_string() && !federated.contains(&td) {
                eprintln!(
                    "{}: warning: workload `{}` calls `{}` in trust domain `{td}`, which federation.yaml does not federate with; its handshakes will fail\n  hint: add `{td}` under trust_domains in federation.yaml",
                    dir.display(),
                    w.name,
                    f.spiffe_id
                );
            }
        }
    }
}
