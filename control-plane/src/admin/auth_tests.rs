//! Operator authentication: the pure check, `warden validate`'s refusal of an open
//! non-loopback admin listener, and the whole admin router over a real socket (probes and
//! metrics answer anyone; `POST /ca/*` only the operator token; the token file re-read).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::admin::{ca, AdminState, ConfigInfo};
use crate::http_client::{request_as, Limits};
use crate::identity::SystemClock;
use crate::plane::ControlPlane;
use crate::test_support::{handles, sample_mesh, shared};

const TOKEN: &str = "op-7f3c9a1e5b2d4c6a8e0f";

#[test]
fn only_the_exact_bearer_token_passes() {
    assert_eq!(check(TOKEN, Some(&format!("Bearer {TOKEN}"))), Ok(()));
    assert_eq!(check(TOKEN, Some(&format!("bearer {TOKEN} "))), Ok(()));
    assert_eq!(check(TOKEN, None), Err(AuthError::NoCredential));
    for bad in ["", "Bearer ", "Bearer", &format!("Basic {TOKEN}"), TOKEN] {
        assert_eq!(
            check(TOKEN, Some(bad)),
            Err(AuthError::NoCredential),
            "{bad:?}"
        );
    }
    let prefix = &TOKEN[..TOKEN.len() - 1];
    for wrong in [prefix, &format!("{TOKEN}0"), "op-7F3C9A1E5B2D4C6A8E0F"] {
        let err = check(TOKEN, Some(&format!("Bearer {wrong}"))).unwrap_err();
        assert_eq!(err, AuthError::WrongToken);
        assert!(!err.to_string().contains(prefix), "never echoes a token");
    }
}

#[test]
fn a_short_empty_missing_or_huge_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t");
    assert!(matches!(read_token(&f), Err(AuthError::TokenFile(_))));
    for text in [
        "".to_string(),
        "  \n".into(),
        "short".into(),
        "x".repeat(5000),
    ] {
        std::fs::write(&f, &text).unwrap();
        assert!(
            matches!(read_token(&f), Err(AuthError::TokenFile(_))),
            "{}",
            text.len()
        );
    }
    std::fs::write(&f, format!("{TOKEN}\n")).unwrap();
    assert_eq!(
        read_token(&f).unwrap(),
        TOKEN,
        "a trailing newline (Secret files) is trimmed"
    );
}

fn mesh_with(server: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    for sub in ["", "workloads", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let main = dir.path().join("warden.yaml");
    let text = std::fs::read_to_string(&main).unwrap();
    let text = text.replace("  admin_listen: 127.0.0.1:18001", server);
    std::fs::write(&main, text).unwrap();
    dir
}

#[test]
fn validate_refuses_a_non_loopback_admin_listener_without_an_operator_token() {
    let open = mesh_with("  admin_listen: 0.0.0.0:18001");
    let errs = crate::config::load(open.path()).unwrap_err().to_string();
    assert!(errs.contains("warden.yaml:"), "{errs}");
    assert!(errs.contains("is not loopback"), "{errs}");
    assert!(errs.contains("admin_token_file"), "{errs}");

    let short = mesh_with("  admin_listen: 0.0.0.0:18001\n  admin_token_file: token");
    std::fs::write(short.path().join("token"), "abc\n").unwrap();
    let errs = crate::config::load(short.path()).unwrap_err().to_string();
    assert!(errs.contains("shorter than 16"), "{errs}");

    let ok = mesh_with("  admin_listen: 0.0.0.0:18001\n  admin_token_file: token");
    std::fs::write(ok.path().join("token"), TOKEN).unwrap();
    let cfg = crate::config::load(ok.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.server.admin_token_file, Some(ok.path().join("token")));

    for lo in ["127.0.0.2:18001", "[::1]:18001"] {
        let dir = mesh_with(&format!("  admin_listen: \"{lo}\""));
        assert!(crate::config::load(dir.path()).is_ok(), "{lo} is loopback");
    }
}

async fn call(addr: std::net::SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> u16 {
    let limits = Limits {
        connect: Duration::from_secs(2),
        answer: Duration::from_secs(20),
        max_body: 1 << 20,
    };
    request_as(addr, method, path, bearer, limits)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn off_loopback_probes_and_metrics_answer_anyone_but_ca_steps_need_the_operator_token() {
    let dir = mesh_with("  admin_listen: 0.0.0.0:18001\n  admin_token_file: token");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = crate::config::load(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    cfg.ca.state_dir = sample_mesh(state.path()).ca.state_dir;
    assert!(!cfg.server.admin_listen.ip().is_loopback());
    let auth = OperatorAuth::new(cfg.server.admin_token_file.clone());
    let sh = shared();
    let (cp, _) =
        ControlPlane::start(cfg, "/m.wasm".into(), Arc::new(SystemClock), handles(&sh)).unwrap();
    let cp = Arc::new(cp);
    let admin = AdminState {
        xds: handles(&sh),
        ready: Arc::new(AtomicBool::new(true)),
        config: Arc::new(Mutex::new(ConfigInfo::of(&cp.config()))),
    };
    let app = crate::admin::router(admin).merge(protect(ca::router(cp.clone()), auth));
    // The config says 0.0.0.0; the test binds loopback only (same router, same checks).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::admin::serve_router(listener, app));

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/config_dump",
        "/ca/status",
    ] {
        assert_eq!(call(addr, "GET", path, None).await, 200, "{path}");
    }
    let bad = "op-0000000000000000000";
    for path in ["/ca/prepare", "/ca/activate", "/ca/retire?force=true"] {
        assert_eq!(
            call(addr, "POST", path, None).await,
            401,
            "{path} without a token"
        );
        assert_eq!(
            call(addr, "POST", path, Some(bad)).await,
            401,
            "{path} with a wrong token"
        );
    }
    assert_eq!(cp.ca_status().next, None, "nothing changed");
    assert_eq!(call(addr, "POST", "/ca/prepare", Some(TOKEN)).await, 200);
    assert!(cp.ca_status().next.is_some(), "the operator's step ran");

    // The Secret is rotated: the file is re-read, the old token stops working.
    let rotated = "op-new-0123456789abcdef";
    std::fs::write(&token_file, rotated).unwrap();
    assert_eq!(call(addr, "POST", "/ca/activate", Some(TOKEN)).await, 401);
    assert_ne!(call(addr, "POST", "/ca/activate", Some(rotated)).await, 401);
    // The file disappears: refused (fail closed), not opened.
    std::fs::remove_file(&token_file).unwrap();
    assert_eq!(call(addr, "POST", "/ca/retire", Some(rotated)).await, 503);
    assert_eq!(call(addr, "GET", "/healthz", None).await, 200);
}
