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
    let value: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("not valid YAML at line {} column {}: {e}", l.line(), l.column()),
            None => format!("not valid YAML: {e}"),
        })?;
    let value = if value.is_null() { serde_json::Value::Object(Default::default()) } else { value };
    Ok(value.to_string())
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
}
