//! The Workload API against a client nobody here wrote: the `spiffe` crate's
//! `WorkloadApiClient` (its own tonic and generated code) over a real Unix socket, served
//! by the real `warden serve` process.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spiffe::{JwtSvid, TrustDomain, WorkloadApiClient};
use tokio_stream::StreamExt;

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

/// `warden serve` (the real binary) on the config dir; dropping it stops the process.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `warden serve` with OS-chosen xDS and admin ports and wait for the socket.
async fn start(dir: &Path, socket: &Path) -> Served {
    let yaml = dir.join("warden.yaml");
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("127.0.0.1:18000", "127.0.0.1:0")
        .replace("127.0.0.1:18001", "127.0.0.1:0")
        .replace("127.0.0.1:18002", "127.0.0.1:0");
    std::fs::write(&yaml, text).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(dir)
        .arg("--filter-module")
        .arg(fake_module(dir))
        .arg("--filter-module-extended")
        .arg(fake_module(dir))
        .env("WARDEN_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut served = Served(child);
    for _ in 0..200 {
        if socket.exists() {
            return served;
        }
        if let Some(status) = served.0.try_wait().unwrap() {
            panic!("warden serve exited early: {status}");
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
    let _served = start(dir.path(), &socket).await;
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
    let _served = start(dir.path(), &socket).await;
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
    let _served = start(dir.path(), &socket).await;
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
    let _served = start(dir.path(), &socket).await;
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
    let _served = start(dir.path(), &socket).await;
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

/// Poll `fetch_x509_svid` until it names `want` (or the deadline passes).
async fn wait_for_identity(socket: &Path, want: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..100 {
        match client(socket).await.fetch_x509_svid().await {
            Ok(svid) if svid.spiffe_id().to_string() == want => return Ok(()),
            Ok(svid) => last = svid.spiffe_id().to_string(),
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

#[tokio::test]
async fn edited_selectors_apply_without_a_restart_and_end_streams_that_lost_their_identity() {
    let (dir, socket) = config_dir(&backend_for_my_uid(""), 0.5);
    let _served = start(dir.path(), &socket).await;
    let mut stream = client(&socket).await.stream_x509_svids().await.unwrap();
    assert_eq!(
        stream
            .next()
            .await
            .unwrap()
            .unwrap()
            .spiffe_id()
            .to_string(),
        BACKEND
    );

    // The entry moves to another uid: the open stream ends, new calls are refused.
    let yaml = dir.path().join("workload-api.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        text.replace(&format!("unix:uid:{}", my_uid()), "unix:uid:4242"),
    )
    .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream stays open after its caller lost every entry");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    let err = client(&socket).await.fetch_x509_svid().await.unwrap_err();
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );

    // A new entry with its own SPIFFE ID for this uid is served, still without a restart.
    let job = "spiffe://example.org/jobs/nightly";
    let text = std::fs::read_to_string(&yaml).unwrap().replace(
        "workloads:\n",
        &format!(
            "workloads:\n  - name: nightly\n    spiffe_id: {job}\n    selectors: [\"unix:uid:{}\"]\n",
            my_uid()
        ),
    );
    std::fs::write(&yaml, text).unwrap();
    wait_for_identity(&socket, job).await.unwrap();
}

#[tokio::test]
async fn an_invalid_edit_is_refused_and_the_last_good_selectors_keep_serving() {
    let (dir, socket) = config_dir(&backend_for_my_uid(""), 0.5);
    let _served = start(dir.path(), &socket).await;
    let yaml = dir.path().join("workload-api.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace("unix:uid:", "unix:user:")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // two reload polls
    wait_for_identity(&socket, BACKEND).await.unwrap();
}

/// A stand-in filter module (the Wasm header only: `warden serve` checks the file is
/// WebAssembly; no Envoy runs here), hidden from config reloads.
fn fake_module(dir: &Path) -> PathBuf {
    let path = dir.join(".warden_filter.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    path
}

/// A bundle of `b.test` in the SPIFFE format (a CA made here) and its authority count.
fn foreign_bundle(dir: &Path) -> String {
    let params = warden::identity::CaParams {
        trust_domain: "b.test".parse().unwrap(),
        key_type: warden::identity::KeyType::EcP256,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.join("b-ca"),
        upstream: None,
    };
    let ca = warden::identity::Ca::load_or_init(&params, &warden::identity::SystemClock).unwrap();
    // Plus one jwt-svid key (a real P-256 point), as a peer running a Workload API serves.
    let key = rcgen::KeyPair::generate().unwrap();
    let point = key.public_key_raw();
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let jwk = serde_json::json!({
        "use": "jwt-svid", "kid": "b-key-1", "kty": "EC", "crv": "P-256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    ca.bundle().to_spiffe_json(Duration::from_secs(300), &[jwk])
}

#[tokio::test]
async fn federated_bundles_reach_workloads_with_their_svid_and_in_the_bundle_calls() {
    let exe = std::env::current_exe().unwrap();
    let (dir, socket) = config_dir(
        &backend_for_my_uid(&format!(", \"unix:path:{}\"", exe.display())),
        0.5,
    );
    std::fs::write(dir.path().join("b.json"), foreign_bundle(dir.path())).unwrap();
    // The endpoint is a closed port: the initial bundle stays the last good one.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.path().join("federation.yaml"),
        format!(
            "trust_domains:\n- trust_domain: b.test\n  url: https://{closed}/\n  profile: https_spiffe\n  \
             endpoint_spiffe_id: spiffe://b.test/warden/control-plane\n  bundle_file: b.json\n"
        ),
    )
    .unwrap();
    let _served = start(dir.path(), &socket).await;
    let c = client(&socket).await;
    let b = TrustDomain::new("b.test").unwrap();
    let mut found = false;
    for _ in 0..100 {
        let ctx = c.fetch_x509_context().await.unwrap();
        if ctx.bundle_set().get(&b).is_some() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "no b.test bundle in the X.509 context");
    let bundles = c.fetch_x509_bundles().await.unwrap();
    assert_eq!(
        bundles
            .get(&b)
            .expect("b.test in FetchX509Bundles")
            .authorities()
            .len(),
        1
    );
    assert!(bundles
        .get(&TrustDomain::new("example.org").unwrap())
        .is_some());
    let jwt = c.fetch_jwt_bundles().await.unwrap();
    assert!(jwt.get(&TrustDomain::new("example.org").unwrap()).is_some());
    let b_jwt = jwt.get(&b).expect("b.test's JWT bundle in FetchJWTBundles");
    assert!(b_jwt.find_jwt_authority("b-key-1").is_some());
}

#[tokio::test]
async fn the_bundle_endpoint_serves_the_workload_apis_jwt_keys_next_to_the_cas() {
    let exe = std::env::current_exe().unwrap();
    let (dir, socket) = config_dir(
        &backend_for_my_uid(&format!(", \"unix:path:{}\"", exe.display())),
        0.5,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.path().join("federation.yaml"),
        format!("bundle_endpoint:\n  listen: {port}\n  profile: https_spiffe\n"),
    )
    .unwrap();
    let _served = start(dir.path(), &socket).await;
    let c = client(&socket).await;
    let td = TrustDomain::new("example.org").unwrap();
    let jwt = c.fetch_jwt_bundles().await.unwrap();
    let mut kids: Vec<String> = jwt
        .get(&td)
        .unwrap()
        .jwt_authorities()
        .map(|a| a.key_id().to_owned())
        .collect();
    let x509 = c.fetch_x509_bundles().await.unwrap();
    let roots: Vec<Vec<u8>> = x509
        .get(&td)
        .unwrap()
        .authorities()
        .iter()
        .map(|a| a.as_ref().to_vec())
        .collect();
    let trust = warden::federation::fetch::Trust::Spiffe {
        roots: roots.clone(),
        id: "spiffe://example.org/warden/control-plane".parse().unwrap(),
    };
    let url: url::Url = format!("https://{port}/").parse().unwrap();
    let mut body = None;
    for _ in 0..50 {
        if let Ok(b) = warden::federation::fetch::fetch(&url, &trust).await {
            body = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = body.expect("the bundle endpoint answered");
    let served =
        warden::identity::bundle_document::parse(&"example.org".parse().unwrap(), &body).unwrap();
    assert_eq!(served.bundle.x509_authorities_der, roots);
    let mut served_kids: Vec<String> = served
        .jwt_keys
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    served_kids.sort();
    assert!(!kids.is_empty());
    assert_eq!(served_kids, kids);
}
