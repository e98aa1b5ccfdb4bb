//! Table-driven tests of the walker, with batches built from the
//! `opentelemetry-proto` prost types.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::{Error, Processor};

/// A valid fødselsnummer (01.01.1990, individual 121; check digits 3 and 8 by the mod-11 rules).
pub(super) const FNR: &str = "01019012138";

pub(super) fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

pub(super) fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn span(trace: u8, id: u8, parent: u8, name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: name.into(),
        kind: SpanKind::Internal as i32,
        attributes: attrs,
        ..Default::default()
    }
}

fn batch(scopes: Vec<Vec<Span>>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("svc"))],
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|spans| ScopeSpans { spans, ..Default::default() })
                .collect(),
            schema_url: String::new(),
        }],
    }
}

fn run(
    config: &str,
    req: &ExportTraceServiceRequest,
) -> (ExportTraceServiceRequest, crate::Stats, Vec<u8>) {
    let p = Processor::new(config).unwrap();
    let out = p.process(&req.encode_to_vec()).unwrap();
    let decoded =
        ExportTraceServiceRequest::decode(out.batch.as_slice()).expect("output must decode");
    (decoded, out.stats, out.batch)
}

fn span_names(req: &ExportTraceServiceRequest) -> Vec<String> {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn count(list: &[crate::Count], name: &str) -> u64 {
    list.iter().find(|c| c.name == name).map_or(0, |c| c.value)
}

/// Scenario: each default path source carries a health-check path.
/// Guarantees: the span is dropped, whichever source names the path.
#[test]
fn noise_is_found_in_every_path_source() {
    let cases: Vec<(&str, Span)> = vec![
        ("url.path", span(1, 1, 0, "a", vec![kv("url.path", s("/isAlive"))])),
        (
            "http.target with query",
            span(1, 1, 0, "a", vec![kv("http.target", s("/internal/health?verbose=1"))]),
        ),
        ("http.route", span(1, 1, 0, "a", vec![kv("http.route", s("/actuator/{endpoint}"))])),
        ("url.full", span(1, 1, 0, "a", vec![kv("url.full", s("http://svc:8080/metrics?x=1#f"))])),
        ("http.url", span(1, 1, 0, "a", vec![kv("http.url", s("https://svc/app/prometheus"))])),
        ("case-insensitive", span(1, 1, 0, "a", vec![kv("url.path", s("/ISREADY"))])),
        (
            "server span name",
            Span { kind: SpanKind::Server as i32, ..span(1, 1, 0, "GET /internal/status", vec![]) },
        ),
    ];
    for (what, sp) in cases {
        let (out, stats, _) = run("{}", &batch(vec![vec![sp, span(2, 2, 0, "keep", vec![])]]));
        assert_eq!(span_names(&out), ["keep"], "{what}");
        assert_eq!(stats.spans_dropped, 1, "{what}");
    }
}

/// Scenario: spans with several path sources: a plain path first, then the
/// same path again (in a URL, in the server span's name), then a health
/// check in a later source; and a span whose every source repeats one
/// plain path.
/// Guarantees: a source repeating the path just checked is skipped, but one
/// with another path is still matched: the first span is dropped, the
/// second kept.
#[test]
fn every_distinct_path_source_is_checked() {
    let noisy = Span {
        kind: SpanKind::Server as i32,
        ..span(
            1,
            1,
            0,
            "GET /api/orders",
            vec![
                kv("url.path", s("/api/orders")),
                kv("url.full", s("https://svc/api/orders?x=1")),
                kv("http.route", s("/api/orders")),
                kv("http.target", s("/internal/health")),
            ],
        )
    };
    let plain = Span {
        kind: SpanKind::Server as i32,
        ..span(
            2,
            2,
            0,
            "GET /api/orders",
            vec![kv("url.path", s("/api/orders")), kv("url.full", s("http://h/api/orders"))],
        )
    };
    let (out, stats, _) = run("{}", &batch(vec![vec![noisy, plain]]));
    assert_eq!(span_names(&out), ["GET /api/orders"]);
    assert_eq!(stats.spans_dropped, 1);
}

/// Scenario: paths that the platform's old `.*metrics` regex over-matched.
/// Guarantees: they are kept, as is a client span whose name looks like a path.
#[test]
fn near_misses_are_not_noise() {
    let cases: Vec<Span> = vec![
        span(1, 1, 0, "a", vec![kv("url.path", s("/api/user-metrics"))]),
        span(1, 2, 0, "b", vec![kv("url.path", s("/api/actuator-report"))]),
        span(1, 3, 0, "c", vec![kv("http.target", s("/api/orders?next=/metrics"))]),
        Span { kind: SpanKind::Client as i32, ..span(1, 4, 0, "GET /metrics", vec![]) },
        span(1, 5, 0, "e", vec![kv("url.path", Value::IntValue(7))]),
    ];
    let req = batch(vec![cases]);
    let (out, stats, bytes) = run("{}", &req);
    assert_eq!(span_names(&out).len(), 5);
    assert_eq!(stats.spans_dropped, 0);
    assert_eq!(bytes, req.encode_to_vec());
}

/// Scenario: a noise glob (platform extra glob and a version-2 rule) written
/// with a personal number in it drops its span.
/// Guarantees: the rule is named in the stats with the number starred, as
/// every host's metrics and audits print it; the span still goes.
#[test]
fn rule_names_never_echo_a_number_written_in_a_glob() {
    let req = batch(vec![vec![
        span(1, 1, 0, "GET /p", vec![kv("url.path", s(&format!("/person/{FNR}/ping")))]),
        span(2, 1, 0, &format!("job {FNR}"), vec![]),
    ]]);
    let cfg = format!(
        r#"{{"version": 2, "noise": {{"extra_globs": ["*/{FNR}/ping"], "rules": [{{"span_name": "job {FNR}"}}], "presets": []}}}}"#
    );
    let (out, stats, _) = run(&cfg, &req);
    assert_eq!(span_names(&out).len(), 0);
    let names: Vec<&str> = stats.dropped_by_rule.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.contains(FNR) && n.contains("***********")), "{names:?}");
}

