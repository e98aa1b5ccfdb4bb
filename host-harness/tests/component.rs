//! The built span-processor component against the native engine: same
//! bytes, same stats, same typed errors, and a component that imports nothing.

mod support;

use std::sync::OnceLock;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::Status;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use prost::Message;
use support::{any, batch, fnr, kv, repo, span, string};
use tracescrub::{
    ComponentInstance, DEFAULT_COMPONENT, HostError, InstanceOptions, LoadedComponent, Runtime,
    ScrubberInstance, TRANSFORM_INTERFACE, component_exports, component_imports,
};
use tracescrub_processor::{Error, Processor, Stats};

/// A second config, different from the defaults in every section.
const LABEL_CONFIG: &str = r#"{
    "noise": {"extra_globs": ["*/ping"], "drop_descendants": false},
    "mask": {"replacement": "label", "label": "<fnr>"}
}"#;

/// Compiles the component once for all tests.
fn component() -> &'static LoadedComponent {
    static COMPONENT: OnceLock<LoadedComponent> = OnceLock::new();
    COMPONENT.get_or_init(|| {
        let runtime = Runtime::new().expect("engine");
        runtime.load_default().expect("the built component loads with an empty linker")
    })
}

/// The test batches: noise with a child, personal numbers in many kinds of
/// field and value, and one batch with nothing to do.
fn batches() -> Vec<(&'static str, Vec<u8>)> {
    let person = fnr("150385123");
    assert_eq!(person, "15038512363");
    let other = fnr("010190457");

    let health = span(1, None, "GET /isAlive", vec![kv("url.path", string("/isAlive"))]);
    let health_child = span(2, Some(1), "check db", vec![kv("db.system", string("postgresql"))]);
    let mut query = span(
        3,
        None,
        "SELECT person",
        vec![
            kv("db.statement", string(&format!("SELECT * FROM person WHERE fnr = '{person}'"))),
            kv("db.rows", any(Value::IntValue(1))),
            kv("payload", any(Value::BytesValue(person.as_bytes().to_vec()))),
            kv(
                "request",
                any(Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("user", string(&format!("fnr {other}"))),
                        kv(
                            "ids",
                            any(Value::ArrayValue(ArrayValue {
                                values: vec![string(&person), string("12345678901")],
                            })),
                        ),
                    ],
                })),
            ),
        ],
    );
    query.events = vec![Event {
        name: format!("lookup {person}"),
        attributes: vec![kv("exception.message", string(&format!("no row for {other}")))],
        ..Default::default()
    }];
    query.status = Some(Status { message: format!("failed for {person}"), code: 2 });
    let ping = span(4, None, "GET /ping", vec![kv("url.path", string("/ping"))]);
    let plain = span(5, None, "GET /orders", vec![kv("url.path", string("/orders/17"))]);

    vec![
        ("empty", Vec::new()),
        (
            "mixed",
            batch(
                vec![kv("service.name", string("checkout")), kv("host.owner", string(&other))],
                vec![health, health_child, query, ping],
            ),
        ),
        ("nothing to do", batch(vec![kv("service.name", string("orders"))], vec![plain])),
    ]
}

fn native(config_json: &str, batch: &[u8]) -> Result<(Vec<u8>, Stats), Error> {
    let output = Processor::new(config_json)?.process(batch)?;
    Ok((output.batch, output.stats))
}

/// The component's typed error, or a panic on anything else.
fn component_error(result: Result<impl std::fmt::Debug, HostError>) -> Error {
    match result {
        Err(HostError::Processor(error)) => error,
        other => panic!("expected the component's typed error, got {other:?}"),
    }
}

/// Scenario: read the import and export sections of the embedded component.
/// Guarantees: it imports nothing (no file, socket, clock or random source
/// can be reached) and exports the `tracescrub:processor/transform@0.1.0`
/// interface; it also links with an empty wasmtime linker.
#[test]
fn component_imports_nothing_and_exports_transform() {
    let imports = component_imports(DEFAULT_COMPONENT).expect("readable component");
    assert_eq!(imports, Vec::<String>::new(), "the component must import nothing");
    let exports = component_exports(DEFAULT_COMPONENT).expect("readable component");
    assert_eq!(exports, vec![TRANSFORM_INTERFACE.to_owned()]);
    // Linking with an empty linker succeeds.
    let _ = component();
}

