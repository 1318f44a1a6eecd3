//! `workload-api.yaml` in the config directory: where the socket is, which local processes
//! get which identity (selectors), and SVID lifetimes. Loaded like every other config file:
//! unknown keys are errors with a "did you mean", and every problem is reported at once at
//! `file:line:col` with a hint. Resolved against the main [`Config`]: a workload entry
//! either names a workload from `workloads/*.yaml` or gives its own `spiffe_id` (with a
//! path) in the trust domain.
//!
//! ```yaml
//! socket: /run/warden/workload.sock   # relative paths are relative to the config dir
//! jwt_ttl: 5m                         # JWT-SVID lifetime (default 5m)
//! jwt_key_ttl: 24h                    # JWT signing key lifetime; rotated like the CA (default 24h)
//! x509_ttl: 1h                        # default: ca.svid_ttl from warden.yaml
//! renew_fraction: 0.5                 # re-mint after this part of the lifetime (+-10% jitter)
//! workloads:
//!   - name: backend                   # a workload from workloads/*.yaml ...
//!     selectors: [unix:uid:1000, unix:path:/usr/bin/backend]
//!   - name: nightly-job               # ... or any local process with its own ID
//!     spiffe_id: spiffe://example.org/jobs/nightly
//!     selectors: [unix:gid:2000]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ctx::Ctx;
use super::diag::{Diagnostic, Diagnostics};
use super::files::parse_yaml;
use super::{duration, Config};
use crate::identity::{Entry, Selector, SpiffeId};

/// File name inside the config directory.
pub const FILE_NAME: &str = "workload-api.yaml";
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
const DEFAULT_JWT_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// `workload-api.yaml` is unreadable or invalid.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem, located.
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl SettingsError {
    /// The problems as diagnostics (what `warden validate` prints).
    pub fn into_diagnostics(self) -> Diagnostics {
        match self {
            SettingsError::Invalid(d) => d,
            SettingsError::Read { path, source } => Diagnostics(vec![Diagnostic::file(
                &path,
                format!("cannot read: {source}"),
            )]),
        }
    }
}

/// The resolved Workload API settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Absolute path of the Unix socket.
    pub socket: PathBuf,
    pub jwt_ttl: Duration,
    pub jwt_key_ttl: Duration,
    pub x509_ttl: Duration,
    /// Part of an X.509-SVID's lifetime after which it is re-minted (0.01 ..= 0.9).
    pub renew_fraction: f64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    socket: PathBuf,
    jwt_ttl: Option<String>,
    jwt_key_ttl: Option<String>,
    x509_ttl: Option<String>,
    renew_fraction: Option<f64>,
    workloads: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    spiffe_id: Option<String>,
    selectors: Vec<String>,
}

impl Settings {
    /// Read `workload-api.yaml` from the config directory; `Ok(None)` when there is none.
    pub fn load(cfg: &Config) -> Result<Option<Settings>, SettingsError> {
        let path = cfg.dir.join(FILE_NAME);
        match crate::fsutil::read_text(&path) {
            Ok(text) => Settings::parse(&text, cfg, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SettingsError::Read { path, source }),
        }
    }

