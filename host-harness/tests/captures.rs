//! The recorded SDK captures (`testdata/captures/`) against their golden
//! outputs (`testdata/expected/`), and an independent check of those outputs.
//!
//! The golden half replays every capture through the library with the
//! embedded component and the default config and requires the committed
//! outputs byte for byte. The independent half never runs the processor: it
//! decodes inputs and expected outputs with the `opentelemetry-proto` types
//! and checks, with code written here from the documented rules, that no
//! personal number is left, that exactly the noise and its descendants were
//! dropped, and that every kept span differs from its input only by masked
//! digits. So a golden file regenerated from a broken processor fails here.
//!
//! After an intended change of output: `bash scripts/regen-expected.sh`, then
//! review the diff of `testdata/expected/`.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use support::repo;
use tracescrub::replay::{Session, collect_inputs, replay_file};
use tracescrub::{InstanceOptions, Runtime, config_file, formats, residual};

const REGENERATE: &str = "bash scripts/regen-expected.sh";

fn testdata() -> PathBuf {
    repo("testdata")
}

fn captures_dir() -> PathBuf {
    testdata().join("captures")
}

fn expected_dir() -> PathBuf {
    testdata().join("expected")
}

fn recorded_dir() -> PathBuf {
    testdata().join("capture/recorded")
}

/// Relative paths of every file under `dir`, as `/`-separated strings.
fn relative_files(dir: &Path) -> BTreeSet<String> {
    let inputs = collect_inputs(&[dir.to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    inputs.iter().map(|i| i.relative.to_string_lossy().replace('\\', "/")).collect()
}

// ---------------------------------------------------------------- golden

/// Scenario: every file under `testdata/captures/` replayed through the
/// library (`collect_inputs`, one `Session` with the embedded component and
/// `config_file::default_json()`, `replay_file`), as `tracescrub replay
/// --out testdata/expected testdata/captures` does.
/// Guarantees: no batch fails, no instance traps, and each output equals the
/// committed file under `testdata/expected/` byte for byte; a mismatch names
/// the file and the command that regenerates the golden files.
#[test]
fn replay_of_every_capture_equals_its_expected_file() {
    let runtime = Runtime::new().expect("engine");
    let component = runtime.load_default().expect("embedded component");
    let mut session =
        Session::new(&component, &config_file::default_json(), InstanceOptions::default())
            .expect("default config");
    let inputs = collect_inputs(&[captures_dir()]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        inputs.len() >= 28,
        "expected the recorded captures under {}, found {} files",
        captures_dir().display(),
        inputs.len()
    );

    let mut problems = Vec::new();
    for input in &inputs {
        let raw =
            std::fs::read(&input.path).unwrap_or_else(|e| panic!("{}: {e}", input.path.display()));
        let (report, output) = replay_file(&mut session, &input.path, &raw);
        assert_eq!(
            report.counts.errors,
            0,
            "{}: replay failed: {:?}",
            input.relative.display(),
            report.failures
        );
        assert!(report.counts.batches >= 1, "{}: no batch in it", input.relative.display());
        let output = output.unwrap_or_else(|| panic!("{}: no output", input.relative.display()));
        let expected_path = expected_dir().join(&input.relative);
        let shown = format!("testdata/expected/{}", input.relative.display());
        match std::fs::read(&expected_path) {
            Err(e) => problems.push(format!("{shown}: no expected file ({e})")),
            Ok(expected) if expected != output => {
                let at = expected
                    .iter()
                    .zip(&output)
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.len().min(output.len()));
                problems.push(format!(
                    "{shown}: differs from a fresh replay of testdata/captures/{} (expected {} bytes, got {}; first difference at byte {at})",
                    input.relative.display(),
                    expected.len(),
                    output.len()
                ));
            }
            Ok(_) => {}
        }
    }
    assert_eq!(session.traps, 0, "the component trapped during the replay");
    assert!(
        problems.is_empty(),
        "golden files out of date:\n  {}\nIf the change is intended, regenerate them with `{REGENERATE}` and review the diff.",
        problems.join("\n  ")
    );
}

/// Scenario: the file lists of `testdata/captures/` and `testdata/expected/`.
/// Guarantees: they are the same set of relative paths: no capture lacks a
/// golden file and no golden file is left over from a capture that is gone.
/// Also: the capture directory holds only batch bodies (`NNNN.binpb`,
/// `NNNN.json`, optionally `.gz`), the metadata lives under
/// `testdata/capture/recorded/`.
#[test]
fn expected_files_mirror_the_captures() {
    let captures = relative_files(&captures_dir());
    let expected = relative_files(&expected_dir());
    let missing: Vec<_> = captures.difference(&expected).collect();
    let stale: Vec<_> = expected.difference(&captures).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "testdata/expected/ does not mirror testdata/captures/: missing {missing:?}, stale {stale:?}. Regenerate with `{REGENERATE}`."
    );

    let not_batches: Vec<_> = captures.iter().filter(|p| !is_batch_name(p)).collect();
    assert!(
        not_batches.is_empty(),
        "testdata/captures/ must hold only batch bodies; move these to testdata/capture/recorded/: {not_batches:?}"
    );
    for meta in ["MANIFEST.md", "numbers.json"] {
        assert!(
            recorded_dir().join(meta).is_file(),
            "{meta} missing from {}",
            recorded_dir().display()
        );
    }
    for dir in capture_dirs() {
        for meta in ["index.json", "requests.jsonl"] {
            assert!(
                recorded_dir().join(&dir).join(meta).is_file(),
                "{dir}/{meta} missing from {}",
                recorded_dir().display()
            );
        }
    }
}

