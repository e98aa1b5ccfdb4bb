//! Config files: YAML (or JSON, which is YAML too) in, the JSON document the
//! component reads out.
//!
//! The host only parses the file; the component validates it, so that every
//! host and the component agree on what a valid config is.

use std::fmt;
use std::path::Path;

/// The default config: the platform's rules, commented. `{}` means the same.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../default-config.yaml");

/// Why a config file could not be read.
#[derive(Debug)]
pub struct ConfigFileError {
    /// The file, as given.
    pub path: String,
    /// What went wrong, with line and column where known.
    pub reason: String,
    /// True when the file could not be read at all (as opposed to parsed).
    pub unreadable: bool,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigFileError {}

/// Reads a YAML or JSON config file and returns it as a JSON document.
pub fn load(path: &Path) -> Result<String, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        path: path.display().to_string(),
        reason: format!("cannot read it: {e}"),
        unreadable: true,
    })?;
    to_json(&text).map_err(|reason| ConfigFileError {
        path: path.display().to_string(),
        reason,
        unreadable: false,
    })
}

/// Converts YAML (or JSON) config text to a JSON document. An empty file is `{}`.
pub fn to_json(text: &str) -> Result<String, String> {
    to_value(text).map(|value| value.to_string())
}

/// Parses YAML (or JSON) config text. An empty file is an empty mapping.
///
/// A syntax error names the line, column and byte offset and libyaml's
/// description of the problem, but never quotes the text: a config file
/// holds secrets (upstream headers), and the message goes to logs and to
/// `/-/reload`'s answer.
pub fn to_value(text: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e))?;
    Ok(if value.is_null() { serde_json::Value::Object(Default::default()) } else { value })
}

fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    let problem = text.split(" at line ").next().unwrap_or_default();
    let problem =
        if is_fixed_phrase(problem) { problem } else { "not a document the host can read" };
    match e.location() {
        Some(l) => format!(
            "not valid YAML at line {} column {} (byte {}): {problem}",
            l.line(),
            l.column(),
            l.index()
        ),
        None => format!("not valid YAML: {problem}"),
    }
}

/// Whether `problem` is one of libyaml's fixed phrases ("did not find
/// expected ',' or ']'"): words, and single punctuation marks in quotes.
/// Anything else may carry a piece of the file and is not repeated.
fn is_fixed_phrase(problem: &str) -> bool {
    let bytes = problem.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\''
            && i + 2 < bytes.len()
            && bytes[i + 2] == b'\''
            && bytes[i + 1].is_ascii_punctuation()
        {
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphabetic() || b == b' ' || b == b',') {
            return false;
        }
        i += 1;
    }
    !problem.is_empty()
}

/// The default config as JSON.
pub fn default_json() -> String {
    to_json(DEFAULT_CONFIG_YAML).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: the commented default file the CLI prints.
    /// Guarantees: it parses, and it is exactly the engine's defaults, so
    /// the documentation cannot drift from the code.
    #[test]
    fn default_yaml_is_the_engine_default() {
        let json = to_json(DEFAULT_CONFIG_YAML).unwrap();
        let from_file = tracescrub_processor::Config::from_json(&json).unwrap();
        assert_eq!(from_file, tracescrub_processor::Config::default());
    }

    #[test]
    fn yaml_json_and_empty_files_convert() {
        assert_eq!(to_json("").unwrap(), "{}");
        assert_eq!(to_json("mask:\n  mode: any11\n").unwrap(), r#"{"mask":{"mode":"any11"}}"#);
        assert_eq!(
            to_json(r#"{"mask": {"mode": "any11"}}"#).unwrap(),
            r#"{"mask":{"mode":"any11"}}"#
        );
    }

    #[test]
    fn yaml_errors_name_line_and_column() {
        let err = to_json("noise:\n  globs: [a\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    /// Scenario: YAML syntax errors around a secret and a personal number:
    /// an unclosed quote, a bad escape, a tab, an unknown anchor.
    /// Guarantees: each names the line and byte offset and never quotes the
    /// text; libyaml's fixed phrases pass through.
    #[test]
    fn yaml_errors_never_quote_the_text() {
        for text in [
            "gateway:\n  upstream_headers: {Authorization: \"Bearer s3cr3t 01017012345\n",
            "gateway: \"\\q s3cr3t 01017012345\"\n",
            "a: b: s3cr3t 01017012345\n",
            "a: *s3cr3t01017012345\n",
            "a: [s3cr3t 01017012345\n",
            "a: !!int s3cr3t01017012345\n",
        ] {
            let err = to_json(text).unwrap_err();
            assert!(!err.contains("s3cr3t") && !err.contains("01017012345"), "{err}");
            assert!(err.contains("not valid YAML"), "{err}");
        }
        let err = to_json("a: [b\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("byte"), "{err}");
    }
}
