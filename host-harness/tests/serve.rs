//! `tracescrub serve` end to end on loopback: the real binary between a
//! test client and a capture sink, an HTTP server written here that records
//! what reaches it and can be told to fail, stall or hang up.
//!
//! Every gateway binds `127.0.0.1:0` and reports its ports on its readiness
//! line. Expected outputs come from the native engine
//! ([`tracescrub_processor::Processor`]) on the same bytes.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sha2::{Digest, Sha256};
use support::{batch_of, kv, span};

/// Generous bound on anything the tests wait for.
const PATIENCE: Duration = Duration::from_secs(60);

/// A fictional, valid personal number (from the README).
const NUMBER: &str = "17053650260";

// ---------------------------------------------------------------- sink --

/// What the sink does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Record the body and answer 200.
    Accept,
    /// Answer with this status (429 with `Retry-After: 7`), recording nothing.
    Status(u16),
    /// Answer with this status and `Retry-After` as the HTTP-date of this
    /// time, recording nothing.
    RetryAt(u16, std::time::SystemTime),
    /// Answer with this status and `Retry-After: N` (seconds).
    RetryAfter(u16, u64),
    /// Wait this long, then answer 200, recording nothing.
    Slow(Duration),
    /// Read the request, then close the connection without an answer.
    HangUp,
}

/// One request that reached the sink.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    /// Lowercase names.
    headers: BTreeMap<String, String>,
    /// As sent (maybe gzip).
    raw: Vec<u8>,
    /// Gunzipped when `content-encoding: gzip`.
    body: Vec<u8>,
}

/// A capture sink: a plain HTTP/1.1 server on std threads.
struct Sink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let sink = Sink {
            addr,
            received: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Accept)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let (received, mode, requests) =
            (Arc::clone(&sink.received), Arc::clone(&sink.mode), Arc::clone(&sink.requests));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (received, mode, requests) =
                    (Arc::clone(&received), Arc::clone(&mode), Arc::clone(&requests));
                std::thread::spawn(move || {
                    serve_sink_connection(stream, &received, &mode, &requests)
                });
            }
        });
        sink
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve_sink_connection(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    mode: &Mutex<Mode>,
    requests: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut raw = vec![0; length];
        if reader.read_exact(&mut raw).is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let current = *mode.lock().unwrap();
        let answer = match current {
            Mode::Accept => {
                let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                    gunzip(&raw)
                } else {
                    raw.clone()
                };
                received.lock().unwrap().push(Received { path, headers, raw, body });
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            Mode::Status(429) => {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"
                    .to_owned()
            }
            Mode::Status(code) => format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\n\r\n"),
            Mode::RetryAt(code, at) => format!(
                "HTTP/1.1 {code} Nope\r\nRetry-After: {}\r\nContent-Length: 0\r\n\r\n",
                httpdate::fmt_http_date(at)
            ),
            Mode::RetryAfter(code, secs) => {
                format!("HTTP/1.1 {code} Nope\r\nRetry-After: {secs}\r\nContent-Length: 0\r\n\r\n")
            }
            Mode::Slow(wait) => {
                std::thread::sleep(wait);
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            Mode::HangUp => {
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// One request's ASCII metadata and its body as protobuf.
type GrpcReceived = (BTreeMap<String, String>, Vec<u8>);

/// A gRPC capture sink: a tonic `TraceService` that records each request
/// and its metadata.
#[derive(Clone, Default)]
struct GrpcSink {
    received: Arc<Mutex<Vec<GrpcReceived>>>,
}

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        self.received.lock().unwrap().push((headers, request.into_inner().encode_to_vec()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

// ------------------------------------------------------------- gateway --

/// A running `tracescrub serve`, killed when dropped.
struct Gateway {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    admin: SocketAddr,
    component: String,
    config: String,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts the gateway with `args` after `serve` and any-port listeners,
    /// one worker unless `args` say otherwise, and waits for its readiness
    /// line.
    fn start(args: &[&str]) -> Gateway {
        let workers: &[&str] = if args.contains(&"--workers") { &[] } else { &["--workers", "1"] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracescrub"))
            .arg("serve")
            .args([
                "--listen-http",
                "127.0.0.1:0",
                "--listen-grpc",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(workers)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tracescrub serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(PATIENCE * 2) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!("no readiness line; stderr:\n{}", log.lock().unwrap());
            }
        };
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {name}= in the readiness line {line:?}"))
        };
        assert!(line.starts_with("serve: ready "), "{line}");
        let addr = |name: &str| {
            field(name).parse::<SocketAddr>().unwrap_or_else(|e| panic!("{name} in {line:?}: {e}"))
        };
        let gateway = Gateway {
            http: addr("http"),
            grpc: addr("grpc"),
            admin: addr("admin"),
            component: field("component"),
            config: field("config"),
            child,
            log,
        };
        assert_eq!(gateway.component.len(), 64, "{line}");
        assert_eq!(gateway.config.len(), 64, "{line}");
        gateway
    }

    fn post(&self, content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut headers = vec![("Content-Type", content_type)];
        headers.extend_from_slice(extra);
        request(self.http, "POST", "/v1/traces", &headers, body)
    }

    fn post_protobuf(&self, body: &[u8]) -> Reply {
        self.post("application/x-protobuf", &[], body)
    }

    fn metrics(&self) -> String {
        let reply = request(self.admin, "GET", "/metrics", &[], b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.text()
    }

    /// The value of the sample `series` (name and labels exactly as
    /// rendered), 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        let metrics = self.metrics();
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    fn reload(&self) -> (u16, serde_json::Value) {
        let reply = request(self.admin, "POST", "/-/reload", &[], b"");
        let json = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("reload answer is not JSON ({e}): {}", reply.text()));
        (reply.status, json)
    }

    /// The hashes of the active version, from the metrics.
    fn active(&self) -> (String, String) {
        let metrics = self.metrics();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("tracescrub_active_version{"))
            .expect("active version metric");
        let value = |key: &str| {
            line.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("label")
                .to_owned()
        };
        (value("component_sha256"), value("config_sha256"))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `condition` holds, or fails with the gateway's log.
    fn wait_for(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < PATIENCE,
                "timed out waiting for {what}; gateway log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `message` of a protobuf `google.rpc.Status` body.
    fn status_message(&self) -> String {
        #[derive(Clone, PartialEq, prost::Message)]
        struct RpcStatus {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        RpcStatus::decode(self.body.as_slice())
            .map(|s| s.message)
            .unwrap_or_else(|e| panic!("not a google.rpc.Status ({e}): {self:?}"))
    }
}

/// Request headers only, on a fresh connection, and the answer.
fn request_head(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = format!("POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    read_reply(&mut stream)
}

/// One HTTP/1.1 request on a fresh connection.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The gateway may answer (413) before reading a large body; a reset
    // while sending is fine, the answer is still there to read.
    let _ = stream.write_all(body);
    read_reply(&mut stream)
}

fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

// ------------------------------------------------------------- batches --

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).expect("valid gzip");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn capture(path: &str) -> Vec<u8> {
    std::fs::read(repo("testdata/captures").join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the native engine makes of `batch` under the default config.
fn native(batch: &[u8]) -> tracescrub_processor::Output {
    let processor = tracescrub_processor::Processor::new(&tracescrub::config_file::default_json())
        .expect("default config");
    processor.process(batch).expect("valid batch")
}

/// OTLP/JSON as the gateway reads it: decoded and encoded as protobuf.
fn json_to_protobuf(json: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<ExportTraceServiceRequest>(json).expect("OTLP/JSON").encode_to_vec()
}

/// A health check with a child (both dropped) and a span with the number
/// in its name and in an attribute (both masked): 3 spans in, 1 out.
fn known_batch() -> Vec<u8> {
    batch_of(vec![
        span(1, None, "GET /isAlive", vec![kv("url.path", "/isAlive")]),
        span(2, Some(1), "SELECT 1", vec![kv("db.system", "postgresql")]),
        span(3, None, &format!("lookup {NUMBER}"), vec![kv("enduser.id", NUMBER)]),
    ])
    .encode_to_vec()
}

/// A batch with nothing to drop or mask, one span named `name`.
fn plain_batch(name: &str) -> Vec<u8> {
    batch_of(vec![span(7, None, name, vec![kv("http.route", "/api/orders")])]).encode_to_vec()
}

/// `resources` ResourceSpans of about 36 KB, each of a trace of its own but
/// the last, which shares the one before it: a health check and its child
/// (dropped), a span with the number (masked), and 100 plain spans. The
/// last resource holds two more children of the previous one's health check,
/// dropped only if both are processed together.
fn multi_resource_batch(resources: u8) -> ExportTraceServiceRequest {
    let resource_spans = (0..resources)
        .map(|r| {
            let last = r + 1 == resources;
            let mut spans = vec![
                if last {
                    span(4, Some(1), "SELECT 2", vec![])
                } else {
                    span(1, None, "GET /isAlive", vec![kv("url.path", "/isAlive")])
                },
                span(2, Some(1), "SELECT 1", vec![kv("db.system", "postgresql")]),
                span(3, None, &format!("lookup {NUMBER}"), vec![kv("enduser.id", NUMBER)]),
            ];
            spans.extend((10..110).map(|i| {
                span(
                    i,
                    Some(3),
                    "GET /api/orders",
                    vec![kv("http.route", "/api/orders"), kv("note", &"x".repeat(300))],
                )
            }));
            for s in &mut spans {
                s.trace_id = vec![if last { r - 1 } else { r }; 16];
            }
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc-{r}"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// `multi_resource_batch(8)` with `span`, in trace 3, added to resource 4.
fn with_trace_3_span_in_resource_4(mut span: Span) -> Vec<u8> {
    let mut batch = multi_resource_batch(8);
    span.trace_id = vec![3; 16];
    batch.resource_spans[4].scope_spans[0].spans.push(span);
    batch.encode_to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Builds the misbehaving test component once (a nested cargo build for
/// wasm32 in a target directory of its own, then wit-component), and
/// returns its bytes.
fn misbehaving_component() -> &'static [u8] {
    static COMPONENT: OnceLock<Vec<u8>> = OnceLock::new();
    COMPONENT.get_or_init(|| {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/misbehaving");
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("misbehaving-fixture");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-unknown-unknown",
                "--manifest-path",
            ])
            .arg(crate_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir);
        // Flags meant for the outer build must not reach the guest build.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            command.env_remove(var);
        }
        let output = command.output().expect("run cargo for the misbehaving fixture");
        assert!(
            output.status.success(),
            "building the misbehaving fixture failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let module =
            std::fs::read(target_dir.join("wasm32-unknown-unknown/release/misbehaving.wasm"))
                .expect("fixture module");
        wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|e| e.validate(true).encode())
            .expect("the fixture encodes as a component")
    })
}

// --------------------------------------------------------------- tests --

/// Scenario: real SDK captures sent as OTLP/HTTP protobuf, OTLP/HTTP JSON,
/// gzip-compressed protobuf, and over OTLP/gRPC (gzip), on the default config.
/// Guarantees: each is acknowledged with 200 / OK only after the sink got
/// it; the sink receives exactly what the native engine makes of the batch
/// (noise dropped, numbers masked); a batch that processes to nothing is
/// acknowledged and not forwarded; responses are in the request's encoding.
#[test]
fn receivers_forward_what_the_engine_makes() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let mut expected = Vec::new();

    // Protobuf: node's person lookups carry the README's numbers.
    let pb = capture("node-protobuf/0003.binpb");
    assert!(contains(&pb, NUMBER.as_bytes()));
    let reply = gateway.post_protobuf(&pb);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    assert!(
        ExportTraceServiceResponse::decode(reply.body.as_slice())
            .unwrap()
            .partial_success
            .is_none()
    );
    expected.push(native(&pb).batch);

    // JSON: converted to protobuf, processed, answered in JSON.
    let json = capture("python-json/0003.json");
    let reply = gateway.post("application/json", &[], &json);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(reply.text(), "{}");
    expected.push(native(&json_to_protobuf(&json)).batch);

    // Gzip.
    let gz = capture("python-protobuf/0001.binpb.gz");
    let reply = gateway.post("application/x-protobuf", &[("Content-Encoding", "gzip")], &gz);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let out = native(&gunzip(&gz));
    if out.stats.spans_out > 0 {
        expected.push(out.batch);
    }

    // gRPC.
    let grpc_batch =
        ExportTraceServiceRequest::decode(capture("python-protobuf/0004.binpb").as_slice())
            .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = TraceServiceClient::connect(format!("http://{}", gateway.grpc))
            .await
            .expect("gRPC connect");
        let mut client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        client.export(grpc_batch.clone()).await.expect("gRPC export is acknowledged");
    });
    expected.push(native(&grpc_batch.encode_to_vec()).batch);

    // A batch of nothing but a health check: acknowledged, not forwarded.
    let noise = batch_of(vec![span(9, None, "GET /isAlive", vec![kv("url.path", "/isAlive")])])
        .encode_to_vec();
    assert_eq!(gateway.post_protobuf(&noise).status, 200);

    let received = sink.received();
    let bodies: Vec<Vec<u8>> = received.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), expected.len(), "one upstream request per batch with spans left");
    assert_eq!(bodies, expected, "the sink got exactly the engine's output, in order");
    for r in &received {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
        assert!(!contains(&r.body, NUMBER.as_bytes()), "a number reached the sink");
        assert!(!contains(&r.body, b"/isAlive"), "a health check reached the sink");
    }
    assert_eq!(
        gateway.metric("tracescrub_processor_batches_total{outcome=\"empty\"}"),
        1.0 + f64::from(expected.len() == 3)
    );
    // Never span content in the log.
    assert!(!gateway.log().contains(NUMBER), "{}", gateway.log());
}

/// Scenario: a config file whose `gateway:` section names the upstream, a
/// tenant header and gzip, plus a command-line header that overrides one of
/// the file's.
/// Guarantees: the section is taken out before the component sees the
/// config (it would reject the key); the sink gets the headers, the
/// command line winning, and a gzip body that inflates to the engine's
/// output; `--no-upstream-gzip` turns gzip off again.
#[test]
fn gateway_section_headers_and_gzip_reach_the_upstream() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scrub.yaml");
    let yaml = format!(
        "mask:\n  mode: validated\ngateway:\n  upstream: {}\n  upstream_gzip: true\n  upstream_headers:\n    X-Scope-OrgID: team-a\n    X-Env: file\n",
        sink.url()
    );
    std::fs::write(&config, &yaml).unwrap();
    let config_arg = config.to_str().unwrap();
    let gateway = Gateway::start(&["--config", config_arg, "--upstream-header", "x-env=cli"]);
    assert_eq!(gateway.config, sha256(yaml.as_bytes()), "the config hash is the file's sha256");
    let batch = known_batch();
    assert_eq!(gateway.post_protobuf(&batch).status, 200);
    let received = sink.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.headers.get("x-scope-orgid").map(String::as_str), Some("team-a"));
    assert_eq!(r.headers.get("x-env").map(String::as_str), Some("cli"));
    assert_eq!(r.headers.get("content-encoding").map(String::as_str), Some("gzip"));
    assert_ne!(r.raw, r.body);
    assert_eq!(r.body, native(&batch).batch);
    drop(gateway);

    let gateway = Gateway::start(&["--config", config_arg, "--no-upstream-gzip"]);
    assert_eq!(gateway.post_protobuf(&batch).status, 200);
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].headers.get("content-encoding"), None);
    assert_eq!(received[1].raw, native(&batch).batch);
}

/// Scenario: a `grpc://` upstream (a tonic server) with a tenant header and
/// gzip, fed over OTLP/HTTP.
/// Guarantees: the upstream gets the engine's output and the header as
/// gRPC metadata; the client is acknowledged after it.
#[test]
fn grpc_upstream_receives_processed_batches() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = GrpcSink::default();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(sink.clone())
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    rt.spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(service, tonic::transport::server::TcpIncoming::from(listener)),
    );
    let upstream = format!("grpc://{addr}");
    let gateway = Gateway::start(&[
        "--upstream",
        &upstream,
        "--upstream-header",
        "X-Scope-OrgID=team-b",
        "--upstream-gzip",
    ]);
    let batch = known_batch();
    let reply = gateway.post_protobuf(&batch);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = sink.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0.get("x-scope-orgid").map(String::as_str), Some("team-b"));
    assert_eq!(received[0].1, native(&batch).batch);
    assert_eq!(gateway.metric("tracescrub_exporter_sent_spans_total"), 1.0);
}

