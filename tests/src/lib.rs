//! Harness for Warden's end-to-end suite: real `warden serve`, real Envoy 1.40 sidecars,
//! real TLS and real sockets, all on 127.0.0.1.
//!
//! What it does: finds the binaries ([`locate`]), picks free ports ([`ports`]), writes a
//! config directory ([`mesh::MeshSpec`]), starts processes that are killed by PID when
//! their guard drops or when the test process dies ([`process`]), runs tiny echo apps
//! ([`app`]), and speaks plain HTTP/1.1 ([`http`]) and TLS ([`tls`]) to them. It does not
//! build anything: the test recipe builds `warden` (and the filter) before `cargo test`.
//!
//! Blocking std code on purpose: every wait is bounded ([`wait`]).

pub mod app;
pub mod certs;
pub mod dns;
pub mod envoy;
pub mod http;
pub mod load;
pub mod locate;
pub mod mesh;
pub mod ports;
pub mod process;
pub mod raw_ads;
pub mod replicas;
pub mod tls;
pub mod wait;
pub mod warden;

pub use mesh::{Mesh, MeshSpec, WorkloadSpec, XdsMode};

/// Declares each scenario `fn name(mode: XdsMode) -> anyhow::Result<()>` as two tests,
/// `sotw::name` and `delta::name`.
#[macro_export]
macro_rules! scenarios_for_both_xds_modes {
    ($($name:ident),* $(,)?) => {
        mod sotw {
            $(
                #[test]
                fn $name() -> ::anyhow::Result<()> {
                    $crate::process::report_failure(super::$name($crate::XdsMode::Sotw))
                }
            )*
        }
        mod delta {
            $(
                #[test]
                fn $name() -> ::anyhow::Result<()> {
                    $crate::process::report_failure(super::$name($crate::XdsMode::Delta))
                }
            )*
        }
    };
}