/// Scenario: a health check with a child in another scope, a grandchild, and
/// a span of another trace that reuses the child's span id.
/// Guarantees: the whole subtree goes, counted apart; the other trace stays.
#[test]
fn noise_drops_descendants_across_scopes_within_the_trace() {
    let root = span(1, 1, 0, "GET /isAlive", vec![kv("url.path", s("/isAlive"))]);
    let child = span(1, 2, 1, "db ping", vec![]);
    let grandchild = span(1, 3, 2, "socket", vec![]);
    let other_trace = span(9, 2, 1, "other trace, same ids", vec![]);
    let unrelated = span(1, 4, 0, "sibling root", vec![]);
    let req = batch(vec![vec![grandchild, root, unrelated], vec![child, other_trace]]);
    let (out, stats, _) = run("{}", &req);
    assert_eq!(span_names(&out), ["sibling root", "other trace, same ids"]);
    assert_eq!((stats.spans_in, stats.spans_out, stats.spans_dropped), (5, 2, 3));
    assert_eq!(stats.dropped_descendants, 2);
    assert_eq!(count(&stats.dropped_by_rule, "*/isAlive"), 1);

    let (out, stats, _) = run(r#"{"noise": {"drop_descendants": false}}"#, &req);
    assert_eq!(span_names(&out).len(), 4);
    assert_eq!(stats.dropped_descendants, 0);
}

/// Scenario: spans whose parent chains loop.
/// Guarantees: the walk terminates and keeps them.
#[test]
fn parent_cycles_terminate() {
    let a = span(1, 1, 2, "a", vec![]);
    let b = span(1, 2, 1, "b", vec![]);
    let noisy = span(1, 3, 0, "n", vec![kv("url.path", s("/metrics"))]);
    let selfish = span(1, 4, 4, "self", vec![]);
    let (out, _, _) = run("{}", &batch(vec![vec![a, b, noisy, selfish]]));
    assert_eq!(span_names(&out), ["a", "b", "self"]);
}

/// Scenario: every span of a scope, then of a resource, is noise.
/// Guarantees: emptied ScopeSpans and ResourceSpans go; untouched ones stay.
#[test]
fn emptied_containers_are_removed() {
    let noisy = || span(1, 1, 0, "n", vec![kv("url.path", s("/metrics"))]);
    let mut req = batch(vec![vec![noisy()], vec![span(2, 2, 0, "keep", vec![])]]);
    req.resource_spans.push(batch(vec![vec![noisy()]]).resource_spans.remove(0));
    let (out, _, _) = run("{}", &req);
    assert_eq!(out.resource_spans.len(), 1);
    assert_eq!(out.resource_spans[0].scope_spans.len(), 1);
    assert_eq!(span_names(&out), ["keep"]);

    let (out, stats, _) = run("{}", &batch(vec![vec![noisy()]]));
    assert!(out.resource_spans.is_empty());
    assert_eq!(stats.spans_out, 0);
}

/// Scenario: dropped spans side by side (a noisy span between its
/// children, two noisy roots), between kept spans; a scope whose spans all
/// drop; kept scopes around it.
/// Guarantees: each run of bytes that goes is one deletion in the plan
/// (the emitter copies once per deletion), and the output is what deleting
/// the spans one by one gives.
#[test]
fn adjacent_drops_are_one_deletion() {
    let noisy = |id| span(1, id, 0, "n", vec![kv("url.path", s("/metrics"))]);
    let child = |id, parent| span(1, id, parent, "c", vec![]);
    let keep = |id| span(2, id, 0, "keep", vec![]);
    let req = batch(vec![
        vec![keep(1), child(5, 3), noisy(3), noisy(4), child(9, 4), keep(2)],
        vec![noisy(6), child(7, 6)],
        vec![keep(8)],
    ]);
    let buf = req.encode_to_vec();
    let p = Processor::new("{}").unwrap();
    let (plan, stats) = super::plan(&p.compiled, &buf, None).unwrap();
    let deletions = plan.edits.iter().filter(|e| matches!(e.op, super::Op::Delete)).count();
    assert_eq!(deletions, 2, "one per run: the four spans of the first scope, the second scope");
    assert_eq!((stats.spans_in, stats.spans_dropped), (9, 6));
    let (out, _, _) = run("{}", &req);
    assert_eq!(span_names(&out), ["keep", "keep", "keep"]);
    assert_eq!(out.resource_spans[0].scope_spans.len(), 2);
}

/// Scenario: a number planted in each field kind of the data model.
/// Guarantees: each is masked, counted under its field kind, and the output
/// decodes.
#[test]
fn masking_reaches_every_field_kind() {
    let fnr_int: i64 = FNR.parse().unwrap();
    let mut sp = span(
        1,
        1,
        0,
        &format!("lookup {FNR}"),
        vec![
            kv("db.statement", s(&format!("SELECT * FROM p WHERE fnr='{FNR}'"))),
            kv("messaging.kafka.message.key", Value::IntValue(fnr_int)),
            kv("raw", Value::BytesValue(FNR.as_bytes().to_vec())),
            kv("dbl", Value::DoubleValue(fnr_int as f64)),
            kv(
                "list",
                Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s(FNR)) }] }),
            ),
            kv(
                "map",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv(
                        "deep",
                        Value::KvlistValue(KeyValueList { values: vec![kv("x", s(FNR))] }),
                    )],
                }),
            ),
            kv(&format!("person.{FNR}"), Value::BoolValue(true)),
        ],
    );
    sp.trace_state = format!("vendor=p{FNR}");
    sp.events = vec![Event {
        name: format!("e {FNR}"),
        attributes: vec![kv("exception.message", s(&format!("no person {FNR}")))],
        ..Default::default()
    }];
    sp.links = vec![Link {
        trace_id: vec![3; 16],
        span_id: vec![3; 8],
        attributes: vec![kv("k", s(FNR))],
        ..Default::default()
    }];
    sp.status = Some(Status { message: format!("failed for {FNR}"), code: 2 });
    let mut req = batch(vec![vec![sp]]);
    req.resource_spans[0].resource.as_mut().unwrap().attributes.push(kv("host.user", s(FNR)));
    req.resource_spans[0].scope_spans[0].scope = Some(InstrumentationScope {
        name: format!("lib-{FNR}"),
        attributes: vec![kv("a", s(FNR))],
        ..Default::default()
    });

    let (out, stats, bytes) = run("{}", &req);
    assert!(!String::from_utf8_lossy(&bytes).contains(FNR), "a number survived");
    let by_field: Vec<(String, u64)> =
        stats.masked_by_field.iter().map(|c| (c.name.clone(), c.value)).collect();
    let expect = [
        ("span-name", 1),
        ("span-attribute", 6),
        ("event-name", 1),
        ("event-attribute", 1),
        ("link-attribute", 1),
        ("status-message", 1),
        ("resource-attribute", 1),
        ("scope-attribute", 1),
        ("scope-info", 1),
        ("trace-state", 1),
        ("attribute-key", 1),
    ];
    assert_eq!(by_field, expect.map(|(n, v)| (n.to_string(), v)));
    assert_eq!(stats.values_masked, 16);
    assert_eq!(count(&stats.masked_by_detector, "fnr"), 16);
    let sp = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(sp.name, "lookup ***********");
    // The int became the masked string, keeping its length.
    assert_eq!(sp.attributes[1].value.as_ref().unwrap().value, Some(s("***********")));
    assert_eq!(
        sp.attributes[2].value.as_ref().unwrap().value,
        Some(Value::BytesValue(b"***********".to_vec()))
    );
    assert_eq!(sp.attributes[3].value.as_ref().unwrap().value, Some(s("***********")));
    assert_eq!(sp.attributes[6].key, "person.***********");
}