/// Scenario: the upstream answers 503, 429, 400; stalls past the upstream
/// timeout; hangs up mid-request; then recovers. Separately, an upstream
/// that refuses connections.
/// Guarantees: nothing is acknowledged unless the upstream accepted it;
/// transient failures are 503 with Retry-After, 429 passes through with the
/// upstream's Retry-After, a permanent refusal is 400; the gateway serves
/// on and the next batch goes through once the upstream is back.
#[test]
fn upstream_faults_are_never_acknowledged() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url(), "--upstream-timeout-ms", "500"]);
    let batch = known_batch();
    let cases = [
        (Mode::Status(503), 503, Some("1")),
        (Mode::Status(429), 429, Some("7")),
        (Mode::Status(400), 400, None),
        (Mode::Slow(Duration::from_secs(3)), 503, Some("1")),
        (Mode::HangUp, 503, Some("1")),
    ];
    for (mode, status, retry_after) in cases {
        sink.set(mode);
        let reply = gateway.post_protobuf(&batch);
        assert_eq!(reply.status, status, "{mode:?}: {}", reply.status_message());
        assert_eq!(reply.headers.get("retry-after").map(String::as_str), retry_after, "{mode:?}");
        assert!(
            reply.status_message().contains("upstream"),
            "{mode:?}: {}",
            reply.status_message()
        );
    }
    assert!(sink.received().is_empty());
    assert_eq!(
        gateway.metric("tracescrub_processor_batches_total{outcome=\"upstream_error\"}"),
        cases.len() as f64
    );
    assert_eq!(gateway.metric("tracescrub_exporter_send_failed_spans_total"), cases.len() as f64);
    assert_eq!(gateway.metric("tracescrub_receiver_accepted_spans_total{transport=\"http\"}"), 0.0);

    sink.set(Mode::Accept);
    assert_eq!(gateway.post_protobuf(&batch).status, 200);
    assert_eq!(sink.received().len(), 1);
    drop(gateway);

    // Nothing listens on a port just released.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gateway = Gateway::start(&["--upstream", &format!("http://{closed}")]);
    let reply = gateway.post_protobuf(&batch);
    assert_eq!(reply.status, 503, "{}", reply.status_message());
    assert_eq!(reply.headers.get("retry-after").map(String::as_str), Some("1"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", gateway.grpc)).await.unwrap();
        client
            .export(ExportTraceServiceRequest::decode(batch.as_slice()).unwrap())
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

/// Scenario: JSON bodies posted to `/v1/traces` that are valid JSON but not
/// traces: a logs document, a metrics document, snake_case `resource_spans`,
/// an array; gzip-compressed too.
/// Guarantees: each is answered 400 with a message that says what it is
/// (it never passes as an empty batch answered 200), and nothing reaches the
/// upstream. Pins the gateway's own JSON path, which once accepted a logs
/// document and forwarded nothing.
#[test]
fn json_that_is_not_traces_is_refused_not_forwarded_as_empty() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    for (body, says) in [
        (
            &br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#
                [..],
            "logs document",
        ),
        (br#"{"resourceMetrics":[]}"#, "metrics document"),
        (br#"{"resource_spans":[]}"#, "resourceSpans"),
        (br#"[{"resourceSpans":[]}]"#, "an array"),
    ] {
        for gzipped in [false, true] {
            let reply = if gzipped {
                gateway.post("application/json", &[("Content-Encoding", "gzip")], &gzip(body))
            } else {
                gateway.post("application/json", &[], body)
            };
            assert_eq!(reply.status, 400, "{}: {}", String::from_utf8_lossy(body), reply.text());
            assert!(
                reply.text().contains(says),
                "{}: {}",
                String::from_utf8_lossy(body),
                reply.text()
            );
        }
    }
    assert!(sink.received().is_empty(), "a body that is not traces reached the upstream");
}

/// Scenario: malformed protobuf (over HTTP and gRPC), malformed JSON, a body over the limit, a
/// gzip bomb (a few KiB that inflate to 8 MiB against a 1 MiB cap), corrupt
/// gzip, a wrong path, method, content type and content encoding.
/// Guarantees: 400 with the byte offset, 413, 413 without inflating the
/// bomb, 400, 404, 405, 415, 415; nothing reaches the upstream; the gateway
/// serves on.
#[test]
fn bad_requests_get_the_right_status() {
    let sink = Sink::start();
    let gateway = Gateway::start(&[
        "--upstream",
        &sink.url(),
        "--max-body-bytes",
        "65536",
        "--max-decompressed-bytes",
        "1048576",
    ]);

    // A resource_spans field claiming 100 bytes, with 2 present.
    let reply = gateway.post_protobuf(&[0x0a, 100, 1, 2]);
    assert_eq!(reply.status, 400);
    let message = reply.status_message();
    assert!(message.contains("malformed batch at byte"), "{message}");

    let reply = gateway.post("application/json", &[], br#"{"resourceSpans": [{"scopeSpans": 5}]}"#);
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("not OTLP JSON"), "{}", reply.text());

    // Refused on the declared length, before any body is read (so the
    // test sends none: unread data would make the close a reset).
    let reply = request_head(
        gateway.http,
        &[("Content-Type", "application/x-protobuf"), ("Content-Length", "70000")],
    );
    assert_eq!(reply.status, 413, "{}", reply.status_message());
    assert!(reply.status_message().contains("65536"), "{}", reply.status_message());

    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 65536);
    let reply = gateway.post("application/x-protobuf", &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(reply.status, 413, "{}", reply.status_message());
    assert!(reply.status_message().contains("1048576"), "{}", reply.status_message());

    let reply = gateway.post(
        "application/x-protobuf",
        &[("Content-Encoding", "gzip")],
        b"\x1f\x8b\x08\x00 not gzip",
    );
    assert_eq!(reply.status, 400, "{}", reply.status_message());

    assert_eq!(
        request(
            gateway.http,
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/x-protobuf")],
            b""
        )
        .status,
        404
    );
    let reply = request(gateway.http, "GET", "/v1/traces", &[], b"");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers.get("allow").map(String::as_str), Some("POST"));
    assert_eq!(gateway.post("text/plain", &[], b"hello").status, 415);
    assert_eq!(
        gateway.post("application/x-protobuf", &[("Content-Encoding", "br")], b"").status,
        415
    );

    // The same malformed bytes over gRPC (sent raw: a tonic client would
    // only send what it can encode).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        let body = tonic::codegen::Bytes::from_static(&[0x0a, 100, 1, 2]);
        grpc.unary(tonic::Request::new(body), path, tracescrub::serve::upstream::RawCodec)
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("malformed batch at byte"), "{status:?}");

    // Over the limit over gRPC: a 2 MiB message, over --max-body-bytes as
    // HTTP's body would be (tonic's own answer would be OutOfRange), and the
    // gzip bomb, over --max-decompressed-bytes (ResourceExhausted). Both
    // are retryable codes in OTLP/gRPC; the gateway must answer a final one.
    for (body, gzip, limit) in
        [(vec![0u8; 2 << 20], false, "65536"), (vec![0u8; 8 << 20], true, "1048576")]
    {
        let status = rt.block_on(async {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.grpc))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut grpc = tonic::client::Grpc::new(channel);
            if gzip {
                grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            grpc.ready().await.unwrap();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            );
            grpc.unary(
                tonic::Request::new(tonic::codegen::Bytes::from(body)),
                path,
                tracescrub::serve::upstream::RawCodec,
            )
            .await
            .unwrap_err()
        });
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "gzip={gzip}: {status:?}");
        assert!(status.message().contains(limit), "gzip={gzip}: {status:?}");
    }

    assert!(sink.received().is_empty());
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"malformed\"}"), 4.0);
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"too_large\"}"), 4.0);
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200, "still serving");
}

