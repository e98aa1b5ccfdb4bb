//! Schema version 2: noise rules beyond the path, presets, the platform's
//! `overrides`, and the teams' own files.
//!
//! A resource's spans are judged by a chain of layers, first match wins:
//!
//! 1. the team file's `services` entry for the resource's `service.name`;
//! 2. the team file (`teams/<namespace>.yaml`, chosen by `teams.key`);
//! 3. the first of the platform's `overrides` whose `match` holds;
//! 4. the defaults (`noise.globs`, `noise.rules`, the presets).
//!
//! An override with `final: true` goes before the team's layers. Within a
//! layer, `keep_globs` are tried first: a kept path is exempt from every
//! layer after it, the defaults included.
//!
//! Team files are read by the host and passed in under `teams.files`
//! (the component reads no file). A team file can only add noise rules for
//! its own namespace: it can never turn masking off, narrow the mask scope
//! or match another namespace. A team file with any problem is left out
//! whole, its problems listed in [`Teams::problems`]; the platform config
//! and the other teams still load.

use serde::de::Deserializer as _;
use serde_json::{Map, Value};

use crate::config::{
    Checker, DetectorConfig, MAX_DETECTORS, MaskConfig, Replacement, join, shown_key,
};
use crate::error::ConfigProblem;
use crate::glob::GlobList;

/// The resource attribute a team file is scoped by, by default.
pub const DEFAULT_TEAM_KEY: &str = "k8s.namespace.name";

/// A noise condition beyond the URL path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoiseRule {
    /// The span's name matches this glob (case-sensitive).
    SpanName(String),
    /// The span attribute `key` holds a string matching `glob`
    /// (case-sensitive).
    Attribute {
        /// The attribute key, exactly.
        key: String,
        /// The glob its string value must match.
        glob: String,
    },
}

impl NoiseRule {
    /// How the rule is named in stats and audits, after its source, the
    /// parts joined by spaces: `span_name GLOB` or `KEY GLOB`.
    pub fn name_parts(&self) -> [&str; 2] {
        match self {
            NoiseRule::SpanName(glob) => ["span_name", glob],
            NoiseRule::Attribute { key, glob } => [key, glob],
        }
    }
}

/// The noise presets, by name: rules for noise the path globs miss.
pub const PRESETS: [(&str, &[(&str, &str)]); 2] = [
    // The kubelet's liveness, readiness and startup probes, whatever path
    // they hit.
    (
        "kubernetes-probes",
        &[("user_agent.original", "kube-probe/*"), ("http.user_agent", "kube-probe/*")],
    ),
    // The gRPC health checking protocol: its span names and `rpc.service`.
    ("grpc-health", &[("", "grpc.health.v1.Health/*"), ("rpc.service", "grpc.health.v1.Health")]),
];

/// The rules of a preset; `None` for an unknown name.
pub fn preset_rules(name: &str) -> Option<Vec<NoiseRule>> {
    let (_, rules) = PRESETS.iter().find(|(n, _)| *n == name)?;
    Some(
        rules
            .iter()
            .map(|(key, glob)| match *key {
                "" => NoiseRule::SpanName((*glob).to_owned()),
                key => NoiseRule::Attribute { key: key.to_owned(), glob: (*glob).to_owned() },
            })
            .collect(),
    )
}

/// One layer of noise rules, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoiseLayer {
    /// Where the layer comes from: `overrides[0]`, `teams/team-a.yaml`,
    /// `teams/team-a.yaml services.person-*`.
    pub source: String,
    /// Paths dropped as noise.
    pub extra_globs: Vec<String>,
    /// Paths kept, whatever a later layer says.
    pub keep_globs: Vec<String>,
    /// Conditions beyond the path.
    pub rules: Vec<NoiseRule>,
}

/// One of the platform's `overrides`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Resource attribute key and value glob; every one must match.
    pub matches: Vec<(String, String)>,
    /// Goes before the team's layers.
    pub is_final: bool,
    /// Its rules.
    pub noise: NoiseLayer,
}

/// One team file that loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// The value of the `teams.key` attribute it applies to (its file name).
    pub name: String,
    /// The file's own rules.
    pub noise: NoiseLayer,
    /// `services`: a `service.name` glob and its rules, in key order.
    pub services: Vec<(String, NoiseLayer)>,
    /// What the file adds to masking, for its own resources only.
    pub mask: TeamMask,
}

