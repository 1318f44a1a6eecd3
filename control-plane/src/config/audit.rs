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

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::super::tests::{errors, sample};

    fn with_audit(section: &str) -> tempfile::TempDir {
        let dir = sample();
        // The sample's own `audit:` section (the last one in the file) is replaced.
        let path = dir.path().join("warden.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept = text.split("\naudit:").next().unwrap().to_string();
        std::fs::write(&path, kept + "\n").unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        writeln!(f, "audit:\n{section}").unwrap();
        dir
    }

    #[test]
    fn an_audit_section_is_read_with_its_defaults() {
        let dir = with_audit("  listen: 127.0.0.1:18009\n  sample_allows: 0.5");
        let cfg = crate::config::load(dir.path()).unwrap();
        assert_eq!(cfg.audit.listen, Some("127.0.0.1:18009".parse().unwrap()));
        assert_eq!(cfg.audit.sample_allows, 0.5);
        assert_eq!(cfg.audit.max_size_mib, 1024);
    }

    #[test]
    fn bad_audit_values_are_reported_at_their_key() {
        for (section, needle) in [
            ("  sample_allows: 2", "not a fraction"),
            ("  listen: nowhere", "not an IP:port"),
            ("  listen: 0.0.0.0:18009", "unspecified"),
            ("  retention: forever", "invalid duration"),
            ("  otlp_endpoint: collector:4317", "not an http(s) URL"),
            ("  colour: blue", "colour"),
        ] {
            let dir = with_audit(section);
            let errs = errors(dir.path());
            assert!(
                errs.iter().any(|e| e.to_string().contains(needle)),
                "{section}: {errs:?}"
            );
        }
    }
}