    /// Parse and resolve the file's text (`path` is only used in messages).
    pub fn parse(text: &str, cfg: &Config, path: &Path) -> Result<Settings, SettingsError> {
        let file = parse_yaml::<RawSettings>(path, text)
            .map_err(|d| SettingsError::Invalid(Diagnostics(vec![d])))?;
        let mut diags = Vec::new();
        let mut ctx = Ctx {
            file: &file,
            diags: &mut diags,
        };
        let raw = &file.value;
        let jwt_ttl = ctx.ttl("jwt_ttl", raw.jwt_ttl.as_deref(), DEFAULT_JWT_TTL);
        let x509_ttl = ctx.ttl("x509_ttl", raw.x509_ttl.as_deref(), cfg.ca.svid_ttl);
        let jwt_key_ttl = ctx.ttl(
            "jwt_key_ttl",
            raw.jwt_key_ttl.as_deref(),
            DEFAULT_JWT_KEY_TTL,
        );
        if x509_ttl > cfg.ca.ttl {
            ctx.error(
                "x509_ttl",
                format!(
                    "x509_ttl {} is longer than the CA's ttl {} (ca.ttl in warden.yaml)",
                    duration::format(x509_ttl),
                    duration::format(cfg.ca.ttl)
                ),
                Some("an SVID never outlives its CA; lower x509_ttl (SPIRE: at most 1/6 of the CA's)".into()),
            );
        }
        if jwt_key_ttl < jwt_ttl.saturating_mul(6) {
            ctx.error(
                "jwt_key_ttl",
                format!(
                    "jwt_key_ttl {} is less than 6 x jwt_ttl ({})",
                    duration::format(jwt_key_ttl),
                    duration::format(jwt_ttl)
                ),
                Some(
                    "a retired key must outlive its tokens; raise jwt_key_ttl or lower jwt_ttl"
                        .into(),
                ),
            );
        }
        let renew_fraction = raw.renew_fraction.unwrap_or(0.5);
        if !(0.01..=0.9).contains(&renew_fraction) {
            ctx.error(
                "renew_fraction",
                format!("renew_fraction {renew_fraction} is outside 0.01 ..= 0.9"),
                Some("0.5 re-mints at half the lifetime, like SPIRE".into()),
            );
        }
        if raw.workloads.is_empty() {
            ctx.error(
                "workloads",
                "list at least one workload",
                Some("e.g. `- name: backend` with `selectors: [unix:uid:1000]`".into()),
            );
        }
        let socket = cfg.dir.join(&raw.socket);
        check_socket(&raw.socket, &socket, &mut ctx);
        let entries = entries(&raw.workloads, cfg, &mut ctx);
        if !diags.is_empty() {
            return Err(SettingsError::Invalid(Diagnostics(diags)));
        }
        Ok(Settings {
            socket,
            jwt_ttl,
            jwt_key_ttl,
            x509_ttl,
            renew_fraction,
            entries,
        })
    }
}

/// Longest Unix socket path: `sun_path` holds 108 bytes with the closing NUL (unix(7)).
const MAX_SOCKET_PATH: usize = 107;

/// The socket must name a file (not the config directory itself) and fit in `sun_path`;
/// otherwise `serve` would only fail when it binds.
fn check_socket(raw: &Path, socket: &Path, ctx: &mut Ctx<'_, RawSettings>) {
    use std::os::unix::ffi::OsStrExt;
    let names_a_file = matches!(
        raw.components().next_back(),
        Some(std::path::Component::Normal(_))
    ) && !raw.as_os_str().as_bytes().ends_with(b"/");
    let len = socket.as_os_str().len();
    if !names_a_file {
        ctx.error(
            "socket",
            format!("socket `{}` does not name a file", raw.display()),
            Some("e.g. socket: /run/warden/workload.sock".into()),
        );
    } else if len > MAX_SOCKET_PATH {
        ctx.error(
            "socket",
            format!(
                "socket path {} is {len} bytes; Unix sockets allow at most {MAX_SOCKET_PATH}",
                super::diag::clip(&socket.display().to_string())
            ),
            Some("use a short absolute path such as /run/warden/workload.sock".into()),
        );
    }
}

fn entries(raw: &[RawEntry], cfg: &Config, ctx: &mut Ctx<'_, RawSettings>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, w) in raw.iter().enumerate() {
        let at = |field: &str| format!("workloads[{i}].{field}");
        if !names.insert(w.name.as_str()) {
            ctx.error(
                &at("name"),
                format!("workload `{}` is listed twice", w.name),
                Some("list each workload once, with all its selectors".into()),
            );
        }
        let id = resolve_id(w, cfg)
            .map_err(|(field, m, hint)| {
                ctx.error(
                    &at(field),
                    format!("workload `{}`: {m}", w.name),
                    Some(hint),
                )
            })
            .ok();
        if w.selectors.is_empty() {
            ctx.error(
                &at("selectors"),
                format!("workload `{}`: list at least one selector", w.name),
                Some("unix:uid:N, unix:gid:N, unix:path:/abs/exe".into()),
            );
        }
        let mut selectors = Vec::new();
        for (j, s) in w.selectors.iter().enumerate() {
            match s.parse::<Selector>() {
                Ok(sel) => selectors.push(sel),
                Err(e) => ctx.error(
                    &format!("workloads[{i}].selectors[{j}]"),
                    format!("workload `{}`: {e}", w.name),
                    Some("e.g. unix:uid:1000, unix:gid:2000, unix:path:/usr/bin/app".into()),
                ),
            }
        }
        if let Some(spiffe_id) = id {
            out.push(Entry {
                name: w.name.clone(),
                spiffe_id,
                selectors,
            });
        }
    }
    out
}

