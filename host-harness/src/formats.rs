//! Reading and writing captured OTLP trace files.
//!
//! A file's format is detected from its content, never from its name:
//! - OTLP protobuf: one `ExportTraceServiceRequest` per file (`.binpb`, `.pb`);
//! - OTLP JSON: one request per file (`.json`), per the OTLP/JSON mapping;
//! - OTLP JSON lines: one request per line, as the collector's file
//!   exporter and the OTLP file-exporter spec write them (`.jsonl`);
//! - length-prefixed protobuf: each request preceded by its size as a
//!   4-byte big-endian integer, as the collector's file exporter writes
//!   with `format: proto`;
//! - gzip-compressed versions of each.
//!
//! Every batch is handed on as protobuf bytes; JSON is converted with the
//! `opentelemetry-proto` serde types. Writing puts batches back in the
//! format they came in.

use std::fmt;
use std::io::Write;

use crate::body;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// A decompressed file may be at most this large: 1 GiB. It bounds what a
/// gzip bomb among the inputs can make the harness allocate.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// How the batches in a file are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One protobuf request.
    Protobuf,
    /// One JSON request.
    Json,
    /// One JSON request per line.
    JsonLines,
    /// Protobuf requests, each after a 4-byte big-endian length.
    LengthPrefixed,
}

/// A file's detected format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// The encoding of the (decompressed) content.
    pub encoding: Encoding,
    /// Whether the file is gzip-compressed.
    pub gzip: bool,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.encoding {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "json",
            Encoding::JsonLines => "jsonl",
            Encoding::LengthPrefixed => "length-prefixed",
        })?;
        if self.gzip {
            f.write_str("+gzip")?;
        }
        Ok(())
    }
}

/// Where in its file a batch was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The whole file.
    Whole,
    /// A 1-based line of a JSON-lines file.
    Line(usize),
    /// The `index`th record (0-based) of a length-prefixed file, whose
    /// length prefix starts at byte `offset` of the decompressed content.
    Record {
        /// The record's position.
        index: usize,
        /// Byte offset of its length prefix.
        offset: u64,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Whole => Ok(()),
            Location::Line(n) => write!(f, "line {n}"),
            Location::Record { index, offset } => write!(f, "record {index} at byte {offset}"),
        }
    }
}

/// One batch read from a file: protobuf bytes, or why it could not be read.
#[derive(Debug)]
pub struct Batch {
    /// Where it was.
    pub location: Location,
    /// The protobuf-encoded request, or the reason it could not be decoded.
    pub bytes: Result<Vec<u8>, String>,
}

/// Why a whole file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// Detects the format of `raw` and splits it into batches.
pub fn read(raw: &[u8]) -> Result<(Format, Vec<Batch>), FormatError> {
    read_limited(raw, MAX_DECOMPRESSED_BYTES)
}

/// [`read`], refusing gzip content larger than `limit` bytes decompressed.
pub fn read_limited(raw: &[u8], limit: u64) -> Result<(Format, Vec<Batch>), FormatError> {
    let (gzip, content) = if raw.starts_with(&body::GZIP_MAGIC) {
        (true, body::gunzip(raw, limit).map_err(|e| FormatError(e.message))?)
    } else {
        (false, raw.to_vec())
    };
    let (encoding, batches) = split(&content)?;
    Ok((Format { encoding, gzip }, batches))
}

fn split(content: &[u8]) -> Result<(Encoding, Vec<Batch>), FormatError> {
    let text = content.strip_prefix(b"\xef\xbb\xbf").unwrap_or(content);
    let first = text.iter().position(|b| !b.is_ascii_whitespace()).map(|i| text[i]);
    // A protobuf request starts with 0x0a (`\n`, the resource_spans tag) and
    // may go on with `{` (a length of 123): after leading whitespace, a `{`
    // only means JSON if the first line really is JSON.
    let json = match first {
        Some(b'{' | b'[') if matches!(text[0], b'{' | b'[') => true,
        Some(b'{' | b'[') => {
            let line = text.trim_ascii_start().split(|&b| b == b'\n').next().unwrap_or_default();
            serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
                || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
        }
        _ => false,
    };
    match first {
        Some(b'{') if json => Ok(split_json(text)),
        Some(b'[') if json => Err(FormatError(
            "a JSON array is not an OTLP request; expected an object with \"resourceSpans\"".into(),
        )),
        // Protobuf field tags never encode field number 0, so a first byte
        // below 0x08 cannot start a request: it is a big-endian length.
        Some(_) if content[0] < 0x08 => {
            split_length_prefixed(content).map(|b| (Encoding::LengthPrefixed, b))
        }
        _ => Ok((
            Encoding::Protobuf,
            vec![Batch { location: Location::Whole, bytes: Ok(content.to_vec()) }],
        )),
    }
}

/// Decodes one OTLP/JSON traces document (see [`body::json_traces_to_protobuf`]).
fn decode_json(doc: &[u8]) -> Result<Vec<u8>, String> {
    body::json_traces_to_protobuf(doc).map_err(|e| e.message)
}

