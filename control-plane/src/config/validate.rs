//! Semantic checks that turn the raw files into a typed [`Config`]: SPIFFE IDs parse and
//! sit in the trust domain, names and node ids are unique, upstreams exist, no two
//! listeners share an address, TTLs fit, CA files are readable and of the right type,
//! and the Rego compiles. Every problem is collected, each at its own line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::attestation::{attestation_settings, join_tokens};
use super::ctx::Ctx;
use super::diag::{clip, Diagnostic, Diagnostics};
use super::files::Files;
use super::raw::{RawCa, RawWarden};
use super::workloads::{cross_checks, workload};
use super::{
    duration, policy_check, CaSettings, Config, EscapedSlashes, PolicyMode, PolicySettings,
    PolicySources, ServerSettings,
};
use crate::identity::{CaError, CaParams, KeyType, SystemClock, TrustDomain, UpstreamCa};

pub(crate) fn validate(dir: &Path, mut files: Files) -> Result<Config, Diagnostics> {
    let mut diags = std::mem::take(&mut files.diagnostics);
    let mut ctx = Ctx {
        file: &files.main,
        diags: &mut diags,
    };
    let raw = &files.main.value;
    let trust_domain = trust_domain(&raw.trust_domain, &mut ctx);
    let ca = ca_settings(dir, &raw.ca, &mut ctx);
    let upstream_files_ok = ca
        .upstream
        .as_ref()
        .is_some_and(|up| check_upstream_files(up, &mut ctx));
    if let (Some(td), true) = (&trust_domain, upstream_files_ok) {
        check_upstream_ca(td, &ca, &mut ctx);
    }
    let server = server_settings(dir, raw, &mut ctx);
    let (policy, attestation, audit) = more_settings(dir, raw, &mut ctx);

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
        input_needs: None,
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
    let pdir = dir.join(super::POLICIES_DIR);
    let data_file = ["data.json", "data.yaml"]
        .map(|f| pdir.join(f))
        .into_iter()
        .find(|f| f.exists())
        .unwrap_or_else(|| pdir.join("data.json"));
    diags.extend(policy_check::data_rule_conflicts(&policies, &data_file));

    let (warnings, errors): (Vec<_>, Vec<_>) = diags.into_iter().partition(|d| d.is_warning());
    match (trust_domain, errors.is_empty()) {
        (Some(trust_domain), true) => Ok(Config {
            warnings,
            dir: dir.to_path_buf(),
            trust_domain,
            ca,
            server,
            policy,
            workloads,
            policies,
            attestation,
            tokens,
            audit,
        }),
        _ => Err(Diagnostics(errors)),
    }
}

/// The host name the control plane's xDS certificate carries (the same format as
/// `xds::server::tls::control_plane_dns_name`; a test checks they agree).
pub(crate) fn control_plane_host(td: &TrustDomain) -> String {
    format!("warden-control-plane.{td}")
}

fn trust_domain(text: &str, ctx: &mut Ctx<'_, RawWarden>) -> Option<TrustDomain> {
    let hint = "a trust domain is a host name like `example.org` or `prod.example.com`: \
        dot-separated labels of 1-63 lowercase letters, digits and `-` (not at a label's start or end), \
        at most 253 bytes in all";
    let td = match text.parse::<TrustDomain>() {
        Ok(td) => td,
        Err(e) => {
            ctx.error(
                "trust_domain",
                format!("invalid trust domain `{}`: {e}", clip(text)),
                Some(hint.into()),
            );
            return None;
        }
    };
    // Checked by rustls' own host-name rules too: this name is the SNI sidecars send.
    let host = control_plane_host(&td);
    if rustls_pki_types::DnsName::try_from(host.as_str()).is_err() {
        ctx.error(
            "trust_domain",
            format!("trust domain `{text}` gives the xDS server name `{host}`, which is not a valid host name"),
            Some(format!("{hint}; with the `warden-control-plane.` prefix the name must stay within 253 bytes")),
        );
        return None;
    }
    Some(td)
}

