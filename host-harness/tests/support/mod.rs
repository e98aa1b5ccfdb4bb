//! Builders shared by the integration tests (`mod support;` in each): OTLP
//! values, key-values, spans and requests, valid personal numbers, and paths
//! into the repository.
//!
//! Every span built here has a 16-byte trace id and an 8-byte span id (and
//! an 8-byte parent or none), the only lengths the engine accepts.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// The trace every [`span`] belongs to.
pub const TRACE_ID: [u8; 16] = [0xab; 16];

/// A path under the repository's root.
pub fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// A valid Norwegian personal number (fødselsnummer) from its first nine
/// digits: the two mod-11 check digits appended.
pub fn fnr(first_nine: &str) -> String {
    let mut digits: Vec<u32> = first_nine.chars().map(|c| c.to_digit(10).expect("digit")).collect();
    assert_eq!(digits.len(), 9);
    for weights in [&[3, 7, 6, 1, 8, 9, 4, 5, 2][..], &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2][..]] {
        let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => panic!("{first_nine} has no valid check digit"),
            k => k,
        };
        digits.push(check);
    }
    digits.iter().map(|d| char::from_digit(*d, 10).expect("digit")).collect()
}

pub fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

pub fn string(s: &str) -> AnyValue {
    any(Value::StringValue(s.to_owned()))
}

/// What [`kv`] takes as a value: text as a string value, or any value.
pub trait IntoAnyValue {
    fn into_any_value(self) -> AnyValue;
}

impl IntoAnyValue for AnyValue {
    fn into_any_value(self) -> AnyValue {
        self
    }
}

impl IntoAnyValue for &str {
    fn into_any_value(self) -> AnyValue {
        string(self)
    }
}

impl IntoAnyValue for &String {
    fn into_any_value(self) -> AnyValue {
        string(self)
    }
}

/// `kv("url.path", "/isAlive")` or `kv("db.rows", any(Value::IntValue(1)))`.
pub fn kv(key: &str, value: impl IntoAnyValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(value.into_any_value()), ..Default::default() }
}

/// A server span of [`TRACE_ID`] with span id `[id; 8]`, under `[parent; 8]`
/// if given, lasting 100 ms.
pub fn span(id: u8, parent: Option<u8>, name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes,
        ..Default::default()
    }
}

/// One resource with `resource_attributes` and one scope (named by `scope`,
/// if given) holding `spans`.
pub fn request(
    resource_attributes: Vec<KeyValue>,
    scope: Option<InstrumentationScope>,
    spans: Vec<Span>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource_attributes, ..Default::default() }),
            scope_spans: vec![ScopeSpans { scope, spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// The scope the Java agent's JDBC instrumentation reports.
pub fn jdbc_scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "io.opentelemetry.jdbc".to_owned(),
        version: "2.9.0".to_owned(),
        ..Default::default()
    }
}

/// [`request`] in [`jdbc_scope`], encoded.
pub fn batch(resource_attributes: Vec<KeyValue>, spans: Vec<Span>) -> Vec<u8> {
    request(resource_attributes, Some(jdbc_scope()), spans).encode_to_vec()
}

/// [`request`] from the service `person-api`, in a scope with no name.
pub fn batch_of(spans: Vec<Span>) -> ExportTraceServiceRequest {
    request(vec![kv("service.name", "person-api")], None, spans)
}
