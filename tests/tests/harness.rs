//! Self-test of the harness with a static Envoy (no control plane): the process guard,
//! the echo app, the HTTP client and the admin helpers work, and a dropped guard leaves
//! no process behind.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use warden_e2e::app::EchoApp;
use warden_e2e::envoy::{self, Envoy};
use warden_e2e::http;
use warden_e2e::ports::free_addr;

fn static_proxy(
    listen: std::net::SocketAddr,
    app: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: plain
    enable_reuse_port: false
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: app}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app_port}}}}}}}
"#,
        admin_port = admin.port(),
        listen_port = listen.port(),
        app_port = app.port()
    )
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn static_envoy_proxies_to_the_echo_app_and_dies_with_its_guard() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (listen, app_addr, admin) = (free_addr()?, free_addr()?, free_addr()?);
    let app = EchoApp::start("echo", app_addr)?;
    let bootstrap = dir.path().join("envoy.yaml");
    std::fs::write(&bootstrap, static_proxy(listen, app_addr, admin))?;
    let mut proxy = Envoy::start("envoy-static", &bootstrap, admin, dir.path())?;
    proxy.wait_ready(envoy::READY_TIMEOUT)?;

    let mut conn = http::Conn::connect(listen)?;
    for i in 0..3 {
        let response = conn.get(&format!("/hello/{i}"), &[("x-test", "yes")])?;
        assert_eq!(response.status, 200, "{}", response.text());
        let echo = response.json()?;
        assert_eq!(echo["path"], format!("/hello/{i}"));
        assert_eq!(echo["headers"]["x-test"], "yes");
        assert_eq!(echo["app"], "echo");
    }
    assert_eq!(app.served(), 3);
    assert!(proxy.stat("http.plain.downstream_rq_completed")? >= 3);
    assert!(proxy.config_dump()?["configs"].is_array());
    assert!(proxy
        .stats("downstream_cx_total")?
        .keys()
        .any(|k| k.contains("plain")));

    let pid = proxy.process().pid();
    assert!(pid_alive(pid));
    drop(proxy);
    assert!(!pid_alive(pid), "envoy {pid} survived its guard");
    Ok(())
}

#[test]
fn a_process_outlives_nothing_when_its_watchdog_pipe_closes() -> Result<()> {
    use warden_e2e::process::{Process, ProcessSpec};
    let dir = tempfile::tempdir()?;
    let mut sleeper = Process::spawn(
        &ProcessSpec::new("sleeper", "/bin/sleep").args(["30"]),
        dir.path(),
    )?;
    let pid = sleeper.pid();
    sleeper.ensure_running()?;
    let start = std::time::Instant::now();
    assert!(sleeper.stop(), "sleep should still have been running");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "SIGTERM via the watchdog should be quick"
    );
    assert!(!pid_alive(pid));
    Ok(())
}
