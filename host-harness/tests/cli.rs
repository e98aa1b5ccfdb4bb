//! The `tracescrub` command line, run as a user runs it: every input format
//! derived from real captured batches (`testdata/captures`), the text and
//! JSON reports, malformed input, audits, config checks, `inspect`, `--help`
//! and bad arguments.
//!
//! Expected figures come from the native engine
//! (`tracescrub_processor::Processor`) run on the same batches, so the CLI,
//! the component and the format code are checked against something that
//! shares none of their plumbing. Each CLI run compiles the component again
//! (1-3 s in a debug build), so the tests keep the number of runs small.

mod support;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use support::repo;
use tracescrub::formats::{self, Encoding, Format};
use tracescrub::residual::{self, numbers_in};
use tracescrub_processor::{Processor, Stats};

/// The fictional personal numbers the capture rig puts into the batches
/// (`testdata/capture/personal_numbers.py`).
const PERSONAL_NUMBERS: [&str; 5] =
    ["17053650260", "03093750062", "64083850068", "11463550036", "28848510043"];

fn captures() -> PathBuf {
    repo("testdata/captures")
}

/// What one run of the CLI did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// Everything it printed, for assertion messages.
    fn dump(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }

    /// The line that starts with `prefix`.
    fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}\n{}", self.dump()))
    }
}

fn tracescrub(args: &[&dyn AsRef<OsStr>]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tracescrub"))
        .args(args.iter().map(|a| a.as_ref()))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run tracescrub");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The value of `key=` among the whitespace-separated words of a report line.
fn figure(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}= in {line:?}: {e}"))
}

/// Collapses every run of whitespace to one space, so wrapped help text
/// compares with the sentence it wraps.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn native() -> &'static Processor {
    static NATIVE: OnceLock<Processor> = OnceLock::new();
    NATIVE.get_or_init(|| Processor::new("{}").expect("the default config"))
}

/// The batch a capture file holds, as protobuf.
fn capture_batch(rel: &str) -> Vec<u8> {
    let raw = std::fs::read(captures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let (_, batches) = formats::read(&raw).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(batches.len(), 1, "{rel}");
    batches
        .into_iter()
        .next()
        .and_then(|b| b.bytes.ok())
        .unwrap_or_else(|| panic!("{rel} does not read"))
}

/// Three real batches: A, lookups with personal numbers (Python, protobuf);
/// B, the same lookups (Node, captured as JSON); C, health checks only.
fn bases() -> &'static [Vec<u8>; 3] {
    static BASES: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    BASES.get_or_init(|| {
        let bases = [
            capture_batch("python-protobuf/0003.binpb"),
            capture_batch("node-json/0003.json"),
            capture_batch("python-protobuf/0001.binpb"),
        ];
        let [a, b, c] =
            [0, 1, 2].map(|i| native().process(&bases[i]).expect("captures process").stats);
        // The captures are what the tests assume: numbers to mask in A and
        // B, and nothing but noise in C.
        assert!(a.values_masked > 0 && b.values_masked > 0 && a.spans_dropped == 0, "{a:?} {b:?}");
        assert!(c.spans_in > 0 && c.spans_dropped == c.spans_in && c.values_masked == 0, "{c:?}");
        bases
    })
}

/// Figures as the CLI reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    batches: u64,
    spans_in: u64,
    spans_out: u64,
    dropped: u64,
    masked: u64,
}

impl Totals {
    fn of(batches: &[&[u8]]) -> Totals {
        let mut t = Totals::default();
        for b in batches {
            t.add(&native().process(b).expect("processes natively").stats);
        }
        t
    }

