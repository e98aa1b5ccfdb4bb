//! The OTLP/gRPC receiver: `TraceService/Export`, gzip accepted, messages
//! capped as HTTP bodies are: at `max_body_bytes` as received and at
//! `max_decompressed_bytes` once gunzipped.
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
//! failure, `ResourceExhausted` (retried) when the upstream throttles,
//! `Internal` (final) for a processor trap. Every retryable answer carries
//! a `google.rpc.RetryInfo` with the wait (see [`super::rpc`]).
//!
//! As over HTTP, a call takes a receiving place (not an in-flight one)
//! while its message arrives, and an in-flight place once it is in; a
//! content type other than protobuf (`application/grpc+json`) and
//! `grpc-encoding` other than one gzip layer are refused, not guessed at.
//! Connections are held by [`super::http::serve_with`], HTTP/2 only.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

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
use super::{Connection, ExportError, Gateway, Receiving};

/// The OTLP/gRPC trace export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The gRPC status for an export error.
/// Retryable errors carry a `google.rpc.RetryInfo` with the wait, which
/// OTLP/gRPC exporters honour (and need, for `ResourceExhausted`).
pub fn grpc_status(error: &ExportError) -> Status {
    use super::upstream::SendError;
    let code = match error {
        ExportError::Malformed(_)
        | ExportError::TooLarge(_)
        | ExportError::Upstream(SendError::Rejected(_)) => Code::InvalidArgument,
        ExportError::Upstream(SendError::Throttled { unavailable: false, .. }) => {
            Code::ResourceExhausted
        }
        ExportError::Overloaded
        | ExportError::Busy(_)
        | ExportError::Timeout
        | ExportError::Upstream(_) => Code::Unavailable,
        ExportError::Trap | ExportError::Internal(_) => Code::Internal,
        ExportError::BodyTimeout(_) => Code::DeadlineExceeded,
    };
    let message = error.to_string();
    match error.retry_after() {
        Some(secs) => {
            let details =
                super::rpc::with_retry_info(code as i32, &message, Duration::from_secs(secs));
            Status::with_details(code, message, details)
        }
        None => Status::new(code, message),
    }
}

/// Checks the call's content type and `grpc-encoding`, as the HTTP
/// receiver checks its content type and encoding. Neither is quoted back.
fn check_headers(headers: &http::HeaderMap) -> Result<(), Status> {
    let types: Vec<_> = headers.get_all(http::header::CONTENT_TYPE).iter().collect();
    let media = match types.as_slice() {
        [one] => one.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim(),
        _ => "",
    };
    let protobuf = media.eq_ignore_ascii_case("application/grpc")
        || media.eq_ignore_ascii_case("application/grpc+proto");
    if !protobuf {
        // OTLP/gRPC is protobuf; JSON goes over OTLP/HTTP, where the
        // gateway reads it. A JSON message read as protobuf would be
        // refused at some byte offset, or worse, pass as something else.
        let what = if media.eq_ignore_ascii_case("application/grpc+json") {
            "content type application/grpc+json is not supported: OTLP/gRPC messages are \
             protobuf (send OTLP/JSON to POST /v1/traces over HTTP)"
        } else if types.len() > 1 {
            "more than one content-type header is given"
        } else {
            "the content type is not supported"
        };
        return Err(Status::invalid_argument(format!(
            "{what}; send application/grpc or application/grpc+proto"
        )));
    }
    super::http::gzip_layers(headers, "grpc-encoding").map_err(Status::unimplemented)?;
    Ok(())
}

/// The `TraceService` as a tower service over HTTP/2 requests.
#[derive(Clone)]
pub struct Receiver {
    gateway: Arc<Gateway>,
    max_decompressed_bytes: usize,
}

impl Receiver {
    /// The service for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Receiver {
        let max_decompressed_bytes =
            usize::try_from(gateway.settings.max_decompressed_bytes).unwrap_or(usize::MAX);
        Receiver { gateway, max_decompressed_bytes }
    }
}

