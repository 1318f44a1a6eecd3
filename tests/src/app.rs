//! A tiny HTTP/1.1 echo app standing in for a workload's application: it answers every
//! request with 200 and a JSON body `{app, method, path, headers, body}` (header names
//! lowercased, repeated names joined with `,`), so a test can see what the sidecar
//! forwarded, e.g. `x-forwarded-client-cert` or `x-spiffe-id`. Keep-alive is supported.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::http::{read_body, read_head};

/// A running echo app; stops accepting when dropped.
#[derive(Debug)]
pub struct EchoApp {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl EchoApp {
    /// Listens on `addr` and answers as app `name`.
    pub fn start(name: &str, addr: SocketAddr) -> Result<Self> {
        let listener =
            bind_soon(addr).with_context(|| format!("echo app {name} binding {addr}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let thread = {
            let (name, stop, served) = (name.to_owned(), stop.clone(), served.clone());
            std::thread::spawn(move || accept_loop(&listener, &name, &stop, &served))
        };
        Ok(Self {
            addr,
            stop,
            served,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, name: &str, stop: &AtomicBool, served: &Arc<AtomicU64>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let (name, served) = (name.to_owned(), served.clone());
        std::thread::spawn(move || {
            let _ = serve_connection(stream, &name, &served);
        });
    }
}

fn serve_connection(stream: TcpStream, name: &str, served: &AtomicU64) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some((start, headers)) = read_head(&mut reader)? {
        let body = read_body(&mut reader, &headers, false)?;
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        let mut echoed: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &headers {
            echoed
                .entry(k.clone())
                .and_modify(|prev| {
                    prev.push(',');
                    prev.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        let json = serde_json::json!({
            "app": name,
            "method": method,
            "path": path,
            "headers": echoed,
            "body": String::from_utf8_lossy(&body),
        });
        let payload = json.to_string();
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{payload}",
            payload.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        // Counted before answering, so a client that has its response sees the count.
        served.fetch_add(1, Ordering::SeqCst);
        out.write_all(response.as_bytes())?;
        if close {
            break;
        }
    }
    Ok(())
}

/// Binds `addr`, trying again for up to 2 s while it is in use: a port `ports::free_port`
/// found free can be held for a moment by a process of the previous test that is still
/// exiting (seen once in CI, right after the fault tests).
fn bind_soon(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match TcpListener::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            result => return result,
        }
    }
}
