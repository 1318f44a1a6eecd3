//! `federation.yaml` in the config directory: this trust domain's SPIFFE bundle endpoint
//! and its federation relationships (SPIFFE Federation spec). Loaded like every other
//! config file: unknown keys are errors, and every problem is reported at once at
//! `file:line:col` with a hint. Re-read on every config reload, so relationships are
//! added, changed or removed without a restart (the endpoint's listener needs one).
//!
//! ```yaml
//! bundle_endpoint:                     # optional: serve our bundle to peers
//!   listen: 0.0.0.0:8443
//!   profile: https_spiffe              # served with an SVID of our trust domain
//!   # profile: https_web               # or a Web PKI certificate:
//!   # cert_file: web.crt               #   PEM chain (relative to the config dir)
//!   # key_file: web.key                #   PKCS#8 PEM key
//!   refresh_hint: 5m                   # spiffe_refresh_hint in the served bundle
//! refresh_floor: 30s                   # never re-fetch a foreign bundle more often
//! trust_domains:
//!   - trust_domain: cluster-b.example
//!     url: https://bundle.cluster-b.example:8443/
//!     profile: https_spiffe
//!     endpoint_spiffe_id: spiffe://cluster-b.example/warden/control-plane
//!     bundle_file: cluster-b.bundle.json   # initial bundle (out of band)
//!   - trust_domain: partner.example
//!     url: https://partner.example/bundle
//!     profile: https_web
//!     ca_file: partner-roots.pem           # optional: roots instead of the Web PKI set
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ctx::Ctx;
use super::diag::{Diagnostic, Diagnostics};
use super::files::parse_yaml;
use super::Config;
use crate::identity::{SpiffeId, TrustDomain};

/// File name inside the config directory.
pub const FILE_NAME: &str = "federation.yaml";
const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);
const DEFAULT_REFRESH_FLOOR: Duration = Duration::from_secs(30);
/// Lowest refresh floor accepted (a peer is never polled more than once a second).
const MIN_REFRESH_FLOOR: Duration = Duration::from_secs(1);

/// `federation.yaml` is unreadable or invalid.
#[derive(Debug, thiserror::Error)]
pub enum FederationConfigError {
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

impl FederationConfigError {
    /// The problems as diagnostics (what `warden validate` prints).
    pub fn into_diagnostics(self) -> Diagnostics {
        match self {
            Self::Invalid(d) => d,
            Self::Read { path, source } => Diagnostics(vec![Diagnostic::file(
                &path,
                format!("cannot read: {source}"),
            )]),
        }
    }
}

/// How a bundle endpoint authenticates itself (SPIFFE Federation spec §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// TLS with an X509-SVID of the endpoint's trust domain.
    HttpsSpiffe,
    /// TLS with a Web PKI certificate.
    HttpsWeb,
}

/// Our bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpoint {
    pub listen: SocketAddr,
    pub profile: EndpointProfile,
    /// `https_web`: certificate chain and key files (absolute).
    pub web_cert: Option<(PathBuf, PathBuf)>,
    /// `spiffe_refresh_hint` served.
    pub refresh_hint: Duration,
}

/// How we authenticate a foreign bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// `https_spiffe`: the endpoint's SVID, checked against the foreign trust domain's
    /// previous bundle, must carry this ID.
    Spiffe { endpoint_id: SpiffeId },
    /// `https_web`: Web PKI, with these roots (PEM file) or the built-in set.
    Web { ca_file: Option<PathBuf> },
}

/// One federation relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    pub trust_domain: TrustDomain,
    /// `https://host:port/path`.
    pub url: url::Url,
    pub auth: PeerAuth,
    /// Initial bundle (SPIFFE format), absolute path.
    pub bundle_file: Option<PathBuf>,
}

