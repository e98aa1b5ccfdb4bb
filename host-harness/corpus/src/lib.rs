//! A seeded, deterministic corpus of OTLP trace batches for benchmarks.
//!
//! The shape follows the real SDK captures in `testdata/captures/`: the
//! Node (express, pg, ioredis; stable semantic conventions) and Python
//! (Flask, psycopg, redis-py; old and stable names side by side) services,
//! their instrumentation scopes, span kinds, attribute sets and value
//! lengths, Kafka producer and consumer spans with the message key as a
//! string, an int or bytes, and exception events with ~1.2 KB stack traces.
//!
//! Each trace is one request handled by one service. Services export their
//! finished spans (children before parents, grouped by scope) in chunks of
//! up to 512 spans, as an SDK's batch span processor does; the chunks are
//! concatenated into batches of exactly `batch_spans` spans, as a
//! collector's batch processor does, splitting the chunk that straddles a
//! batch boundary.
//!
//! About 10-20 % of the spans are noise (health checks and metrics scrapes
//! on the default globs' paths, with their DB and Redis pings as children),
//! and about 1-5 % of the values carry a valid personal number (generated
//! with the mod-11 rules; fødselsnummer, D-, H- and synthetic numbers), in
//! URLs, SQL, Redis commands, Kafka keys, exception messages, span and event
//! names and attribute keys. Look-alikes that must be left alone (11-digit
//! ids with bad check digits, 12-digit ids) are mixed in.
//!
//! The generator records how many valid numbers it planted, so a test can
//! check the engine masks exactly those.

use std::fmt;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, status::StatusCode,
};
use prost::Message;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0x7472_6163_6573_6372; // "tracescr"

/// The fewest spans a default corpus holds.
pub const DEFAULT_MIN_SPANS: usize = 100_000;

/// Spans per batch when none is given.
pub const DEFAULT_BATCH_SPANS: usize = 2048;

/// The smallest batch the generator makes.
pub const MIN_BATCH_SPANS: usize = 512;

/// The largest batch the generator makes.
pub const MAX_BATCH_SPANS: usize = 8192;

/// The most spans one service exports at a time (the OpenTelemetry SDKs'
/// default `max_export_batch_size`).
const MAX_EXPORT_SPANS: usize = 512;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusOptions {
    /// The PRNG seed: the same seed gives the same bytes.
    pub seed: u64,
    /// At least this many spans; rounded up to whole batches.
    pub min_spans: usize,
    /// Spans in every batch, [`MIN_BATCH_SPANS`]..=[`MAX_BATCH_SPANS`].
    pub batch_spans: usize,
}

impl Default for CorpusOptions {
    fn default() -> CorpusOptions {
        CorpusOptions {
            seed: DEFAULT_SEED,
            min_spans: DEFAULT_MIN_SPANS,
            batch_spans: DEFAULT_BATCH_SPANS,
        }
    }
}

/// A generated corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// Protobuf-encoded `ExportTraceServiceRequest`s, each with exactly
    /// `batch_spans` spans.
    pub batches: Vec<Vec<u8>>,
    /// Spans in all batches.
    pub spans: u64,
    /// Bytes in all batches.
    pub bytes: u64,
    /// Values a personal number could sit in, over all spans: span names,
    /// attribute values (each leaf of an array or kvlist), event names and
    /// status messages. Resource and scope fields are not counted.
    pub values: u64,
    /// Valid personal numbers written into spans that are not noise (so
    /// the default config masks exactly this many).
    pub planted_numbers: u64,
    /// Spans of noisy traces (health checks, scrapes, and their children).
    pub noise_spans: u64,
}

/// Options the generator cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusError(pub String);

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CorpusError {}

/// Generates a corpus. Deterministic: the same options give the same bytes.
pub fn generate(options: &CorpusOptions) -> Result<Corpus, CorpusError> {
    check_batch_spans(options.batch_spans)?;
    let wanted_batches = options.min_spans.div_ceil(options.batch_spans).max(1);
    let mut rng = Rng::new(options.seed);
    let services = services(&mut rng);
    let mut queues: Vec<Vec<Pending>> = vec![Vec::new(); services.len()];
    let mut export_targets: Vec<usize> = services.iter().map(|_| export_target(&mut rng)).collect();
    let mut collector = Collector::new(options.batch_spans);
    let mut clock = 1_795_000_000_000_000_000_u64; // late 2026, in ns
    while collector.batches.len() < wanted_batches {
        let s = rng.below(services.len() as u64) as usize;
        clock += rng.below(3_000_000);
        let mut trace = Trace::new(&mut rng, &services[s], clock);
        trace.generate();
        queues[s].extend(trace.spans);
        if queues[s].len() >= export_targets[s] {
            collector.add_export(s, std::mem::take(&mut queues[s]));
            export_targets[s] = export_target(&mut rng);
        }
    }
    collector.batches.truncate(wanted_batches);
    let mut corpus = Corpus {
        batches: Vec::new(),
        spans: 0,
        bytes: 0,
        values: 0,
        planted_numbers: 0,
        noise_spans: 0,
    };
    for batch in collector.batches {
        let bytes = encode(&services, &batch, &mut corpus);
        corpus.bytes += bytes.len() as u64;
        corpus.batches.push(bytes);
    }
    Ok(corpus)
}

fn check_batch_spans(n: usize) -> Result<(), CorpusError> {
    if (MIN_BATCH_SPANS..=MAX_BATCH_SPANS).contains(&n) {
        Ok(())
    } else {
        Err(CorpusError(format!(
            "batch size {n} spans is outside {MIN_BATCH_SPANS}..={MAX_BATCH_SPANS}"
        )))
    }
}

/// How many spans a service queues before exporting them.
fn export_target(rng: &mut Rng) -> usize {
    64 + rng.below((MAX_EXPORT_SPANS - 64) as u64) as usize
}

/// Re-batches protobuf-encoded `ExportTraceServiceRequest`s into batches of
/// `spans_per_batch` spans (the last may hold fewer), keeping each span
/// under its resource and scope. Unknown fields are not kept.
pub fn rebatch(batches: &[Vec<u8>], spans_per_batch: usize) -> Result<Vec<Vec<u8>>, CorpusError> {
    if spans_per_batch == 0 {
        return Err(CorpusError("batch size must be at least one span".into()));
    }
    let mut out = Vec::new();
    let mut current = ExportTraceServiceRequest::default();
    let mut count = 0;
    for (i, bytes) in batches.iter().enumerate() {
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).map_err(|e| {
            CorpusError(format!("batch {i} is not an ExportTraceServiceRequest: {e}"))
        })?;
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let same_resource = current
                        .resource_spans
                        .last()
                        .is_some_and(|last| last.resource == rs.resource);
                    if !same_resource {
                        current.resource_spans.push(ResourceSpans {
                            resource: rs.resource.clone(),
                            scope_spans: Vec::new(),
                            schema_url: rs.schema_url.clone(),
                        });
                    }
                    let Some(last_rs) = current.resource_spans.last_mut() else { continue };
                    if !last_rs.scope_spans.last().is_some_and(|last| last.scope == ss.scope) {
                        last_rs.scope_spans.push(ScopeSpans {
                            scope: ss.scope.clone(),
                            spans: Vec::new(),
                            schema_url: ss.schema_url.clone(),
                        });
                    }
                    if let Some(last_ss) = last_rs.scope_spans.last_mut() {
                        last_ss.spans.push(span);
                    }
                    count += 1;
                    if count == spans_per_batch {
                        out.push(std::mem::take(&mut current).encode_to_vec());
                        count = 0;
                    }
                }
            }
        }
    }
    if count > 0 {
        out.push(current.encode_to_vec());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The PRNG.

/// SplitMix64: tiny, fast, and good enough to shape test data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }

    /// Lowercase hex with no run of more than five digits, so that ids
    /// never look like a personal number by chance.
    fn hex(&mut self, len: usize) -> String {
        let mut digits = 0;
        (0..len)
            .map(|_| {
                let c = if digits == 5 {
                    b"abcdef"[self.below(6) as usize]
                } else {
                    b"0123456789abcdef"[self.below(16) as usize]
                };
                digits = if c.is_ascii_digit() { digits + 1 } else { 0 };
                char::from(c)
            })
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }
}

