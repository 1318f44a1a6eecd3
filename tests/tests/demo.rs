//! The README's demo, as CI runs it: `warden-demo --once` brings up the sample mesh of
//! `examples/mesh/` (fixed ports from that config), runs the guided tour and exits 0 only
//! if every step behaved (allow, deny with reason, handshake refusals, live policy change).

use std::process::Command;

#[test]
fn demo_tour_runs_end_to_end_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_warden-demo"))
        .arg("--once")
        .output()
        .expect("warden-demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("Tour passed"), "{stdout}");
    assert!(
        stdout.contains("spiffe://example.org/ns/demo/sa/backend"),
        "{stdout}"
    );
    // Every process was stopped: the sample's ports are free again.
    for port in [
        18000, 18001, 18002, 15001, 15002, 15003, 19001, 19002, 19003,
    ] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still in use after the demo"
        );
    }
}
