//! The `warden` command line. Each verb is one module with an `Args` struct and a `run`
//! function; this file only declares the verbs and dispatches to them.
//!
//! Exit codes: 0 success, 1 the command ran and found a problem (invalid config, failing
//! policy test, deny), 2 bad usage or an I/O error. Errors go to stderr in words a person
//! can act on.

mod audit;
mod bootstrap;
mod bundle;
mod ca;
mod common;
mod federation;
mod inject;
mod instances;
mod mint;
mod policy;
mod serve;
mod token;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Warden: SPIFFE identities, mTLS and Rego authorization for Envoy sidecars, from one
/// config directory.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config directory (YAML, SPIFFE IDs, ports, CA files, Rego) and print every
    /// problem as `file:line:col: message`. Exit 0 when valid. Meant for the config repo's CI.
    Validate(validate::Args),
    /// Mint an X.509-SVID for a SPIFFE ID into a directory (svid.pem, svid.key, bundle.pem).
    Mint(mint::Args),
    /// Print the trust bundle (PEM or SPIFFE JWKS bundle format).
    Bundle(bundle::Args),
    /// Run the control plane: xDS (ADS) server for Envoy sidecars plus the admin endpoint.
    Serve(serve::Args),
    /// Print a stock-Envoy bootstrap (YAML) for one workload's sidecar.
    Bootstrap(bootstrap::Args),
    /// Add the Warden sidecar to Kubernetes manifests (multi-document YAML) on stdout.
    Inject(inject::Args),
    /// Test and evaluate Rego policies with the same engine the Envoy filter runs.
    #[command(subcommand)]
    Policy(policy::Command),
    /// CA rotation: `status` explains the CA's state; `prepare`, `activate`, `retire` force
    /// a step (each refused with the reason when unsafe).
    #[command(subcommand)]
    Ca(ca::Command),
    /// The instances (sidecars) of each workload the running control plane serves.
    Instances(instances::Args),
    /// Create, list and revoke join tokens that sidecars use to prove who they are.
    #[command(subcommand)]
    Token(token::Command),
    /// SPIFFE federation: `status` shows each relationship's foreign bundle and refresh.
    #[command(subcommand)]
    Federation(federation::Command),
    /// The audit trail: list records (filters; table or JSON lines), `show` one decision's
    /// whole story, `verify` the hash chain.
    Audit(audit::Args),
}

/// Entry point used by `main.rs`.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Mint(args) => mint::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::Inject(args) => inject::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Federation(cmd) => federation::run(cmd),
        Command::Instances(args) => instances::run(args),
        Command::Audit(args) => audit::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