impl<B> Service<http::Request<B>> for Receiver
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
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
        if let Err(status) = check_headers(request.headers()) {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // A receiving place while the message arrives; the in-flight place
        // is taken in `Export::call`, once the message is in.
        let connection = request.extensions().get::<Arc<Connection>>().cloned();
        let receiving = match self.gateway.receive(connection.as_deref(), Transport::Grpc) {
            Ok(receiving) => receiving,
            Err(e) => return Box::pin(async move { Ok(grpc_status(&e).into_http()) }),
        };
        let gateway = Arc::clone(&self.gateway);
        let (decoded, read) = oneshot::channel();
        let called = Arc::new(AtomicBool::new(false));
        let export = Export {
            gateway: Arc::clone(&gateway),
            receiving: Some(receiving),
            decoded: Some(decoded),
            called: Arc::clone(&called),
        };
        let received_limit = gateway.settings.max_body_bytes;
        let over = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| Capped {
            inner: body,
            limit: received_limit,
            seen: 0,
            header: Vec::with_capacity(FRAME_HEADER),
            over: Arc::clone(&over),
        });
        let limit = self.max_decompressed_bytes;
        let mut grpc = tonic::server::Grpc::new(RawRequestCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit);
        let timeout = gateway.settings.body_timeout;
        Box::pin(async move {
            let answer = |response| {
                if over.load(Ordering::Relaxed) {
                    let error = ExportError::TooLarge(format!(
                        "gRPC message is over the limit of {received_limit} bytes as received \
                         (--max-body-bytes, `gateway.max_body_bytes`); send smaller batches"
                    ));
                    gateway.record_failure(&error, Transport::Grpc, 0);
                    return grpc_status(&error).into_http();
                }
                if called.load(Ordering::Relaxed) {
                    return response;
                }
                final_size_status(&gateway, response, limit)
            };
            let unary = grpc.unary(export, request);
            tokio::pin!(unary);
            // A client that stalls mid-message is cut off, as over HTTP,
            // which frees its receiving place; the timer stops once the
            // message is in and the export has begun.
            tokio::select! {
                response = &mut unary => return Ok(answer(response)),
                read = tokio::time::timeout(timeout, read) => {
                    if read.is_err() {
                        let error = ExportError::BodyTimeout(timeout.as_millis());
                        gateway.record_failure(&error, Transport::Grpc, 0);
                        return Ok(grpc_status(&error).into_http());
                    }
                }
            }
            Ok(answer(unary.await))
        })
    }
}

/// The gRPC frame header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// A request body cut off past `limit` bytes of message as received, and at
/// once when a frame header announces more, so a message over
/// `max_body_bytes` is never buffered (tonic's own limit is the
/// decompressed one). Sets `over` when it cuts.
struct Capped<B> {
    inner: B,
    limit: u64,
    /// Message bytes seen, frame headers left out.
    seen: u64,
    /// The first frame's header, while it arrives.
    header: Vec<u8>,
    over: Arc<AtomicBool>,
}

impl<B> hyper::body::Body for Capped<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let mut rest = data.as_ref();
            if this.header.len() < FRAME_HEADER {
                let take = rest.len().min(FRAME_HEADER - this.header.len());
                this.header.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if let [_, a, b, c, d] = this.header[..] {
                    let announced = u64::from(u32::from_be_bytes([a, b, c, d]));
                    if announced > this.limit {
                        this.over.store(true, Ordering::Relaxed);
                    }
                }
            }
            this.seen += rest.len() as u64;
            if this.seen > this.limit {
                this.over.store(true, Ordering::Relaxed);
            }
            if this.over.load(Ordering::Relaxed) {
                return Poll::Ready(Some(Err("the gRPC message is over --max-body-bytes".into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
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
        "gRPC message is over the limit of {limit} bytes after gunzip (--max-decompressed-bytes, \
         `gateway.max_decompressed_bytes`); send smaller batches"
    ));
    gateway.record_failure(&error, Transport::Grpc, 0);
    grpc_status(&error).into_http()
}

/// One export call, holding its receiving place until its message is in.
struct Export {
    gateway: Arc<Gateway>,
    receiving: Option<Receiving>,
    /// Told when the message has been read, to stop the read timer.
    decoded: Option<oneshot::Sender<()>>,
    /// Set when the message has been read: the answer is then the
    /// export's own, never tonic's decoding error.
    called: Arc<AtomicBool>,
}

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let gateway = Arc::clone(&self.gateway);
        self.called.store(true, Ordering::Relaxed);
        // The message is in: its receiving place goes back.
        drop(self.receiving.take());
        if let Some(decoded) = self.decoded.take() {
            let _ = decoded.send(());
        }
        Box::pin(async move {
            let admission = gateway.admit(Transport::Grpc).map_err(|e| grpc_status(&e))?;
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

/// Serves the OTLP/gRPC receiver until `stop`: HTTP/2 only, with the
/// connection limits every listener has (see [`super::http::serve_with`]).
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    let limits = super::http::ConnectionLimits::from_settings(&gateway.settings, true);
    let receiver = Receiver::new(gateway);
    super::http::serve_with(listener, stop, limits, move |request| {
        let mut receiver = receiver.clone();
        async move {
            match receiver.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
    .await;
}