    /// The native engine's figures for every batch of a (good) file.
    fn of_file(path: &Path) -> Totals {
        let raw = std::fs::read(path).expect("input");
        let batches: Vec<Vec<u8>> = formats::read(&raw)
            .expect("reads")
            .1
            .into_iter()
            .map(|b| b.bytes.expect("batch"))
            .collect();
        Totals::of(&batches.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    fn add(&mut self, s: &Stats) {
        self.batches += 1;
        self.spans_in += s.spans_in;
        self.spans_out += s.spans_out;
        self.dropped += s.spans_dropped;
        self.masked += s.values_masked;
    }

    fn times(self, n: u64) -> Totals {
        Totals {
            batches: self.batches * n,
            spans_in: self.spans_in * n,
            spans_out: self.spans_out * n,
            dropped: self.dropped * n,
            masked: self.masked * n,
        }
    }

    fn total_line(self, files: usize, errors: u64) -> String {
        format!(
            "total: files={files} batches={} spans_in={} spans_out={} dropped={} masked={} errors={errors}",
            self.batches, self.spans_in, self.spans_out, self.dropped, self.masked
        )
    }

    /// The figures of a per-file report line.
    fn from_line(line: &str) -> Totals {
        Totals {
            batches: figure(line, "batches"),
            spans_in: figure(line, "spans_in"),
            spans_out: figure(line, "spans_out"),
            dropped: figure(line, "dropped"),
            masked: figure(line, "masked"),
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn decode(batch: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(batch).expect("a protobuf request")
}

/// OTLP JSON, as `opentelemetry-proto`'s serde mapping writes it.
fn json(batch: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&decode(batch)).expect("to JSON")
}

/// The protobuf the CLI reads from [`json`]`(batch)`.
fn from_json(batch: &[u8]) -> Vec<u8> {
    let (_, mut batches) = formats::read(&json(batch)).expect("reads");
    batches.remove(0).bytes.expect("OTLP JSON")
}

fn json_lines(batches: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in batches {
        out.extend(json(b));
        out.push(b'\n');
    }
    out
}

fn length_prefixed(batches: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in batches {
        out.extend(u32::try_from(b.len()).expect("fits").to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

fn put(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Protobuf,
    Json,
    JsonLines,
    LengthPrefixed,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Protobuf, Kind::Json, Kind::JsonLines, Kind::LengthPrefixed];

    fn dir(self) -> &'static str {
        match self {
            Kind::Protobuf => "protobuf",
            Kind::Json => "json",
            Kind::JsonLines => "jsonl",
            Kind::LengthPrefixed => "length-prefixed",
        }
    }
}

/// Writes the three base batches under `dir` in `kind`, once plain and once
/// gzipped, in nested directories, and returns each file's relative path and
/// format. One-request formats get a file per batch, B's under the other
/// format's name (protobuf in `b.json`, JSON in `b.binpb`), so detection is
/// seen not to trust names; the others hold all three batches in one file.
fn write_inputs(dir: &Path, kind: Kind) -> Vec<(String, Format)> {
    let [a, b, c] = bases().each_ref().map(Vec::as_slice);
    let (encoding, contents): (Encoding, Vec<(&str, Vec<u8>)>) = match kind {
        Kind::Protobuf => (
            Encoding::Protobuf,
            vec![
                ("a.binpb", a.to_vec()),
                ("b.json", b.to_vec()),
                ("nested/deep/c.binpb", c.to_vec()),
            ],
        ),
        Kind::Json => (
            Encoding::Json,
            vec![("a.json", json(a)), ("b.binpb", json(b)), ("nested/deep/c.json", json(c))],
        ),
        Kind::JsonLines => (Encoding::JsonLines, vec![("abc.jsonl", json_lines(&[a, b, c]))]),
        Kind::LengthPrefixed => {
            (Encoding::LengthPrefixed, vec![("abc.pb", length_prefixed(&[a, b, c]))])
        }
    };
    let mut files = Vec::new();
    for (rel, bytes) in contents {
        put(dir, rel, &bytes);
        files.push((rel.to_owned(), Format { encoding, gzip: false }));
        let zipped = format!("gz/more/{rel}.gz");
        put(dir, &zipped, &gzip(&bytes));
        files.push((zipped, Format { encoding, gzip: true }));
    }
    files
}

/// Checks that `out/rel` is `input/rel` processed: same format, and each
/// batch the native engine's output for the input's batch.
fn assert_output_is_processed_input(input: &Path, out: &Path, rel: &str, format: Format) {
    let raw_in = std::fs::read(input.join(rel)).expect("input");
    let raw_out = std::fs::read(out.join(rel)).unwrap_or_else(|e| panic!("output {rel}: {e}"));
    let (in_format, in_batches) = formats::read(&raw_in).expect("input reads");
    assert_eq!(in_format, format, "{rel}: fixture");
    let (out_format, out_batches) =
        formats::read(&raw_out).unwrap_or_else(|e| panic!("output {rel}: {e}"));
    assert_eq!(out_format, format, "{rel}: output in another format than its input");
    assert_eq!(out_batches.len(), in_batches.len(), "{rel}");
    for (i, (inb, outb)) in in_batches.into_iter().zip(out_batches).enumerate() {
        let expected = native().process(&inb.bytes.expect("input batch")).expect("processes").batch;
        let got = outb.bytes.unwrap_or_else(|e| panic!("{rel} batch {i}: {e}"));
        assert_eq!(decode(&got), decode(&expected), "{rel} batch {i}");
        if matches!(format.encoding, Encoding::Protobuf | Encoding::LengthPrefixed) {
            assert_eq!(got, expected, "{rel} batch {i}: protobuf output is the engine's bytes");
        }
    }
}

/// Replays one kind of input into `--out` and checks the report and every
/// output against the native engine.
fn check_replay(kind: Kind) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let files = write_inputs(&input, kind);
    let run = tracescrub(&[&"replay", &"--out", &out, &input]);
    assert_eq!(run.code, Some(0), "{}", run.dump());

    // Every file holds A, B and C once, plain and gzipped: twice the bases,
    // whatever the format.
    let [a, b, c] = bases().each_ref().map(Vec::as_slice);
    let per_copy = Totals::of(&[a, b, c]);
    assert_eq!(run.last_line(), per_copy.times(2).total_line(files.len(), 0), "{}", run.dump());

    for (rel, format) in &files {
        let line = run.line(&format!("{}: ", input.join(rel).display()));
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(format!("format={format}").as_str()),
            "{line}"
        );
        assert_eq!(Totals::from_line(line), Totals::of_file(&input.join(rel)), "{line}");
        assert_eq!(figure(line, "errors"), 0, "{line}");
        assert_output_is_processed_input(&input, &out, rel, *format);
    }
    let mut expected: Vec<PathBuf> = files.iter().map(|(rel, _)| PathBuf::from(rel)).collect();
    expected.sort();
    assert_eq!(files_under(&out), expected, "exactly one output per input, at its relative path");
}

/// Scenario: A, B and C as OTLP protobuf files (B named `b.json`), plain
/// and gzipped, in nested directories, replayed with `--out`.
/// Guarantees: exit 0; the last line is the exact `total:` line with the
/// native engine's figures; each output sits at its input's relative path,
/// is protobuf (gzipped where the input was) and holds the engine's bytes;
/// the misnamed file is read as protobuf.
#[test]
fn replay_protobuf_files() {
    check_replay(Kind::Protobuf);
}

/// Scenario: the same batches as OTLP JSON files (B's named `b.binpb`),
/// plain and gzipped, nested, replayed with `--out`.
/// Guarantees: the same figures as for protobuf (JSON changes nothing about
/// what is dropped and masked); each output is JSON (gzipped where the
/// input was) decoding to the engine's output; `b.binpb` is read as JSON.
#[test]
fn replay_json_files() {
    check_replay(Kind::Json);
}

/// Scenario: the same batches as one JSON-lines file (one request a line),
/// plain and gzipped, replayed with `--out`.
/// Guarantees: three batches a file, the same figures as the other formats,
/// and outputs in JSON lines with one processed request a line.
#[test]
fn replay_json_lines_files() {
    check_replay(Kind::JsonLines);
}

/// Scenario: the same batches as one length-prefixed protobuf file (the
/// collector file exporter's `proto` format), plain and gzipped.
/// Guarantees: three records a file, the same figures as the other
/// formats, and outputs length-prefixed with the engine's bytes as records.
#[test]
fn replay_length_prefixed_files() {
    check_replay(Kind::LengthPrefixed);
}

/// Scenario: every format at once (16 files), replayed with
/// `--report json`.
/// Guarantees: exit 0; valid JSON with one entry per file, carrying its
/// detected format and the figures the text report prints for it (the
/// native engine's, which the per-format tests pin the text lines to), and
/// a total that, written as a `total:` line, is exactly the text report's.
#[test]
fn replay_json_report_matches_the_text_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for kind in Kind::ALL {
        let dir = tmp.path().join(kind.dir());
        files.extend(
            write_inputs(&dir, kind).into_iter().map(|(rel, format)| (dir.join(rel), format)),
        );
    }
    let run = tracescrub(&[&"replay", &"--report", &"json", &tmp.path()]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.dump()));
    let number = |v: &serde_json::Value, key: &str| {
        v[key].as_u64().unwrap_or_else(|| panic!("no number {key} in {v}"))
    };

    let entries = doc["files"].as_array().expect("a files array");
    assert_eq!(entries.len(), files.len());
    for (path, format) in &files {
        let path = path.display().to_string();
        let entry = entries
            .iter()
            .find(|e| e["path"] == path.as_str())
            .unwrap_or_else(|| panic!("no entry for {path}"));
        assert_eq!(entry["format"], format.to_string().as_str(), "{path}");
        let figures = Totals {
            batches: number(entry, "batches"),
            spans_in: number(entry, "spans_in"),
            spans_out: number(entry, "spans_out"),
            dropped: number(entry, "dropped"),
            masked: number(entry, "masked"),
        };
        assert_eq!(figures, Totals::of_file(Path::new(&path)), "{path}");
        assert_eq!(number(entry, "errors"), 0, "{path}");
        assert!(entry.get("failures").is_none(), "{path}");
    }

    let t = &doc["total"];
    let as_text = format!(
        "total: files={} batches={} spans_in={} spans_out={} dropped={} masked={} errors={}",
        number(t, "files"),
        number(t, "batches"),
        number(t, "spans_in"),
        number(t, "spans_out"),
        number(t, "dropped"),
        number(t, "masked"),
        number(t, "errors")
    );
    let [a, b, c] = bases().each_ref().map(Vec::as_slice);
    assert_eq!(as_text, Totals::of(&[a, b, c]).times(8).total_line(files.len(), 0));
}

/// Scenario: a protobuf file cut off halfway, next to a good file, replayed
/// with `--out`.
/// Guarantees: exit 1; the cut file is reported with its path, the byte
/// where decoding failed and why; its batch counts as the one error; the
/// good file is still processed and written.
#[test]
fn replay_reports_a_truncated_protobuf_file_and_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let [a, _, c] = bases().each_ref().map(Vec::as_slice);
    put(&input, "good.binpb", c);
    put(&input, "sub/truncated.binpb", &a[..a.len() / 2]);
    let run = tracescrub(&[&"replay", &"--out", &out, &input]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let bad = input.join("sub/truncated.binpb");
    let error = run.line(&format!("  error: {}: malformed batch at byte ", bad.display()));
    assert!(error.contains("remain"), "the reason: {error}");
    let line = run.line(&format!("{}: ", bad.display()));
    assert_eq!(
        (figure(line, "batches"), figure(line, "errors"), figure(line, "spans_in")),
        (1, 1, 0),
        "{line}"
    );
    let mut expected = Totals::of(&[c]);
    expected.batches = 2;
    assert_eq!(run.last_line(), expected.total_line(2, 1));
    assert_output_is_processed_input(
        &input,
        &out,
        "good.binpb",
        Format { encoding: Encoding::Protobuf, gzip: false },
    );
}

/// Scenario: a JSON-lines file with one line that is not JSON between two
/// good lines, next to a good protobuf file, replayed with `--out`.
/// Guarantees: exit 1; the bad line is reported by number with the JSON
/// parser's reason; the good lines and the other file are processed; the
/// output holds the two good lines processed, not the bad one.
#[test]
fn replay_reports_a_bad_json_line_and_keeps_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let [a, b, c] = bases().each_ref().map(Vec::as_slice);
    let mut lines = json(a);
    lines.extend(b"\n{\"resourceSpans\": [{\"scopeSpans\": \n");
    lines.extend(json(b));
    lines.push(b'\n');
    put(&input, "lines.jsonl", &lines);
    put(&input, "other.binpb", c);
    let run = tracescrub(&[&"replay", &"--out", &out, &input]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let path = input.join("lines.jsonl");
    let error =
        run.line(&format!("  error: {}: line 2: not OTLP JSON (line 1 column ", path.display()));
    assert!(error.contains("EOF"), "the reason: {error}");
    assert_eq!(run.stdout.matches("  error: ").count(), 1, "{}", run.dump());
    let line = run.line(&format!("{}: format=jsonl ", path.display()));
    let mut expected = Totals::of(&[a, b]);
    expected.batches = 3;
    assert_eq!(Totals::from_line(line), expected, "{line}");
    let mut all = Totals::of(&[a, b, c]);
    all.batches = 4;
    assert_eq!(run.last_line(), all.total_line(2, 1));

    let (format, batches) =
        formats::read(&std::fs::read(out.join("lines.jsonl")).expect("output")).expect("reads");
    assert_eq!(format, Format { encoding: Encoding::JsonLines, gzip: false });
    let got: Vec<_> = batches.into_iter().map(|b| decode(&b.bytes.expect("good line"))).collect();
    let want: Vec<_> = [a, b]
        .iter()
        .map(|x| decode(&native().process(&from_json(x)).expect("processes").batch))
        .collect();
    assert_eq!(got, want, "the good lines, processed, and nothing for the bad one");
    assert_output_is_processed_input(
        &input,
        &out,
        "other.binpb",
        Format { encoding: Encoding::Protobuf, gzip: false },
    );
}

/// Scenario: a gzipped length-prefixed file whose middle record has a
/// correct length but cut-off protobuf, next to a good JSON file.
/// Guarantees: exit 1; the record is reported by index and byte offset
/// with the decoder's reason; the output keeps the other two records,
/// processed, still length-prefixed and gzipped; the JSON file is written.
#[test]
fn replay_reports_a_broken_length_prefixed_record_and_keeps_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let [a, b, c] = bases().each_ref().map(Vec::as_slice);
    put(&input, "records.pb.gz", &gzip(&length_prefixed(&[a, &b[..b.len() / 3], c])));
    put(&input, "doc.json", &json(b));
    let run = tracescrub(&[&"replay", &"--out", &out, &input]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let path = input.join("records.pb.gz");
    run.line(&format!(
        "  error: {}: record 1 at byte {}: malformed batch at byte ",
        path.display(),
        4 + a.len()
    ));
    assert_eq!(run.stdout.matches("  error: ").count(), 1, "{}", run.dump());
    let line = run.line(&format!("{}: format=length-prefixed+gzip ", path.display()));
    let mut expected = Totals::of(&[a, c]);
    expected.batches = 3;
    assert_eq!(Totals::from_line(line), expected, "{line}");
    assert_eq!(figure(line, "errors"), 1);

    let (format, batches) =
        formats::read(&std::fs::read(out.join("records.pb.gz")).expect("output")).expect("reads");
    assert_eq!(format, Format { encoding: Encoding::LengthPrefixed, gzip: true });
    let got: Vec<Vec<u8>> = batches.into_iter().map(|b| b.bytes.expect("record")).collect();
    let want: Vec<Vec<u8>> =
        [a, c].iter().map(|x| native().process(x).expect("processes").batch).collect();
    assert_eq!(got, want, "records 0 and 2, processed; record 1 left out");
    assert_output_is_processed_input(
        &input,
        &out,
        "doc.json",
        Format { encoding: Encoding::Json, gzip: false },
    );
}

/// Regression, fixed: a file whose only batch fails (here a cut-off protobuf file) still
/// gets an output file under `--out`: an empty one, which reads back as a
/// valid, empty OTLP request, so the failed batch looks processed
/// downstream.
/// Scenario: `replay --out` over a truncated protobuf file.
/// Guarantees: the run fails and no output is written for that file.
#[test]
fn replay_out_writes_no_file_when_every_batch_failed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let a = &bases()[0];
    put(&input, "truncated.binpb", &a[..a.len() / 2]);
    let run = tracescrub(&[&"replay", &"--out", &out, &input]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let written = out.join("truncated.binpb");
    assert!(
        !written.exists(),
        "{} was written ({} bytes) for a batch that failed",
        written.display(),
        std::fs::metadata(&written).map_or(0, |m| m.len())
    );
}

/// Regression, fixed: two inputs with the same relative path (two capture directories
/// that both hold `0001.binpb`) are both written to the same output path;
/// the second silently replaces the first, with exit 0 and `files=2`.
/// Scenario: `replay --out OUT dir1 dir2`, each dir with a `0001.binpb`.
/// Guarantees: either both outputs are kept or the run says it cannot.
#[test]
fn replay_out_keeps_same_named_inputs_apart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let (one, two) = (tmp.path().join("python"), tmp.path().join("node"));
    put(&one, "0001.binpb", &bases()[0]);
    put(&two, "0001.binpb", &bases()[2]);
    let run = tracescrub(&[&"replay", &"--out", &out, &one, &two]);
    let outputs = files_under(&out);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(outputs.len(), 2, "each input keeps its own output: {outputs:?}\n{}", run.dump());
}

