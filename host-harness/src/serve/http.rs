//! The OTLP/HTTP receiver: `POST /v1/traces`, protobuf or JSON, plain or
//! gzip, answered per the OTLP/HTTP spec.
//!
//! The request passes these checks in order, each with its own status:
//! path (404), method (405), content type (415), content encoding (415:
//! one layer of gzip at most), declared length (413), a receiving place
//! (503 with Retry-After, over `max_receiving` or the connection's
//! `max_receiving_per_connection`), the body read under the size limit
//! (413) and the body timeout (408), and only then the in-flight limit (503
//! with Retry-After): a client that sends headers and no body holds no
//! in-flight place. Then the workers decompress under the decompressed limit
//! (413), decode and process (400 with the offset and reason), and the
//! upstream takes it (200) or not (503/429 with Retry-After, or 400 when it
//! refused the batch for good).
//!
//! Error bodies are a `google.rpc.Status` in the request's encoding, as the
//! OTLP/HTTP spec asks. They never quote what the client sent (path, header
//! values, body): that may be a secret or a personal number.
//!
//! Every listener (this one, gRPC's and the admin port) holds connections
//! the same way, in [`serve_with`]: an HTTP/1.1 client has
//! `header_read_timeout` to send its headers, an HTTP/2 connection at most
//! [`MAX_STREAMS_PER_CONNECTION`] streams, and a connection with no request
//! in progress is closed after `idle_timeout`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderMap;

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
use super::{Connection, ExportError, Gateway, log};

/// The OTLP/HTTP traces path.
pub const TRACES_PATH: &str = "/v1/traces";

/// The most HTTP/2 streams one connection may have open at once (gRPC, or
/// h2c on the HTTP port): the HTTP/2 spec's recommended minimum, ten times
/// what a collector's exporter opens. Past it the client's new streams are
/// refused (REFUSED_STREAM) and it retries them.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// How a listener holds its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// An HTTP/1.1 client must send its request headers within this.
    pub header_read_timeout: Duration,
    /// Requests receiving their body at once on one connection.
    pub receiving_per_connection: usize,
    /// HTTP/2 only (gRPC), rather than HTTP/1.1 and h2c.
    pub http2_only: bool,
}

impl ConnectionLimits {
    /// The limits from the gateway's settings.
    pub fn from_settings(settings: &super::options::Settings, http2_only: bool) -> Self {
        ConnectionLimits {
            idle_timeout: settings.idle_timeout,
            header_read_timeout: settings.header_read_timeout,
            receiving_per_connection: settings.max_receiving_per_connection,
            http2_only,
        }
    }
}

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