/// Scenario: label replacement changes lengths at every nesting level.
/// Guarantees: every length prefix is rewritten so the output decodes to the
/// same structure with labels in place.
#[test]
fn label_replacement_rewrites_lengths() {
    let long = format!("{} {FNR}", "x".repeat(200)); // a two-byte length prefix that shrinks
    let sp = span(
        1,
        1,
        0,
        "n",
        vec![
            kv("db.statement", s(&long)),
            kv("k", Value::IntValue(FNR.parse().unwrap())),
            kv(
                "m",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("x", s(&format!("{FNR}-{FNR}")))],
                }),
            ),
        ],
    );
    let (out, stats, _) =
        run(r#"{"mask": {"replacement": "label", "label": "[fnr]"}}"#, &batch(vec![vec![sp]]));
    let sp = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        sp.attributes[0].value.as_ref().unwrap().value,
        Some(s(&format!("{} [fnr]", "x".repeat(200))))
    );
    assert_eq!(sp.attributes[1].value.as_ref().unwrap().value, Some(s("[fnr]")));
    let Some(Value::KvlistValue(m)) = &sp.attributes[2].value.as_ref().unwrap().value else {
        panic!()
    };
    assert_eq!(m.values[0].value.as_ref().unwrap().value, Some(s("[fnr]-[fnr]")));
    assert_eq!(stats.values_masked, 4);
}