// ---------------------------------------------------------------------------
// Personal numbers.

/// Weights of the first check digit over digits 1..=9.
const K1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
/// Weights of the second check digit over digits 1..=10.
const K2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// Which kind of personal number to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberKind {
    Fnr,
    DNumber,
    HNumber,
    Synthetic,
}

/// `11 - sum % 11`, with 11 -> 0; None for 10 (no valid check digit).
fn check_digit(digits: &[u8], weights: &[u32]) -> Option<u8> {
    let sum: u32 = digits.iter().zip(weights).map(|(&d, &w)| u32::from(d) * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k as u8),
    }
}

/// A valid personal number of `kind`, as 11 ASCII digits.
fn personal_number(rng: &mut Rng, kind: NumberKind) -> String {
    loop {
        let yy = rng.below(100) as u8;
        let month = rng.range(1, 12) as u8;
        // 28 for February: valid whatever the century.
        let days = match month {
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let day = rng.range(1, days) as u8;
        let (d, m) = match kind {
            NumberKind::Fnr => (day, month),
            NumberKind::DNumber => (day + 40, month),
            NumberKind::HNumber => (day, month + 40),
            NumberKind::Synthetic => (day, month + 80),
        };
        let individual = rng.below(1000) as u16;
        let mut n = [
            d / 10,
            d % 10,
            m / 10,
            m % 10,
            yy / 10,
            yy % 10,
            (individual / 100) as u8,
            (individual / 10 % 10) as u8,
            (individual % 10) as u8,
            0,
            0,
        ];
        let Some(k1) = check_digit(&n[..9], &K1) else { continue };
        n[9] = k1;
        let Some(k2) = check_digit(&n[..10], &K2) else { continue };
        n[10] = k2;
        return n.iter().map(|d| char::from(b'0' + d)).collect();
    }
}

/// Mostly ordinary numbers, some D-, H- and synthetic ones.
fn any_personal_number(rng: &mut Rng) -> String {
    let kind = match rng.below(100) {
        0..70 => NumberKind::Fnr,
        70..85 => NumberKind::DNumber,
        85..93 => NumberKind::HNumber,
        _ => NumberKind::Synthetic,
    };
    personal_number(rng, kind)
}

/// An 11-digit id that is not a valid personal number.
fn invalid_id11(rng: &mut Rng) -> String {
    loop {
        let s: String = (0..11).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
        let digits: &[u8; 11] = s.as_bytes().try_into().unwrap_or(&[b'0'; 11]);
        if s.as_bytes()[0] != b'0' && tracescrub_processor::fnr::classify(digits).is_none() {
            return s;
        }
    }
}

/// A valid number with its last check digit off by one: must not be masked.
fn bad_checksum(rng: &mut Rng) -> String {
    let mut n = personal_number(rng, NumberKind::Fnr).into_bytes();
    n[10] = if n[10] == b'9' { b'0' } else { n[10] + 1 };
    String::from_utf8(n).unwrap_or_default()
}

/// A 12-digit id (may contain a valid number; the run is 12 long).
fn id12(rng: &mut Rng) -> String {
    format!("{}{}", rng.range(1, 9), personal_number(rng, NumberKind::Fnr))
}

/// An order-like id: mostly short, sometimes 11 or 12 digits.
fn order_id(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..5 => rng.range(10_000, 99_999_999).to_string(),
        5..8 => invalid_id11(rng),
        8 => bad_checksum(rng),
        _ => id12(rng),
    }
}

// ---------------------------------------------------------------------------
// Services, scopes and resources.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// express, pg, ioredis; stable semantic conventions.
    Node,
    /// Flask, psycopg, redis-py; old and stable names side by side.
    Python,
}

/// Instrumentation scopes; their names depend on the flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Http,
    Express,
    Router,
    Db,
    Redis,
    Kafka,
    App,
}

impl Scope {
    /// The variant's position in declaration order.
    fn index(self) -> usize {
        self as usize
    }