/// Scenario: every test batch (empty, noise with a descendant, personal
/// numbers in string, bytes, kvlist, array, event, status and resource
/// fields, and a batch with nothing to change) through the native engine
/// and through the component, with the default config and a label config.
/// Guarantees: the component returns byte-identical batches and equal stats.
#[test]
fn component_matches_native() {
    for config in ["{}", LABEL_CONFIG] {
        let mut scrubber = ScrubberInstance::create(component(), config).expect("valid config");
        for (name, input) in batches() {
            let expected = native(config, &input).expect("native processing");
            let got = scrubber.process(&input).expect("component processing");
            assert_eq!(got, expected, "batch {name:?}, config {config}");
        }
    }
}

/// Scenario: every test batch through `process-part` of the component and
/// `process_part` of the native engine, with the default config and a
/// label config.
/// Guarantees: the same bytes, stats and parent links (under the default
/// config, the mixed batch's health check and its child among the dropped;
/// under the label config, which keeps descendants, none at all), and the
/// bytes and stats `process` gives.
#[test]
fn component_process_part_matches_native() {
    for config in ["{}", LABEL_CONFIG] {
        let mut scrubber = ScrubberInstance::create(component(), config).expect("valid config");
        let engine = tracescrub_processor::Processor::new(config).expect("valid config");
        // A kept span with a parent, for the kept-parents list.
        let kept_child = batch(
            Vec::new(),
            vec![span(6, None, "GET /orders", vec![]), span(7, Some(6), "SELECT 1", vec![])],
        );
        for (name, input) in batches().into_iter().chain([("kept child", kept_child)]) {
            let (output, links) = engine.process_part(input.clone()).expect("native processing");
            let got = scrubber.process_part(&input).expect("component processing");
            assert_eq!(got, (output.batch, output.stats, links), "batch {name:?}, config {config}");
            assert_eq!(
                (got.0, got.1),
                native(config, &input).expect("native"),
                "batch {name:?}, config {config}"
            );
            if name == "mixed" && config == "{}" {
                // The health check and its child, dropped.
                assert_eq!(got.2.dropped.len(), 2, "{:?}", got.2);
            }
            if name == "kept child" && config == "{}" {
                assert_eq!((got.2.dropped.len(), got.2.parents.len()), (0, 1), "{:?}", got.2);
            }
            if config == LABEL_CONFIG {
                // Descendants are kept: no drop reaches past its own span.
                assert_eq!(got.2, tracescrub_processor::PartLinks::default(), "batch {name:?}");
            }
        }
    }
}

/// Scenario: the mixed batch under the default config.
/// Guarantees: the comparison above is not vacuous: the health check and
/// its child are dropped and personal numbers are masked.
#[test]
fn component_drops_noise_and_masks() {
    let mixed = batches().into_iter().find(|(name, _)| *name == "mixed").expect("mixed batch").1;
    let mut scrubber = ScrubberInstance::create(component(), "{}").expect("default config");
    let (out, stats) = scrubber.process(&mixed).expect("processing");
    assert_eq!((stats.spans_in, stats.spans_out), (4, 2));
    assert_eq!(stats.dropped_descendants, 1);
    assert!(stats.values_masked > 0, "{stats:?}");
    let decoded = ExportTraceServiceRequest::decode(out.as_slice()).expect("valid output");
    let text = format!("{decoded:?}");
    assert!(!text.contains(&fnr("150385123")), "a personal number survived: {text}");
    assert!(!text.contains("isAlive"));
}

/// Scenario: a personal number, and a five-digit run, at every offset of
/// values of every length up to 48 bytes, as attribute values and as span
/// names, through the component and natively. The guest's digit pre-check
/// is wasm SIMD code that native tests never run, and a value is split
/// into 16-byte blocks plus an overlapping tail.
/// Guarantees: the component masks every planted number, and nothing else,
/// exactly as the native engine does.
#[test]
fn digit_pre_check_finds_numbers_at_every_offset() {
    let person = fnr("150385123");
    let mut planted = 0;
    let mut spans = Vec::new();
    for len in 0..=48usize {
        let mut attributes = Vec::new();
        for off in 0..=len {
            let value = |run: &str| format!("{}{run}{}", "a".repeat(off), "b".repeat(len - off));
            attributes.push(kv("db.statement", string(&value(&person))));
            attributes.push(kv("db.operation", string(&value("12345"))));
            planted += 1;
        }
        let name = format!("{}{person}{}", "x".repeat(len / 2), "y".repeat(len - len / 2));
        planted += 1;
        spans.push(span(len as u8 + 1, None, &name, attributes));
    }
    let input = batch(Vec::new(), spans);
    let mut scrubber = ScrubberInstance::create(component(), "{}").expect("default config");
    let (out, stats) = scrubber.process(&input).expect("processing");
    assert_eq!(stats.values_masked, planted, "{stats:?}");
    assert_eq!((out, stats), native("{}", &input).expect("native"));
}

