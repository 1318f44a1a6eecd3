//! Free loopback ports for the processes a test starts.
//!
//! Ports come from 20000..32000: below Linux's ephemeral range (32768..60999), so an
//! outgoing connection cannot grab one between our check and Envoy's bind, and above the
//! fixed ports of the sample config (8xxx, 15xxx..19xxx), so a demo running on the same
//! machine does not collide. Each candidate is checked with a real bind, and a port is
//! never handed out twice by one test process.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Result};
use rand::Rng;

const RANGE: std::ops::Range<u16> = 20000..32000;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port on 127.0.0.1 that nobody listens on right now and that this process has not
/// handed out before.
pub fn free_port() -> Result<u16> {
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let port = rng.gen_range(RANGE);
        let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if set.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            set.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port found in {RANGE:?} after 500 tries")
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}
