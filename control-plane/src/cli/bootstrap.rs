//! `warden bootstrap`: prints the stock-Envoy bootstrap (YAML) for one workload's
//! sidecar. Start Envoy with it: `envoy -c <file>` (no other flags needed).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;
use crate::xds::bootstrap::{render, AdsFlavor};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Config directory (warden.yaml, workloads/, policies/).
    #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// Workload name (as in workloads/*.yaml).
    #[arg(long)]
    workload: String,
    /// Use incremental (delta) xDS instead of state-of-the-world.
    #[arg(long)]
    delta: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::from(1));
        }
    };
    let Some(workload) = cfg.workload(&args.workload) else {
        let known: Vec<&str> = cfg.workloads.iter().map(|w| w.name.as_str()).collect();
        eprintln!(
            "error: no workload named `{}` in {} (known: {})",
            args.workload,
            args.config.display(),
            known.join(", ")
        );
        return Ok(ExitCode::from(1));
    };
    let flavor = if args.delta {
        AdsFlavor::Delta
    } else {
        AdsFlavor::Sotw
    };
    print!("{}", render(&cfg, workload, flavor));
    Ok(ExitCode::SUCCESS)
}
