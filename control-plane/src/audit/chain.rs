//! The hash chain: each record's hash covers its sequence number, the previous record's
//! hash and its canonical encoding, so editing, deleting or reordering a stored record
//! breaks every link from there on. Pure: no I/O.

use sha2::{Digest, Sha256};

/// A SHA-256 link hash.
pub type Hash = [u8; 32];

/// The hash before the first record of a new store.
pub const GENESIS: Hash = [0u8; 32];

const DOMAIN: &[u8] = b"warden-audit-chain-v1\0";

/// The hash of record `seq` whose canonical body is `body`, following `prev`.
pub fn link(prev: &Hash, seq: i64, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update((body.len() as u64).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// One stored link as read back for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    /// Sequence number.
    pub seq: i64,
    /// The body as stored.
    pub body: Vec<u8>,
    /// The previous hash as stored.
    pub prev: Vec<u8>,
    /// The hash as stored.
    pub hash: Vec<u8>,
}

/// Why a chain failed verification: the first bad record and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct Broken {
    /// The first bad record's sequence number.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// Checks links in order, starting after `anchor` (the hash of the last pruned record,
/// or [`GENESIS`]) at sequence `first_seq`.
#[derive(Debug)]
pub struct Verifier {
    prev: Hash,
    next_seq: i64,
    checked: u64,
}

impl Verifier {
    /// A verifier expecting `first_seq` to follow `anchor`.
    pub fn new(anchor: Hash, first_seq: i64) -> Verifier {
        Verifier {
            prev: anchor,
            next_seq: first_seq,
            checked: 0,
        }
    }

    /// Check the next stored link.
    pub fn check(&mut self, l: &StoredLink) -> Result<(), Broken> {
        let broken = |problem: String| Broken {
            seq: l.seq,
            problem,
        };
        if l.seq != self.next_seq {
            return Err(Broken {
                seq: self.next_seq,
                problem: format!("missing (the next stored record is {})", l.seq),
            });
        }
        if l.prev.as_slice() != self.prev.as_slice() {
            return Err(broken(
                "its previous-hash does not match the record before it (a record before it was removed or rewritten)".into(),
            ));
        }
        let want = link(&self.prev, l.seq, &l.body);
        if l.hash.as_slice() != want.as_slice() {
            return Err(broken(
                "its content does not match its hash (edited)".into(),
            ));
        }
        self.prev = want;
        self.next_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Records checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last good record.
    pub fn head(&self) -> Hash {
        self.prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<StoredLink> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let body = format!("{{\"n\":{seq}}}").into_bytes();
                let hash = link(&prev, seq, &body);
                let l = StoredLink {
                    seq,
                    body,
                    prev: prev.to_vec(),
                    hash: hash.to_vec(),
                };
                prev = hash;
                l
            })
            .collect()
    }

    fn verify(links: &[StoredLink]) -> Result<u64, Broken> {
        let mut v = Verifier::new(GENESIS, 1);
        for l in links {
            v.check(l)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn an_edited_body_names_that_record() {
        let mut c = chain(5);
        c[2].body = b"{\"n\":99}".to_vec();
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }

    #[test]
    fn a_deleted_record_names_the_missing_sequence() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c).unwrap_err().seq, 2);
    }

    #[test]
    fn a_rehashed_edit_is_caught_at_the_next_record() {
        let mut c = chain(5);
        c[2].body = b"{\"n\":99}".to_vec();
        let prev: Hash = c[2].prev.clone().try_into().unwrap();
        c[2].hash = link(&prev, 3, &c[2].body).to_vec();
        assert_eq!(verify(&c).unwrap_err().seq, 4);
    }

    #[test]
    fn swapped_records_are_caught() {
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify(&c).unwrap_err().seq, 2);
    }
}
