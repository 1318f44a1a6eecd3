//! The embedded audit store: one SQLite file (`audit.db` in the state directory). Records
//! are appended in batches (one transaction per batch) and hash-chained (`chain.rs`);
//! retention deletes the oldest records and keeps the hash of the last one deleted as the
//! chain's new anchor, so `verify` still checks everything that is left.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::chain::{self, Broken, Hash, StoredLink, Verifier, GENESIS};
use super::event::Event;
use super::query::{Query, Row};
use super::AuditError;

/// File name of the store inside the state directory.
pub const FILE: &str = "audit.db";

/// How long and how much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delete records older than this many milliseconds.
    pub max_age_ms: i64,
    /// Keep the database's used pages under this many bytes (oldest records go first).
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_ms: 30 * 24 * 3600 * 1000,
            max_bytes: 1 << 30,
        }
    }
}

/// What `verify` found on an intact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// First sequence number still stored (earlier ones were removed by retention).
    pub first_seq: i64,
    /// Hex of the head hash.
    pub head: String,
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    head_seq: i64,
    head_hash: Hash,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  decision_id TEXT,
  source TEXT,
  destination TEXT,
  decision TEXT,
  path TEXT,
  body BLOB NOT NULL,
  prev BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_decision_id ON records(decision_id);
CREATE INDEX IF NOT EXISTS records_time ON records(time_ms);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
";

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, AuditError> {
        let conn = Connection::open(path).map_err(|e| AuditError::db(path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(|e| AuditError::db(path, e))?;
        let (head_seq, head_hash) = read_head(&conn).map_err(|e| AuditError::db(path, e))?;
        Ok(Store {
            conn,
            head_seq,
            head_hash,
        })
    }

    /// Open read-only (for the CLI while `warden serve` writes).
    pub fn open_read_only(path: &Path) -> Result<Store, AuditError> {
        if !path.exists() {
            return Err(AuditError::Missing(path.to_path_buf()));
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| AuditError::db(path, e))?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        let (head_seq, head_hash) = read_head(&conn).map_err(|e| AuditError::db(path, e))?;
        Ok(Store {
            conn,
            head_seq,
            head_hash,
        })
    }

    /// The last sequence number written (0 when empty).
    pub fn head_seq(&self) -> i64 {
        self.head_seq
    }

    /// Append `events` in one transaction, chaining each to the one before; returns
    /// each one's sequence number and hash.
    pub fn append(&mut self, events: &[Event]) -> Result<Vec<(i64, Hash)>, AuditError> {
        let tx = self.conn.transaction().map_err(AuditError::sql)?;
        let (mut seq, mut prev) = (self.head_seq, self.head_hash);
        let mut links = Vec::with_capacity(events.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO records (seq, time_ms, kind, decision_id, source, destination, decision, path, body, prev, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(AuditError::sql)?;
            for e in events {
                seq += 1;
                let body = e.canonical();
                let hash = chain::link(&prev, seq, &body);
                let c = e.columns();
                ins.execute(params![
                    seq,
                    e.time_ms,
                    c.kind,
                    c.decision_id,
                    c.source,
                    c.destination,
                    c.decision,
                    c.path,
                    body,
                    prev.as_slice(),
                    hash.as_slice()
                ])
                .map_err(AuditError::sql)?;
                prev = hash;
                links.push((seq, hash));
            }
        }
        set_meta(&tx, "head_seq", &seq.to_be_bytes())?;
        tx.commit().map_err(AuditError::sql)?;
        self.head_seq = seq;
        self.head_hash = prev;
        Ok(links)
    }

    /// Delete what `retention` says to, oldest first; returns how many were deleted.
    pub fn prune(&mut self, retention: Retention, now_ms: i64) -> Result<u64, AuditError> {
        let cutoff = now_ms.saturating_sub(retention.max_age_ms);
        let by_age: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(seq) FROM records WHERE time_ms < ?1",
                [cutoff],
                |r| r.get(0),
            )
            .map_err(AuditError::sql)?;
        let mut deleted = by_age.map_or(Ok(0), |s| self.delete_through(s))?;
        while self.used_bytes()? > retention.max_bytes {
            let (first, count): (Option<i64>, i64) = self
                .conn
                .query_row("SELECT MIN(seq), COUNT(*) FROM records", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(AuditError::sql)?;
            let Some(first) = first else { break };
            if count <= 1 {
                break;
            }
            deleted += self.delete_through(first + (count / 10).max(1) - 1)?;
        }
        Ok(deleted)
    }

    fn used_bytes(&self) -> Result<u64, AuditError> {
        let q = |p: &str| -> Result<i64, AuditError> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .map_err(AuditError::sql)
        };
        let used = (q("page_count")? - q("freelist_count")?) * q("page_size")?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    /// Delete every record up to `last` and make its hash the new anchor.
    fn delete_through(&mut self, last: i64) -> Result<u64, AuditError> {
        let tx = self.conn.transaction().map_err(AuditError::sql)?;
        let hash: Option<Vec<u8>> = tx
            .query_row("SELECT hash FROM records WHERE seq = ?1", [last], |r| {
                r.get(0)
            })
            .optional()
            .map_err(AuditError::sql)?;
        let Some(hash) = hash else { return Ok(0) };
        let n = tx
            .execute("DELETE FROM records WHERE seq <= ?1", [last])
            .map_err(AuditError::sql)?;
        set_meta(&tx, "anchor_hash", &hash)?;
        set_meta(&tx, "anchor_seq", &last.to_be_bytes())?;
        tx.commit().map_err(AuditError::sql)?;
        Ok(n as u64)
    }

    /// Records matching `q`, oldest first.
    pub fn query(&self, q: &Query) -> Result<Vec<Row>, AuditError> {
        let (sql, args) = q.to_sql();
        let mut st = self.conn.prepare(&sql).map_err(AuditError::sql)?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, i64>(0)?, bytes(r, 1), bytes(r, 2)))
            })
            .map_err(AuditError::sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body, hash) = row.map_err(AuditError::sql)?;
            let event: Event = serde_json::from_slice(&body).map_err(|e| AuditError::Corrupt {
                seq,
                detail: e.to_string(),
            })?;
            out.push(Row {
                seq,
                hash: hex::encode(hash),
                event,
            });
        }
        Ok(out)
    }

    /// Check every stored record against the chain; names the first bad one.
    pub fn verify(&self) -> Result<Result<Verified, Broken>, AuditError> {
        let anchor_seq = get_meta(&self.conn, "anchor_seq")?
            .map(|b| be_i64(&b))
            .unwrap_or(0);
        let anchor: Hash = match get_meta(&self.conn, "anchor_hash")? {
            Some(h) => match h.try_into() {
                Ok(h) => h,
                Err(_) => {
                    return Ok(Err(Broken {
                        seq: anchor_seq + 1,
                        problem: "the retention anchor is malformed".into(),
                    }))
                }
            },
            None => GENESIS,
        };
        let mut v = Verifier::new(anchor, anchor_seq + 1);
        let mut st = self
            .conn
            .prepare("SELECT seq, body, prev, hash, time_ms, kind, decision_id, source, destination, decision, path FROM records ORDER BY seq")
            .map_err(AuditError::sql)?;
        let mut rows = st.query([]).map_err(AuditError::sql)?;
        while let Some(r) = rows.next().map_err(AuditError::sql)? {
            let l = StoredLink {
                seq: r.get(0).map_err(AuditError::sql)?,
                body: bytes(r, 1),
                prev: bytes(r, 2),
                hash: bytes(r, 3),
            };
            if let Err(b) = v.check(&l) {
                return Ok(Err(b));
            }
            if let Err(problem) = columns_match(&l.body, r) {
                return Ok(Err(Broken {
                    seq: l.seq,
                    problem,
                }));
            }
        }
        let head_seq = get_meta(&self.conn, "head_seq")?
            .map(|b| be_i64(&b))
            .unwrap_or(0);
        let last = anchor_seq + v.checked() as i64;
        if head_seq > last {
            return Ok(Err(Broken {
                seq: last + 1,
                problem: format!(
                    "missing: records {} to {head_seq} were written and are gone (tail truncated)",
                    last + 1
                ),
            }));
        }
        Ok(Ok(Verified {
            records: v.checked(),
            first_seq: anchor_seq + 1,
            head: hex::encode(v.head()),
        }))
    }

    /// The raw connection, for tests that tamper with the file.
    #[doc(hidden)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The promoted columns must say what the hashed body says (else a filter could be