    fn instrumentation(self, flavor: Flavor) -> InstrumentationScope {
        let (name, version) = match (flavor, self) {
            (Flavor::Node, Scope::Http) => ("@opentelemetry/instrumentation-http", "0.223.0"),
            (Flavor::Node, Scope::Express) => ("@opentelemetry/instrumentation-express", "0.71.1"),
            (Flavor::Node, Scope::Router) => ("@opentelemetry/instrumentation-router", "0.67.0"),
            (Flavor::Node, Scope::Db) => ("@opentelemetry/instrumentation-pg", "0.76.0"),
            (Flavor::Node, Scope::Redis) => ("@opentelemetry/instrumentation-ioredis", "0.71.0"),
            (Flavor::Node, Scope::Kafka) => ("@opentelemetry/instrumentation-kafkajs", "0.24.0"),
            (Flavor::Python, Scope::Http | Scope::Express | Scope::Router) => {
                ("opentelemetry.instrumentation.flask", "0.66b1")
            }
            (Flavor::Python, Scope::Db) => ("opentelemetry.instrumentation.psycopg", "0.66b1"),
            (Flavor::Python, Scope::Redis) => ("opentelemetry.instrumentation.redis", "0.66b1"),
            (Flavor::Python, Scope::Kafka) => {
                ("opentelemetry.instrumentation.confluent_kafka", "0.66b1")
            }
            (_, Scope::App) => ("no.nav.tracescrub.app", ""),
        };
        InstrumentationScope {
            name: name.into(),
            version: version.into(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Service {
    flavor: Flavor,
    resource: Resource,
    /// `service.name`, for route and topic names.
    name: &'static str,
}

fn services(rng: &mut Rng) -> Vec<Service> {
    const NAMES: [(&str, Flavor); 8] = [
        ("person-api", Flavor::Node),
        ("consent-service", Flavor::Python),
        ("order-service", Flavor::Node),
        ("case-worker-api", Flavor::Python),
        ("notification-gateway", Flavor::Node),
        ("benefit-calculator", Flavor::Python),
        ("document-archive", Flavor::Node),
        ("payment-events", Flavor::Python),
    ];
    NAMES
        .iter()
        .map(|&(name, flavor)| Service { flavor, resource: resource(rng, name, flavor), name })
        .collect()
}

fn resource(rng: &mut Rng, name: &str, flavor: Flavor) -> Resource {
    let pod = format!("{name}-{}-{}", rng.hex(10), rng.hex(5));
    let mut attributes = vec![
        s("service.name", name),
        s("service.namespace", "team-person"),
        s("service.version", format!("2026.11.{}-{}", rng.range(1, 28), rng.hex(7))),
        s("service.instance.id", rng.uuid()),
        s("deployment.environment.name", "prod-gcp"),
        s("telemetry.sdk.name", "opentelemetry"),
    ];
    match flavor {
        Flavor::Node => attributes.extend([
            s("telemetry.sdk.language", "nodejs"),
            s("telemetry.sdk.version", "2.2.0"),
            i("process.pid", rng.range(1, 400) as i64),
            s("process.executable.name", "node"),
            s("process.runtime.name", "nodejs"),
            s("process.runtime.version", "20.20.2"),
        ]),
        Flavor::Python => attributes.extend([
            s("telemetry.sdk.language", "python"),
            s("telemetry.sdk.version", "1.45.1"),
            s("telemetry.auto.version", "0.66b1"),
            i("process.pid", rng.range(1, 400) as i64),
            s("process.runtime.name", "cpython"),
            s("process.runtime.version", "3.11.7"),
        ]),
    }
    attributes.extend([
        s("host.name", pod.clone()),
        s("host.arch", "amd64"),
        s("os.type", "linux"),
        s("container.id", rng.hex(64)),
        s("k8s.namespace.name", "team-person"),
        s("k8s.pod.name", pod),
        s("k8s.deployment.name", name),
        s("k8s.node.name", format!("gke-prod-gcp-pool-{}-{}", rng.hex(8), rng.hex(4))),
        s("cloud.provider", "gcp"),
        s("cloud.region", "europe-north1"),
    ]);
    Resource { attributes, dropped_attributes_count: 0, entity_refs: Vec::new() }
}

// ---------------------------------------------------------------------------
// Attribute helpers.

fn kv(key: impl Into<String>, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn i(key: impl Into<String>, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn string_array(key: &str, values: &[String]) -> KeyValue {
    let values = values
        .iter()
        .map(|v| AnyValue { value: Some(any_value::Value::StringValue(v.clone())) })
        .collect();
    kv(key, any_value::Value::ArrayValue(ArrayValue { values }))
}

/// Values a number could sit in, for [`Corpus::values`].
fn count_values(span: &Span) -> u64 {
    fn leaves(v: Option<&AnyValue>) -> u64 {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(|v| leaves(Some(v))).sum(),
            Some(any_value::Value::KvlistValue(l)) => {
                l.values.iter().map(|kv| leaves(kv.value.as_ref())).sum()
            }
            Some(_) => 1,
            None => 0,
        }
    }
    let attrs = |a: &[KeyValue]| -> u64 { a.iter().map(|kv| leaves(kv.value.as_ref())).sum() };
    let status = span.status.as_ref().is_some_and(|s| !s.message.is_empty());
    1 + attrs(&span.attributes)
        + span.events.iter().map(|e| 1 + attrs(&e.attributes)).sum::<u64>()
        + span.links.iter().map(|l| attrs(&l.attributes)).sum::<u64>()
        + u64::from(status)
}

// ---------------------------------------------------------------------------
// Traces.

/// One finished span waiting in its service's export queue.
#[derive(Debug, Clone)]
struct Pending {
    scope: Scope,
    span: Span,
    /// Valid personal numbers written into it.
    planted: u32,
    noise: bool,
}

/// What a generated trace is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Health,
    Scrape,
    Person,
    Orders,
    Products,
    Publish,
    Consume,
    Error,
    NearMiss,
}

/// Paths the default noise globs drop, as the captures sent them.
const HEALTH_PATHS: [&str; 12] = [
    "/isAlive",
    "/isalive",
    "/ISALIVE",
    "/isAlive?probe=kubelet",
    "/isReady",
    "/isready",
    "/actuator/health",
    "/actuator/health/liveness",
    "/actuator/health/readiness",
    "/internal/health",
    "/internal/healthz",
    "/internal/status",
];
/// Metrics scrapes, also noise; they touch no database.
const SCRAPE_PATHS: [&str; 4] = ["/metrics", "/Metrics", "/prometheus", "/actuator/prometheus"];
/// Paths that resemble noise but are not.
const NEAR_MISS_PATHS: [&str; 6] = [
    "/api/user-metrics",
    "/api/actuator-report",
    "/api/metricsfoo",
    "/actuator",
    "/isAliveness",
    "/api/status-page",
];

const USER_AGENTS: [&str; 5] = [
    "kube-probe/1.31",
    "Prometheus/3.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36",
    "okhttp/4.12.0",
    "Apache-HttpClient/5.4.1 (Java/21.0.7)",
];

/// A route template written `/api/person/{fnr}`, as the framework writes it.
fn render_route(route: &str, flavor: Flavor) -> String {
    let (open, close) = match flavor {
        Flavor::Node => (":", ""),
        Flavor::Python => ("<", ">"),
    };
    route.replace('{', open).replace('}', close)
}

/// A span under construction.
struct Draft {
    scope: Scope,
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    name: String,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    links: Vec<Link>,
    status: Option<Status>,
    /// Valid numbers in the name, attributes, links and status.
    planted: u32,
    /// Valid numbers in the events.
    planted_in_events: u32,
    start: u64,
}

/// An HTTP request to handle.
struct Request<'a> {
    method: &'a str,
    /// Without the query string.
    path: &'a str,
    query: Option<&'a str>,
    /// The route template (`/api/person/{fnr}`); `None`: the path itself.
    route: Option<&'a str>,
    status: i64,
    /// Valid numbers in the path and query.
    numbers_in_url: u32,
}

impl<'a> Request<'a> {
    fn get(path_and_query: &'a str) -> Request<'a> {
        let (path, query) =
            path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
        Request { method: "GET", path, query, route: None, status: 200, numbers_in_url: 0 }
    }
}

/// A trace being generated: spans are queued children first, as an SDK's
/// batch span processor sees them end.
struct Trace<'r, 's> {
    rng: &'r mut Rng,
    service: &'s Service,
    trace_id: [u8; 16],
    clock: u64,
    spans: Vec<Pending>,
    noise: bool,
}

impl<'r, 's> Trace<'r, 's> {
    fn new(rng: &'r mut Rng, service: &'s Service, clock: u64) -> Trace<'r, 's> {
        let trace_id = rng.bytes::<16>();
        Trace { rng, service, trace_id, clock, spans: Vec::new(), noise: false }
    }

    fn node(&self) -> bool {
        self.service.flavor == Flavor::Node
    }

    fn draft(
        &mut self,
        scope: Scope,
        parent: Option<&Draft>,
        kind: SpanKind,
        name: impl Into<String>,
    ) -> Draft {
        self.clock += self.rng.range(20_000, 400_000);
        Draft {
            scope,
            id: self.rng.bytes::<8>(),
            parent: parent.map(|p| p.id),
            kind,
            name: name.into(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: None,
            planted: 0,
            planted_in_events: 0,
            start: self.clock,
        }
    }

    /// Ends `d` and queues it.
    fn finish(&mut self, d: Draft) {
        self.clock += self.rng.range(10_000, 2_000_000);
        let status =
            d.status.unwrap_or(Status { message: String::new(), code: StatusCode::Unset as i32 });
        let span = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: d.id.to_vec(),
            trace_state: String::new(),
            parent_span_id: d.parent.map(|p| p.to_vec()).unwrap_or_default(),
            // Sampled, and the parent-is-remote bit known.
            flags: 0x100 | 1,
            name: d.name,
            kind: d.kind as i32,
            start_time_unix_nano: d.start,
            end_time_unix_nano: self.clock,
            attributes: d.attributes,
            dropped_attributes_count: 0,
            events: d.events,
            dropped_events_count: 0,
            links: d.links,
            dropped_links_count: 0,
            status: Some(status),
        };
        let planted = if self.noise { 0 } else { d.planted + d.planted_in_events };
        self.spans.push(Pending { scope: d.scope, span, planted, noise: self.noise });
    }

    fn generate(&mut self) {
        let kind = match self.rng.below(1000) {
            0..100 => Kind::Health,
            100..130 => Kind::Scrape,
            130..320 => Kind::Person,
            320..580 => Kind::Orders,
            580..760 => Kind::Products,
            760..840 => Kind::Publish,
            840..920 => Kind::Consume,
            920..965 => Kind::Error,
            _ => Kind::NearMiss,
        };
        match kind {
            Kind::Health => {
                self.noise = true;
                let path = *self.rng.pick(&HEALTH_PATHS);
                self.request(&Request::get(path), |t, parent| {
                    t.db_ping(parent);
                    t.redis_call(parent, "ping", None);
                });
            }
            Kind::Scrape => {
                self.noise = true;
                let path = *self.rng.pick(&SCRAPE_PATHS);
                self.request(&Request::get(path), |_, _| {});
            }
            Kind::Person => self.person(),
            Kind::Orders => self.orders(),
            Kind::Products => {
                let limit = self.rng.range(1, 100);
                let path = format!("/api/products?limit={limit}&page={}", self.rng.range(1, 20));
                self.request(&Request::get(&path), |t, parent| {
                    let statement = format!(
                        "SELECT id, name, price, stock FROM product ORDER BY name LIMIT {limit}"
                    );
                    t.sql(parent, "SELECT", statement, 0, None);
                });
            }
            Kind::Publish => self.publish(),
            Kind::Consume => self.consume(),
            Kind::Error => self.error(),
            Kind::NearMiss => {
                let path = *self.rng.pick(&NEAR_MISS_PATHS);
                self.request(&Request::get(path), |t, parent| {
                    let statement = "SELECT count(*) FROM audit_event WHERE created_at > now() - interval '1 hour'";
                    t.sql(parent, "SELECT", statement.into(), 0, None);
                });
            }
        }
    }

    fn request(&mut self, req: &Request<'_>, body: impl FnOnce(&mut Self, &Draft)) {
        self.request_with(req, body, |_, _| {});
    }

    /// The server span of `req` with the framework's internal spans (Node:
    /// two middleware spans, the router's handler and express's handler),
    /// the children `body` makes under the innermost handler, and
    /// `decorate` applied to the innermost handler (exceptions).
    fn request_with(
        &mut self,
        req: &Request<'_>,
        body: impl FnOnce(&mut Self, &Draft),
        decorate: impl FnOnce(&mut Self, &mut Draft),
    ) {
        let node = self.node();
        let route = render_route(req.route.unwrap_or(req.path), self.service.flavor);
        let mut root =
            self.draft(Scope::Http, None, SpanKind::Server, format!("{} {route}", req.method));
        root.planted = req.numbers_in_url;
        let ua = (*self.rng.pick(&USER_AGENTS)).to_owned();
        let peer_port = self.rng.range(32_768, 60_999) as i64;
        let peer = format!(
            "10.{}.{}.{}",
            self.rng.below(256),
            self.rng.below(256),
            self.rng.range(1, 254)
        );
        if node {
            root.attributes.extend([
                s("http.request.method", req.method),
                s("url.scheme", "http"),
                s("server.address", format!("{}.team-person.svc.cluster.local", self.service.name)),
                s("network.peer.address", peer.clone()),
                i("network.peer.port", peer_port),
                s("network.protocol.version", "1.1"),
                s("user_agent.original", ua),
                s("url.path", req.path),
            ]);
            if let Some(q) = req.query {
                root.attributes.push(s("url.query", q));
            }
            root.attributes.extend([
                s("client.address", peer),
                i("server.port", 8080),
                i("http.response.status_code", req.status),
                s("http.route", route.clone()),
            ]);
        } else {
            // http.target repeats the path and query: numbers there count twice.
            root.planted *= 2;
            let host = format!("{}:8080", self.service.name);
            let target =
                req.query.map_or_else(|| req.path.to_owned(), |q| format!("{}?{q}", req.path));
            root.attributes.extend([
                s("http.method", req.method),
                s("http.request.method", req.method),
                s("http.server_name", "0.0.0.0"),
                s("http.scheme", "http"),
                s("url.scheme", "http"),
                s("net.host.name", host.clone()),
                s("server.address", host.clone()),
                s("http.host", host),
                i("net.host.port", 8080),
                i("server.port", 8080),
                s("http.target", target),
                s("url.path", req.path),
            ]);
            if let Some(q) = req.query {
                root.attributes.push(s("url.query", q));
            }
            root.attributes.extend([
                s("net.peer.ip", peer.clone()),
                s("client.address", peer),
                i("net.peer.port", peer_port),
                i("client.port", peer_port),
                s("http.user_agent", ua.clone()),
                s("user_agent.original", ua),
                s("http.flavor", "1.1"),
                s("network.protocol.version", "1.1"),
                s("http.route", route.clone()),
                i("http.status_code", req.status),
                i("http.response.status_code", req.status),
            ]);
            if req.status >= 500 {
                root.attributes.push(s("error.type", req.status.to_string()));
            }
        }
        if node {
            for mw in ["query", "expressInit"] {
                let mut m = self.draft(
                    Scope::Router,
                    Some(&root),
                    SpanKind::Internal,
                    format!("middleware - {mw}"),
                );
                m.attributes.extend([
                    s("router.name", mw),
                    s("router.version", "2.3.0"),
                    s("router.type", "middleware"),
                    s("http.route", route.clone()),
                ]);
                self.finish(m);
            }
            let mut handler = self.draft(
                Scope::Router,
                Some(&root),
                SpanKind::Internal,
                format!("request handler - {route}"),
            );
            handler.attributes.extend([
                s("router.name", "<anonymous>"),
                s("router.version", "2.3.0"),
                s("router.type", "request_handler"),
                s("http.route", route.clone()),
            ]);
            let mut express =
                self.draft(Scope::Express, Some(&handler), SpanKind::Internal, "request handler");
            express.attributes.extend([
                s("http.route", route.clone()),
                s("express.name", route),
                s("express.type", "request_handler"),
            ]);
            body(self, &express);
            decorate(self, &mut express);
            // The router's handler records the same exception events.
            handler.events.extend(express.events.iter().cloned());
            handler.planted_in_events = express.planted_in_events;
            self.finish(express);
            self.finish(handler);
        } else {
            body(self, &root);
            decorate(self, &mut root);
        }
        if req.status >= 500 {
            let message = root.status.take().map(|s| s.message).unwrap_or_default();
            root.status = Some(Status { message, code: StatusCode::Error as i32 });
        }
        self.finish(root);
    }

    fn db_ping(&mut self, parent: &Draft) {
        if self.node() {
            let mut pool = self.draft(Scope::Db, Some(parent), SpanKind::Client, "pg-pool.connect");
            pool.attributes.push(i("db.postgresql.idle.timeout.millis", 10_000));
            pool.attributes.extend(pg_common());
            self.finish(pool);
        }
        self.sql(parent, "SELECT", "SELECT 1".into(), 0, None);
    }

    /// A SQL client span. `planted`: valid numbers in the statement;
    /// `bind`: bind values and how many valid numbers they hold.
    fn sql(
        &mut self,
        parent: &Draft,
        op: &str,
        statement: String,
        planted: u32,
        bind: Option<(Vec<String>, u32)>,
    ) {
        if self.node() {
            let mut span = self.draft(
                Scope::Db,
                Some(parent),
                SpanKind::Client,
                format!("pg.query:{op} tracescrub"),
            );
            span.attributes.extend(pg_common());
            span.attributes.push(s("db.query.text", statement));
            span.attributes.push(s("db.operation.name", op));
            span.planted = planted;
            if let Some((values, in_values)) = bind {
                span.attributes.push(string_array("db.postgresql.values", &values));
                span.planted += in_values;
            }
            self.finish(span);
        } else {
            let mut span = self.draft(Scope::Db, Some(parent), SpanKind::Client, op);
            let params = match &bind {
                Some((values, _)) => format!(
                    "({},)",
                    values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
                ),
                None => "None".into(),
            };
            span.attributes.extend([
                s("db.system", "postgresql"),
                s("db.system.name", "postgresql"),
                s("db.name", "tracescrub"),
                s("db.namespace", "tracescrub"),
                s("db.statement", statement.clone()),
                s("db.query.text", statement),
                s("db.user", "app"),
                s("net.peer.name", "10.12.0.5"),
                s("server.address", "10.12.0.5"),
                i("net.peer.port", 5432),
                i("server.port", 5432),
                s("db.statement.parameters", params),
            ]);
            // db.statement and db.query.text both carry the statement.
            span.planted = planted * 2 + bind.map_or(0, |(_, p)| p);
            self.finish(span);
        }
    }

    /// A Redis command on `key` (with how many valid numbers the key holds).
    /// redis-py replaces the arguments by `?`; ioredis keeps the first one.
    fn redis_call(&mut self, parent: &Draft, op: &str, key: Option<(&str, u32)>) {
        let upper = op.to_ascii_uppercase();
        if self.node() {
            let mut span = self.draft(Scope::Redis, Some(parent), SpanKind::Client, op);
            let text = match key {
                Some((k, _)) if op == "set" => format!("{op} {k} [3 other arguments]"),
                Some((k, _)) => format!("{op} {k}"),
                None => op.to_owned(),
            };
            span.attributes.extend([
                s("db.operation.name", op),
                s("db.system.name", "redis"),
                s("db.query.text", text),
                s("server.address", "10.12.0.7"),
                i("server.port", 6379),
            ]);
            span.planted = key.map_or(0, |(_, p)| p);
            self.finish(span);
        } else {
            let mut span = self.draft(Scope::Redis, Some(parent), SpanKind::Client, upper.clone());
            let (text, args) = match (op, key) {
                ("set", Some(_)) => (format!("{upper} ? ? ? ?"), 5),
                (_, Some(_)) => (format!("{upper} ?"), 2),
                _ => (upper, 1),
            };
            span.attributes.extend([
                s("db.statement", text.clone()),
                s("db.query.text", text),
                i("db.redis.args_length", args),
                s("db.system", "redis"),
                s("db.system.name", "redis"),
                i("db.redis.database_index", 0),
                s("net.peer.name", "10.12.0.7"),
                s("server.address", "10.12.0.7"),
                i("net.peer.port", 6379),
                i("server.port", 6379),
                s("net.transport", "ip_tcp"),
                s("network.transport", "tcp"),
            ]);
            self.finish(span);
        }
    }

    /// A person lookup: the number in the path, the query, a search in split
    /// form, or nowhere in the URL (looked up by an opaque id); then in a
    /// SQL literal or bind value, a Redis key, and sometimes an app span.
    fn person(&mut self) {
        let number = any_personal_number(self.rng);
        let (path, query, route, in_url) = match self.rng.below(10) {
            0..4 => (format!("/api/person/{number}"), None, "/api/person/{fnr}", 1),
            4..6 => ("/api/person".to_owned(), Some(format!("fnr={number}")), "/api/person", 1),
            6 => (
                "/api/search".to_owned(),
                Some(format!("q={}-{}&limit=10", &number[..6], &number[6..])),
                "/api/search",
                1,
            ),
            _ => (format!("/api/person/{}", self.rng.uuid()), None, "/api/person/{id}", 0),
        };
        let literal = self.rng.chance(0.5);
        let cache = self.rng.chance(0.4);
        let app_span = self.rng.chance(0.3);
        let req = Request {
            method: "GET",
            path: &path,
            query: query.as_deref(),
            route: Some(route),
            status: 200,
            numbers_in_url: in_url,
        };
        self.request(&req, |t, parent| {
            let key = format!("person:{number}");
            // redis-py replaces the key by `?`.
            let in_key = u32::from(t.node());
            if cache {
                t.redis_call(parent, "get", Some((&key, in_key)));
            }
            if literal {
                t.sql(
                    parent,
                    "SELECT",
                    format!("SELECT name, born, address FROM person WHERE fnr = '{number}'"),
                    1,
                    None,
                );
            } else {
                let statement = "SELECT name, born, address FROM person WHERE fnr = $1".to_owned();
                t.sql(parent, "SELECT", statement, 0, Some((vec![number.clone()], 1)));
            }
            if cache {
                t.redis_call(parent, "set", Some((&key, in_key)));
            }
            if app_span {
                let mut app = t.draft(
                    Scope::App,
                    Some(parent),
                    SpanKind::Internal,
                    format!("lookup {number}"),
                );
                let person = KeyValueList {
                    values: vec![s("fnr", number.clone()), s("name", "Kari Nordmann")],
                };
                app.attributes.extend([
                    s("enduser.id", number.clone()),
                    s(format!("app.cache.{number}"), "warm"),
                    kv("app.person", any_value::Value::KvlistValue(person)),
                ]);
                app.events.push(Event {
                    time_unix_nano: app.start + 1000,
                    name: format!("cache miss for {number}"),
                    attributes: vec![s("person.fnr", number.clone())],
                    dropped_attributes_count: 0,
                });
                // name, enduser.id, the key, the kvlist's fnr; event name and attribute.
                app.planted = 4;
                app.planted_in_events = 2;
                t.finish(app);
            }
        });
    }

    fn orders(&mut self) {
        let id = order_id(self.rng);
        if self.rng.chance(0.3) {
            let customer = self.rng.range(100_000, 9_999_999);
            let amount = format!("{}.{:02}", self.rng.range(1, 9999), self.rng.below(100));
            let req = Request { method: "POST", ..Request::get("/api/orders") };
            self.request(&req, |t, parent| {
                let statement = "INSERT INTO orders (id, customer_id, amount, currency, created_at) VALUES ($1, $2, $3, $4, now())";
                t.sql(parent, "INSERT", statement.into(), 0, Some((vec![id.clone(), customer.to_string(), amount, "NOK".into()], 0)));
                t.redis_call(parent, "del", Some((&format!("orders:customer:{customer}"), 0)));
            });
        } else {
            let path = format!("/api/orders/{id}");
            let second = self.rng.chance(0.5);
            let req = Request { route: Some("/api/orders/{id}"), ..Request::get(&path) };
            self.request(&req, |t, parent| {
                t.redis_call(parent, "get", Some((&format!("order:{id}"), 0)));
                let statement = format!(
                    "SELECT o.id, o.amount, o.status, c.name FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = {id}"
                );
                t.sql(parent, "SELECT", statement, 0, None);
                if second {
                    let statement = format!("SELECT line_no, product_id, qty FROM order_line WHERE order_id = {id} ORDER BY line_no");
                    t.sql(parent, "SELECT", statement, 0, None);
                }
            });
        }
    }

    /// The message key: half the time a personal number (as a string, an
    /// int or bytes), else an order id. With how many valid numbers it holds.
    fn message_key(&mut self) -> (KeyValue, u32) {
        const KEY: &str = "messaging.kafka.message.key";
        if self.rng.chance(0.5) {
            let number = any_personal_number(self.rng);
            match self.rng.below(3) {
                // An int drops a leading zero; the engine pads it back.
                0 => (i(KEY, number.parse().unwrap_or_default()), 1),
                1 => (kv(KEY, any_value::Value::BytesValue(number.into_bytes())), 1),
                _ => (s(KEY, number), 1),
            }
        } else {
            (s(KEY, order_id(self.rng)), 0)
        }
    }

    fn messaging(&mut self, span: &mut Draft, operation: &str, topic: &str) {
        span.attributes.extend([
            s("messaging.system", "kafka"),
            s("messaging.destination.name", topic),
            s("messaging.operation", if operation == "send" { "publish" } else { operation }),
            s("messaging.operation.name", operation),
            s("messaging.operation.type", operation),
            s("messaging.destination.partition.id", self.rng.below(12).to_string()),
            s("server.address", "kafka-broker-1.kafka.svc.cluster.local"),
            i("server.port", 9092),
        ]);
    }

    fn publish(&mut self) {
        let topic = format!("team-person.{}-events", self.service.name);
        let messages = self.rng.range(1, 4);
        let req = Request { method: "POST", ..Request::get("/api/events/publish") };
        self.request(&req, |t, parent| {
            for _ in 0..messages {
                let mut span = t.draft(
                    Scope::Kafka,
                    Some(parent),
                    SpanKind::Producer,
                    format!("send {topic}"),
                );
                t.messaging(&mut span, "send", &topic);
                let (key, planted) = t.message_key();
                span.attributes.push(key);
                span.planted = planted;
                t.finish(span);
            }
        });
    }

    /// A consumer span (the root of its own trace) linked to its producer,
    /// with the insert it makes.
    fn consume(&mut self) {
        let topic = format!("team-person.{}-events", self.service.name);
        let mut span =
            self.draft(Scope::Kafka, None, SpanKind::Consumer, format!("process {topic}"));
        self.messaging(&mut span, "process", &topic);
        let (key, planted) = self.message_key();
        let group = format!("{}-consumer", self.service.name);
        span.attributes.extend([
            key,
            s("messaging.consumer.group.name", group.clone()),
            s("messaging.kafka.consumer.group", group),
            i("messaging.kafka.message.offset", self.rng.range(1, 90_000_000) as i64),
        ]);
        let (link_key, link_planted) = self.message_key();
        span.links.push(Link {
            trace_id: self.rng.bytes::<16>().to_vec(),
            span_id: self.rng.bytes::<8>().to_vec(),
            trace_state: String::new(),
            attributes: vec![link_key, s("app.link", "producer")],
            dropped_attributes_count: 0,
            flags: 0x100 | 1,
        });
        span.planted = planted + link_planted;
        let values = vec![
            topic.clone(),
            self.rng.below(12).to_string(),
            self.rng.range(1, 90_000_000).to_string(),
        ];
        let statement = "INSERT INTO event_log (topic, partition, offset, received_at) VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING";
        self.sql(&span, "INSERT", statement.into(), 0, Some((values, 0)));
        self.finish(span);
    }

    /// A handler that raises an exception whose message holds the subject,
    /// a personal number most of the time.
    fn error(&mut self) {
        let with_number = self.rng.chance(0.7);
        let subject = if with_number { any_personal_number(self.rng) } else { self.rng.uuid() };
        let planted = u32::from(with_number);
        let node = self.node();
        let message = format!("no consent registered for person {subject}");
        let path = format!("/api/person/{subject}/consent");
        let req = Request {
            route: Some("/api/person/{fnr}/consent"),
            status: 500,
            numbers_in_url: planted,
            ..Request::get(&path)
        };
        self.request_with(
            &req,
            |t, parent| {
                let statement = "SELECT granted_at FROM consent WHERE person_id = $1".to_owned();
                t.sql(parent, "SELECT", statement, 0, Some((vec![subject.clone()], planted)));
            },
            |_, d| {
                let (ty, stack) = if node {
                    ("Error", node_stack(&message))
                } else {
                    ("ValueError", python_stack(&message))
                };
                d.events.push(Event {
                    time_unix_nano: d.start + 5000,
                    name: "exception".into(),
                    attributes: vec![
                        s("exception.type", ty),
                        s("exception.message", message.clone()),
                        s("exception.stacktrace", stack),
                        s("exception.escaped", "False"),
                    ],
                    dropped_attributes_count: 0,
                });
                // exception.message and exception.stacktrace.
                d.planted_in_events += 2 * planted;
                let status = if node { message.clone() } else { format!("ValueError: {message}") };
                d.status = Some(Status { message: status, code: StatusCode::Error as i32 });
                d.planted += planted;
            },
        );
    }
}

fn pg_common() -> [KeyValue; 4] {
    [
        s("db.system.name", "postgresql"),
        s("db.namespace", "tracescrub"),
        s("server.address", "10.12.0.5"),
        i("server.port", 5432),
    ]
}

fn node_stack(message: &str) -> String {
    let mut out = format!("Error: {message}\n");
    for (f, l) in [
        ("/app/src/routes/consent.js", 99),
        ("Layer.handleRequest (/app/node_modules/router/lib/layer.js", 152),
        ("next (/app/node_modules/router/lib/route.js", 157),
        ("Route.dispatch (/app/node_modules/router/lib/route.js", 117),
        ("handle (/app/node_modules/router/index.js", 435),
        ("Layer.handleRequest (/app/node_modules/router/lib/layer.js", 152),
        ("/app/node_modules/router/index.js", 295),
        ("processParams (/app/node_modules/router/index.js", 582),
        ("next (/app/node_modules/router/index.js", 291),
        ("expressInit (/app/node_modules/express/lib/middleware/init.js", 40),
        ("Layer.handleRequest (/app/node_modules/router/lib/layer.js", 152),
        ("trimPrefix (/app/node_modules/router/index.js", 342),
    ] {
        let open = if f.contains('(') { ")" } else { "" };
        out.push_str(&format!("    at {f}:{l}:{}{open}\n", l % 37 + 5));
    }
    out
}

fn python_stack(message: &str) -> String {
    let mut out = String::from("Traceback (most recent call last):\n");
    for (f, l, func, code) in [
        (
            "/app/.venv/lib/python3.11/site-packages/opentelemetry/trace/__init__.py",
            602,
            "use_span",
            "yield span",
        ),
        (
            "/app/.venv/lib/python3.11/site-packages/flask/app.py",
            1511,
            "wsgi_app",
            "response = self.full_dispatch_request()",
        ),
        (
            "/app/.venv/lib/python3.11/site-packages/flask/app.py",
            919,
            "full_dispatch_request",
            "rv = self.handle_user_exception(e)",
        ),
        (
            "/app/.venv/lib/python3.11/site-packages/flask/app.py",
            917,
            "full_dispatch_request",
            "rv = self.dispatch_request()",
        ),
        (
            "/app/.venv/lib/python3.11/site-packages/flask/app.py",
            902,
            "dispatch_request",
            "return self.ensure_sync(self.view_functions[rule.endpoint])(**view_args)",
        ),
        (
            "/app/consent_service/views.py",
            183,
            "consent",
            "raise ValueError(f\"no consent registered for person {fnr}\")",
        ),
    ] {
        out.push_str(&format!(
            "  File \"{f}\", line {l}, in {func}\n    {code}\n    {}\n",
            "^".repeat(code.len().min(60))
        ));
    }
    out.push_str(&format!("ValueError: {message}\n"));
    out
}

// ---------------------------------------------------------------------------
// Batching.

/// Batches being filled: each is a list of (service, spans) exports.
struct Collector {
    batch_spans: usize,
    batches: Vec<Vec<(usize, Vec<Pending>)>>,
    current: Vec<(usize, Vec<Pending>)>,
    count: usize,
}

impl Collector {
    fn new(batch_spans: usize) -> Collector {
        Collector { batch_spans, batches: Vec::new(), current: Vec::new(), count: 0 }
    }

    /// Adds one export of `service`, grouped by scope as an SDK sends it,
    /// splitting it where a batch fills up.
    fn add_export(&mut self, service: usize, mut spans: Vec<Pending>) {
        // Stable: spans keep their end order within a scope.
        spans.sort_by_key(|p| p.scope.index());
        let mut part = Vec::new();
        for p in spans {
            part.push(p);
            self.count += 1;
            if self.count == self.batch_spans {
                self.current.push((service, std::mem::take(&mut part)));
                self.batches.push(std::mem::take(&mut self.current));
                self.count = 0;
            }
        }
        if !part.is_empty() {
            self.current.push((service, part));
        }
    }
}

/// Encodes one batch, adding its figures to `corpus`.
fn encode(services: &[Service], batch: &[(usize, Vec<Pending>)], corpus: &mut Corpus) -> Vec<u8> {
    let mut request = ExportTraceServiceRequest::default();
    for (service, spans) in batch {
        let svc = &services[*service];
        let mut scope_spans: Vec<ScopeSpans> = Vec::new();
        let mut last_scope = None;
        for p in spans {
            corpus.spans += 1;
            corpus.values += count_values(&p.span);
            corpus.planted_numbers += u64::from(p.planted);
            corpus.noise_spans += u64::from(p.noise);
            if last_scope != Some(p.scope) {
                scope_spans.push(ScopeSpans {
                    scope: Some(p.scope.instrumentation(svc.flavor)),
                    spans: Vec::new(),
                    schema_url: String::new(),
                });
                last_scope = Some(p.scope);
            }
            if let Some(ss) = scope_spans.last_mut() {
                ss.spans.push(p.span.clone());
            }
        }
        request.resource_spans.push(ResourceSpans {
            resource: Some(svc.resource.clone()),
            scope_spans,
            schema_url: "https://opentelemetry.io/schemas/1.37.0".into(),
        });
    }
    request.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use tracescrub_processor::Processor;
    use tracescrub_processor::fnr::{Detector, classify};

    use super::*;

    fn small(seed: u64, batch_spans: usize) -> CorpusOptions {
        CorpusOptions { seed, min_spans: 20_000, batch_spans }
    }

    fn decode(batch: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(batch).unwrap()
    }

    fn span_count(batch: &[u8]) -> usize {
        decode(batch)
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }

    /// Scenario: the same options twice, then another seed.
    /// Guarantees: the same seed gives the same bytes; another seed does not.
    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let a = generate(&small(7, 1024)).unwrap();
        let b = generate(&small(7, 1024)).unwrap();
        assert_eq!(a, b);
        let c = generate(&small(8, 1024)).unwrap();
        assert_ne!(a.batches, c.batches);
    }

    /// Scenario: the smallest, default and largest batch sizes, and sizes
    /// out of range.
    /// Guarantees: every batch holds exactly the asked number of spans,
    /// the corpus at least `min_spans`; out-of-range sizes are refused.
    #[test]
    fn batch_sizes_are_respected() {
        for n in [MIN_BATCH_SPANS, DEFAULT_BATCH_SPANS, MAX_BATCH_SPANS] {
            let corpus =
                generate(&CorpusOptions { seed: 1, min_spans: 10_000, batch_spans: n }).unwrap();
            assert!(corpus.spans >= 10_000);
            assert_eq!(corpus.spans, (corpus.batches.len() * n) as u64);
            for batch in &corpus.batches {
                assert_eq!(span_count(batch), n);
            }
            assert_eq!(corpus.bytes, corpus.batches.iter().map(|b| b.len() as u64).sum::<u64>());
        }
        for n in [0, MIN_BATCH_SPANS - 1, MAX_BATCH_SPANS + 1] {
            assert!(
                generate(&CorpusOptions { seed: 1, min_spans: 10_000, batch_spans: n }).is_err()
            );
        }
        let default = CorpusOptions::default();
        assert_eq!(
            (default.min_spans, default.batch_spans),
            (DEFAULT_MIN_SPANS, DEFAULT_BATCH_SPANS)
        );
    }

    /// Scenario: the engine with the default config over corpora of three
    /// seeds.
    /// Guarantees: 10-20 % of the spans are dropped as noise; 1-5 % of the
    /// values hold a personal number, and the engine masks exactly the valid
    /// numbers planted (so the look-alikes are left alone), with every
    /// detector and the main field kinds represented.
    #[test]
    fn noise_and_personal_number_shares_measured_by_the_engine() {
        let processor = Processor::new("{}").unwrap();
        for seed in [DEFAULT_SEED, 1, 2] {
            let corpus = generate(&small(seed, DEFAULT_BATCH_SPANS)).unwrap();
            let (mut spans_in, mut dropped, mut masked) = (0, 0, 0);
            let mut detectors = BTreeMap::new();
            let mut fields = BTreeMap::new();
            for batch in &corpus.batches {
                let stats = processor.process(batch).unwrap().stats;
                spans_in += stats.spans_in;
                dropped += stats.spans_dropped;
                masked += stats.values_masked;
                for c in stats.masked_by_detector {
                    *detectors.entry(c.name).or_insert(0) += c.value;
                }
                for c in stats.masked_by_field {
                    *fields.entry(c.name).or_insert(0) += c.value;
                }
            }
            assert_eq!(spans_in, corpus.spans);
            let noise = dropped as f64 / spans_in as f64;
            assert!((0.10..=0.20).contains(&noise), "seed {seed}: noise share {noise}");
            let share = masked as f64 / corpus.values as f64;
            assert!((0.01..=0.05).contains(&share), "seed {seed}: personal number share {share}");
            assert_eq!(masked, corpus.planted_numbers, "seed {seed}: masked vs planted");
            for d in [Detector::Fnr, Detector::DNumber, Detector::HNumber, Detector::Synthetic] {
                assert!(
                    detectors.get(d.name()).is_some_and(|&n| n > 0),
                    "seed {seed}: no {}",
                    d.name()
                );
            }
            for f in [
                "span-name",
                "span-attribute",
                "event-name",
                "event-attribute",
                "link-attribute",
                "status-message",
                "attribute-key",
            ] {
                assert!(
                    fields.get(f).is_some_and(|&n| n > 0),
                    "seed {seed}: nothing masked in {f}"
                );
            }
        }
    }

    /// Scenario: the spans of a corpus, by kind and shape.
    /// Guarantees: every span kind occurs, servers and clients dominate as
    /// in the captures, and the shapes the captures show are there: Kafka
    /// keys as string, int and bytes, exception events with stack traces,
    /// and both Node and Python resources.
    #[test]
    fn corpus_has_the_shape_of_the_captures() {
        let corpus = generate(&small(DEFAULT_SEED, DEFAULT_BATCH_SPANS)).unwrap();
        let mut kinds = BTreeMap::new();
        let (mut key_types, mut stacks, mut languages) = (BTreeMap::new(), 0, BTreeMap::new());
        for batch in &corpus.batches {
            let request = decode(batch);
            for rs in &request.resource_spans {
                for kv in &rs.resource.as_ref().unwrap().attributes {
                    if kv.key == "telemetry.sdk.language" {
                        *languages.entry(format!("{:?}", kv.value)).or_insert(0) += 1;
                    }
                }
                for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                    *kinds.entry(span.kind).or_insert(0u64) += 1;
                    for kv in &span.attributes {
                        if kv.key == "messaging.kafka.message.key" {
                            let ty = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(any_value::Value::StringValue(_)) => "string",
                                Some(any_value::Value::IntValue(_)) => "int",
                                Some(any_value::Value::BytesValue(_)) => "bytes",
                                _ => "other",
                            };
                            *key_types.entry(ty).or_insert(0) += 1;
                        }
                    }
                    stacks += span
                        .events
                        .iter()
                        .flat_map(|e| &e.attributes)
                        .filter(|kv| kv.key == "exception.stacktrace")
                        .count();
                }
            }
        }
        for kind in [
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ] {
            assert!(kinds.get(&(kind as i32)).is_some_and(|&n| n > 0), "no {kind:?} spans");
        }
        let client = kinds[&(SpanKind::Client as i32)] as f64 / corpus.spans as f64;
        assert!((0.2..0.6).contains(&client), "client share {client}");
        assert_eq!(key_types.keys().copied().collect::<Vec<_>>(), ["bytes", "int", "string"]);
        assert!(stacks > 0);
        assert_eq!(languages.len(), 2, "{languages:?}");
        let per_span = corpus.bytes as f64 / corpus.spans as f64;
        assert!((250.0..700.0).contains(&per_span), "{per_span} bytes per span");
    }

    /// Scenario: the personal number generator and the look-alikes.
    /// Guarantees: generated numbers pass the engine's validator as the
    /// kind asked for; the look-alikes never do.
    #[test]
    fn numbers_follow_the_mod11_rules() {
        let mut rng = Rng::new(3);
        for (kind, detector) in [
            (NumberKind::Fnr, Detector::Fnr),
            (NumberKind::DNumber, Detector::DNumber),
            (NumberKind::HNumber, Detector::HNumber),
            (NumberKind::Synthetic, Detector::Synthetic),
        ] {
            for _ in 0..500 {
                let n = personal_number(&mut rng, kind);
                assert_eq!(classify(n.as_bytes().try_into().unwrap()), Some(detector), "{n}");
            }
        }
        for _ in 0..500 {
            let n = invalid_id11(&mut rng);
            assert_eq!(classify(n.as_bytes().try_into().unwrap()), None, "{n}");
            let n = bad_checksum(&mut rng);
            assert_eq!(classify(n.as_bytes().try_into().unwrap()), None, "{n}");
            assert_eq!(id12(&mut rng).len(), 12);
        }
        // The fixture numbers of the captures, rebuilt from their first nine digits.
        for n in ["17053650260", "03093750062", "64083850068", "11463550036", "28848510043"] {
            let d: Vec<u8> = n.bytes().map(|b| b - b'0').collect();
            assert_eq!(check_digit(&d[..9], &K1), Some(d[9]), "{n}");
            assert_eq!(check_digit(&d[..10], &K2), Some(d[10]), "{n}");
        }
    }

    /// Scenario: re-batching a corpus to another size.
    /// Guarantees: every span survives in order, batches hold the asked
    /// size (the last one the rest), and size 0 is refused.
    #[test]
    fn rebatch_keeps_every_span() {
        let corpus =
            generate(&CorpusOptions { seed: 5, min_spans: 4_000, batch_spans: 1000 }).unwrap();
        let ids = |batches: &[Vec<u8>]| -> Vec<Vec<u8>> {
            batches
                .iter()
                .flat_map(|b| decode(b).resource_spans)
                .flat_map(|rs| rs.scope_spans)
                .flat_map(|ss| ss.spans)
                .map(|s| s.span_id)
                .collect()
        };
        let rebatched = rebatch(&corpus.batches, 700).unwrap();
        assert_eq!(ids(&rebatched), ids(&corpus.batches));
        let sizes: Vec<usize> = rebatched.iter().map(|b| span_count(b)).collect();
        assert!(sizes[..sizes.len() - 1].iter().all(|&n| n == 700), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>() as u64, corpus.spans);
        assert!(rebatch(&corpus.batches, 0).is_err());
    }
}