/// A team file's `mask`: additions only. Its detectors mask the way the
/// platform's `mask.replacement` says (a label is `[name]`), so a team
/// decides what else is found, never how anything is masked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamMask {
    /// `mask.detectors` and `mask.patterns`, as in the platform config but
    /// without `replacement` or `label`. A built-in the platform already
    /// turns on is the platform's.
    pub detectors: Vec<DetectorConfig>,
    /// `mask.extra_keys`: attribute-key globs added to the platform's
    /// `mask.scope.keys`. When the platform scans every key they add nothing.
    pub extra_keys: Vec<String>,
}

impl TeamMask {
    /// Whether the file adds no masking.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty() && self.extra_keys.is_empty()
    }
}

/// `teams`: where team files live and which of them loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teams {
    /// `teams.dir`, relative to the config file; the host reads it.
    pub dir: Option<String>,
    /// `teams.key`: the resource attribute a file is scoped by.
    pub key: String,
    /// The team files that loaded, by name.
    pub files: Vec<Team>,
    /// Problems of the team files left out, as `file:key.path`.
    pub problems: Vec<ConfigProblem>,
    /// Team files not read yet (see [`crate::Config::from_json_deferring_teams`]);
    /// empty from [`crate::Config::from_json`].
    pub deferred: Vec<std::sync::Arc<DeferredTeam>>,
    /// `teams.strict`: a team file's problem fails the whole config
    /// instead of leaving that file out. Hosts that keep a team's last good
    /// version use it to learn which files failed.
    pub strict: bool,
}

impl Default for Teams {
    fn default() -> Teams {
        Teams {
            dir: None,
            key: DEFAULT_TEAM_KEY.to_owned(),
            files: Vec::new(),
            problems: Vec::new(),
            deferred: Vec::new(),
            strict: false,
        }
    }
}

/// A team file passed in but not read yet: a processor reads it (with
/// [`read_team`]) when a resource of its namespace first comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredTeam {
    /// The `teams.key` value it applies to (its file name).
    pub name: String,
    /// The file as problems and rule names show it (`teams/team-a.yaml`).
    pub file: String,
    /// The file's document, as JSON.
    pub doc: String,
}

/// At most this many team files load; the rest, in name order, are left
/// out with a problem each. Team rule ids hold a file's place in 16 bits.
pub const MAX_TEAMS: usize = 1 << 16;

/// At most this many noise rules (`extra_globs` and `rules`, its services'
/// included) and services in one team file. Team rule ids hold a rule's
/// place in its file in 15 bits.
pub const MAX_TEAM_RULES: usize = (1 << 15) - 1;

/// A config document without the team files that can be read later, and
/// those files; `None` when the document is to be read whole (it is not
/// what a host writes, sets `teams.strict`, or defers nothing). One pass
/// reads the document; a deferred file's document is skipped over, not
/// built, and only its keys are looked at again.
pub(crate) fn split_deferred(text: &str) -> Option<(Value, Vec<std::sync::Arc<DeferredTeam>>)> {
    let mut de = serde_json::Deserializer::from_str(text);
    let (mut doc, teams) = de.deserialize_map(split::Top).ok()?;
    de.end().ok()?;
    let mut teams = teams?;
    let files = teams.files.take()?;
    if teams.other.contains_key("strict") || files.len() > MAX_TEAMS {
        return None;
    }
    let (mut read_now, mut deferred) = (Map::new(), Vec::with_capacity(files.len()));
    for (name, entry) in files {
        match entry.deferrable(&name) {
            Ok((file, doc)) => {
                deferred.push(std::sync::Arc::new(DeferredTeam { name, file, doc: doc.to_owned() }))
            }
            Err(entry) => {
                read_now.insert(name, entry.into_value()?);
            }
        }
    }
    if deferred.is_empty() {
        return None;
    }
    teams.other.insert("files".to_owned(), Value::Object(read_now));
    doc.insert("teams".to_owned(), Value::Object(teams.other));
    Some((Value::Object(doc), deferred))
}

/// The visitors of [`split_deferred`]: any document they cannot read is
/// an error, and is then read whole, so that its problems are reported.
mod split {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use serde_json::{Map, Value};

    /// The document's keys but `teams` as values, and `teams`.
    pub(super) struct Top;

    /// `teams`: its keys but `files` as values, and `files`' entries.
    pub(super) struct Teams<'a> {
        pub(super) other: Map<String, Value>,
        pub(super) files: Option<Vec<(String, Entry<'a>)>>,
    }

