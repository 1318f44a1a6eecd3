//! Control-plane replicas for real: two `warden serve` processes on one config repo with a
//! shared upstream root (made by openssl at test time), each with its own intermediate
//! and state dir; real Envoy sidecars whose bootstraps list both replicas in different
//! orders. The replica holding a sidecar is SIGKILLed under load: no request fails, the
//! sidecar reattaches to the other replica (timed), gets an SVID of that replica's
//! intermediate, and the bundle does not change. A token revoked in the repo is refused
//! by every replica after its reload.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use warden_e2e::certs::ca_serials;
use warden_e2e::load::{Load, LoadSpec};
use warden_e2e::mesh::spiffe_id;
use warden_e2e::raw_ads::{Behaviour, RawAds, RawAdsSpec};
use warden_e2e::replicas::{
    acked_streams, openssl, pem_certs, serial_of, svid_chain_pem, write_config, Channel, ReplicaSet,
};
use warden_e2e::warden::{self, Warden};
use warden_e2e::{http, process::report_failure, wait};

const WORKLOADS: &[(&str, &[&str])] = &[("frontend", &["backend"]), ("backend", &[])];
const FRONTEND: &str = "frontend-sidecar";

/// Serials as `/certs` shows them: lowercase hex without leading zeros.
fn norm(serial: &str) -> String {
    serial
        .replace(':', "")
        .trim_start_matches('0')
        .to_ascii_lowercase()
}

/// The serial of the CA that signs on replica `w` (`/ca/status`).
fn signing_ca(w: &Warden) -> Result<String> {
    let st = w.admin_get("/ca/status")?.json()?;
    Ok(norm(
        st["current"]["serial"]
            .as_str()
            .context("ca status has a current serial")?,
    ))
}

/// (leaf serial, intermediate serial, intermediate PEM, leaf PEM) of frontend's SVID.
fn frontend_chain(set: &ReplicaSet) -> Result<(String, String, String, String)> {
    let pem = svid_chain_pem(set.sidecar("frontend")?, &spiffe_id("frontend"))?;
    let certs = pem_certs(&pem);
    ensure!(certs.len() == 2, "leaf + intermediate, got {}", certs.len());
    Ok((
        serial_of(&certs[0], set.dir())?,
        serial_of(&certs[1], set.dir())?,
        certs[1].clone(),
        certs[0].clone(),
    ))
}

#[test]
fn killing_the_replica_that_holds_a_sidecar_drops_no_request() -> Result<()> {
    report_failure(kill_the_holding_replica(Channel::AttestedSotw))
}

#[test]
fn killing_the_replica_that_holds_a_delta_sidecar_drops_no_request() -> Result<()> {
    report_failure(kill_the_holding_replica(Channel::AttestedDelta))
}

#[test]
fn killing_the_replica_that_holds_a_plaintext_sidecar_drops_no_request() -> Result<()> {
    report_failure(kill_the_holding_replica(Channel::Plaintext))
}

