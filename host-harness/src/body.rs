//! OTLP request bodies: the one place that gunzips (with a cap) and turns an
//! OTLP/JSON traces document into protobuf.
//!
//! Files (`formats`, for `replay` and `audit`) and requests (`serve`) both
//! decode through here, so a body one accepts the other accepts too. Each
//! maps [`BodyError`] to its own answer: a file's error line, or a 400 /
//! `InvalidArgument` (413 / `ResourceExhausted` for [`BodyErrorKind::TooLarge`]).
//!
//! Messages never quote a value from the body: they say what was wrong and
//! where (line and column), so a reply or a log line cannot leak span content.

use std::fmt;
use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// What kind of problem.
    pub kind: BodyErrorKind,
    /// What was wrong, where, and what to send instead.
    pub message: String,
}

/// The kinds of [`BodyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyErrorKind {
    /// Corrupt gzip, or JSON that is not OTLP/JSON.
    Malformed,
    /// Valid JSON, but not a traces document (logs, metrics, snake_case keys,
    /// an array, ...): it must not pass as an empty batch.
    NotTraces,
    /// Gzip that inflates past the cap.
    TooLarge,
}

impl BodyError {
    fn new(kind: BodyErrorKind, message: impl Into<String>) -> BodyError {
        BodyError { kind, message: message.into() }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BodyError {}

/// The two bytes every gzip member starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decompresses gzip (every member), refusing it after `limit + 1` bytes
/// however far it would inflate: a gzip bomb costs at most `limit` bytes.
pub fn gunzip(raw: &[u8], limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(
        raw.len().saturating_mul(4).min(usize::try_from(limit).unwrap_or(usize::MAX)),
    );
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(limit.saturating_add(1));
    decoder.read_to_end(&mut out).map_err(|e| {
        BodyError::new(
            BodyErrorKind::Malformed,
            format!("gzip data is corrupt after {} decompressed bytes: {e}", out.len()),
        )
    })?;
    if out.len() as u64 > limit {
        return Err(BodyError::new(
            BodyErrorKind::TooLarge,
            format!("gzip content inflates past the limit of {limit} bytes; send smaller batches"),
        ));
    }
    Ok(out)
}

/// Turns one OTLP/JSON `ExportTraceServiceRequest` into protobuf, with the
/// `opentelemetry-proto` serde mapping.
///
/// The document must be an object with a `resourceSpans` key: OTLP/JSON
/// ignores unknown keys, so without that check a logs or metrics document,
/// or any other JSON object, would pass as an empty batch and be answered
/// as if it had been delivered.
pub fn json_traces_to_protobuf(doc: &[u8]) -> Result<Vec<u8>, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(doc).map_err(|e| json_error(&e))?;
    let Some(object) = value.as_object() else {
        let what = match value {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(BodyError::new(
            BodyErrorKind::NotTraces,
            format!(
                "the JSON document is {what}, not an OTLP traces document; expected an object like {{\"resourceSpans\": [...]}}"
            ),
        ));
    };
    if !object.contains_key("resourceSpans") {
        return Err(BodyError::new(BodyErrorKind::NotTraces, not_traces(object)));
    }
    // Read from the text again rather than from `value`, so an error has its
    // line and column. serde's message for a value of the wrong type or
    // range quotes it, or prints it bare (`i64 value -17053650260 is out of
    // range`): say where and what kind of problem it is, never the value.
    drop(value);
    serde_json::from_slice::<ExportTraceServiceRequest>(doc).map(|r| r.encode_to_vec()).map_err(
        |e| {
            BodyError::new(
                BodyErrorKind::Malformed,
                format!(
                    "not OTLP JSON (line {} column {}): a field has a value of the wrong type, or \
                     out of range, for the OTLP/JSON mapping (ids are hex strings; 64-bit integers \
                     decimal strings or numbers)",
                    e.line(),
                    e.column()
                ),
            )
        },
    )
}

/// Names what a JSON object without `resourceSpans` is, when it can tell.
fn not_traces(object: &serde_json::Map<String, serde_json::Value>) -> String {
    let other = |signal: &str, key: &str, path: &str| {
        format!(
            "an OTLP {signal} document (\"{key}\") is not a traces document; send it to {path}, and traces as {{\"resourceSpans\": [...]}}"
        )
    };
    if object.contains_key("resourceLogs") {
        other("logs", "resourceLogs", "/v1/logs")
    } else if object.contains_key("resourceMetrics") {
        other("metrics", "resourceMetrics", "/v1/metrics")
    } else if object.contains_key("resourceProfiles") {
        other("profiles", "resourceProfiles", "/v1development/profiles")
    } else if object.contains_key("resource_spans") {
        "\"resource_spans\" is the protobuf field name; OTLP/JSON keys are lowerCamelCase: write \"resourceSpans\"".to_owned()
    } else {
        // Key names are the client's: counted, not quoted.
        format!(
            "not an OTLP traces document: no \"resourceSpans\" key ({} other key{}); expected an object like {{\"resourceSpans\": [...]}}",
            object.len(),
            if object.len() == 1 { "" } else { "s" }
        )
    }
}

/// A JSON syntax error, with where it was: serde's syntax messages never
/// quote the input ("EOF while parsing a value"); any other kind of error
/// may, so it gets a fixed text.
fn json_error(e: &serde_json::Error) -> BodyError {
    let reason = match e.classify() {
        serde_json::error::Category::Eof | serde_json::error::Category::Syntax => e.to_string(),
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            "a value out of range".to_owned()
        }
    };
    BodyError::new(
        BodyErrorKind::Malformed,
        format!("not OTLP JSON (line {} column {}): {reason}", e.line(), e.column()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Scenario: 1 KiB of gzip that inflates to 10 MiB of zeros, capped at 1 MiB.
    /// Guarantees: refused as too large, having inflated no more than the cap;
    /// the same bomb under a cap that fits it inflates whole; garbage after
    /// the magic is corrupt, not too large.
    #[test]
    fn gzip_bomb_is_refused_at_the_cap() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap_err().kind, BodyErrorKind::TooLarge);
        assert_eq!(gunzip(&bomb, 10 << 20).unwrap().len(), 10 << 20);
        assert_eq!(gunzip(b"\x1f\x8b garbage", 100).unwrap_err().kind, BodyErrorKind::Malformed);
    }

    /// Scenario: JSON documents that are valid JSON but not traces.
    /// Guarantees: each is refused as `NotTraces`, never read as an empty
    /// batch, and the message says what it is.
    #[test]
    fn json_that_is_not_a_traces_document_is_refused_and_named() {
        for (doc, says) in [
            (&br#"{"resourceLogs":[{"scopeLogs":[]}]}"#[..], "logs document"),
            (br#"{"resourceMetrics":[]}"#, "metrics document"),
            (br#"{"resource_spans":[]}"#, "write \"resourceSpans\""),
            (br#"{"spans":[]}"#, "no \"resourceSpans\" key (1 other key)"),
            (br#"{}"#, "no \"resourceSpans\" key (0 other keys)"),
            (br#"[{"resourceSpans":[]}]"#, "is an array"),
            (br#""resourceSpans""#, "is a string"),
        ] {
            let error = json_traces_to_protobuf(doc).unwrap_err();
            assert_eq!(error.kind, BodyErrorKind::NotTraces, "{}", String::from_utf8_lossy(doc));
            assert!(
                error.message.contains(says),
                "{}: {}",
                String::from_utf8_lossy(doc),
                error.message
            );
        }
        assert_eq!(json_traces_to_protobuf(br#"{"resourceSpans":[]}"#).unwrap(), Vec::<u8>::new());
    }

    /// Scenario: malformed OTLP/JSON whose bad value is a personal number or
    /// a secret, as a syntax error and as a type error.
    /// Guarantees: the message gives line and column, never the value.
    #[test]
    fn json_errors_never_quote_the_value() {
        for doc in [
            &br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name": 17053650260}]}]}]}"#[..],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId": "Bearer s3cr3t-17053650260"}]}]}]}"#,
            br#"{"resourceSpans":[{"scopeSpans":"Bearer s3cr3t-17053650260"}]}"#,
            b"{\"resourceSpans\": [Bearer s3cr3t-17053650260",
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":-17053650260}]}]}]}"#,
            br#"{"resourceSpans":[{"scopeSpans":"x\"17053650260 s3cr3t"}]}"#,
        ] {
            let error = json_traces_to_protobuf(doc).unwrap_err();
            assert_eq!(error.kind, BodyErrorKind::Malformed);
            assert!(!error.message.contains("17053650260") && !error.message.contains("s3cr3t"), "{}", error.message);
            assert!(error.message.contains("line 1 column "), "{}", error.message);
        }
    }
}
