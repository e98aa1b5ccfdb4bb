//! Micro-benchmarks of the engine's hot paths, with throughput in bytes/s
//! over small, medium and large inputs:
//!
//! - `wire_walk`: a whole batch with masking and noise both off (validation
//!   and the walk over every message, nothing else), and `default_config`,
//!   the same batches with the platform's rules, for the difference, and
//!   `version_2_defaults`, those rules layered with both presets on;
//! - `path_glob`: taking the path out of a URL attribute or a span name and
//!   matching it against the default noise globs;
//! - `fnr_scan`: the digit scanner with its validator over attribute
//!   strings with and without personal numbers, and `classify` alone;
//! - `process_part` against `process_owned`, the same batches: what the
//!   parent links a part reports cost (the gateway processes a large batch's
//!   parts on several workers this way);
//! - `create_with_teams`: creating a processor from a config with 500 team
//!   files and 50 overrides (the shape of `scripts/bench-teams.sh`), which
//!   every fresh guest pays again.
//!
//! divan rather than criterion: a fraction of the dependencies (no plotting,
//! no rayon), so it builds quickly on a 2-core machine, and
//! `#[divan::bench(args = ...)]` with a `BytesCount` counter reports bytes/s
//! per input directly. Each benchmark runs for at most 0.3 s by default;
//! `cargo bench -p tracescrub-processor -- --max-time 2` samples longer.

use std::time::Duration;

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tracescrub_processor::fnr::{self, Mode};
use tracescrub_processor::glob::{DEFAULT_NOISE_GLOBS, GlobList};
use tracescrub_processor::{Processor, path};

fn main() {
    divan::Divan::default().max_time(Duration::from_millis(300)).config_with_args().main();
}

// ---------------------------------------------------------------------------
// Batches.

/// Batch sizes, in spans.
#[derive(Debug, Clone, Copy)]
enum Batch {
    /// 8 spans, ~3 KB.
    Small,
    /// 128 spans, ~50 KB.
    Medium,
    /// 2048 spans, ~800 KB (the `tracescrub bench` default batch).
    Large,
}

impl Batch {
    fn spans(self) -> usize {
        match self {
            Batch::Small => 8,
            Batch::Medium => 128,
            Batch::Large => 2048,
        }
    }
}

const BATCHES: [Batch; 3] = [Batch::Small, Batch::Medium, Batch::Large];

fn s(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..KeyValue::default()
    }
}

fn i(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..KeyValue::default()
    }
}