/// Scenario: an invalid 11-digit run, a 12-digit run and a split-form number.
/// Guarantees: `validated` masks only the valid number; `any11` masks every
/// standalone 11-digit run; longer runs are never touched.
#[test]
fn modes_differ_only_on_invalid_runs() {
    let text = format!("order 12345678901 ts 123456789012 p {}-{}", &FNR[..6], &FNR[6..]);
    let sp = span(1, 1, 0, &text, vec![]);
    let (out, _, _) = run("{}", &batch(vec![vec![sp.clone()]]));
    assert_eq!(span_names(&out), ["order 12345678901 ts 123456789012 p ******-*****"]);
    let (out, stats, _) = run(r#"{"mask": {"mode": "any11"}}"#, &batch(vec![vec![sp]]));
    assert_eq!(span_names(&out), ["order *********** ts 123456789012 p ******-*****"]);
    assert_eq!(count(&stats.masked_by_detector, "any11"), 2);
}

/// Scenario: the scope is narrowed to two keys and span attributes only.
/// Guarantees: only values under those keys are masked.
#[test]
fn scope_narrows_to_keys() {
    let cfg = r#"{"mask": {"scope": {"fields": ["span-attribute"], "keys": ["db.statement", "messaging.*.key"]}}}"#;
    let sp = span(
        1,
        1,
        0,
        FNR,
        vec![kv("db.statement", s(FNR)), kv("messaging.kafka.key", s(FNR)), kv("other", s(FNR))],
    );
    let (out, _, _) = run(cfg, &batch(vec![vec![sp]]));
    let sp = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(sp.name, FNR);
    let vals: Vec<_> =
        sp.attributes.iter().map(|a| a.value.clone().unwrap().value.unwrap()).collect();
    assert_eq!(vals, [s("***********"), s("***********"), s(FNR)]);
}

/// Appends a length-delimited field to `out`.
fn ld(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    crate::wire::write_varint(out, u64::from(field << 3 | 2));
    crate::wire::write_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// A batch built by hand with unknown fields in Span, ScopeSpans,
/// ResourceSpans, KeyValue, AnyValue and the request, plus a non-canonical
/// (padded) length prefix.
fn batch_with_unknown_fields(second_name: &str) -> (Vec<u8>, Vec<u8>) {
    let unknown = |out: &mut Vec<u8>| {
        ld(out, 99, b"future field 12345678901");
        out.extend_from_slice(&[0xa8, 0x06, 0x2a]); // field 101 varint 42
    };
    let mut any = s(FNR).encode_to_vec_any();
    unknown(&mut any);
    let mut attr = Vec::new();
    ld(&mut attr, 1, b"k");
    ld(&mut attr, 2, &any);
    unknown(&mut attr);
    let mut untouched = span(1, 1, 0, "untouched", vec![]).encode_to_vec();
    unknown(&mut untouched);
    // Non-canonical two-byte length for the name field: 0x85 0x00 = 5.
    untouched.extend_from_slice(&[0x2a, 0x85, 0x00]);
    untouched.extend_from_slice(b"again");
    let mut masked = span(1, 2, 0, second_name, vec![]).encode_to_vec();
    ld(&mut masked, 9, &attr);
    unknown(&mut masked);
    let mut scope = Vec::new();
    ld(&mut scope, 2, &untouched);
    ld(&mut scope, 2, &masked);
    unknown(&mut scope);
    let mut rs = Vec::new();
    ld(&mut rs, 2, &scope);
    unknown(&mut rs);
    let mut req = Vec::new();
    ld(&mut req, 1, &rs);
    unknown(&mut req);
    (req, untouched)
}

trait EncodeAny {
    fn encode_to_vec_any(&self) -> Vec<u8>;
}
impl EncodeAny for Value {
    fn encode_to_vec_any(&self) -> Vec<u8> {
        AnyValue { value: Some(self.clone()) }.encode_to_vec()
    }
}

/// Scenario: unknown fields at every level, next to a masked value.
/// Guarantees: the untouched span comes out byte-identical, unknown fields
/// and padded varints included; only the planted number's digits change.
#[test]
fn unknown_fields_and_untouched_spans_survive_byte_for_byte() {
    let (input, untouched) = batch_with_unknown_fields("x");
    let p = Processor::new("{}").unwrap();
    let out = p.process(&input).unwrap();
    assert_eq!(out.stats.values_masked, 1);
    assert_eq!(out.batch.len(), input.len());
    let expected: Vec<u8> = {
        let mut e = input.clone();
        // Only the number inside the known AnyValue string changes; the
        // unknown field 99 is opaque and kept.
        let at = input.windows(11).position(|w| w == FNR.as_bytes()).unwrap();
        e[at..at + 11].copy_from_slice(b"***********");
        e
    };
    assert_eq!(out.batch, expected);
    assert!(out.batch.windows(untouched.len()).any(|w| w == untouched.as_slice()));
}

/// Scenario: nothing to drop or mask, or every rule switched off.
/// Guarantees: not one byte changes.
#[test]
fn empty_rule_set_changes_no_byte() {
    let (input, _) = batch_with_unknown_fields("x");
    let off =
        Processor::new(r#"{"noise": {"enabled": false}, "mask": {"enabled": false}}"#).unwrap();
    assert_eq!(off.process(&input).unwrap().batch, input);
    let noise_only = Processor::new(r#"{"mask": {"enabled": false}}"#).unwrap();
    assert_eq!(noise_only.process(&input).unwrap().batch, input);
}

/// Scenario: malformed batches of several kinds.
/// Guarantees: a typed error with the offset of the bad byte, and no output.
#[test]
fn malformed_batches_fail_closed_with_offsets() {
    let good = batch(vec![vec![span(1, 1, 0, FNR, vec![kv("a", s("b"))])]]).encode_to_vec();
    let mut truncated = good.clone();
    truncated.pop();
    let mut wrong_wire = Vec::new();
    ld(&mut wrong_wire, 1, &[0x10, 0x01]); // ResourceSpans.scope_spans as a varint
    let deep_batch = nested_arrays(40);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", truncated, "remain"),
        ("bad tag", vec![0x0a, 0xff], "varint runs past"),
        ("wrong wire type", wrong_wire, "must be length-delimited"),
        ("over-deep", deep_batch, "nested deeper than 32"),
        ("group", vec![0x0b], "group"),
    ];
    let p = Processor::new("{}").unwrap();
    for (what, bytes, needle) in cases {
        let mut out = vec![1, 2, 3];
        match p.process_into(&bytes, &mut out) {
            Err(Error::Malformed(m)) => {
                assert!(m.reason.contains(needle), "{what}: {m}");
                assert!((m.offset as usize) < bytes.len(), "{what}: offset {} past end", m.offset);
            }
            other => panic!("{what}: expected malformed, got {other:?}"),
        }
        assert!(out.is_empty(), "{what}: output left behind");
    }
}

/// Scenario: a batch over `limits.max_batch_bytes`.
/// Guarantees: refused with its size and the limit.
#[test]
fn oversized_batch_is_refused() {
    let p = Processor::new(r#"{"limits": {"max_batch_bytes": 4}}"#).unwrap();
    assert_eq!(p.process(&[0; 5]).unwrap_err(), Error::TooLarge { size: 5, limit: 4 });
}

/// Scenario: spans sent under the deprecated `instrumentation_library_spans` (field 1000).
/// Guarantees: they are masked too.
#[test]
fn legacy_library_spans_are_processed() {
    let sp = span(1, 1, 0, FNR, vec![]).encode_to_vec();
    let mut ils = Vec::new();
    ld(&mut ils, 2, &sp);
    let mut rs = Vec::new();
    ld(&mut rs, 1000, &ils);
    let mut req = Vec::new();
    ld(&mut req, 1, &rs);
    let out = Processor::new("{}").unwrap().process(&req).unwrap();
    assert_eq!(out.stats.values_masked, 1);
    assert!(!out.batch.windows(11).any(|w| w == FNR.as_bytes()));
}

/// Scenario: an int-typed Kafka key for someone born on the 1st to the 9th,
/// whose leading zero the integer dropped (10 digits), and an epoch second.
/// Guarantees: the padded number is masked in both modes; the timestamp,
/// also 10 digits, is kept even in `any11`.
#[test]
fn int_key_with_dropped_leading_zero_is_masked() {
    let as_int: i64 = FNR.parse().unwrap();
    assert!(as_int < 10_000_000_000, "the test number must start with 0");
    for cfg in ["{}", r#"{"mask": {"mode": "any11"}}"#] {
        let sp = span(
            1,
            1,
            0,
            "k",
            vec![
                kv("messaging.kafka.message.key", Value::IntValue(as_int)),
                kv("ts", Value::IntValue(1_700_000_000)),
            ],
        );
        let (out, stats, _) = run(cfg, &batch(vec![vec![sp]]));
        let sp = &out.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(sp.attributes[0].value.as_ref().unwrap().value, Some(s("***********")), "{cfg}");
        assert_eq!(
            sp.attributes[1].value.as_ref().unwrap().value,
            Some(Value::IntValue(1_700_000_000)),
            "{cfg}"
        );
        assert_eq!(stats.values_masked, 1, "{cfg}");
    }
}

/// Scenario: a batch with a noisy span and its child in one resource, masked
/// values in a span attribute and a resource attribute of a second, and a
/// number in an unknown field of the request, explained for an audit.
/// Guarantees: `explain` gives the same output and stats as `process`, and
/// one finding per drop and per mask, each naming its resource by index
/// (none for the request's own field), with no personal number in them.
#[test]
fn explain_lists_drops_and_masks_with_their_resource_without_leaking() {
    use crate::Finding;
    let noisy = span(1, 1, 0, "h", vec![kv("url.path", s(&format!("/internal/health/{FNR}")))]);
    let child = span(1, 2, 1, "ping", vec![]);
    let person = span(2, 3, 0, "p", vec![kv(&format!("k{FNR}"), s(FNR))]);
    let mut req = batch(vec![vec![noisy, child]]);
    let mut second = batch(vec![vec![person]]).resource_spans.remove(0);
    second.resource.as_mut().unwrap().attributes.push(kv("user", s(FNR)));
    req.resource_spans.push(second);
    let p = Processor::new("{}").unwrap();
    let mut bytes = req.encode_to_vec();
    ld(&mut bytes, 99, format!("future {FNR}").as_bytes());
    let (out, findings) = p.explain(&bytes).unwrap();
    assert_eq!(out, p.process(&bytes).unwrap());
    let dropped: Vec<_> =
        findings.iter().filter(|f| matches!(f, Finding::Dropped { .. })).collect();
    assert_eq!(
        dropped,
        [
            &Finding::Dropped {
                resource: 0,
                trace_id: vec![1; 16],
                span_id: vec![1; 8],
                rule: Some("*/internal/health*".into()),
                path: "/internal/health/***********".into()
            },
            &Finding::Dropped {
                resource: 0,
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                rule: None,
                path: String::new()
            },
        ]
    );
    let masked: Vec<_> = findings
        .iter()
        .filter_map(|f| match f {
            Finding::Masked { resource, span_id, field, key, .. } => {
                Some((*resource, span_id.clone(), field.name(), key.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        masked,
        [
            (Some(1), vec![], "resource-attribute", "user".to_string()),
            (Some(1), vec![3; 8], "attribute-key", "k***********".to_string()),
            (Some(1), vec![3; 8], "span-attribute", "k***********".to_string()),
            (None, vec![], "unknown-field", String::new()),
        ]
    );
    assert_eq!(masked.len() as u64, out.stats.values_masked);
    assert!(!format!("{findings:?}").contains(FNR));
}

/// A batch with one span attribute whose value nests `levels` arrays.
fn nested_arrays(levels: usize) -> Vec<u8> {
    let mut value = s("x").encode_to_vec_any();
    for _ in 0..levels {
        let mut list = Vec::new();
        ld(&mut list, 1, &value);
        let mut any = Vec::new();
        ld(&mut any, 5, &list);
        value = any;
    }
    let mut attr = Vec::new();
    ld(&mut attr, 2, &value);
    let mut sp = Vec::new();
    ld(&mut sp, 1, &[1; 16]);
    ld(&mut sp, 2, &[2; 8]);
    ld(&mut sp, 9, &attr);
    let mut scope = Vec::new();
    ld(&mut scope, 2, &sp);
    let mut rs = Vec::new();
    ld(&mut rs, 2, &scope);
    let mut req = Vec::new();
    ld(&mut req, 1, &rs);
    req
}

/// Scenario: attribute values nested exactly `MAX_VALUE_DEPTH` arrays deep,
/// and one deeper.
/// Guarantees: the bound is exact: 32 levels pass, 33 are malformed.
#[test]
fn nesting_bound_is_exact() {
    let p = Processor::new("{}").unwrap();
    assert!(p.process(&nested_arrays(super::MAX_VALUE_DEPTH)).is_ok());
    match p.process(&nested_arrays(super::MAX_VALUE_DEPTH + 1)) {
        Err(Error::Malformed(m)) => assert!(m.reason.contains("nested deeper than 32"), "{m}"),
        other => panic!("expected malformed, got {other:?}"),
    }
}

/// Scenario: the split form of FNR with every separator the scanner reads,
/// in a URL query (form-encoded) and in text (UTF-8), in stars and label
/// mode; and look-alikes joined the same ways.
/// Guarantees: stars keep the separator byte for byte (so `%20` stays
/// `%20` and the URL stays valid), one mask is counted per number, the
/// label replaces number and separator together, and the look-alikes come
/// out unchanged.
#[test]
fn separated_numbers_are_masked_and_keep_their_separator() {
    let (six, five) = FNR.split_at(6);
    for sep in [
        "+", "%20", "%2D", "%2d", "%C2%A0", "%c2%a0", "\u{a0}", "\u{202f}", "\u{2013}", "\t", " ",
        "-",
    ] {
        let value = format!("q={six}{sep}{five}&page=2");
        let (out, stats, _) = run(
            "{}",
            &batch(vec![vec![span(1, 1, 0, "search", vec![kv("url.query", s(&value))])]]),
        );
        let got = &out.resource_spans[0].scope_spans[0].spans[0].attributes[0];
        assert_eq!(
            got.value,
            Some(AnyValue { value: Some(s(&format!("q=******{sep}*****&page=2"))) }),
            "{sep:?}"
        );
        assert_eq!(stats.values_masked, 1, "{sep:?}");
        let (out, _, _) = run(
            r#"{"mask": {"replacement": "label"}}"#,
            &batch(vec![vec![span(1, 1, 0, "x", vec![kv("q", s(&value))])]]),
        );
        let got = &out.resource_spans[0].scope_spans[0].spans[0].attributes[0];
        assert_eq!(got.value, Some(AnyValue { value: Some(s("q=[fnr]&page=2")) }), "{sep:?}");
    }
    // Not personal numbers, joined the same ways: an order number with bad
    // check digits, a phone number, a 12-digit id, an account number split 4+2+5.
    // Fails closed: a number as written stays one, even when an encoded
    // digit glued to it makes 12 digits decoded.
    let req =
        batch(vec![vec![span(1, 1, 0, "x", vec![kv("url.query", s(&format!("q={FNR}%34")))])]]);
    let (out, stats, _) = run("{}", &req);
    let got = &out.resource_spans[0].scope_spans[0].spans[0].attributes[0];
    assert_eq!(got.value, Some(AnyValue { value: Some(s("q=***********%34")) }));
    assert_eq!(stats.values_masked, 1);
    let bad_check = format!("{}{}", &FNR[..10], (FNR.as_bytes()[10] - b'0' + 1) % 10);
    for value in [
        format!("q={}%20{}", &bad_check[..6], &bad_check[6..]),
        format!("{}\u{a0}{}", &bad_check[..6], &bad_check[6..]),
        "tel=%2B47%2012345678".to_owned(),
        "id=1234567%2012345".to_owned(),
        "acct=1234%2056%2078903".to_owned(),
        format!("{six}%20%20{five}"),
    ] {
        let req = batch(vec![vec![span(1, 1, 0, "x", vec![kv("q", s(&value))])]]);
        let (_, stats, bytes) = run("{}", &req);
        assert_eq!(stats.values_masked, 0, "{value}");
        assert_eq!(bytes, req.encode_to_vec(), "{value}: changed");
    }
}

/// Scenario: a number typed into a search form whose digits reached
/// `url.query` percent-encoded (every one, or every other one), whole or
/// with an encoded separator; and look-alikes encoded the same way.
/// Guarantees: an encoded digit becomes an encoded star (`%2A`), a raw one
/// `*`, and every other byte is kept, so the URL stays valid; one mask is
/// counted; a 12-digit run and a wrong check digit come out unchanged.
#[test]
fn percent_encoded_digits_are_masked_and_the_url_stays_valid() {
    let write = |digits: &str, every: usize, star: bool| -> String {
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            match (i % every == 0, star) {
                (true, true) => out.push_str("%2A"),
                (true, false) => out.push_str(&format!("%3{c}")),
                (false, true) => out.push('*'),
                (false, false) => out.push(c),
            }
        }
        out
    };
    let (six, five) = FNR.split_at(6);
    for every in [1, 2] {
        for sep in ["", "%20", "%09", "+"] {
            let value =
                format!("q={}{sep}{}&page=2", write(six, every, false), write(five, every, false));
            let want =
                format!("q={}{sep}{}&page=2", write(six, every, true), write(five, every, true));
            let (out, stats, _) = run(
                "{}",
                &batch(vec![vec![span(1, 1, 0, "search", vec![kv("url.query", s(&value))])]]),
            );
            let got = &out.resource_spans[0].scope_spans[0].spans[0].attributes[0];
            assert_eq!(got.value, Some(AnyValue { value: Some(s(&want)) }), "{value}");
            assert_eq!(stats.values_masked, 1, "{value}");
        }
    }
    // Fails closed: a number as written stays one, even when an encoded
    // digit glued to it makes 12 digits decoded.
    let req =
        batch(vec![vec![span(1, 1, 0, "x", vec![kv("url.query", s(&format!("q={FNR}%34")))])]]);
    let (out, stats, _) = run("{}", &req);
    let got = &out.resource_spans[0].scope_spans[0].spans[0].attributes[0];
    assert_eq!(got.value, Some(AnyValue { value: Some(s("q=***********%34")) }));
    assert_eq!(stats.values_masked, 1);
    let bad_check = format!("{}{}", &FNR[..10], (FNR.as_bytes()[10] - b'0' + 1) % 10);
    for value in [
        format!("q={}&page=2", write(&format!("{FNR}4"), 1, false)),
        format!("q={}&page=2", write(&bad_check, 2, false)),
        format!("q={}&page=2", write(&FNR[..10], 1, false)),
    ] {
        let req = batch(vec![vec![span(1, 1, 0, "x", vec![kv("url.query", s(&value))])]]);
        let (_, stats, bytes) = run("{}", &req);
        assert_eq!(stats.values_masked, 0, "{value}");
        assert_eq!(bytes, req.encode_to_vec(), "{value}: changed");
    }
}

/// Scenario: a metrics export (`ExportMetricsServiceRequest`) sent where a
/// traces export belongs. Its wire layout nests like a traces request, and a
/// metric's name lands in `Span.trace_id`.
/// Guarantees: the batch is refused as malformed, naming `Span.trace_id`.
#[test]
fn a_metrics_request_sent_as_traces_is_refused() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let point =
        NumberDataPoint { value: Some(number_data_point::Value::AsInt(7)), ..Default::default() };
    let metric = Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: vec![point] })),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }],
    };
    match Processor::new("{}").unwrap().process(&req.encode_to_vec()) {
        Err(Error::Malformed(m)) => {
            assert!(m.reason.contains("Span.trace_id is 28 bytes, OTLP allows 16 bytes"), "{m}")
        }
        other => panic!("a metrics request passed as traces: {other:?}"),
    }
}