/// Regression, fixed: one OTLP JSON document, pretty-printed over many lines and cut off
/// (an interrupted capture), is taken for JSON lines: every line is
/// reported as a batch of its own that failed (hundreds of `line N` errors,
/// `batches=` the line count) instead of one bad document.
/// Scenario: replay of a pretty-printed JSON capture cut in half.
/// Guarantees: one batch, one error, exit 1.
#[test]
fn replay_reports_a_truncated_pretty_printed_json_file_as_one_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pretty = serde_json::to_vec_pretty(&decode(&bases()[1])).expect("JSON");
    let path = tmp.path().join("capture.json");
    std::fs::write(&path, &pretty[..pretty.len() / 2]).expect("write");
    let run = tracescrub(&[&"replay", &path]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        run.last_line(),
        "total: files=1 batches=1 spans_in=0 spans_out=0 dropped=0 masked=0 errors=1",
        "{} error lines",
        run.stdout.matches("  error: ").count()
    );
}

/// Copies the captured batches (`NNNN.binpb`, `NNNN.json`, their `.gz`) into
/// `dir`, one subdirectory per capture directory; returns how many.
fn copy_captures(dir: &Path) -> Vec<PathBuf> {
    let mut copied = Vec::new();
    for sub in std::fs::read_dir(captures()).expect("captures") {
        let sub = sub.expect("entry").path();
        if !sub.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&sub).expect("capture dir") {
            let file = file.expect("entry").path();
            let name = file.file_name().and_then(OsStr::to_str).unwrap_or_default();
            let stem = name.split('.').next().unwrap_or_default();
            let ext = &name[stem.len()..];
            if stem.len() == 4
                && stem.bytes().all(|b| b.is_ascii_digit())
                && [".binpb", ".json", ".binpb.gz", ".json.gz"].contains(&ext)
            {
                let target = dir.join(sub.file_name().expect("name")).join(name);
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&file, &target).expect("copy");
                copied.push(target);
            }
        }
    }
    assert!(copied.len() >= 20, "the captures are there: {copied:?}");
    copied
}

