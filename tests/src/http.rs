//! A minimal HTTP/1.1 client (and the message parsing the echo app shares): enough to
//! send requests with chosen headers over plain TCP or TLS, keep a connection alive
//! across requests, and read `Content-Length` or chunked bodies. Every read has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Read and write timeout on every socket the harness opens.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
}

/// One HTTP/1.1 connection, reused for several requests (keep-alive).
#[derive(Debug)]
pub struct Conn<S: Read + Write> {
    stream: BufReader<S>,
    host: String,
}

impl Conn<TcpStream> {
    /// Opens a plain TCP connection.
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self::over(stream, &addr.to_string()))
    }
}

impl<S: Read + Write> Conn<S> {
    /// Speaks HTTP over an already open stream (for example a TLS stream).
    pub fn over(stream: S, host: &str) -> Self {
        Self {
            stream: BufReader::new(stream),
            host: host.to_owned(),
        }
    }

    /// Sends a request with a body and reads the response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let out = self.stream.get_mut();
        out.write_all(head.as_bytes())?;
        out.write_all(body)?;
        out.flush()?;
        read_response(&mut self.stream, method == "HEAD")
    }

    /// Sends bytes as they are (a hand-made request, e.g. with non-UTF-8 header bytes)
    /// and reads the response.
    pub fn send_raw(&mut self, request: &[u8]) -> Result<Response> {
        let out = self.stream.get_mut();
        out.write_all(request)?;
        out.flush()?;
        read_response(&mut self.stream, false)
    }

    /// `GET path` with extra headers.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.send("GET", path, headers, b"")
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response> {
    Conn::connect(addr)?
        .send(method, path, headers, b"")
        .with_context(|| format!("{method} http://{addr}{path}"))
}

/// `GET` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    request(addr, "GET", path, &[])
}

/// Header fields in order, names lowercased.
pub type Headers = Vec<(String, String)>;

/// Reads a start line and header block; `None` on a clean EOF before any byte.
pub fn read_head(reader: &mut impl BufRead) -> Result<Option<(String, Headers)>> {
    let mut start = String::new();
    if reader.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        // Header values may carry obs-text (non-UTF-8 bytes): read bytes, decode lossily.
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            bail!("connection closed inside the header block");
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some((start.trim_end().to_owned(), headers)))
}

/// Reads a message body framed by `transfer-encoding: chunked` or `content-length`
/// (no framing: empty for requests, until EOF for responses when `to_eof`).
pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> Result<Vec<u8>> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return read_chunked(reader);
    }
    if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .with_context(|| format!("bad content-length {len:?}"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = size.trim().split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(size, 16).with_context(|| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while read_head_line(reader)? {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_head_line(reader)?;
    }
}

fn read_head_line(reader: &mut impl BufRead) -> Result<bool> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(!line.trim_end().is_empty())
}

fn read_response(reader: &mut impl BufRead, head_only: bool) -> Result<Response> {
    let (start, headers) = read_head(reader)?.context("connection closed before any response")?;
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {start:?}"))?;
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else {
        read_body(reader, &headers, true)?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}