/// Spans shaped like the Node captures: each request is a server span, an
/// express handler, a SQL query and a Redis command; one request in eight
/// is a health check, one in four looks a person up by number, one in
/// twenty fails with an exception.
fn batch(spans: usize) -> Vec<u8> {
    const FNR: &str = "17053650260";
    let mut out = Vec::with_capacity(spans);
    let mut n = 0u64;
    while out.len() < spans {
        n += 1;
        let trace_id = (n as u128 * 0x9E37_79B9_7F4A_7C15).to_le_bytes().to_vec();
        let id = |k: u64| (n * 8 + k).wrapping_mul(0xBF58_476D_1CE4_E5B9).to_le_bytes().to_vec();
        let (path, sql, key) = match n % 8 {
            0 => ("/isAlive".to_owned(), "SELECT 1".to_owned(), "ping".to_owned()),
            1 | 5 => (
                format!("/api/person/{FNR}"),
                format!("SELECT name, born FROM person WHERE fnr = '{FNR}'"),
                format!("get person:{FNR}"),
            ),
            _ => (
                format!("/api/orders/{}", 10_000 + n),
                format!(
                    "SELECT o.id, o.amount, c.name FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = {}",
                    10_000 + n
                ),
                format!("get order:{}", 10_000 + n),
            ),
        };
        let span = |k: u64,
                    parent: Option<u64>,
                    kind: SpanKind,
                    name: String,
                    attributes: Vec<KeyValue>| Span {
            trace_id: trace_id.clone(),
            span_id: id(k),
            parent_span_id: parent.map(id).unwrap_or_default(),
            flags: 0x101,
            name,
            kind: kind as i32,
            start_time_unix_nano: 1_795_000_000_000_000_000 + n * 1_000_000 + k,
            end_time_unix_nano: 1_795_000_000_000_000_000 + n * 1_000_000 + 900_000 - k,
            attributes,
            status: Some(Status::default()),
            ..Span::default()
        };
        let db = vec![
            s("db.system.name", "postgresql"),
            s("db.namespace", "app"),
            s("server.address", "10.12.0.5"),
            i("server.port", 5432),
            s("db.query.text", sql),
        ];
        out.push(span(2, Some(1), SpanKind::Client, "pg.query:SELECT app".into(), db));
        let redis = vec![
            s("db.operation.name", "get"),
            s("db.system.name", "redis"),
            s("db.query.text", key),
            s("server.address", "10.12.0.7"),
            i("server.port", 6379),
        ];
        out.push(span(3, Some(1), SpanKind::Client, "get".into(), redis));
        let mut handler = span(
            1,
            Some(0),
            SpanKind::Internal,
            "request handler".into(),
            vec![s("http.route", "/api/x/:id"), s("express.type", "request_handler")],
        );
        if n % 20 == 3 {
            let message = format!("no consent registered for person {FNR}");
            let stack = format!(
                "Error: {message}\n{}",
                "    at Layer.handleRequest (/app/node_modules/router/lib/layer.js:152:17)\n"
                    .repeat(14)
            );
            handler.events.push(Event {
                time_unix_nano: 1,
                name: "exception".into(),
                attributes: vec![
                    s("exception.type", "Error"),
                    s("exception.message", message),
                    s("exception.stacktrace", stack),
                ],
                dropped_attributes_count: 0,
            });
        }
        out.push(handler);
        let server = vec![
            s("http.request.method", "GET"),
            s("url.scheme", "http"),
            s("server.address", "person-api.team.svc.cluster.local"),
            s("network.peer.address", "10.4.7.19"),
            i("network.peer.port", 40_000 + (n % 20_000) as i64),
            s("network.protocol.version", "1.1"),
            s("user_agent.original", "okhttp/4.12.0"),
            s("url.path", path.clone()),
            s("client.address", "10.4.7.19"),
            i("server.port", 8080),
            i("http.response.status_code", 200),
            s("http.route", "/api/x/:id"),
        ];
        out.push(span(0, None, SpanKind::Server, format!("GET {path}"), server));
    }
    out.truncate(spans);
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "person-api"),
                    s("service.version", "2026.11.3"),
                    s("telemetry.sdk.language", "nodejs"),
                    s("telemetry.sdk.name", "opentelemetry"),
                    s("telemetry.sdk.version", "2.2.0"),
                    s("host.name", "person-api-7f9c4b6d5-x2x9q"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "@opentelemetry/instrumentation-http".into(),
                    version: "0.223.0".into(),
                    ..Default::default()
                }),
                spans: out,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    request.encode_to_vec()
}