/// `<dir>/NNNN.binpb` or `<dir>/NNNN.json`, optionally gzipped.
fn is_batch_name(relative: &str) -> bool {
    let Some((_, name)) = relative.split_once('/') else { return false };
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let Some((stem, ext)) = name.split_once('.') else { return false };
    stem.len() == 4 && stem.bytes().all(|b| b.is_ascii_digit()) && matches!(ext, "binpb" | "json")
}

/// The capture directories (`python-json`, ...), in name order.
fn capture_dirs() -> BTreeSet<String> {
    relative_files(&captures_dir())
        .iter()
        .filter_map(|p| p.split_once('/').map(|(d, _)| d.to_owned()))
        .collect()
}

// ---------------------------------------------------------------- loading

/// One batch of a capture and the same batch of its expected output.
struct Pair {
    /// `<dir>/<file>` and the batch's position in it.
    label: String,
    /// The capture directory.
    dir: String,
    input: ExportTraceServiceRequest,
    output: ExportTraceServiceRequest,
}

/// The protobuf requests in one file, in any format `formats::read` knows.
fn requests(path: &Path) -> Vec<ExportTraceServiceRequest> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, batches) = formats::read(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    batches
        .into_iter()
        .map(|b| {
            let bytes =
                b.bytes.unwrap_or_else(|e| panic!("{} {}: {e}", path.display(), b.location));
            ExportTraceServiceRequest::decode(bytes.as_slice())
                .unwrap_or_else(|e| panic!("{} {}: {e}", path.display(), b.location))
        })
        .collect()
}

/// Every capture batch with its expected output, decoded independently of
/// the processor.
fn pairs() -> Vec<Pair> {
    let mut pairs = Vec::new();
    for relative in relative_files(&captures_dir()) {
        let inputs = requests(&captures_dir().join(&relative));
        let outputs = requests(&expected_dir().join(&relative));
        assert_eq!(
            inputs.len(),
            outputs.len(),
            "{relative}: batch count differs between capture and expected output"
        );
        let dir = relative.split_once('/').map_or(String::new(), |(d, _)| d.to_owned());
        for (i, (input, output)) in inputs.into_iter().zip(outputs).enumerate() {
            pairs.push(Pair {
                label: format!("{relative} batch {i}"),
                dir: dir.clone(),
                input,
                output,
            });
        }
    }
    assert!(pairs.len() >= 28, "expected the recorded captures, found {} batches", pairs.len());
    pairs
}

/// Every span of a request with the resource and scope it sits in.
fn spans(
    req: &ExportTraceServiceRequest,
) -> impl Iterator<Item = (&ResourceSpans, &ScopeSpans, &Span)> {
    req.resource_spans.iter().flat_map(|rs| {
        rs.scope_spans.iter().flat_map(move |ss| ss.spans.iter().map(move |sp| (rs, ss, sp)))
    })
}

type SpanKey = (Vec<u8>, Vec<u8>);

fn key(span: &Span) -> SpanKey {
    (span.trace_id.clone(), span.span_id.clone())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fails listing the first 25 problems, so the message stays readable.
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}\n(golden files are regenerated with `{REGENERATE}`)",
        problems.len(),
        problems.iter().take(25).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

// ---------------------------------------------------------------- personal numbers

/// Scenario: every input batch and every expected output batch scanned with
/// `tracescrub::residual::scan`, which shares no code with the processor.
/// Guarantees: the outputs hold no valid personal number in any field, and
/// the inputs hold many (at least 100), so the check is not vacuous.
#[test]
fn no_personal_number_is_left_in_any_expected_output() {
    let mut in_inputs = 0;
    let mut problems = Vec::new();
    for pair in pairs() {
        in_inputs += residual::scan(&pair.input).len();
        for r in residual::scan(&pair.output) {
            problems.push(format!("{}: span {} field {}", pair.label, r.span_id, r.field));
        }
    }
    assert_no_problems("personal numbers left in the expected outputs", &problems);
    assert!(
        in_inputs >= 100,
        "the captures should hold personal numbers to mask; found only {in_inputs}"
    );
}

