//! The five Workload API calls. Every call first checks the `workload.spiffe.io: true`
//! metadata (else `INVALID_ARGUMENT`, as the spec requires) and then attests the caller from
//! its socket credentials; a caller that matches no entry gets `PERMISSION_DENIED`.
//! [`Rpc`] plugs them into the generated tonic server (which answers `UNIMPLEMENTED` for
//! any other path).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use super::attest::{Caller, Entry};
use super::issuer::Issuer;
use super::jwt::JwtError;
use super::proto::spiffe_workload_api_server::SpiffeWorkloadApi;
use super::proto::*;

/// A server-streaming response.
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Shared state of the service.
#[derive(Debug)]
pub(crate) struct WorkloadApi {
    pub(crate) issuer: Arc<Issuer>,
    /// Becomes `true` on shutdown; open streams then end so the server can stop.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl WorkloadApi {
    /// Header check and attestation: the caller and the entries it may use (never empty).
    #[allow(clippy::result_large_err)] // tonic::Status is what handlers return anyway
    fn authorize<T>(&self, req: &Request<T>) -> Result<(Caller, Vec<Entry>), Status> {
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
        let entries = self.entries_for(&caller)?;
        Ok((caller, entries))
    }

    /// The entries `caller` matches now; `PERMISSION_DENIED` when none (also when a reload
    /// removed the caller's entry while its stream was open).
    #[allow(clippy::result_large_err)]
    fn entries_for(&self, caller: &Caller) -> Result<Vec<Entry>, Status> {
        let entries = self.issuer.entries_for(caller);
        if entries.is_empty() {
            tracing::info!(%caller, "workload API caller matches no workload; denied");
            return Err(Status::permission_denied("no identity issued"));
        }
        Ok(entries)
    }

    /// The response for `entries`, and a fingerprint of it (serials and bundle).
    fn x509_response(&self, entries: &[Entry]) -> (X509svidResponse, Vec<u8>) {
        let bundle = self.issuer.bundle().x509_authorities_der.concat();
        let federated_bundles = self.federated_x509();
        let mut fingerprint = bundle.clone();
        for (td, der) in &federated_bundles {
            fingerprint.extend_from_slice(td.as_bytes());
            fingerprint.extend_from_slice(der);
        }
        let svids = entries
            .iter()
            .filter_map(|e| self.issuer.current(&e.name))
            .map(|m| {
                fingerprint.extend_from_slice(m.serial_hex.as_bytes());
                X509svid {
                    spiffe_id: m.spiffe_id.clone(),
                    x509_svid: m.chain_der.clone(),
                    x509_svid_key: m.key_der.clone(),
                    bundle: bundle.clone(),
                    hint: String::new(),
                }
            })
            .collect();
        let resp = X509svidResponse {
            svids,
            crl: Vec::new(),
            federated_bundles,
        };
        (resp, fingerprint)
    }

    /// Each federated trust domain's X.509 authorities (concatenated DER), by
    /// `spiffe://<td>` (the Workload API's key for a bundle).
    fn federated_x509(&self) -> HashMap<String, Vec<u8>> {
        self.issuer
            .federated()
            .iter()
            .map(|f| {
                (
                    f.bundle.trust_domain.to_spiffe_id_string(),
                    f.bundle.x509_authorities_der.concat(),
                )
            })
            .collect()
    }

    fn td_key(&self) -> String {
        self.issuer.bundle().trust_domain.to_spiffe_id_string()
    }