    /// A `teams.files` entry: its `doc` raw, its `file` and its other keys
    /// as values.
    pub(super) struct Entry<'a> {
        doc: Option<&'a RawValue>,
        file: Option<Value>,
        other: Map<String, Value>,
    }

    impl<'a> Entry<'a> {
        /// The entry's file and document when it can be read later: only
        /// `file` and `doc`, a well-named team, and a document that is a
        /// mapping without `mask` (masking is settled when the processor is
        /// created, so a file that adds to it is read then). `Err`: the
        /// entry back, to be read now.
        pub(super) fn deferrable(mut self, name: &str) -> Result<(String, &'a str), Entry<'a>> {
            let (Ok(()), Some(doc), true) =
                (super::check_team_name(name), self.doc, self.other.is_empty())
            else {
                return Err(self);
            };
            let text = doc.get();
            // A mapping whose text holds neither `mask` nor an escape has no
            // `mask` key: most team files, told without a second parse.
            let bytes = text.as_bytes();
            let surely_no_mask = bytes.first() == Some(&b'{')
                && !memchr::memchr_iter(b'm', bytes).any(|at| bytes[at..].starts_with(b"mask"))
                && memchr::memchr(b'\\', bytes).is_none();
            if !surely_no_mask
                && serde_json::Deserializer::from_str(text).deserialize_map(HasMask).unwrap_or(true)
            {
                return Err(self);
            }
            // Moved out, not cloned; any other `file` is read now, and
            // reported there.
            match self.file.take() {
                Some(Value::String(file)) => Ok((file, text)),
                other => {
                    self.file = other;
                    Err(self)
                }
            }
        }

        /// The entry as a value, to be read now.
        pub(super) fn into_value(mut self) -> Option<Value> {
            if let Some(file) = self.file {
                self.other.insert("file".to_owned(), file);
            }
            if let Some(doc) = self.doc {
                self.other.insert("doc".to_owned(), serde_json::from_str(doc.get()).ok()?);
            }
            Some(Value::Object(self.other))
        }
    }

    /// What [`one_key_apart`] reads.
    type Apart<T> = (Option<T>, Map<String, Value>);

    /// A mapping's value under `key`, read by `read`, and its other keys
    /// as values. Of a key given twice the last wins, as in a JSON object.
    fn one_key_apart<'de, A: MapAccess<'de>, T>(
        mut map: A,
        key: &str,
        mut read: impl FnMut(&mut A) -> Result<T, A::Error>,
    ) -> Result<Apart<T>, A::Error> {
        let (mut found, mut other) = (None, Map::new());
        while let Some(Key(k)) = map.next_key()? {
            if k == key {
                found = Some(read(&mut map)?);
            } else {
                other.insert(k.into_owned(), map.next_value()?);
            }
        }
        Ok((found, other))
    }

    /// Whether a mapping has the key `mask`.
    struct HasMask;

    impl<'de> Visitor<'de> for HasMask {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(Key(key)) = map.next_key()? {
                found |= key == "mask";
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }

    impl<'de> Visitor<'de> for Top {
        type Value = (Map<String, Value>, Option<Teams<'de>>);
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a config mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let (teams, doc) = one_key_apart(map, "teams", |m| m.next_value_seed(TeamsSeed))?;
            Ok((doc, teams))
        }
    }

    /// The `DeserializeSeed` of a visitor that reads a mapping.
    macro_rules! map_seed {
        ($l:lifetime, $seed:ident => $value:ty) => {
            impl<$l> DeserializeSeed<$l> for $seed {
                type Value = $value;
                fn deserialize<D: Deserializer<$l>>(self, d: D) -> Result<$value, D::Error> {
                    d.deserialize_map(self)
                }
            }
        };
    }

    struct TeamsSeed;

    map_seed!('de, TeamsSeed => Teams<'de>);

    impl<'de> Visitor<'de> for TeamsSeed {
        type Value = Teams<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a teams mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Teams<'de>, A::Error> {
            let (files, other) = one_key_apart(map, "files", |m| m.next_value_seed(FilesSeed))?;
            Ok(Teams { other, files })
        }
    }

    struct FilesSeed;

    map_seed!('de, FilesSeed => Vec<(String, Entry<'de>)>);

    impl<'de> Visitor<'de> for FilesSeed {
        type Value = Vec<(String, Entry<'de>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of team files")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut files: Vec<(String, Entry<'de>)> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                files.push((name, map.next_value_seed(EntrySeed)?));
            }
            // Name order, as a JSON object's keys are read; of a name given
            // twice the last wins, as in a JSON object (the sort is stable).
            files.sort_by(|a, b| a.0.cmp(&b.0));
            let mut unique: Vec<(String, Entry<'de>)> = Vec::with_capacity(files.len());
            for f in files {
                if unique.last().is_some_and(|last| last.0 == f.0) {
                    unique.pop();
                }
                unique.push(f);
            }
            Ok(unique)
        }
    }

    struct EntrySeed;

    map_seed!('de, EntrySeed => Entry<'de>);

    impl<'de> Visitor<'de> for EntrySeed {
        type Value = Entry<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a team file entry")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry<'de>, A::Error> {
            let mut entry = Entry { doc: None, file: None, other: Map::new() };
            // Of a key given twice the last wins, as in a JSON object.
            while let Some(Key(k)) = map.next_key()? {
                match &*k {
                    "doc" => entry.doc = Some(map.next_value()?),
                    "file" => entry.file = Some(map.next_value()?),
                    _ => {
                        entry.other.insert(k.into_owned(), map.next_value()?);
                    }
                }
            }
            Ok(entry)
        }
    }

    /// A mapping key, borrowed from the text unless it has escapes: most
    /// keys are only compared, and an owned one costs an allocation each.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
            d.deserialize_str(KeyVisitor)
        }
    }

    struct KeyVisitor;

    impl<'de> Visitor<'de> for KeyVisitor {
        type Value = Key<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Owned(v.to_owned())))
        }
    }
}

