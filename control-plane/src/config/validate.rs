//! Semantic checks that turn the raw files into a typed [`Config`]: SPIFFE IDs parse and
//! sit in the trust domain, names and node ids are unique, upstreams exist, no two
//! listeners share an address, TTLs fit, CA files are readable and of the right type,
//! and the Rego compiles. Every problem is collected, each at its own line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::attestation::{attestation_settings, join_tokens};
use super::diag::{Diagnostic, Diagnostics};
use super::files::{Files, Parsed};
use super::raw::{RawCa, RawWarden};
use super::workloads::{cross_checks, workload};
use super::{
    duration, policy_check, CaSettings, Config, PolicyMode, PolicySettings, PolicySources,
    ServerSettings,
};
use crate::identity::{KeyType, TrustDomain, UpstreamCa};

/// Shortest SVID lifetime accepted. Production deployments use minutes to hours (SPIRE
/// defaults to 1h); lifetimes down to 10 s exist for rotation drills and tests.
pub(crate) const MIN_SVID_TTL: Duration = Duration::from_secs(10);

/// Collects diagnostics for one file.
pub(super) struct Ctx<'a, T> {
    pub(super) file: &'a Parsed<T>,
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

impl<T> Ctx<'_, T> {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::at(&self.file.path, self.file.spans().value(path), message);
        d.hint = hint;
        self.diags.push(d);
    }

    pub(super) fn addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("`{text}` is not an IP:port address"),
                    Some("write it like 127.0.0.1:15001 (host names are not accepted here)".into()),
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        match text.map(duration::parse) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(
                    path,
                    format!("invalid duration: {e}"),
                    Some("examples: 90s, 10m, 1h, 7d".into()),
                );
                default
            }
        }
    }
}

pub(crate) fn validate(dir: &Path, mut files: Files) -> Result<Config, Diagnostics> {
    let mut diags = std::mem::take(&mut files.diagnostics);
    let mut ctx = Ctx {
        file: &files.main,
        diags: &mut diags,
    };
    let raw = &files.main.value;
    let trust_domain = match raw.trust_domain.parse::<TrustDomain>() {
        Ok(td) => Some(td),
        Err(e) => {
            ctx.error("trust_domain", format!("invalid trust domain `{}`: {e}", raw.trust_domain),
                Some("a trust domain looks like `example.org`: lowercase letters, digits, `.`, `-`, `_`".into()));
            None
        }
    };
    let ca = ca_settings(dir, &raw.ca, &mut ctx);
    let server = server_settings(raw, &mut ctx);
    let policy = policy_settings(raw, &mut ctx);
    let attestation = attestation_settings(dir, raw, &mut ctx);

    let mut workloads = Vec::new();
    for file in &files.workloads {
        let mut ctx = Ctx {
            file,
            diags: &mut diags,
        };
        if let Some(w) = workload(file, trust_domain.as_ref(), &mut ctx) {
            workloads.push(w);
        }
    }
    workloads.sort_by(|a, b| a.name.cmp(&b.name));
    cross_checks(&files, &workloads, &server, &mut diags);
    let tokens = files
        .tokens
        .as_ref()
        .map(|t| join_tokens(t, &workloads, &mut diags))
        .unwrap_or_default();

    let mut policies = PolicySources {
        modules: files.modules,
        tests: files.tests,
        data: files.data,
        program: String::new(),
        extended_builtins: Vec::new(),
        entrypoint: String::new(),
        engine: warden_filter::PolicyEngine::Rvm,
    };
    if policies.modules.is_empty() {
        diags.push(
            Diagnostic::file(&dir.join(super::POLICIES_DIR), "no Rego policy found")
                .hint("add policies/*.rego (package envoy.authz with an `allow` rule); without one every request is denied"),
        );
    }
    diags.extend(policy_check::check(&mut policies, &policy));

    match (trust_domain, diags.is_empty()) {
        (Some(trust_domain), true) => Ok(Config {
            dir: dir.to_path_buf(),
            trust_domain,
            ca,
            server,
            policy,
            workloads,
            policies,
            attestation,
            tokens,
        }),
        _ => Err(Diagnostics(diags)),
    }
}

