//! An Envoy sidecar process and its admin API (`/ready`, `/config_dump`, `/stats`,
//! `/certs`). Started with one worker and hot restart off, so several Envoys share the
//! machine without shared-memory clashes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::http::{self, Response};
use crate::process::{Process, ProcessSpec};
use crate::{locate, wait};

/// How long an Envoy may take to report ready (V8 compiling the filter takes seconds
/// on a loaded 2-core machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running Envoy.
#[derive(Debug)]
pub struct Envoy {
    process: Process,
    admin: SocketAddr,
}

impl Envoy {
    /// Starts Envoy on `bootstrap` (YAML file) whose admin listens on `admin`.
    pub fn start(name: &str, bootstrap: &Path, admin: SocketAddr, log_dir: &Path) -> Result<Self> {
        let level = std::env::var("WARDEN_E2E_ENVOY_LOG").unwrap_or_else(|_| "info".to_owned());
        let spec = ProcessSpec::new(name, locate::envoy()?).args([
            "-c".to_owned(),
            bootstrap.display().to_string(),
            "--concurrency".to_owned(),
            "1".to_owned(),
            "--disable-hot-restart".to_owned(),
            "--log-level".to_owned(),
            level,
            "--drain-time-s".to_owned(),
            "1".to_owned(),
        ]);
        Ok(Self {
            process: Process::spawn(&spec, log_dir)?,
            admin,
        })
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The process (PID, log).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Waits until `/ready` answers 200 (server LIVE: initial xDS fetched, listeners warm).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let admin = self.admin;
        let process = &mut self.process;
        wait::until_true(&format!("{} /ready", process.name()), timeout, || {
            process.ensure_running()?;
            Ok(http::get(admin, "/ready")
                .map(|r| r.status == 200)
                .unwrap_or(false))
        })
    }

    /// `GET` on the admin API; fails on a non-200 status.
    pub fn admin_get(&self, path: &str) -> Result<Response> {
        let response = http::get(self.admin, path)?;
        if response.status != 200 {
            bail!(
                "envoy admin {path}: status {} {}",
                response.status,
                response.text()
            );
        }
        Ok(response)
    }

    /// `/config_dump` as JSON (with EDS).
    pub fn config_dump(&self) -> Result<serde_json::Value> {
        self.admin_get("/config_dump?include_eds")?.json()
    }

    /// One section of `/config_dump` (a repeated field such as `dynamic_listeners`) as JSON.
    pub fn config_dump_resource(&self, resource: &str) -> Result<serde_json::Value> {
        self.admin_get(&format!("/config_dump?resource={}", encode(resource)))?
            .json()
    }

    /// `/certs` as JSON.
    pub fn certs(&self) -> Result<serde_json::Value> {
        self.admin_get("/certs")?.json()
    }

    /// Stats whose name matches the regex `filter`, as name → value text.
    pub fn stats(&self, filter: &str) -> Result<BTreeMap<String, String>> {
        let text = self
            .admin_get(&format!("/stats?filter={}", encode(filter)))?
            .text();
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// The value of one counter or gauge (0 when Envoy has not created it yet).
    pub fn stat(&self, name: &str) -> Result<u64> {
        let stats = self.stats(&format!("^{}$", regex_escape(name)))?;
        match stats.get(name) {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse()
                .with_context(|| format!("stat {name} = {v:?} is not a number")),
        }
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if ".^$*+?()[]{}|\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