/// `noise.rules`: a list of conditions.
pub(crate) fn read_rules(c: &mut Checker, v: &Value, path: &str) -> Vec<NoiseRule> {
    let Value::Array(items) = v else {
        c.problem(path, "expected a list of rules, each `span_name: GLOB` or `attribute: KEY` with `glob: GLOB`");
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(map) = c.object(item, &at, &["span_name", "attribute", "glob"]) else { continue };
        let span_name = c.string(map, &at, "span_name");
        let attribute = c.string(map, &at, "attribute");
        let glob = c.string(map, &at, "glob");
        let rule = match (span_name, attribute, glob) {
            (Some(g), None, None) => NoiseRule::SpanName(g.to_owned()),
            (None, Some(key), Some(g)) if !key.is_empty() => {
                NoiseRule::Attribute { key: key.to_owned(), glob: g.to_owned() }
            }
            _ => {
                c.problem(&at, "a rule is one condition: `span_name: GLOB`, or `attribute: KEY` with `glob: GLOB`");
                continue;
            }
        };
        let glob = match &rule {
            NoiseRule::SpanName(g) | NoiseRule::Attribute { glob: g, .. } => g,
        };
        if let Err(errors) = GlobList::check(std::slice::from_ref(glob)) {
            for e in errors {
                let key = if matches!(rule, NoiseRule::SpanName(_)) { "span_name" } else { "glob" };
                c.problem(join(&at, key), format!("bad glob: {}", e.reason));
            }
        }
        rules.push(rule);
    }
    rules
}

/// A layer's `noise` mapping: `extra_globs`, `keep_globs`, `rules`.
fn read_layer(c: &mut Checker, v: &Value, path: &str, source: String) -> NoiseLayer {
    let mut layer = NoiseLayer { source, ..NoiseLayer::default() };
    let Some(map) = c.object(v, path, &["extra_globs", "keep_globs", "rules"]) else {
        return layer;
    };
    for (key, list) in
        [("extra_globs", &mut layer.extra_globs), ("keep_globs", &mut layer.keep_globs)]
    {
        if let Some(globs) = c.strings(map, path, key) {
            if let Err(errors) = GlobList::check(&globs) {
                for e in errors {
                    c.problem(
                        format!("{}[{}]", join(path, key), e.index),
                        format!("bad glob: {}", e.reason),
                    );
                }
            }
            *list = globs;
        }
    }
    if let Some(rules) = map.get("rules") {
        layer.rules = read_rules(c, rules, &join(path, "rules"));
    }
    layer
}

