//! The config watch on a real directory: events, the polling fallback, hidden entries.

use std::path::Path;
use std::time::Duration;

use super::*;

const PATIENCE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_edited_file_wakes_the_watch_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warden.yaml"), "a: 1\n").unwrap();
    let mut w = ConfigWatch::new(dir.path());
    if !w.has_events() {
        eprintln!("no file-system events on this host; covered by the polling test");
        return;
    }
    // Only events can wake it within the patience: the poll is an hour.
    w.poll = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    std::fs::create_dir(dir.path().join("workloads")).unwrap();
    std::fs::write(dir.path().join("workloads/a.yaml"), "b: 2\n").unwrap();
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("woken by the event");
}

#[tokio::test]
async fn polling_alone_notices_a_replaced_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warden.yaml");
    std::fs::write(&file, "a: 1\n").unwrap();
    let mut w = ConfigWatch::polling_only(dir.path(), Duration::from_millis(50));
    // Replaced by rename, as git does.
    let tmp = dir.path().join(".warden.yaml.tmp");
    std::fs::write(&tmp, "a: 22\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("noticed by the poll");
    // Seen now: nothing more to report.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.changed())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn writes_under_hidden_entries_never_count() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warden.yaml"), "a: 1\n").unwrap();
    let mut w = ConfigWatch::new(dir.path());
    w.poll = tokio::time::interval(Duration::from_millis(50));
    std::fs::create_dir(dir.path().join(".warden")).unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!(".warden/ca-{i}.pem")), "x").unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), w.changed())
            .await
            .is_err()
    );
    assert!(counts(dir.path(), &dir.path().join("policies/a.rego")));
    assert!(!counts(dir.path(), &dir.path().join(".warden/state.json")));
    // `--config .` (the default): events come as `./...`.
    assert!(counts(Path::new("."), Path::new("./workloads/a.yaml")));
    assert!(!counts(Path::new("."), Path::new("./.warden/ca.json")));
    // A config dir below a hidden directory is still watched.
    let hidden = Path::new("/home/u/.config/warden");
    assert!(counts(hidden, &hidden.join("warden.yaml")));
    assert!(
        counts(hidden, Path::new("/elsewhere/x.yaml")),
        "unknown paths wake"
    );
}

#[tokio::test]
async fn a_burst_of_writes_is_one_change_and_a_replaced_directory_is_noticed() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("config");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("warden.yaml"), "a: 1\n").unwrap();
    let mut w = ConfigWatch::new(&dir);
    w.poll = tokio::time::interval(Duration::from_millis(50));
    for i in 0..300 {
        std::fs::write(dir.join(format!("w{i}.yaml")), "x").unwrap();
    }
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("the burst");
    assert!(
        tokio::time::timeout(Duration::from_millis(400), w.changed())
            .await
            .is_err(),
        "one burst, one change"
    );
    // The whole directory swapped for another (a checkout or deploy by rename): the
    // watched inode is gone, the poll still sees the new content under the same path.
    let next = parent.path().join("next");
    std::fs::create_dir(&next).unwrap();
    std::fs::write(next.join("warden.yaml"), "a: 2\n").unwrap();
    std::fs::rename(&dir, parent.path().join("old")).unwrap();
    std::fs::rename(&next, &dir).unwrap();
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("the swap");
    std::fs::write(dir.join("warden.yaml"), "a: 33\n").unwrap();
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("an edit after the swap");
}

/// The layout the kubelet's atomic writer gives a ConfigMap or projected volume: the
/// files in a hidden timestamped directory, `..data` pointing at it, and visible
/// symlinks through `..data`. An update writes a new directory and swaps `..data`.
fn kubelet_write(root: &Path, generation: u32, backend: &str) {
    let data = root.join(format!("..2026_11_30_14_00_0{generation}.1234"));
    std::fs::create_dir_all(data.join("workloads")).unwrap();
    std::fs::write(data.join("warden.yaml"), "trust_domain: example.org\n").unwrap();
    std::fs::write(data.join("workloads/backend.yaml"), backend).unwrap();
    let tmp = root.join("..data_tmp");
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
    for name in ["warden.yaml", "workloads"] {
        let link = root.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
}

#[tokio::test]
async fn a_kubernetes_configmap_update_swapping_the_data_symlink_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    kubelet_write(dir.path(), 1, "name: backend\n");
    let before = fingerprint(dir.path());
    assert!(
        before
            .iter()
            .any(|(p, ..)| p.ends_with("workloads/backend.yaml")),
        "files behind the symlinked directory count: {before:?}"
    );
    let mut w = ConfigWatch::polling_only(dir.path(), Duration::from_millis(50));
    // The same size on purpose: only the swapped target's mtime tells them apart.
    std::thread::sleep(Duration::from_millis(20));
    kubelet_write(dir.path(), 2, "name: backenX\n");
    assert_ne!(fingerprint(dir.path()), before);
    tokio::time::timeout(PATIENCE, w.changed())
        .await
        .expect("the swap is a change");
}
