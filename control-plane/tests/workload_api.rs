//! The Workload API against a client nobody here wrote: the `spiffe` crate's
//! `WorkloadApiClient` (its own tonic and generated code) over a real Unix socket.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spiffe::{JwtSvid, TrustDomain, WorkloadApiClient};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use warden::config::{self, Config};
use warden::identity::Ca;
use warden::workload_api::run_workload_api;

const BACKEND: &str = "spiffe://example.org/ns/demo/sa/backend";

/// A copy of examples/mesh plus `workload-api.yaml` with the given workload entries.
fn config_dir(entries_yaml: &str, renew_fraction: f64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    for sub in ["", "workloads", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for f in std::fs::read_dir(src.join(sub)).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), dir.path().join(sub).join(f.file_name())).unwrap();
            }
        }
    }
    let socket = dir.path().join("run/workload.sock");
    let yaml = format!(
        "socket: {}\nx509_ttl: 1m\njwt_ttl: 5m\nrenew_fraction: {renew_fraction}\nworkloads:\n{entries_yaml}",
        socket.display()
    );
    std::fs::write(dir.path().join("workload-api.yaml"), yaml).unwrap();
    (dir, socket)
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Start the API; dropping the returned sender stops it.
async fn start(dir: &Path, socket: &Path) -> oneshot::Sender<()> {
    let cfg: Config = config::load(dir).unwrap();
    let ca = Arc::new(Ca::load_or_init(&cfg.ca_params(), &warden::identity::SystemClock).unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stop = async move {
            let _ = rx.await;
        };
        run_workload_api(&cfg, ca, stop).await.unwrap();
    });
    for _ in 0..100 {
        if socket.exists() {
            return tx;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("socket {} never appeared", socket.display());
}

async fn client(socket: &Path) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(format!("unix:{}", socket.display()))
        .await
        .unwrap()
}

fn backend_for_my_uid(extra: &str) -> String {
    format!(
        "  - name: backend\n    selectors: [\"unix:uid:{}\"{extra}]\n",
        my_uid()
    )
}

#[tokio::test]
async fn the_spiffe_crate_fetches_an_x509_svid_with_the_trust_bundle() {
    let exe = std::env::current_exe().unwrap();
    let (dir, socket) = config_dir(
        &backend_for_my_uid(&format!(", \"unix:path:{}\"", exe.display())),
        0.5,
    );
    let _stop = start(dir.path(), &socket).await;
    let ctx = client(&socket).await.fetch_x509_context().await.unwrap();
    let svid = ctx.default_svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), BACKEND);
    let td = TrustDomain::new("example.org").unwrap();
    let bundle = ctx.bundle_set().get(&td).expect("bundle for example.org");
    assert_eq!(bundle.authorities().len(), 1);
    let bundles = client(&socket).await.fetch_x509_bundles().await.unwrap();
    assert!(bundles.get(&td).is_some());
}

#[tokio::test]
async fn the_x509_stream_pushes_a_new_svid_when_it_is_re_minted() {
    // 1m lifetime renewed at 5% of it: a new SVID after about 3 s.
    let (dir, socket) = config_dir(&backend_for_my_uid(""), 0.05);
    let _stop = start(dir.path(), &socket).await;
    let mut stream = client(&socket).await.stream_x509_svids().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(15), stream.next())
        .await
        .expect("no rotation within 15 s")
        .unwrap()
        .unwrap();
    assert_eq!(second.spiffe_id().to_string(), BACKEND);
    assert_ne!(first.leaf().as_bytes(), second.leaf().as_bytes());
}

#[tokio::test]
async fn the_spiffe_crate_fetches_and_validates_a_jwt_svid() {
    let (dir, socket) = config_dir(&backend_for_my_uid(""), 0.5);
    let _stop = start(dir.path(), &socket).await;
    let c = client(&socket).await;
    let svid = c.fetch_jwt_svid(["database"], None).await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), BACKEND);
    assert_eq!(svid.audience(), ["database"]);
    let validated = c
        .validate_jwt_token("database", svid.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), BACKEND);
    assert!(c
        .validate_jwt_token("frontend", svid.token())
        .await
        .is_err());
    // Offline: the crate verifies the signature itself against our JWT bundle.
    let bundles = c.fetch_jwt_bundles().await.unwrap();
    let offline = JwtSvid::parse_and_validate(svid.token(), &bundles, &["database"]).unwrap();
    assert_eq!(offline.spiffe_id().to_string(), BACKEND);
}

#[tokio::test]
async fn a_caller_matching_no_selector_is_denied_not_given_an_empty_answer() {
    let (dir, socket) = config_dir(
        "  - name: backend\n    selectors: [\"unix:uid:4242\"]\n",
        0.5,
    );
    let _stop = start(dir.path(), &socket).await;
    let c = client(&socket).await;
    let err = c.fetch_x509_svid().await.unwrap_err();
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );
    let err = c.fetch_jwt_svid(["database"], None).await.unwrap_err();
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );
}

/// Run by `a_process_with_another_uid_is_refused` as uid 65534; prints the outcome.
#[tokio::test]
#[ignore = "helper process for a_process_with_another_uid_is_refused"]
async fn probe_as_another_user() {
    let socket = std::env::var("WARDEN_PROBE_SOCKET").unwrap();
    match client(Path::new(&socket)).await.fetch_x509_svid().await {
        Ok(svid) => println!("PROBE-GOT {}", svid.spiffe_id()),
        Err(err) => println!("PROBE-ERR {err:?}"),
    }
}

#[tokio::test]
async fn a_process_with_another_uid_is_refused() {
    if my_uid() != 0 {
        eprintln!("skipped: needs root to start a process as another uid");
        return;
    }
    let (dir, socket) = config_dir(&backend_for_my_uid(""), 0.5);
    let _stop = start(dir.path(), &socket).await;
    let socket2 = socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "probe_as_another_user",
                "--ignored",
                "--nocapture",
            ])
            .env("WARDEN_PROBE_SOCKET", &socket2)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PROBE-ERR NoIdentityIssued"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same socket still serves the matching uid.
    let svid = client(&socket).await.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), BACKEND);
}