/// `overrides`: platform rules for the resources they match.
pub(crate) fn read_overrides(c: &mut Checker, v: &Value) -> Vec<Override> {
    let Value::Array(items) = v else {
        c.problem("overrides", "expected a list of overrides, each with `match` and `noise`");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("overrides[{i}]");
        let Some(map) = c.object(item, &at, &["match", "noise", "final"]) else { continue };
        let mut matches = Vec::new();
        match map.get("match") {
            Some(Value::Object(m)) if !m.is_empty() => {
                for (key, value) in m {
                    match value {
                        Value::String(glob) => {
                            if let Err(errors) = GlobList::check(std::slice::from_ref(glob)) {
                                for e in errors {
                                    c.problem(
                                        format!("{at}.match.{}", shown_key(key)),
                                        format!("bad glob: {}", e.reason),
                                    );
                                }
                            }
                            matches.push((key.clone(), glob.clone()));
                        }
                        _ => c.problem(
                            format!("{at}.match.{}", shown_key(key)),
                            "expected a string (a glob)",
                        ),
                    }
                }
            }
            _ => c.problem(
                format!("{at}.match"),
                "expected a mapping of resource attribute keys to value globs, at least one",
            ),
        }
        let is_final = c.bool(map, &at, "final", false);
        let noise = match map.get("noise") {
            Some(n) => read_layer(c, n, &join(&at, "noise"), at.clone()),
            None => {
                c.problem(
                    &at,
                    "an override without `noise` does nothing; add noise rules or remove it",
                );
                NoiseLayer::default()
            }
        };
        out.push(Override { matches, is_final, noise });
    }
    out
}

/// `teams`: `dir`, `key`, and `files` (set by the host).
pub(crate) fn read_teams(c: &mut Checker, v: &Value, teams: &mut Teams) {
    let Some(map) = c.object(v, "teams", &["dir", "key", "files", "strict"]) else { return };
    teams.strict = c.bool(map, "teams", "strict", false);
    if let Some(dir) = c.string(map, "teams", "dir") {
        teams.dir = Some(dir.to_owned());
    }
    if let Some(key) = c.string(map, "teams", "key") {
        if key.is_empty() {
            c.problem("teams.key", "expected a resource attribute key, found an empty string");
        } else {
            teams.key = key.to_owned();
        }
    }
    let Some(files) = map.get("files") else { return };
    let Value::Object(files) = files else {
        c.problem(
            "teams.files",
            "expected a mapping of team name to {file, doc} (set by the host)",
        );
        return;
    };
    for (i, (name, entry)) in files.iter().enumerate() {
        let file = entry.get("file").and_then(Value::as_str).unwrap_or(name).to_owned();
        if i >= MAX_TEAMS {
            teams.problems.push(ConfigProblem {
                path: format!("{file}:"),
                reason: format!("more than {MAX_TEAMS} team files; the files after the {MAX_TEAMS}th, in name order, are left out"),
            });
            continue;
        }
        // A file the host could not read or parse, or the directory itself.
        if let Some(error) = entry.get("error") {
            let reason = error.as_str().unwrap_or("the host could not read it").to_owned();
            teams.problems.push(ConfigProblem { path: format!("{file}:"), reason });
            continue;
        }
        if let Err(reason) = check_team_name(name) {
            teams.problems.push(ConfigProblem { path: format!("{file}:"), reason: reason.into() });
            continue;
        }
        let doc = entry.get("doc").unwrap_or(&Value::Null);
        match read_team(name, &file, doc) {
            Ok(team) => teams.files.push(team),
            Err(problems) => teams.problems.extend(problems),
        }
    }
}

/// Mask keys a team file may not set: each would turn masking off or narrow it.
const PLATFORM_MASK_KEYS: [&str; 6] =
    ["enabled", "mode", "replacement", "mask_char", "label", "scope"];