fn ca_settings(dir: &Path, raw: &RawCa, ctx: &mut Ctx<'_, RawWarden>) -> CaSettings {
    let key_type = match raw.key_type.as_deref().map(str::parse::<KeyType>) {
        None => KeyType::default(),
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            ctx.error("ca.key_type", e, None);
            KeyType::default()
        }
    };
    let ttl = ctx.duration("ca.ttl", raw.ttl.as_deref(), Duration::from_secs(24 * 3600));
    let svid_ttl = ctx.duration(
        "ca.svid_ttl",
        raw.svid_ttl.as_deref(),
        Duration::from_secs(3600),
    );
    if svid_ttl < MIN_SVID_TTL {
        ctx.error(
            "ca.svid_ttl",
            format!(
                "svid_ttl {} is shorter than the minimum 10s",
                duration::format(svid_ttl)
            ),
            Some(
                "SVIDs renew at half their lifetime; 1m or more is sane outside rotation drills"
                    .into(),
            ),
        );
    }
    if svid_ttl > ttl {
        ctx.error(
            "ca.svid_ttl",
            format!("svid_ttl {} is longer than the CA's ttl {}", duration::format(svid_ttl), duration::format(ttl)),
            Some("an SVID never outlives its CA; lower svid_ttl or raise ca.ttl (SVIDs are usually 1h, the CA 24h or more)".into()),
        );
    }
    let state_dir = dir.join(raw.state_dir.as_deref().unwrap_or(".warden"));
    let upstream = raw.upstream.as_ref().map(|u| {
        let up = UpstreamCa {
            cert: dir.join(&u.cert),
            key: dir.join(&u.key),
        };
        check_upstream_files(&up, ctx);
        up
    });
    CaSettings {
        key_type,
        ttl,
        svid_ttl,
        state_dir,
        upstream,
    }
}

/// The upstream CA files must be readable and hold a certificate and a PKCS#8 key.
fn check_upstream_files(up: &UpstreamCa, ctx: &mut Ctx<'_, RawWarden>) {
    let checks: [(&str, &PathBuf, &str, &str); 2] = [
        ("ca.upstream.cert", &up.cert, "CERTIFICATE", "a PEM certificate (-----BEGIN CERTIFICATE-----)"),
        ("ca.upstream.key", &up.key, "PRIVATE KEY", "a PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----); convert with `openssl pkcs8 -topk8 -nocrypt -in KEY`"),
    ];
    for (path, file, label, want) in checks {
        match std::fs::read_to_string(file) {
            Err(e) => ctx.error(
                path,
                format!("cannot read {}: {e}", file.display()),
                Some("paths are relative to the config directory".into()),
            ),
            Ok(text) if !text.contains(&format!("-----BEGIN {label}-----")) => {
                ctx.error(path, format!("{} is not {want}", file.display()), None)
            }
            Ok(_) => {}
        }
    }
}

fn server_settings(raw: &RawWarden, ctx: &mut Ctx<'_, RawWarden>) -> ServerSettings {
    let mut addr = |path: &str, text: Option<&str>, default: &str| {
        text.and_then(|t| ctx.addr(path, t)).unwrap_or_else(|| {
            default
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
        })
    };
    ServerSettings {
        xds_listen: addr(
            "server.xds_listen",
            raw.server.xds_listen.as_deref(),
            "127.0.0.1:18000",
        ),
        admin_listen: addr(
            "server.admin_listen",
            raw.server.admin_listen.as_deref(),
            "127.0.0.1:18001",
        ),
    }
}

fn policy_settings(raw: &RawWarden, ctx: &mut Ctx<'_, RawWarden>) -> PolicySettings {
    let p = &raw.policy;
    let mode = match p.mode.as_deref() {
        None | Some("enforce") => PolicyMode::Enforce,
        Some("dry-run") | Some("dry_run") => PolicyMode::DryRun,
        Some(other) => {
            ctx.error(
                "policy.mode",
                format!("unknown mode `{other}`"),
                Some("use `enforce` or `dry-run`".into()),
            );
            PolicyMode::Enforce
        }
    };
    let entrypoint = p
        .entrypoint
        .clone()
        .unwrap_or_else(|| "data.envoy.authz.allow".into());
    // As OPA-Envoy's `path`: `envoy/authz/allow`, or a package (`envoy/authz`) whose
    // `allow` rule decides; or the same as a Rego reference (`data.envoy.authz.allow`).
    let slash_path = entrypoint
        .trim_matches('/')
        .split('/')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if !entrypoint.starts_with("data.") && !slash_path {
        ctx.error(
            "policy.entrypoint",
            format!(
                "entrypoint `{entrypoint}` must be a rule or package path (`data.envoy.authz.allow`, `envoy/authz/allow` or `envoy/authz`)"
            ),
            Some("for example data.envoy.authz.allow".into()),
        );
    }
    let deny_status = p.deny_status.unwrap_or(403);
    if !(400..=599).contains(&deny_status) {
        ctx.error(
            "policy.deny_status",
            format!("deny_status {deny_status} is not an HTTP error status"),
            Some("use 403 (or another 4xx/5xx)".into()),
        );
    }
    PolicySettings {
        entrypoint,
        mode,
        deny_status,
        expose_reason: p.expose_reason.unwrap_or(false),
    }
}