fn split_json(content: &[u8]) -> (Encoding, Vec<Batch>) {
    // One document, possibly spread over many lines, is plain JSON.
    let whole = decode_json(content);
    let is_one_document = serde_json::from_slice::<serde::de::IgnoredAny>(content).is_ok();
    if whole.is_ok() || is_one_document {
        return (Encoding::Json, vec![Batch { location: Location::Whole, bytes: whole }]);
    }
    let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    let non_empty = lines.iter().filter(|l| !l.trim_ascii().is_empty()).count();
    let first_line_is_a_value = lines
        .iter()
        .find(|l| !l.trim_ascii().is_empty())
        .is_some_and(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
    if non_empty <= 1 || !first_line_is_a_value {
        // One document (a cut-off pretty-printed one, say): report the
        // whole-document error once, not one per line.
        return (Encoding::Json, vec![Batch { location: Location::Whole, bytes: whole }]);
    }
    let batches = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(i, line)| Batch { location: Location::Line(i + 1), bytes: decode_json(line) })
        .collect();
    (Encoding::JsonLines, batches)
}

fn split_length_prefixed(content: &[u8]) -> Result<Vec<Batch>, FormatError> {
    let mut batches = Vec::new();
    let mut at = 0usize;
    while at < content.len() {
        let Some(prefix) = content.get(at..at + 4) else {
            return Err(FormatError(format!(
                "length-prefixed file ends with {} stray bytes at byte {at}; expected a 4-byte length",
                content.len() - at
            )));
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let body = at + 4;
        if len > content.len() - body {
            return Err(FormatError(format!(
                "record {} at byte {at} claims {len} bytes but only {} remain; the file is truncated or not length-prefixed protobuf",
                batches.len(),
                content.len() - body
            )));
        }
        batches.push(Batch {
            location: Location::Record { index: batches.len(), offset: at as u64 },
            bytes: Ok(content[body..body + len].to_vec()),
        });
        at = body + len;
    }
    Ok(batches)
}

/// Encodes processed batches (protobuf bytes) in `format`.
pub fn write(format: Format, batches: &[Vec<u8>]) -> Result<Vec<u8>, FormatError> {
    let mut content = Vec::new();
    match format.encoding {
        Encoding::Protobuf => {
            for b in batches {
                content.extend_from_slice(b);
            }
        }
        Encoding::LengthPrefixed => {
            for b in batches {
                let len = u32::try_from(b.len()).map_err(|_| {
                    FormatError(format!(
                        "a batch of {} bytes does not fit a 4-byte length",
                        b.len()
                    ))
                })?;
                content.extend_from_slice(&len.to_be_bytes());
                content.extend_from_slice(b);
            }
        }
        Encoding::Json | Encoding::JsonLines => {
            for b in batches {
                let req = ExportTraceServiceRequest::decode(b.as_slice())
                    .map_err(|e| FormatError(format!("processed batch does not decode: {e}")))?;
                serde_json::to_writer(&mut content, &req)
                    .map_err(|e| FormatError(format!("cannot write JSON: {e}")))?;
                content.push(b'\n');
            }
        }
    }
    if !format.gzip {
        return Ok(content);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&content)
        .and_then(|()| enc.finish())
        .map_err(|e| FormatError(format!("cannot gzip output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn req(name: &str) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: name.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Scenario: the same two requests in every format, plain and gzipped.
    /// Guarantees: detection picks the right format, batches decode to the
    /// same protobuf, and writing them back reads back the same.
    #[test]
    fn every_format_is_detected_and_round_trips() {
        let (a, b) = (req("a"), req("b"));
        let pa = a.encode_to_vec();
        let json = serde_json::to_vec(&a).unwrap();
        let mut jsonl = serde_json::to_vec(&a).unwrap();
        jsonl.push(b'\n');
        jsonl.extend(serde_json::to_vec(&b).unwrap());
        jsonl.push(b'\n');
        let mut lp = Vec::new();
        for r in [&a, &b] {
            let p = r.encode_to_vec();
            lp.extend((p.len() as u32).to_be_bytes());
            lp.extend(p);
        }
        let cases = [
            (pa.clone(), Encoding::Protobuf, 1),
            (json, Encoding::Json, 1),
            (jsonl, Encoding::JsonLines, 2),
            (lp, Encoding::LengthPrefixed, 2),
        ];
        for (content, encoding, n) in cases {
            for gzip in [false, true] {
                let raw = if gzip { gz(&content) } else { content.clone() };
                let (format, batches) = read(&raw).unwrap();
                assert_eq!(format, Format { encoding, gzip });
                assert_eq!(batches.len(), n, "{format}");
                let bytes: Vec<Vec<u8>> = batches.into_iter().map(|b| b.bytes.unwrap()).collect();
                assert_eq!(bytes[0], pa, "{format}");
                let written = write(format, &bytes).unwrap();
                let (again, rebatched) = read(&written).unwrap();
                assert_eq!(again, format);
                assert_eq!(
                    rebatched.into_iter().map(|b| b.bytes.unwrap()).collect::<Vec<_>>(),
                    bytes,
                    "{format}"
                );
            }
        }
    }

    /// Scenario: OTLP/JSON as the spec writes it: hex ids, int64 as strings,
    /// enums as integers, and keys this version does not know.
    /// Guarantees: it decodes, and unknown keys are ignored.
    #[test]
    fn otlp_json_mapping_is_followed() {
        let doc = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"s"},"futureKey":1,"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"GET /x","kind":2,"startTimeUnixNano":"1544712660000000000",
            "attributes":[{"key":"n","value":{"intValue":"12345678901"}}],"somethingNew":{"a":1}}]}]}]}"#;
        let (format, batches) = read(doc).unwrap();
        assert_eq!(format.encoding, Encoding::Json);
        let r = ExportTraceServiceRequest::decode(batches[0].bytes.as_ref().unwrap().as_slice())
            .unwrap();
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(span.span_id.len(), 8);
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    }

    /// Scenario: one bad line among good ones, a truncated length-prefixed
    /// file, and a gzip bomb's header with corrupt data.
    /// Guarantees: the bad line is reported by number and the rest read; the
    /// others fail with a reason naming the byte.
    #[test]
    fn bad_input_is_located() {
        let mut jsonl = serde_json::to_vec(&req("a")).unwrap();
        jsonl.extend(b"\n{\"resourceSpans\": 7}\n");
        jsonl.extend(serde_json::to_vec(&req("c")).unwrap());
        let (_, batches) = read(&jsonl).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(batches[0].bytes.is_ok() && batches[2].bytes.is_ok());
        assert_eq!(batches[1].location, Location::Line(2));
        assert!(batches[1].bytes.as_ref().unwrap_err().contains("not OTLP JSON"));

        let err = read(&[0, 0, 0, 9, 1, 2]).unwrap_err();
        assert!(err.0.contains("record 0 at byte 0 claims 9 bytes"), "{err}");
        let err = read(&[0x1f, 0x8b, 8, 0, 0]).unwrap_err();
        assert!(err.0.contains("gzip"), "{err}");
    }

    /// Regression: a protobuf request whose first ResourceSpans is 123 or 91
    /// bytes long starts with `\n{` or `\n[`, and was taken for JSON.
    /// Scenario: such requests, all-ASCII so they are valid UTF-8 too; and
    /// pretty JSON with a leading newline and a byte-order mark.
    /// Guarantees: the requests are read as protobuf, the JSON as JSON.
    #[test]
    fn protobuf_starting_with_newline_brace_is_not_json() {
        for len in [123u8, 91] {
            let mut req = vec![0x0a, len, 0x1a, len - 2];
            req.extend(std::iter::repeat_n(b'x', usize::from(len) - 2));
            let (format, batches) = read(&req).unwrap();
            assert_eq!(format.encoding, Encoding::Protobuf, "length {len}");
            assert_eq!(batches[0].bytes.as_ref().unwrap(), &req);
        }
        let mut json = b"\xef\xbb\xbf\n".to_vec();
        json.extend(serde_json::to_vec_pretty(&req("a")).unwrap());
        assert_eq!(read(&json).unwrap().0.encoding, Encoding::Json);
    }

    /// Scenario: an empty file, which is what a batch whose spans were all
    /// dropped becomes.
    /// Guarantees: one valid, empty protobuf batch, so outputs read back.
    #[test]
    fn empty_file_is_one_empty_batch() {
        let (format, batches) = read(b"").unwrap();
        assert_eq!(format.encoding, Encoding::Protobuf);
        assert_eq!(batches.len(), 1);
        assert!(batches[0].bytes.as_ref().unwrap().is_empty());
    }

    /// Scenario: JSON that is not an OTLP traces document: metrics, an
    /// array, an empty object, a log line.
    /// Guarantees: each is an error, never an empty batch.
    #[test]
    fn json_that_is_not_traces_is_refused() {
        for doc in [
            &br#"{"resourceMetrics": []}"#[..],
            b"[1, 2]",
            b"{}",
            b"{\"level\":\"info\"}\n{\"level\":\"warn\"}\n",
        ] {
            let result = read(doc);
            let refused = match &result {
                Err(_) => true,
                Ok((_, batches)) => batches.iter().all(|b| b.bytes.is_err()),
            };
            assert!(refused, "{}: {result:?}", String::from_utf8_lossy(doc));
        }
    }

    /// Scenario: a small gzip file that inflates past the limit.
    /// Guarantees: refused before it is all in memory.
    #[test]
    fn gzip_bomb_is_refused() {
        let bomb = gz(&vec![0u8; 4 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = read_limited(&bomb, 1 << 20).unwrap_err();
        assert!(err.0.contains("past the limit of 1048576 bytes"), "{err}");
    }
}
