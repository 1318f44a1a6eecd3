//! The reload transaction on a copy of the sample mesh: what a rejected reload leaves
//! untouched, and that the attestor is swapped only after the core took the change.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::identity::SystemClock;
use crate::plane::XdsHandles;
use crate::xds::resources::FilterModules;

struct Mesh {
    dir: tempfile::TempDir,
    reloader: Reloader,
    installed: Arc<AtomicUsize>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    copy_dir(&root, dir.path());
    let module = dir.path().join(".filter.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let modules = FilterModules {
        core: module.clone(),
        extended: module,
    };
    let cfg = config::load(dir.path()).unwrap();
    let info = Arc::new(Mutex::new(ConfigInfo::of(&cfg)));
    let (cp, _) =
        ControlPlane::start(cfg, modules, Arc::new(SystemClock), XdsHandles::default()).unwrap();
    let installed = Arc::new(AtomicUsize::new(0));
    let slot: AttestorSlot = {
        let installed = installed.clone();
        Arc::new(move |_| {
            installed.fetch_add(1, Ordering::SeqCst);
        })
    };
    let reloader = Reloader::new(Arc::new(cp), dir.path().to_path_buf(), info, Some(slot));
    Mesh {
        dir,
        reloader,
        installed,
    }
}

fn edit(m: &Mesh, file: &str, from: &str, to: &str) {
    let p = m.dir.path().join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&p, text.replace(from, to)).unwrap();
}

fn last_error(m: &Mesh) -> Option<String> {
    m.reloader.info().lock().unwrap().last_reload_error.clone()
}

#[test]
fn a_good_reload_applies_records_and_installs_the_attestor() {
    let m = mesh();
    edit(&m, "warden.yaml", "deny_status: 403", "deny_status: 451");
    // Every workload's answer to a deny changes, on the Wasm and the native RBAC path alike.
    let applied = m.reloader.reload_blocking().unwrap();
    assert_eq!(applied.changed.len(), 3, "{applied:?}");
    assert_eq!(m.installed.load(Ordering::SeqCst), 1);
    assert_eq!(last_error(&m), None);
    assert_eq!(m.reloader.info().lock().unwrap().workloads.len(), 3);
}

#[test]
fn an_invalid_config_is_rejected_with_its_diagnostics_and_nothing_changes() {
    let m = mesh();
    let before = m.reloader.plane.config();
    edit(&m, "warden.yaml", "trust_domain:", "trust_domian:");
    let err = m.reloader.reload_blocking().unwrap_err();
    assert!(matches!(err, ReloadError::Invalid(_)), "{err}");
    let shown = last_error(&m).unwrap();
    assert!(shown.starts_with("config reload rejected; the last good config keeps serving:\n"));
    assert!(shown.contains("warden.yaml"), "{shown}");
    assert!(Arc::ptr_eq(&before, &m.reloader.plane.config()));
    assert_eq!(m.installed.load(Ordering::SeqCst), 0);
}

#[test]
fn a_change_the_core_refuses_never_installs_its_attestor() {
    let m = mesh();
    edit(
        &m,
        "warden.yaml",
        "state_dir: .warden ",
        "state_dir: .warden2 ",
    );
    let err = m.reloader.reload_blocking().unwrap_err();
    assert!(
        matches!(
            err,
            ReloadError::Plane(ControlError::CaSettingsChanged { .. })
        ),
        "{err}"
    );
    assert_eq!(m.installed.load(Ordering::SeqCst), 0);
    assert!(last_error(&m).unwrap().contains("restart `warden serve`"));
}

#[test]
fn a_missing_filter_module_rejects_the_reload() {
    let m = mesh();
    std::fs::write(m.dir.path().join(".filter.wasm"), b"not wasm").unwrap();
    let err = m.reloader.reload_blocking().unwrap_err();
    assert!(
        matches!(err, ReloadError::Module(ModuleError::NotWasm { .. })),
        "{err}"
    );
    std::fs::remove_file(m.dir.path().join(".filter.wasm")).unwrap();
    let err = m.reloader.reload_blocking().unwrap_err();
    assert!(
        matches!(err, ReloadError::Module(ModuleError::Unreadable { .. })),
        "{err}"
    );
    assert_eq!(m.installed.load(Ordering::SeqCst), 0);
}
