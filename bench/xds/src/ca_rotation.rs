//! CA rotation figures (issue 5): with every stream in sync, force `prepare` (the next
//! CA joins the bundle) and time until every stream has ACKed the new bundle; then force
//! `activate` (through the admin endpoint, retried while the server refuses because some
//! stream has not ACKed yet) and time until every stream has ACKed an SVID from the new
//! CA, with the server's CPU over that window.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::sync::mpsc;
use warden_e2e::http;

use crate::rotation::{cpu_between, first_change_per_stream, svids_issued, Sampler};
use crate::stream::Event;

/// What one forced CA rotation measured.
#[derive(Debug, Default)]
pub(crate) struct CaRound {
    /// `POST /ca/prepare` sent until every stream ACKed the bundle with both CAs.
    pub(crate) prepare_to_all: Duration,
    /// The accepted `POST /ca/activate` sent until every stream ACKed an SVID from the
    /// new CA.
    pub(crate) activate_to_all: Duration,
    /// SVIDs signed from activation until every stream ACKed.
    pub(crate) signed: u64,
    /// Server CPU time over [activate accepted, all ACKed].
    pub(crate) cpu: Duration,
    /// Activation attempts refused (409) before one was accepted.
    pub(crate) refused: u32,
}

async fn post(admin: SocketAddr, path: &'static str) -> Result<(u16, String)> {
    let response = tokio::task::spawn_blocking(move || {
        http::request(admin, "POST", path, &[]).map(|r| (r.status, r.text()))
    })
    .await??;
    Ok(response)
}

/// Runs prepare and activate against the server at `admin` (process `pid`).
pub(crate) async fn ca_round(
    events: &mut mpsc::UnboundedReceiver<Event>,
    held: usize,
    (pid, admin): (u32, SocketAddr),
    timeout: Duration,
) -> Result<CaRound> {
    let mut round = CaRound::default();
    let prepared = Instant::now();
    let (code, body) = post(admin, "/ca/prepare").await?;
    if code != 200 {
        bail!("POST /ca/prepare: {code} {body}");
    }
    let acked = first_change_per_stream(events, held, timeout, |_, bundle, at| {
        bundle && at >= prepared
    })
    .await?;
    let all = acked.values().copied().max().unwrap_or(prepared);
    round.prepare_to_all = all.saturating_duration_since(prepared);

    let sampler = Sampler::start(pid, admin);
    tokio::time::sleep(crate::rotation::SAMPLE * 2).await;
    let baseline = svids_issued(admin)?;
    let deadline = Instant::now() + timeout;
    let activated = loop {
        // Timed from the request: the server may push before it answers.
        let sent = Instant::now();
        let (code, body) = post(admin, "/ca/activate").await?;
        match code {
            200 => break sent,
            409 if Instant::now() < deadline => {
                round.refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => bail!("POST /ca/activate: {code} {body}"),
        }
    };
    let acked =
        first_change_per_stream(events, held, timeout, |svid, _, at| svid && at >= activated)
            .await?;
    let all = acked.values().copied().max().unwrap_or(activated);
    round.activate_to_all = all.saturating_duration_since(activated);
    tokio::time::sleep(crate::rotation::SAMPLE * 2).await;
    let samples = sampler.finish();
    round.cpu = cpu_between(&samples, activated, all);
    round.signed = samples
        .iter()
        .rev()
        .find(|s| s.at <= all + crate::rotation::SAMPLE)
        .map_or(0, |s| s.svids_issued.saturating_sub(baseline));
    Ok(round)
}