/// The digits of `text` with every valid personal number starred (maximal
/// 11-digit runs, and 6 + separator + 5, the separator kept), written here
/// from the documented rules with `residual::is_valid_number` as the only
/// validator.
fn oracle_mask(text: &[u8]) -> Vec<u8> {
    // The README's separators: typed, UTF-8 ones, and form-encoded ones
    // (hex in either case).
    const SEPARATORS: [&str; 10] =
        [" ", "-", "\t", "\u{a0}", "\u{202f}", "\u{2013}", "+", "%20", "%2D", "%C2%A0"];
    let runs = residual::digit_runs(text);
    let mut out = text.to_vec();
    for &(run_start, e) in &runs {
        // The run as written, then without the hex digits of a percent
        // escape that leads it (`%2013097248022`).
        let stripped = if run_start >= 1 && text[run_start - 1] == b'%' {
            run_start + (e - run_start).min(2)
        } else if run_start >= 2
            && text[run_start - 2] == b'%'
            && text[run_start - 1].is_ascii_hexdigit()
        {
            run_start + 1
        } else {
            run_start
        };
        for s in [run_start, stripped] {
            if e - s == 11 && residual::is_valid_number(&text[s..e]) {
                out[s..e].fill(b'*');
                break;
            }
            if e - s != 6 {
                continue;
            }
            let tail = SEPARATORS.iter().find_map(|sep| {
                let t = e + sep.len();
                let joins = text.get(e..t).is_some_and(|j| j.eq_ignore_ascii_case(sep.as_bytes()));
                let five = text.get(t..t + 5).is_some_and(|f| f.iter().all(u8::is_ascii_digit));
                let ends = !text.get(t + 5).is_some_and(u8::is_ascii_digit);
                (joins && five && ends).then_some(t)
            });
            if let Some(t) = tail {
                let joined: Vec<u8> = text[s..e].iter().chain(&text[t..t + 5]).copied().collect();
                if residual::is_valid_number(&joined) {
                    out[s..e].fill(b'*');
                    out[t..t + 5].fill(b'*');
                }
                break;
            }
        }
    }
    out
}

/// Scenario: every string-like field of every kept span (names, keys, string
/// and bytes values at any depth, trace states, status messages) and of its
/// resource and scope, compared with the input masked by `oracle_mask`;
/// every int value compared with whether its 11-digit form is valid.
/// Guarantees: the default mode (`validated`, `stars`) masks exactly the
/// valid personal numbers: look-alikes (bad check digits, 12-digit ids) are
/// left alone and nothing else is touched.
#[test]
fn exactly_the_valid_numbers_are_masked() {
    let mut problems = Vec::new();
    let mut masked = 0usize;
    for pair in pairs() {
        let by_key: HashMap<SpanKey, (&ResourceSpans, &ScopeSpans, &Span)> =
            spans(&pair.input).map(|t| (key(t.2), t)).collect();
        for (rs, ss, out) in spans(&pair.output) {
            let Some(&(in_rs, in_ss, inp)) = by_key.get(&key(out)) else { continue };
            let mut check = |field: String, input: &[u8], output: &[u8]| {
                let want = oracle_mask(input);
                if want != input {
                    masked += 1;
                }
                if want != output {
                    problems.push(format!(
                        "{} span {} {field}: expected {:?}, got {:?}",
                        pair.label,
                        hex(&out.span_id),
                        String::from_utf8_lossy(&star_digits(&want)),
                        String::from_utf8_lossy(&star_digits(output))
                    ));
                }
            };
            walk_strings(
                &in_rs.resource,
                &rs.resource,
                &in_ss.scope,
                &ss.scope,
                inp,
                out,
                &mut check,
            );
            walk_ints(inp, out, &mut |field, i, o| {
                let valid =
                    residual::is_valid_number(format!("{:011}", i.unsigned_abs()).as_bytes());
                let is_masked = matches!(o, Some(Value::StringValue(_)));
                if valid != is_masked {
                    problems.push(format!(
                        "{} span {} {field}: int masked={is_masked}, valid number={valid}",
                        pair.label,
                        hex(&out.span_id)
                    ));
                }
                if valid {
                    masked += 1;
                }
            });
        }
    }
    assert_no_problems("masking differs from the documented rules", &problems);
    assert!(
        masked >= 100,
        "the kept spans should hold personal numbers; found {masked} masked fields"
    );
}

/// A message never quotes a number: runs of 6+ digits are starred (`#`).
fn star_digits(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    let mut i = 0;
    while i < out.len() {
        let s = i;
        while i < out.len() && out[i].is_ascii_digit() {
            i += 1;
        }
        if i - s >= 6 {
            out[s..i].fill(b'#');
        }
        i = i.max(s + 1);
    }
    out
}

type StringCheck<'a> = dyn FnMut(String, &[u8], &[u8]) + 'a;