/// Scenario: a span whose `span_id` is 24 bytes holding a personal number.
/// Guarantees: refused at the offset of that field, not forwarded as it is.
#[test]
fn a_span_id_holding_a_number_is_refused_at_its_offset() {
    let mut sp = span(1, 2, 0, "GET /x", vec![]);
    sp.span_id = format!("id:{FNR}:padding..").into_bytes();
    assert_eq!(sp.span_id.len(), 24);
    let req = batch(vec![vec![sp]]);
    let bytes = req.encode_to_vec();
    let field_at = bytes.windows(2).position(|w| w == [0x12, 24]).expect("span_id field");
    match Processor::new("{}").unwrap().process(&bytes) {
        Err(Error::Malformed(m)) => {
            assert_eq!(m.offset as usize, field_at, "{m}");
            assert!(m.reason.contains("Span.span_id is 24 bytes, OTLP allows 8 bytes"), "{m}");
            assert!(!m.to_string().contains(FNR), "the error quotes the id: {m}");
        }
        other => panic!("a 24-byte span id passed: {other:?}"),
    }
}

/// Scenario: a resource's and a scope's `schema_url` carrying a number.
/// Guarantees: both are masked and counted as `schema-url`; the rest of
/// each URL is untouched.
#[test]
fn schema_urls_are_masked() {
    let mut req = batch(vec![vec![span(1, 2, 0, "work", vec![])]]);
    req.resource_spans[0].schema_url = format!("https://schemas.example/{FNR}/1.0");
    req.resource_spans[0].scope_spans[0].schema_url = format!("https://schemas.example/s/{FNR}");
    let (out, stats, _) = run("{}", &req);
    assert_eq!(out.resource_spans[0].schema_url, "https://schemas.example/***********/1.0");
    assert_eq!(
        out.resource_spans[0].scope_spans[0].schema_url,
        "https://schemas.example/s/***********"
    );
    assert_eq!(count(&stats.masked_by_field, "schema-url"), 2);
}