/// One team file, checked on its own: any problem leaves it out whole.
pub fn read_team(name: &str, file: &str, doc: &Value) -> Result<Team, Vec<ConfigProblem>> {
    let mut c = Checker { problems: Vec::new(), glob_paths: Vec::new() };
    let mut team = Team {
        name: name.to_owned(),
        // Named even when the file has no `noise`: problems found later
        // (see `settle_team_masks`) name the file by it.
        noise: NoiseLayer { source: file.to_owned(), ..NoiseLayer::default() },
        services: Vec::new(),
        mask: TeamMask::default(),
    };
    if let Value::Object(map) = doc {
        for key in map.keys() {
            let reason = match key.as_str() {
                "noise" | "services" | "mask" => continue,
                "match" | "teams" | "overrides" | "namespace" => {
                    "a team file applies to its own namespace only (its file name); matching other resources is the platform's `overrides`"
                }
                "version" | "limits" => "set by the platform config only; remove it",
                _ => "unknown key; expected one of: noise, services, mask",
            };
            c.problem(shown_key(key), reason);
        }
        if let Some(noise) = map.get("noise") {
            team.noise = read_layer(&mut c, noise, "noise", file.to_owned());
        }
        if let Some(services) = map.get("services") {
            if let Value::Object(services) = services {
                for (glob, entry) in services {
                    let at = format!("services.{}", shown_glob(glob));
                    if let Err(errors) = GlobList::check(std::slice::from_ref(glob)) {
                        for e in errors {
                            c.problem(&at, format!("bad service.name glob: {}", e.reason));
                        }
                    }
                    let Some(m) = c.object(entry, &at, &["noise"]) else { continue };
                    let layer = match m.get("noise") {
                        Some(n) => {
                            read_layer(&mut c, n, &join(&at, "noise"), format!("{file} {at}"))
                        }
                        None => NoiseLayer::default(),
                    };
                    team.services.push((glob.clone(), layer));
                }
            } else {
                c.problem("services", "expected a mapping of service.name globs to {noise: ...}");
            }
        }
        if let Some(mask) = map.get("mask") {
            team.mask = read_team_mask(&mut c, mask);
        }
        let rules = |l: &NoiseLayer| l.extra_globs.len() + l.rules.len();
        let n = rules(&team.noise) + team.services.iter().map(|(_, l)| rules(l)).sum::<usize>();
        if n > MAX_TEAM_RULES || team.services.len() > MAX_TEAM_RULES {
            c.problem(
                "",
                format!("{n} noise rules and {} services; a team file has at most {MAX_TEAM_RULES} of each: use broader globs, or split the namespace", team.services.len()),
            );
        }
    } else {
        c.problem("", "expected a mapping with noise, services or mask");
    }
    if c.problems.is_empty() {
        Ok(team)
    } else {
        Err(c
            .problems
            .into_iter()
            .map(|p| ConfigProblem { path: format!("{file}:{}", p.path), reason: p.reason })
            .collect())
    }
}

/// A team's `mask`: additions only. Keys that would turn masking off,
/// change how it masks or narrow its scope are problems that say why.
fn read_team_mask(c: &mut Checker, v: &Value) -> TeamMask {
    let mut out = TeamMask::default();
    let Value::Object(map) = v else {
        c.problem("mask", "expected a mapping with detectors, patterns or extra_keys");
        return out;
    };
    for key in map.keys() {
        let reason = if PLATFORM_MASK_KEYS.contains(&key.as_str()) || key == "hmac" {
            "a team file cannot turn masking off, change how it masks or narrow its scope; only the platform config sets this"
        } else if matches!(key.as_str(), "detectors" | "patterns" | "extra_keys") {
            continue;
        } else {
            "unknown key; a team file can add masking with: detectors, patterns, extra_keys"
        };
        c.problem(join("mask", key), reason);
    }
    // How a match is replaced is the platform's to say.
    for list in ["detectors", "patterns"] {
        let Some(Value::Array(items)) = map.get(list) else { continue };
        for (i, item) in items.iter().enumerate() {
            for key in ["replacement", "label"] {
                if item.get(key).is_some() {
                    c.problem(
                        format!("mask.{list}[{i}].{key}"),
                        "a team's detectors mask as the platform's mask.replacement says; remove it",
                    );
                }
            }
        }
    }
    let mut read = crate::Config::default().mask;
    crate::config::read_detectors(c, map, &mut read, '*');
    out.detectors = read.detectors;
    if let Some(keys) = c.strings(map, "mask", "extra_keys") {
        if let Err(errors) = GlobList::validate(&keys, true) {
            for e in errors {
                c.problem(
                    format!("mask.extra_keys[{}]", e.index),
                    format!("bad glob: {}", e.reason),
                );
            }
        }
        out.extra_keys = keys;
    }
    out
}

/// Settles what the team files add to masking, once the platform's `mask`
/// is known (see [`settle_team_mask`]); a file that fails is left out
/// whole, as any file with a problem is.
pub(crate) fn settle_team_masks(mask: &MaskConfig, teams: &mut Teams) {
    let mut problems = Vec::new();
    teams.files.retain_mut(|t| match settle_team_mask(mask, t) {
        Ok(()) => true,
        Err(p) => {
            problems.push(p);
            false
        }
    });
    teams.problems.extend(problems);
}

