//! Config files: YAML (or JSON, which is YAML too) in, the JSON document the
//! component reads out.
//!
//! The host only parses the file; the component validates it, so that every
//! host and the component agree on what a valid config is.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

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

/// Reads a YAML or JSON config file and returns it as a JSON document,
/// with its team files attached (see [`attach_teams`]).
pub fn load(path: &Path) -> Result<String, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        path: path.display().to_string(),
        reason: format!("cannot read it: {e}"),
        unreadable: true,
    })?;
    let json =
        to_json(&text).and_then(|json| resolve_key(&json, path.parent())).map_err(|reason| {
            ConfigFileError { path: path.display().to_string(), reason, unreadable: false }
        })?;
    Ok(attach_teams(&json, path.parent()).0)
}

/// The team files directory a config document names (`teams.dir`, version
/// 2), resolved against the config file's directory.
pub fn teams_dir(json: &str, config_dir: Option<&Path>) -> Option<PathBuf> {
    let doc: Value = serde_json::from_str(json).ok()?;
    if doc.get("version").and_then(Value::as_u64) != Some(2) {
        return None;
    }
    let dir = doc.get("teams")?.get("dir")?.as_str()?;
    Some(config_dir.unwrap_or(Path::new(".")).join(dir))
}

/// The team files in `dir` (every `.yaml` or `.yml`), sorted.
pub fn team_file_paths(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads the team files of `teams.dir` (every `<name>.yaml` or `.yml`, the
/// name being the `teams.key` value it applies to) and passes them to the
/// component under `teams.files`: the component reads no file. A file that
/// cannot be read or parsed is passed as its error, so the component leaves
/// that team out and says why, like any other problem of a team file; a
/// missing directory is a problem of `teams.dir` the same way. Returns the
/// document and the directory read, if any.
pub fn attach_teams(json: &str, config_dir: Option<&Path>) -> (String, Option<PathBuf>) {
    let Some(dir) = teams_dir(json, config_dir) else { return (json.to_owned(), None) };
    let Ok(mut doc) = serde_json::from_str::<Value>(json) else { return (json.to_owned(), None) };
    let written = doc["teams"]["dir"].as_str().unwrap_or_default().trim_end_matches('/').to_owned();
    let mut files = serde_json::Map::new();
    match team_file_paths(&dir) {
        Err(e) => {
            let reason = format!("cannot read the teams directory {}: {}", dir.display(), e.kind());
            files.insert(".dir".into(), json!({"file": written, "error": reason}));
        }
        Ok(paths) => {
            for path in paths {
                let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
                let file = format!(
                    "{written}/{}",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or(name)
                );
                if files.contains_key(name) {
                    // `x.yaml` and `x.yml` both: neither wins silently.
                    let reason = "two files for one team (.yaml and .yml); keep one";
                    files.insert(name.to_owned(), json!({"file": file, "error": reason}));
                    continue;
                }
                let entry = match std::fs::read_to_string(&path) {
                    Err(e) => {
                        json!({"file": file, "error": format!("cannot read it: {}", e.kind())})
                    }
                    Ok(text) => match to_json(&text) {
                        Ok(team) => {
                            json!({"file": file, "doc": serde_json::from_str::<Value>(&team).unwrap_or(Value::Null)})
                        }
                        Err(reason) => json!({"file": file, "error": reason}),
                    },
                };
                files.insert(name.to_owned(), entry);
            }
        }
    }
    doc["teams"]["files"] = Value::Object(files);
    (doc.to_string(), Some(dir))
}

/// For each team file in `next` (a component config document) that has a
/// problem, the version of that team in `previous` (the document serving
/// now), so a broken edit keeps the team's last good rules. Returns the
/// document to load and the names of the teams whose new file failed.
pub fn keep_last_good(next: &str, previous: Option<&str>) -> (String, Vec<String>) {
    let Ok(mut doc) = serde_json::from_str::<Value>(next) else { return (next.to_owned(), vec![]) };
    // The platform's mask, which bounds what a team may add to it.
    let platform_mask = doc.as_object().and_then(|root| {
        let platform: serde_json::Map<String, Value> = root
            .iter()
            .filter(|(k, _)| *k != "teams")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tracescrub_processor::Config::from_value(&Value::Object(platform)).map(|c| c.mask).ok()
    });
    let Some(files) = doc.pointer_mut("/teams/files").and_then(Value::as_object_mut) else {
        return (next.to_owned(), vec![]);
    };
    let old: Option<Value> = previous.and_then(|p| serde_json::from_str(p).ok());
    let mut failed = Vec::new();
    // The directory itself could not be read: every team keeps its last
    // good version, not only those the new listing names.
    if files.contains_key(".dir")
        && let Some(old_files) = old.as_ref().and_then(|o| o.pointer("/teams/files")?.as_object())
    {
        for (name, entry) in old_files {
            files.entry(name.clone()).or_insert_with(|| entry.clone());
        }
    }
    for (name, entry) in files.iter_mut() {
        let file = entry.get("file").and_then(Value::as_str).unwrap_or(name);
        let bad = entry.get("error").is_some()
            || tracescrub_processor::teams::read_team(
                name,
                file,
                entry.get("doc").unwrap_or(&Value::Null),
            )
            .and_then(|mut team| match &platform_mask {
                Some(mask) => tracescrub_processor::teams::settle_team_mask(mask, &mut team)
                    .map_err(|p| vec![p]),
                None => Ok(()),
            })
            .is_err();
        if !bad {
            continue;
        }
        failed.push(name.clone());
        if let Some(last) =
            old.as_ref().and_then(|o| o.get("teams")?.get("files")?.get(name.as_str()))
        {
            *entry = last.clone();
        }
    }
    (doc.to_string(), failed)
}

/// The shortest pseudonym key, in bytes; the component checks it too.
const MIN_KEY_BYTES: usize = 32;

/// Reads the pseudonym key a config names (`mask.hmac.key_file`, relative
/// to `base`, the config file's directory; or `mask.hmac.key_env`) and
/// passes it to the component as `mask.hmac.key_hex`, the key only hosts
/// set: the component imports nothing, so it cannot read either itself.
/// A key file loses one trailing newline (`echo` writes one). Errors name
/// the key path and the file or variable, never the key.
pub fn resolve_key(json: &str, base: Option<&Path>) -> Result<String, String> {
    let mut doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not a JSON document: {e}"))?;
    let Some(hmac) = doc.pointer_mut("/mask/hmac").and_then(|h| h.as_object_mut()) else {
        return Ok(json.to_owned());
    };
    if hmac.contains_key("key_hex") {
        return Err("config key `mask.hmac.key_hex` is set only by the host, from the key it reads; name the key's file (mask.hmac.key_file) or environment variable (mask.hmac.key_env) instead, and keep the key out of the config".to_owned());
    }
    let (file, env) = (hmac.remove("key_file"), hmac.remove("key_env"));
    let key = match (file, env) {
        (None, None) => return Ok(json.to_owned()),
        (Some(_), Some(_)) => {
            return Err("config key `mask.hmac`: give key_file or key_env, not both".to_owned());
        }
        (Some(serde_json::Value::String(f)), None) => {
            let path = beside(base, &f);
            let mut key = std::fs::read(&path).map_err(|e| {
                format!("config key `mask.hmac.key_file`: cannot read {}: {e}", path.display())
            })?;
            if key.ends_with(b"\n") {
                key.pop();
                if key.ends_with(b"\r") {
                    key.pop();
                }
            }
            check_len(&key, &format!("`mask.hmac.key_file` ({})", path.display()))?;
            key
        }
        (None, Some(serde_json::Value::String(var))) => {
            let key = std::env::var_os(&var).ok_or_else(|| {
                format!("config key `mask.hmac.key_env`: the environment variable {var} is not set")
            })?;
            let key = key.into_encoded_bytes();
            check_len(&key, &format!("`mask.hmac.key_env` ({var})"))?;
            key
        }
        (Some(_), None) => {
            return Err(
                "config key `mask.hmac.key_file`: expected a file name (a string)".to_owned()
            );
        }
        (None, Some(_)) => {
            return Err(
                "config key `mask.hmac.key_env`: expected a variable name (a string)".to_owned()
            );
        }
    };
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    hmac.insert("key_hex".to_owned(), serde_json::Value::String(hex));
    Ok(doc.to_string())
}

/// The key file a config document names (`mask.hmac.key_file`), as
/// [`resolve_key`] reads it; `None` when the key comes from elsewhere.
pub fn key_file(json: &str, config_dir: Option<&Path>) -> Option<PathBuf> {
    let doc: Value = serde_json::from_str(json).ok()?;
    Some(beside(config_dir, doc.pointer("/mask/hmac/key_file")?.as_str()?))
}

/// `file` relative to `dir` (the config file's directory) unless absolute.
fn beside(dir: Option<&Path>, file: &str) -> PathBuf {
    dir.map_or_else(|| PathBuf::from(file), |d| d.join(file))
}

fn check_len(key: &[u8], what: &str) -> Result<(), String> {
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "config key {what}: the key is {} bytes; a pseudonym key needs at least {MIN_KEY_BYTES} (e.g. `head -c 32 /dev/urandom > FILE`)",
            key.len()
        ));
    }
    Ok(())
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

    /// Scenario: a config naming its key by file (relative to the config)
    /// and by environment variable, and the ways that goes wrong.
    /// Guarantees: the host passes the key as key_hex and drops the names;
    /// short keys, a key_hex in the file and missing sources are refused
    /// with the key path, and no message quotes the key.
    #[test]
    fn keys_are_resolved_by_the_host_and_never_quoted() {
        let dir = std::env::temp_dir().join(format!("tracescrub-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = "K".repeat(40);
        std::fs::write(dir.join("key"), format!("{key}\n")).unwrap();
        std::fs::write(dir.join("short"), "shortkey").unwrap();
        let doc = |hmac: &str| {
            format!(r#"{{"mask":{{"replacement":"hmac","hmac":{{"key_id":"a",{hmac}}}}}}}"#)
        };
        let json = resolve_key(&doc(r#""key_file":"key""#), Some(&dir)).unwrap();
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(json.contains(&hex) && !json.contains("key_file"), "{json}");
        // The file the watcher watches is the one read.
        assert_eq!(key_file(&doc(r#""key_file":"key""#), Some(&dir)), Some(dir.join("key")));
        assert_eq!(key_file(&doc(r#""key_file":"/k""#), Some(&dir)), Some(PathBuf::from("/k")));
        assert_eq!(key_file(&doc(r#""key_env":"K""#), Some(&dir)), None);
        // key_env is tested through the binary (tests/cli.rs), which sets it.
        for (hmac, path) in [
            (r#""key_file":"short""#, "mask.hmac.key_file"),
            (r#""key_file":"missing""#, "mask.hmac.key_file"),
            (r#""key_env":"TRACESCRUB_TEST_NO_SUCH_VAR""#, "mask.hmac.key_env"),
            (r#""key_hex":"00""#, "mask.hmac.key_hex"),
            (r#""key_file":"key","key_env":"X""#, "mask.hmac"),
        ] {
            let err = resolve_key(&doc(hmac), Some(&dir)).unwrap_err();
            assert!(err.contains(path), "{hmac}: {err}");
            assert!(!err.contains("shortkey") && !err.contains(&key), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Scenario: a teams directory with a good file, a team written as both
    /// `.yaml` and `.yml`, then the directory gone, then a good file broken.
    /// Guarantees: the doubled team is an error (neither file wins
    /// silently); with the directory unreadable every team keeps its last
    /// good version; a broken file keeps its own last good version.
    #[test]
    fn team_files_keep_their_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let teams = dir.path().join("teams");
        std::fs::create_dir(&teams).unwrap();
        std::fs::write(teams.join("a.yaml"), "noise: {extra_globs: ['/a']}\n").unwrap();
        std::fs::write(teams.join("b.yaml"), "noise: {extra_globs: ['/b']}\n").unwrap();
        std::fs::write(teams.join("b.yml"), "noise: {extra_globs: ['*']}\n").unwrap();
        let main = r#"{"version":2,"teams":{"dir":"teams"}}"#;
        let (first, _) = attach_teams(main, Some(dir.path()));
        let (first, failed) = keep_last_good(&first, None);
        assert_eq!(failed, ["b"]);
        let doc: Value = serde_json::from_str(&first).unwrap();
        assert!(doc["teams"]["files"]["b"]["error"].as_str().unwrap().contains("two files"));

        std::fs::write(teams.join("a.yaml"), "noise: {extra_globs: ['[']}\n").unwrap();
        let (broken, _) = attach_teams(main, Some(dir.path()));
        let (kept, failed) = keep_last_good(&broken, Some(&first));
        assert!(failed.contains(&"a".to_owned()));
        let doc: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(doc["teams"]["files"]["a"]["doc"]["noise"]["extra_globs"][0], "/a");

        std::fs::remove_dir_all(&teams).unwrap();
        let (gone, _) = attach_teams(main, Some(dir.path()));
        let (kept, _) = keep_last_good(&gone, Some(&first));
        let doc: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(doc["teams"]["files"]["a"]["doc"]["noise"]["extra_globs"][0], "/a");
    }

    /// Scenario: a team file adds a pattern, then adds so many that with
    /// the platform's it passes the detector bound.
    /// Guarantees: the second version counts as failed and the team keeps
    /// its first; the bound is judged against the platform's mask.
    #[test]
    fn a_team_passing_the_detector_bound_keeps_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let teams = dir.path().join("teams");
        std::fs::create_dir(&teams).unwrap();
        let team = |n: usize| {
            let names = ["a", "b", "c", "d", "e"];
            let p: Vec<String> =
                names[..n].iter().map(|x| format!("{{name: p-{x}, regex: Q}}")).collect();
            format!("mask: {{patterns: [{}]}}\n", p.join(", "))
        };
        let platform: Vec<String> = (0..60)
            .map(|i| {
                format!(
                    r#"{{"name":"q-{}{}","regex":"Q"}}"#,
                    char::from(b'a' + i / 26),
                    char::from(b'a' + i % 26)
                )
            })
            .collect();
        let main = format!(
            r#"{{"version":2,"teams":{{"dir":"teams"}},"mask":{{"patterns":[{}]}}}}"#,
            platform.join(",")
        );
        std::fs::write(teams.join("a.yaml"), team(4)).unwrap();
        let (first, _) = attach_teams(&main, Some(dir.path()));
        let (first, failed) = keep_last_good(&first, None);
        assert!(failed.is_empty(), "{failed:?}");
        std::fs::write(teams.join("a.yaml"), team(5)).unwrap();
        let (next, _) = attach_teams(&main, Some(dir.path()));
        let (kept, failed) = keep_last_good(&next, Some(&first));
        assert_eq!(failed, ["a"]);
        let doc: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(
            doc["teams"]["files"]["a"]["doc"]["mask"]["patterns"].as_array().unwrap().len(),
            4
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
