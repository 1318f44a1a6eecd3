//! The tour's audit step: a denied call's `x-warden-decision-id` looked up with
//! `warden audit show` (the sidecar's access-log batch reaches `warden serve` within a
//! flush interval, 200 ms; the lookup is retried for up to 5 s).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use warden_e2e::locate;

use super::print::print_table;

/// Prints the story of `decision_id` from the audit trail of the config in `dir`;
/// false when there is no id or the trail does not have it in time.
pub(super) fn print_story(
    dir: &Path,
    env: &[(String, String)],
    decision_id: Option<&str>,
) -> Result<bool> {
    let Some(id) = decision_id else {
        println!("\nAudit trail: the deny carried no x-warden-decision-id (unexpected!)");
        return Ok(false);
    };
    let t0 = Instant::now();
    let out = loop {
        let out = std::process::Command::new(locate::warden()?)
            .args(["audit", "show", id, "--config"])
            .arg(dir)
            .envs(env.iter().cloned())
            .output()?;
        if out.status.success() || t0.elapsed() > Duration::from_secs(5) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let found = out.status.success();
    let text = String::from_utf8_lossy(if found { &out.stdout } else { &out.stderr }).into_owned();
    let mut rows: Vec<[String; 1]> = text.lines().map(|l| [l.to_string()]).collect();
    if !found {
        rows.insert(0, ["not found in 5 s (unexpected!)".into()]);
    }
    print_table(
        &format!(
            "Audit trail: warden audit show {id}  (found after {:.2} s)",
            t0.elapsed().as_secs_f64()
        ),
        &["frontend → backend DELETE /api/items, as recorded"],
        &rows,
    );
    Ok(found)
}
