//! `warden ca status|prepare|activate|retire`: the CA's rotation, through the running
//! control plane's admin endpoint (`server.admin_listen` of the config, or `--admin`).
//!
//! `status` also works without a running control plane: with `--offline`, or by itself
//! when the admin endpoint is unreachable (it says so), it reads the state directory
//! (never creating anything). The steps need the running control plane: it alone knows
//! which Envoys have ACKed the bundle. Exit codes: 0 done, 1 refused or failed, 2 usage
//! or I/O error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use serde_json::Value;

use super::common::load_config;
use warden::identity::{Authority, CaStatus, SystemClock};

/// Where to find the control plane.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// Config directory (its `server.admin_listen` is the default admin address, its
    /// `ca.state_dir` is read offline).
    #[arg(long, env = "WARDEN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// Admin address of the running control plane (default: from the config).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Print the JSON answer instead of words.
    #[arg(long)]
    json: bool,
}

/// `warden ca` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Explain the CA's state: current, next and retired CAs, what happens next and when.
    Status {
        #[command(flatten)]
        target: Target,
        /// Read the state directory instead of asking the running control plane.
        #[arg(long)]
        offline: bool,
    },
    /// Create the next CA and publish it in the trust bundle (it does not sign yet).
    Prepare {
        #[command(flatten)]
        target: Target,
    },
    /// Let the next CA sign (refused until every connected Envoy has ACKed its bundle).
    Activate {
        #[command(flatten)]
        target: Target,
    },
    /// Drop retired CAs whose SVIDs have all expired from the trust bundle.
    Retire {
        #[command(flatten)]
        target: Target,
        /// Drop them even while SVIDs they signed are valid. BREAKS workloads still
        /// holding such SVIDs (their peers stop trusting them) until they are re-minted.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Status { target, offline } => status(&target, offline),
        Command::Prepare { target } => step(&target, "/ca/prepare"),
        Command::Activate { target } => step(&target, "/ca/activate"),
        Command::Retire { target, force } => step(
            &target,
            if force {
                "/ca/retire?force=true"
            } else {
                "/ca/retire"
            },
        ),
    }
}

fn admin_addr(t: &Target) -> anyhow::Result<SocketAddr> {
    match t.admin {
        Some(a) => Ok(a),
        None => Ok(load_config(&t.config)?.server.admin_listen),
    }
}

fn print_status(status: &CaStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
    } else {
        println!("{}", status.summary());
    }
    Ok(())
}

fn status(t: &Target, offline: bool) -> anyhow::Result<ExitCode> {
    if !offline {
        let addr = admin_addr(t)?;
        match http(addr, "GET", "/ca/status") {
            Ok((200, body)) => {
                let st: CaStatus = serde_json::from_str(&body)
                    .with_context(|| format!("unexpected answer from {addr}/ca/status"))?;
                print_status(&st, t.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            Ok((code, body)) => bail!("{addr}/ca/status answered {code}: {body}"),
            Err(e) => eprintln!(
                "note: the control plane's admin endpoint at {addr} is not reachable ({e}); reading the state directory offline (node ACKs unknown)"
            ),
        }
    }
    let cfg = load_config(&t.config)?;
    let dir = cfg.ca.state_dir.display().to_string();
    let Some(a) = Authority::load_existing(&cfg.ca_params(), &SystemClock)
        .with_context(|| format!("cannot read the CA state in {dir}"))?
    else {
        eprintln!("no CA in {dir} yet; `warden serve` creates one at start");
        return Ok(ExitCode::from(1));
    };
    print_status(&CaStatus::of(&a, SystemTime::now(), None), t.json)?;
    Ok(ExitCode::SUCCESS)
}

fn step(t: &Target, path: &str) -> anyhow::Result<ExitCode> {
    let addr = admin_addr(t)?;
    let (code, body) = http(addr, "POST", path).with_context(|| {
        format!("cannot reach the control plane's admin endpoint at {addr}; CA steps need a running `warden serve` (it knows which Envoys have ACKed the bundle)")
    })?;
    let v: Value = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer ({code}) from {addr}{path}: {body}"))?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    let status: Option<CaStatus> = serde_json::from_value(v["status"].clone()).ok();
    match code {
        200 => {
            if !t.json {
                println!("done: {}", v["step"].as_str().unwrap_or("step"));
                if let Some(s) = status {
                    println!("{}", s.summary());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        409 => {
            eprintln!(
                "refused: {}",
                v["refused"].as_str().unwrap_or("(no reason)")
            );
            Ok(ExitCode::from(1))
        }
        _ => {
            eprintln!("failed: {}", v["error"].as_str().unwrap_or(&body));
            Ok(ExitCode::from(1))
        }
    }
}

/// A minimal HTTP/1.1 exchange with the loopback admin endpoint: status code and body.
fn http(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let timeout = Duration::from_secs(30);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let code: u16 = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("short chunk")?);
        body = rest.get(n + 2..).unwrap_or("");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            "abcde"
        );
    }
}