/// Scenario: a client sends its headers with `Content-Length: 1000` and 10
/// bytes of body, then stalls, under `--body-timeout-ms 500`; meanwhile a normal batch arrives; then a gRPC call
/// whose frame announces 1000 bytes and sends 10.
/// Guarantees: the stalled request is answered 408 within a few seconds,
/// naming the timeout; the normal batch is acknowledged meanwhile; the
/// stalled gRPC call gets `DeadlineExceeded` and gives its place back; each
/// cut-off body is counted under `outcome="body_timeout"`.
#[test]
fn a_stalled_body_is_cut_off_and_others_are_served() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url(), "--body-timeout-ms", "500"]);
    let addr = gateway.http;
    let stalled = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&[0u8; 10]).unwrap();
        let started = Instant::now();
        (read_reply(&mut stream), started.elapsed())
    });
    assert_eq!(
        gateway.post_protobuf(&known_batch()).status,
        200,
        "served while another body stalls"
    );
    let (reply, took) = stalled.join().unwrap();
    assert_eq!(reply.status, 408, "{}", reply.status_message());
    assert!(reply.status_message().contains("500 ms"), "{}", reply.status_message());
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    gateway.wait_for("the stalled request to give its place back", || {
        gateway.metric("tracescrub_in_flight_batches") == 0.0
    });
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"body_timeout\"}"), 1.0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (grpc_status, took) = rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<StalledBody>();
        let request = hyper::Request::post(format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            gateway.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StalledBody { sent: false })
        .unwrap();
        let started = Instant::now();
        let response = tokio::time::timeout(PATIENCE, client.request(request))
            .await
            .expect("an answer")
            .expect("a response");
        let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
        (status, started.elapsed())
    });
    assert_eq!(grpc_status.as_deref(), Some("4"), "DeadlineExceeded; log:\n{}", gateway.log());
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    gateway.wait_for("the stalled call to give its place back", || {
        gateway.metric("tracescrub_in_flight_batches") == 0.0
    });
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"body_timeout\"}"), 2.0);
    assert!(gateway.log().contains("outcome=body_timeout transport=grpc"), "{}", gateway.log());
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
}

/// A gRPC request body: a frame header announcing a 1000-byte message and
/// 10 bytes of it, then nothing, ever.
struct StalledBody {
    sent: bool,
}

impl hyper::body::Body for StalledBody {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<hyper::body::Bytes>, Self::Error>>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        let mut frame = vec![0u8, 0, 0, 0x03, 0xe8];
        frame.extend_from_slice(&[0u8; 10]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(hyper::body::Bytes::from(frame)))))
    }
}

/// Scenario: a gateway whose guest memory cap is 4 MiB, so a decoded batch
/// may be at most (4 MiB - 1 MiB) / 2 = 1572864 bytes; a 2 MiB batch, a
/// 4.5 MiB one (more than the cap: the guest cannot even copy it in, which
/// trapped and was answered 500) over HTTP and gRPC, and a 1 MiB one.
/// Guarantees: the 2 and 4.5 MiB batches are refused before the guest sees
/// them, with 413 / `InvalidArgument` naming the size and the limit, and
/// nothing traps; the 1 MiB batch is processed and forwarded.
#[test]
fn a_batch_too_big_for_guest_memory_is_refused_in_the_host() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url(), "--batch-memory-bytes", "4194304"]);
    let sized = |bytes: usize| {
        batch_of(vec![span(7, None, "GET /api/orders", vec![kv("payload", &"x".repeat(bytes))])])
            .encode_to_vec()
    };
    for big in [sized(2 << 20), sized(9 << 19)] {
        let reply = gateway.post_protobuf(&big);
        assert_eq!(reply.status, 413, "{} bytes: {}", big.len(), reply.status_message());
        let message = reply.status_message();
        assert!(
            message.contains(&big.len().to_string()) && message.contains("1572864"),
            "{message}"
        );
    }
    let big = sized(9 << 19);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", gateway.grpc)).await.unwrap();
        client.export(ExportTraceServiceRequest::decode(big.as_slice()).unwrap()).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("1572864"), "{status:?}");
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"trap\"}"), 0.0);

    let fits = sized(1 << 20);
    let reply = gateway.post_protobuf(&fits);
    assert_eq!(reply.status, 200, "{}", reply.status_message());
    assert_eq!(sink.received().len(), 1);
}

