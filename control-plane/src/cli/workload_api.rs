//! `warden workload-api --config DIR`: run only the SPIFFE Workload API (the socket and
//! selectors come from `workload-api.yaml` in the config directory) until Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::common::{load_config, open_ca};
use crate::workload_api::{self, Settings, WorkloadApiError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config directory (with warden.yaml and workload-api.yaml).
    #[arg(long, default_value = ".")]
    config: PathBuf,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&args.config)?;
    if Settings::load(&cfg)?.is_none() {
        return Err(WorkloadApiError::NotConfigured(cfg.dir.clone()).into());
    }
    let ca = Arc::new(open_ca(&cfg)?);
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(workload_api::run_workload_api(&cfg, ca, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
