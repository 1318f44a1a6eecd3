//! Who may open an ADS stream for which node id. Today Warden serves plaintext gRPC and
//! trusts the node id (see `warden serve`'s warning); the [`NodeAuthorizer`] seam is where
//! token or mTLS checks slot in: it sees the caller (remote address, metadata, TLS peer
//! certificates) and the node id the first request claims, once per stream.

use std::net::SocketAddr;

use tonic::metadata::MetadataMap;

use crate::xds::node::NodeClaim;

/// What the server knows about the caller of one stream.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Remote address of the connection, if known.
    pub remote_addr: Option<SocketAddr>,
    /// gRPC request metadata (e.g. `authorization`).
    pub metadata: MetadataMap,
}

/// Decides whether a caller may receive a node's configuration.
///
/// Contract: called once per stream before anything is sent; an `Err` ends the stream
/// with that status. Must not block (no I/O); keep any key material pre-loaded.
pub trait NodeAuthorizer: Send + Sync + std::fmt::Debug + 'static {
    /// Allows or refuses `caller` acting as `node` (node id, cluster, instance IP).
    // `tonic::Status` is the gRPC error the stream ends with; returned once per stream.
    #[allow(clippy::result_large_err)]
    fn authorize(&self, caller: &Caller, node: &NodeClaim) -> Result<(), tonic::Status>;
}

/// Accepts every caller: the plaintext mode of this release.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnyCaller;

impl NodeAuthorizer for AllowAnyCaller {
    #[allow(clippy::result_large_err)]
    fn authorize(&self, _caller: &Caller, _node: &NodeClaim) -> Result<(), tonic::Status> {
        Ok(())
    }
}