/// fooled by an edited column while the chain still verifies).
fn columns_match(body: &[u8], r: &rusqlite::Row<'_>) -> Result<(), String> {
    let e: Event = serde_json::from_slice(body).map_err(|e| format!("unreadable body: {e}"))?;
    let c = e.columns();
    let got = (
        r.get::<_, i64>(4).ok(),
        r.get::<_, String>(5).ok(),
        r.get::<_, Option<String>>(6).ok().flatten(),
        r.get::<_, Option<String>>(7).ok().flatten(),
        r.get::<_, Option<String>>(8).ok().flatten(),
        r.get::<_, Option<String>>(9).ok().flatten(),
        r.get::<_, Option<String>>(10).ok().flatten(),
    );
    let want = (
        Some(e.time_ms),
        Some(c.kind),
        c.decision_id,
        c.source,
        c.destination,
        c.decision,
        c.path,
    );
    if got == want {
        Ok(())
    } else {
        Err("an indexed column differs from the hashed record (edited)".into())
    }
}

/// A column as bytes whatever its stored type (an edit may store text or a number where
/// a blob was; that must fail the hash check, not the read).
fn bytes(r: &rusqlite::Row<'_>, i: usize) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    match r.get_ref(i) {
        Ok(ValueRef::Blob(b)) | Ok(ValueRef::Text(b)) => b.to_vec(),
        Ok(ValueRef::Integer(n)) => n.to_string().into_bytes(),
        Ok(ValueRef::Real(f)) => f.to_string().into_bytes(),
        Ok(ValueRef::Null) | Err(_) => Vec::new(),
    }
}

fn read_head(conn: &Connection) -> rusqlite::Result<(i64, Hash)> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((seq, hash)) = last {
        return Ok((seq, hash.try_into().unwrap_or(GENESIS)));
    }
    // Empty: continue after the retention anchor, if any.
    let meta = |k: &str| -> rusqlite::Result<Option<Vec<u8>>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .optional()
    };
    let seq = meta("anchor_seq")?.map(|b| be_i64(&b)).unwrap_or(0);
    let hash = meta("anchor_hash")?
        .and_then(|h| h.try_into().ok())
        .unwrap_or(GENESIS);
    Ok((seq, hash))
}

fn set_meta(tx: &rusqlite::Transaction<'_>, key: &str, value: &[u8]) -> Result<(), AuditError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
    .map_err(AuditError::sql)
}

fn get_meta(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, AuditError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(AuditError::sql)
}

fn be_i64(b: &[u8]) -> i64 {
    b.try_into().map(i64::from_be_bytes).unwrap_or(0)
}