/// Scenario: a gateway with two workers, idle, gets batches of 290 KB in
/// eight resources (so they are cut in two, between resources), gzipped
/// both ways, until the other worker has run a part of one; then one whose
/// last resource holds an attribute that is not OTLP, also on a gateway
/// with `--no-split-batches`; then one whose health check has a child on
/// the other side of the cut, and one with a span of that trace there that
/// is no child of it; then 30 batches of 70 KB in two resources; then the
/// good batch on a gateway whose config sets `limits.max_batch_bytes`
/// between the batch's size and its parts'.
/// Guarantees: the sink receives byte for byte what the native engine
/// makes of the whole batch, a health check's child in another resource of
/// its trace included, on either side of the cut (then the parts disagree
/// and the batch runs again whole, which is counted; a span of the trace
/// that is no child runs no rerun); the help is counted; the bad batch
/// gets the same 400, with the whole batch's offset, split or not; no
/// batch under 128 KiB is cut; the limit holds for the whole batch (413),
/// not part by part.
#[test]
fn a_large_batch_is_split_across_idle_workers_with_the_same_result() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url(), "--workers", "2", "--upstream-gzip"]);
    let batch = multi_resource_batch(8).encode_to_vec();
    assert!(batch.len() > 256 << 10, "{}", batch.len());
    let expected = native(&batch);
    assert_eq!(expected.stats.dropped_descendants, 9, "{:?}", expected.stats);
    // The owner runs a part no one took by the time it gets to it, so on a
    // busy machine a batch may run all on one worker: send until one did not.
    let mut sent = 0;
    while gateway.metric("tracescrub_processor_split_batches_total") < 1.0 {
        assert!(
            sent < 50,
            "no part ran on another worker in {sent} batches\n{}",
            gateway.metrics()
        );
        let reply =
            gateway.post("application/x-protobuf", &[("Content-Encoding", "gzip")], &gzip(&batch));
        assert_eq!(reply.status, 200, "{}", reply.status_message());
        sent += 1;
    }
    let received = sink.received();
    assert_eq!(received.len(), sent);
    for r in &received {
        assert!(r.body == expected.batch, "the sink got other bytes than the native engine made");
    }
    assert_eq!(
        gateway.metric("tracescrub_processor_dropped_descendant_spans_total"),
        9.0 * sent as f64
    );

    let mut bad = multi_resource_batch(8);
    let last = &mut bad.resource_spans[7].scope_spans[0].spans[5];
    last.attributes.push(kv("placeholder", "y"));
    let mut bad = bad.encode_to_vec();
    // The placeholder KeyValue's key claims 0x50 bytes, past its end.
    let at = bad.windows(11).rposition(|w| w == b"placeholder").unwrap();
    bad[at - 1] = 0x50;
    let want = tracescrub_processor::Processor::new(&tracescrub::config_file::default_json())
        .unwrap()
        .process(&bad)
        .unwrap_err();
    let whole =
        Gateway::start(&["--upstream", &sink.url(), "--workers", "2", "--no-split-batches"]);
    for g in [&gateway, &whole] {
        let reply = g.post_protobuf(&bad);
        assert_eq!(reply.status, 400, "{}", reply.status_message());
        assert!(
            reply.status_message().contains(&want.to_string()),
            "{} lacks {want}",
            reply.status_message()
        );
    }
    assert_eq!(whole.metric("tracescrub_processor_split_batches_total"), 0.0);

    // Resource 3's health check (trace 3, span 1) gets a child in resource
    // 4, past the cut.
    let crossing = with_trace_3_span_in_resource_4(span(201, Some(1), "SELECT 3", vec![]));
    let expected = native(&crossing);
    assert_eq!(expected.stats.dropped_descendants, 10, "{:?}", expected.stats);
    let mut sent = 0;
    while gateway.metric("tracescrub_processor_split_reruns_total") < 1.0 {
        assert!(sent < 50, "no batch was run again whole in {sent} batches\n{}", gateway.metrics());
        let reply = gateway.post_protobuf(&crossing);
        assert_eq!(reply.status, 200, "{}", reply.status_message());
        let received = sink.received();
        let last = received.last().expect("a batch at the sink");
        assert!(
            last.body == expected.batch,
            "the sink got other bytes than the native engine made of the crossing batch"
        );
        sent += 1;
    }

    // The health check's trace past the cut again, but no child of it:
    // the parts stand for the whole, with no rerun.
    let same_trace = with_trace_3_span_in_resource_4(span(202, Some(99), "SELECT 4", vec![]));
    let expected = native(&same_trace);
    let (helped, reruns) = (
        gateway.metric("tracescrub_processor_split_batches_total"),
        gateway.metric("tracescrub_processor_split_reruns_total"),
    );
    let mut sent = 0;
    while gateway.metric("tracescrub_processor_split_batches_total") < helped + 1.0 {
        assert!(
            sent < 50,
            "no part ran on another worker in {sent} batches\n{}",
            gateway.metrics()
        );
        let reply = gateway.post_protobuf(&same_trace);
        assert_eq!(reply.status, 200, "{}", reply.status_message());
        let received = sink.received();
        assert!(
            received.last().expect("a batch at the sink").body == expected.batch,
            "other bytes than the native engine's"
        );
        sent += 1;
    }
    assert_eq!(
        gateway.metric("tracescrub_processor_split_reruns_total"),
        reruns,
        "a batch with no link across the cut ran again"
    );

    // Under 128 KiB a batch is not worth a second worker: never cut.
    let small = multi_resource_batch(2).encode_to_vec();
    assert!(small.len() < 128 << 10, "{}", small.len());
    let helped = gateway.metric("tracescrub_processor_split_batches_total");
    for _ in 0..30 {
        assert_eq!(gateway.post_protobuf(&small).status, 200);
    }
    assert_eq!(
        gateway.metric("tracescrub_processor_split_batches_total"),
        helped,
        "a batch under 128 KiB was cut"
    );

    let config = Path::new(env!("CARGO_TARGET_TMPDIR")).join("split-limit.yaml");
    std::fs::write(&config, format!("limits:\n  max_batch_bytes: {}\n", batch.len() * 2 / 3))
        .unwrap();
    let limited = Gateway::start(&[
        "--upstream",
        &sink.url(),
        "--workers",
        "2",
        "--config",
        config.to_str().unwrap(),
    ]);
    for _ in 0..5 {
        let reply = limited.post_protobuf(&batch);
        assert_eq!(reply.status, 413, "{}", reply.status_message());
    }
}

/// Scenario: one batch in flight (the upstream stalls) with
/// `--max-in-flight 1`, and a second batch.
/// Guarantees: the second is refused at once with 503 and Retry-After (and
/// gRPC `Unavailable`), and the first is acknowledged when the upstream
/// answers.
#[test]
fn backpressure_refuses_with_retry_after() {
    let sink = Sink::start();
    sink.set(Mode::Slow(Duration::from_secs(2)));
    let gateway = Gateway::start(&["--upstream", &sink.url(), "--max-in-flight", "1"]);
    let first = {
        let http = gateway.http;
        std::thread::spawn(move || {
            request(
                http,
                "POST",
                "/v1/traces",
                &[("Content-Type", "application/x-protobuf")],
                &known_batch(),
            )
            .status
        })
    };
    gateway.wait_for("the first batch to reach the upstream", || {
        sink.requests.load(Ordering::SeqCst) == 1
    });
    let reply = gateway.post_protobuf(&known_batch());
    assert_eq!(reply.status, 503, "{}", reply.status_message());
    assert_eq!(reply.headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(reply.status_message().contains("in-flight limit"), "{}", reply.status_message());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", gateway.grpc)).await.unwrap();
        client
            .export(ExportTraceServiceRequest::decode(known_batch().as_slice()).unwrap())
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"overloaded\"}"), 2.0);
}

/// Scenario: a component that traps on one batch and loops forever on
/// another (the misbehaving fixture, which passes other batches through),
/// with a 300 ms batch deadline; then a reload to the real component.
/// Guarantees: the trap is answered 500 and the loop 503 (retryable), each
/// counted; the instance is discarded and the next batch succeeds; after
/// the reload the real component serves and masks.
#[test]
fn trapping_and_looping_components_are_contained() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("processor.wasm");
    std::fs::write(&component, misbehaving_component()).unwrap();
    let gateway = Gateway::start(&[
        "--upstream",
        &sink.url(),
        "--component",
        component.to_str().unwrap(),
        "--batch-deadline-ms",
        "300",
    ]);
    assert_eq!(gateway.component, sha256(misbehaving_component()));

    let good = plain_batch("GET /api/orders");
    assert_eq!(gateway.post_protobuf(&good).status, 200);
    let reply = gateway.post_protobuf(&plain_batch("tracescrub-fixture-trap"));
    assert_eq!(reply.status, 500, "{}", reply.status_message());
    assert!(!reply.headers.contains_key("retry-after"));
    assert_eq!(gateway.post_protobuf(&good).status, 200, "a fresh instance serves after a trap");
    let reply = gateway.post_protobuf(&plain_batch("tracescrub-fixture-loop"));
    assert_eq!(reply.status, 503, "{}", reply.status_message());
    assert!(reply.status_message().contains("deadline"), "{}", reply.status_message());
    assert_eq!(gateway.post_protobuf(&good).status, 200, "a fresh instance serves after a timeout");
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"trap\"}"), 1.0);
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"timeout\"}"), 1.0);
    assert_eq!(sink.received().len(), 3, "only the good batches were forwarded");

    std::fs::write(&component, tracescrub::DEFAULT_COMPONENT).unwrap();
    let (status, answer) = gateway.reload();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["component_sha256"], sha256(tracescrub::DEFAULT_COMPONENT));
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
    let last = sink.received().pop().unwrap();
    assert_eq!(last.body, native(&known_batch()).batch);
}