/// Scenario: an empty batch.
/// Guarantees: an empty batch is valid and comes back empty with zero stats.
#[test]
fn empty_batch() {
    let mut scrubber = ScrubberInstance::create(component(), "{}").expect("default config");
    assert_eq!(scrubber.process(&[]).expect("empty batch"), (Vec::new(), Stats::default()));
}

/// Scenario: a config with several problems.
/// Guarantees: creation fails with the typed invalid-config error listing
/// the same problems, in the same order, as the native engine.
#[test]
fn invalid_config_is_typed_and_matches_native() {
    let config = r#"{"nosie": {}, "noise": {"globs": 3}, "mask": {"mode": "some"}, "limits": {"max_batch_bytes": -1}}"#;
    let expected = Processor::new(config).expect_err("invalid config");
    assert!(
        matches!(&expected, Error::InvalidConfig(problems) if problems.len() >= 3),
        "{expected:?}"
    );
    let got = component_error(ScrubberInstance::create(component(), config));
    assert_eq!(got, expected);
    // Not JSON at all.
    let expected = Processor::new("{").expect_err("not JSON");
    assert_eq!(component_error(ScrubberInstance::create(component(), "{")), expected);
}

/// Scenario: truncated and garbled batches.
/// Guarantees: processing fails with the typed malformed-batch error at the
/// same offset and with the same reason as native, and the instance stays
/// usable afterwards.
#[test]
fn malformed_batch_is_typed_and_matches_native() {
    let mixed = batches().into_iter().find(|(name, _)| *name == "mixed").expect("mixed batch").1;
    let mut scrubber = ScrubberInstance::create(component(), "{}").expect("default config");
    for bad in [&[0x0a, 0xff][..], &[0x0a, 0x05, 0x0a], &[0x0f], &mixed[..mixed.len() - 3]] {
        let expected = native("{}", bad).expect_err("malformed");
        assert!(matches!(expected, Error::Malformed(_)), "{expected:?}");
        assert_eq!(component_error(scrubber.process(bad)), expected, "batch {bad:02x?}");
    }
    assert!(!scrubber.is_poisoned());
    assert_eq!(
        scrubber.process(&mixed).expect("still usable"),
        native("{}", &mixed).expect("native")
    );
}