/// Walks, validates and copies the batch: masking and noise both off.
#[divan::bench(args = BATCHES)]
fn wire_walk(bencher: Bencher, size: Batch) {
    let batch = batch(size.spans());
    let processor =
        Processor::new(r#"{"noise": {"enabled": false}, "mask": {"enabled": false}}"#).unwrap();
    let mut out = Vec::new();
    bencher
        .counter(BytesCount::new(batch.len()))
        .bench_local(|| processor.process_into(black_box(&batch), &mut out).unwrap());
}

/// The same batches with the default rules: noise walk, masking, edits.
#[divan::bench(args = BATCHES)]
fn default_config(bencher: Bencher, size: Batch) {
    let batch = batch(size.spans());
    let processor = Processor::new("{}").unwrap();
    let mut out = Vec::new();
    bencher
        .counter(BytesCount::new(batch.len()))
        .bench_local(|| processor.process_into(black_box(&batch), &mut out).unwrap());
}

/// The same batches under schema version 2's defaults: the layered rules
/// with both presets on, against `default_config`'s version 1.
#[divan::bench(args = BATCHES)]
fn version_2_defaults(bencher: Bencher, size: Batch) {
    let batch = batch(size.spans());
    let processor = Processor::new(r#"{"version": 2}"#).unwrap();
    let mut out = Vec::new();
    bencher
        .counter(BytesCount::new(batch.len()))
        .bench_local(|| processor.process_into(black_box(&batch), &mut out).unwrap());
}

/// The default rules on a batch taken by value, as the component does;
/// each iteration copies the batch first, as does `process_part`'s.
#[divan::bench(args = BATCHES)]
fn process_owned(bencher: Bencher, size: Batch) {
    let batch = batch(size.spans());
    let processor = Processor::new("{}").unwrap();
    bencher
        .counter(BytesCount::new(batch.len()))
        .bench_local(|| processor.process_owned(black_box(batch.clone())).unwrap());
}

/// `process_owned` plus the part's links.
#[divan::bench(args = BATCHES)]
fn process_part(bencher: Bencher, size: Batch) {
    let batch = batch(size.spans());
    let processor = Processor::new("{}").unwrap();
    bencher
        .counter(BytesCount::new(batch.len()))
        .bench_local(|| processor.process_part(black_box(batch.clone())).unwrap());
}

// ---------------------------------------------------------------------------
// Path extraction and glob matching.

/// Where a path comes from, short to long.
#[derive(Debug, Clone, Copy)]
enum PathInput {
    /// `url.path` of a health check, a match: `/isAlive`.
    HealthPath,
    /// `url.path` of an API call, no match.
    ApiPath,
    /// `url.full` with scheme, host, query and fragment, no match.
    FullUrl,
    /// A server span's name, `GET /actuator/health/liveness`, a match.
    SpanName,
}

impl PathInput {
    fn text(self) -> &'static [u8] {
        match self {
            PathInput::HealthPath => b"/isAlive",
            PathInput::ApiPath => b"/api/person/17053650260/consent",
            PathInput::FullUrl => {
                b"https://person-api.team-person.svc.cluster.local:8080/api/v2/persons/search/by-identifier?include=address,consents&limit=50&page=3#results"
            }
            PathInput::SpanName => b"GET /actuator/health/liveness",
        }
    }
}

#[divan::bench(args = [PathInput::HealthPath, PathInput::ApiPath, PathInput::FullUrl, PathInput::SpanName])]
fn path_glob(bencher: Bencher, input: PathInput) {
    let globs: Vec<String> = DEFAULT_NOISE_GLOBS.iter().map(|g| (*g).to_owned()).collect();
    let list = GlobList::new(&globs, false).unwrap();
    let text = input.text();
    let mut scratch = Vec::new();
    let span_name = matches!(input, PathInput::SpanName);
    bencher.counter(BytesCount::new(text.len())).bench_local(|| {
        let text = black_box(text);
        let path = if span_name {
            path::from_span_name(text).unwrap_or_default()
        } else {
            path::from_attribute(text)
        };
        list.first_match(path, &mut scratch)
    });
}

// ---------------------------------------------------------------------------
// The digit scanner and its validator.

/// Attribute strings, short to long, without and with a personal number.
#[derive(Debug, Clone, Copy)]
enum Text {
    /// A Redis command, 19 bytes.
    RedisKey,
    /// The same with a number, 22 bytes.
    RedisKeyFnr,
    /// A SQL statement with short ids, ~110 bytes.
    Sql,
    /// The same with a number in a literal.
    SqlFnr,
    /// A SQL statement with an 11-digit order id that fails the checksums.
    SqlLookalike,
    /// A ~1.1 KB stack trace with line numbers.
    Stack,
    /// The same with a number in the message.
    StackFnr,
}

const TEXTS: [Text; 7] = [
    Text::RedisKey,
    Text::RedisKeyFnr,
    Text::Sql,
    Text::SqlFnr,
    Text::SqlLookalike,
    Text::Stack,
    Text::StackFnr,
];

impl Text {
    fn text(self) -> String {
        let stack = |id: &str| {
            format!(
                "Error: no consent registered for person {id}\n{}",
                "    at Layer.handleRequest (/app/node_modules/router/lib/layer.js:152:17)\n"
                    .repeat(14)
            )
        };
        match self {
            Text::RedisKey => "get order:123456789".into(),
            Text::RedisKeyFnr => "get person:17053650260".into(),
            Text::Sql => "SELECT o.id, o.amount, c.name FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = 4711".into(),
            Text::SqlFnr => {
                "SELECT o.id, o.amount, c.name FROM person p JOIN orders o ON o.person = p.id WHERE p.fnr = '17053650260'".into()
            }
            Text::SqlLookalike => {
                "SELECT o.id, o.amount, c.name FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = 12345678901".into()
            }
            Text::Stack => stack("a3f1c2de-77b0-4c1e-9d2a-5b8e0f6c1d3e"),
            Text::StackFnr => stack("17053650260"),
        }
    }
}

/// What the engine does per string: the pre-check, then the scan.
#[divan::bench(args = TEXTS)]
fn fnr_scan(bencher: Bencher, input: Text) {
    let text = input.text().into_bytes();
    bencher.counter(BytesCount::new(text.len())).bench_local(|| {
        let text = black_box(text.as_slice());
        let mut found = 0u32;
        if fnr::may_contain(text) {
            fnr::scan(text, Mode::Validated, |_| found += 1);
        }
        found
    });
}

/// The validator alone, over 11-digit candidates: valid, bad checksum,
/// bad date.
#[divan::bench]
fn fnr_classify(bencher: Bencher) {
    let candidates: [&[u8; 11]; 3] = [b"17053650260", b"12345678901", b"99999999999"];
    bencher
        .counter(BytesCount::new(33usize))
        .bench_local(|| candidates.map(|c| fnr::classify(black_box(c))));
}

/// Creating a processor from a version-2 config with 500 team files (each
/// with extra and keep globs, an attribute rule and a service entry) and 50
/// overrides, as the host passes it (team files attached).
#[divan::bench]
fn create_with_teams(bencher: Bencher) {
    let teams: Vec<String> = (0..500)
        .map(|i| {
            let name = if i == 0 { "team-person".to_owned() } else { format!("team-{i}") };
            format!(
                r#""{name}": {{"file": "teams/{name}.yaml", "doc": {{"noise": {{"extra_globs": ["*/warmup-{i}", "*/internal/selftest-{i}/*"], "keep_globs": ["*/internal/status-report-{i}"], "rules": [{{"attribute": "app.probe", "glob": "synthetic-{i}"}}]}}, "services": {{"svc-{i}-*": {{"noise": {{"extra_globs": ["*/ping-{i}"]}}}}}}}}}}"#
            )
        })
        .collect();
    let overrides: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"match": {{"service.name": "legacy-{i}-*"}}, "noise": {{"extra_globs": ["*/old-health-{i}"]}}}}"#
            )
        })
        .collect();
    let config = format!(
        r#"{{"version": 2, "overrides": [{}], "teams": {{"dir": "teams/", "files": {{{}}}}}}}"#,
        overrides.join(", "),
        teams.join(", ")
    );
    Processor::new(&config).unwrap_or_else(|e| panic!("{e}"));
    bencher.bench_local(|| Processor::new(black_box(&config)).unwrap());
}
