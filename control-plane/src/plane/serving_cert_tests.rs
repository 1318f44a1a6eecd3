//! The serving certificate renews by the sidecar rule, with capped backoff, on paused time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::*;
use crate::identity::renewal::BACKOFF_CAP;
use crate::identity::{Ca, CaParams, Clock, KeyType, SvidParams};

/// Wall-clock time that follows tokio's (paused) clock.
#[derive(Debug)]
struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}

fn ca(dir: &std::path::Path, clock: &dyn Clock) -> Ca {
    let params = CaParams {
        trust_domain: "example.org".parse().unwrap(),
        key_type: KeyType::EcP256,
        ttl: Duration::from_secs(24 * 3600),
        state_dir: dir.to_path_buf(),
        upstream: None,
    };
    Ca::load_or_init(&params, clock).unwrap()
}

fn mint(ca: &Ca, clock: &dyn Clock) -> Svid {
    let params = SvidParams {
        id: "spiffe://example.org/warden/control-plane".parse().unwrap(),
        ttl: Duration::from_secs(100),
    };
    ca.mint(&params, clock).unwrap()
}

#[test]
fn the_serving_certificate_renews_in_the_sidecar_window_not_at_half_the_backdated_life() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::identity::FixedClock(SystemTime::now());
    let svid = mint(&ca(dir.path(), &clock), &clock);
    let at = next_attempt(&Served::from(&svid), None);
    let issued = clock.0;
    // 45–55 % of the 100 s life counted from issuance; half of notAfter - notBefore
    // (130 s with the 30 s backdate) would be 35 s after issuance.
    assert!(at >= issued + Duration::from_secs(45), "{at:?}");
    assert!(at <= issued + Duration::from_secs(55), "{at:?}");
    let failing = Failing::after_failure(None, issued);
    assert_eq!(
        next_attempt(&Served::from(&svid), Some(failing)),
        failing.retry_at
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_retried_with_capped_backoff_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock {
        base: SystemTime::now(),
        start: tokio::time::Instant::now(),
    });
    let ca = Arc::new(ca(dir.path(), clock.as_ref()));
    let first = mint(&ca, clock.as_ref());
    let attempts: Arc<Mutex<Vec<SystemTime>>> = Arc::default();
    let task = tokio::spawn({
        let (attempts, clock, ca) = (attempts.clone(), clock.clone(), ca.clone());
        renew_forever(Served::from(&first), clock.clone(), move || {
            let mut seen = attempts.lock().unwrap();
            seen.push(clock.now());
            if seen.len() <= 7 {
                Err("CA unavailable")
            } else {
                Ok(mint(&ca, clock.as_ref()))
            }
        })
    });
    tokio::time::sleep(Duration::from_secs(160)).await;
    let seen = attempts.lock().unwrap().clone();
    task.abort();
    let due = next_attempt(&Served::from(&first), None);
    assert!(seen.len() >= 8, "{seen:?}");
    assert!(seen[0] >= due && seen[0] < due + Duration::from_secs(1));
    let gaps: Vec<u64> = seen
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap().as_secs())
        .collect();
    assert_eq!(&gaps[..7], &[1, 2, 4, 8, 16, 30, 30][..], "{gaps:?}");
    assert!(Duration::from_secs(gaps[6]) == BACKOFF_CAP);
}
