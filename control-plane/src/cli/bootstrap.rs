//! `warden bootstrap`: prints the stock-Envoy bootstrap (YAML) for one workload's
//! sidecar. Start Envoy with it: `envoy -c <file>` (no other flags needed).
//!
//! By default the bootstrap is attested: TLS to `warden serve`, verifying its
//! certificate against the trust bundle (inlined from the CA state, or `--ca-file`), and
//! the workload's credential read from `--token-file` for every new stream.
//! `--insecure-plaintext` renders the local-development channel instead (pair it with
//! `warden serve --insecure-plaintext-xds`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::load_authority_bundle;
use warden::config;
use warden::xds::bootstrap::{
    render_node, AdsFlavor, Channel, NodeOptions, RootCerts, DEFAULT_TOKEN_FILE,
};
use warden::xds::replica_set::XdsServers;

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
    /// The file the sidecar reads its credential from (a join token from `warden token
    /// create`, or a Kubernetes projected service-account token with audience `warden`).
    /// Read again at every new xDS stream.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_TOKEN_FILE)]
    token_file: PathBuf,
    /// PEM trust anchors for the control plane's certificate, referenced by path (read
    /// when Envoy starts). Default: the current trust bundle, inlined.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// INSECURE, local development only: plaintext xDS and no credential (needs
    /// `warden serve --insecure-plaintext-xds`).
    #[arg(long, conflicts_with_all = ["token_file", "ca_file"])]
    insecure_plaintext: bool,
    /// The control-plane replica set: `host:port[,host:port...]` (IP addresses, tried in
    /// order) or one DNS name `name:port` (each address a replica). Default:
    /// `server.xds_listen`. Several replicas need a shared `ca.upstream`.
    #[arg(long, value_name = "HOST:PORT,...", value_parser = XdsServers::parse)]
    xds_server: Option<XdsServers>,
    /// This sidecar's instance name (node.id; e.g. the pod name). Default: the
    /// workload's node id (its single default instance).
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// This instance's own IP address (node metadata INSTANCE_IP; needed when the
    /// workload's inbound addresses use `${INSTANCE_IP}`).
    #[arg(long, value_name = "IP")]
    instance_ip: Option<std::net::IpAddr>,
    /// The DNS server Envoy resolves `inbound.service` names with (default: the
    /// system's resolv.conf).
    #[arg(long, value_name = "IP:PORT")]
    dns_resolver: Option<std::net::SocketAddr>,
    /// The sidecar's admin address (default: `sidecar.admin`; set it when several
    /// instances share a host).
    #[arg(long, value_name = "IP:PORT")]
    admin: Option<std::net::SocketAddr>,
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
    if let Some(i) = args
        .instance
        .as_deref()
        .filter(|i| !warden::xds::node::is_instance_name(i))
    {
        eprintln!("error: --instance `{i}` is not an instance name: use 1-253 of `[a-z0-9.-]` (a pod name), starting and ending with a letter or digit");
        return Ok(ExitCode::from(1));
    }
    if workload.inbound.instance_ip.any() && args.instance_ip.is_none() {
        eprintln!("error: workload `{}` uses ${{INSTANCE_IP}} in its inbound addresses: pass --instance-ip (this instance's own address)", workload.name);
        return Ok(ExitCode::from(1));
    }
    let node = NodeOptions {
        instance: args.instance.clone(),
        instance_ip: args.instance_ip,
        dns_resolver: args.dns_resolver,
        admin: args.admin,
    };
    let flavor = if args.delta {
        AdsFlavor::Delta
    } else {
        AdsFlavor::Sotw
    };
    let channel = if args.insecure_plaintext {
        eprintln!("warning: --insecure-plaintext: this sidecar's xDS channel is unencrypted and unauthenticated (local development only)");
        Channel::InsecurePlaintext
    } else {
        let cwd = std::env::current_dir()?;
        let roots = match &args.ca_file {
            Some(p) => RootCerts::File(cwd.join(p)),
            None => RootCerts::Inline(load_authority_bundle(&cfg)?.to_pem()),
        };
        Channel::Attested {
            roots,
            token_file: cwd.join(&args.token_file),
        }
    };
    let servers = match args.xds_server {
        Some(s) => s,
        None => XdsServers::single(cfg.server.xds_listen),
    };
    if let Err(e) = servers.check_trust(cfg.ca.upstream.is_some()) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(1));
    }
    print!(
        "{}",
        render_node(&cfg, workload, flavor, &channel, &node, &servers)
    );
    Ok(ExitCode::SUCCESS)
}
