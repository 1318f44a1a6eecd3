//! `warden ca status|prepare|activate|retire`: the CA's rotation, through the running
//! control plane's admin endpoint (`server.admin_listen` of the config, or `--admin`).
//!
//! `status` also works without a running control plane: with `--offline`, or by itself
//! when the admin endpoint is unreachable (it says so), it reads the state directory
//! (never creating anything). The steps need the running control plane: it alone knows
//! which Envoys have ACKed the bundle. Exit codes: 0 done, 1 refused or failed, 2 usage
//! or I/O error.
//!
//! The steps send the operator token (`--admin-token-file`, or `WARDEN_ADMIN_TOKEN`) when
//! the control plane has `server.admin_token_file`. For an in-cluster control plane:
//! `kubectl -n warden-system port-forward deploy/warden 18001:18001`, then
//! `warden ca prepare --admin 127.0.0.1:18001 --admin-token-file token`.

use std::net::SocketAddr;
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
    /// File with the operator token the control plane's `server.admin_token_file` holds
    /// (sent as `authorization: Bearer`; needed for prepare/activate/retire then).
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// The operator token itself (prefer the file: environment values leak into `ps e`).
    #[arg(
        long,
        env = "WARDEN_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
}

impl Target {
    /// The operator token to send, if any.
    fn bearer(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = &self.admin_token_file {
            let t = warden::admin::auth::read_token(f)?;
            return Ok(Some(t));
        }
        Ok(self
            .admin_token
            .as_deref()
            .map(str::trim)
            .map(str::to_owned))
    }
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
        match http(addr, "GET", "/ca/status", None) {
            Ok((200, body)) => {
                let st: CaStatus = serde_json::from_str(&body)
                    .with_context(|| format!("unexpected answer from {addr}/ca/status"))?;
                print_status(&st, t.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            Ok((code, body)) => bail!("{addr}/ca/status answered {code}: {body}"),
            Err(e) => eprintln!(
                "note: the control plane's admin endpoint at {addr} is not reachable ({e:#}); reading the state directory offline (node ACKs unknown)"
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
    let bearer = t.bearer()?;
    let (code, body) = http(addr, "POST", path, bearer.as_deref()).with_context(|| {
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
        401 | 503 => {
            eprintln!(
                "not authorized: {} (the control plane's server.admin_token_file; pass --admin-token-file)",
                v["error"].as_str().unwrap_or(&body)
            );
            Ok(ExitCode::from(1))
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

/// How long the admin endpoint may take to accept the connection, and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a CA status is a few KiB).
const MAX_BODY: usize = 4 << 20;

/// One request to the admin endpoint: status code and body (`warden::http_client`).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    exchange(
        addr,
        (method, path, bearer),
        CONNECT_TIMEOUT,
        ANSWER_TIMEOUT,
    )
}

fn exchange(
    addr: SocketAddr,
    (method, path, bearer): (&str, &str, Option<&str>),
    connect: Duration,
    answer: Duration,
) -> anyhow::Result<(u16, String)> {
    let limits = warden::http_client::Limits {
        connect,
        answer,
        max_body: MAX_BODY,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, body) = runtime.block_on(warden::http_client::request_as(
        addr, method, path, bearer, limits,
    ))?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Serves one connection: reads the request head, then writes `answer` (if any) and
    /// holds the connection open for `hold`.
    fn serve_once(answer: Option<&'static str>, hold: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            if let Some(a) = answer {
                let _ = s.write_all(a.as_bytes());
            }
            std::thread::sleep(hold);
        });
        addr
    }

    #[test]
    fn steps_send_the_operator_token_from_the_file_and_status_sends_none() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let body = r#"{"ok":true,"step":"prepare"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(answer.as_bytes()).unwrap();
                heads.push(String::from_utf8_lossy(&head).to_lowercase());
            }
            heads
        });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "operator-token-0123456789\n").unwrap();
        let target = Target {
            config: dir.path().to_path_buf(),
            admin: Some(addr),
            json: false,
            admin_token_file: Some(file),
            admin_token: None,
        };
        assert_eq!(step(&target, "/ca/prepare").unwrap(), ExitCode::SUCCESS);
        http(addr, "GET", "/ca/status", None).unwrap();
        let heads = heads.join().unwrap();
        assert!(
            heads[0].contains("authorization: bearer operator-token-0123456789\r\n"),
            "{}",
            heads[0]
        );
        assert!(!heads[1].contains("authorization"), "{}", heads[1]);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let addr = serve_once(
            Some("HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            Duration::ZERO,
        );
        assert_eq!(
            http(addr, "POST", "/ca/activate", None).unwrap(),
            (409, "abcde".to_string())
        );
    }

    #[test]
    fn a_peer_that_never_answers_or_speaks_no_http_is_an_error_not_a_hang() {
        let silent = serve_once(None, Duration::from_secs(5));
        let start = std::time::Instant::now();
        let err = exchange(
            silent,
            ("GET", "/ca/status", None),
            CONNECT_TIMEOUT,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err:#}");
        assert!(start.elapsed() < Duration::from_secs(3));
        let garbage = serve_once(Some("SSH-2.0-OpenSSH\r\n\r\n"), Duration::ZERO);
        assert!(http(garbage, "GET", "/ca/status", None).is_err());
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(http(closed, "GET", "/ca/status", None).is_err());
    }

    #[test]
    fn an_answer_over_the_size_limit_is_refused() {
        let huge: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
                MAX_BODY + 1,
                "a".repeat(MAX_BODY + 1)
            )
            .into_boxed_str(),
        );
        let addr = serve_once(Some(huge), Duration::ZERO);
        let err = http(addr, "GET", "/ca/status", None).unwrap_err();
        assert!(err.to_string().contains("reading the answer"), "{err:#}");
    }
}
