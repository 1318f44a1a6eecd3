//! `audit:` in warden.yaml: where sidecars send their decision records, how many allows
//! are kept, how long and how much the store keeps, and an optional OTLP collector.

use std::net::SocketAddr;
use std::time::Duration;

use super::ctx::Ctx;
use super::raw::RawWarden;

/// Audit trail settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// The mTLS access-log (ALS) listener sidecars send decision records to; `None`:
    /// decisions are not collected (identity and authority events still are).
    pub listen: Option<SocketAddr>,
    /// The address sidecars dial for it (default: `listen`).
    pub advertise: Option<SocketAddr>,
    /// Fraction of allowed requests recorded (denies always are); default 1.
    pub sample_allows: f64,
    /// Records older than this are deleted (default 30d).
    pub retention: Duration,
    /// The store is kept under this many MiB (default 1024).
    pub max_size_mib: u64,
    /// OTLP/gRPC collector (`http://host:port`) the records are also exported to.
    pub otlp_endpoint: Option<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            listen: None,
            advertise: None,
            sample_allows: 1.0,
            retention: Duration::from_secs(30 * 24 * 3600),
            max_size_mib: 1024,
            otlp_endpoint: None,
        }
    }
}

impl Eq for AuditSettings {}

pub(super) fn audit_settings(raw: &RawWarden, ctx: &mut Ctx<'_, RawWarden>) -> AuditSettings {
    let Some(a) = &raw.audit else {
        return AuditSettings::default();
    };
    let d = AuditSettings::default();
    let listen = a
        .listen
        .as_deref()
        .and_then(|t| ctx.addr("audit.listen", t));
    let advertise = a
        .advertise
        .as_deref()
        .and_then(|t| ctx.addr("audit.advertise", t));
    let sample_allows = match a.sample_allows {
        None => d.sample_allows,
        Some(f) if (0.0..=1.0).contains(&f) => f,
        Some(f) => {
            ctx.error(
                "audit.sample_allows",
                format!("{f} is not a fraction"),
                Some("use a number from 0 (no allows) to 1 (every allow, the default)".into()),
            );
            d.sample_allows
        }
    };
    if advertise.is_none() && listen.is_some_and(|l| l.ip().is_unspecified()) {
        ctx.error(
            "audit.listen",
            "sidecars cannot dial an unspecified address",
            Some("set audit.advertise to the address sidecars reach".into()),
        );
    }
    if let Some(e) = &a.otlp_endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            ctx.error(
                "audit.otlp_endpoint",
                format!("`{e}` is not an http(s) URL"),
                Some("e.g. http://127.0.0.1:4317".into()),
            );
        }
    }
    AuditSettings {
        listen,
        advertise,
        sample_allows,
        retention: ctx.ttl("audit.retention", a.retention.as_deref(), d.retention),
        max_size_mib: a.max_size_mib.unwrap_or(d.max_size_mib).max(1),
        otlp_endpoint: a.otlp_endpoint.clone(),
    }
}