/// Scenario: reloads of a gateway serving a config file and a component
/// file: a good config by `POST /-/reload`; a config the component rejects;
/// a file that is not a component; a cut-off component; a good config by
/// SIGHUP; a good config by rewriting the file (rename over it).
/// Guarantees: a good reload swaps both hashes into
/// `tracescrub_active_version` and the next batch uses it; a failed one
/// answers 422 naming the step, keeps the old version serving and counts a
/// failure.
#[test]
fn reloads_swap_good_versions_and_keep_serving_on_bad_ones() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scrub.yaml");
    let component = dir.path().join("processor.wasm");
    std::fs::write(&config, "mask:\n  replacement: stars\n").unwrap();
    std::fs::write(&component, tracescrub::DEFAULT_COMPONENT).unwrap();
    let gateway = Gateway::start(&[
        "--upstream",
        &sink.url(),
        "--config",
        config.to_str().unwrap(),
        "--component",
        component.to_str().unwrap(),
    ]);
    let component_hash = sha256(tracescrub::DEFAULT_COMPONENT);
    assert_eq!(
        gateway.active(),
        (component_hash.clone(), sha256(b"mask:\n  replacement: stars\n"))
    );

    // A good config, by POST. (The file watcher may reload it too; either
    // way the hashes are the file's.)
    let labelled = "mask:\n  replacement: label\n  label: \"[fnr]\"\n";
    std::fs::write(&config, labelled).unwrap();
    let (status, answer) = gateway.reload();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["config_sha256"], sha256(labelled.as_bytes()));
    assert_eq!(gateway.active(), (component_hash.clone(), sha256(labelled.as_bytes())));
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
    let forwarded = sink.received().pop().unwrap();
    assert!(contains(&forwarded.body, b"lookup [fnr]"), "the new config masks with the label");

    // Broken ones: each fails at its step and leaves the labelled version.
    let failures_before = gateway.metric("tracescrub_reloads_total{result=\"failure\"}");
    std::fs::write(&config, "mask:\n  mode: sometimes\n").unwrap();
    let (status, answer) = gateway.reload();
    assert_eq!((status, answer["step"].as_str()), (422, Some("configure")), "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("mask.mode"), "{answer}");
    std::fs::write(&config, labelled).unwrap();

    std::fs::write(&component, b"not a component").unwrap();
    let (status, answer) = gateway.reload();
    assert_eq!((status, answer["step"].as_str()), (422, Some("read-component")), "{answer}");
    std::fs::write(&component, &tracescrub::DEFAULT_COMPONENT[..4096]).unwrap();
    let (status, answer) = gateway.reload();
    assert_eq!((status, answer["step"].as_str()), (422, Some("compile")), "{answer}");
    assert_eq!(
        gateway.active(),
        (component_hash.clone(), sha256(labelled.as_bytes())),
        "the old version serves on"
    );
    assert!(
        gateway.metric("tracescrub_reloads_total{result=\"failure\"}") >= failures_before + 3.0
    );
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
    assert!(contains(&sink.received().pop().unwrap().body, b"lookup [fnr]"));
    std::fs::write(&component, tracescrub::DEFAULT_COMPONENT).unwrap();

    // SIGHUP.
    let any11 = "mask:\n  mode: any11\n";
    std::fs::write(&config, any11).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &gateway.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(hup.success());
    gateway.wait_for("the SIGHUP reload", || {
        gateway.active() == (component_hash.clone(), sha256(any11.as_bytes()))
    });

    // A file change: write elsewhere, rename over the config.
    let extra = "noise:\n  extra_globs: [\"*/orders\"]\n";
    let staged = dir.path().join("scrub.yaml.new");
    std::fs::write(&staged, extra).unwrap();
    std::fs::rename(&staged, &config).unwrap();
    gateway.wait_for("the file-change reload", || {
        gateway.active() == (component_hash.clone(), sha256(extra.as_bytes()))
    });
    assert_eq!(gateway.post_protobuf(&plain_batch("GET /api/orders")).status, 200);
    let before = sink.received().len();
    assert_eq!(gateway.post_protobuf(&plain_batch("GET /api/orders")).status, 200);
    assert_eq!(sink.received().len(), before, "the new glob drops the batch: nothing forwarded");
    assert!(
        gateway.log().contains("trigger=sighup") && gateway.log().contains("trigger=file-change"),
        "{}",
        gateway.log()
    );
}

