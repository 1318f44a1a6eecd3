//! One HTTP/1.1 request to a loopback admin endpoint (`warden serve`'s, for `warden ca`;
//! a sidecar Envoy's `/stats`, for the dashboard), bounded in time and size.
//!
//! The client is hyper's HTTP/1.1 connection (`hyper::client::conn::http1`): hyper is
//! already built for tonic and axum, so this adds no crate. Chunked and length-delimited
//! bodies are hyper's to decode.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;

/// How long to wait and how much to read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Until the TCP connection is established.
    pub connect: Duration,
    /// From the connection until the whole answer is read.
    pub answer: Duration,
    /// Largest body read, in bytes.
    pub max_body: usize,
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The method or path does not make a request.
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    /// Nothing accepted the connection in time.
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The connection failed (refused, reset, ...).
    #[error("connecting: {0}")]
    Connect(#[from] std::io::Error),
    /// The peer did not answer in time.
    #[error("no answer within {0:?}")]
    AnswerTimeout(Duration),
    /// The peer did not speak HTTP/1.1.
    #[error("HTTP: {0}")]
    Protocol(#[from] hyper::Error),
    /// The body broke off or passed [`Limits::max_body`].
    #[error("reading the answer: {0}")]
    Body(String),
}

/// Sends `method path` (no body) to `addr` and returns the status code and the body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    limits: Limits,
) -> Result<(u16, Bytes), HttpError> {
    request_as(addr, method, path, None, limits).await
}

/// [`request`] with `authorization: Bearer <bearer>` when given.
pub async fn request_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    limits: Limits,
) -> Result<(u16, Bytes), HttpError> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string());
    if let Some(token) = bearer {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder.body(Empty::<Bytes>::new())?;
    let stream = tokio::time::timeout(limits.connect, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::ConnectTimeout(limits.connect))??;
    let io = hyper_util::rt::TokioIo::new(stream);
    let answer = async move {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let code = response.status().as_u16();
        let body = Limited::new(response.into_body(), limits.max_body)
            .collect()
            .await
            .map_err(|e| HttpError::Body(e.to_string()))?
            .to_bytes();
        Ok((code, body))
    };
    tokio::time::timeout(limits.answer, answer)
        .await
        .map_err(|_| HttpError::AnswerTimeout(limits.answer))?
}