/// Serves `handler` on `listener` (HTTP/1.1 and h2c, or HTTP/2 only) until
/// `stop` turns true, then lets open connections finish their requests.
/// Each request carries its [`Connection`] in its extensions.
pub async fn serve_with<H, F, B>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    limits: ConnectionLimits,
    handler: H,
) where
    H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if limits.http2_only {
        builder = builder.http2_only();
    }
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
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
                let connection = Connection::new(limits.receiving_per_connection);
                let in_service = Arc::clone(&connection);
                let service = hyper::service::service_fn(move |mut request: Request<_>| {
                    let in_progress = in_service.begin();
                    request.extensions_mut().insert(Arc::clone(&in_service));
                    let response = handler(request);
                    async move {
                        let response = response.await;
                        drop(in_progress);
                        Ok::<_, Infallible>(response)
                    }
                });
                let served = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                tokio::spawn(hold(served, connection, limits.idle_timeout));
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(super::SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// Runs one connection until it ends, or until it has had no request in
/// progress for `idle_timeout`: then it is dropped, which closes it.
async fn hold<C: Future>(served: C, connection: Arc<Connection>, idle_timeout: Duration) {
    tokio::pin!(served);
    loop {
        let wait = match connection.idle_for() {
            Some(idle) if idle >= idle_timeout => return,
            Some(idle) => idle_timeout - idle,
            None => idle_timeout,
        };
        tokio::select! {
            // A client that goes away mid-request is its own business.
            _ = &mut served => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Serves the OTLP/HTTP receiver until `stop`.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    let limits = ConnectionLimits::from_settings(&gateway.settings, false);
    serve_with(listener, stop, limits, move |request| {
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
        let message = format!("no such path; OTLP/HTTP traces go to POST {TRACES_PATH}");
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
    let types = request.headers().get_all(CONTENT_TYPE).iter().count();
    let encoding = match encoding {
        Some(encoding) if types == 1 => encoding,
        _ => {
            // The type is not quoted: it is the client's text.
            let given = match types {
                0 => "no content type is given",
                1 => "the content type is not supported",
                _ => "more than one Content-Type header is given",
            };
            let message = format!("{given}; send one: application/x-protobuf or application/json");
            return status(
                answer_in,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_ARGUMENT,
                message,
                None,
            );
        }
    };
    let gzip = match gzip_layers(request.headers(), CONTENT_ENCODING.as_str()) {
        Ok(gzip) => gzip,
        Err(message) => {
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
    if declared.is_some_and(|length| length > limit) {
        let message = format!(
            "the declared Content-Length is over the limit of {limit} bytes; send smaller batches"
        );
        return too_large(gateway, encoding, message);
    }
    // The body is read holding a receiving place, not an in-flight one: a
    // client that sends headers and then nothing must not keep batches
    // that are whole from the workers. A stalled body is cut off after the
    // body timeout, which frees its receiving place.
    let connection = request.extensions().get::<Arc<Connection>>().cloned();
    let receiving = match gateway.receive(connection.as_deref(), Transport::Http) {
        Ok(receiving) => receiving,
        Err(e) => return export_error(encoding, &e),
    };
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
    drop(receiving);
    let admission = match gateway.admit(Transport::Http) {
        Ok(admission) => admission,
        Err(e) => return export_error(encoding, &e),
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

/// Whether a body is gzipped, from every `name` header (`Content-Encoding`,
/// or gRPC's `grpc-encoding`): no coding or `identity` is plain, `gzip`
/// once is gzip. Anything else is refused rather than guessed at: a coding
/// the gateway does not know, and gzip named more than once (in repeated
/// headers or a list), which would be gzip inside gzip. The message never
/// quotes the header.
pub fn gzip_layers(headers: &HeaderMap, name: &str) -> Result<bool, String> {
    let mut layers = 0;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| format!("the {name} header is not ASCII text; send gzip or none"))?;
        for coding in text.split(',').map(str::trim) {
            if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
                continue;
            }
            if !coding.eq_ignore_ascii_case("gzip") {
                return Err(format!("the {name} is not supported; send gzip or none"));
            }
            layers += 1;
        }
    }
    match layers {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(format!(
            "{name} names gzip {n} times (repeated headers or a list); the gateway undoes one \
             layer: send gzip once, or none"
        )),
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
        ExportError::Overloaded | ExportError::Busy(_) | ExportError::Timeout => {
            (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE)
        }
        ExportError::Trap | ExportError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL)
        }
        ExportError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, code::DEADLINE_EXCEEDED),
        ExportError::Upstream(SendError::Throttled { unavailable: false, .. }) => {
            (StatusCode::TOO_MANY_REQUESTS, code::RESOURCE_EXHAUSTED)
        }
        ExportError::Upstream(SendError::Throttled { unavailable: true, .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE)
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

    /// Scenario: Content-Encoding as none, identity, gzip in any case, gzip
    /// with identity, gzip twice (in one list and in two headers), and an
    /// unknown coding holding a secret.
    /// Guarantees: one gzip layer at most is accepted; repeats and unknown
    /// codings are refused with a message that does not quote the header.
    #[test]
    fn content_encoding_allows_one_gzip_layer_and_never_quotes() {
        let headers = |values: &[&'static str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(CONTENT_ENCODING, HeaderValue::from_static(v));
            }
            map
        };
        let layers = |values: &[&'static str]| gzip_layers(&headers(values), "content-encoding");
        assert_eq!(layers(&[]), Ok(false));
        assert_eq!(layers(&["identity"]), Ok(false));
        assert_eq!(layers(&["GZIP"]), Ok(true));
        assert_eq!(layers(&["identity, gzip"]), Ok(true));
        assert_eq!(layers(&["gzip", "identity"]), Ok(true));
        for twice in [&["gzip, gzip"][..], &["gzip", "gzip"]] {
            let e = layers(twice).unwrap_err();
            assert!(e.contains("2 times"), "{e}");
        }
        let e = layers(&["gzip", "s3cr3t-01017012345"]).unwrap_err();
        assert!(!e.contains("s3cr3t") && !e.contains("01017012345"), "{e}");
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