fn ca_settings(dir: &Path, raw: &RawCa, ctx: &mut Ctx<'_, RawWarden>) -> CaSettings {
    let key_type = match raw.key_type.as_deref().map(str::parse::<KeyType>) {
        None => KeyType::default(),
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            ctx.error("ca.key_type", e.to_string(), None);
            KeyType::default()
        }
    };
    let ttl = ctx.ttl("ca.ttl", raw.ttl.as_deref(), Duration::from_secs(24 * 3600));
    let svid_ttl = ctx.ttl(
        "ca.svid_ttl",
        raw.svid_ttl.as_deref(),
        Duration::from_secs(3600),
    );
    if svid_ttl > ttl {
        ctx.error(
            "ca.svid_ttl",
            format!("svid_ttl {} is longer than the CA's ttl {}", duration::format(svid_ttl), duration::format(ttl)),
            Some("an SVID never outlives its CA; lower svid_ttl or raise ca.ttl (SVIDs are usually 1h, the CA 24h or more)".into()),
        );
    } else if svid_ttl > ttl / 6 {
        // SPIRE's rule: an SVID lives at most 1/6 of its CA, so CA rotation (prepared at
        // 1/2, activated at 5/6 of the CA's life) never has to cut SVIDs short.
        ctx.warning(
            "ca.svid_ttl",
            format!(
                "svid_ttl {} is more than 1/6 of the CA's ttl {}: SVIDs minted late in the CA's life are cut short at its end",
                duration::format(svid_ttl),
                duration::format(ttl)
            ),
            match svid_ttl.saturating_mul(6) {
                // Only suggest a CA lifetime that the bounds allow.
                need if need <= duration::MAX => format!(
                    "SPIRE caps SVID lifetimes at 1/6 of the CA's; use svid_ttl {} or less, or ca.ttl {} or more",
                    duration::format(ttl / 6),
                    duration::format(need)
                ),
                _ => format!(
                    "SPIRE caps SVID lifetimes at 1/6 of the CA's; use svid_ttl {} or less",
                    duration::format(ttl / 6)
                ),
            },
        );
    }
    let state_dir = dir.join(raw.state_dir.as_deref().unwrap_or(".warden"));
    check_state_dir(dir, &state_dir, ctx);
    let upstream = raw.upstream.as_ref().map(|u| UpstreamCa {
        cert: dir.join(&u.cert),
        key: dir.join(&u.key),
    });
    CaSettings {
        key_type,
        ttl,
        svid_ttl,
        state_dir,
        upstream,
    }
}

/// The CA's private key must not land among the config files: not the config directory
/// itself (`state_dir: .` or `""`), nor `workloads/` or `policies/`.
fn check_state_dir(dir: &Path, state_dir: &Path, ctx: &mut Ctx<'_, RawWarden>) {
    let state = lexical(state_dir);
    let clashes = [
        dir.to_path_buf(),
        dir.join(super::WORKLOADS_DIR),
        dir.join(super::POLICIES_DIR),
    ]
    .iter()
    .map(|p| lexical(p))
    .any(|p| state == p || (p != lexical(dir) && state.starts_with(&p)));
    if clashes {
        ctx.error(
            "ca.state_dir",
            format!("state_dir {} is among the config files; the CA's private key would be written there", state_dir.display()),
            Some("use the default .warden (listed in .gitignore) or a directory outside the config repo".into()),
        );
    }
}

/// `p` with `.` dropped and `..` applied, without touching the file system.
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The upstream CA must be able to sign Warden's intermediate and yield SVIDs that verify
/// (`identity::upstream_check`), checked in memory: nothing is written.
fn check_upstream_ca(td: &TrustDomain, ca: &CaSettings, ctx: &mut Ctx<'_, RawWarden>) {
    let params = CaParams {
        trust_domain: td.clone(),
        key_type: ca.key_type,
        ttl: ca.ttl,
        state_dir: ca.state_dir.clone(),
        upstream: ca.upstream.clone(),
    };
    match crate::identity::check_upstream(&params, &SystemClock) {
        Ok(_) => {}
        Err(CaError::UpstreamUnusable(d)) => {
            for defect in d.defects {
                ctx.error(
                    "ca.upstream.cert",
                    format!("unusable upstream CA: {defect}"),
                    Some("inspect it with `openssl x509 -noout -text -in FILE`; Warden checks an upstream CA like SPIRE does (CA, keyCertSign, dates, pathlen, root)".into()),
                );
            }
        }
        Err(e) => {
            let path = match &e {
                CaError::UpstreamInvalid { path, .. }
                    if Some(path) == ca.upstream.as_ref().map(|u| &u.key) =>
                {
                    "ca.upstream.key"
                }
                _ => "ca.upstream.cert",
            };
            ctx.error(
                path,
                format!("unusable upstream CA: {e}"),
                Some("the certificate file holds the upstream CA (then its chain up to the root); the key file its PKCS#8 key".into()),
            );
        }
    }
}

