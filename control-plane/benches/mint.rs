//! SVID mint throughput: P-256 key generation + signing by the CA, on one thread and on
//! every core, for each CA key type. Prints a markdown table. Bounded: each cell mints
//! for about two seconds.
//!
//! Run with `cargo bench -p warden --bench mint` (or `just bench`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::identity::{Ca, CaParams, KeyType, SvidParams, SystemClock};

const CELL: Duration = Duration::from_secs(2);

fn rate(ca: &Arc<Ca>, threads: usize) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let ca = Arc::clone(ca);
            let count = Arc::clone(&count);
            s.spawn(move || {
                let params = SvidParams {
                    id: format!("spiffe://example.org/bench/{t}").parse().unwrap(),
                    ttl: Duration::from_secs(3600),
                };
                while start.elapsed() < CELL {
                    ca.mint(&params, &SystemClock).unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("| CA key | SVIDs/s, 1 thread | SVIDs/s, {cores} threads |");
    println!("|---|---:|---:|");
    for key_type in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let params = CaParams {
            trust_domain: "example.org".parse().unwrap(),
            key_type,
            ttl: Duration::from_secs(86400),
            state_dir: dir.path().to_path_buf(),
            upstream: None,
        };
        let ca = Arc::new(Ca::load_or_init(&params, &SystemClock).unwrap());
        let one = rate(&ca, 1);
        let all = rate(&ca, cores);
        println!("| {key_type} | {one:.0} | {all:.0} |");
    }
}