/// Puts `files` in a new `..<version>` directory of `dir` and points the
/// `..data` link at it with a rename, as Kubernetes updates a mounted
/// ConfigMap or Secret: the files in `dir` are links through `..data`, so
/// no event names them.
fn swap_data_link(dir: &Path, version: &str, files: &[(&str, &[u8])]) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    for (name, content) in files {
        std::fs::write(data.join(name), content).unwrap();
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    std::os::unix::fs::symlink(format!("..{version}"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}

/// Scenario: a config and its pseudonym key file mounted as Kubernetes
/// mounts them (links through a `..data` link that an update swaps); an
/// unrelated file written beside them; a new config; then a new key alone.
/// Guarantees: each swap reloads (the key's by the pseudonyms changing;
/// the config hash, team files and all, stays the same), and the unrelated
/// file does not.
#[test]
fn link_swapped_configs_and_keys_reload_and_unrelated_files_do_not() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    // With team files, whose contents the config hash covers.
    let config = |key_id: &str| {
        format!(
            "version: 2\nteams: {{dir: teams}}\nmask:\n  replacement: hmac\n  hmac: {{key_id: {key_id}, key_file: scrub.key}}\n"
        )
    };
    std::fs::create_dir(dir.path().join("teams")).unwrap();
    std::fs::write(dir.path().join("teams/team-a.yaml"), "noise: {extra_globs: [\"*/x\"]}\n")
        .unwrap();
    let (first_key, second_key) = ([b'a'; 32], [b'b'; 32]);
    swap_data_link(
        dir.path(),
        "v1",
        &[("scrub.yaml", config("k1").as_bytes()), ("scrub.key", &first_key)],
    );
    let config_path = dir.path().join("scrub.yaml");
    let gateway =
        Gateway::start(&["--upstream", &sink.url(), "--config", config_path.to_str().unwrap()]);
    let forwarded = || {
        assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
        sink.received().pop().unwrap().body
    };
    let reloads =
        |gateway: &Gateway| gateway.log().matches("reload: success trigger=file-change").count();
    let first = forwarded();
    assert!(!contains(&first, NUMBER.as_bytes()), "the number is masked");
    let first_hash = gateway.active().1;

    // Unrelated, then a new config: only the second reloads. (Reloads run
    // one at a time, so a reload the unrelated file caused would be logged
    // before the config's.)
    std::fs::write(dir.path().join("notes.txt"), "not a watched file").unwrap();
    std::thread::sleep(tracescrub::serve::reload::DEBOUNCE * 4);
    let k2 = config("k2");
    swap_data_link(dir.path(), "v2", &[("scrub.yaml", k2.as_bytes()), ("scrub.key", &first_key)]);
    // The log line comes after the swap, through a pipe: wait for both.
    gateway.wait_for("the reload of the swapped config", || {
        gateway.active().1 != first_hash && reloads(&gateway) >= 1
    });
    assert_eq!(reloads(&gateway), 1, "{}", gateway.log());
    let second = forwarded();
    let second_hash = gateway.active().1;

    // A new key alone: no hash the gateway shows depends on the key.
    swap_data_link(dir.path(), "v3", &[("scrub.yaml", k2.as_bytes()), ("scrub.key", &second_key)]);
    gateway.wait_for("the reload of the swapped key", || reloads(&gateway) == 2);
    assert_eq!(gateway.active().1, second_hash);
    let third = forwarded();
    assert!(!contains(&third, NUMBER.as_bytes()), "the number is masked");
    assert_ne!(third, second, "the new key makes other pseudonyms");
    assert!(!gateway.log().contains("reload: failure"), "{}", gateway.log());
}

/// Scenario: one known batch (a health check with a child, and a span with
/// a number in its name and an attribute) over OTLP/HTTP.
/// Guarantees: the metrics count it exactly: 3 spans accepted, 1 sent, the
/// rule and the descendant, 2 masks by detector and field kind, one `ok`
/// batch and one latency observation.
#[test]
fn metrics_count_a_known_batch() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
    let expected = [
        ("tracescrub_receiver_accepted_spans_total{transport=\"http\"}", 3.0),
        ("tracescrub_receiver_accepted_spans_total{transport=\"grpc\"}", 0.0),
        ("tracescrub_exporter_sent_spans_total", 1.0),
        ("tracescrub_processor_dropped_spans_total{rule=\"*/isAlive\"}", 1.0),
        ("tracescrub_processor_dropped_descendant_spans_total", 1.0),
        ("tracescrub_processor_masked_values_total{detector=\"fnr\"}", 2.0),
        ("tracescrub_processor_masked_fields_total{field=\"span-name\"}", 1.0),
        ("tracescrub_processor_masked_fields_total{field=\"span-attribute\"}", 1.0),
        ("tracescrub_processor_batches_total{outcome=\"ok\"}", 1.0),
        ("tracescrub_processor_batch_duration_seconds_count", 1.0),
        ("tracescrub_receiver_request_duration_seconds_count", 1.0),
        ("tracescrub_reloads_total{result=\"success\"}", 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(gateway.metric(series), value, "{series}\n{}", gateway.metrics());
    }
    let active = format!(
        "tracescrub_active_version{{component_sha256=\"{}\",config_sha256=\"{}\"}} 1",
        gateway.component, gateway.config
    );
    assert!(gateway.metrics().contains(&active), "{}", gateway.metrics());
    assert_eq!(request(gateway.admin, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(gateway.admin, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(request(gateway.admin, "GET", "/nope", &[], b"").status, 404);
    assert_eq!(request(gateway.admin, "GET", "/-/reload", &[], b"").status, 405);
}

// ------------------------------------------------------ hostile clients --

/// A request body that never sends a byte and never ends: a client that
/// sent its headers and went silent.
struct Silent;

impl hyper::body::Body for Silent {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// `google.rpc.Status` with details and `google.rpc.RetryInfo`, written out
/// here so the test reads the gateway's details independently of it.
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The `RetryInfo` delay in a gRPC status's details, in seconds.
fn retry_info_secs(status: &tonic::Status) -> Option<i64> {
    let details = rpc::Status::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|a| a.type_url == "type.googleapis.com/google.rpc.RetryInfo")?;
    Some(rpc::RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?.seconds)
}

/// One raw gRPC Export call on a fresh HTTP/2 connection: `headers` over
/// the usual ones (a name given replaces the default), one frame holding
/// `message` (flagged compressed when `compressed`). The status comes from
/// the headers or the trailers, `OK` as `Code::Ok`.
fn grpc_call(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    message: &[u8],
    compressed: bool,
) -> tonic::Status {
    use http_body_util::BodyExt;
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Full<hyper::body::Bytes>>();
        let mut request = hyper::Request::post(format!(
            "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ));
        let defaults = [("content-type", "application/grpc"), ("te", "trailers")];
        for (name, value) in defaults {
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                request = request.header(name, value);
            }
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(http_body_util::Full::new(frame.into())).unwrap();
        let response = tokio::time::timeout(PATIENCE, client.request(request))
            .await
            .expect("an answer in time")
            .expect("a response");
        let mut all = response.headers().clone();
        let collected = response.into_body().collect().await.expect("the response body");
        if let Some(trailers) = collected.trailers() {
            all.extend(trailers.clone());
        }
        tonic::Status::from_header_map(&all).expect("a grpc-status")
    })
}

/// Scenario: 300 HTTP connections send headers with `Content-Length: 1000`
/// and no body, and stay open (the default limits: 128 in flight, 1024
/// receiving); meanwhile ordinary clients send batches over HTTP and gRPC.
/// Guarantees: the silent requests hold receiving places, not in-flight
/// ones; every ordinary batch is acknowledged while they are open.
#[test]
fn bodiless_http_requests_hold_no_in_flight_place() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n",
        gateway.http
    );
    let silent: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = TcpStream::connect(gateway.http).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    gateway.wait_for("300 requests receiving", || {
        gateway.metric("tracescrub_receiving_requests") == 300.0
    });
    assert_eq!(gateway.metric("tracescrub_in_flight_batches"), 0.0);
    for _ in 0..3 {
        let reply = gateway.post_protobuf(&known_batch());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", gateway.grpc)).await.unwrap();
        client
            .export(ExportTraceServiceRequest::decode(known_batch().as_slice()).unwrap())
            .await
            .expect("gRPC export acknowledged while 300 bodies are silent");
    });
    assert_eq!(sink.received().len(), 4);
    assert_eq!(gateway.metric("tracescrub_receiving_requests"), 300.0, "still open");
    drop(silent);
}

/// Scenario: one gRPC connection opens 150 Export streams that send only
/// HEADERS (default limits: 16 receiving per connection, 100 streams);
/// meanwhile ordinary clients send batches over gRPC and HTTP.
/// Guarantees: that connection holds at most 16 receiving places and no
/// in-flight place; the streams past its share are answered `Unavailable`
/// with a `RetryInfo`; every ordinary batch is acknowledged.
#[test]
fn header_only_grpc_streams_hold_no_in_flight_place() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sender, refused) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(gateway.grpc).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let refused = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..150 {
            let mut sender = sender.clone();
            let refused = Arc::clone(&refused);
            tokio::spawn(async move {
                let request = hyper::Request::post(
                    "http://gateway/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                )
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Silent)
                .unwrap();
                if sender.ready().await.is_err() {
                    return;
                }
                if let Ok(response) = sender.send_request(request).await
                    && let Some(status) = tonic::Status::from_header_map(response.headers())
                {
                    refused.lock().unwrap().push(status);
                }
            });
        }
        (sender, refused)
    });
    gateway.wait_for("the connection to fill its 16 receiving places", || {
        gateway.metric("tracescrub_receiving_requests") == 16.0
            && refused.lock().unwrap().len() >= 80
    });
    assert_eq!(gateway.metric("tracescrub_in_flight_batches"), 0.0);
    {
        let refused = refused.lock().unwrap();
        let first = &refused[0];
        assert_eq!(first.code(), tonic::Code::Unavailable, "{first:?}");
        assert!(first.message().contains("max-receiving-per-connection"), "{first:?}");
        assert_eq!(retry_info_secs(first), Some(1), "{first:?}");
    }
    rt.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", gateway.grpc)).await.unwrap();
        for _ in 0..3 {
            client
                .export(ExportTraceServiceRequest::decode(known_batch().as_slice()).unwrap())
                .await
                .expect("gRPC export acknowledged beside the silent connection");
        }
    });
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
    assert_eq!(sink.received().len(), 4);
    assert_eq!(gateway.metric("tracescrub_receiving_requests"), 16.0, "still open");
    drop(sender);
    drop(rt);
}

/// Scenario: `--max-receiving 2`; two HTTP requests send headers and no
/// body, a third arrives.
/// Guarantees: the third is refused at once with 503, Retry-After and a
/// message naming the setting; once the silent two are gone, batches pass.
#[test]
fn past_max_receiving_requests_are_refused_with_retry_after() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url(), "--max-receiving", "2"]);
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n",
        gateway.http
    );
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(gateway.http).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    gateway.wait_for("2 requests receiving", || {
        gateway.metric("tracescrub_receiving_requests") == 2.0
    });
    let reply = gateway.post_protobuf(&known_batch());
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(reply.status_message().contains("--max-receiving"), "{}", reply.status_message());
    drop(silent);
    gateway.wait_for("the silent requests to go", || {
        gateway.metric("tracescrub_receiving_requests") == 0.0
    });
    assert_eq!(gateway.post_protobuf(&known_batch()).status, 200);
    assert!(sink.received().len() == 1);
}

/// Scenario: `--idle-timeout-ms 300 --header-read-timeout-ms 300`; a client
/// connects to each receiver and sends nothing; another sends half a
/// request line; another sends a batch and keeps its connection.
/// Guarantees: the gateway closes each of them within a few seconds
/// (the batch is acknowledged first).
#[test]
fn silent_and_slow_header_connections_are_closed() {
    let sink = Sink::start();
    let gateway = Gateway::start(&[
        "--upstream",
        &sink.url(),
        "--idle-timeout-ms",
        "300",
        "--header-read-timeout-ms",
        "300",
    ]);
    let closed_within_seconds = |mut stream: TcpStream| {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        // EOF (or a reset) ends the read; a timeout would be an error.
        match stream.read_to_end(&mut rest) {
            Ok(_) => rest,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => rest,
            Err(e) => panic!("the connection was not closed: {e}"),
        }
    };
    for addr in [gateway.http, gateway.grpc, gateway.admin] {
        closed_within_seconds(TcpStream::connect(addr).unwrap());
    }
    let mut slow = TcpStream::connect(gateway.http).unwrap();
    slow.write_all(b"POST /v1/tra").unwrap();
    closed_within_seconds(slow);

    let mut kept = TcpStream::connect(gateway.http).unwrap();
    let batch = known_batch();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        gateway.http,
        batch.len()
    );
    kept.write_all(head.as_bytes()).unwrap();
    kept.write_all(&batch).unwrap();
    let answer = closed_within_seconds(kept);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(sink.received().len(), 1);
}

/// Scenario: `--max-body-bytes 65536 --max-decompressed-bytes 1048576`; over
/// gRPC, a 100 KiB uncompressed message, a frame announcing 100 MiB, a
/// gzip bomb (8 MiB of zeros), and then a message under both limits.
/// Guarantees: the first three get `InvalidArgument` naming the limit and
/// its setting, and nothing is forwarded; the last is acknowledged.
#[test]
fn grpc_messages_are_held_to_the_body_limits() {
    let sink = Sink::start();
    let gateway = Gateway::start(&[
        "--upstream",
        &sink.url(),
        "--max-body-bytes",
        "65536",
        "--max-decompressed-bytes",
        "1048576",
    ]);
    let status = grpc_call(gateway.grpc, &[], &vec![0u8; 100 << 10], false);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("65536") && status.message().contains("--max-body-bytes"),
        "{status:?}"
    );

    // A frame header announcing 100 MiB, and 1 KiB of it: refused on the
    // announced length, without waiting for (or buffering) the rest.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let announced = rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Full<hyper::body::Bytes>>();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(100u32 << 20).to_be_bytes());
        frame.extend_from_slice(&[0u8; 1024]);
        let request = hyper::Request::post(format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            gateway.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(frame.into()))
        .unwrap();
        let response = tokio::time::timeout(PATIENCE, client.request(request))
            .await
            .expect("an answer in time")
            .expect("a response");
        tonic::Status::from_header_map(response.headers()).expect("trailers-only status")
    });
    assert_eq!(announced.code(), tonic::Code::InvalidArgument, "{announced:?}");
    assert!(announced.message().contains("--max-body-bytes"), "{announced:?}");

    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 65536);
    let status = grpc_call(gateway.grpc, &[("grpc-encoding", "gzip")], &bomb, true);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("1048576")
            && status.message().contains("--max-decompressed-bytes"),
        "{status:?}"
    );
    assert!(sink.received().is_empty(), "an oversize message was forwarded");

    let status = grpc_call(gateway.grpc, &[], &known_batch(), false);
    assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
    assert_eq!(sink.received().len(), 1);
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"too_large\"}"), 3.0);
}

