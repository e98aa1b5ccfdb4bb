//! The OTLP/HTTP receiver: `POST /v1/traces`, protobuf or JSON, plain or
//! gzip, answered per the OTLP/HTTP spec.
//!
//! The request passes these checks in order, each with its own status:
//! path (404), method (405), content type (415), content encoding (415),
//! declared length (413), the in-flight limit (503 with Retry-After), the
//! body read under the size limit (413) and the body timeout (408); then the workers decompress under
//! the decompressed limit (413), decode and process (400 with the offset and
//! reason), and the upstream takes it (200) or not (503/429 with
//! Retry-After, or 400 when it refused the batch for good).
//!
//! Error bodies are a `google.rpc.Status` in the request's encoding, as the
//! OTLP/HTTP spec asks.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{
    ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics::Transport;
use super::pool::BodyKind;
use super::{ExportError, Gateway, log};

/// The OTLP/HTTP traces path.
pub const TRACES_PATH: &str = "/v1/traces";

/// How long a connection may take to send its request headers. Bounds
/// idle and slow-loris connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` values used here.
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// Serves `handler` on `listener` (HTTP/1.1 and h2c) until `stop` turns
/// true, then lets open connections finish their requests.
pub(crate) async fn serve_with<H, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait instead of spinning.
                        log(format_args!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |request| {
                    let response = handler(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                tokio::spawn(async move {
                    // A client that goes away mid-request is its own business.
                    let _ = connection.await;
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(super::SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// Serves the OTLP/HTTP receiver until `stop`.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    serve_with(listener, stop, move |request| {
        let gateway = Arc::clone(&gateway);
        async move { handle(&gateway, request).await }
    })
    .await;
}

/// The request's body encoding, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn media_type(request_type: Option<&HeaderValue>) -> Option<Encoding> {
    let value = request_type?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/x-protobuf")
        || media.eq_ignore_ascii_case("application/protobuf")
    {
        Some(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

/// Handles one OTLP/HTTP request. Generic over the body, so tests can call
/// it without a socket.
pub async fn handle<B>(gateway: &Arc<Gateway>, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let encoding = media_type(request.headers().get(CONTENT_TYPE));
    // Errors are answered in the request's encoding; protobuf when unknown.
    let answer_in = encoding.unwrap_or(Encoding::Protobuf);
    if request.uri().path() != TRACES_PATH {
        let message = format!(
            "no such path {:?}; OTLP/HTTP traces go to POST {TRACES_PATH}",
            request.uri().path()
        );
        return status(answer_in, StatusCode::NOT_FOUND, code::NOT_FOUND, message, None);
    }
    if request.method() != Method::POST {
        let mut response = status(
            answer_in,
            StatusCode::METHOD_NOT_ALLOWED,
            code::UNIMPLEMENTED,
            format!("method {} is not allowed on {TRACES_PATH}; use POST", request.method()),
            None,
        );
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let Some(encoding) = encoding else {
        let given = request
            .headers()
            .get(CONTENT_TYPE)
            .map_or("none".into(), |v| format!("{:?}", String::from_utf8_lossy(v.as_bytes())));
        let message = format!(
            "content type {given} is not supported; send application/x-protobuf or application/json"
        );
        return status(
            answer_in,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_ARGUMENT,
            message,
            None,
        );
    };
    let gzip = match request.headers().get(CONTENT_ENCODING).map(HeaderValue::as_bytes) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case(b"identity") => false,
        Some(v) if v.eq_ignore_ascii_case(b"gzip") => true,
        Some(v) => {
            let message = format!(
                "content encoding {:?} is not supported; send gzip or none",
                String::from_utf8_lossy(v)
            );
            return status(
                encoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_ARGUMENT,
                message,
                None,
            );
        }
    };
    let limit = gateway.settings.max_body_bytes;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit
    {
        let message = format!(
            "body of {length} bytes is over the limit of {limit} bytes; send smaller batches"
        );
        return too_large(gateway, encoding, message);
    }
    let admission = match gateway.admit(Transport::Http) {
        Ok(admission) => admission,
        Err(e) => return export_error(encoding, &e),
    };
    // The body is read holding an in-flight place (that bounds the memory
    // bodies take), so a client that stalls mid-body is cut off, or a few
    // slow clients could hold every place.
    let timeout = gateway.settings.body_timeout;
    let read =
        Limited::new(request.into_body(), usize::try_from(limit).unwrap_or(usize::MAX)).collect();
    let Ok(read) = tokio::time::timeout(timeout, read).await else {
        let error = ExportError::BodyTimeout(timeout.as_millis());
        gateway.record_failure(&error, Transport::Http, 0);
        return export_error(encoding, &error);
    };
    let body = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            let message = format!("body is over the limit of {limit} bytes; send smaller batches");
            return too_large(gateway, encoding, message);
        }
        Err(e) => {
            let message = format!("could not read the request body: {e}");
            return status(
                encoding,
                StatusCode::BAD_REQUEST,
                code::INVALID_ARGUMENT,
                message,
                None,
            );
        }
    };
    let kind = BodyKind { gzip, json: encoding == Encoding::Json };
    match gateway.export(&admission, body, kind, Transport::Http).await {
        Ok(_) => {
            let body = match encoding {
                Encoding::Protobuf => {
                    Bytes::from(ExportTraceServiceResponse::default().encode_to_vec())
                }
                Encoding::Json => Bytes::from_static(b"{}"),
            };
            content(encoding, StatusCode::OK, body)
        }
        Err(e) => export_error(encoding, &e),
    }
}

fn too_large(gateway: &Gateway, encoding: Encoding, message: String) -> Response<Full<Bytes>> {
    gateway.record_failure(&ExportError::TooLarge(String::new()), Transport::Http, 0);
    status(encoding, StatusCode::PAYLOAD_TOO_LARGE, code::INVALID_ARGUMENT, message, None)
}

/// The HTTP status for an export error (the OTLP/HTTP spec: 400 and 413
/// are final; 429, 502, 503 and 504 are retried).
pub fn http_status(error: &ExportError) -> (StatusCode, i32) {
    use super::upstream::SendError;
    match error {
        ExportError::Malformed(_) => (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
        ExportError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, code::INVALID_ARGUMENT),
        ExportError::Overloaded | ExportError::Timeout => {
            (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE)
        }
        ExportError::Trap | ExportError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL)
        }
        ExportError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, code::DEADLINE_EXCEEDED),
        ExportError::Upstream(SendError::Throttled { .. }) => {
            (StatusCode::TOO_MANY_REQUESTS, code::RESOURCE_EXHAUSTED)
        }
        ExportError::Upstream(SendError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE)
        }
        ExportError::Upstream(SendError::Rejected(_)) => {
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
        }
    }
}