/// Calls `check(field, input, output)` for every string-like field of a
/// kept span and its resource and scope, input and output side by side.
/// Structural differences are left to `kept_spans_differ_only_by_masked_digits`.
fn walk_strings(
    in_res: &Option<Resource>,
    out_res: &Option<Resource>,
    in_scope: &Option<InstrumentationScope>,
    out_scope: &Option<InstrumentationScope>,
    inp: &Span,
    out: &Span,
    check: &mut StringCheck<'_>,
) {
    if let (Some(i), Some(o)) = (in_res, out_res) {
        walk_attrs("resource.attributes", &i.attributes, &o.attributes, check);
    }
    if let (Some(i), Some(o)) = (in_scope, out_scope) {
        check("scope.name".into(), i.name.as_bytes(), o.name.as_bytes());
        check("scope.version".into(), i.version.as_bytes(), o.version.as_bytes());
        walk_attrs("scope.attributes", &i.attributes, &o.attributes, check);
    }
    check("name".into(), inp.name.as_bytes(), out.name.as_bytes());
    check("trace_state".into(), inp.trace_state.as_bytes(), out.trace_state.as_bytes());
    walk_attrs("attributes", &inp.attributes, &out.attributes, check);
    for (n, (i, o)) in inp.events.iter().zip(&out.events).enumerate() {
        check(format!("events[{n}].name"), i.name.as_bytes(), o.name.as_bytes());
        walk_attrs(&format!("events[{n}].attributes"), &i.attributes, &o.attributes, check);
    }
    for (n, (i, o)) in inp.links.iter().zip(&out.links).enumerate() {
        check(
            format!("links[{n}].trace_state"),
            i.trace_state.as_bytes(),
            o.trace_state.as_bytes(),
        );
        walk_attrs(&format!("links[{n}].attributes"), &i.attributes, &o.attributes, check);
    }
    if let (Some(i), Some(o)) = (&inp.status, &out.status) {
        check("status.message".into(), i.message.as_bytes(), o.message.as_bytes());
    }
}

fn walk_attrs(path: &str, inp: &[KeyValue], out: &[KeyValue], check: &mut StringCheck<'_>) {
    for (n, (i, o)) in inp.iter().zip(out).enumerate() {
        let p = format!("{path}[{n}]");
        check(format!("{p}.key"), i.key.as_bytes(), o.key.as_bytes());
        if let (Some(iv), Some(ov)) = (&i.value, &o.value) {
            walk_value(&p, iv, ov, check);
        }
    }
}

fn walk_value(path: &str, inp: &AnyValue, out: &AnyValue, check: &mut StringCheck<'_>) {
    match (&inp.value, &out.value) {
        (Some(Value::StringValue(i)), Some(Value::StringValue(o))) => {
            check(path.to_owned(), i.as_bytes(), o.as_bytes())
        }
        (Some(Value::BytesValue(i)), Some(Value::BytesValue(o))) => check(path.to_owned(), i, o),
        (Some(Value::ArrayValue(i)), Some(Value::ArrayValue(o))) => {
            for (n, (iv, ov)) in i.values.iter().zip(&o.values).enumerate() {
                walk_value(&format!("{path}[{n}]"), iv, ov, check);
            }
        }
        (Some(Value::KvlistValue(i)), Some(Value::KvlistValue(o))) => {
            walk_attrs(path, &i.values, &o.values, check)
        }
        _ => {}
    }
}

/// Calls `check(field, input int, output value)` for every int attribute
/// value of a span (at any depth), input and output side by side.
fn walk_ints(inp: &Span, out: &Span, check: &mut dyn FnMut(String, i64, &Option<Value>)) {
    fn attrs(
        path: &str,
        inp: &[KeyValue],
        out: &[KeyValue],
        check: &mut dyn FnMut(String, i64, &Option<Value>),
    ) {
        for (n, (i, o)) in inp.iter().zip(out).enumerate() {
            if let (Some(iv), Some(ov)) = (&i.value, &o.value) {
                value(&format!("{path}[{n}]"), iv, ov, check);
            }
        }
    }
    fn value(
        path: &str,
        inp: &AnyValue,
        out: &AnyValue,
        check: &mut dyn FnMut(String, i64, &Option<Value>),
    ) {
        match (&inp.value, &out.value) {
            (Some(Value::IntValue(i)), o) => check(path.to_owned(), *i, o),
            (Some(Value::ArrayValue(i)), Some(Value::ArrayValue(o))) => {
                for (n, (iv, ov)) in i.values.iter().zip(&o.values).enumerate() {
                    value(&format!("{path}[{n}]"), iv, ov, check);
                }
            }
            (Some(Value::KvlistValue(i)), Some(Value::KvlistValue(o))) => {
                attrs(path, &i.values, &o.values, check)
            }
            _ => {}
        }
    }
    attrs("attributes", &inp.attributes, &out.attributes, check);
    for (n, (i, o)) in inp.events.iter().zip(&out.events).enumerate() {
        attrs(&format!("events[{n}].attributes"), &i.attributes, &o.attributes, check);
    }
    for (n, (i, o)) in inp.links.iter().zip(&out.links).enumerate() {
        attrs(&format!("links[{n}].attributes"), &i.attributes, &o.attributes, check);
    }
}

/// Scenario: the look-alikes the capture rig put in the `ordinary` and
/// `mixed` requests (`testdata/capture/recorded/numbers.json`
/// `non_numbers`: bad check digits, a 12-digit id holding a valid number).
/// Guarantees: each survives unmasked in the expected outputs of every
/// capture directory.
#[test]
fn look_alike_numbers_survive() {
    let numbers = read_json(&recorded_dir().join("numbers.json"));
    let look_alikes: Vec<String> = numbers["non_numbers"]
        .as_array()
        .expect("non_numbers")
        .iter()
        .map(|n| n["value"].as_str().expect("value").to_owned())
        .collect();
    assert!(look_alikes.len() >= 3, "{look_alikes:?}");
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for pair in pairs() {
        let mut texts = Vec::new();
        for (_, _, span) in spans(&pair.output) {
            span_texts(span, &mut texts);
        }
        for l in &look_alikes {
            if texts.iter().any(|t| t.contains(l.as_str())) {
                seen.entry(pair.dir.clone()).or_default().insert(l.clone());
            }
        }
    }
    for dir in capture_dirs() {
        for l in &look_alikes {
            assert!(
                seen.get(&dir).is_some_and(|s| s.contains(l)),
                "{dir}: look-alike {l} is missing from the expected outputs (masked?)"
            );
        }
    }
}

