//! What one control-plane replica sets apart from the shared config repo: its own ADS and
//! admin listen addresses and its own CA state directory (`warden serve --xds-listen
//! --admin-listen --state-dir`). Several replicas read the same `warden.yaml`; each
//! applies its overrides to every config it loads (at start and at every reload), so a
//! reload never sees its own state directory "change". Pure: no I/O.
//!
//! With a self-signed root every replica would create its own root, and a sidecar's
//! bundle (one replica's root) would not verify the others' SVIDs; [`ReplicaOverrides::
//! self_signed_warning`] says so at start (replicas need `ca.upstream`).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Config;

/// Per-replica settings that replace the config's (each `None` keeps the config's value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaOverrides {
    /// Replaces `server.xds_listen`.
    pub xds_listen: Option<SocketAddr>,
    /// Replaces `server.admin_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Replaces `ca.state_dir` (absolute: the CLI resolves it against its working dir).
    pub state_dir: Option<PathBuf>,
}

impl ReplicaOverrides {
    /// Whether any override is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `cfg` with the overrides applied.
    pub fn apply(&self, mut cfg: Config) -> Config {
        if let Some(a) = self.xds_listen {
            cfg.server.xds_listen = a;
        }
        if let Some(a) = self.admin_listen {
            cfg.server.admin_listen = a;
        }
        if let Some(d) = &self.state_dir {
            cfg.ca.state_dir = d.clone();
        }
        cfg
    }

    /// A warning when this process looks like one of several replicas (its own state
    /// dir) while the CA is a self-signed root: each replica would have its own root.
    pub fn self_signed_warning(&self, cfg: &Config) -> Option<String> {
        (self.state_dir.is_some() && cfg.ca.upstream.is_none()).then(|| {
            format!(
                "--state-dir {} with a self-signed CA (no ca.upstream): this replica has its own root, so sidecars attached to another replica do not trust its SVIDs. Run several replicas only with a shared ca.upstream (see README, \"Control-plane replicas\").",
                cfg.ca.state_dir.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn mesh() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
        crate::config::load(&root).unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn no_overrides_keep_the_config_as_it_is() {
        let cfg = mesh();
        let none = ReplicaOverrides::default();
        assert!(none.is_empty());
        let same = none.apply(cfg.clone());
        assert_eq!(same.server, cfg.server);
        assert_eq!(same.ca.state_dir, cfg.ca.state_dir);
    }

    #[test]
    fn each_override_replaces_only_its_own_setting() {
        let cfg = mesh();
        let o = ReplicaOverrides {
            xds_listen: Some("127.0.0.2:28000".parse().unwrap()),
            admin_listen: None,
            state_dir: Some(PathBuf::from("/var/lib/warden/replica-b")),
        };
        let out = o.apply(cfg.clone());
        assert_eq!(out.server.xds_listen.to_string(), "127.0.0.2:28000");
        assert_eq!(out.server.admin_listen, cfg.server.admin_listen);
        assert_eq!(out.ca.state_dir, Path::new("/var/lib/warden/replica-b"));
        assert_eq!(out.ca_params().state_dir, out.ca.state_dir);
    }

    #[test]
    fn a_replica_state_dir_with_a_self_signed_root_is_warned_about() {
        let cfg = mesh();
        assert!(cfg.ca.upstream.is_none(), "the example mesh is self-signed");
        let replica = ReplicaOverrides {
            state_dir: Some(PathBuf::from("/tmp/b")),
            ..Default::default()
        };
        let w = replica.self_signed_warning(&cfg).unwrap();
        assert!(w.contains("ca.upstream"), "{w}");
        assert!(ReplicaOverrides::default()
            .self_signed_warning(&cfg)
            .is_none());
    }
}
