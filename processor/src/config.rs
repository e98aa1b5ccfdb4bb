//! The config document: parsing, validation and the defaults.
//!
//! Config crosses the component boundary as JSON. Validation walks the whole
//! document and collects every problem with its key path, so a user fixes a
//! config in one round; a config with any problem is rejected whole.
//!
//! ```
//! use tracescrub_processor::Config;
//!
//! let cfg = Config::from_json(r#"{"noise": {"extra_globs": ["*/ping"]}, "mask": {"replacement": "label"}}"#).unwrap();
//! assert_eq!(cfg.noise.globs.last().unwrap(), "*/ping");
//! assert_eq!(cfg.noise.globs.len(), 8); // the 7 platform globs, then ours
//!
//! let problems = Config::from_json(r#"{"nosie": {}, "limits": {"max_batch_bytes": -1}}"#).unwrap_err();
//! assert_eq!(problems.len(), 2);
//! assert_eq!(problems[0].path, "nosie");
//! assert_eq!(problems[1].path, "limits.max_batch_bytes");
//! ```

use serde_json::{Map, Value, json};

use crate::detect::{Builtin, Pattern, reserved_names};
use crate::error::ConfigProblem;
use crate::fnr::Mode;
use crate::glob::DEFAULT_NOISE_GLOBS;
use crate::stats::FieldKind;
use crate::teams::{NoiseRule, Override, Teams};

/// The newest schema version this engine reads. Version 1 documents (and
/// documents without `version`) load as they always did; version 2 adds
/// `noise.rules`, `noise.presets`, `overrides` and `teams` (see
/// [`crate::teams`]).
pub const SCHEMA_VERSION: u64 = 2;

/// Default `limits.max_batch_bytes`: 64 MiB. The OpenTelemetry Collector's
/// OTLP receivers default to 4 MiB per gRPC message and no HTTP limit; a
/// 16x margin over gRPC's default keeps large HTTP batches working while
/// bounding what one call may make the engine hold.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 64 << 20;

/// The attributes a span's URL path is read from, by default: the stable
/// HTTP semantic conventions first, then the older ones still sent by many
/// SDKs.
pub const DEFAULT_PATH_ATTRIBUTES: [&str; 5] =
    ["url.path", "http.target", "http.route", "url.full", "http.url"];

/// A validated config with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `version`: 1 (the default) or 2.
    pub version: u64,
    /// Noise filtering.
    pub noise: NoiseConfig,
    /// `overrides` (version 2): platform rules per matched resource, first
    /// match wins.
    pub overrides: Vec<Override>,
    /// `teams` (version 2): the team files.
    pub teams: Teams,
    /// Personal-number masking.
    pub mask: MaskConfig,
    /// Resource limits.
    pub limits: Limits,
}

/// `noise`: which spans are dropped as health checks and scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseConfig {
    /// `noise.enabled`, default true.
    pub enabled: bool,
    /// The effective glob list: `noise.globs` (default: the platform's seven)
    /// followed by `noise.extra_globs`.
    pub globs: Vec<String>,
    /// `noise.case_sensitive`, default false (ASCII case-insensitive).
    pub case_sensitive: bool,
    /// `noise.sources.attributes`: span attribute keys a path is read from.
    pub path_attributes: Vec<String>,
    /// `noise.sources.span_name`: read `METHOD /path` from server span names.
    pub span_name: bool,
    /// `noise.drop_descendants`, default true.
    pub drop_descendants: bool,
    /// `noise.rules` (version 2): conditions beyond the path.
    pub rules: Vec<NoiseRule>,
    /// `noise.presets` (version 2; default: all of them): named rule sets.
    pub presets: Vec<String>,
}

/// `mask`: how personal numbers are found and replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskConfig {
    /// `mask.enabled`, default true.
    pub enabled: bool,
    /// `mask.mode`: `validated` (default) or `any11`.
    pub mode: Mode,
    /// `mask.replacement`.
    pub replacement: Replacement,
    /// `mask.scope.fields`: field kinds scanned, default all.
    pub fields: Vec<FieldKind>,
    /// `mask.scope.keys`: attribute-key globs (case-sensitive); when set,
    /// only values under a matching top-level key are scanned.
    pub keys: Option<Vec<String>>,
    /// The detectors beyond personal numbers: the built-ins turned on in
    /// `mask.detectors` (in [`Builtin::ALL`] order), then `mask.patterns`
    /// in config order. Earlier ones win when two find the same text.
    pub detectors: Vec<DetectorConfig>,
    /// `mask.hmac`: the key for `replacement: hmac`, as the host passed it.
    pub hmac: Option<HmacConfig>,
}

/// What a masked value becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// Every digit (for text detectors: every byte) becomes this printable
    /// ASCII character; length and separators are kept.
    Stars(char),
    /// The whole value becomes this text.
    Label(String),
    /// `<detector>:<key id>:<16 letters>`, the letters a truncated
    /// HMAC-SHA256 of the value under `mask.hmac`'s key.
    Hmac,
}