/// The span name and every string attribute value of a span.
fn span_texts(span: &Span, texts: &mut Vec<String>) {
    texts.push(span.name.clone());
    for kv in &span.attributes {
        if let Some(AnyValue { value: Some(Value::StringValue(s)) }) = &kv.value {
            texts.push(s.clone());
        }
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------- noise

/// The attributes a span's URL path is read from.
const PATH_ATTRIBUTES: [&str; 5] =
    ["url.path", "http.target", "http.route", "url.full", "http.url"];

/// `value` as a URL path: scheme and authority of an absolute URL removed,
/// query string and fragment cut off.
fn url_path(value: &str) -> &str {
    let value = value.find(['?', '#']).map_or(value, |i| &value[..i]);
    if value.starts_with('/') {
        return value;
    }
    match value.find("://") {
        Some(i) => {
            let rest = &value[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None => value,
    }
}

/// Every URL path the span carries: from its path attributes, and for a
/// server span from a name like `GET /isAlive`.
fn span_paths(span: &Span) -> Vec<String> {
    let mut paths = Vec::new();
    for kv in &span.attributes {
        if PATH_ATTRIBUTES.contains(&kv.key.as_str())
            && let Some(AnyValue { value: Some(Value::StringValue(s)) }) = &kv.value
        {
            paths.push(url_path(s).to_owned());
        }
    }
    if span.kind == SpanKind::Server as i32
        && let Some((method, path)) = span.name.split_once(' ')
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && path.starts_with('/')
    {
        paths.push(url_path(path).to_owned());
    }
    paths
}

/// The platform's noise globs (`*/isAlive`, `*/isReady`, `*/prometheus`,
/// `*/metrics`, `*/actuator/*`, `*/internal/health*`, `*/internal/status*`,
/// ASCII case ignored), spelled out: a glob's `*` matches any run, `/`
/// included, so each is a suffix or substring test. `*/actuator/*` needs a
/// `/` after `actuator`: `/actuator` alone and `/api/actuator-report` are
/// not noise.
fn is_noise_path(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    ["/isalive", "/isready", "/prometheus", "/metrics"].iter().any(|s| p.ends_with(s))
        || ["/actuator/", "/internal/health", "/internal/status"].iter().any(|s| p.contains(s))
}

fn is_noisy(span: &Span) -> bool {
    span_paths(span).iter().any(|p| is_noise_path(p))
}

/// What should happen to an input span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    /// Its own path is noise.
    Noisy,
    /// An ancestor in the same batch and trace is noisy.
    Descendant,
}

/// The fate of every span of a batch, by (trace id, span id).
fn fates(req: &ExportTraceServiceRequest) -> HashMap<SpanKey, Fate> {
    let all: HashMap<SpanKey, &Span> = spans(req).map(|(_, _, s)| (key(s), s)).collect();
    let mut fates = HashMap::new();
    for span in all.values() {
        let fate = if is_noisy(span) {
            Fate::Noisy
        } else {
            let mut seen = HashSet::new();
            let mut parent = (span.trace_id.clone(), span.parent_span_id.clone());
            let mut fate = Fate::Kept;
            while let Some(p) = all.get(&parent) {
                if !seen.insert(parent.clone()) {
                    break; // a cycle: no real trace has one
                }
                if is_noisy(p) {
                    fate = Fate::Descendant;
                    break;
                }
                parent = (p.trace_id.clone(), p.parent_span_id.clone());
            }
            fate
        };
        fates.insert(key(span), fate);
    }
    fates
}

/// Scenario: the paths the capture driver requested
/// (`testdata/capture/recorded/<dir>/index.json`): the `health` group and
/// the `near-miss` group, through this file's noise rule.
/// Guarantees: the independent rule itself is right on the recorded paths:
/// every health path is noise (case variants, query strings, `/actuator/…`,
/// `/internal/healthz`) and no near miss is (`/api/user-metrics`,
/// `/api/actuator-report`, `/actuator`, ...).
#[test]
fn independent_noise_rule_classifies_the_driver_paths() {
    for dir in capture_dirs() {
        let index = read_json(&recorded_dir().join(&dir).join("index.json"));
        for path in group_requests(&index, "health") {
            assert!(is_noise_path(url_path(&path)), "{dir}: health path {path} should be noise");
        }
        let near = group_requests(&index, "near-miss");
        for must in ["/api/user-metrics", "/api/actuator-report"] {
            assert!(
                near.iter().any(|p| p == must),
                "{dir}: near-miss group lacks {must}: {near:?}"
            );
        }
        for path in near {
            assert!(!is_noise_path(url_path(&path)), "{dir}: near miss {path} should not be noise");
        }
    }
}

/// The request paths of one scenario group of a driver index.
fn group_requests(index: &serde_json::Value, group: &str) -> Vec<String> {
    let g = index
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group"] == group))
        .unwrap_or_else(|| panic!("no group {group}"));
    g["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r.as_str().expect("request path").to_owned())
        .collect()
}

/// Scenario: every input span classified by this file's own noise rule
/// (paths from `url.path`, `http.target`, `http.route`, `url.full`,
/// `http.url`, or a server span's `METHOD /path` name) and parent chains
/// within the batch and trace, against the spans of the expected output.
/// Guarantees: a span is in the output (matched by trace and span id) if and
/// only if neither it nor an ancestor in its batch is noise; no output span
/// is noise; no span is duplicated or invented. The captures hold noisy
/// spans and descendants, so this is not vacuous.
#[test]
fn exactly_the_noise_and_its_descendants_are_dropped() {
    let mut problems = Vec::new();
    let (mut noisy, mut descendants, mut kept) = (0, 0, 0);
    for pair in pairs() {
        let fates = fates(&pair.input);
        let out_keys: Vec<SpanKey> = spans(&pair.output).map(|(_, _, s)| key(s)).collect();
        let out_set: HashSet<&SpanKey> = out_keys.iter().collect();
        if out_set.len() != out_keys.len() {
            problems.push(format!("{}: a span id appears twice in the output", pair.label));
        }
        for (_, _, span) in spans(&pair.input) {
            let fate = fates[&key(span)];
            let present = out_set.contains(&key(span));
            match fate {
                Fate::Kept => kept += 1,
                Fate::Noisy => noisy += 1,
                Fate::Descendant => descendants += 1,
            }
            if present != (fate == Fate::Kept) {
                problems.push(format!(
                    "{}: span {} {:?} (paths {:?}) is {:?} but {}",
                    pair.label,
                    hex(&span.span_id),
                    star_digits(span.name.as_bytes()).escape_ascii().to_string(),
                    span_paths(span)
                        .iter()
                        .map(|p| star_digits(p.as_bytes()).escape_ascii().to_string())
                        .collect::<Vec<_>>(),
                    fate,
                    if present { "is still in the output" } else { "is missing from the output" }
                ));
            }
        }
        for (_, _, span) in spans(&pair.output) {
            if !fates.contains_key(&key(span)) {
                problems.push(format!(
                    "{}: output span {} is not in the input",
                    pair.label,
                    hex(&span.span_id)
                ));
            }
            if is_noisy(span) {
                problems.push(format!(
                    "{}: output span {} is noise: paths {:?}",
                    pair.label,
                    hex(&span.span_id),
                    span_paths(span)
                ));
            }
        }
    }
    assert_no_problems("dropped spans differ from the noise rule", &problems);
    assert!(noisy >= 100, "the captures should hold health checks; found {noisy} noisy spans");
    assert!(
        descendants >= 100,
        "the captures should hold children of health checks; found {descendants}"
    );
    assert!(kept >= 400, "the captures should hold ordinary spans; found {kept}");
}

/// Scenario: the near-miss paths the driver requested (`/api/user-metrics`,
/// `/api/actuator-report`, `/api/metricsfoo`, `/actuator`, `/isAliveness`,
/// read from `testdata/capture/recorded/<dir>/index.json`).
/// Guarantees: in every capture directory, each has a span in the input and
/// still has one in the expected output.
#[test]
fn near_miss_paths_are_kept() {
    let pairs = pairs();
    for dir in capture_dirs() {
        let index = read_json(&recorded_dir().join(&dir).join("index.json"));
        let near = group_requests(&index, "near-miss");
        assert!(near.len() >= 5, "{dir}: {near:?}");
        let paths_in = |pick: fn(&Pair) -> &ExportTraceServiceRequest| -> HashSet<String> {
            pairs
                .iter()
                .filter(|p| p.dir == dir)
                .flat_map(|p| spans(pick(p)).flat_map(|(_, _, s)| span_paths(s)))
                .collect()
        };
        let (inputs, outputs) = (paths_in(|p| &p.input), paths_in(|p| &p.output));
        for path in &near {
            assert!(inputs.contains(path), "{dir}: no input span has path {path}");
            assert!(
                outputs.contains(path),
                "{dir}: the span with path {path} was dropped; it is not noise"
            );
        }
    }
}

// ---------------------------------------------------------------- kept spans unchanged

/// Compares a kept span field by field.
struct Diff<'a> {
    label: &'a str,
    span: String,
    problems: &'a mut Vec<String>,
}

impl Diff<'_> {
    fn fail(&mut self, field: &str, what: String) {
        self.problems.push(format!("{} span {} {field}: {what}", self.label, self.span));
    }

    fn exact<T: PartialEq + std::fmt::Debug>(&mut self, field: &str, a: &T, b: &T) {
        if a != b {
            self.fail(field, format!("{a:?} became {b:?}"));
        }
    }

    /// Same length; where they differ, a digit became `*`.
    fn masked(&mut self, field: &str, a: &[u8], b: &[u8]) {
        if a.len() != b.len() {
            self.fail(field, format!("length {} became {}", a.len(), b.len()));
            return;
        }
        if let Some(i) =
            a.iter().zip(b).position(|(x, y)| x != y && !(x.is_ascii_digit() && *y == b'*'))
        {
            self.fail(
                field,
                format!(
                    "byte {i} {:?} became {:?}, not a masked digit",
                    a[i] as char, b[i] as char
                ),
            );
        }
    }

    fn attrs(&mut self, field: &str, a: &[KeyValue], b: &[KeyValue]) {
        if a.len() != b.len() {
            return self.fail(field, format!("{} attributes became {}", a.len(), b.len()));
        }
        for (n, (x, y)) in a.iter().zip(b).enumerate() {
            let f = format!("{field}[{n}]");
            self.masked(&format!("{f}.key"), x.key.as_bytes(), y.key.as_bytes());
            self.exact(&format!("{f}.key_strindex"), &x.key_strindex, &y.key_strindex);
            self.value(&f, x.value.as_ref(), y.value.as_ref());
        }
    }

    fn value(&mut self, field: &str, a: Option<&AnyValue>, b: Option<&AnyValue>) {
        let (a, b) = (a.and_then(|v| v.value.as_ref()), b.and_then(|v| v.value.as_ref()));
        match (a, b) {
            (None, None) => {}
            (Some(Value::StringValue(x)), Some(Value::StringValue(y))) => {
                self.masked(field, x.as_bytes(), y.as_bytes())
            }
            (Some(Value::BytesValue(x)), Some(Value::BytesValue(y))) => self.masked(field, x, y),
            (Some(Value::IntValue(x)), Some(Value::IntValue(y))) => self.exact(field, x, y),
            (Some(Value::IntValue(x)), Some(Value::StringValue(y))) => {
                let stars = "*".repeat(11);
                let ok = *y == stars || (*x < 0 && *y == format!("-{stars}"));
                if !ok {
                    self.fail(field, format!("int became string {y:?}, not 11 stars"));
                }
            }
            (Some(Value::DoubleValue(x)), Some(Value::DoubleValue(y))) => {
                self.exact(field, &x.to_bits(), &y.to_bits())
            }
            (Some(Value::BoolValue(x)), Some(Value::BoolValue(y))) => self.exact(field, x, y),
            (Some(Value::ArrayValue(x)), Some(Value::ArrayValue(y))) => {
                if x.values.len() != y.values.len() {
                    return self.fail(
                        field,
                        format!("array of {} became {}", x.values.len(), y.values.len()),
                    );
                }
                for (n, (xv, yv)) in x.values.iter().zip(&y.values).enumerate() {
                    self.value(&format!("{field}[{n}]"), Some(xv), Some(yv));
                }
            }
            (Some(Value::KvlistValue(x)), Some(Value::KvlistValue(y))) => {
                self.attrs(field, &x.values, &y.values)
            }
            (Some(Value::StringValueStrindex(x)), Some(Value::StringValueStrindex(y))) => {
                self.exact(field, x, y)
            }
            (a, b) => {
                self.fail(field, format!("value kind changed: {} became {}", kind(a), kind(b)))
            }
        }
    }

    fn resource(&mut self, a: Option<&Resource>, b: Option<&Resource>) {
        match (a, b) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                self.attrs("resource.attributes", &x.attributes, &y.attributes);
                self.exact(
                    "resource.dropped_attributes_count",
                    &x.dropped_attributes_count,
                    &y.dropped_attributes_count,
                );
                self.exact("resource.entity_refs", &x.entity_refs, &y.entity_refs);
            }
            _ => self.fail(
                "resource",
                format!("presence changed: {} became {}", a.is_some(), b.is_some()),
            ),
        }
    }

    fn scope(&mut self, a: Option<&InstrumentationScope>, b: Option<&InstrumentationScope>) {
        match (a, b) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                self.masked("scope.name", x.name.as_bytes(), y.name.as_bytes());
                self.masked("scope.version", x.version.as_bytes(), y.version.as_bytes());
                self.attrs("scope.attributes", &x.attributes, &y.attributes);
                self.exact(
                    "scope.dropped_attributes_count",
                    &x.dropped_attributes_count,
                    &y.dropped_attributes_count,
                );
            }
            _ => self
                .fail("scope", format!("presence changed: {} became {}", a.is_some(), b.is_some())),
        }
    }

    fn span(&mut self, a: &Span, b: &Span) {
        self.exact("trace_id", &a.trace_id, &b.trace_id);
        self.exact("span_id", &a.span_id, &b.span_id);
        self.exact("parent_span_id", &a.parent_span_id, &b.parent_span_id);
        self.exact("flags", &a.flags, &b.flags);
        self.exact("kind", &a.kind, &b.kind);
        self.exact("start_time_unix_nano", &a.start_time_unix_nano, &b.start_time_unix_nano);
        self.exact("end_time_unix_nano", &a.end_time_unix_nano, &b.end_time_unix_nano);
        self.exact(
            "dropped_attributes_count",
            &a.dropped_attributes_count,
            &b.dropped_attributes_count,
        );
        self.exact("dropped_events_count", &a.dropped_events_count, &b.dropped_events_count);
        self.exact("dropped_links_count", &a.dropped_links_count, &b.dropped_links_count);
        self.masked("name", a.name.as_bytes(), b.name.as_bytes());
        self.masked("trace_state", a.trace_state.as_bytes(), b.trace_state.as_bytes());
        self.attrs("attributes", &a.attributes, &b.attributes);
        self.events(&a.events, &b.events);
        self.links(&a.links, &b.links);
        self.status(a.status.as_ref(), b.status.as_ref());
    }

    fn events(&mut self, a: &[Event], b: &[Event]) {
        if a.len() != b.len() {
            return self.fail("events", format!("{} events became {}", a.len(), b.len()));
        }
        for (n, (x, y)) in a.iter().zip(b).enumerate() {
            self.exact(
                &format!("events[{n}].time_unix_nano"),
                &x.time_unix_nano,
                &y.time_unix_nano,
            );
            self.masked(&format!("events[{n}].name"), x.name.as_bytes(), y.name.as_bytes());
            self.attrs(&format!("events[{n}].attributes"), &x.attributes, &y.attributes);
            self.exact(
                &format!("events[{n}].dropped_attributes_count"),
                &x.dropped_attributes_count,
                &y.dropped_attributes_count,
            );
        }
    }

    fn links(&mut self, a: &[Link], b: &[Link]) {
        if a.len() != b.len() {
            return self.fail("links", format!("{} links became {}", a.len(), b.len()));
        }
        for (n, (x, y)) in a.iter().zip(b).enumerate() {
            self.exact(&format!("links[{n}].trace_id"), &x.trace_id, &y.trace_id);
            self.exact(&format!("links[{n}].span_id"), &x.span_id, &y.span_id);
            self.exact(&format!("links[{n}].flags"), &x.flags, &y.flags);
            self.masked(
                &format!("links[{n}].trace_state"),
                x.trace_state.as_bytes(),
                y.trace_state.as_bytes(),
            );
            self.attrs(&format!("links[{n}].attributes"), &x.attributes, &y.attributes);
            self.exact(
                &format!("links[{n}].dropped_attributes_count"),
                &x.dropped_attributes_count,
                &y.dropped_attributes_count,
            );
        }
    }

    fn status(&mut self, a: Option<&Status>, b: Option<&Status>) {
        match (a, b) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                self.exact("status.code", &x.code, &y.code);
                self.masked("status.message", x.message.as_bytes(), y.message.as_bytes());
            }
            _ => self.fail(
                "status",
                format!("presence changed: {} became {}", a.is_some(), b.is_some()),
            ),
        }
    }
}

