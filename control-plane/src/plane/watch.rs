//! Notices changes to the config directory: file-system events (`notify`: inotify,
//! FSEvents, …) wake the check at once, and a once-a-second poll of every file's
//! (path, mtime, size) stays on as the fallback. The decision is always the poll's
//! fingerprint comparison; events only make it come sooner.
//!
//! Why keep polling: events miss changes that replace the watched tree rather than write
//! into it, which is how config usually arrives: `git checkout`/`git pull` and
//! `git worktree`-style deploys swap files by rename (and may replace directories the
//! watch was set on), Kubernetes ConfigMap volumes swap a hidden `..data` symlink,
//! network and VM file systems (NFS, 9p, virtiofs) deliver no events, and a host out of
//! `fs.inotify.max_user_watches` gives none at all. A stat of each config file per
//! second is cheap next to a missed reload. Hidden entries (the CA state dir `.warden`
//! lives inside the config dir and changes on every mint) never count.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How often the fingerprint is compared without any event.
pub const POLL: Duration = Duration::from_secs(1);
/// After an event, how long to wait for the burst to settle (an editor's save or a
/// checkout writes several files) before comparing.
const SETTLE: Duration = Duration::from_millis(100);
/// How deep below the config dir files count.
const MAX_DEPTH: usize = 3;

/// (path, modified, len) of every config file.
pub type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Watches one config directory.
#[derive(Debug)]
pub struct ConfigWatch {
    dir: PathBuf,
    seen: Fingerprint,
    events: Option<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)>,
    poll: tokio::time::Interval,
}

impl ConfigWatch {
    /// Watches `dir` with events and the one-second poll. Must run inside tokio.
    pub fn new(dir: &Path) -> Self {
        let mut w = Self::polling_only(dir, POLL);
        w.events = events(dir);
        w
    }

    /// Watches `dir` by polling every `every` only (tests; hosts without events).
    pub fn polling_only(dir: &Path, every: Duration) -> Self {
        let mut poll = tokio::time::interval(every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            dir: dir.to_path_buf(),
            seen: fingerprint(dir),
            events: None,
            poll,
        }
    }

    /// Whether file-system events are delivered (else only polling).
    pub fn has_events(&self) -> bool {
        self.events.is_some()
    }

    /// Takes the current state as seen (after a reload triggered some other way).
    pub fn mark_seen(&mut self) {
        self.seen = fingerprint(&self.dir);
    }

    /// Resolves once the config files differ from what was last seen (and marks them
    /// seen). Cancel-safe: dropping it loses no change, the next call still sees it.
    pub async fn changed(&mut self) {
        loop {
            match &mut self.events {
                Some((_, rx)) => tokio::select! {
                    _ = self.poll.tick() => {}
                    Some(()) = rx.recv() => {
                        tokio::time::sleep(SETTLE).await;
                        while rx.try_recv().is_ok() {}
                    }
                },
                None => {
                    self.poll.tick().await;
                }
            }
            let now = fingerprint(&self.dir);
            if now != self.seen {
                self.seen = now;
                return;
            }
        }
    }
}

/// A watcher on `dir` whose relevant events arrive on the receiver; `None` (and a
/// warning) when the platform or the host's limits give no events.
fn events(dir: &Path) -> Option<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let root = dir.to_path_buf();
    let handler = move |res: notify::Result<Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() && ev.paths.iter().any(|p| counts(&root, p)) {
                let _ = tx.send(());
            }
        }
    };
    let watched = notify::recommended_watcher(handler)
        .and_then(|mut w| w.watch(dir, RecursiveMode::Recursive).map(|()| w));
    match watched {
        Ok(w) => Some((w, rx)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "no file-system events for the config dir ({e}); polling every second");
            None
        }
    }
}

/// Whether a change at `path` can matter: not under a hidden entry of `root`. A path
/// outside `root` (spelled differently by the platform) counts: a needless wake-up costs
/// one fingerprint, a missed one a reload delayed to the next poll.
fn counts(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return true;
    };
    !rel.components().any(|c| match c {
        std::path::Component::Normal(name) => name.to_string_lossy().starts_with('.'),
        _ => false,
    })
}

/// (path, modified, len) of every config file up to [`MAX_DEPTH`] below `dir`, skipping
/// hidden entries.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // Follow symlinks: a ConfigMap volume's visible entries are symlinks through
            // `..data`, whose own mtime never changes when the kubelet swaps `..data`.
            let Ok(meta) = std::fs::metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((e.path(), depth + 1));
                }
            } else {
                out.push((e.path(), meta.modified().ok(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
