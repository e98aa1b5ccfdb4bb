//! Forwarding processed batches to the upstream, over OTLP/HTTP (protobuf)
//! or OTLP/gRPC, with pooled connections and one timeout over the whole
//! exchange.
//!
//! A batch counts as delivered only when the upstream says so: a 2xx status
//! for HTTP, `OK` for gRPC. Everything else is a [`SendError`] saying
//! whether the client should retry.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

use super::options::{Protocol, UpstreamTarget};

/// The OTLP/gRPC trace export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// At most this much of an upstream's response body is read: OTLP
/// responses are small, and an error page need not be read whole.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// The longest wait passed on from an upstream's Retry-After or RetryInfo:
/// 5 minutes. A date far ahead (a clock off by a day, say) must not park
/// every sender for that long; they ask again after this.
pub const MAX_RETRY_AFTER_SECS: u64 = 300;

/// Why the upstream did not take a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The upstream asked to slow down and said when to come back: HTTP
    /// 429 (with or without Retry-After), 503 with Retry-After, or gRPC
    /// `RESOURCE_EXHAUSTED` or `UNAVAILABLE` with a `RetryInfo`.
    Throttled {
        /// Seconds, from the upstream's hint (1 to [`MAX_RETRY_AFTER_SECS`]),
        /// or 1 when a 429 gave none.
        retry_after: u64,
        /// Whether the upstream said it is unavailable (503, `UNAVAILABLE`)
        /// rather than throttling (429, `RESOURCE_EXHAUSTED`); clients are
        /// answered the same way.
        unavailable: bool,
    },
    /// The upstream could not be reached, timed out, closed the connection
    /// or answered with a retryable status. The client should retry.
    Unavailable(String),
    /// The upstream refused the batch for good (a 4xx other than 408/429, or
    /// a non-retryable gRPC status). Retrying would not help.
    Rejected(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Throttled { retry_after, unavailable: false } => {
                write!(f, "upstream is throttling; retry after {retry_after} s")
            }
            SendError::Throttled { retry_after, unavailable: true } => {
                write!(f, "upstream is unavailable and asks for a retry after {retry_after} s")
            }
            SendError::Unavailable(why) => write!(f, "upstream unavailable: {why}"),
            SendError::Rejected(why) => write!(f, "upstream rejected the batch: {why}"),
        }
    }
}

/// The upstream, with its connection pool.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per gateway, made once and never moved on a hot path"
)]
pub enum Upstream {
    /// OTLP/HTTP.
    Http {
        /// Pooled HTTP/1.1 client.
        client: Client<HttpConnector, Full<Bytes>>,
        /// Where to POST.
        uri: hyper::Uri,
        /// Timeout over connect, request and response.
        timeout: Duration,
    },
    /// OTLP/gRPC.
    Grpc {
        /// A lazily connecting channel; it reconnects by itself.
        channel: Channel,
        /// Timeout over the call.
        timeout: Duration,
    },
}

impl Upstream {
    /// Sets up the pool for `target`. Connects nothing yet.
    pub fn new(target: &UpstreamTarget, timeout: Duration) -> Result<Upstream, String> {
        match target.protocol {
            Protocol::Http => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    // Idle connections go after 30 s, before a typical
                    // upstream's own idle timeout closes them under us.
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector);
                Ok(Upstream::Http { client, uri: target.uri.clone(), timeout })
            }
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(target.uri.to_string())
                    .map_err(|e| format!("upstream {}: {e}", target.uri))?
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .tcp_nodelay(true);
                Ok(Upstream::Grpc { channel: endpoint.connect_lazy(), timeout })
            }
        }
    }

    /// Whether batches should be gzipped before [`Upstream::send`] (HTTP);
    /// gRPC compresses in its own framing.
    pub fn gzips_bodies(&self) -> bool {
        matches!(self, Upstream::Http { .. })
    }

    /// Sends one processed batch (protobuf; gzipped when `gzipped`, which
    /// only HTTP uses) with `headers`. `gzip` asks gRPC to compress.
    pub async fn send(
        &self,
        batch: Bytes,
        gzipped: bool,
        gzip: bool,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), SendError> {
        match self {
            Upstream::Http { client, uri, timeout } => {
                let exchange = send_http(client, uri, batch, gzipped, headers);
                match tokio::time::timeout(*timeout, exchange).await {
                    Ok(result) => result,
                    Err(_) => Err(SendError::Unavailable(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    ))),
                }
            }
            Upstream::Grpc { channel, timeout } => {
                let call = send_grpc(channel.clone(), batch, gzip, headers);
                match tokio::time::timeout(*timeout, call).await {
                    Ok(result) => result,
                    Err(_) => Err(SendError::Unavailable(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    ))),
                }
            }
        }
    }
}