/// Every batch of the copied captures, as protobuf.
fn batches_of(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files
        .iter()
        .flat_map(|f| formats::read(&std::fs::read(f).expect("read")).expect("capture reads").1)
        .map(|b| b.bytes.expect("capture batch"))
        .collect()
}

/// Output must never carry a personal number: the independent scanner finds
/// none, and none of the numbers the captures use appears, whole or split.
fn assert_prints_no_personal_number(run: &Run) {
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert_eq!(numbers_in(text.as_bytes()), 0, "{name} prints a personal number");
        for n in PERSONAL_NUMBERS {
            for form in [
                n.to_owned(),
                format!("{} {}", &n[..6], &n[6..]),
                format!("{}-{}", &n[..6], &n[6..]),
            ] {
                assert!(!text.contains(&form), "{name} prints one of the captures' numbers");
            }
        }
    }
}

/// Scenario: `audit` with the default config over every captured batch,
/// as text and as `--report json`.
/// Guarantees: exit 0 and residual 0; one `drop` line per dropped span
/// (with `rule=` and `path=` for noisy spans) and one `mask` line per
/// masked value (with `field=` and `detector=`), as many as the native
/// engine drops and masks; the JSON report's per-file entries and total
/// equal the text report's; no personal number is printed.
#[test]
fn audit_of_the_captures_masks_everything_and_prints_no_number() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = copy_captures(tmp.path());
    let mut native_drop = 0;
    let mut native_mask = 0;
    for b in batches_of(&files) {
        let stats = native().process(&b).expect("processes").stats;
        native_drop += stats.spans_dropped;
        native_mask += stats.values_masked;
    }
    let run = tracescrub(&[&"audit", &tmp.path()]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(
        run.last_line(),
        format!(
            "total: files={} would_drop={native_drop} would_mask={native_mask} residual=0 errors=0",
            files.len()
        )
    );
    assert!(!run.stdout.contains("leak ") && !run.stdout.contains("LEAK"), "{}", run.dump());

    let drops: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("drop  ")).collect();
    assert_eq!(drops.len() as u64, native_drop);
    let noisy: Vec<&&str> =
        drops.iter().filter(|l| !l.contains("rule=(descendant of a noisy span)")).collect();
    assert!(!noisy.is_empty());
    for l in &noisy {
        assert!(l.contains(" span=") && l.contains(" rule=*/") && l.contains(" path=/"), "{l}");
    }
    assert!(
        noisy.iter().any(|l| l.contains("rule=*/isAlive path=/isAlive")),
        "the /isAlive probe is dropped by its glob"
    );

    let masks: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("mask  ")).collect();
    assert_eq!(masks.len() as u64, native_mask);
    for l in &masks {
        assert!(l.contains(" span=") && l.contains(" field=") && l.contains(" detector="), "{l}");
    }
    for detector in ["fnr", "d-number", "h-number", "synthetic"] {
        assert!(
            masks.iter().any(|l| l.ends_with(&format!(" detector={detector}"))),
            "no {detector} mask"
        );
    }
    assert_prints_no_personal_number(&run);

    let json = tracescrub(&[&"audit", &"--report", &"json", &tmp.path()]);
    assert_eq!(json.code, Some(0), "{}", json.dump());
    let doc: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}\n{}", json.dump()));
    assert_eq!(doc["mode"], "processed");
    let entries = doc["files"].as_array().expect("files");
    assert_eq!(entries.len(), files.len());
    for entry in entries {
        let path = entry["path"].as_str().expect("path");
        let line = run.line(&format!("{path}: batches="));
        for key in ["batches", "would_drop", "would_mask", "residual", "errors"] {
            assert_eq!(entry[key].as_u64(), Some(figure(line, key)), "{path} {key}");
        }
    }
    for key in ["files", "would_drop", "would_mask", "residual", "errors"] {
        assert_eq!(doc["total"][key].as_u64(), Some(figure(run.last_line(), key)), "total {key}");
    }
    assert_prints_no_personal_number(&json);
}

/// Parses a `leak  FILE span=ID field=PATH` line.
fn leak(line: &str) -> (&str, &str, &str) {
    let rest = line.strip_prefix("leak  ").unwrap_or_else(|| panic!("{line}"));
    let (file, rest) = rest.split_once(" span=").unwrap_or_else(|| panic!("{line}"));
    let (span, field) = rest.split_once(" field=").unwrap_or_else(|| panic!("{line}"));
    (file, span, field)
}

/// Scenario: `audit --raw` over every captured batch: what leaks without
/// tracescrub.
/// Guarantees: exit 1; residual equals what the independent scanner finds
/// in the input; one `leak` line per number with an existing file, a
/// 16-hex-digit span id (or `-`) and a field path; a `LEAK:` summary;
/// nothing is dropped or masked, and no number is printed.
#[test]
fn audit_raw_reports_every_leak_without_printing_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = copy_captures(tmp.path());
    let residual: u64 =
        batches_of(&files).iter().map(|b| residual::scan(&decode(b)).len() as u64).sum();
    assert!(residual > 0);
    let run = tracescrub(&[&"audit", &"--raw", &tmp.path()]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        run.last_line(),
        format!(
            "total: files={} would_drop=0 would_mask=0 residual={residual} errors=0",
            files.len()
        )
    );
    run.line(&format!("LEAK: {residual} personal number(s) in the input"));
    assert!(
        !run.stdout.lines().any(|l| l.starts_with("drop ") || l.starts_with("mask ")),
        "raw changes nothing"
    );
    let leaks: Vec<(&str, &str, &str)> =
        run.stdout.lines().filter(|l| l.starts_with("leak ")).map(leak).collect();
    assert_eq!(leaks.len() as u64, residual);
    for (file, span, field) in &leaks {
        assert!(Path::new(file).is_file(), "{file}");
        assert!(
            *span == "-" || (span.len() == 16 && span.bytes().all(|b| b.is_ascii_hexdigit())),
            "{span}"
        );
        assert!(
            field.starts_with("span.")
                || field.starts_with("resource.")
                || field.starts_with("scope."),
            "{field}"
        );
    }
    for field in [
        "span.name",
        "span.trace_state",
        "span.attributes[\"db.statement\"]",
        "span.events[0].name",
    ] {
        assert!(leaks.iter().any(|l| l.2 == field), "no leak in {field}");
    }
    assert_prints_no_personal_number(&run);
}

