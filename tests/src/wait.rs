//! Bounded polling: every wait in the suite has a deadline and says what it waited for.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `probe` every 50 ms until it returns `Ok(Some(v))`, or fails after `timeout`
/// with the last error or `None` described.
pub fn until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last: String;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => last = String::from("condition not met yet"),
            Err(err) => last = format!("{err:#}"),
        }
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`until`] for a boolean condition.
pub fn until_true(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<bool>,
) -> Result<()> {
    until(what, timeout, || Ok(probe()?.then_some(())))
}