/// Scenario: a span carrying an unknown length-delimited field (number 77)
/// whose text holds a number, under the label replacement.
/// Guarantees: the number's digits are starred in place, the field keeps
/// its length (so a nested message of a newer schema would stay valid),
/// the rest of the batch is as without it, and it is counted as
/// `unknown-field`.
#[test]
fn unknown_text_fields_are_starred_in_place() {
    let req = batch(vec![vec![span(1, 2, 0, "work", vec![])]]);
    let text = format!("customer {FNR} called");
    let mut sp = req.resource_spans[0].scope_spans[0].spans[0].encode_to_vec();
    ld(&mut sp, 77, text.as_bytes());
    let mut scope = Vec::new();
    ld(&mut scope, 2, &sp);
    let mut rs = Vec::new();
    ld(&mut rs, 2, &scope);
    let mut bytes = Vec::new();
    ld(&mut bytes, 1, &rs);
    let out =
        Processor::new(r#"{"mask":{"replacement":"label"}}"#).unwrap().process(&bytes).unwrap();
    assert_eq!(out.batch.len(), bytes.len());
    let starred = b"customer *********** called";
    assert!(out.batch.windows(starred.len()).any(|w| w == starred));
    assert_eq!(count(&out.stats.masked_by_field, "unknown-field"), 1);
    assert_eq!(out.stats.values_masked, 1);
}