/// Gives a team's detectors the platform's replacement, and checks that
/// the platform's detectors and the team's together stay within
/// [`MAX_DETECTORS`]. Hosts that check one team file at a time (to keep a
/// team's last good version) call it after [`read_team`].
pub fn settle_team_mask(mask: &MaskConfig, team: &mut Team) -> Result<(), ConfigProblem> {
    for d in &mut team.mask.detectors {
        d.replacement = match &mask.replacement {
            Replacement::Stars(ch) => Replacement::Stars(*ch),
            Replacement::Label(_) => Replacement::Label(format!("[{}]", d.name)),
            Replacement::Hmac => Replacement::Hmac,
        };
    }
    let n = mask.detectors.len() + team_only(mask, &team.mask).count();
    if n > MAX_DETECTORS {
        return Err(ConfigProblem {
            path: format!("{}:mask", team.noise.source),
            reason: format!(
                "with the platform's {} detectors this file's make {n}; at most {MAX_DETECTORS} may be on: join patterns with `|`",
                mask.detectors.len()
            ),
        });
    }
    Ok(())
}

/// The team's detectors the platform does not already turn on (a built-in
/// it does is the platform's, with the platform's settings).
pub(crate) fn team_only<'a>(
    platform: &'a MaskConfig,
    team: &'a TeamMask,
) -> impl Iterator<Item = &'a DetectorConfig> {
    team.detectors.iter().filter(|d| {
        !matches!(d.kind, crate::config::DetectorKind::Builtin(_))
            || !platform.detectors.iter().any(|p| p.kind == d.kind)
    })
}

/// Team names are file names: not empty, no path separator, not hidden.
fn check_team_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        Err("a team name is a file name: not empty, no `/`, not starting with `.`")
    } else {
        Ok(())
    }
}

/// Rules that can never fire, as problems to show (not errors): an
/// override whose `match` an earlier override's already covers (first match
/// wins), a glob listed twice in one layer or both kept and dropped there,
/// and a `services` entry after a `*` entry of the same team.
pub fn unreachable_rules(cfg: &crate::Config) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    for (i, o) in cfg.overrides.iter().enumerate() {
        // An earlier override matches everything this one does when each of
        // its keys is one of ours, with the same glob or `*`.
        if let Some(j) = cfg.overrides[..i].iter().position(|e| {
            e.matches.iter().all(|(k, g)| {
                g == "*" && o.matches.iter().any(|(ok, _)| ok == k)
                    || o.matches.iter().any(|(ok, og)| ok == k && og == g)
            })
        }) {
            out.push(ConfigProblem {
                path: format!("overrides[{i}]"),
                reason: format!("never fires: overrides[{j}] matches every resource it does, and the first match wins"),
            });
        }
        layer_duplicates(&o.noise, &format!("overrides[{i}].noise"), &mut out);
    }
    for t in &cfg.teams.files {
        layer_duplicates(&t.noise, &format!("{}:noise", t.noise.source), &mut out);
        if let Some(star) = t.services.iter().position(|(g, _)| g == "*") {
            for (g, _) in &t.services[star + 1..] {
                out.push(ConfigProblem {
                    path: format!("{}:services.{g}", t.noise.source),
                    reason: "never fires: the `*` entry before it (entries are tried in key order) takes every service".into(),
                });
            }
        }
        for (g, l) in &t.services {
            layer_duplicates(l, &format!("{}:services.{g}.noise", t.noise.source), &mut out);
        }
    }
    out
}

fn layer_duplicates(l: &NoiseLayer, at: &str, out: &mut Vec<ConfigProblem>) {
    for (i, g) in l.extra_globs.iter().enumerate() {
        if l.keep_globs.contains(g) {
            out.push(ConfigProblem {
                path: format!("{at}.extra_globs[{i}]"),
                reason: "never fires: the same glob is in keep_globs, which are tried first".into(),
            });
        } else if l.extra_globs[..i].contains(g) {
            out.push(ConfigProblem {
                path: format!("{at}.extra_globs[{i}]"),
                reason: "never fires: the same glob is earlier in the list".into(),
            });
        }
    }
}

