//! The audit trail: every identity issued and every decision, in one tamper-evident
//! store. The pure core is the event schema (`event.rs`), the hash chain (`chain.rs`),
//! queries (`query.rs`), rule locations (`rules.rs`) and access-log entries to events
//! (`als_entry.rs`); the I/O edges are the SQLite store (`store.rs`), the sink the control
//! plane emits through (`sink.rs`, one-line helpers in `emit.rs`), the access-log service
//! for sidecars' decisions (`als.rs`) and the OTLP export (`otlp.rs`). Sampling of allows
//! happens in Envoy (an access-log filter, `xds/resources/audit_log.rs`). See
//! `docs/audit.md`.

pub mod als;
pub mod als_entry;
pub mod chain;
mod emit;
pub mod event;
pub mod otlp;
pub mod query;
pub mod rules;
pub mod sink;
pub mod store;

#[cfg(test)]
mod store_tests;

use std::path::{Path, PathBuf};

pub use event::{Decision, Event, Mode, SvidEvent, What};
pub use query::{Query, Row};
pub use sink::{AuditSink, SinkConfig};
pub use store::{Retention, Store};

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store could not be opened.
    #[error("audit store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("audit store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// No store there.
    #[error("no audit store at {0} (has `warden serve` run with this state directory?)")]
    Missing(PathBuf),
    /// A stored record cannot be read.
    #[error("audit record {seq} is unreadable: {detail}")]
    Corrupt {
        /// The record.
        seq: i64,
        /// The parse error.
        detail: String,
    },
    /// The writer thread could not start.
    #[error("audit writer: {0}")]
    Thread(std::io::Error),
}

impl AuditError {
    fn db(path: &Path, source: rusqlite::Error) -> AuditError {
        AuditError::Open {
            path: path.to_path_buf(),
            source,
        }
    }

    fn sql(e: rusqlite::Error) -> AuditError {
        AuditError::Sql(e)
    }
}
