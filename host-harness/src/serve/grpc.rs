//! The OTLP/gRPC receiver: `TraceService/Export`, gzip accepted, messages
//! capped at the decompressed body limit.
//!
//! The service is written out here rather than taken from
//! `opentelemetry-proto`'s generated `TraceServiceServer`, for one reason:
//! the generated one decodes each request into structs, and the processor
//! reads the wire format, so every batch would be decoded and encoded again
//! before processing, which costs more than the processing. Here the
//! message's bytes go to the workers as they arrived. The path, codec
//! framing, compression and size limit are tonic's own.
//!
//! Status codes follow the OTLP/gRPC spec: `InvalidArgument` (final) for a
//! malformed or oversized batch or one the upstream refused for good,
//! `Unavailable` (retried) for overload, a deadline hit, or an upstream
//! failure, `Internal` (final) for a processor trap.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use prost::bytes::Buf;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Request, Response, Status};

use super::metrics::Transport;
use super::pool::BodyKind;
use super::{Admission, ExportError, Gateway, log};

/// The OTLP/gRPC trace export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The gRPC status for an export error.
pub fn grpc_status(error: &ExportError) -> Status {
    use super::upstream::SendError;
    let code = match error {
        ExportError::Malformed(_)
        | ExportError::TooLarge(_)
        | ExportError::Upstream(SendError::Rejected(_)) => Code::InvalidArgument,
        ExportError::Overloaded | ExportError::Timeout | ExportError::Upstream(_) => {
            Code::Unavailable
        }
        ExportError::Trap | ExportError::Internal(_) => Code::Internal,
        ExportError::BodyTimeout(_) => Code::DeadlineExceeded,
    };
    Status::new(code, error.to_string())
}

/// The `TraceService` as a tower service over HTTP/2 requests.
#[derive(Clone)]
pub struct Receiver {
    gateway: Arc<Gateway>,
    max_message_bytes: usize,
}

impl Receiver {
    /// The service for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Receiver {
        let max_message_bytes =
            usize::try_from(gateway.settings.max_decompressed_bytes).unwrap_or(usize::MAX);
        Receiver { gateway, max_message_bytes }
    }
}

impl<B> Service<http::Request<B>> for Receiver
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                Ok(Status::unimplemented("only TraceService/Export is served here").into_http())
            });
        }
        // Admitted before tonic reads and decompresses the message, so the
        // in-flight limit bounds the memory messages take, as over HTTP.
        let admission = match self.gateway.admit(Transport::Grpc) {
            Ok(admission) => admission,
            Err(e) => return Box::pin(async move { Ok(grpc_status(&e).into_http()) }),
        };
        let gateway = Arc::clone(&self.gateway);
        let (decoded, read) = oneshot::channel();
        let export = Export {
            gateway: Arc::clone(&gateway),
            admission: Some(admission),
            decoded: Some(decoded),
        };
        let limit = self.max_message_bytes;
        let mut grpc = tonic::server::Grpc::new(RawRequestCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit);
        let timeout = gateway.settings.body_timeout;
        Box::pin(async move {
            let unary = grpc.unary(export, request);
            tokio::pin!(unary);
            // The message is read holding an in-flight place, so a client
            // that stalls mid-message is cut off (as over HTTP); the timer
            // stops once the message is in and the export has begun.
            tokio::select! {
                response = &mut unary => return Ok(final_size_status(&gateway, response, limit)),
                read = tokio::time::timeout(timeout, read) => {
                    if read.is_err() {
                        let error = ExportError::BodyTimeout(timeout.as_millis());
                        gateway.record_failure(&error, Transport::Grpc, 0);
                        return Ok(grpc_status(&error).into_http());
                    }
                }
            }
            Ok(final_size_status(&gateway, unary.await, limit))
        })
    }
}

/// Turns tonic's own answers to an oversized message into `InvalidArgument`.
/// tonic refuses a frame over the limit with `OutOfRange` and a message that
/// inflates past it with `ResourceExhausted`; OTLP/gRPC clients retry both,
/// so they would resend the same batch forever. The export service never
/// answers with either code, so these come from tonic's decoding.
fn final_size_status(
    gateway: &Gateway,
    response: http::Response<tonic::body::Body>,
    limit: usize,
) -> http::Response<tonic::body::Body> {
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    if !matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted) {
        return response;
    }
    let error = ExportError::TooLarge(format!(
        "gRPC message is over the limit of {limit} bytes after gunzip (--max-decompressed-bytes): {}; send smaller batches",
        status.message()
    ));
    gateway.record_failure(&error, Transport::Grpc, 0);
    grpc_status(&error).into_http()
}

/// One export call, holding its in-flight place.
struct Export {
    gateway: Arc<Gateway>,
    admission: Option<Admission>,
    /// Told when the message has been read, to stop the read timer.
    decoded: Option<oneshot::Sender<()>>,
}

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let gateway = Arc::clone(&self.gateway);
        let admitted = self.admission.take();
        if let Some(decoded) = self.decoded.take() {
            let _ = decoded.send(());
        }
        Box::pin(async move {
            // tonic calls a unary service once; admit again should it not.
            let admission = match admitted {
                Some(admission) => admission,
                None => gateway.admit(Transport::Grpc).map_err(|e| grpc_status(&e))?,
            };
            let kind = BodyKind { gzip: false, json: false };
            match gateway.export(&admission, request.into_inner(), kind, Transport::Grpc).await {
                Ok(_) => Ok(Response::new(ExportTraceServiceResponse::default())),
                Err(e) => Err(grpc_status(&e)),
            }
        })
    }
}

/// Takes the request message as bytes; writes the response with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawRequestCodec;

/// Reads the request message as it is.
#[derive(Debug)]
struct RawDecoder;

/// Writes an `ExportTraceServiceResponse`.
#[derive(Debug)]
struct ResponseEncoder;

impl Codec for RawRequestCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(
        &mut self,
        item: ExportTraceServiceResponse,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
    }
}

/// Serves the OTLP/gRPC receiver until `stop`.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(Receiver::new(gateway), incoming, stopped)
        .await
    {
        log(format_args!("OTLP/gRPC receiver stopped with an error: {e}"));
    }
}