fn kill_the_holding_replica(channel: Channel) -> Result<()> {
    let mut set = ReplicaSet::start_with(2, WORKLOADS, "1h", channel)?;
    // Spread: frontend lists replica 0 first, backend replica 1 first.
    set.start_sidecar("backend", &[1, 0])?;
    set.start_sidecar("frontend", &[0, 1])?;
    let outbound = set.member("frontend")?.upstreams["backend"];
    wait::until_true(
        "route frontend → backend",
        Duration::from_secs(60),
        || Ok(http::get(outbound, "/warmup").is_ok_and(|r| r.status == 200)),
    )?;
    ensure!(
        acked_streams(set.replica(0), FRONTEND)?.is_some(),
        "frontend on replica 0"
    );
    ensure!(
        acked_streams(set.replica(1), "backend-sidecar")?.is_some(),
        "backend on replica 1"
    );
    let (a_ca, b_ca) = (signing_ca(set.replica(0))?, signing_ca(set.replica(1))?);
    ensure!(a_ca != b_ca, "each replica has its own intermediate");
    // The bundle every sidecar gets is the shared root, whichever replica serves it.
    let root_serial = serial_of(&std::fs::read_to_string(set.root_pem_path())?, set.dir())?;
    let root_only = BTreeSet::from([root_serial]);
    for name in ["frontend", "backend"] {
        let cas = ca_serials(&set.sidecar(name)?.certs()?);
        ensure!(
            cas == root_only,
            "{name} trusts {cas:?}, want the root only {root_only:?}"
        );
    }
    let (leaf_before, inter_before, _, _) = frontend_chain(&set)?;
    ensure!(
        inter_before == a_ca,
        "frontend's SVID comes from replica 0's intermediate"
    );

    let mut load = LoadSpec::new(vec![outbound]);
    load.deadline = Duration::from_secs(60);
    load.max_requests = 6_000;
    let load = Load::start(&load)?;
    load.wait_for_more(50, Duration::from_secs(20))?;

    let ok_at_kill = load.report().ok;
    let killed = Instant::now();
    set.replica_mut(0).kill()?;
    let reattached = wait::until(
        "frontend's ACK on replica 1",
        Duration::from_secs(20),
        || Ok(acked_streams(set.replica(1), FRONTEND)?.map(|_| killed.elapsed())),
    )?;
    let served_meanwhile = load.report().ok - ok_at_kill;
    load.wait_for_more(100, Duration::from_secs(20))?;

    // The next SVID: issued by replica 1's intermediate, verified by the unchanged root.
    let (leaf_after, inter_after, inter_pem, leaf_pem) = wait::until(
        "frontend's SVID from replica 1",
        Duration::from_secs(20),
        || {
            let chain = frontend_chain(&set)?;
            Ok((chain.1 == b_ca).then_some(chain))
        },
    )?;
    ensure!(leaf_after != leaf_before && inter_after == b_ca);
    std::fs::write(set.dir().join("inter.pem"), inter_pem)?;
    std::fs::write(set.dir().join("leaf.pem"), leaf_pem)?;
    let root = set.root_pem_path();
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            root.to_str().context("utf-8")?,
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
        set.dir(),
    )?;
    ensure!(
        verified.contains("leaf.pem: OK"),
        "openssl verify: {verified}"
    );
    for name in ["frontend", "backend"] {
        let cas = ca_serials(&set.sidecar(name)?.certs()?);
        ensure!(cas == root_only, "{name}'s bundle changed: {cas:?}");
    }
    // mTLS with the new SVID: backend (replica 1's SVID too) still accepts frontend.
    load.wait_for_more(100, Duration::from_secs(20))?;

    // No replica at all: the sidecars keep serving with their last config; a restarted
    // replica (same state dir, same intermediate) takes both back.
    set.replica_mut(1).kill()?;
    let ok_at_outage = load.report().ok;
    load.wait_for_more(150, Duration::from_secs(20))?;
    let served_without_cp = load.report().ok - ok_at_outage;
    let restarted = Instant::now();
    set.restart(0)?;
    let back = wait::until(
        "both sidecars on the restarted replica 0",
        Duration::from_secs(40),
        || {
            let w = set.replica(0);
            let both = acked_streams(w, FRONTEND)?.is_some()
                && acked_streams(w, "backend-sidecar")?.is_some();
            Ok(both.then(|| restarted.elapsed()))
        },
    )?;
    load.wait_for_more(50, Duration::from_secs(20))?;
    let report = load.stop();
    eprintln!(
        "REPLICAS ({channel:?}): frontend reattached to replica 1 (ACKed) {} ms after SIGKILL of replica 0; {} requests served meanwhile; \
         {served_without_cp} requests served with no replica up; both sidecars back on restarted replica 0 {} ms after its start; load: {report}",
        reattached.as_millis(),
        served_meanwhile,
        back.as_millis()
    );
    ensure!(report.failed == 0, "requests failed: {report}");
    ensure!(
        report.ok >= 250,
        "too little load to prove anything: {report}"
    );
    ensure!(
        reattached < Duration::from_secs(5),
        "reattach took {reattached:?}"
    );
    Ok(())
}

#[test]
fn a_frozen_replica_is_left_once_keepalive_notices_it() -> Result<()> {
    report_failure(frozen_replica())
}

/// SIGSTOP: the replica's sockets stay open and its kernel still ACKs TCP, but nothing
/// answers (as when its host hangs or the network drops packets). HTTP/2 keepalive on
/// the ADS channel must notice it; the sidecar moves to the other replica.
fn frozen_replica() -> Result<()> {
    let mut set = ReplicaSet::start(2, WORKLOADS, "1h")?;
    set.start_sidecar("backend", &[1, 0])?;
    set.start_sidecar("frontend", &[0, 1])?;
    let outbound = set.member("frontend")?.upstreams["backend"];
    wait::until_true(
        "route frontend → backend",
        Duration::from_secs(60),
        || Ok(http::get(outbound, "/warmup").is_ok_and(|r| r.status == 200)),
    )?;
    ensure!(
        acked_streams(set.replica(0), FRONTEND)?.is_some(),
        "frontend on replica 0"
    );
    let mut load = LoadSpec::new(vec![outbound]);
    load.deadline = Duration::from_secs(60);
    load.max_requests = 6_000;
    let load = Load::start(&load)?;
    load.wait_for_more(50, Duration::from_secs(20))?;
    let frozen = Instant::now();
    set.replica_mut(0).process().signal("STOP")?;
    let moved = wait::until(
        "frontend's ACK on replica 1",
        Duration::from_secs(40),
        || Ok(acked_streams(set.replica(1), FRONTEND)?.map(|_| frozen.elapsed())),
    )?;
    load.wait_for_more(50, Duration::from_secs(20))?;
    let report = load.stop();
    set.replica_mut(0).kill()?;
    eprintln!(
        "REPLICAS: frontend moved to replica 1 {} ms after SIGSTOP of replica 0; load: {report}",
        moved.as_millis()
    );
    ensure!(report.failed == 0, "requests failed: {report}");
    ensure!(moved < Duration::from_secs(25), "moving took {moved:?}");
    Ok(())
}

