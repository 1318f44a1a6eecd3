//! The dashboard and the policy playground, served on the admin listener under `/ui`:
//! static pages embedded in the binary (plain HTML, JS and CSS; no build step at run
//! time) and a small read-only JSON API for what `/config_dump`, `/metrics` and
//! `/ca/status` do not already answer:
//!
//! - `GET /ui/api/mesh`: workloads, their sidecars, upstreams and attestation methods,
//!   the policy version and settings (from the live config);
//! - `GET /ui/api/traffic`: allow / deny counts per call edge and per destination, read
//!   from each sidecar Envoy's admin `/stats` (see [`traffic`]);
//! - `GET /ui/api/policy`: the live config's Rego modules, tests, data and settings in
//!   the playground's input shape.
//!
//! The playground page runs the `warden-filter` core compiled to `wasm32-unknown-unknown`
//! (crate `warden-playground`). `./dev build` builds it into `target/playground/` before
//! the CLI; this crate's build script embeds it when it is there (cfg
//! `warden_playground`), and the page says how to build it when it is not.
//!
//! Nothing here changes state. The admin listener has no authentication: it stays on
//! loopback unless the operator exposes it (README: "The dashboard").

mod api;
pub mod traffic;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::plane::ControlPlane;

pub use api::{mesh_view, policy_workspace, MeshView};

/// An embedded file: its bytes and content type.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("ui/assets/index.html"),
    },
    Asset {
        path: "/ui/playground",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("ui/assets/playground.html"),
    },
    Asset {
        path: "/ui/style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("ui/assets/style.css"),
    },
    Asset {
        path: "/ui/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("ui/assets/dashboard.js"),
    },
    Asset {
        path: "/ui/playground.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("ui/assets/playground.js"),
    },
    #[cfg(warden_playground)]
    Asset {
        path: "/ui/pkg/warden_playground.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(
            env!("WARDEN_PLAYGROUND_DIR"),
            "/warden_playground.js"
        )),
    },
    #[cfg(warden_playground)]
    Asset {
        path: "/ui/pkg/warden_playground_bg.wasm",
        content_type: "application/wasm",
        bytes: include_bytes!(concat!(
            env!("WARDEN_PLAYGROUND_DIR"),
            "/warden_playground_bg.wasm"
        )),
    },
];

/// Whether this binary carries the playground's Wasm module.
pub const HAS_PLAYGROUND: bool = cfg!(warden_playground);

/// Routes of the dashboard (pages, assets and the JSON API).
pub fn router(cp: Arc<ControlPlane>) -> Router {
    let mut router = Router::new().route("/ui", get(|| async { Redirect::permanent("/ui/") }));
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    if !HAS_PLAYGROUND {
        router = router
            .route("/ui/pkg/warden_playground.js", get(missing_playground))
            .route("/ui/pkg/warden_playground_bg.wasm", get(missing_playground));
    }
    router.merge(api::router(cp))
}

fn serve(asset: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.bytes,
    )
        .into_response()
}

async fn missing_playground() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this warden binary was built without the playground module: build it with `./dev build`\n",
    )
        .into_response()
}

#[cfg(test)]
#[path = "ui/tests.rs"]
mod tests;