fn export_error(encoding: Encoding, error: &ExportError) -> Response<Full<Bytes>> {
    let (http, rpc) = http_status(error);
    status(encoding, http, rpc, error.to_string(), error.retry_after())
}

fn status(
    encoding: Encoding,
    http: StatusCode,
    code: i32,
    message: String,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let body = match encoding {
        Encoding::Protobuf => Bytes::from(RpcStatus { code, message }.encode_to_vec()),
        Encoding::Json => {
            Bytes::from(serde_json::json!({ "code": code, "message": message }).to_string())
        }
    };
    let mut response = content(encoding, http, body);
    if let Some(secs) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn content(encoding: Encoding, http: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let content_type = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = http;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::options::GatewaySection;
    use crate::serve::version::Sources;

    /// Scenario: the receiver called directly, without a socket, with bad
    /// paths, methods, content types, encodings, declared lengths and
    /// bodies; the upstream is never reached.
    /// Guarantees: each gets its status, and error bodies are a
    /// `google.rpc.Status` in the request's encoding.
    /// Method, path, headers, body and the status expected.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'static [u8], StatusCode);

    #[test]
    fn receiver_checks_come_in_order_with_their_statuses() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let cli = GatewaySection {
                upstream: Some("http://127.0.0.1:9/v1/traces".into()),
                workers: Some(1),
                max_body_bytes: Some(1024),
                ..GatewaySection::default()
            };
            let sources = Sources { config: None, component: None, cli };
            let runtime = crate::Runtime::new().unwrap();
            let gateway = tokio::task::block_in_place(|| Gateway::start(runtime, sources)).unwrap();
            let call = |method: &str, path: &str, headers: &[(&str, &str)], body: &'static [u8]| {
                let mut request = Request::builder().method(method).uri(path);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let request = request.body(Full::new(Bytes::from_static(body))).unwrap();
                let gateway = Arc::clone(&gateway);
                async move { handle(&gateway, request).await }
            };
            let pb = [("content-type", "application/x-protobuf")];
            let cases: [Case; 6] = [
                ("POST", "/v1/logs", &pb, b"", StatusCode::NOT_FOUND),
                ("PUT", "/v1/traces", &pb, b"", StatusCode::METHOD_NOT_ALLOWED),
                (
                    "POST",
                    "/v1/traces",
                    &[("content-type", "text/plain")],
                    b"",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    "POST",
                    "/v1/traces",
                    &[("content-type", "application/x-protobuf"), ("content-encoding", "zstd")],
                    b"",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    "POST",
                    "/v1/traces",
                    &[("content-type", "application/x-protobuf"), ("content-length", "2048")],
                    b"",
                    StatusCode::PAYLOAD_TOO_LARGE,
                ),
                ("POST", "/v1/traces", &pb, &[0x0a, 0x64, 0x01], StatusCode::BAD_REQUEST),
            ];
            for (method, path, headers, body, expected) in cases {
                let response = call(method, path, headers, body).await;
                assert_eq!(response.status(), expected, "{method} {path} {headers:?}");
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let status = RpcStatus::decode(bytes).unwrap();
                assert!(!status.message.is_empty(), "{method} {path}");
            }
            let response =
                call("POST", "/v1/traces", &[("content-type", "application/json")], b"[]").await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["code"], code::INVALID_ARGUMENT);
        });
    }

    #[test]
    fn media_types_are_read_with_parameters_and_any_case() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(media_type(Some(&v("application/x-protobuf"))), Some(Encoding::Protobuf));
        assert_eq!(media_type(Some(&v("Application/JSON; charset=utf-8"))), Some(Encoding::Json));
        assert_eq!(media_type(Some(&v("text/plain"))), None);
        assert_eq!(media_type(None), None);
    }
}