/// One detector beyond personal numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Its name, in stats, findings and pseudonyms.
    pub name: String,
    /// What it finds.
    pub kind: DetectorKind,
    /// What a match becomes (default: as `mask.replacement`; a label
    /// defaults to `[name]`).
    pub replacement: Replacement,
    /// Attribute-key globs it is limited to; `None`: the mask scope.
    pub keys: Option<Vec<String>>,
}

/// What a detector finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorKind {
    /// A built-in from `mask.detectors`.
    Builtin(Builtin),
    /// A custom pattern from `mask.patterns`: its regex.
    Regex(String),
}

/// `mask.hmac`: the pseudonym key, resolved by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacConfig {
    /// `mask.hmac.key_id`: names the key inside every pseudonym, so that a
    /// rotated key's pseudonyms can be told apart.
    pub key_id: String,
    /// The key bytes (from `mask.hmac.key_hex`, set by the host).
    pub key: HmacKey,
}

/// A pseudonym key. Its `Debug` never shows it, and the effective config
/// leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey(Vec<u8>);

impl HmacKey {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKey(<{} bytes, not shown>)", self.0.len())
    }
}

/// The shortest pseudonym key accepted, in bytes (256 bits, SHA-256's
/// block security).
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// The most detectors (built-in and custom) one config may turn on.
pub const MAX_DETECTORS: usize = 64;

/// `limits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `limits.max_batch_bytes`: larger batches are refused.
    pub max_batch_bytes: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            version: 1,
            overrides: Vec::new(),
            teams: Teams::default(),
            noise: NoiseConfig {
                enabled: true,
                globs: DEFAULT_NOISE_GLOBS.iter().map(|s| s.to_string()).collect(),
                case_sensitive: false,
                path_attributes: DEFAULT_PATH_ATTRIBUTES.iter().map(|s| s.to_string()).collect(),
                span_name: true,
                drop_descendants: true,
                rules: Vec::new(),
                presets: Vec::new(),
            },
            mask: MaskConfig {
                enabled: true,
                mode: Mode::Validated,
                replacement: Replacement::Stars('*'),
                fields: FieldKind::ALL.to_vec(),
                keys: None,
                detectors: Vec::new(),
                hmac: None,
            },
            limits: Limits { max_batch_bytes: DEFAULT_MAX_BATCH_BYTES },
        }
    }
}

/// Collects problems while walking the document.
pub(crate) struct Checker {
    pub(crate) problems: Vec<ConfigProblem>,
    /// Where each effective noise glob came from, to name it in problems.
    pub(crate) glob_paths: Vec<String>,
}

/// An unknown key as a problem names it: as written when it looks like a
/// config key (a typo to fix), else a placeholder, since a pasted value (a
/// token, a personal number) can land where a key belongs.
pub(crate) fn shown_key(key: &str) -> &str {
    let looks_like_a_key = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !key.as_bytes().windows(6).any(|w| w.iter().all(u8::is_ascii_digit));
    if looks_like_a_key { key } else { "<a key that is not shown>" }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Checker {
    pub(crate) fn problem(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(ConfigProblem { path: path.into(), reason: reason.into() });
    }

    /// The mapping at `path`, after reporting keys not in `known`.
    pub(crate) fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.problem(path, format!("expected a mapping, found {}", type_name(v)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    join(path, shown_key(key)),
                    format!("unknown key; expected one of: {}", known.join(", ")),
                );
            }
        }
        Some(map)
    }

    pub(crate) fn bool(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        default: bool,
    ) -> bool {
        match map.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("expected true or false, found {}", type_name(v)),
                );
                default
            }
        }
    }

    pub(crate) fn string<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        match map.get(key)? {
            Value::String(s) => Some(s),
            v => {
                self.problem(join(path, key), format!("expected a string, found {}", type_name(v)));
                None
            }
        }
    }

    pub(crate) fn strings(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<Vec<String>> {
        let path = join(path, key);
        match map.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        v => self.problem(
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", type_name(v)),
                        ),
                    }
                }
                Some(out)
            }
            v => {
                self.problem(path, format!("expected a list of strings, found {}", type_name(v)));
                None
            }
        }
    }
}