fn kind(v: Option<&Value>) -> &'static str {
    match v {
        None => "none",
        Some(Value::StringValue(_)) => "string",
        Some(Value::BoolValue(_)) => "bool",
        Some(Value::IntValue(_)) => "int",
        Some(Value::DoubleValue(_)) => "double",
        Some(Value::ArrayValue(_)) => "array",
        Some(Value::KvlistValue(_)) => "kvlist",
        Some(Value::BytesValue(_)) => "bytes",
        Some(Value::StringValueStrindex(_)) => "string index",
    }
}

/// Scenario: every span of every expected output next to the input span
/// with the same (trace id, span id), with the resource and scope each sits
/// in.
/// Guarantees: ids, parent, kind, times, flags and dropped counts are
/// unchanged; every string (names, keys, values at any depth, trace states,
/// status messages, event and link fields, resource and scope fields) and
/// every bytes value has the same length and differs only where an input
/// digit became `*`; an int value is unchanged or became 11 stars; attribute,
/// event, link and array counts and value kinds are unchanged. Some spans do
/// differ (masking happened), so the check is not vacuous.
#[test]
fn kept_spans_differ_only_by_masked_digits() {
    let mut problems = Vec::new();
    let (mut compared, mut changed) = (0, 0);
    for pair in pairs() {
        let by_key: HashMap<SpanKey, (&ResourceSpans, &ScopeSpans, &Span)> =
            spans(&pair.input).map(|t| (key(t.2), t)).collect();
        for (rs, ss, out) in spans(&pair.output) {
            let Some(&(in_rs, in_ss, inp)) = by_key.get(&key(out)) else {
                problems.push(format!(
                    "{}: output span {} is not in the input",
                    pair.label,
                    hex(&out.span_id)
                ));
                continue;
            };
            let mut diff =
                Diff { label: &pair.label, span: hex(&out.span_id), problems: &mut problems };
            diff.span(inp, out);
            diff.resource(in_rs.resource.as_ref(), rs.resource.as_ref());
            diff.scope(in_ss.scope.as_ref(), ss.scope.as_ref());
            diff.exact("resource_spans.schema_url", &in_rs.schema_url, &rs.schema_url);
            diff.exact("scope_spans.schema_url", &in_ss.schema_url, &ss.schema_url);
            compared += 1;
            if inp != out {
                changed += 1;
            }
        }
    }
    assert_no_problems("kept spans changed beyond masking", &problems);
    assert!(compared >= 400, "expected the kept spans of the captures; compared {compared}");
    assert!(
        changed >= 100,
        "expected masked spans among the kept ones; {changed} differ from their input"
    );
}