/// Scenario: `audit --config` with a config that masks only the
/// `db.statement` attribute, over every captured batch.
/// Guarantees: exit 1; every mask is a `db.statement` span attribute; the
/// leak lines name the fields the config no longer covers (span names,
/// URL paths) and never `db.statement`: the audit catches what a config
/// lets through. No number is printed.
#[test]
fn audit_with_a_narrowed_config_reports_what_it_lets_through() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let captured = tmp.path().join("captures");
    copy_captures(&captured);
    let config = tmp.path().join("narrow.yaml");
    std::fs::write(&config, "mask: {scope: {fields: [span-attribute], keys: [db.statement]}}\n")
        .expect("write");
    let run = tracescrub(&[&"audit", &"--config", &config, &captured]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let total = run.last_line();
    assert!(
        figure(total, "residual") > 0
            && figure(total, "would_mask") > 0
            && figure(total, "would_drop") > 0,
        "{total}"
    );
    for l in run.stdout.lines().filter(|l| l.starts_with("mask  ")) {
        assert!(l.contains(" field=span-attribute key=db.statement detector="), "{l}");
    }
    let fields: Vec<&str> =
        run.stdout.lines().filter(|l| l.starts_with("leak ")).map(|l| leak(l).2).collect();
    assert_eq!(fields.len() as u64, figure(total, "residual"));
    assert!(fields.contains(&"span.name"), "{fields:?}");
    assert!(
        fields.iter().any(|f| f.contains("[\"url.path\"]") || f.contains("[\"http.target\"]")),
        "{fields:?}"
    );
    assert!(!fields.contains(&"span.attributes[\"db.statement\"]"), "db.statement is masked");
    assert_prints_no_personal_number(&run);
}

/// A version-2 config in `dir` with a teams directory of two team files
/// (team-a drops `*/x-noise`; team-b's `billing-*` services drop
/// `*/warmup`) and an override for team-b (`*/ping`), and two captures in
/// `dir/captures`: the first with four resources (team-a's `checkout`,
/// team-b's `billing-api`, a `service.name` holding a personal number and
/// no namespace, and a resource with no attribute at all), the second with
/// one more `/x-noise` from team-a's `checkout`. Returns the config's path.
fn write_team_audit_inputs(dir: &Path) -> PathBuf {
    use support::{kv, request, span};
    let config = dir.join("scrub.yaml");
    std::fs::write(
        &config,
        "version: 2\noverrides:\n  - match: {k8s.namespace.name: team-b}\n    noise: {extra_globs: [\"*/ping\"]}\nteams:\n  dir: teams/\n",
    )
    .expect("write config");
    std::fs::create_dir_all(dir.join("teams")).expect("mkdir");
    std::fs::write(dir.join("teams/team-a.yaml"), "noise:\n  extra_globs: [\"*/x-noise\"]\n")
        .expect("write team-a");
    std::fs::write(
        dir.join("teams/team-b.yaml"),
        "services:\n  \"billing-*\":\n    noise: {extra_globs: [\"*/warmup\"]}\n",
    )
    .expect("write team-b");

    let [a, b, d] = [PERSONAL_NUMBERS[0], PERSONAL_NUMBERS[1], PERSONAL_NUMBERS[2]];
    let get = |id: u8, parent: Option<u8>, path: &str| {
        span(id, parent, &format!("GET {path}"), vec![kv("url.path", path)])
    };
    let mut checkout = request(
        vec![
            kv("k8s.namespace.name", "team-a"),
            kv("service.name", "checkout"),
            kv("host.owner", a),
        ],
        None,
        vec![
            get(1, None, "/x-noise"),
            span(2, Some(1), "SELECT 1", vec![]),
            get(3, None, "/isAlive"),
            span(4, None, "GET /api/person", vec![kv("url.query", &format!("fnr={a}"))]),
        ],
    );
    let billing = request(
        vec![kv("k8s.namespace.name", "team-b"), kv("service.name", "billing-api")],
        None,
        vec![
            get(5, None, "/ping"),
            get(6, None, "/warmup"),
            get(7, None, "/x-noise"),
            span(8, None, &format!("lookup {b}"), vec![]),
        ],
    );
    let lookup = request(
        vec![kv("service.name", &format!("lookup-{a}"))],
        None,
        vec![get(9, None, "/isAlive")],
    );
    let bare = request(vec![], None, vec![span(10, None, "work", vec![kv("user", d)])]);
    for other in [billing, lookup, bare] {
        checkout.resource_spans.extend(other.resource_spans);
    }
    let again = request(
        vec![kv("k8s.namespace.name", "team-a"), kv("service.name", "checkout")],
        None,
        vec![get(11, None, "/x-noise"), span(12, None, "GET /api/cart", vec![])],
    );
    put(&dir.join("captures"), "0001.binpb", &checkout.encode_to_vec());
    put(&dir.join("captures"), "0002.binpb", &again.encode_to_vec());
    config
}

/// Scenario: `audit --by service` over two captures from four resources, with
/// a version-2 config whose rules come from two team files, an override
/// and the defaults.
/// Guarantees: exit 0; one block per (namespace, service), sorted, adding
/// up both files; each drop line names the rule and the file it was
/// written in (the team file for a team rule, the config for an override
/// or a default glob); team-a's rule never touches team-b; descendants and
/// masks per detector and field are counted; a missing namespace is `-`,
/// a missing `service.name` is `(no service.name)`, and a service name
/// holding a personal number is shown starred; the totals are the usual
/// ones and agree with the blocks; no personal number is printed.
#[test]
fn audit_by_service_names_each_rule_and_its_file_per_service() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_team_audit_inputs(tmp.path());
    let captures = tmp.path().join("captures");
    let run = tracescrub(&[&"audit", &"--config", &config, &"--by", &"service", &captures]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let team_a = tmp.path().join("teams/team-a.yaml");
    let team_b = tmp.path().join("teams/team-b.yaml");
    let (team_a, team_b, config) =
        (team_a.display(), team_b.display(), config.display().to_string());
    let expected = format!(
        "\
service namespace=- service.name=(no service.name) dropped=0 masked=1
  mask  values=1 field=span-attribute detector=d-number
service namespace=- service.name=lookup-*********** dropped=1 masked=0
  drop  spans=1 file={config} rule=*/isAlive
service namespace=team-a service.name=checkout dropped=4 masked=2
  drop  spans=2 file={team_a} rule=teams/team-a.yaml */x-noise
  drop  spans=1 file={config} rule=*/isAlive
  drop  spans=1 rule=(descendant of a noisy span)
  mask  values=1 field=resource-attribute detector=fnr
  mask  values=1 field=span-attribute detector=fnr
service namespace=team-b service.name=billing-api dropped=2 masked=1
  drop  spans=1 file={config} rule=overrides[0] */ping
  drop  spans=1 file={team_b} rule=teams/team-b.yaml services.billing-* */warmup
  mask  values=1 field=span-name detector=fnr
total: files=2 would_drop=7 would_mask=4 residual=0 errors=0
"
    );
    assert_eq!(run.stdout, expected, "{}", run.dump());
    assert_prints_no_personal_number(&run);

    // The per-file audit of the same inputs agrees on the totals, and
    // --quiet keeps only the service lines.
    let by_file = tracescrub(&[&"audit", &"--config", &config, &captures]);
    assert_eq!(by_file.last_line(), run.last_line(), "{}", by_file.dump());
    let quiet =
        tracescrub(&[&"audit", &"--config", &config, &"--by", &"service", &"-q", &captures]);
    let headers: Vec<&str> = expected.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(quiet.stdout.lines().collect::<Vec<_>>(), headers, "{}", quiet.dump());

    // --raw has no processor to group.
    let raw = tracescrub(&[&"audit", &"--raw", &"--by", &"service", &captures]);
    assert_eq!(raw.code, Some(2), "{}", raw.dump());
    assert!(raw.stderr.contains("--by service") && raw.stderr.contains("--raw"), "{}", raw.dump());
}

