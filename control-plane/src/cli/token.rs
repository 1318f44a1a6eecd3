//! `warden token create|list|revoke`: join tokens for sidecar attestation. The token is
//! printed once; the config directory keeps only its SHA-256 in `tokens.yaml` (commit it,
//! and every replica reading the repo accepts the token after its next reload).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::common::load_config;
use warden::attest;
use warden::config::{duration, tokens_file};

/// `warden token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create a join token for a workload's sidecar and print it (once).
    Create {
        /// The config directory.
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// The workload the token proves.
        #[arg(long, value_name = "NAME")]
        workload: String,
        /// Lifetime, e.g. 1h or 30d.
        #[arg(long, default_value = "24h", value_parser = duration::parse_ttl)]
        ttl: Duration,
        /// Write the token to this file (mode 0600, no trailing newline: Envoy sends the
        /// file's bytes verbatim, and a newline makes the xDS call fail) instead of
        /// printing it.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// List join tokens (ids, workloads, expiry, revoked); never the tokens themselves.
    List {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
    },
    /// Revoke a join token by id.
    Revoke {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// The token id (the middle part of `wdn.<id>.<secret>`).
        id: String,
    },
}

pub(crate) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create {
            config,
            workload,
            ttl,
            out,
        } => {
            let cfg = load_config(&config)?;
            if cfg.workload(&workload).is_none() {
                let names: Vec<&str> = cfg.workloads.iter().map(|w| w.name.as_str()).collect();
                eprintln!(
                    "error: no workload `{workload}` (known: {})",
                    names.join(", ")
                );
                return Ok(ExitCode::from(1));
            }
            // A fresh random id on the (1 in 2^32) chance that the id is taken.
            let mut tries = 0;
            let token = loop {
                let token = attest::generate_token();
                let record = tokens_file::NewRecord {
                    id: &token.id,
                    workload: &workload,
                    sha256_hex: &token.sha256_hex,
                    expires: duration::after(SystemTime::now(), ttl),
                };
                match tokens_file::add(&config, &record) {
                    Err(tokens_file::TokensFileError::IdTaken(_)) if tries < 3 => tries += 1,
                    Err(e) => return Err(e.into()),
                    Ok(()) => break token,
                }
            };
            match &out {
                Some(path) => warden::fsutil::write_atomic(path, token.token.as_bytes(), 0o600)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
                None => println!("{}", token.token.as_str()),
            }
            eprintln!(
                "token {} for workload `{workload}`, valid {}; only its hash is in {}/tokens.yaml — this is the only time it is shown",
                token.id,
                duration::format(ttl),
                config.display()
            );
        }
        Command::List { config } => {
            let cfg = load_config(&config)?;
            println!(
                "{:<10} {:<16} {:<26} status",
                "id", "workload", "expires (UTC)"
            );
            let now = SystemTime::now();
            for t in &cfg.tokens {
                let status = if t.revoked {
                    "revoked"
                } else if t.expires <= now {
                    "expired"
                } else {
                    "valid"
                };
                let expires = time::OffsetDateTime::from(t.expires);
                println!(
                    "{:<10} {:<16} {:<26} {status}",
                    t.id,
                    t.workload,
                    expires.to_string()
                );
            }
        }
        Command::Revoke { config, id } => {
            tokens_file::revoke(&config, &id)?;
            println!("revoked token {id}; `warden serve` refuses it after its next reload");
        }
    }
    Ok(ExitCode::SUCCESS)
}