#[test]
fn a_token_revoked_in_the_repo_is_refused_by_every_replica_after_reload() -> Result<()> {
    report_failure(revoked_everywhere())
}

fn revoked_everywhere() -> Result<()> {
    let set = ReplicaSet::start(2, WORKLOADS, "1h")?;
    // A third server on replica 0's state dir (a misconfigured replica) refuses to start.
    let mut extra = set.serve_on_state_of(0, "warden-same-state-dir")?;
    wait::until_true("the extra server to exit", Duration::from_secs(20), || {
        Ok(extra.process().ensure_running().is_err())
    })?;
    let log = extra.process().log();
    ensure!(log.contains("is in use by another `warden serve`"), "{log}");
    ensure!(
        set.replica(0).admin_get("/readyz").is_ok(),
        "replica 0 unaffected"
    );
    let roots_pem = std::fs::read_to_string(set.root_pem_path())?;
    let client = |i: usize, token: &str| RawAdsSpec {
        xds: set.xds(i),
        roots_pem: roots_pem.clone(),
        server_name: "warden-control-plane.example.org".into(),
        token: token.to_owned(),
        node: FRONTEND.into(),
        secrets: vec![spiffe_id("frontend")],
        behaviour: Behaviour::NeverAck,
    };
    // A spare token works on both replicas (they read the same tokens.yaml); the client
    // trusts the upstream root only, so each replica's serving certificate (signed by its
    // own intermediate) is verified to chain to the shared root here too ...
    let spare = set.dir().join("tokens/spare");
    set.create_token("frontend", &spare)?;
    for i in 0..2 {
        set.replica(i).reload()?;
    }
    let token = std::fs::read_to_string(&spare)?;
    for i in 0..2 {
        let ads = wait::until("spare token accepted", Duration::from_secs(20), || {
            let ads = RawAds::start(client(i, &token))?;
            wait::until_true("an SDS response", Duration::from_secs(5), || {
                Ok(!ads.received().is_empty() || ads.ended().is_some())
            })?;
            Ok((!ads.received().is_empty()).then_some(ads))
        })?;
        drop(ads);
    }
    // ... and once revoked in the repo, both refuse it after their reload.
    let id = token.split('.').nth(1).context("token id")?.to_owned();
    let config = set.config_dir();
    warden::cli(
        &[
            "token",
            "revoke",
            "--config",
            config.to_str().context("utf-8")?,
            &id,
        ],
        set.env(),
    )?;
    for i in 0..2 {
        let w = set.replica(i);
        let reason = [("reason", "token_revoked")];
        let before = w.metric("warden_xds_attestation_failures_total", &reason)?;
        let reloads = w.metric("warden_config_reloads_total", &[])?;
        w.reload()?;
        wait::until_true("reload after revoke", Duration::from_secs(20), || {
            Ok(w.metric("warden_config_reloads_total", &[])? > reloads)
        })?;
        let ads = RawAds::start(client(i, &token));
        wait::until_true(
            &format!("replica {i} refuses the revoked token"),
            Duration::from_secs(20),
            || Ok(w.metric("warden_xds_attestation_failures_total", &reason)? > before),
        )?;
        if let Ok(ads) = ads {
            ensure!(
                ads.received().is_empty(),
                "replica {i} answered a revoked token"
            );
        }
    }
    Ok(())
}

#[test]
fn a_replica_list_without_a_shared_root_is_refused_by_bootstrap() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let members = std::collections::BTreeMap::new();
    write_config(&dir.path().join("config"), &members, "1h", None)?;
    // A workload to render for (the config needs one).
    std::fs::write(
        dir.path().join("config/workloads/solo.yaml"),
        "name: solo\nspiffe_id: spiffe://example.org/solo\nnode_id: solo-sidecar\n\
         sidecar:\n  admin: 127.0.0.1:19900\ninbound:\n  listen: 127.0.0.1:15900\n  app: 127.0.0.1:8900\n\
         upstreams: []\n",
    )?;
    let config = dir.path().join("config");
    let config = config.to_str().context("utf-8")?;
    let args = |servers: &'static str| {
        [
            "bootstrap",
            "--config",
            config,
            "--workload",
            "solo",
            "--insecure-plaintext",
            "--xds-server",
            servers,
        ]
    };
    let err = warden::cli(&args("127.0.0.1:18000,127.0.0.1:18001"), &[])
        .expect_err("two replicas with a self-signed root");
    ensure!(err.to_string().contains("ca.upstream"), "{err:#}");
    let one = warden::cli(&args("127.0.0.1:18000"), &[])?;
    ensure!(one.contains("127.0.0.1"), "{one}");
    Ok(())
}