/// Scenario: `audit --by service` with a team file that adds the `email`
/// detector, over a capture where team-a's and team-b's resources each
/// carry an email address and a personal number.
/// Guarantees: team-a's address is masked and counted under `email`,
/// team-b's is not (the file is team-a's); both numbers are masked.
#[test]
fn audit_by_service_shows_what_a_team_file_adds_to_masking() {
    use support::{kv, request, span};
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("scrub.yaml");
    std::fs::write(&config, "version: 2\nteams:\n  dir: teams/\n").expect("write config");
    std::fs::create_dir_all(tmp.path().join("teams")).expect("mkdir");
    std::fs::write(tmp.path().join("teams/team-a.yaml"), "mask:\n  detectors: [email]\n")
        .expect("write team-a");
    let attrs =
        vec![kv("enduser.email", "kari@example.no"), kv("db.statement", PERSONAL_NUMBERS[0])];
    let mut batch = request(
        vec![kv("k8s.namespace.name", "team-a"), kv("service.name", "api")],
        None,
        vec![span(1, None, "work", attrs.clone())],
    );
    let other = request(
        vec![kv("k8s.namespace.name", "team-b"), kv("service.name", "api")],
        None,
        vec![span(2, None, "work", attrs)],
    );
    batch.resource_spans.extend(other.resource_spans);
    let captures = tmp.path().join("captures");
    put(&captures, "0001.binpb", &batch.encode_to_vec());
    let run = tracescrub(&[&"audit", &"--config", &config, &"--by", &"service", &captures]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let expected = "\
service namespace=team-a service.name=api dropped=0 masked=2
  mask  values=1 field=span-attribute detector=email
  mask  values=1 field=span-attribute detector=fnr
service namespace=team-b service.name=api dropped=0 masked=1
  mask  values=1 field=span-attribute detector=fnr
total: files=1 would_drop=0 would_mask=3 residual=0 errors=0
";
    assert_eq!(run.stdout, expected, "{}", run.dump());
    assert_prints_no_personal_number(&run);
}

/// Scenario: `audit --by service --report json` over the same inputs.
/// Guarantees: the document has `by: service` and a `services` list with
/// the same figures as the text report, each rule with its file; the
/// per-file entries and the total are those of a plain JSON audit; no
/// personal number is printed.
#[test]
fn audit_by_service_json_has_the_same_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = write_team_audit_inputs(tmp.path());
    let captures = tmp.path().join("captures");
    let run = tracescrub(&[
        &"audit",
        &"--config",
        &config,
        &"--by",
        &"service",
        &"--report",
        &"json",
        &captures,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.dump()));
    assert_eq!(doc["by"], "service");
    assert_eq!(doc["mode"], "processed");
    let team_a = tmp.path().join("teams/team-a.yaml").display().to_string();
    let config_file = config.display().to_string();
    let services = doc["services"].as_array().expect("services");
    let names: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s["namespace"].as_str().unwrap(), s["service"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("-", "(no service.name)"),
            ("-", "lookup-***********"),
            ("team-a", "checkout"),
            ("team-b", "billing-api")
        ]
    );
    assert_eq!(
        services[2],
        serde_json::json!({
            "namespace": "team-a",
            "service": "checkout",
            "spans_dropped": 4,
            "dropped_by_rule": [
                {"rule": "teams/team-a.yaml */x-noise", "file": team_a, "spans": 2},
                {"rule": "*/isAlive", "file": config_file, "spans": 1},
            ],
            "dropped_descendants": 1,
            "values_masked": 2,
            "masked": [
                {"detector": "fnr", "field": "resource-attribute", "values": 1},
                {"detector": "fnr", "field": "span-attribute", "values": 1},
            ],
        })
    );
    let sum = |key: &str| services.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(doc["total"]["would_drop"].as_u64(), Some(sum("spans_dropped")));
    assert_eq!(doc["total"]["would_mask"].as_u64(), Some(sum("values_masked")));
    assert_eq!(doc["files"].as_array().map(Vec::len), Some(2));
    assert_prints_no_personal_number(&run);
}

/// Scenario: `config default` written to a file and given to `config check`.
/// Guarantees: both exit 0; the default is the commented YAML the binary
/// embeds, and the check accepts it.
#[test]
fn config_default_passes_config_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let default = tracescrub(&[&"config", &"default"]);
    assert_eq!(default.code, Some(0), "{}", default.dump());
    assert_eq!(default.stdout, tracescrub::config_file::DEFAULT_CONFIG_YAML);
    assert!(default.stdout.contains("version: 1") && default.stdout.contains("\n# "));
    let file = tmp.path().join("default.yaml");
    std::fs::write(&file, &default.stdout).expect("write");
    let check = tracescrub(&[&"config", &"check", &file]);
    assert_eq!(check.code, Some(0), "{}", check.dump());
    assert_eq!(check.stdout.trim(), format!("ok: {} is a valid config", file.display()));
}

/// Scenario: `config check` of a file with four problems: an unknown
/// top-level key, an unknown nested key, a glob with an unclosed `[` and an
/// unknown mask mode.
/// Guarantees: exit 1; a count, then every problem with its key path and
/// what is wrong, never the offending value (a config value may be a
/// secret).
#[test]
fn config_check_lists_every_problem_with_its_key_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, "version: 1\nbogus: 1\nnoise:\n  globs: [\"*/ok\", \"a[\"]\n  colour: red\nmask:\n  mode: sometimes\n")
        .expect("write");
    let run = tracescrub(&[&"config", &"check", &file]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    run.line(&format!("{}: 4 problem(s)", file.display()));
    let problems: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(problems.len(), 4, "{}", run.dump());
    for (key, detail) in [
        ("`bogus`", "unknown key"),
        ("`noise.colour`", "unknown key"),
        ("`noise.globs[1]`", "bad glob: unclosed character class"),
        ("`mask.mode`", "unknown mode; expected"),
    ] {
        assert!(
            problems.iter().any(|p| p.contains(key) && p.contains(detail)),
            "no problem {key} {detail}:\n{}",
            run.dump()
        );
    }
    for value in ["sometimes", "a[", "red"] {
        assert!(!run.stdout.contains(value), "the value {value:?} was echoed:\n{}", run.dump());
    }
}

/// Scenario: `config check` of a file that is not YAML (a tab indent).
/// Guarantees: exit 1, naming the file, the line and the column.
#[test]
fn config_check_gives_line_and_column_for_invalid_yaml() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("tabs.yaml");
    std::fs::write(&file, "noise:\n  enabled: true\nmask:\n\tmode: any11\n").expect("write");
    let check = tracescrub(&[&"config", &"check", &file]);
    assert_eq!(check.code, Some(1), "{}", check.dump());
    assert!(
        check.stdout.starts_with(&format!(
            "config file {}: not valid YAML at line 4 column 1",
            file.display()
        )),
        "{}",
        check.dump()
    );
}