/// The resolved `federation.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FederationSettings {
    pub bundle_endpoint: Option<BundleEndpoint>,
    /// Floor of the refresh interval.
    pub refresh_floor: Duration,
    /// By trust domain, sorted.
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    bundle_endpoint: Option<RawEndpoint>,
    refresh_floor: Option<String>,
    #[serde(default)]
    trust_domains: Vec<RawRelationship>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    listen: String,
    profile: String,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    refresh_hint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelationship {
    trust_domain: String,
    url: String,
    profile: String,
    endpoint_spiffe_id: Option<String>,
    bundle_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

const PROFILE_HINT: &str = "profile is `https_spiffe` (SVID of the endpoint's trust domain) or `https_web` (Web PKI certificate)";

impl FederationSettings {
    /// Reads `federation.yaml`; `Ok(None)` when there is none.
    pub fn load(cfg: &Config) -> Result<Option<Self>, FederationConfigError> {
        let path = cfg.dir.join(FILE_NAME);
        match crate::fsutil::read_text(&path) {
            Ok(text) => Self::parse(&text, cfg, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FederationConfigError::Read { path, source }),
        }
    }

    /// Parses and resolves the file's text (`path` is only used in messages).
    pub fn parse(
        text: &str,
        cfg: &Config,
        path: &std::path::Path,
    ) -> Result<Self, FederationConfigError> {
        let file = parse_yaml::<RawSettings>(path, text)
            .map_err(|d| FederationConfigError::Invalid(Diagnostics(vec![d])))?;
        let mut diags = Vec::new();
        let mut ctx = Ctx {
            file: &file,
            diags: &mut diags,
        };
        let raw = &file.value;
        let refresh_floor = interval(
            &mut ctx,
            "refresh_floor",
            raw.refresh_floor.as_deref(),
            DEFAULT_REFRESH_FLOOR,
        );
        let bundle_endpoint = raw
            .bundle_endpoint
            .as_ref()
            .and_then(|e| endpoint(e, cfg, &mut ctx));
        let mut relationships = Vec::new();
        for (i, r) in raw.trust_domains.iter().enumerate() {
            if let Some(rel) = relationship(i, r, cfg, &mut ctx) {
                if relationships
                    .iter()
                    .any(|o: &Relationship| o.trust_domain == rel.trust_domain)
                {
                    ctx.error(
                        &format!("trust_domains[{i}].trust_domain"),
                        format!("trust domain `{}` is listed twice", rel.trust_domain),
                        Some("one relationship per foreign trust domain".into()),
                    );
                }
                relationships.push(rel);
            }
        }
        if !diags.is_empty() {
            return Err(FederationConfigError::Invalid(Diagnostics(diags)));
        }
        relationships.sort_by(|a, b| a.trust_domain.as_str().cmp(b.trust_domain.as_str()));
        Ok(Self {
            bundle_endpoint,
            refresh_floor: refresh_floor.max(MIN_REFRESH_FLOOR),
            relationships,
        })
    }
}

/// A refresh interval: 1 s to 1 day (`ca.ttl`-style lifetimes start at 10 s, too long
/// for a refresh hint in tests and demos).
fn interval(
    ctx: &mut Ctx<'_, RawSettings>,
    path: &str,
    text: Option<&str>,
    default: Duration,
) -> Duration {
    let Some(text) = text else {
        return default;
    };
    match super::duration::parse(text) {
        Ok(d) if (MIN_REFRESH_FLOOR..=Duration::from_secs(86_400)).contains(&d) => d,
        Ok(_) => {
            ctx.error(
                path,
                format!("`{text}` is outside 1s ..= 1d"),
                Some("refresh intervals are 1s to 1d; SPIRE's default hint is 5m".into()),
            );
            default
        }
        Err(e) => {
            ctx.error(
                path,
                format!("invalid duration: {e}"),
                Some("examples: 5s, 30s, 5m".into()),
            );
            default
        }
    }
}

fn endpoint(
    raw: &RawEndpoint,
    cfg: &Config,
    ctx: &mut Ctx<'_, RawSettings>,
) -> Option<BundleEndpoint> {
    let listen = ctx.addr("bundle_endpoint.listen", &raw.listen);
    let refresh_hint = interval(
        ctx,
        "bundle_endpoint.refresh_hint",
        raw.refresh_hint.as_deref(),
        DEFAULT_REFRESH_HINT,
    );
    let (profile, web_cert) = match raw.profile.as_str() {
        "https_spiffe" => {
            if raw.cert_file.is_some() || raw.key_file.is_some() {
                ctx.error(
                    "bundle_endpoint.profile",
                    "cert_file/key_file are only used with profile https_web",
                    Some("https_spiffe serves an SVID the CA mints; remove cert_file/key_file or use https_web".into()),
                );
            }
            (EndpointProfile::HttpsSpiffe, None)
        }
        "https_web" => match (&raw.cert_file, &raw.key_file) {
            (Some(c), Some(k)) => (
                EndpointProfile::HttpsWeb,
                Some((cfg.dir.join(c), cfg.dir.join(k))),
            ),
            _ => {
                ctx.error(
                    "bundle_endpoint.profile",
                    "profile https_web needs cert_file and key_file",
                    Some("a Web PKI certificate chain (PEM) and its PKCS#8 key".into()),
                );
                (EndpointProfile::HttpsWeb, None)
            }
        },
        other => {
            ctx.error(
                "bundle_endpoint.profile",
                format!("unknown profile `{other}`"),
                Some(PROFILE_HINT.into()),
            );
            return None;
        }
    };
    Some(BundleEndpoint {
        listen: listen?,
        profile,
        web_cert,
        refresh_hint,
    })
}

fn relationship(
    i: usize,
    raw: &RawRelationship,
    cfg: &Config,
    ctx: &mut Ctx<'_, RawSettings>,
) -> Option<Relationship> {
    let at = |k: &str| format!("trust_domains[{i}].{k}");
    let td = match raw.trust_domain.parse::<TrustDomain>() {
        Ok(td) if td == cfg.trust_domain => {
            ctx.error(
                &at("trust_domain"),
                format!("`{td}` is this config's own trust domain"),
                Some("federate with other trust domains only".into()),
            );
            None
        }
        Ok(td) => Some(td),
        Err(e) => {
            ctx.error(
                &at("trust_domain"),
                format!("invalid trust domain: {e}"),
                Some("a trust domain name such as cluster-b.example, without spiffe://".into()),
            );
            None
        }
    };
    let url = match url::Url::parse(&raw.url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Some(u),
        Ok(_) | Err(_) => {
            ctx.error(
                &at("url"),
                format!("`{}` is not an https:// URL with a host", raw.url),
                Some(
                    "e.g. https://bundle.cluster-b.example:8443/ (bundle endpoints are HTTPS only)"
                        .into(),
                ),
            );
            None
        }
    };
    let auth = peer_auth(i, raw, td.as_ref(), cfg, ctx);
    let bundle_file = bundle_file(i, raw, cfg, ctx);
    if matches!(auth, Some(PeerAuth::Spiffe { .. })) && bundle_file.is_none() {
        ctx.warning(
            &at("profile"),
            "https_spiffe without bundle_file: the endpoint cannot be authenticated until a bundle is known (e.g. one persisted in the state directory)",
            "add bundle_file with the peer's `warden bundle --format spiffe` output".into(),
        );
    }
    Some(Relationship {
        trust_domain: td?,
        url: url?,
        auth: auth?,
        bundle_file,
    })
}

/// How the relationship's endpoint is authenticated (`profile` and its settings).
fn peer_auth(
    i: usize,
    raw: &RawRelationship,
    td: Option<&TrustDomain>,
    cfg: &Config,
    ctx: &mut Ctx<'_, RawSettings>,
) -> Option<PeerAuth> {
    let at = |k: &str| format!("trust_domains[{i}].{k}");
    match raw.profile.as_str() {
        "https_spiffe" => {
            endpoint_id(i, raw, td, ctx).map(|endpoint_id| PeerAuth::Spiffe { endpoint_id })
        }
        "https_web" => {
            if raw.endpoint_spiffe_id.is_some() {
                ctx.error(
                    &at("endpoint_spiffe_id"),
                    "endpoint_spiffe_id is only used with profile https_spiffe",
                    Some("remove it, or use profile https_spiffe".into()),
                );
            }
            Some(PeerAuth::Web {
                ca_file: raw.ca_file.as_ref().map(|p| cfg.dir.join(p)),
            })
        }
        other => {
            ctx.error(
                &at("profile"),
                format!("unknown profile `{other}`"),
                Some(PROFILE_HINT.into()),
            );
            None
        }
    }
}

/// The initial bundle file (it must exist).
fn bundle_file(
    i: usize,
    raw: &RawRelationship,
    cfg: &Config,
    ctx: &mut Ctx<'_, RawSettings>,
) -> Option<PathBuf> {
    let bundle_file = raw.bundle_file.as_ref().map(|p| cfg.dir.join(p));
    if let Some(f) = &bundle_file {
        if !f.is_file() {
            ctx.error(
                &format!("trust_domains[{i}].bundle_file"),
                format!("bundle file {} does not exist", f.display()),
                Some("get it out of band with `warden bundle --format spiffe` on the peer".into()),
            );
        }
    }
    bundle_file
}

fn endpoint_id(
    i: usize,
    raw: &RawRelationship,
    td: Option<&TrustDomain>,
    ctx: &mut Ctx<'_, RawSettings>,
) -> Option<SpiffeId> {
    let path = format!("trust_domains[{i}].endpoint_spiffe_id");
    let Some(text) = &raw.endpoint_spiffe_id else {
        ctx.error(
            &format!("trust_domains[{i}].profile"),
            "profile https_spiffe needs endpoint_spiffe_id",
            Some("the SPIFFE ID the bundle endpoint serves with, e.g. spiffe://cluster-b.example/warden/control-plane".into()),
        );
        return None;
    };
    match text.parse::<SpiffeId>() {
        Ok(id) if td.is_some_and(|td| !id.is_member_of(td)) => {
            ctx.error(
                &path,
                format!("`{id}` is not in trust domain `{}`", raw.trust_domain),
                Some(
                    "an https_spiffe endpoint serves an SVID of the trust domain it federates"
                        .into(),
                ),
            );
            None
        }
        Ok(id) => Some(id),
        Err(e) => {
            ctx.error(&path, format!("invalid SPIFFE ID: {e}"), None);
            None
        }
    }
}

/// `upstreams[i]` of a workload file, when it names a workload of another trust domain
/// (`spiffe_id` and `address`, both or neither). `None` after reporting a problem;
/// `Some(None)` for an upstream of this config.
pub(super) fn foreign_upstream(
    i: usize,
    raw: &super::raw::RawUpstream,
    ctx: &mut Ctx<'_, super::raw::RawWorkload>,
) -> Option<Option<super::ForeignUpstream>> {
    let at = |k: &str| format!("upstreams[{i}].{k}");
    match (&raw.spiffe_id, &raw.address) {
        (None, None) => Some(None),
        (Some(id), Some(addr)) => {
            let address = ctx.addr(&at("address"), addr);
            let spiffe_id = match id.parse::<SpiffeId>() {
                Ok(id) if !id.path().is_empty() => Some(id),
                Ok(_) => {
                    ctx.error(
                        &at("spiffe_id"),
                        "the upstream's SPIFFE ID needs a path",
                        Some("e.g. spiffe://cluster-b.example/ns/shop/sa/backend".into()),
                    );
                    None
                }
                Err(e) => {
                    ctx.error(&at("spiffe_id"), format!("invalid SPIFFE ID: {e}"), None);
                    None
                }
            };
            Some(Some(super::ForeignUpstream {
                spiffe_id: spiffe_id?,
                address: address?,
            }))
        }
        _ => {
            ctx.error(
                &at("workload"),
                "an upstream in another trust domain needs both spiffe_id and address",
                Some("spiffe_id: the workload's ID in its trust domain (federated in federation.yaml); address: its sidecar's inbound IP:port".into()),
            );
            None
        }
    }
}

#[cfg(test)]
#[path = "federation_tests.rs"]
mod tests;
