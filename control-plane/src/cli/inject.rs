//! `warden inject -f FILE|-`: the Kubernetes manifests with the Warden sidecar added to
//! every pod template (`warden::inject`), on stdout. Exit 1 with the reason when a
//! manifest cannot be injected (nothing is printed then).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use warden::config;
use warden::inject::{inject, Options, MAX_INPUT};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Config directory (the one the control plane serves).
    #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// Manifests to inject (`-`: stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// The control plane's xDS Service as `host:port`.
    #[arg(long, value_name = "HOST:PORT")]
    xds_address: Option<String>,
    /// The sidecar's Envoy image.
    #[arg(long, value_name = "IMAGE")]
    envoy_image: Option<String>,
    /// The warden image (holds the filter modules the sidecar loads).
    #[arg(long, value_name = "IMAGE")]
    warden_image: Option<String>,
    /// Namespace of manifests that name none.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    namespace: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::from(1));
        }
    };
    let input = read_bounded(&args.file)?;
    let defaults = Options::default();
    let opts = Options {
        xds_address: args.xds_address.unwrap_or(defaults.xds_address),
        envoy_image: args.envoy_image.unwrap_or(defaults.envoy_image),
        warden_image: args.warden_image.unwrap_or(defaults.warden_image),
        default_namespace: args.namespace.unwrap_or(defaults.default_namespace),
    };
    match inject(&input, &cfg, &opts) {
        Ok(out) => {
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// The input, refused past [`MAX_INPUT`] bytes (read at most one byte more).
fn read_bounded(file: &std::path::Path) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let limit = MAX_INPUT as u64 + 1;
    if file.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut buf)?;
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("cannot open {}", file.display()))?
            .take(limit)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    if buf.len() > MAX_INPUT {
        anyhow::bail!("{} is larger than {MAX_INPUT} bytes", file.display());
    }
    String::from_utf8(buf).with_context(|| format!("{} is not UTF-8", file.display()))
}