/// A `services` glob as problems and rule names show it: as written when it
/// looks like a service name pattern, else a placeholder (see `shown_key`).
fn shown_glob(glob: &str) -> &str {
    let plain: String =
        glob.chars().filter(|c| !matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | ',')).collect();
    if plain.is_empty() || shown_key(&plain) == plain { glob } else { "<a glob that is not shown>" }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::read_team;
    use crate::Config;

    /// The config with its deferred team files read, as a processor reads
    /// them, and its lists in name order.
    fn read_all(mut cfg: Config) -> Config {
        for d in std::mem::take(&mut cfg.teams.deferred) {
            let doc = serde_json::from_str(&d.doc).expect("a deferred document is JSON");
            match read_team(&d.name, &d.file, &doc) {
                Ok(team) => cfg.teams.files.push(team),
                Err(problems) => cfg.teams.problems.extend(problems),
            }
        }
        cfg.teams.files.sort_by(|a, b| a.name.cmp(&b.name));
        cfg.teams.problems.sort_by(|a, b| a.path.cmp(&b.path));
        cfg
    }

    /// Scenario: documents as hosts write them and as they should not:
    /// team files with problems, with `mask`, with keys besides `file`
    /// and `doc`, with an `error`, a team named twice, escaped keys, a
    /// `file` that is no string, `file` and `doc` given twice, a badly
    /// named team, `strict`, `teams` that is not a mapping, trailing text,
    /// and a platform problem.
    /// Guarantees: splitting the team files off and reading them later
    /// gives the config (or the problems) that reading it whole gives.
    #[test]
    fn deferring_team_files_reads_as_reading_them_up_front() {
        let good = json!({"noise": {"extra_globs": ["/a"]}});
        let files = json!({
            "a": {"file": "teams/a.yaml", "doc": good},
            "b": {"file": "teams/b.yaml", "doc": {"noise": {"extra_globs": ["[bad"]}}},
            "c": {"file": "teams/c.yaml", "doc": {"mask": {"detectors": ["email"]}}},
            "d": {"file": "teams/d.yaml", "doc": good, "extra": 1},
            "e": {"file": "teams/e.yaml", "error": "cannot read it"},
            "f": {"file": "teams/f.yaml", "doc": {"match": {"x": "y"}}},
            "g": {"doc": good},
            "h": {"file": "teams/h.yaml", "doc": ["not", "a", "mapping"]},
            ".hidden": {"file": "teams/.hidden.yaml", "doc": good},
        });
        let docs = [
            json!({"version": 2, "teams": {"dir": "teams/", "files": files}}).to_string(),
            json!({"version": 2, "teams": {"files": files, "strict": true}}).to_string(),
            json!({"version": 2, "teams": {"files": files}, "noise": {"globs": ["[bad"]}})
                .to_string(),
            r#"{"version": 2, "teams": {"files": {"a": {"file": "teams/a.yaml", "doc": {"noise": {}}},
                "a": {"file": "teams/a2.yaml", "doc": {"m\u0061sk": {"enabled": false}}}}}}"#
                .to_owned(),
            // A `file` that is no string, escaped entry keys and names, and
            // `file` and `doc` given twice (the last wins).
            r#"{"version": 2, "teams": {"files": {"i": {"file": 7, "doc": {"noise": {}}},
                "j": {"f\u0069le": "teams/j.yaml", "d\u006fc": {}},
                "k": {"file": 7, "doc": {"mask": {}}, "file": "teams/k.yaml", "doc": {}},
                "l\u006d": {"file": "teams/lm.yaml", "doc": {}}}}}"#
                .to_owned(),
            r#"{"version": 2, "teams": {"files": {"a": {"file": "t", "doc": {}}}}} trailing"#
                .to_owned(),
            r#"{"version": 2, "teams": "teams/"}"#.to_owned(),
            r#"{"version": 1, "teams": {"files": {"a": {"file": "t", "doc": {}}}}}"#.to_owned(),
        ];
        for doc in &docs {
            let whole = Config::from_json(doc).map(read_all);
            let split = Config::from_json_deferring_teams(doc).map(read_all);
            assert_eq!(split, whole, "{doc}");
        }
        // The first document defers what it can: well-named, only `file`
        // and `doc`, a mapping without `mask`.
        let cfg = Config::from_json_deferring_teams(&docs[0]).expect("loads");
        let deferred: Vec<&str> = cfg.teams.deferred.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(deferred, ["a", "b", "f"]);
        // Escaped keys and keys given twice defer as written plainly.
        let cfg = Config::from_json_deferring_teams(&docs[4]).expect("loads");
        let deferred: Vec<&str> = cfg.teams.deferred.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(deferred, ["j", "k", "lm"]);
    }
}