/// Scenario: the same batch over both transports with encodings the
/// gateway does not take as they are: gRPC with `application/grpc+json`
/// (a JSON body and a protobuf one), gRPC with `grpc-encoding` given twice
/// or unknown; HTTP with `Content-Encoding: gzip` in two headers and as
/// `gzip, gzip` (the body gzipped twice), and two Content-Type headers;
/// then each transport's accepted forms.
/// Guarantees: each refusal is final (`InvalidArgument` / `Unimplemented`,
/// 415) and says what to send; nothing is forwarded; one layer of gzip and
/// `identity` pass on both.
#[test]
fn json_grpc_and_repeated_encodings_are_refused_on_both_transports() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let batch = known_batch();
    let json = br#"{"resourceSpans":[]}"#;
    for body in [&json[..], &batch] {
        let status =
            grpc_call(gateway.grpc, &[("content-type", "application/grpc+json")], body, false);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("application/grpc+json"), "{status:?}");
    }
    let status = grpc_call(
        gateway.grpc,
        &[("grpc-encoding", "gzip"), ("grpc-encoding", "gzip")],
        &gzip(&batch),
        true,
    );
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("2 times"), "{status:?}");
    let status = grpc_call(gateway.grpc, &[("grpc-encoding", "zstd")], &batch, true);
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    let twice = gzip(&gzip(&batch));
    let reply = gateway.post(
        "application/x-protobuf",
        &[("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
        &twice,
    );
    assert_eq!(reply.status, 415, "{}", reply.text());
    assert!(reply.status_message().contains("2 times"), "{}", reply.status_message());
    let reply =
        gateway.post("application/x-protobuf", &[("Content-Encoding", "gzip, gzip")], &twice);
    assert_eq!(reply.status, 415, "{}", reply.text());
    let reply =
        gateway.post("application/x-protobuf", &[("Content-Type", "application/json")], &batch);
    assert_eq!(reply.status, 415, "{}", reply.text());
    assert!(sink.received().is_empty(), "a refused request was forwarded");

    let status = grpc_call(gateway.grpc, &[("grpc-encoding", "gzip")], &gzip(&batch), true);
    assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
    let status =
        grpc_call(gateway.grpc, &[("content-type", "application/grpc+proto")], &batch, false);
    assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
    let reply = gateway.post(
        "application/x-protobuf",
        &[("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        &gzip(&batch),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(sink.received().len(), 3);
}

/// Scenario: OTLP/JSON documents with content that are not traces: metrics,
/// logs, and traces with snake_case (protobuf) keys, posted to /v1/traces.
/// Guarantees: each gets 400, counted as malformed; nothing is forwarded.
#[test]
fn json_metrics_logs_and_snake_case_traces_are_refused() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let metrics = r#"{"resourceMetrics":[{"resource":{},"scopeMetrics":[{"metrics":[{"name":"http.server.duration","gauge":{"dataPoints":[{"asInt":"17053650260"}]}}]}]}]}"#.to_owned();
    let logs = r#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[{"severityText":"INFO","body":{"stringValue":"fnr 17053650260"}}]}]}]}"#.to_owned();
    let snake = format!(
        r#"{{"resource_spans":[{{"scope_spans":[{{"spans":[{{"trace_id":"{trace_id}","span_id":"eee19b7ec3c1b174","name":"GET /fnr/17053650260"}}]}}]}}]}}"#
    );
    for body in [metrics, logs, snake] {
        let reply = gateway.post("application/json", &[], body.as_bytes());
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(!reply.text().contains(NUMBER), "{}", reply.text());
    }
    assert!(sink.received().is_empty(), "a document that is not traces was forwarded");
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"malformed\"}"), 3.0);
}

/// Scenario: hostile protobuf bodies on OTLP/HTTP: a metrics export sent
/// as traces, a span whose 24-byte `span_id` carries a personal number,
/// and 40,000 spans that share one span id, each its own parent, the first
/// a health check.
/// Guarantees: the first two get 400 naming the field, never quoting the
/// id, and nothing is forwarded; the cycle batch is processed (200; every
/// span goes as noise or its descendant) within the batch deadline, which
/// quadratic descendant marking once blew.
#[test]
fn hostile_protobuf_bodies_are_refused_or_processed_in_bounded_time() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let metric = Metric { name: "http.server.request.duration".into(), ..Default::default() };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }],
    };
    let smuggled = Span {
        trace_id: vec![7; 16],
        span_id: format!("id:{NUMBER}:padding..").into_bytes(),
        name: "work".into(),
        ..Default::default()
    };
    let one_span = |span: Span| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    };
    for (body, field) in [
        (metrics.encode_to_vec(), "Span.trace_id"),
        (one_span(smuggled).encode_to_vec(), "Span.span_id is 24 bytes"),
    ] {
        let reply = gateway.post("application/x-protobuf", &[], &body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.text().contains(field), "{}", reply.text());
        assert!(!reply.text().contains(NUMBER), "{}", reply.text());
    }
    assert!(sink.received().is_empty(), "a malformed batch was forwarded");

    let spans: Vec<Span> = (0..40_000)
        .map(|i| Span {
            trace_id: vec![9; 16],
            span_id: vec![5; 8],
            parent_span_id: vec![5; 8],
            name: if i == 0 { "GET /isAlive".into() } else { "work".into() },
            kind: 2,
            ..Default::default()
        })
        .collect();
    let cycle = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let reply = gateway.post("application/x-protobuf", &[], &cycle.encode_to_vec());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gateway.metric("tracescrub_processor_batches_total{outcome=\"timeout\"}"), 0.0);
}

/// A gRPC upstream that throttles every call: `RESOURCE_EXHAUSTED` with a
/// `RetryInfo` of 11 s.
#[derive(Clone, Default)]
struct ThrottlingGrpcSink;

#[tonic::async_trait]
impl TraceService for ThrottlingGrpcSink {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let details = rpc::Status {
            code: tonic::Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![rpc::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: rpc::RetryInfo {
                    retry_delay: Some(rpc::Duration { seconds: 11, nanos: 0 }),
                }
                .encode_to_vec(),
            }],
        };
        Err(tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            details.encode_to_vec().into(),
        ))
    }
}

/// Scenario: the upstream throttles: HTTP 429 with `Retry-After` as an
/// HTTP-date 30 s ahead, 503 with `Retry-After: 9`, 429 with
/// `Retry-After: 7`; then a gRPC upstream answering `RESOURCE_EXHAUSTED`
/// with a `RetryInfo` of 11 s.
/// Guarantees: HTTP clients get the upstream's status and the wait in
/// seconds (the date converted, within the clock's second); gRPC clients
/// get `ResourceExhausted` or `Unavailable` with a `google.rpc.RetryInfo`
/// of the same wait; nothing is acknowledged.
#[test]
fn upstream_retry_hints_reach_both_transports() {
    let sink = Sink::start();
    let gateway = Gateway::start(&["--upstream", &sink.url()]);
    let export_grpc = || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut client =
                TraceServiceClient::connect(format!("http://{}", gateway.grpc)).await.unwrap();
            client
                .export(ExportTraceServiceRequest::decode(known_batch().as_slice()).unwrap())
                .await
                .unwrap_err()
        })
    };

    sink.set(Mode::RetryAt(429, std::time::SystemTime::now() + Duration::from_secs(30)));
    let reply = gateway.post_protobuf(&known_batch());
    assert_eq!(reply.status, 429, "{}", reply.text());
    let secs: u64 = reply.headers["retry-after"].parse().unwrap();
    assert!((27..=31).contains(&secs), "Retry-After {secs} for a date 30 s ahead");
    let status = export_grpc();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let secs = retry_info_secs(&status).expect("a RetryInfo");
    assert!((27..=31).contains(&secs), "RetryInfo {secs} s for a date 30 s ahead");

    sink.set(Mode::RetryAfter(503, 9));
    let reply = gateway.post_protobuf(&known_batch());
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.headers.get("retry-after").map(String::as_str), Some("9"));
    let status = export_grpc();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(retry_info_secs(&status), Some(9), "{status:?}");

    sink.set(Mode::Status(429));
    let status = export_grpc();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(retry_info_secs(&status), Some(7), "{status:?}");
    assert!(sink.received().is_empty());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(tonic::transport::Server::builder().serve_with_incoming(
        TraceServiceServer::new(ThrottlingGrpcSink),
        tonic::transport::server::TcpIncoming::from(listener),
    ));
    let gateway = Gateway::start(&["--upstream", &format!("grpc://{addr}")]);
    let reply = gateway.post_protobuf(&known_batch());
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.headers.get("retry-after").map(String::as_str), Some("11"));
    let status = grpc_call(gateway.grpc, &[], &known_batch(), false);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(retry_info_secs(&status), Some(11), "{status:?}");
}

/// A secret planted in configs and bodies; no reply, log line or metric
/// may carry it (nor [`NUMBER`]).
const SECRET: &str = "s3cr3t-Tok3n";