/// Scenario: `inspect` of the embedded component.
/// Guarantees: exit 0; it exports the transform interface, imports nothing,
/// and the WIT text has the processor resource and its `explain` method.
#[test]
fn inspect_prints_the_exports_no_imports_and_the_wit() {
    let run = tracescrub(&[&"inspect"]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    run.line("// exports: tracescrub:processor/transform@0.1.0");
    assert_eq!(run.line("// imports: "), "// imports: (none)");
    for text in [
        "export tracescrub:processor/transform@0.1.0;",
        "interface transform",
        "resource processor",
        "explain",
    ] {
        assert!(run.stdout.contains(text), "no {text:?}\n{}", run.dump());
    }
}

/// Scenario: `--help`, `replay --help`, `audit --help`.
/// Guarantees: the top level documents the exit statuses and the input
/// formats; replay documents the `total:` line and where errors are
/// located; audit documents that leaks set exit 1 and are printed without
/// the number.
#[test]
fn help_documents_formats_exit_status_and_the_total_line() {
    let top = tracescrub(&[&"--help"]);
    assert_eq!(top.code, Some(0), "{}", top.dump());
    let top = squeeze(&top.stdout);
    for text in [
        "Exit status: 0 when all went well; 1 when a batch failed",
        "2 when the command could not run",
        "OTLP protobuf, OTLP JSON, OTLP JSON lines, length-prefixed protobuf",
        "gzip of each",
        "detected from content",
    ] {
        assert!(top.contains(text), "top-level help lacks {text:?}:\n{top}");
    }
    let replay = tracescrub(&[&"replay", &"--help"]);
    assert_eq!(replay.code, Some(0), "{}", replay.dump());
    let replay = squeeze(&replay.stdout);
    for text in [
        "`total: files=N batches=N spans_in=N spans_out=N dropped=N masked=N errors=N`",
        "line or offset",
        "--out <DIR>",
        "--report",
    ] {
        assert!(replay.contains(text), "replay help lacks {text:?}:\n{replay}");
    }
    let audit = tracescrub(&[&"audit", &"--help"]);
    assert_eq!(audit.code, Some(0), "{}", audit.dump());
    let audit = squeeze(&audit.stdout);
    for text in [
        "never the number",
        "the exit status is 1",
        "--raw",
        "--config <FILE>",
        "--by <BY>",
        "service namespace=NS service.name=NAME dropped=N masked=N",
        "drop spans=N file=FILE rule=RULE",
        "`(no service.name)`",
    ] {
        assert!(audit.contains(text), "audit help lacks {text:?}:\n{audit}");
    }
}

/// Scenario: replay and audit of a path that does not exist, and replay
/// with no input at all.
/// Guarantees: exit 2 with a message that names the missing path; nothing
/// on stdout.
#[test]
fn missing_input_exits_2_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no-such-dir/0001.binpb");
    for command in ["replay", "audit"] {
        let run = tracescrub(&[&command, &captures().join("python-protobuf/0001.binpb"), &missing]);
        assert_eq!(run.code, Some(2), "{}", run.dump());
        assert!(
            run.stderr.starts_with(&format!("tracescrub: error: input {}: ", missing.display())),
            "{}",
            run.dump()
        );
        assert!(run.stdout.is_empty(), "{}", run.dump());
    }
    let none = tracescrub(&[&"replay"]);
    assert_eq!(none.code, Some(2), "{}", none.dump());
    assert!(none.stderr.contains("<INPUT>"), "{}", none.dump());
}

/// Scenario: replay with `--config` naming a file that does not exist.
/// Guarantees: exit 2, a message naming the config file, no report.
#[test]
fn unreadable_config_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("missing.yaml");
    let run = tracescrub(&[
        &"replay",
        &"--config",
        &config,
        &captures().join("python-protobuf/0001.binpb"),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.starts_with(&format!(
            "tracescrub: error: config file {}: cannot read it: ",
            config.display()
        )),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
}

/// Regression: `config check` of a file that could not be read exited 1,
/// the status for "the config has problems"; the documented status for an
/// unreadable config is 2, as `replay --config` gives.
/// Scenario: `config check` of a missing file.
/// Guarantees: exit 2 naming the file.
#[test]
fn config_check_of_an_unreadable_file_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("missing.yaml");
    let run = tracescrub(&[&"config", &"check", &config]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains(&format!("{}: cannot read it", config.display())), "{}", run.dump());
    assert_eq!(run.code, Some(2), "{}", run.dump());
}

/// Scenario: `--component` naming a text file, a core WebAssembly module
/// (not a component), and a missing file, for replay, audit and inspect.
/// Guarantees: exit 2 every time, with one `tracescrub: error:` message
/// naming the file (where it is the subject) and saying it cannot be
/// compiled or read; no report on stdout.
#[test]
fn component_that_is_not_a_component_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "hello, not wasm\n").expect("write");
    let core = tmp.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let missing = tmp.path().join("missing.wasm");
    let input = captures().join("python-protobuf/0001.binpb");

    let run = tracescrub(&[&"replay", &"--component", &text, &input]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.starts_with(&format!(
            "tracescrub: error: {} is not a WebAssembly component",
            text.display()
        )),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());

    let run = tracescrub(&[&"audit", &"--component", &core, &input]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.starts_with(&format!(
            "tracescrub: error: {} is a core WebAssembly module, not a component",
            core.display()
        )),
        "{}",
        run.dump()
    );

    let run = tracescrub(&[&"replay", &"--component", &missing, &input]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.starts_with(&format!(
            "tracescrub: error: cannot read component {}: ",
            missing.display()
        )),
        "{}",
        run.dump()
    );

    let run = tracescrub(&[&"inspect", &"--component", &text]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.starts_with(&format!(
            "tracescrub: error: {} is not a WebAssembly component",
            text.display()
        )),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
}

/// Regression, fixed: when stdout is closed early (`tracescrub audit --raw dir | head`),
/// the CLI panics ("failed printing to stdout: Broken pipe", and a
/// backtrace when `RUST_BACKTRACE` is set) with exit status 101 instead of
/// stopping quietly.
/// Scenario: `inspect` writing into a pipe whose read end is already closed.
/// Guarantees: no panic message, and not the panic status 101.
#[test]
fn closed_stdout_ends_the_cli_without_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tracescrub"))
        .arg("inspect")
        .env_remove("RUST_BACKTRACE")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run tracescrub");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "exit {:?}: {stderr}", out.status.code());
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

/// Regression: `--out` pointing into the input overwrote the captures in
/// place, or fed a second run its own output.
/// Scenario: `--out` equal to the input directory and inside it.
/// Guarantees: exit 2 with a message naming both; nothing is written.
#[test]
fn replay_refuses_out_inside_the_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in");
    put(&input, "a.binpb", &bases()[0]);
    for out in [input.clone(), input.join("out")] {
        let run = tracescrub(&[&"replay", &"--out", &out, &input]);
        assert_eq!(run.code, Some(2), "{}", run.dump());
        assert!(run.stderr.contains("is inside the input"), "{}", run.dump());
        assert_eq!(files_under(&input).len(), 1, "nothing written into the input");
    }
}

/// Regression: a symlink loop in an input directory recursed until the OS
/// gave up, a dangling link aborted the run, and a link to a file counted
/// that file twice.
/// Scenario: a directory with one capture, a link to it, a dangling link
/// and a link loop.
/// Guarantees: links inside directories are skipped with a note; the one
/// real file is replayed once; exit 0.
#[cfg(unix)]
#[test]
fn replay_skips_symlinks_inside_directories() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in");
    put(&input, "a.binpb", &bases()[0]);
    std::os::unix::fs::symlink(input.join("a.binpb"), input.join("again.binpb")).expect("link");
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), input.join("dangling")).expect("link");
    std::os::unix::fs::symlink(&input, input.join("loop")).expect("link");
    let run = tracescrub(&[&"replay", &input]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(run.last_line().starts_with("total: files=1 batches=1 "), "{}", run.dump());
    assert_eq!(run.stderr.matches("skipping symbolic link").count(), 3, "{}", run.dump());
}

/// A distinctive 40-byte pseudonym key, to grep for.
const KEY: &str = "ZqX7-tracescrub-distinctive-key-40bytes!";

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Every form of the key that must never be printed.
fn key_forms() -> Vec<String> {
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    // Base64 of a shifted copy too: the key need not start a 3-byte group.
    vec![
        KEY.to_owned(),
        hex.clone(),
        hex.to_uppercase(),
        base64(KEY.as_bytes()),
        base64(&KEY.as_bytes()[1..]),
        base64(&KEY.as_bytes()[2..]),
    ]
}

