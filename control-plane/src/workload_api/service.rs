//! The five Workload API calls. Every call first checks the `workload.spiffe.io: true`
//! metadata (else `INVALID_ARGUMENT`, as the spec requires) and then attests the caller from
//! its socket credentials; a caller that matches no entry gets `PERMISSION_DENIED`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use super::attest::{self, Caller, Entry};
use super::issuer::Issuer;
use super::proto::*;

/// A server-streaming response.
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Shared state of the service.
#[derive(Debug)]
pub(crate) struct WorkloadApi {
    pub(crate) issuer: Arc<Issuer>,
    pub(crate) entries: Vec<Entry>,
    /// Becomes `true` on shutdown; open streams then end so the server can stop.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl WorkloadApi {
    /// Header check and attestation: the entries this caller may use (never empty).
    #[allow(clippy::result_large_err)] // tonic::Status is what handlers return anyway
    fn authorize<T>(&self, req: &Request<T>) -> Result<Vec<Entry>, Status> {
        let flag = req
            .metadata()
            .get("workload.spiffe.io")
            .and_then(|v| v.to_str().ok());
        if flag != Some("true") {
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .ok_or_else(|| Status::permission_denied("caller credentials unavailable"))?;
        let caller = Caller::from_cred(&cred);
        let entries: Vec<Entry> = attest::matching(&self.entries, &caller)
            .into_iter()
            .cloned()
            .collect();
        if entries.is_empty() {
            tracing::info!(%caller, "workload API caller matches no workload; denied");
            return Err(Status::permission_denied("no identity issued"));
        }
        Ok(entries)
    }

    fn x509_response(&self, entries: &[Entry]) -> (X509SvidResponse, Vec<String>) {
        let bundle = self.issuer.bundle().x509_authorities_der.concat();
        let mut serials = Vec::new();
        let svids = entries
            .iter()
            .filter_map(|e| self.issuer.current(&e.name))
            .map(|m| {
                serials.push(m.serial_hex.clone());
                X509Svid {
                    spiffe_id: m.spiffe_id.clone(),
                    x509_svid: m.chain_der.clone(),
                    x509_svid_key: m.key_der.clone(),
                    bundle: bundle.clone(),
                    hint: String::new(),
                }
            })
            .collect();
        let resp = X509SvidResponse {
            svids,
            crl: Vec::new(),
            federated_bundles: HashMap::new(),
        };
        (resp, serials)
    }

    fn td_key(&self) -> String {
        self.issuer.bundle().trust_domain.to_spiffe_id_string()
    }

    pub(crate) async fn fetch_x509_svid(
        self: Arc<Self>,
        req: Request<X509SvidRequest>,
    ) -> Result<Response<ResponseStream<X509SvidResponse>>, Status> {
        let entries = self.authorize(&req)?;
        let epoch = self.issuer.subscribe();
        let shutdown = self.shutdown.clone();
        let state = (self, entries, epoch, shutdown, Vec::<String>::new());
        let stream = futures::stream::unfold(
            state,
            |(api, entries, mut epoch, mut shutdown, last)| async move {
                loop {
                    epoch.borrow_and_update();
                    let (resp, serials) = api.x509_response(&entries);
                    if serials != last {
                        return Some((Ok(resp), (api, entries, epoch, shutdown, serials)));
                    }
                    tokio::select! {
                        changed = epoch.changed() => if changed.is_err() { return None },
                        _ = shutdown.wait_for(|stop| *stop) => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    pub(crate) async fn fetch_x509_bundles(
        self: Arc<Self>,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<ResponseStream<X509BundlesResponse>>, Status> {
        self.authorize(&req)?;
        let bundle = self.issuer.bundle().x509_authorities_der.concat();
        let resp = X509BundlesResponse {
            crl: Vec::new(),
            bundles: HashMap::from([(self.td_key(), bundle)]),
        };
        Ok(Response::new(once_then_wait(resp, self.shutdown.clone())))
    }

    pub(crate) async fn fetch_jwt_svid(
        self: Arc<Self>,
        req: Request<JwtSvidRequest>,
    ) -> Result<Response<JwtSvidResponse>, Status> {
        let entries = self.authorize(&req)?;
        let body = req.get_ref();
        if body.audience.is_empty() || body.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let chosen: Vec<&Entry> = entries
            .iter()
            .filter(|e| body.spiffe_id.is_empty() || e.spiffe_id.as_str() == body.spiffe_id)
            .collect();
        if chosen.is_empty() {
            return Err(Status::permission_denied(
                "no identity issued for the requested SPIFFE ID",
            ));
        }
        let now = self.issuer.now();
        let ttl = self.issuer.lifetimes.jwt_ttl;
        let mut svids = Vec::new();
        for e in chosen {
            let token = self
                .issuer
                .jwt
                .sign(&e.spiffe_id, &body.audience, now, ttl)
                .map_err(|err| Status::internal(err.to_string()))?;
            svids.push(JwtSvid {
                spiffe_id: e.spiffe_id.to_string(),
                svid: token,
                hint: String::new(),
            });
        }
        Ok(Response::new(JwtSvidResponse { svids }))
    }

    pub(crate) async fn fetch_jwt_bundles(
        self: Arc<Self>,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<ResponseStream<JwtBundlesResponse>>, Status> {
        self.authorize(&req)?;
        let td = self.issuer.bundle().trust_domain;
        let jwks = self.issuer.jwt.jwks_json(&td).into_bytes();
        let resp = JwtBundlesResponse {
            bundles: HashMap::from([(self.td_key(), jwks)]),
        };
        Ok(Response::new(once_then_wait(resp, self.shutdown.clone())))
    }

    pub(crate) async fn validate_jwt_svid(
        self: Arc<Self>,
        req: Request<ValidateJwtSvidRequest>,
    ) -> Result<Response<ValidateJwtSvidResponse>, Status> {
        self.authorize(&req)?;
        let body = req.get_ref();
        if body.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if body.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let v = self
            .issuer
            .jwt
            .validate(&body.svid, &body.audience, self.issuer.now())
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        Ok(Response::new(ValidateJwtSvidResponse {
            spiffe_id: v.subject.to_string(),
            claims: Some(to_struct(v.claims)),
        }))
    }
}

/// Send `item`, then keep the stream open (bundles only change when the CA rotates) until shutdown.
fn once_then_wait<T: Send + 'static>(
    item: T,
    mut shutdown: watch::Receiver<bool>,
) -> ResponseStream<T> {
    let first = futures::stream::once(async move { Ok(item) });
    let rest = futures::stream::once(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .filter_map(|()| async { None });
    Box::pin(futures::StreamExt::chain(first, rest))
}

use futures::StreamExt as _;

fn to_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s),
        J::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}
