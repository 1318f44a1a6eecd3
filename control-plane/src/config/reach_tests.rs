//! `inbound.service`, `inbound.endpoints` and `${INSTANCE_IP}` in workload files: read
//! into the config, and each bad form reported at its line with what to write.

use super::tests::{edit, errors, line_of, sample};
use super::*;

#[test]
fn a_service_and_instance_ip_hosts_are_read_into_the_workload() {
    let dir = sample();
    edit(
        dir.path(),
        "workloads/backend.yaml",
        "  listen: 127.0.0.1:15002\n  app: 127.0.0.1:18082\n",
        "  listen: ${INSTANCE_IP}:15002\n  app: ${INSTANCE_IP}:18082\n  service: backend.demo.svc.cluster.local:15002\n",
    );
    let cfg = load(dir.path()).unwrap();
    let w = cfg.workload("backend").unwrap();
    assert_eq!(
        w.inbound.reach,
        Reach::Service {
            host: "backend.demo.svc.cluster.local".into(),
            port: 15002
        }
    );
    assert!(w.inbound.instance_ip.listen && w.inbound.instance_ip.app);
    let at = w.at_instance_ip("127.0.0.12".parse().unwrap());
    assert_eq!(at.inbound.listen.to_string(), "127.0.0.12:15002");
    assert_eq!(at.inbound.app.to_string(), "127.0.0.12:18082");
}

#[test]
fn bad_discovery_settings_are_reported_at_their_line() {
    for (from, to, needle, says) in [
        (
            "  app: 127.0.0.1:18082\n",
            "  app: 127.0.0.1:18082\n  service: 10.0.0.1:15002\n",
            "service:",
            "not a DNS name",
        ),
        (
            "  app: 127.0.0.1:18082\n",
            "  app: 127.0.0.1:18082\n  endpoints: [127.0.0.11:15002, 127.0.0.11:15002]\n",
            "endpoints:",
            "distinct",
        ),
        (
            "  listen: 127.0.0.1:15002\n",
            "  listen: ${INSTANCE_IP}:15002\n",
            "listen:",
            "set inbound.service",
        ),
        (
            "  listen: 127.0.0.1:15002\n",
            "  listen: ${POD_IP}:15002\n",
            "listen:",
            "${INSTANCE_IP}:PORT",
        ),
    ] {
        let dir = sample();
        let file = edit(dir.path(), "workloads/backend.yaml", from, to);
        let errs = errors(dir.path());
        let d = errs
            .iter()
            .find(|d| d.message.contains(says))
            .unwrap_or_else(|| panic!("{to}: {errs:?}"));
        assert_eq!(d.line, line_of(&file, needle), "{to}");
    }
}
