//! The `warden` binary as the tests use it: `warden serve` as a process with its admin
//! endpoint (`/readyz`, `/metrics`, `/config_dump`), and one-shot CLI calls such as
//! `warden bootstrap`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::http::{self, Response};
use crate::process::{Process, ProcessSpec};
use crate::{locate, wait};

/// How long `warden serve` may take to become ready (CA init and first snapshot).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `warden serve`.
#[derive(Debug)]
pub struct Warden {
    process: Process,
    admin: SocketAddr,
}

impl Warden {
    /// Starts `warden serve --config <dir>`; `admin` must be the config's `admin_listen`.
    pub fn serve(
        config_dir: &Path,
        admin: SocketAddr,
        log_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        Self::serve_as("warden", config_dir, admin, log_dir, env)
    }

    /// Like [`Warden::serve`], logging to `<log_dir>/<name>.log` (a restarted server
    /// gets its own log).
    pub fn serve_as(
        name: &str,
        config_dir: &Path,
        admin: SocketAddr,
        log_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        let mut spec = ProcessSpec::new(name, locate::warden()?)
            .args([
                "serve".to_owned(),
                "--config".to_owned(),
                config_dir.display().to_string(),
            ])
            .env(
                "WARDEN_LOG",
                std::env::var("WARDEN_E2E_LOG").unwrap_or_else(|_| "info,warden=debug".to_owned()),
            )
            .env("NO_COLOR", "1");
        spec.env.extend(env.iter().cloned());
        Ok(Self {
            process: Process::spawn(&spec, log_dir)?,
            admin,
        })
    }

    /// The process (PID, log, signals).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let admin = self.admin;
        let process = &mut self.process;
        wait::until_true("warden /readyz", timeout, || {
            process.ensure_running()?;
            Ok(http::get(admin, "/readyz")
                .map(|r| r.status == 200)
                .unwrap_or(false))
        })
    }

    /// SIGKILLs the server (no shutdown path runs) and waits until it has exited.
    pub fn kill(&mut self) -> Result<()> {
        self.process.signal("KILL")?;
        let process = &mut self.process;
        wait::until_true(
            "warden to exit after SIGKILL",
            Duration::from_secs(10),
            || Ok(process.ensure_running().is_err()),
        )?;
        // Close the watchdog pipe now, while the dead PID cannot have been reused yet.
        self.process.stop();
        Ok(())
    }

    /// Asks the server to reload its config directory (SIGHUP to its PID).
    pub fn reload(&self) -> Result<()> {
        self.process.signal("HUP")
    }

    /// `GET` on the admin endpoint; fails on a non-200 status.
    pub fn admin_get(&self, path: &str) -> Result<Response> {
        let response = http::get(self.admin, path)?;
        if response.status != 200 {
            bail!(
                "warden admin {path}: status {} {}",
                response.status,
                response.text()
            );
        }
        Ok(response)
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> Result<String> {
        Ok(self.admin_get("/metrics")?.text())
    }

    /// Sum of every sample of metric `name` whose labels include all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(sum_metric(&self.metrics()?, name, labels))
    }

    /// `/config_dump` as JSON.
    pub fn config_dump(&self) -> Result<serde_json::Value> {
        self.admin_get("/config_dump")?.json()
    }
}

/// Sums the samples of `name` (Prometheus text format) that carry all `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Runs `warden <args>` to completion; fails with its stderr on a non-zero exit.
pub fn cli(args: &[&str], env: &[(String, String)]) -> Result<String> {
    let output = Command::new(locate::warden()?)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .context("running warden")?;
    if !output.status.success() {
        bail!(
            "warden {} exited with {}:\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    #[test]
    fn metric_samples_are_summed_by_label_subset() {
        let text = "# HELP x\nwarden_nacks_total{type=\"lds\",node=\"a\"} 2\n\
                    warden_nacks_total{type=\"cds\",node=\"a\"} 1\nwarden_nacks_total{type=\"lds\",node=\"b\"} 3\n";
        assert_eq!(
            sum_metric(text, "warden_nacks_total", &[("type", "lds")]),
            5.0
        );
        assert_eq!(sum_metric(text, "warden_nacks_total", &[]), 6.0);
        assert_eq!(sum_metric(text, "warden_acks_total", &[]), 0.0);
    }
}