impl Config {
    /// Parses and validates a JSON config. `{}` gives the defaults. On error,
    /// every problem found is returned, in document order.
    pub fn from_json(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            vec![ConfigProblem {
                path: String::new(),
                reason: format!("not valid JSON at line {} column {}: {e}", e.line(), e.column()),
            }]
        })?;
        Config::from_value(&doc)
    }

    /// Like [`Config::from_json`], but team files that add no masking are
    /// only split off, not read: they land in [`Teams::deferred`], and a
    /// processor reads each when a resource of its namespace first comes.
    /// With hundreds of team files, reading them all was most of creating
    /// a processor, and a fresh guest creates one every few dozen batches.
    /// A deferred file with problems is left out whole when it is read,
    /// as any team file with problems is; `teams.strict` reads them all.
    pub fn from_json_deferring_teams(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        let Some((doc, deferred)) = crate::teams::split_deferred(text) else {
            return Config::from_json(text);
        };
        let mut cfg = Config::from_value(&doc)?;
        cfg.teams.deferred = deferred;
        Ok(cfg)
    }

    /// Validates an already-parsed JSON document.
    pub fn from_value(doc: &Value) -> Result<Config, Vec<ConfigProblem>> {
        let mut cfg = Config::default();
        let glob_paths =
            (0..cfg.noise.globs.len()).map(|i| format!("noise.globs[{i}] (default)")).collect();
        let mut c = Checker { problems: Vec::new(), glob_paths };
        let Some(root) =
            c.object(doc, "", &["version", "noise", "mask", "limits", "overrides", "teams"])
        else {
            return Err(c.problems);
        };
        match root.get("version") {
            None => {}
            Some(v) if matches!(v.as_u64(), Some(1 | 2)) => cfg.version = v.as_u64().unwrap_or(1),
            Some(v) => c.problem(
                "version",
                match v.as_u64() {
                    // A small whole number is a version, not a value worth hiding.
                    Some(n) if n < 100 => format!(
                        "unsupported schema version {n}; this engine reads versions 1 and {SCHEMA_VERSION}"
                    ),
                    _ => format!(
                        "expected the schema version {SCHEMA_VERSION}, found {}",
                        type_name(v)
                    ),
                },
            ),
        }
        if cfg.version >= 2 {
            // Version 2 turns the presets on unless the document says otherwise.
            cfg.noise.presets =
                crate::teams::PRESETS.iter().map(|(n, _)| (*n).to_owned()).collect();
        }
        if let Some(noise) = root.get("noise") {
            read_noise(&mut c, noise, &mut cfg.noise, cfg.version);
        }
        if let Some(mask) = root.get("mask") {
            read_mask(&mut c, mask, &mut cfg.mask);
        }
        if let Some(limits) = root.get("limits") {
            read_limits(&mut c, limits, &mut cfg.limits);
        }
        for key in ["overrides", "teams"] {
            match root.get(key) {
                None => {}
                Some(_) if cfg.version < 2 => c.problem(key, "needs `version: 2`"),
                Some(v) if key == "overrides" => {
                    cfg.overrides = crate::teams::read_overrides(&mut c, v)
                }
                Some(v) => crate::teams::read_teams(&mut c, v, &mut cfg.teams),
            }
        }
        crate::teams::settle_team_masks(&cfg.mask, &mut cfg.teams);
        if cfg.teams.strict {
            c.problems.extend(cfg.teams.problems.iter().cloned());
        }
        // Compile the globs here too, so a bad pattern is one more listed
        // problem rather than a separate failure later.
        if let Err(errors) =
            crate::glob::GlobList::validate(&cfg.noise.globs, cfg.noise.case_sensitive)
        {
            for e in errors {
                let path = c.glob_paths.get(e.index).cloned().unwrap_or_default();
                c.problem(path, format!("bad glob: {}", e.reason));
            }
        }
        if let Some(keys) = &cfg.mask.keys
            && let Err(errors) = crate::glob::GlobList::validate(keys, true)
        {
            for e in errors {
                c.problem(
                    format!("mask.scope.keys[{}]", e.index),
                    format!("bad glob: {}", e.reason),
                );
            }
        }
        if c.problems.is_empty() { Ok(cfg) } else { Err(c.problems) }
    }

    /// The config as a JSON document that [`Config::from_json`] reads back
    /// to the same config.
    pub fn to_json(&self) -> String {
        let replacement = match &self.mask.replacement {
            Replacement::Stars(ch) => json!({"replacement": "stars", "mask_char": ch.to_string()}),
            Replacement::Label(label) => json!({"replacement": "label", "label": label}),
            // Detectors that star use mask_char: keep it when it is not the default.
            Replacement::Hmac => {
                match self.mask.detectors.iter().find_map(|d| match d.replacement {
                    Replacement::Stars(c) if c != '*' => Some(c),
                    _ => None,
                }) {
                    Some(c) => json!({"replacement": "hmac", "mask_char": c.to_string()}),
                    None => json!({"replacement": "hmac"}),
                }
            }
        };
        let mut mask = json!({
            "enabled": self.mask.enabled,
            "mode": self.mask.mode.name(),
            "scope": {
                "fields": self.mask.fields.iter().map(|f| f.name()).collect::<Vec<_>>(),
            },
        });
        if let (Some(obj), Value::Object(rep)) = (mask.as_object_mut(), replacement) {
            obj.extend(rep);
        }
        if let Some(keys) = &self.mask.keys {
            mask["scope"]["keys"] = json!(keys);
        }
        let (mut detectors, mut patterns) = (Vec::new(), Vec::new());
        for d in &self.mask.detectors {
            let mut item = json!({"name": d.name});
            match &d.replacement {
                Replacement::Stars(_) => item["replacement"] = json!("stars"),
                Replacement::Label(l) => {
                    item["replacement"] = json!("label");
                    item["label"] = json!(l);
                }
                Replacement::Hmac => item["replacement"] = json!("hmac"),
            }
            if let Some(keys) = &d.keys {
                item["keys"] = json!(keys);
            }
            match &d.kind {
                DetectorKind::Builtin(_) => detectors.push(item),
                DetectorKind::Regex(r) => {
                    item["regex"] = json!(r);
                    patterns.push(item);
                }
            }
        }
        if !detectors.is_empty() {
            mask["detectors"] = json!(detectors);
        }
        if !patterns.is_empty() {
            mask["patterns"] = json!(patterns);
        }
        if let Some(h) = &self.mask.hmac {
            // Never the key: the host passes it in again on every create.
            mask["hmac"] = json!({"key_id": h.key_id});
        }
        let mut doc = json!({
            "version": self.version,
            "noise": {
                "enabled": self.noise.enabled,
                "globs": self.noise.globs,
                "case_sensitive": self.noise.case_sensitive,
                "sources": {"attributes": self.noise.path_attributes, "span_name": self.noise.span_name},
                "drop_descendants": self.noise.drop_descendants,
            },
            "mask": mask,
            "limits": {"max_batch_bytes": self.limits.max_batch_bytes},
        });
        if self.version >= 2 {
            let rules = |rules: &[NoiseRule]| -> Vec<Value> {
                rules
                    .iter()
                    .map(|r| match r {
                        NoiseRule::SpanName(g) => json!({"span_name": g}),
                        NoiseRule::Attribute { key, glob } => {
                            json!({"attribute": key, "glob": glob})
                        }
                    })
                    .collect()
            };
            let layer = |l: &crate::teams::NoiseLayer| json!({"extra_globs": l.extra_globs, "keep_globs": l.keep_globs, "rules": rules(&l.rules)});
            doc["noise"]["rules"] = json!(rules(&self.noise.rules));
            doc["noise"]["presets"] = json!(self.noise.presets);
            doc["overrides"] = self
                .overrides
                .iter()
                .map(|o| {
                    let m: Map<String, Value> =
                        o.matches.iter().map(|(k, g)| (k.clone(), json!(g))).collect();
                    json!({"match": m, "final": o.is_final, "noise": layer(&o.noise)})
                })
                .collect();
            // Team files are the teams', and `config check` lists them; the
            // effective config says where they are read from.
            doc["teams"] = json!({"key": self.teams.key});
            if let Some(dir) = &self.teams.dir {
                doc["teams"]["dir"] = json!(dir);
            }
            if self.teams.strict {
                doc["teams"]["strict"] = json!(true);
            }
        }
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

fn read_noise(c: &mut Checker, v: &Value, noise: &mut NoiseConfig, version: u64) {
    const P: &str = "noise";
    let Some(map) = c.object(
        v,
        P,
        &[
            "enabled",
            "globs",
            "extra_globs",
            "case_sensitive",
            "sources",
            "drop_descendants",
            "rules",
            "presets",
        ],
    ) else {
        return;
    };
    for key in ["rules", "presets"] {
        if version < 2 && map.contains_key(key) {
            c.problem(join(P, key), "needs `version: 2`");
        }
    }
    if version >= 2 {
        if let Some(rules) = map.get("rules") {
            noise.rules = crate::teams::read_rules(c, rules, "noise.rules");
        }
        if let Some(presets) = c.strings(map, P, "presets") {
            for (i, name) in presets.iter().enumerate() {
                if crate::teams::preset_rules(name).is_none() {
                    let names: Vec<_> = crate::teams::PRESETS.iter().map(|(n, _)| *n).collect();
                    c.problem(
                        format!("noise.presets[{i}]"),
                        format!("unknown preset; expected one of: {}", names.join(", ")),
                    );
                }
            }
            noise.presets = presets;
        }
    }
    noise.enabled = c.bool(map, P, "enabled", noise.enabled);
    noise.case_sensitive = c.bool(map, P, "case_sensitive", noise.case_sensitive);
    noise.drop_descendants = c.bool(map, P, "drop_descendants", noise.drop_descendants);
    // Paths are recorded per glob so a bad pattern is named where it was written.
    if let Some(globs) = c.strings(map, P, "globs") {
        c.glob_paths = list_paths(map, "noise.globs");
        noise.globs = globs;
    }
    if let Some(extra) = c.strings(map, P, "extra_globs") {
        c.glob_paths.extend(list_paths(map, "noise.extra_globs"));
        noise.globs.extend(extra);
    }
    if let Some(sources) = map.get("sources") {
        let path = join(P, "sources");
        if let Some(s) = c.object(sources, &path, &["attributes", "span_name"]) {
            noise.span_name = c.bool(s, &path, "span_name", noise.span_name);
            if let Some(attrs) = c.strings(s, &path, "attributes") {
                for (i, a) in attrs.iter().enumerate() {
                    if a.is_empty() {
                        c.problem(
                            format!("{path}.attributes[{i}]"),
                            "empty attribute key; remove it",
                        );
                    }
                }
                noise.path_attributes = attrs;
            }
        }
    }
}

/// `path[i]` for each string item of the list at `path`, skipping non-strings
/// as [`Checker::strings`] does.
fn list_paths(map: &Map<String, Value>, path: &str) -> Vec<String> {
    let key = path.rsplit('.').next().unwrap_or(path);
    let items = map.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_string())
        .map(|(i, _)| format!("{path}[{i}]"))
        .collect()
}

