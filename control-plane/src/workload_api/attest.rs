//! Caller attestation: who is on the other end of the Unix socket (uid, gid and pid from
//! `SO_PEERCRED`, executable from `/proc/<pid>/exe`), and which workload entries it
//! matches. An entry matches when *all* its selectors match. Pure except [`Caller::from_cred`].

use std::fmt;
use std::path::PathBuf;

pub use crate::identity::{Entry, Selector, SelectorError};

/// What the kernel told us about the peer process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// `/proc/<pid>/exe`, when readable.
    pub exe: Option<PathBuf>,
}

impl Caller {
    /// Build from socket credentials, resolving the executable through `/proc`.
    pub fn from_cred(cred: &tokio::net::unix::UCred) -> Caller {
        let pid = cred.pid();
        let exe = pid.and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok());
        Caller {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            exe,
        }
    }

    fn has(&self, selector: &Selector) -> bool {
        match selector {
            Selector::Uid(n) => self.uid == *n,
            Selector::Gid(n) => self.gid == *n,
            Selector::Path(p) => self.exe.as_deref() == Some(p.as_path()),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid={} gid={}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid={pid}")?;
        }
        if let Some(exe) = &self.exe {
            write!(f, " exe={}", exe.display())?;
        }
        Ok(())
    }
}

/// The entries whose selectors all match the caller, in config order.
pub fn matching<'a>(entries: &'a [Entry], caller: &Caller) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| !e.selectors.is_empty() && e.selectors.iter().all(|s| caller.has(s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, selectors: &[&str]) -> Entry {
        Entry {
            name: name.into(),
            spiffe_id: format!("spiffe://example.org/{name}").parse().unwrap(),
            selectors: selectors.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn caller(uid: u32, gid: u32, exe: &str) -> Caller {
        Caller {
            uid,
            gid,
            pid: Some(42),
            exe: Some(exe.into()),
        }
    }

    #[test]
    fn an_entry_matches_only_when_every_selector_matches() {
        let entries = [entry("app", &["unix:uid:1000", "unix:path:/usr/bin/app"])];
        assert_eq!(
            matching(&entries, &caller(1000, 5, "/usr/bin/app")).len(),
            1
        );
        assert!(matching(&entries, &caller(1000, 5, "/usr/bin/other")).is_empty());
        assert!(matching(&entries, &caller(1001, 5, "/usr/bin/app")).is_empty());
    }

    #[test]
    fn a_caller_gets_only_the_entries_it_matches() {
        let entries = [
            entry("a", &["unix:uid:1"]),
            entry("b", &["unix:gid:7"]),
            entry("c", &["unix:uid:2"]),
        ];
        let names: Vec<_> = matching(&entries, &caller(1, 7, "/x"))
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_path_selector_never_matches_an_unknown_executable() {
        let entries = [entry("app", &["unix:path:/usr/bin/app"])];
        let unknown = Caller {
            uid: 0,
            gid: 0,
            pid: None,
            exe: None,
        };
        assert!(matching(&entries, &unknown).is_empty());
    }
}