fn assert_no_key(what: &str, text: &str) {
    for form in key_forms() {
        assert!(!text.contains(&form), "{what} prints the key ({form}):\n{text}");
    }
}

/// Scenario: a config with pseudonyms (`replacement: hmac`) and two more
/// detectors, its key in a file next to it and in an environment variable;
/// `config default`, `config check`, `replay --report json` (with its
/// outputs), `audit`, the effective config, and a config whose key is too
/// short.
/// Guarantees: the key, in hex and in base64, is in no output, report,
/// log, written file or effective config; personal numbers become
/// pseudonyms that hold no digit run; the key reaches the component only
/// through the host.
#[test]
fn hmac_key_is_never_printed() {
    assert_eq!(KEY.len(), 40);
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("key.txt"), KEY).unwrap();
    let cfg = tmp.path().join("scrub.yaml");
    std::fs::write(
        &cfg,
        "mask:\n  replacement: hmac\n  detectors: [email, phone-no]\n  hmac: {key_id: k2026, key_file: key.txt}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let input = captures().join("python-protobuf");

    let default = tracescrub(&[&"config", &"default"]);
    assert_no_key("config default", &(default.stdout.clone() + &default.stderr));
    let check = tracescrub(&[&"config", &"check", &cfg]);
    assert_eq!(check.code, Some(0), "{}", check.dump());
    assert_no_key("config check", &check.dump());
    let replay =
        tracescrub(&[&"replay", &"--config", &cfg, &"--report", &"json", &"--out", &out, &input]);
    assert_eq!(replay.code, Some(0), "{}", replay.dump());
    assert_no_key("replay --report json", &replay.dump());
    let mut written = 0;
    for entry in walk(&out) {
        let bytes = std::fs::read(&entry).unwrap();
        assert_no_key("a replayed file", &String::from_utf8_lossy(&bytes));
        // Valid numbers only: the captures also hold 12-digit and invalid controls.
        assert_eq!(numbers_in(&bytes), 0, "{}", entry.display());
        written += 1;
    }
    assert!(written > 0);
    let audit = tracescrub(&[&"audit", &"--config", &cfg, &input]);
    assert_no_key("audit", &audit.dump());
    assert!(audit.stdout.contains("detector=fnr"), "{}", audit.dump());

    // The same through an environment variable.
    let env_cfg = tmp.path().join("env.yaml");
    std::fs::write(
        &env_cfg,
        "mask:\n  replacement: hmac\n  hmac: {key_id: k2026, key_env: TRACESCRUB_TEST_KEY}\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_tracescrub"))
        .args([
            OsStr::new("replay"),
            OsStr::new("--config"),
            env_cfg.as_os_str(),
            input.as_os_str(),
        ])
        .env("TRACESCRUB_TEST_KEY", KEY)
        .output()
        .expect("run tracescrub");
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    assert_no_key("replay with key_env", &text);

    // A short key and a missing variable are config problems, named.
    std::fs::write(tmp.path().join("key.txt"), &KEY[..20]).unwrap();
    let short = tracescrub(&[&"config", &"check", &cfg]);
    assert_eq!(short.code, Some(1), "{}", short.dump());
    assert!(short.dump().contains("mask.hmac.key_file"), "{}", short.dump());
    assert_no_key("a short key's error", &short.dump());
    assert!(!short.dump().contains(&KEY[..20]), "{}", short.dump());
    let unset = tracescrub(&[&"config", &"check", &env_cfg]);
    assert!(unset.dump().contains("TRACESCRUB_TEST_KEY"), "{}", unset.dump());

    // The effective config of a processor holding the key.
    std::fs::write(tmp.path().join("key.txt"), KEY).unwrap();
    let json = tracescrub::config_file::load(&cfg).expect("config loads");
    let runtime = tracescrub::Runtime::new().unwrap();
    let component = runtime.load_default().unwrap();
    let mut instance = tracescrub::ScrubberInstance::create(&component, &json).unwrap();
    let effective = instance.effective_config().unwrap();
    assert_no_key("the effective config", &effective);
    assert!(effective.contains("k2026"), "{effective}");
    // The native engine's Debug of its config neither.
    let processor = Processor::new(&json).unwrap();
    assert_no_key("the config's Debug", &format!("{:?}", processor.config()));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Scenario: `serve --help`.
/// Guarantees: every gateway setting's flag shows a default, and each
/// equals the constant `serve` resolves with, so the help cannot drift.
#[test]
fn serve_help_shows_the_real_defaults() {
    use tracescrub::serve::options::*;
    let help = tracescrub(&[&"serve", &"--help"]);
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    let text = squeeze(&help.stdout);
    let expected: Vec<(&str, String)> = vec![
        ("--upstream-gzip", DEFAULT_UPSTREAM_GZIP.to_string()),
        ("--upstream-timeout-ms", DEFAULT_UPSTREAM_TIMEOUT_MS.to_string()),
        ("--listen-http", DEFAULT_LISTEN_HTTP.to_owned()),
        ("--listen-grpc", DEFAULT_LISTEN_GRPC.to_owned()),
        ("--admin", DEFAULT_ADMIN.to_owned()),
        ("--workers", format!("one per core, at most {}", tracescrub::serve::MAX_WORKERS)),
        ("--max-body-bytes", DEFAULT_MAX_BODY_BYTES.to_string()),
        ("--max-decompressed-bytes", DEFAULT_MAX_DECOMPRESSED_BYTES.to_string()),
        ("--batch-memory-bytes", tracescrub::DEFAULT_MAX_MEMORY_BYTES.to_string()),
        ("--batch-deadline-ms", DEFAULT_BATCH_DEADLINE_MS.to_string()),
        ("--max-in-flight", DEFAULT_MAX_IN_FLIGHT.to_string()),
        ("--body-timeout-ms", DEFAULT_BODY_TIMEOUT_MS.to_string()),
        ("--max-receiving", DEFAULT_MAX_RECEIVING.to_string()),
        ("--max-receiving-per-connection", DEFAULT_MAX_RECEIVING_PER_CONNECTION.to_string()),
        ("--idle-timeout-ms", DEFAULT_IDLE_TIMEOUT_MS.to_string()),
        ("--header-read-timeout-ms", DEFAULT_HEADER_READ_TIMEOUT_MS.to_string()),
        (
            "--no-split-batches",
            if DEFAULT_SPLIT_BATCHES { "off (batches are split)" } else { "on" }.to_owned(),
        ),
        ("--max-batches-per-instance", tracescrub::DEFAULT_MAX_BATCHES_PER_INSTANCE.to_string()),
    ];
    // Each `[default: X]` belongs to the last flag named before it.
    let mut shown = std::collections::BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("[default: ") {
        let before = &rest[..at];
        let flag_at = before.rfind(" --").expect("a flag before its default") + 1;
        let flag = before[flag_at..].split([' ', '=']).next().unwrap();
        let value = &rest[at + "[default: ".len()..];
        let value = &value[..value.find(']').expect("a closing bracket")];
        assert!(shown.insert(flag.to_owned(), value.to_owned()).is_none(), "{flag} twice");
        rest = &rest[at + 1..];
    }
    for (flag, default) in &expected {
        assert_eq!(shown.get(*flag), Some(default), "{flag} in:\n{}", help.stdout);
    }
    for flag in shown.keys() {
        assert!(
            flag == "--config" || expected.iter().any(|(f, _)| f == flag),
            "{flag} shows a default that is not checked"
        );
    }
}