async fn send_http(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &hyper::Uri,
    batch: Bytes,
    gzipped: bool,
    headers: &BTreeMap<String, String>,
) -> Result<(), SendError> {
    let mut request =
        hyper::Request::post(uri.clone()).header(CONTENT_TYPE, "application/x-protobuf");
    if gzipped {
        request = request.header(CONTENT_ENCODING, "gzip");
    }
    for (name, value) in headers {
        // Checked when the settings were resolved.
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Full::new(batch))
        .map_err(|e| SendError::Rejected(format!("cannot build the request: {e}")))?;
    let response =
        client.request(request).await.map_err(|e| SendError::Unavailable(crate::one_line(&e)))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    // Read the body (bounded) so the connection goes back to the pool, and
    // so a connection cut mid-response counts as a failure.
    let body =
        http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await;
    let body_failed = body.is_err();
    if status.is_success() {
        if body_failed {
            return Err(SendError::Unavailable(format!(
                "status {status} but the response body was cut off"
            )));
        }
        return Ok(());
    }
    let code = status.as_u16();
    Err(match code {
        429 => SendError::Throttled { retry_after: retry_after.unwrap_or(1), unavailable: false },
        503 if retry_after.is_some() => {
            SendError::Throttled { retry_after: retry_after.unwrap_or(1), unavailable: true }
        }
        408 | 502 | 503 | 504 => SendError::Unavailable(format!("status {status}")),
        400..=499 => SendError::Rejected(format!("status {status}")),
        _ => SendError::Unavailable(format!("status {status}")),
    })
}

async fn send_grpc(
    channel: Channel,
    batch: Bytes,
    gzip: bool,
    headers: &BTreeMap<String, String>,
) -> Result<(), SendError> {
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.map_err(|e| SendError::Unavailable(crate::one_line(&e)))?;
    let mut request = tonic::Request::new(batch);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes()),
            tonic::metadata::AsciiMetadataValue::try_from(value.as_str()),
        ) {
            request.metadata_mut().insert(name, value);
        }
    }
    let path = hyper::http::uri::PathAndQuery::from_static(EXPORT_PATH);
    match grpc.unary(request, path, RawCodec).await {
        Ok(_) => Ok(()),
        Err(status) => {
            use tonic::Code;
            if matches!(status.code(), Code::ResourceExhausted | Code::Unavailable)
                && let Some(delay) = super::rpc::retry_delay(status.details())
            {
                // Whole seconds, rounded up, as for Retry-After.
                let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
                return Err(SendError::Throttled {
                    retry_after: secs.clamp(1, MAX_RETRY_AFTER_SECS),
                    unavailable: status.code() == Code::Unavailable,
                });
            }
            let why = format!("gRPC status {:?}: {}", status.code(), status.message());
            Err(match status.code() {
                // The OTLP spec's retryable codes, plus Unknown and
                // Internal, which is how tonic reports a connection cut
                // mid-call: the batch may not have arrived, so retry.
                Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::Unavailable
                | Code::DataLoss
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Internal => SendError::Unavailable(why),
                _ => SendError::Rejected(why),
            })
        }
    }
}

/// Seconds to wait from a Retry-After value (RFC 9110 section 10.2.3):
/// delay-seconds, or an HTTP-date, counted from `now` and rounded up.
/// Bounded to 1 ..= [`MAX_RETRY_AFTER_SECS`]; `None` when it is neither.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<u64> {
    let value = value.trim();
    let secs = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits past u64 are still a long wait.
        value.parse::<u64>().unwrap_or(u64::MAX)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        match at.duration_since(now) {
            Ok(ahead) => ahead.as_secs() + u64::from(ahead.subsec_nanos() > 0),
            // A date in the past: retry now, which is 1 s here.
            Err(_) => 0,
        }
    };
    Some(secs.clamp(1, MAX_RETRY_AFTER_SECS))
}

/// A gRPC codec that sends the processed batch's protobuf bytes as they
/// are, rather than decoding them into structs for tonic to encode again.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Writes bytes as the message.
#[derive(Debug)]
pub struct RawEncoder;

/// Reads the upstream's `ExportTraceServiceResponse`.
#[derive(Debug)]
pub struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        let response = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| {
                tonic::Status::internal(format!(
                    "upstream response is not an ExportTraceServiceResponse: {e}"
                ))
            })?;
        Ok(Some(response))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    /// Scenario: Retry-After as seconds, as an IMF-fixdate ahead of and
    /// behind `now`, far ahead, and as text that is neither.
    /// Guarantees: dates become seconds from now (rounded up), every wait is
    /// bounded to 1 ..= 300 s, and garbage is `None` (the caller then uses 1).
    #[test]
    fn retry_after_reads_seconds_and_http_dates_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = |t: SystemTime| httpdate::fmt_http_date(t);
        assert_eq!(parse_retry_after("7", now), Some(7));
        assert_eq!(parse_retry_after(" 0 ", now), Some(1));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(MAX_RETRY_AFTER_SECS));
        assert_eq!(parse_retry_after(&date(now + Duration::from_secs(42)), now), Some(42));
        assert_eq!(
            parse_retry_after(
                &date(now + Duration::from_secs(42)),
                now - Duration::from_millis(300)
            ),
            Some(43)
        );
        assert_eq!(parse_retry_after(&date(now - Duration::from_secs(42)), now), Some(1));
        assert_eq!(
            parse_retry_after(&date(now + Duration::from_secs(86_400)), now),
            Some(MAX_RETRY_AFTER_SECS)
        );
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(1));
        for garbage in ["", "soon", "-5", "1.5", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage}");
        }
    }
}
