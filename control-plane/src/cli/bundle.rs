//! `warden bundle`: print the trust bundle, as PEM or in the SPIFFE bundle format (JWKS).

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{load_authority_bundle, load_config};

/// Output format of `warden bundle`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    /// Concatenated PEM certificates (for Envoy, openssl, curl --cacert).
    Pem,
    /// SPIFFE bundle format: JWKS with `use: x509-svid` keys (same as `spiffe`).
    Jwks,
    /// SPIFFE bundle format (for out-of-band exchange: a peer's `bundle_file`).
    Spiffe,
}

/// Arguments of `warden bundle`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config directory.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    #[arg(long, value_enum, default_value = "pem")]
    format: Format,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&args.config)?;
    let bundle = load_authority_bundle(&cfg)?;
    match args.format {
        Format::Pem => print!("{}", bundle.to_pem()),
        Format::Jwks | Format::Spiffe => println!("{}", bundle.to_jwks_json()),
    }
    Ok(ExitCode::SUCCESS)
}
