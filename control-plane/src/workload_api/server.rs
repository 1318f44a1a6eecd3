//! Hand-written tonic 0.12 glue for `SpiffeWorkloadAPI` (what tonic-build would generate):
//! route `/SpiffeWorkloadAPI/<Method>` to [`WorkloadApi`] with the prost codec, and answer
//! `UNIMPLEMENTED` for anything else.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::{empty_body, BoxBody};
use tonic::codec::ProstCodec;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status};

use super::service::WorkloadApi;

/// The gRPC service, ready for `tonic::transport::Server::add_service`.
#[derive(Debug, Clone)]
pub struct WorkloadApiServer(pub(crate) Arc<WorkloadApi>);

impl NamedService for WorkloadApiServer {
    const NAME: &'static str = "SpiffeWorkloadAPI";
}

/// Adapts an async fn of the API into the `tower::Service` tonic's `Grpc` drives.
struct Handler<F>(F);

impl<F, Fut, Req, Resp> Service<Request<Req>> for Handler<F>
where
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    type Response = Response<Resp>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Req>) -> Fut {
        (self.0)(req)
    }
}

impl<B> Service<http::Request<B>> for WorkloadApiServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let api = self.0.clone();
        match req.uri().path() {
            "/SpiffeWorkloadAPI/FetchX509SVID" => Box::pin(async move {
                let h = Handler(move |r| api.clone().fetch_x509_svid(r));
                Ok(Grpc::new(ProstCodec::default())
                    .server_streaming(h, req)
                    .await)
            }),
            "/SpiffeWorkloadAPI/FetchX509Bundles" => Box::pin(async move {
                let h = Handler(move |r| api.clone().fetch_x509_bundles(r));
                Ok(Grpc::new(ProstCodec::default())
                    .server_streaming(h, req)
                    .await)
            }),
            "/SpiffeWorkloadAPI/FetchJWTSVID" => Box::pin(async move {
                let h = Handler(move |r| api.clone().fetch_jwt_svid(r));
                Ok(Grpc::new(ProstCodec::default()).unary(h, req).await)
            }),
            "/SpiffeWorkloadAPI/FetchJWTBundles" => Box::pin(async move {
                let h = Handler(move |r| api.clone().fetch_jwt_bundles(r));
                Ok(Grpc::new(ProstCodec::default())
                    .server_streaming(h, req)
                    .await)
            }),
            "/SpiffeWorkloadAPI/ValidateJWTSVID" => Box::pin(async move {
                let h = Handler(move |r| api.clone().validate_jwt_svid(r));
                Ok(Grpc::new(ProstCodec::default()).unary(h, req).await)
            }),
            _ => Box::pin(async move {
                let mut resp = http::Response::new(empty_body());
                let headers = resp.headers_mut();
                headers.insert(
                    "grpc-status",
                    http::HeaderValue::from(tonic::Code::Unimplemented as i32),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                Ok(resp)
            }),
        }
    }
}
