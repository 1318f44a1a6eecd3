//! `warden policy test|eval` (owned by the filter work; placeholder until it lands).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run `test_*` rules in `*_test.rego` files.
    Test {},
}

pub(crate) fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden policy` is not built yet")
}