/// The entry's ID: its own `spiffe_id`, or its workload's. On error: (field, message, hint).
fn resolve_id(w: &RawEntry, cfg: &Config) -> Result<SpiffeId, (&'static str, String, String)> {
    match (&w.spiffe_id, cfg.workload(&w.name)) {
        // An entry's ID becomes a leaf X.509-SVID and a JWT-SVID `sub`: it needs a path.
        (Some(text), _) => cfg.trust_domain.parse_workload(text).map_err(|e| {
            (
                "spiffe_id",
                format!("spiffe_id: {e}"),
                format!(
                    "IDs look like {}/ns/<namespace>/sa/<name>",
                    cfg.trust_domain.to_spiffe_id_string()
                ),
            )
        }),
        (None, Some(known)) => Ok(known.spiffe_id.clone()),
        (None, None) => Err((
            "name",
            "not a workload in workloads/*.yaml".into(),
            "add `spiffe_id:` for a workload without a sidecar".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> Config {
        crate::test_support::sample_mesh(Path::new("/nonexistent"))
    }

    #[test]
    fn every_problem_is_reported_at_its_line_with_a_hint() {
        let text = "socket: a\njwt_ttl: 9223372036854775807s\nrenew_fraction: 2\nworkloads:\n  - name: j\n    spiffe_id: spiffe://example.org\n    selectors: [unix:uid:1, uid:2]\n  - name: nope\n    selectors: []\n";
        let err = Settings::parse(text, &mesh(), Path::new("workload-api.yaml")).unwrap_err();
        let SettingsError::Invalid(d) = err else {
            panic!("{err}")
        };
        let lines: Vec<(usize, &str)> = d.0.iter().map(|d| (d.line, d.message.as_str())).collect();
        assert_eq!(d.0.len(), 6, "{d}");
        for (line, want) in [
            (2, "maximum 3650d"),
            (3, "renew_fraction"),
            (6, "needs a path"),
            (7, "selector `uid:2`"),
            (8, "not a workload"),
            (9, "at least one selector"),
        ] {
            assert!(
                lines.iter().any(|(l, m)| *l == line && m.contains(want)),
                "no `{want}` at line {line}: {d}"
            );
        }
        assert!(d.0.iter().all(|d| d.column > 0 && d.hint.is_some()), "{d}");
    }

    #[test]
    fn an_x509_ttl_beyond_the_ca_ttl_is_refused() {
        let cfg = mesh();
        let text = format!(
            "socket: s\nx509_ttl: {}\nworkloads:\n  - name: backend\n    selectors: [unix:uid:1]\n",
            duration::format(cfg.ca.ttl + Duration::from_secs(1))
        );
        let err = Settings::parse(&text, &cfg, Path::new("w.yaml")).unwrap_err();
        let SettingsError::Invalid(d) = err else {
            panic!("{err}")
        };
        assert!(
            d.0[0].message.contains("longer than the CA's ttl") && d.0[0].line == 2,
            "{d}"
        );
    }

    #[test]
    fn a_socket_path_that_cannot_be_bound_is_refused_at_its_line() {
        let long = format!("/run/{}/workload.sock", "d".repeat(100));
        for (socket, want) in [
            (long.as_str(), "Unix sockets allow at most 107"),
            ("\"\"", "does not name a file"),
            (".", "does not name a file"),
            ("/run/warden/", "does not name a file"),
            ("sub/..", "does not name a file"),
        ] {
            let text = format!(
                "jwt_ttl: 5m\nsocket: {socket}\nworkloads:\n  - name: backend\n    selectors: [unix:uid:1]\n"
            );
            let err = Settings::parse(&text, &mesh(), Path::new("workload-api.yaml")).unwrap_err();
            let SettingsError::Invalid(d) = err else {
                panic!("{err}")
            };
            assert_eq!(d.0.len(), 1, "{socket}: {d}");
            assert_eq!(d.0[0].line, 2, "{socket}: {d}");
            assert!(d.0[0].message.contains(want), "{socket}: {d}");
        }
        let ok = "socket: /run/warden/workload.sock\nworkloads:\n  - name: backend\n    selectors: [unix:uid:1]\n";
        assert!(Settings::parse(ok, &mesh(), Path::new("w.yaml")).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn no_text_makes_the_loader_panic(
            text in "\\PC{0,200}",
            ttl in "[0-9smhd]{0,24}",
            id in "[a-z:/._-]{0,40}",
            sel in "[a-z:/0-9]{0,20}",
        ) {
            let cfg = mesh();
            let _ = Settings::parse(&text, &cfg, Path::new("w.yaml"));
            let yaml = format!(
                "socket: s\njwt_ttl: \"{ttl}\"\nworkloads:\n  - name: x\n    spiffe_id: \"{id}\"\n    selectors: [\"{sel}\"]\n"
            );
            let _ = Settings::parse(&yaml, &cfg, Path::new("w.yaml"));
        }
    }
}
