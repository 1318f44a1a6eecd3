//! Why an upstream CA cannot work: one [`UpstreamDefect`] per problem, each naming the
//! certificate and the fix. Vocabulary only; `upstream_check.rs` finds them.

use std::path::PathBuf;

/// One reason an upstream CA cannot work; each names the certificate and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamDefect {
    #[error("{cert} is not a CA certificate (basicConstraints CA=false or missing); use a CA certificate (openssl: `basicConstraints=critical,CA:TRUE`)")]
    NotCa { cert: String },
    #[error("{cert} has keyUsage without keyCertSign, so certificates it signs are invalid; reissue it with `keyUsage=critical,keyCertSign,cRLSign`")]
    NoKeyCertSign { cert: String },
    #[error("{cert} is not valid before {not_before}; check the clock or wait until then")]
    NotYetValid { cert: String, not_before: String },
    #[error("{cert} expired on {not_after}; renew the upstream CA (nothing was written to the state directory)")]
    Expired { cert: String, not_after: String },
    #[error("{cert} expires on {not_after}, before a new Warden CA would (ca.ttl {ttl} from now: {needed}); renew the upstream CA or lower ca.ttl")]
    EndsTooSoon {
        cert: String,
        not_after: String,
        ttl: String,
        needed: String,
    },
    #[error("{cert} has pathLenConstraint {pathlen}, but Warden adds an intermediate CA below it ({needed} CA certificate(s) would follow it); reissue it with pathlen:{needed} or more, or without a pathlen")]
    PathLen {
        cert: String,
        pathlen: u32,
        needed: u32,
    },
    #[error("{cert} is not signed by the next certificate in the file ({next}); list the chain in order: the signing CA first, then each issuer up to the root")]
    BrokenChain { cert: String, next: String },
    #[error("{cert} has no authorityKeyIdentifier, which RFC 5280 §4.2.1.1 requires of every certificate but a self-signed root; strict verifiers (openssl -x509_strict, Python's ssl) refuse the chain; reissue it with `authorityKeyIdentifier=keyid`")]
    NoAuthorityKeyId { cert: String },
    #[error("{cert} is self-signed but not the last certificate in the file; only the root may be self-signed, and it comes last (remove duplicates and anything after it)")]
    RootNotLast { cert: String },
    #[error("the chain ends in {cert}, which is not a self-signed root; append the certificates up to the root CA to the file (sidecars need the root as their trust anchor)")]
    NoRoot { cert: String },
    #[error("{cert} has name constraints that exclude {name}, which Warden's certificates carry (the trust domain's URI SAN in every SVID, the DNS name in the xDS server's); reissue it with constraints that permit it (X509-SVID spec §4.2), or without")]
    NameConstraints { cert: String, name: String },
    #[error("a test SVID signed under this upstream CA does not verify: {reason}")]
    TestSvid { reason: String },
}

/// Every defect of the upstream CA in `path` (empty when it is usable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream CA {path}: {}", .defects.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct UpstreamDefects {
    pub path: PathBuf,
    pub defects: Vec<UpstreamDefect>,
}