fn read_mask(c: &mut Checker, v: &Value, mask: &mut MaskConfig) {
    const P: &str = "mask";
    let Some(map) = c.object(
        v,
        P,
        &[
            "enabled",
            "mode",
            "replacement",
            "mask_char",
            "label",
            "scope",
            "detectors",
            "patterns",
            "hmac",
        ],
    ) else {
        return;
    };
    mask.enabled = c.bool(map, P, "enabled", mask.enabled);
    if let Some(mode) = c.string(map, P, "mode") {
        match Mode::from_name(mode) {
            Some(m) => mask.mode = m,
            None => c.problem("mask.mode", "unknown mode; expected \"validated\" or \"any11\""),
        }
    }
    let mask_char = c.string(map, P, "mask_char").and_then(|s| {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(ch), None) if ch.is_ascii_graphic() && !ch.is_ascii_digit() => Some(ch),
            _ => {
                c.problem("mask.mask_char", "must be one printable ASCII character that is not a digit, e.g. \"*\"; masking keeps lengths, so it must be one byte");
                None
            }
        }
    });
    let label = c.string(map, P, "label").and_then(|s| {
        if s.bytes().any(|b| b.is_ascii_digit()) {
            // A label with digits could itself form a number next to text.
            c.problem("mask.label", "contains digits; a label must not, e.g. \"[fnr]\"");
            None
        } else {
            Some(s.to_owned())
        }
    });
    let style = c.string(map, P, "replacement").unwrap_or("stars");
    match style {
        "stars" => {
            if label.is_some() {
                c.problem("mask.label", "label is only used with replacement \"label\"; remove it or set replacement: label");
            }
            mask.replacement = Replacement::Stars(mask_char.unwrap_or('*'));
        }
        "label" => {
            if mask_char.is_some() {
                c.problem(
                    "mask.mask_char",
                    "mask_char is only used with replacement \"stars\"; remove it",
                );
            }
            mask.replacement = Replacement::Label(label.unwrap_or_else(|| "[fnr]".to_owned()));
        }
        "hmac" => {
            if label.is_some() {
                c.problem("mask.label", "label is only used with replacement \"label\"; remove it or set replacement: label");
            }
            mask.replacement = Replacement::Hmac;
        }
        _ => c.problem(
            "mask.replacement",
            "unknown replacement; expected \"stars\", \"label\" or \"hmac\"",
        ),
    }
    let star = mask_char.unwrap_or('*');
    read_detectors(c, map, mask, star);
    if let Some(h) = map.get("hmac") {
        mask.hmac = read_hmac(c, h);
    }
    let uses_hmac = mask.replacement == Replacement::Hmac
        || mask.detectors.iter().any(|d| d.replacement == Replacement::Hmac);
    if uses_hmac && mask.hmac.is_none() && !map.contains_key("hmac") {
        c.problem(
            "mask.hmac",
            "replacement \"hmac\" needs a key: set mask.hmac.key_id and mask.hmac.key_file (or key_env); the host reads the key",
        );
    }
    if let Some(scope) = map.get("scope") {
        let path = "mask.scope";
        if let Some(s) = c.object(scope, path, &["fields", "keys"]) {
            if let Some(fields) = c.strings(s, path, "fields") {
                if fields.is_empty() {
                    c.problem(
                        format!("{path}.fields"),
                        "an empty list scans nothing; to turn masking off, set mask.enabled: false",
                    );
                }
                mask.fields.clear();
                for (i, f) in fields.iter().enumerate() {
                    match FieldKind::from_name(f) {
                        Some(k) if !mask.fields.contains(&k) => mask.fields.push(k),
                        Some(_) => {}
                        None => {
                            let names: Vec<_> = FieldKind::ALL.iter().map(|k| k.name()).collect();
                            c.problem(
                                format!("{path}.fields[{i}]"),
                                format!(
                                    "unknown field kind; expected one of: {}",
                                    names.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
            if let Some(keys) = c.strings(s, path, "keys") {
                if keys.is_empty() {
                    c.problem(
                        format!("{path}.keys"),
                        "an empty list scans no attribute; remove the key to scan all of them",
                    );
                }
                mask.keys = Some(keys);
            }
        }
    }
}

/// `mask.detectors` (names of built-ins, or mappings with a `name`) and
/// `mask.patterns` (mappings with a `name` and a `regex`).
pub(crate) fn read_detectors(
    c: &mut Checker,
    map: &Map<String, Value>,
    mask: &mut MaskConfig,
    star: char,
) {
    let mut seen: Vec<(String, String)> = Vec::new(); // (name, path)
    let mut builtins: Vec<DetectorConfig> = Vec::new();
    let mut patterns: Vec<DetectorConfig> = Vec::new();
    for (list, is_pattern) in [("detectors", false), ("patterns", true)] {
        let path = format!("mask.{list}");
        let Some(v) = map.get(list) else { continue };
        let Value::Array(items) = v else {
            c.problem(&path, format!("expected a list, found {}", type_name(v)));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            if let Some(d) = read_detector(c, item, &at, is_pattern, &mask.replacement, star) {
                if let Some((_, first)) = seen.iter().find(|(n, _)| *n == d.name) {
                    c.problem(
                        format!("{at}.name"),
                        format!("this name is already the name of {first}; names must be unique"),
                    );
                    continue;
                }
                seen.push((d.name.clone(), at));
                if is_pattern { patterns.push(d) } else { builtins.push(d) }
            }
        }
    }
    // Built-ins in their fixed precedence order, whatever order the list has.
    builtins.sort_by_key(|d| match d.kind {
        DetectorKind::Builtin(b) => b,
        DetectorKind::Regex(_) => Builtin::BearerToken,
    });
    mask.detectors = builtins;
    mask.detectors.extend(patterns);
    if mask.detectors.len() > MAX_DETECTORS {
        c.problem(
            "mask.patterns",
            format!(
                "{} detectors are on; at most {MAX_DETECTORS} may be: join patterns with `|`",
                mask.detectors.len()
            ),
        );
    }
}

/// Whether `name` may name a custom pattern: lowercase letters, `-` and
/// `_`, starting with a letter. No digits: the name is the default label
/// and leads every pseudonym, where digits could join a number.
fn valid_pattern_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
}

fn read_detector(
    c: &mut Checker,
    item: &Value,
    at: &str,
    is_pattern: bool,
    default: &Replacement,
    star: char,
) -> Option<DetectorConfig> {
    let builtin_names = || Builtin::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ");
    // A built-in may be named by a plain string.
    if let (Value::String(name), false) = (item, is_pattern) {
        let item = json!({"name": name});
        return read_detector(c, &item, at, is_pattern, default, star);
    }
    let known: &[&str] = if is_pattern {
        &["name", "regex", "replacement", "label", "keys"]
    } else {
        &["name", "replacement", "label", "keys"]
    };
    let map = c.object(item, at, known)?;
    let mut ok = true;
    let name = match c.string(map, at, "name") {
        Some(n) => n.to_owned(),
        None => {
            if !map.contains_key("name") {
                c.problem(format!("{at}.name"), "missing; every detector needs a name");
            }
            return None;
        }
    };
    let kind = if is_pattern {
        if reserved_names().any(|r| r == name) {
            c.problem(
                format!("{at}.name"),
                "a built-in detector's name; list built-ins in mask.detectors, or choose another name".to_owned(),
            );
            ok = false;
        } else if !valid_pattern_name(&name) {
            c.problem(
                format!("{at}.name"),
                "a pattern name is 1 to 40 lowercase letters, `-` or `_`, starting with a letter (no digits), e.g. \"org-number\"".to_owned(),
            );
            ok = false;
        }
        match c.string(map, at, "regex") {
            Some(r) => match Pattern::new(r) {
                Ok(_) => DetectorKind::Regex(r.to_owned()),
                Err((pos, reason)) => {
                    c.problem(
                        format!("{at}.regex"),
                        format!("does not compile: at character {pos}: {reason}"),
                    );
                    return None;
                }
            },
            None => {
                if !map.contains_key("regex") {
                    c.problem(format!("{at}.regex"), "missing; a pattern needs a regex");
                }
                return None;
            }
        }
    } else {
        match Builtin::from_name(&name) {
            Some(b) => DetectorKind::Builtin(b),
            None => {
                let hint = if crate::fnr::Detector::from_name(&name).is_some() {
                    "; personal numbers are always detected (see mask.enabled)"
                } else {
                    ""
                };
                c.problem(
                    format!("{at}.name"),
                    format!("unknown detector; expected one of: {}{hint}", builtin_names()),
                );
                return None;
            }
        }
    };
    let label = c.string(map, at, "label").map(str::to_owned);
    if let Some(l) = &label
        && l.bytes().any(|b| b.is_ascii_digit())
    {
        c.problem(format!("{at}.label"), "contains digits; a label must not, e.g. \"[email]\"");
        ok = false;
    }
    let replacement = match c.string(map, at, "replacement") {
        None => match (default, label) {
            (_, Some(l)) => Replacement::Label(l),
            (Replacement::Stars(_), None) => Replacement::Stars(star),
            (Replacement::Label(_), None) => Replacement::Label(format!("[{name}]")),
            (Replacement::Hmac, None) => Replacement::Hmac,
        },
        Some("stars") => Replacement::Stars(star),
        Some("label") => Replacement::Label(label.unwrap_or_else(|| format!("[{name}]"))),
        Some("hmac") => Replacement::Hmac,
        Some(other) => {
            c.problem(
                format!("{at}.replacement"),
                format!("unknown replacement ({} characters); expected \"stars\", \"label\" or \"hmac\"", other.chars().count()),
            );
            return None;
        }
    };
    if map.contains_key("label") && !matches!(replacement, Replacement::Label(_)) {
        c.problem(
            format!("{at}.label"),
            "label is only used with replacement \"label\"; remove it",
        );
        ok = false;
    }
    let keys = c.strings(map, at, "keys");
    if let Some(keys) = &keys {
        if keys.is_empty() {
            c.problem(
                format!("{at}.keys"),
                "an empty list scans nothing; remove the key to use the mask scope",
            );
            ok = false;
        }
        if let Err(errors) = crate::glob::GlobList::validate(keys, true) {
            for e in errors {
                c.problem(format!("{at}.keys[{}]", e.index), format!("bad glob: {}", e.reason));
            }
            ok = false;
        }
    }
    ok.then_some(DetectorConfig { name, kind, replacement, keys })
}

/// `mask.hmac`. The component takes the key only as `key_hex`, which the
/// host sets from `key_file` or `key_env`; no problem ever quotes the key.
fn read_hmac(c: &mut Checker, v: &Value) -> Option<HmacConfig> {
    const P: &str = "mask.hmac";
    let map = c.object(v, P, &["key_id", "key_file", "key_env", "key_hex"])?;
    let mut ok = true;
    for unresolved in ["key_file", "key_env"] {
        if map.contains_key(unresolved) {
            c.problem(
                format!("{P}.{unresolved}"),
                "the host reads the key and passes it in; this host did not. Load the config with the `tracescrub` command (replay, audit, bench, serve), or have your host read the key and pass its bytes, hex-encoded, as mask.hmac.key_hex",
            );
            ok = false;
        }
    }
    let key_id = match c.string(map, P, "key_id") {
        Some(id) => {
            let digits_run = id.as_bytes().windows(6).any(|w| w.iter().all(u8::is_ascii_digit));
            let chars_ok =
                id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if id.is_empty() || id.len() > 32 || !chars_ok || digits_run {
                c.problem(
                    format!("{P}.key_id"),
                    "a key id is 1 to 32 letters, digits, `.`, `_` or `-`, never six digits in a row, e.g. \"2026a\"".to_owned(),
                );
                ok = false;
            }
            id.to_owned()
        }
        None => {
            if !map.contains_key("key_id") {
                c.problem(format!("{P}.key_id"), "missing; name the key (it goes into every pseudonym, so a rotated key shows), e.g. key_id: \"2026a\"");
            }
            ok = false;
            String::new()
        }
    };
    let key = match map.get("key_hex") {
        None => {
            if !map.contains_key("key_file") && !map.contains_key("key_env") {
                c.problem(P, "no key: set mask.hmac.key_file or mask.hmac.key_env");
            }
            None
        }
        Some(Value::String(hex)) => match decode_hex(hex) {
            Err(at) => {
                c.problem(
                    format!("{P}.key_hex"),
                    format!("not hex at character {at} (the key is not shown); the host must pass the key's bytes hex-encoded"),
                );
                None
            }
            Ok(key) if key.len() < MIN_HMAC_KEY_BYTES => {
                c.problem(
                    format!("{P}.key_hex"),
                    format!("the key is {} bytes; a key needs at least {MIN_HMAC_KEY_BYTES} (e.g. `head -c 32 /dev/urandom > key`)", key.len()),
                );
                None
            }
            Ok(key) => Some(HmacKey(key)),
        },
        Some(v) => {
            c.problem(format!("{P}.key_hex"), format!("expected a string, found {}", type_name(v)));
            None
        }
    };
    match (ok, key) {
        (true, Some(key)) => Some(HmacConfig { key_id, key }),
        _ => None,
    }
}

/// Bytes from hex; on error the character index where it goes wrong.
fn decode_hex(hex: &str) -> Result<Vec<u8>, usize> {
    let b = hex.as_bytes();
    let nibble = |i: usize| -> Result<u8, usize> {
        let c = b.get(i).ok_or(i)?;
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(i),
        }
    };
    (0..b.len()).step_by(2).map(|i| Ok(nibble(i)? << 4 | nibble(i + 1)?)).collect()
}

fn read_limits(c: &mut Checker, v: &Value, limits: &mut Limits) {
    let Some(map) = c.object(v, "limits", &["max_batch_bytes"]) else {
        return;
    };
    match map.get("max_batch_bytes") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => limits.max_batch_bytes = n,
            _ => c.problem(
                "limits.max_batch_bytes",
                format!("expected a whole number of bytes above 0, found {}", type_name(v)),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(json: &str) -> Vec<(String, String)> {
        Config::from_json(json).unwrap_err().into_iter().map(|p| (p.path, p.reason)).collect()
    }

    /// Scenario: every key of the full config (each leaf of the effective
    /// config, and a list entry of each list), set in turn to a string, a
    /// list and a bad glob that carry a secret and a personal number, plus
    /// a syntax error right after the secret.
    /// Guarantees: every problem names a key path and never quotes the
    /// value: neither the secret nor the number is in any path or reason.
    #[test]
    fn problems_never_echo_a_value() {
        const SECRET: &str = "Bearer s3cr3t-t0ken";
        const FNR: &str = "01019012138";
        let planted = [
            json!(format!("{SECRET} {FNR}")),
            json!([format!("{SECRET} {FNR}")]),
            json!([format!("[{SECRET}{FNR}")]),
            json!([format!("*/{FNR}/{{a,[z-a]")]),
            json!({ SECRET: FNR }),
            json!(-1_019_012_138i64),
            json!(1.019_012_138_5e10),
        ];
        let base: Value = serde_json::from_str(&Config::default().to_json()).unwrap();
        let mut leaves = Vec::new();
        fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        path.push(k.clone());
                        walk(v, path, out);
                        path.pop();
                    }
                }
                _ => out.push(path.clone()),
            }
        }
        walk(&base, &mut Vec::new(), &mut leaves);
        assert!(leaves.len() > 10, "{leaves:?}");
        let mut checked = 0;
        for leaf in &leaves {
            for value in &planted {
                let mut doc = base.clone();
                let mut at = &mut doc;
                for k in leaf {
                    at = &mut at[k.as_str()];
                }
                *at = value.clone();
                let Err(problems) = Config::from_json(&doc.to_string()) else { continue };
                checked += 1;
                for p in problems {
                    for bad in [SECRET, FNR, "s3cr3t", "z-a"] {
                        assert!(
                            !p.path.contains(bad) && !p.reason.contains(bad),
                            "{leaf:?} = {value}: {p}"
                        );
                    }
                }
            }
        }
        assert!(checked > leaves.len() * 3, "most plantings must be refused: {checked}");
        let broken = format!(r#"{{"mask": {{"label": "{SECRET} {FNR}" x}}}}"#);
        for p in Config::from_json(&broken).unwrap_err() {
            assert!(!p.reason.contains(SECRET) && !p.reason.contains(FNR), "{p}");
        }
    }

    #[test]
    fn empty_document_gives_platform_defaults() {
        let cfg = Config::from_json("{}").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.noise.globs, DEFAULT_NOISE_GLOBS);
        assert_eq!(cfg.mask.mode, Mode::Validated);
        assert_eq!(cfg.mask.replacement, Replacement::Stars('*'));
    }

    #[test]
    fn effective_config_round_trips() {
        let docs = [
            "{}",
            r#"{"noise": {"globs": ["/a*"], "case_sensitive": true, "sources": {"attributes": ["x"], "span_name": false}}}"#,
            r#"{"mask": {"mode": "any11", "replacement": "label", "label": "<fnr>", "scope": {"fields": ["span-attribute"], "keys": ["db.*"]}}}"#,
            r##"{"mask": {"mask_char": "#"}, "limits": {"max_batch_bytes": 10}}"##,
        ];
        for doc in docs {
            let cfg = Config::from_json(doc).unwrap();
            assert_eq!(Config::from_json(&cfg.to_json()).unwrap(), cfg, "{doc}");
        }
    }

    #[test]
    fn globs_replace_and_extra_globs_extend() {
        let cfg =
            Config::from_json(r#"{"noise": {"globs": ["/a"], "extra_globs": ["/b"]}}"#).unwrap();
        assert_eq!(cfg.noise.globs, ["/a", "/b"]);
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let got = problems(
            r#"{"version": 3, "noise": {"enabled": "yes", "globs": ["ok", 5, "a["], "bogus": 1},
               "mask": {"mode": "loose", "replacement": "label", "label": "fnr1", "scope": {"fields": ["span-name", "nope"]}},
               "limits": {"max_batch_bytes": 0}, "overrides": []}"#,
        );
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "version",
                "noise.bogus",
                "noise.enabled",
                "noise.globs[1]",
                "mask.mode",
                "mask.label",
                "mask.scope.fields[1]",
                "limits.max_batch_bytes",
                "overrides",
                "noise.globs[2]",
            ],
            "{got:#?}"
        );
    }

    #[test]
    fn unknown_key_names_the_expected_keys() {
        let got = problems(r#"{"mask": {"mod": "any11"}}"#);
        assert_eq!(got[0].0, "mask.mod");
        assert!(got[0].1.contains("mode"), "{got:?}");
    }

    #[test]
    fn wrong_types_are_named() {
        let got = problems(r#"{"noise": [], "mask": {"scope": {"keys": "db.statement"}}}"#);
        assert_eq!(got[0], ("noise".into(), "expected a mapping, found a list".into()));
        assert_eq!(got[1].0, "mask.scope.keys");
        assert!(got[1].1.contains("list of strings"));
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let got = problems("{\n  \"noise\": }");
        assert_eq!(got.len(), 1);
        assert!(got[0].1.contains("line 2"), "{got:?}");
    }

    /// Regression: `keys: []` or `fields: []` passed as valid and silently
    /// turned masking off.
    #[test]
    fn empty_scope_lists_are_problems() {
        for doc in
            [r#"{"mask": {"scope": {"keys": []}}}"#, r#"{"mask": {"scope": {"fields": []}}}"#]
        {
            let got = problems(doc);
            assert_eq!(got.len(), 1, "{doc}: {got:?}");
            assert!(got[0].1.contains("empty list"), "{doc}: {got:?}");
        }
    }

    #[test]
    fn mask_char_must_be_one_non_digit() {
        for bad in ["", "**", "7", "•", " "] {
            let got = problems(&format!(r#"{{"mask": {{"mask_char": "{bad}"}}}}"#));
            assert_eq!(got[0].0, "mask.mask_char", "{bad:?}");
        }
    }

    #[test]
    fn root_must_be_a_mapping() {
        assert_eq!(problems("[]")[0].0, "");
    }
}
