//! proxy-wasm adapter (only on `wasm32`): binds the [`Host`] trait to proxy-wasm host
//! calls and wires the root and HTTP contexts to [`Plugin`]. No logic lives here.
//!
//! Host calls go through `proxy_wasm::hostcalls` directly, never the SDK's `Context`
//! helpers, which `unwrap()` host results (a host error would trap the VM).
//!
//! Audit of what can still trap (proxy-wasm 0.2.5): every `hostcalls` function panics on
//! a host status it does not expect (e.g. `get_property` on anything but Ok/NotFound);
//! Envoy returns those only for calls made in the wrong phase or context, which this
//! adapter never makes. Values are read as bytes (`get_map_bytes`, `get_property`,
//! `get_buffer`); the SDK's string decoders (`get_map`, `get_map_value`, `get_grpc_status`)
//! are not used. If the VM traps anyway, the plugin's failure policy (`FAIL_RELOAD`, set
//! by the control plane) makes Envoy deny requests while it starts a fresh VM.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as WasmAction, ContextType, LogLevel, MapType, MetricType};

use crate::authorize::Counter;
use crate::plugin::{Flow, Host, HostError, Level, Plugin};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::new()) });
}}

/// Metric ids, defined once per VM.
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    dry_run_denied: Option<u32>,
    errors: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        let define = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Self {
            allowed: define("warden_authz.allowed"),
            denied: define("warden_authz.denied"),
            dry_run_denied: define("warden_authz.dry_run_denied"),
            errors: define("warden_authz.errors"),
        }
    }
}

/// [`Host`] over proxy-wasm host calls, for the current context.
#[derive(Debug, Clone, Copy)]
struct WasmHost {
    metrics: Metrics,
}

fn host_error(call: &'static str) -> impl Fn(proxy_wasm::types::Status) -> HostError {
    move |status| HostError {
        call,
        detail: format!("{status:?}"),
    }
}

impl Host for WasmHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(host_error("get_property"))
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        // `get_map` decodes values with `String::from_utf8(..).unwrap()`: one obs-text
        // byte would trap the VM. The bytes variant leaves values alone; names are
        // RFC 9110 tokens (Envoy's codecs reject anything else), so its name decoding
        // cannot fail on a request Envoy accepted.
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(host_error("get_map_bytes"))
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
            .map_err(host_error("set_map_value"))
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &str,
    ) -> Result<(), HostError> {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))
            .map_err(host_error("send_http_response"))
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        // Nothing sensible to do when logging itself fails.
        let _ = hostcalls::log(level, message);
    }

    fn increment(&self, counter: Counter, by: u64) {
        let id = match counter {
            Counter::Allowed => self.metrics.allowed,
            Counter::Denied => self.metrics.denied,
            Counter::DryRunDenied => self.metrics.dry_run_denied,
            Counter::Errors => self.metrics.errors,
        };
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(path.to_vec(), Some(value)).map_err(host_error("set_property"))
    }

    fn now_micros(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// Random bits for decision ids (std's hasher keys come from WASI `random_get`).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5741_5244_454e);
    hasher.finish()
}

/// Root context: owns the plugin (policy `Arc` + decision ids), shared with HTTP contexts.
struct Root {
    plugin: Rc<RefCell<Plugin>>,
    host: WasmHost,
}

impl Root {
    fn new() -> Self {
        Self {
            plugin: Rc::new(RefCell::new(Plugin::new(seed()))),
            host: WasmHost {
                metrics: Metrics::define(),
            },
        }
    }
}

/// How often counts gathered by requests are added to Envoy's counters.
const COUNTER_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

impl Context for Root {
    /// The plugin is going away (a new filter config replaced it): keep its last counts.
    fn on_done(&mut self) -> bool {
        if let Ok(mut plugin) = self.plugin.try_borrow_mut() {
            plugin.flush_counters(&self.host);
        }
        true
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        if let Ok(mut plugin) = self.plugin.try_borrow_mut() {
            plugin.flush_counters(&self.host);
        }
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // The timer belongs to this root context (one per plugin); failing to set it
        // would only leave the counters behind, never the decisions.
        if hostcalls::set_tick_period(COUNTER_FLUSH).is_err() {
            self.host
                .log(Level::Warn, "warden: cannot set the counter flush timer");
        }
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                self.host.log(
                    Level::Warn,
                    &format!("warden: cannot read plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        match self.plugin.try_borrow_mut() {
            Ok(mut plugin) => plugin.configure(&self.host, &bytes),
            Err(_) => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            plugin: self.plugin.clone(),
            host: self.host,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request.
struct Request {
    plugin: Rc<RefCell<Plugin>>,
    host: WasmHost,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> WasmAction {
        let flow = match self.plugin.try_borrow_mut() {
            Ok(mut plugin) => plugin.on_request_headers(&self.host),
            Err(_) => {
                // Cannot happen on a single-threaded VM; fail closed if it ever does.
                let _ = self.host.send_response(500, &[], "internal error\n");
                Flow::Stop
            }
        };
        match flow {
            Flow::Continue => WasmAction::Continue,
            Flow::Stop => WasmAction::Pause,
        }
    }
}
