//! `warden mint`: mint one X.509-SVID into a directory, for workloads outside the mesh,
//! scripts and debugging. Writes `svid.pem` (leaf first, then intermediates), `svid.key`
//! (PKCS#8 PEM, mode 0600) and `bundle.pem`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::common::{load_config, open_authority};
use warden::config::duration;
use warden::identity::{SvidParams, SystemClock};

/// Arguments of `warden mint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config directory (its CA signs the SVID).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// The SPIFFE ID to certify, e.g. spiffe://example.org/ns/demo/sa/job.
    #[arg(long, value_name = "SPIFFE_ID")]
    id: String,
    /// Where to write svid.pem, svid.key and bundle.pem (created if missing).
    #[arg(long, value_name = "OUTDIR")]
    out: PathBuf,
    /// Lifetime, e.g. 10m or 1h, 10s to 3650d (default: the config's svid_ttl; never past
    /// the CA's end).
    #[arg(long, value_name = "TTL", value_parser = duration::parse_ttl)]
    ttl: Option<Duration>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&args.config)?;
    let id = match cfg.trust_domain.parse_workload(&args.id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: cannot mint for `{}`: {e}", args.id);
            eprintln!(
                "  hint: IDs look like {}/ns/<namespace>/sa/<name>",
                cfg.trust_domain.to_spiffe_id_string()
            );
            return Ok(ExitCode::from(1));
        }
    };
    // `--ttl` went through the same bounds as `ca.svid_ttl` (duration::parse_ttl).
    let ttl = args.ttl.unwrap_or(cfg.ca.svid_ttl);
    // Signs with the current CA; bundle.pem holds every CA in the bundle. Not recorded
    // as signing for retirement: `mint` is a development tool.
    let authority = open_authority(&cfg)?;
    let ca = authority.active();
    let svid = ca.mint(&SvidParams { id, ttl }, &SystemClock)?;
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    write_file(
        &args.out.join("svid.pem"),
        svid.cert_chain_pem.as_bytes(),
        0o644,
    )?;
    write_file(
        &args.out.join("svid.key"),
        svid.private_key_pem.as_bytes(),
        0o600,
    )?;
    write_file(
        &args.out.join("bundle.pem"),
        authority.bundle().to_pem().as_bytes(),
        0o644,
    )?;
    let expires = time::OffsetDateTime::from(svid.not_after);
    println!(
        "minted {} (serial {}, expires {expires}) into {}",
        svid.id,
        svid.serial_hex,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Write a file atomically (temp + rename) with the given mode.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    warden::fsutil::write_atomic(path, bytes, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}
