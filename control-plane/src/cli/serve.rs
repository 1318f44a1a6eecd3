//! `warden serve` (owned by the xDS work; placeholder until it lands).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden serve` is not built yet")
}