    pub(crate) async fn fetch_x509_svid(
        self: Arc<Self>,
        req: Request<X509svidRequest>,
    ) -> Result<Response<ResponseStream<X509svidResponse>>, Status> {
        let (caller, _) = self.authorize(&req)?;
        let epoch = self.issuer.subscribe();
        let shutdown = self.shutdown.clone();
        let state = (self, caller, epoch, shutdown, Vec::<u8>::new());
        // Re-attest on every change: a reload may have changed or removed this caller's
        // entries. Send only when what this caller sees (SVIDs or bundle) changed.
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let (api, caller, mut epoch, mut shutdown, last) = state?;
            loop {
                epoch.borrow_and_update();
                let entries = match api.entries_for(&caller) {
                    Ok(e) => e,
                    Err(status) => return Some((Err(status), None)),
                };
                let (resp, fingerprint) = api.x509_response(&entries);
                if fingerprint != last {
                    return Some((Ok(resp), Some((api, caller, epoch, shutdown, fingerprint))));
                }
                tokio::select! {
                    changed = epoch.changed() => if changed.is_err() { return None },
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    pub(crate) async fn fetch_x509_bundles(
        self: Arc<Self>,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<ResponseStream<X509BundlesResponse>>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(on_change(self, |api| {
            let bundle = api.issuer.bundle().x509_authorities_der.concat();
            let mut bundles = api.federated_x509();
            bundles.insert(api.td_key(), bundle);
            X509BundlesResponse {
                crl: Vec::new(),
                bundles,
            }
        })))
    }

    pub(crate) async fn fetch_jwt_svid(
        self: Arc<Self>,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let (_, entries) = self.authorize(&req)?;
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
        let mut svids = Vec::new();
        for e in chosen {
            let token =
                self.issuer
                    .sign_jwt(&e.spiffe_id, &body.audience)
                    .map_err(|err| match err {
                        // The caller's audiences make the token too long: its request is at fault.
                        JwtError::TooLong => Status::invalid_argument(err.to_string()),
                        _ => Status::internal(err.to_string()),
                    })?;
            self.issuer
                .audit()
                .workload_jwt(e.spiffe_id.as_str(), &body.audience);
            svids.push(Jwtsvid {
                spiffe_id: e.spiffe_id.to_string(),
                svid: token,
                hint: String::new(),
            });
        }
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    pub(crate) async fn fetch_jwt_bundles(
        self: Arc<Self>,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<ResponseStream<JwtBundlesResponse>>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(on_change(self, |api| {
            let jwks = api.issuer.jwks_json().into_bytes();
            let mut bundles: HashMap<String, Vec<u8>> = api
                .issuer
                .federated()
                .iter()
                .filter(|f| !f.jwt_keys.is_empty())
                .map(|f| {
                    (
                        f.bundle.trust_domain.to_spiffe_id_string(),
                        f.jwt_jwks().into_bytes(),
                    )
                })
                .collect();
            bundles.insert(api.td_key(), jwks);
            JwtBundlesResponse { bundles }
        })))
    }

    pub(crate) async fn validate_jwt_svid(
        self: Arc<Self>,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
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
            .validate_jwt(&body.svid, &body.audience)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: v.subject.to_string(),
            claims: Some(to_struct(v.claims)),
        }))
    }
}

/// The service as the generated server calls it: each RPC on a shared [`WorkloadApi`]
/// (streams hold their own `Arc` of it).
#[derive(Debug, Clone)]
pub(crate) struct Rpc(pub(crate) Arc<WorkloadApi>);

#[tonic::async_trait]
impl SpiffeWorkloadApi for Rpc {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        self.0.clone().fetch_x509_svid(req).await
    }

    async fn fetch_x509_bundles(
        &self,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.0.clone().fetch_x509_bundles(req).await
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        self.0.clone().fetch_jwt_svid(req).await
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.0.clone().fetch_jwt_bundles(req).await
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.0.clone().validate_jwt_svid(req).await
    }
}

/// Send `build(api)` now and again whenever it changes (a CA or JWT key rotation), until
/// shutdown.
fn on_change<T>(api: Arc<WorkloadApi>, build: fn(&WorkloadApi) -> T) -> ResponseStream<T>
where
    T: PartialEq + Clone + Send + 'static,
{
    let epoch = api.issuer.subscribe();
    let shutdown = api.shutdown.clone();
    let state = (api, epoch, shutdown, None::<T>);
    Box::pin(futures::stream::unfold(
        state,
        move |(api, mut epoch, mut shutdown, last)| async move {
            loop {
                epoch.borrow_and_update();
                let item = build(&api);
                if last.as_ref() != Some(&item) {
                    return Some((Ok(item.clone()), (api, epoch, shutdown, Some(item))));
                }
                tokio::select! {
                    changed = epoch.changed() => if changed.is_err() { return None },
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
            }
        },
    ))
}

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