/// The upstream CA files must be readable and hold a certificate and a PKCS#8 key; false
/// (reported) when not.
fn check_upstream_files(up: &UpstreamCa, ctx: &mut Ctx<'_, RawWarden>) -> bool {
    let mut ok = true;
    let checks: [(&str, &PathBuf, &str, &str); 2] = [
        ("ca.upstream.cert", &up.cert, "CERTIFICATE", "a PEM certificate (-----BEGIN CERTIFICATE-----)"),
        ("ca.upstream.key", &up.key, "PRIVATE KEY", "a PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----); convert with `openssl pkcs8 -topk8 -nocrypt -in KEY`"),
    ];
    for (path, file, label, want) in checks {
        match crate::fsutil::read_text(file) {
            Err(e) => ctx.error(
                path,
                format!("cannot read {}: {e}", file.display()),
                Some("paths are relative to the config directory".into()),
            ),
            Ok(text) if !text.contains(&format!("-----BEGIN {label}-----")) => {
                ctx.error(path, format!("{} is not {want}", file.display()), None)
            }
            Ok(_) => continue,
        }
        ok = false;
    }
    ok
}

/// `policy:`, `attestation:` and `audit:` of warden.yaml.
fn more_settings(
    dir: &Path,
    raw: &RawWarden,
    ctx: &mut Ctx<'_, RawWarden>,
) -> (
    PolicySettings,
    super::AttestationSettings,
    super::AuditSettings,
) {
    let policy = policy_settings(raw, ctx);
    let attestation = attestation_settings(dir, raw, ctx);
    (policy, attestation, super::audit::audit_settings(raw, ctx))
}

fn server_settings(dir: &Path, raw: &RawWarden, ctx: &mut Ctx<'_, RawWarden>) -> ServerSettings {
    let mut addr = |path: &str, text: Option<&str>, default: &str| {
        text.and_then(|t| ctx.addr(path, t)).unwrap_or_else(|| {
            default
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
        })
    };
    let xds_listen = addr(
        "server.xds_listen",
        raw.server.xds_listen.as_deref(),
        "127.0.0.1:18000",
    );
    let admin_listen = addr(
        "server.admin_listen",
        raw.server.admin_listen.as_deref(),
        "127.0.0.1:18001",
    );
    let admin_token_file = super::admin_auth::admin_token_file(dir, raw, admin_listen, ctx);
    ServerSettings {
        xds_listen,
        admin_listen,
        admin_token_file,
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
    let escaped_slashes = escaped_slashes(p.escaped_slashes.as_deref(), ctx);
    let native_rbac = native_rbac(p.native_rbac.as_deref(), ctx);
    PolicySettings {
        entrypoint,
        mode,
        deny_status,
        expose_reason: p.expose_reason.unwrap_or(false),
        escaped_slashes,
        native_rbac,
    }
}

/// `policy.escaped_slashes`: what the inbound HTTP connection manager does with `%2F`/`%5C`.
fn escaped_slashes(value: Option<&str>, ctx: &mut Ctx<'_, RawWarden>) -> EscapedSlashes {
    match value {
        None | Some("reject") => EscapedSlashes::Reject,
        Some("unescape_and_redirect") => EscapedSlashes::UnescapeAndRedirect,
        Some("unescape_and_forward") => EscapedSlashes::UnescapeAndForward,
        Some(other) => {
            ctx.error(
                "policy.escaped_slashes",
                format!("unknown escaped_slashes action `{other}`"),
                Some(
                    "use `reject` (default), `unescape_and_redirect` or `unescape_and_forward`"
                        .into(),
                ),
            );
            EscapedSlashes::Reject
        }
    }
}

/// `policy.native_rbac`: whether policies that compile to Envoy RBAC run natively.
fn native_rbac(value: Option<&str>, ctx: &mut Ctx<'_, RawWarden>) -> bool {
    // Unset in warden.yaml: the WARDEN_NATIVE_RBAC environment variable (`off` forces
    // the Wasm filter everywhere; the e2e suite runs its authorization tests both ways).
    let from_env = std::env::var("WARDEN_NATIVE_RBAC").ok();
    match value.or(from_env.as_deref()) {
        None | Some("auto") => true,
        Some("off") => false,
        Some(other) => {
            let hint = Some("use `auto` (default: RBAC where the policy compiles) or `off`".into());
            ctx.error(
                "policy.native_rbac",
                format!("unknown native_rbac `{other}`"),
                hint,
            );
            true
        }
    }
}