/// Scenario: a batch one byte over `limits.max_batch_bytes`.
/// Guarantees: processing fails with the typed too-large error carrying the
/// size and the limit, as native; a batch at the limit is processed.
#[test]
fn batch_over_the_limit_is_too_large() {
    let plain = batches().into_iter().find(|(name, _)| *name == "nothing to do").expect("batch").1;
    let limit = plain.len() as u64 - 1;
    let config = format!(r#"{{"limits": {{"max_batch_bytes": {limit}}}}}"#);
    let mut scrubber = ScrubberInstance::create(component(), &config).expect("valid config");
    let got = component_error(scrubber.process(&plain));
    assert_eq!(got, Error::TooLarge { size: limit + 1, limit });
    assert_eq!(got, native(&config, &plain).expect_err("too large"));
    let at_limit = &plain[..0];
    assert!(scrubber.process(at_limit).is_ok());
}

/// Scenario: one component instance holds two processors with different
/// configs; calls on them are interleaved, and one is dropped.
/// Guarantees: each processor answers as a native processor with its own
/// config would, so they share no state; dropping one leaves the other working.
#[test]
fn processors_in_one_instance_do_not_interfere() {
    let mut instance: ComponentInstance =
        component().instantiate(&InstanceOptions::default()).expect("instance");
    let defaults = instance.create_processor("{}").expect("default config");
    let labels = instance.create_processor(LABEL_CONFIG).expect("label config");

    let default_json = instance.effective_config(&defaults).expect("effective config");
    let label_json = instance.effective_config(&labels).expect("effective config");
    assert_eq!(default_json, Processor::new("{}").expect("native").config().to_json());
    assert_eq!(label_json, Processor::new(LABEL_CONFIG).expect("native").config().to_json());
    assert_ne!(default_json, label_json);

    for round in 0..2 {
        for (name, input) in batches() {
            let from_defaults = instance.process(&defaults, &input).expect("defaults");
            let from_labels = instance.process(&labels, &input).expect("labels");
            assert_eq!(
                from_defaults,
                native("{}", &input).expect("native"),
                "{name} round {round}"
            );
            assert_eq!(
                from_labels,
                native(LABEL_CONFIG, &input).expect("native"),
                "{name} round {round}"
            );
        }
    }
    let mixed = batches().into_iter().find(|(name, _)| *name == "mixed").expect("mixed batch").1;
    assert_ne!(
        instance.process(&defaults, &mixed).expect("defaults"),
        instance.process(&labels, &mixed).expect("labels"),
        "the two configs must differ on the mixed batch"
    );

    instance.drop_processor(defaults).expect("drop");
    assert_eq!(
        instance.process(&labels, &mixed).expect("labels after drop"),
        native(LABEL_CONFIG, &mixed).expect("native")
    );
}

/// Scenario: a processor handle from one instance used with another.
/// Guarantees: refused with `WrongInstance`, not a trap or a panic.
#[test]
fn handle_from_another_instance_is_refused() {
    let mut first = component().instantiate(&InstanceOptions::default()).expect("instance");
    let mut second = component().instantiate(&InstanceOptions::default()).expect("instance");
    let handle = first.create_processor("{}").expect("processor");
    assert!(matches!(second.process(&handle, &[]), Err(HostError::WrongInstance)));
    assert!(!second.is_poisoned());
}

/// Scenario: a batch far larger than the instance's memory cap.
/// Guarantees: the call traps (it is not a typed error), the instance is
/// poisoned, and every later call is refused with `Poisoned`.
#[test]
fn trap_poisons_the_instance() {
    let options = InstanceOptions::default().with_max_memory_bytes(4 << 20);
    let mut scrubber =
        ScrubberInstance::create_with(component(), "{}", &options).expect("fits in 4 MiB");
    let huge = vec![0_u8; 8 << 20];
    let error = scrubber.process(&huge).expect_err("over the memory cap");
    assert!(matches!(error, HostError::Trap(_)), "{error:?}");
    assert!(scrubber.is_poisoned());
    assert!(matches!(scrubber.process(&[]), Err(HostError::Poisoned)));
    assert!(matches!(scrubber.effective_config(), Err(HostError::Poisoned)));
}

/// Scenario: an instance whose epoch deadline is zero ticks away.
/// Guarantees: epoch interruption is on and the deadline is set before
/// instantiation (which runs guest code): it traps with `Trap::Interrupt`
/// rather than running unbounded.
#[test]
fn epoch_deadline_interrupts() {
    let options = InstanceOptions::default().with_epoch_deadline_ticks(0);
    let error = component().instantiate(&options).expect_err("deadline passed");
    assert!(matches!(error, HostError::Instantiate(_)), "{error:?}");
    assert_eq!(error.trap_code(), Some(wasmtime::Trap::Interrupt), "{error:?}");
}

/// Scenario: every test batch explained through the component and natively.
/// Guarantees: the same output, stats and findings either way, and the
/// output equals what `process` gives.
#[test]
fn explain_matches_native_and_process() {
    let native = tracescrub_processor::Processor::new("{}").unwrap();
    let mut scrubber = ScrubberInstance::create(component(), "{}").unwrap();
    for (name, batch) in batches() {
        let (out, stats, findings) = scrubber.explain(&batch).unwrap();
        let (n_out, n_findings) = native.explain(&batch).unwrap();
        assert_eq!((&out, &stats), (&n_out.batch, &n_out.stats), "{name}");
        assert_eq!(findings, n_findings, "{name}");
        assert_eq!(scrubber.process(&batch).unwrap(), (out, stats), "{name}");
    }
}

/// Regression: a batch under `limits.max_batch_bytes` but with millions of
/// tiny spans needed more span records than the memory cap allowed, and the
/// allocator's failure trapped: "never traps on any input" was broken.
/// Scenario: a million spans that hold only their ids (30 MB) in an
/// instance capped at 64 MiB.
/// Guarantees: a typed `OutOfMemory` error, the instance not poisoned, and
/// the next batch processed normally.
#[test]
fn many_tiny_spans_over_the_memory_cap_are_a_typed_error() {
    let spans = 1_000_000;
    // A Span with a 16-byte trace id and an 8-byte span id, nothing else.
    let span = [&[0x0a, 16][..], &[7; 16], &[0x12, 8], &[9; 8]].concat();
    let mut scope = Vec::with_capacity(spans * (span.len() + 2));
    for _ in 0..spans {
        scope.extend_from_slice(&length_delimited(2, &span)); // ScopeSpans.spans
    }
    // ExportTraceServiceRequest { resource_spans: [ResourceSpans { scope_spans: [that] }] }
    let batch = length_delimited(1, &length_delimited(2, &scope));
    let options = InstanceOptions::default().with_max_memory_bytes(64 << 20);
    let mut scrubber =
        ScrubberInstance::create_with(component(), "{}", &options).expect("fits in 64 MiB");
    match scrubber.process(&batch) {
        Err(HostError::Processor(Error::OutOfMemory { what })) => assert_eq!(what, "span records"),
        other => panic!("expected a typed out-of-memory error, got {:?}", other.map(|(_, s)| s)),
    }
    assert!(!scrubber.is_poisoned());
    let (out, stats) = scrubber.process(&[]).expect("the instance still works");
    assert!(out.is_empty() && stats.spans_in == 0);
    // Natively, with no cap, the same batch goes through.
    assert_eq!(native("{}", &batch).expect("native").1.spans_in, spans as u64);
}

/// Field `field` as a length-delimited protobuf field holding `body`.
fn length_delimited(field: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![field << 3 | 2];
    let mut len = body.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(body);
    out
}

/// Scenario: realistic batches (every captured protobuf body, and generated
/// corpus batches of 512, 2048 and 8192 spans) each go through a fresh
/// instance whose memory is capped at exactly 2 × the batch size + 1 MiB,
/// with the embedded default config.
/// Guarantees: the guest's linear memory, baseline included, stays within
/// that bound: the batch is processed, not refused for memory.
#[test]
fn guest_memory_per_batch_stays_within_twice_the_batch_plus_one_mib() {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let captures = repo("testdata/captures");
    for dir in std::fs::read_dir(&captures).expect("testdata/captures") {
        for file in std::fs::read_dir(dir.expect("entry").path()).expect("capture dir") {
            let path = file.expect("entry").path();
            if path.extension().is_some_and(|e| e == "binpb") {
                inputs.push((path.display().to_string(), std::fs::read(&path).expect("capture")));
            }
        }
    }
    for spans in [512, 2048, 8192] {
        let options = tracescrub_corpus::CorpusOptions {
            min_spans: spans,
            batch_spans: spans,
            ..Default::default()
        };
        let corpus = tracescrub_corpus::generate(&options).expect("corpus");
        inputs.push((format!("corpus batch of {spans} spans"), corpus.batches[0].clone()));
    }
    assert!(inputs.len() > 10, "captures found: {}", inputs.len());
    let config = tracescrub::config_file::default_json();
    for (name, batch) in &inputs {
        let cap = 2 * batch.len() + (1 << 20);
        let options = InstanceOptions::default().with_max_memory_bytes(cap);
        let mut scrubber = ScrubberInstance::create_with(component(), &config, &options)
            .expect("instance within the cap");
        let result = scrubber.process(batch);
        assert!(
            result.is_ok(),
            "{name} ({} bytes) under a {cap}-byte cap: {:?}",
            batch.len(),
            result.err()
        );
    }
}

/// An attribute value nested `levels` arrays deep around a valid number.
fn nested_value(levels: usize) -> AnyValue {
    let mut value = string(&fnr("170536502"));
    for _ in 0..levels {
        value = any(Value::ArrayValue(ArrayValue { values: vec![value] }));
    }
    value
}

/// Scenario: the guest's shadow stack is 256 KiB (host-harness/runtime/build.rs).
/// Values nested to the engine's bound (32 levels) and one past it, and a
/// config nested as deep as serde_json allows, go through the component.
/// Guarantees: the deepest recursion the engine and the config parser allow
/// fits the stack: the bound is processed (and masked) as natively, one past
/// it is a typed error, the deep config a config problem; never a trap.
#[test]
fn deepest_allowed_recursion_fits_the_guest_stack() {
    for levels in [32, 33] {
        let input =
            batch(vec![], vec![span(1, None, "deep", vec![kv("deep", nested_value(levels))])]);
        let mut scrubber = ScrubberInstance::create(component(), "{}").expect("instance");
        let got = scrubber.process(&input).map_err(|e| component_error(Err::<(), _>(e)));
        assert_eq!(got, native("{}", &input), "{levels} levels");
    }
    let deep_config =
        format!(r#"{{"noise": {{"globs": {}"x"{}}}}}"#, "[".repeat(126), "]".repeat(126));
    let mut instance =
        ComponentInstance::new(component(), &InstanceOptions::default()).expect("instance");
    let err = instance
        .create_processor(&deep_config)
        .map(|_| ())
        .expect_err("a nested glob list is not a config");
    assert!(matches!(err, HostError::Processor(Error::InvalidConfig(_))), "{err:?}");
}