/// Fails with `what` if `text` carries [`SECRET`] or [`NUMBER`].
fn assert_no_echo(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET) && !text.contains(NUMBER),
        "{what} echoes a planted value:\n{text}"
    );
}

/// Every gateway key, each with values of the wrong kind or form that
/// carry [`SECRET`] and [`NUMBER`], as YAML; and the `gateway:` section
/// itself as a string. With each, whether it is a value of the wrong kind
/// (whose error gives the line), or of the right kind but refused later.
fn planted_gateway_configs(upstream: &str) -> Vec<(String, String, bool)> {
    let planted = format!("Bearer {SECRET} {NUMBER}");
    let mut cases: Vec<(&str, String)> = vec![
        ("upstream", format!("\"http://{SECRET}{NUMBER}\"")),
        ("upstream", format!("\"{planted}\"")),
        ("upstream_protocol", format!("\"{planted}\"")),
        ("upstream_headers", format!("\"Authorization: {planted}\"")),
        ("upstream_headers", format!("{{\"Authorization: {planted}\": x}}")),
        ("upstream_headers", format!("{{Authorization: \"{planted}\\u0001\"}}")),
        ("upstream_headers", format!("{{Authorization: [\"{planted}\"]}}")),
        ("upstream_headers", format!("{{Authorization: {NUMBER}}}")),
        ("upstream_headers", format!("[\"Authorization: {planted}\"]")),
        ("listen_http", format!("\"{planted}\"")),
        ("listen_grpc", format!("\"{planted}\"")),
        ("admin", format!("\"{planted}\"")),
        ("workers", NUMBER.to_owned()),
        ("batch_memory_bytes", format!("\"{NUMBER}\"")),
        ("not_a_key", format!("\"{planted}\"")),
    ];
    for key in [
        "upstream_gzip",
        "upstream_timeout_ms",
        "workers",
        "max_body_bytes",
        "max_decompressed_bytes",
        "batch_memory_bytes",
        "batch_deadline_ms",
        "max_in_flight",
        "body_timeout_ms",
        "max_receiving",
        "max_receiving_per_connection",
        "idle_timeout_ms",
        "header_read_timeout_ms",
        "split_batches",
        "max_batches_per_instance",
    ] {
        cases.push((key, format!("\"{planted}\"")));
        cases.push((key, format!("{NUMBER}.5")));
        cases.push((key, format!("-{NUMBER}")));
        cases.push((key, format!("[{NUMBER}]")));
        cases.push((key, format!("{{{SECRET}: {NUMBER}}}")));
    }
    let upstream_line = format!("  upstream: {upstream}\n");
    let mut configs: Vec<(String, String, bool)> = cases
        .into_iter()
        .map(|(key, value)| {
            let other = if key == "upstream" { "" } else { upstream_line.as_str() };
            let right_kind = ["upstream", "listen_http", "listen_grpc", "admin"].contains(&key)
                || value == NUMBER
                || value.starts_with("{\"Authorization")
                || value.contains("\\u0001");
            (key.to_owned(), format!("gateway:\n{other}  {key}: {value}\n"), !right_kind)
        })
        .collect();
    configs.push(("gateway".into(), format!("gateway: \"{planted}\"\n"), true));
    configs.push(("gateway".into(), format!("gateway:\n  - {planted}\n"), true));
    configs
}

/// Scenario: a secret and a personal number planted in every gateway
/// config key (wrong types, wrong forms, an unknown key), at start and at
/// reload; and in malformed bodies, paths, content types and encodings
/// over HTTP and gRPC.
/// Guarantees: each config is refused naming its key (`gateway.KEY`) and
/// the line, and no start-up error, reload answer, reply, log line (serve's
/// stderr) or metric carries the secret or the number.
#[test]
fn no_reply_log_or_metric_echoes_a_planted_value() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let configs = planted_gateway_configs(&sink.url());

    // At start: each config fails before anything is served.
    let file = dir.path().join("planted.yaml");
    for (key, yaml, wrong_kind) in &configs {
        std::fs::write(&file, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracescrub"))
            .args(["serve", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                panic!("serve started with a planted `{key}`:\n{yaml}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}: {yaml}\n{stderr}");
        assert_no_echo(&format!("the start-up error for `{key}`"), &stderr);
        let named =
            if key == "gateway" { "`gateway`".to_owned() } else { format!("`gateway.{key}`") };
        assert!(stderr.contains(&named), "{key}: {yaml}\n{stderr}");
        if *wrong_kind {
            assert!(stderr.contains("line ") && stderr.contains("byte "), "{key}: {stderr}");
        }
    }

    // At reload: the gateway serves on, and answers 422 or, for a setting
    // only a restart changes, 200 with a log line naming it.
    let config = dir.path().join("scrub.yaml");
    std::fs::write(&config, format!("gateway:\n  upstream: {}\n", sink.url())).unwrap();
    let config_arg = config.to_str().unwrap();
    let gateway = Gateway::start(&["--config", config_arg]);
    let mut replies = String::new();
    for (key, yaml, _) in &configs {
        std::fs::write(&config, yaml).unwrap();
        let reply = request(gateway.admin, "POST", "/-/reload", &[], b"");
        assert!([200, 422].contains(&reply.status), "{key}: {}", reply.text());
        replies.push_str(&reply.text());
        replies.push('\n');
    }
    std::fs::write(&config, format!("gateway:\n  upstream: {}\n", sink.url())).unwrap();
    assert_eq!(gateway.reload().0, 200);
    assert_no_echo("a reload answer", &replies);
    assert!(replies.contains("config key `gateway.upstream_headers`"), "{replies}");

    // Bodies, paths and headers over HTTP.
    let planted = format!("{SECRET}{NUMBER}");
    let mut protobuf = vec![0x0a, 0x7f];
    protobuf.extend_from_slice(planted.as_bytes());
    let mut wrong_wire_type = vec![0x0d];
    wrong_wire_type.extend_from_slice(planted.as_bytes());
    let json_bodies = [
        format!(r#"{{"resourceSpans":[{{"scopeSpans":"{planted}"}}]}}"#),
        format!(r#"{{"resourceSpans": [{planted}"#),
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{planted}"}}]}}]}}]}}"#
        ),
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":{NUMBER}}}]}}]}}]}}"#),
        format!(r#"{{"{planted}":[]}}"#),
        format!(r#"["{planted}"]"#),
    ];
    let mut texts = Vec::new();
    for body in [&protobuf, &wrong_wire_type] {
        texts.push(gateway.post_protobuf(body));
        texts.push(gateway.post(
            "application/x-protobuf",
            &[("Content-Encoding", "gzip")],
            &gzip(body),
        ));
    }
    for body in &json_bodies {
        texts.push(gateway.post("application/json", &[], body.as_bytes()));
    }
    let mut corrupt = b"\x1f\x8b\x08\x00".to_vec();
    corrupt.extend_from_slice(planted.as_bytes());
    texts.push(gateway.post("application/x-protobuf", &[("Content-Encoding", "gzip")], &corrupt));
    texts.push(request(
        gateway.http,
        "POST",
        &format!("/v1/{planted}"),
        &[("Content-Type", "application/x-protobuf")],
        b"",
    ));
    texts.push(gateway.post(&format!("text/{planted}"), &[], b""));
    texts.push(gateway.post("application/x-protobuf", &[("Content-Encoding", &planted)], b""));
    for reply in &texts {
        assert!(reply.status >= 400, "{reply:?}");
        assert_no_echo("an HTTP reply", &reply.text());
        assert_no_echo("HTTP reply headers", &format!("{:?}", reply.headers));
    }

    // And over gRPC.
    let content_type = format!("application/grpc+{planted}");
    let statuses = [
        grpc_call(gateway.grpc, &[], &protobuf, false),
        grpc_call(gateway.grpc, &[], &wrong_wire_type, false),
        grpc_call(gateway.grpc, &[("grpc-encoding", "gzip")], &corrupt, true),
        grpc_call(gateway.grpc, &[("grpc-encoding", &planted)], &protobuf, true),
        grpc_call(gateway.grpc, &[("content-type", &content_type)], &protobuf, false),
    ];
    for status in &statuses {
        assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");
        assert_no_echo("a gRPC status", &format!("{status:?}"));
    }
    assert!(sink.received().is_empty());

    assert_no_echo("/metrics", &gateway.metrics());
    let log = gateway.log();
    assert!(log.contains("reload: failure"), "{log}");
    assert_no_echo("serve's log", &log);
}

/// Scenario: a secret planted in the component's own config keys
/// (`noise.extra_globs` as a string, a number, an unknown key), reloaded.
/// Guarantees: the reload fails and neither its answer nor the log carries
/// the secret.
#[test]
fn component_config_errors_do_not_echo_a_planted_value() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scrub.yaml");
    std::fs::write(&config, format!("gateway:\n  upstream: {}\n", sink.url())).unwrap();
    let gateway = Gateway::start(&["--config", config.to_str().unwrap()]);
    let planted = format!("Bearer {SECRET} {NUMBER}");
    for body in [
        format!("noise:\n  extra_globs: \"{planted}\"\n"),
        format!("noise:\n  extra_globs: [{NUMBER}]\n"),
        format!("mask:\n  mode: \"{planted}\"\n"),
        format!("\"{planted}\": 1\n"),
    ] {
        std::fs::write(&config, format!("gateway:\n  upstream: {}\n{body}", sink.url())).unwrap();
        let (status, answer) = gateway.reload();
        assert_eq!(status, 422, "{answer}");
        assert_no_echo("a reload answer", &answer.to_string());
    }
    assert_no_echo("serve's log", &gateway.log());
}
