//! `workload-api.yaml` in the config directory: where the socket is, which local processes
//! get which identity (selectors), and SVID lifetimes. Parsed strictly (unknown keys are
//! errors) and resolved against the main [`Config`]: a workload entry either names a
//! workload from `workloads/*.yaml` or gives its own `spiffe_id` in the trust domain.
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

use super::attest::{Entry, Selector};
use crate::config::{duration, Config};
use crate::identity::SpiffeId;

/// File name inside the config directory.
pub const FILE_NAME: &str = "workload-api.yaml";
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
const DEFAULT_JWT_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
const MIN_TTL: Duration = Duration::from_secs(60);

/// `workload-api.yaml` is missing, unreadable or invalid.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
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
        match std::fs::read_to_string(&path) {
            Ok(text) => Settings::parse(&text, cfg, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SettingsError::Read { path, source }),
        }
    }

    /// Parse and resolve the file's text (`path` is only used in messages).
    pub fn parse(text: &str, cfg: &Config, path: &Path) -> Result<Settings, SettingsError> {
        let invalid = |message: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawSettings = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let ttl = |field: &str, text: Option<&str>, default: Duration| match text {
            None => Ok(default),
            Some(t) => match duration::parse(t) {
                Ok(d) if d >= MIN_TTL => Ok(d),
                Ok(_) => Err(invalid(format!("{field}: `{t}` is shorter than 1m"))),
                Err(e) => Err(invalid(format!("{field}: {e}"))),
            },
        };
        let jwt_ttl = ttl("jwt_ttl", raw.jwt_ttl.as_deref(), DEFAULT_JWT_TTL)?;
        let x509_ttl = ttl("x509_ttl", raw.x509_ttl.as_deref(), cfg.ca.svid_ttl)?;
        let jwt_key_ttl = ttl(
            "jwt_key_ttl",
            raw.jwt_key_ttl.as_deref(),
            DEFAULT_JWT_KEY_TTL,
        )?;
        if jwt_key_ttl < jwt_ttl * 6 {
            return Err(invalid(format!(
                "jwt_key_ttl: {} must be at least 6 x jwt_ttl ({}) so a retired key outlives its tokens; raise jwt_key_ttl or lower jwt_ttl",
                duration::format(jwt_key_ttl),
                duration::format(jwt_ttl)
            )));
        }
        let renew_fraction = raw.renew_fraction.unwrap_or(0.5);
        if !(0.01..=0.9).contains(&renew_fraction) {
            return Err(invalid(format!(
                "renew_fraction: {renew_fraction} is outside 0.01 ..= 0.9"
            )));
        }
        if raw.workloads.is_empty() {
            return Err(invalid("workloads: list at least one workload".into()));
        }
        let mut entries: Vec<Entry> = Vec::new();
        for w in raw.workloads {
            if entries.iter().any(|e| e.name == w.name) {
                return Err(invalid(format!("workload `{}` is listed twice", w.name)));
            }
            let id =
                resolve_id(&w, cfg).map_err(|m| invalid(format!("workload `{}`: {m}", w.name)))?;
            if w.selectors.is_empty() {
                return Err(invalid(format!(
                    "workload `{}`: list at least one selector (unix:uid:N, unix:gid:N, unix:path:/abs/exe)",
                    w.name
                )));
            }
            let selectors = w
                .selectors
                .iter()
                .map(|s| s.parse::<Selector>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("workload `{}`: {e}", w.name)))?;
            entries.push(Entry {
                name: w.name,
                spiffe_id: id,
                selectors,
            });
        }
        Ok(Settings {
            socket: cfg.dir.join(raw.socket),
            jwt_ttl,
            jwt_key_ttl,
            x509_ttl,
            renew_fraction,
            entries,
        })
    }
}

fn resolve_id(w: &RawEntry, cfg: &Config) -> Result<SpiffeId, String> {
    match (&w.spiffe_id, cfg.workload(&w.name)) {
        (Some(text), _) => {
            let id: SpiffeId = text.parse().map_err(|e| format!("spiffe_id: {e}"))?;
            if !id.is_member_of(&cfg.trust_domain) {
                return Err(format!("{id} is not in trust domain {}", cfg.trust_domain));
            }
            Ok(id)
        }
        (None, Some(known)) => Ok(known.spiffe_id.clone()),
        (None, None) => Err(
            "not a workload in workloads/*.yaml; add `spiffe_id:` for a workload without a sidecar"
                .into(),
        ),
    }
}
