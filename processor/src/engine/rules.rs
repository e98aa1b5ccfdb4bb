//! The compiled rules, and where they are matched: the noise globs and path
//! keys, the mask settings, and the reads that find a span's path.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bytes;
use crate::config::{Config, DetectorKind, Replacement};
use crate::detect::{Builtin, Keyed, Pattern, Style};
use crate::error::ConfigProblem;
use crate::fnr::Mode;
use crate::glob::GlobList;
use crate::otlp::{any_value, key_value};
use crate::path;
use crate::stats::FieldKind;
use crate::wire::{Field, Fields, WireError, WireType};

use super::SpanRec;
use super::layers::{KeyFilter, Layered, TEAM};

/// A config compiled for the walker: globs built, names turned to bytes.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(super) noise: Option<Noise>,
    pub(super) mask: Option<Mask>,
    /// The platform's rule names by id (team rules' are their files',
    /// see [`Compiled::rule_name`]).
    pub(super) rule_names: Vec<String>,
    /// The masks of teams that add masking, by team name (sorted): each is
    /// the platform's with the team's additions.
    pub(super) team_masks: Vec<(Vec<u8>, Mask)>,
    /// `teams.key`: the resource attribute that names a resource's team.
    pub(super) team_key: Vec<u8>,
    /// Detector names by id: the personal-number family
    /// ([`crate::fnr::Detector::index`]), then the other detectors' names,
    /// each once (detectors of one name share an id, and so a counter).
    pub(super) detector_names: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Noise {
    pub(super) globs: GlobList,
    /// The path attribute keys, ordered by length (the last bucket holds
    /// every key of `LONG_KEY` bytes or more).
    pub(super) path_keys: Vec<Vec<u8>>,
    /// The keys of length bucket `n` are `path_keys[from[n]..from[n + 1]]`.
    pub(super) path_keys_from: [u32; LONG_KEY + 2],
    /// The path keys, as the span walk rules most keys out (version 1).
    pub(super) path_filter: KeyFilter,
    pub(super) span_name: bool,
    pub(super) drop_descendants: bool,
    /// Schema version 2's rules, when the config has any: spans are then
    /// judged by their resource's plan (see `layers`) instead of
    /// [`Noise::check_path`].
    pub(super) layered: Option<Box<Layered>>,
}

impl Noise {
    /// Whether `key` names a path source. Asked of the keys the walk's
    /// key filter lets through, and of KeyValues of an unusual shape: only
    /// the path keys of `key`'s length are compared (two word compares
    /// each, see `bytes`). In the guest every loop turn also pays an epoch
    /// check.
    #[inline(always)]
    pub(super) fn is_path_key(&self, key: &[u8]) -> bool {
        let bucket = key_bucket(key);
        let (from, to) = (self.path_keys_from[bucket], self.path_keys_from[bucket + 1]);
        from < to && self.path_keys[from as usize..to as usize].iter().any(|a| bytes::eq(a, key))
    }

    /// Matches the path `p` of a span not yet found noisy against the globs.
    /// A span's sources often hold the same path (`url.full`'s path is
    /// `url.path`, and a server span's name holds it too): a repeat of the
    /// path checked last is skipped, as it matched nothing then.
    #[inline(never)]
    pub(super) fn check_path<'a>(&self, rec: &mut SpanRec<'a>, p: &'a [u8], scratch: &mut Vec<u8>) {
        if rec.path.is_empty() || !bytes::eq(rec.path, p) {
            rec.path = p;
            rec.rule = if path::needs_normalising(p) {
                let mut norm = Vec::new();
                path::normalise(p, &mut norm);
                self.globs.first_match(&norm, scratch)
            } else {
                self.globs.first_match(p, scratch)
            }
            .map(|i| i as u32);
        }
    }
}

#[derive(Debug)]
pub(super) struct Mask {
    pub(super) mode: Mode,
    /// `Some(c)`: digits become `c`, lengths kept. `None`: the label (held at
    /// the start of each walk's arena) replaces the number.
    pub(super) star: Option<u8>,
    pub(super) label: Vec<u8>,
    pub(super) fields: [bool; FieldKind::ALL.len()],
    pub(super) keys: Option<GlobList>,
    /// What personal numbers become, for the general path.
    pub(super) style: Style,
    /// The detectors beyond personal numbers, in precedence order; the
    /// local id of `extra[i]` is `FNR_IDS + i` (see [`Mask::id`]).
    pub(super) extra: Vec<Arc<Extra>>,
    /// Bit i set: `extra[i]` has no key globs of its own, so it scans
    /// wherever the mask scope does.
    pub(super) scoped_bits: u64,
    /// The pseudonymiser, when a replacement is `hmac`.
    pub(super) keyed: Option<Keyed>,
    /// The detector id of `extra[i]`, in `Compiled::detector_names`.
    pub(super) ids: Vec<u16>,
    /// Detectors beyond personal numbers are on: every text is scanned, not
    /// only those with a run of six digits.
    pub(super) extras: bool,
    /// Masking takes the general path (`Walk::mask_general`): extras are
    /// on, or personal numbers become pseudonyms.
    pub(super) general: bool,
}

impl Mask {
    /// The detector id (in `Compiled::detector_names`) of the local id
    /// `local`: a personal-number detector's index, or `FNR_IDS + i` for
    /// `extra[i]`.
    #[inline]
    pub(super) fn id(&self, local: u8) -> u16 {
        match local.checked_sub(FNR_IDS) {
            None => u16::from(local),
            Some(i) => self.ids[usize::from(i)],
        }
    }
}

impl Compiled {
    /// The mask for the resource whose `teams.key` value is `team`.
    pub(super) fn mask_for(&self, team: &[u8]) -> Option<&Mask> {
        match self.team_masks.binary_search_by(|(name, _)| name.as_slice().cmp(team)) {
            Ok(i) => Some(&self.team_masks[i].1),
            Err(_) => self.mask.as_ref(),
        }
    }
}

/// Detector ids below this are the personal-number family's.
pub(super) const FNR_IDS: u8 = crate::fnr::Detector::ALL.len() as u8;

/// A detector beyond personal numbers, compiled.
#[derive(Debug)]
pub(super) struct Extra {
    pub(super) name: String,
    pub(super) finder: Finder,
    pub(super) style: Style,
    /// Stars replace digits only (numeric built-ins) or every byte.
    pub(super) numeric: bool,
    /// Its own key globs, replacing `mask.scope.keys` for it.
    pub(super) keys: Option<GlobList>,
}

#[derive(Debug)]
pub(super) enum Finder {
    Builtin(Builtin),
    Pattern(Pattern),
}

impl Extra {
    pub(super) fn scan(&self, hay: &[u8], f: &mut impl FnMut(usize, usize)) {
        match &self.finder {
            Finder::Builtin(b) => b.scan(hay, f),
            Finder::Pattern(p) => p.scan(hay, f),
        }
    }
}

/// A config replacement as the walker applies it.
fn style(r: &Replacement) -> Style {
    match r {
        Replacement::Stars(c) => Style::Stars(*c as u8),
        Replacement::Label(l) => Style::Label(l.as_bytes().to_vec()),
        Replacement::Hmac => Style::Hmac,
    }
}

/// Detector names by id (see `Compiled::detector_names`), each once.
struct DetectorNames {
    names: Vec<String>,
    ids: HashMap<String, u16>,
}

impl DetectorNames {
    /// The id of `name`, given a new one if it has none; `None` once the
    /// ids (u16, as edits record them) run out.
    fn id(&mut self, name: &str) -> Option<u16> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let id = u16::try_from(self.names.len()).ok()?;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }
}

/// Each glob error as a problem at `key[i]`.
fn glob_problems(errs: Vec<crate::glob::GlobError>, key: &str, problems: &mut Vec<ConfigProblem>) {
    for e in errs {
        problems.push(ConfigProblem {
            path: format!("{key}[{}]", e.index),
            reason: format!("bad glob: {}", e.reason),
        });
    }
}

/// Compiles `mask.*` of `m`; new detector names are added to `names`.
fn compile_mask(
    m: &crate::config::MaskConfig,
    shared: &[Arc<Extra>],
    names: &mut DetectorNames,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Mask> {
    let keys = match &m.keys {
        None => None,
        Some(keys) => match GlobList::new(keys, true) {
            Ok(k) => Some(k),
            Err(errs) => {
                glob_problems(errs, "mask.scope.keys", problems);
                None
            }
        },
    };
    let mut fields = [false; FieldKind::ALL.len()];
    for f in &m.fields {
        fields[f.index()] = true;
    }
    let (star, label) = match &m.replacement {
        Replacement::Stars(c) if c.is_ascii_graphic() && !c.is_ascii_digit() => {
            (Some(*c as u8), Vec::new())
        }
        Replacement::Stars(_) => {
            problems.push(ConfigProblem {
                path: "mask.mask_char".into(),
                reason: "must be one printable ASCII character that is not a digit".to_owned(),
            });
            (Some(b'*'), Vec::new())
        }
        Replacement::Label(l) => (None, l.as_bytes().to_vec()),
        // The general path masks; the fast path never runs.
        Replacement::Hmac => (Some(b'*'), Vec::new()),
    };
    let mut extra = Vec::new();
    let mut scoped_bits = 0u64;
    for (i, d) in m.detectors.iter().enumerate() {
        // The platform's detectors, compiled once for every team's mask.
        if let Some(x) = shared.get(i) {
            if x.keys.is_none() {
                scoped_bits |= 1 << i;
            }
            extra.push(Arc::clone(x));
            continue;
        }
        let finder = match &d.kind {
            DetectorKind::Builtin(b) => Finder::Builtin(*b),
            // Compiled once per config, here.
            DetectorKind::Regex(r) => match Pattern::new(r) {
                Ok(p) => Finder::Pattern(p),
                Err((pos, reason)) => {
                    problems.push(ConfigProblem {
                        path: format!("mask.patterns[{i}].regex"),
                        reason: format!("does not compile: at character {pos}: {reason}"),
                    });
                    continue;
                }
            },
        };
        let keys = match &d.keys {
            None => {
                scoped_bits |= 1 << i;
                None
            }
            Some(k) => match GlobList::new(k, true) {
                Ok(k) => Some(k),
                Err(errs) => {
                    glob_problems(errs, &format!("{}.keys", d.name), problems);
                    None
                }
            },
        };
        let numeric = matches!(d.kind, DetectorKind::Builtin(b) if b.is_numeric());
        extra.push(Arc::new(Extra {
            name: d.name.clone(),
            finder,
            style: style(&d.replacement),
            numeric,
            keys,
        }));
    }
    let keyed = m.hmac.as_ref().map(|h| Keyed::new(h.key.bytes(), &h.key_id));
    let uses_hmac =
        m.replacement == Replacement::Hmac || extra.iter().any(|e| e.style == Style::Hmac);
    if uses_hmac && keyed.is_none() {
        problems.push(ConfigProblem {
            path: "mask.hmac".into(),
            reason: "replacement \"hmac\" needs a key: set mask.hmac.key_id and mask.hmac.key_file (or key_env)".into(),
        });
    }
    let mut ids = Vec::with_capacity(extra.len());
    for x in &extra {
        match names.id(&x.name) {
            Some(id) => ids.push(id),
            None => {
                problems.push(ConfigProblem {
                    path: "mask.patterns".into(),
                    reason: format!(
                        "more than {} detector names across the config and its team files; name patterns alike where they find the same thing",
                        u16::MAX
                    ),
                });
                return None;
            }
        }
    }
    let extras = !extra.is_empty();
    let general = extras || m.replacement == Replacement::Hmac;
    Some(Mask {
        mode: m.mode,
        star,
        label,
        fields,
        keys,
        style: style(&m.replacement),
        extra,
        scoped_bits,
        keyed,
        ids,
        extras,
        general,
    })
}

/// Path keys of this length or longer share the last length bucket.
const LONG_KEY: usize = 64;

/// The length bucket of a path key.
#[inline(always)]
fn key_bucket(key: &[u8]) -> usize {
    key.len().min(LONG_KEY)
}

impl Compiled {
    pub fn new(cfg: &Config) -> Result<Compiled, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut rule_names = cfg.noise.globs.clone();
        let layered = if cfg.noise.enabled {
            match Layered::new(cfg, rule_names.len() as u32) {
                Ok(Some((layered, names))) => {
                    rule_names.extend(names);
                    Some(Box::new(layered))
                }
                Ok(None) => None,
                Err(errs) => {
                    problems.extend(errs);
                    None
                }
            }
        } else {
            None
        };
        let noise = if cfg.noise.enabled && (!cfg.noise.globs.is_empty() || layered.is_some()) {
            // Version 2 judges paths by its chains' plans, which hold these
            // globs: compiled here too, a fresh guest would build them twice.
            let globs: &[String] = if layered.is_some() { &[] } else { &cfg.noise.globs };
            match GlobList::new(globs, cfg.noise.case_sensitive) {
                Ok(globs) => {
                    let (path_keys, path_keys_from) = path_keys_by_len(&cfg.noise.path_attributes);
                    Some(Noise {
                        globs,
                        path_keys,
                        path_keys_from,
                        path_filter: KeyFilter::of(
                            cfg.noise.path_attributes.iter().map(|k| k.as_bytes()),
                        ),
                        span_name: cfg.noise.span_name,
                        drop_descendants: cfg.noise.drop_descendants,
                        layered,
                    })
                }
                Err(errs) => {
                    glob_problems(errs, "noise.globs", &mut problems);
                    None
                }
            }
        } else {
            None
        };
        let mut names = DetectorNames { names: Vec::new(), ids: HashMap::new() };
        for d in crate::fnr::Detector::ALL {
            names.id(d.name());
        }
        let mut mask = None;
        let mut team_masks = Vec::new();
        if cfg.mask.enabled {
            let mut platform_problems = Vec::new();
            mask = compile_mask(&cfg.mask, &[], &mut names, &mut platform_problems);
            // A team adding masking gets the platform's mask with its
            // additions, used for its resources only; not when the
            // platform's own mask has problems, which are the platform's.
            let shared: &[Arc<Extra>] = match &mask {
                Some(m) if platform_problems.is_empty() => &m.extra,
                _ => &[],
            };
            let teams = if platform_problems.is_empty() { &cfg.teams.files[..] } else { &[] };
            problems.extend(platform_problems);
            for t in teams.iter().filter(|t| !t.mask.is_empty()) {
                let mut m = cfg.mask.clone();
                m.detectors.extend(crate::teams::team_only(&cfg.mask, &t.mask).cloned());
                if let Some(keys) = &mut m.keys {
                    keys.extend(t.mask.extra_keys.iter().cloned());
                }
                let mut team_problems = Vec::new();
                if let Some(tm) = compile_mask(&m, shared, &mut names, &mut team_problems) {
                    team_masks.push((t.name.as_bytes().to_vec(), tm));
                }
                problems.extend(team_problems.into_iter().map(|p| ConfigProblem {
                    path: format!("{}:{}", t.noise.source, p.path),
                    reason: p.reason,
                }));
            }
            team_masks.sort_by(|a, b| a.0.cmp(&b.0));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // Rule names are globs and conditions as written, and they reach
        // stats, metrics and audits: a number written in one is never echoed.
        let rule_names = rule_names.iter().map(|n| crate::explain::redact(n.as_bytes())).collect();
        Ok(Compiled {
            noise,
            mask,
            team_masks,
            team_key: cfg.teams.key.as_bytes().to_vec(),
            rule_names,
            detector_names: names.names,
        })
    }

    /// The name of rule `id`, as stats and findings show it.
    pub(super) fn rule_name(&self, id: u32) -> String {
        if id & TEAM == 0 {
            return self.rule_names.get(id as usize).cloned().unwrap_or_default();
        }
        let layered = self.noise.as_ref().and_then(|n| n.layered.as_deref());
        layered.and_then(|l| l.team_rule_name(id)).unwrap_or_default().to_owned()
    }
}

/// The path attribute keys ordered by length bucket, duplicates gone, and
/// where each bucket starts.
fn path_keys_by_len(keys: &[String]) -> (Vec<Vec<u8>>, [u32; LONG_KEY + 2]) {
    let mut sorted: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    sorted.sort_by(|a, b| (key_bucket(a), a).cmp(&(key_bucket(b), b)));
    sorted.dedup();
    let mut from = [0u32; LONG_KEY + 2];
    for k in &sorted {
        from[key_bucket(k) + 1] += 1;
    }
    for n in 1..from.len() {
        from[n] += from[n - 1];
    }
    (sorted, from)
}

/// The string value of a span attribute whose key is a path source.
pub(super) fn path_attribute<'a>(
    noise: &Noise,
    buf: &'a [u8],
    kv_body: usize,
    kv_end: usize,
) -> Result<Option<&'a [u8]>, WireError> {
    // Fast path: encoders write the key first (tag 0x0a, one-byte length),
    // so most attributes are ruled out by a peek and one length compare,
    // without walking the KeyValue. The walk validates it in full anyway.
    if let Some((key, after)) = peek_key(&buf[kv_body..kv_end]) {
        if !noise.is_path_key(key) {
            return Ok(None);
        }
        // The usual shape after the key, read with fixed tags: the value,
        // holding only the string, both lengths one byte, where
        // `path_attribute_walk` reads two nested messages field by field.
        // Pinned to it by the `path_values_read_fast_match_the_field_walk`
        // property test.
        if let Some(string) = string_after_key(after) {
            return Ok(Some(string));
        }
    }
    path_attribute_walk(noise, buf, kv_body, kv_end)
}

/// The key of the KeyValue `body`, and the bytes after it, when it has
/// the shape every encoder writes: the key (one-byte length), then one
/// value field that runs to the end. Only then is the key the last one
/// written, which is the one protobuf keeps; any other shape is `None`,
/// and is read field by field.
#[inline(always)]
pub(super) fn peek_key(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let [0x0a, len, rest @ ..] = body else { return None };
    let (key, after) = rest.split_at_checked(usize::from(*len))?;
    let value_len = match after {
        [] => return (*len < 0x80).then_some((key, after)),
        [0x12, l, ..] if *l < 0x80 => usize::from(*l) + 2,
        [0x12, l, h, ..] if *h < 0x80 => (usize::from(*l & 0x7f) | usize::from(*h) << 7) + 3,
        _ => return None,
    };
    (*len < 0x80 && value_len == after.len()).then_some((key, after))
}

/// The string value of a KeyValue from the bytes after its key, when they
/// have the usual shape: the value, holding only the string, both lengths
/// one byte. `None` for any other shape, which the field walk then reads.
#[inline(always)]
pub(super) fn string_after_key(after_key: &[u8]) -> Option<&[u8]> {
    match after_key {
        [0x12, value_len, 0x0a, len, string @ ..]
            if usize::from(*len) == string.len()
                && usize::from(*value_len) == string.len() + 2
                && *value_len < 0x80 =>
        {
            Some(string)
        }
        _ => None,
    }
}

/// [`path_attribute`] by walking the KeyValue and its value field by field.
pub(super) fn path_attribute_walk<'a>(
    noise: &Noise,
    buf: &'a [u8],
    kv_body: usize,
    kv_end: usize,
) -> Result<Option<&'a [u8]>, WireError> {
    let mut key: Option<&[u8]> = None;
    let mut value: Option<Field> = None;
    let mut fields = Fields::new(buf, kv_body, kv_end);
    while let Some(f) = fields.next_field()? {
        match f.number {
            key_value::KEY => key = Some(f.bytes(buf)),
            key_value::VALUE => value = Some(f),
            _ => {}
        }
    }
    let (Some(key), Some(value)) = (key, value) else { return Ok(None) };
    if value.wire != WireType::Len || !noise.is_path_key(key) {
        return Ok(None);
    }
    let mut string = None;
    let mut fields = Fields::new(buf, value.body, value.end);
    while let Some(f) = fields.next_field()? {
        if f.number == any_value::STRING && f.wire == WireType::Len {
            string = Some(f.bytes(buf));
        }
    }
    Ok(string)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use prost::Message;

    use super::{Compiled, DetectorNames, path_attribute, path_attribute_walk};

    /// Scenario: detector names given ids until the ids run out, with
    /// names repeated along the way.
    /// Guarantees: a repeated name keeps its id; the 65,537th distinct
    /// name gets none (a config problem, not a shared or wrapped id).
    #[test]
    fn detector_ids_are_one_per_name_and_never_wrap() {
        let mut names = DetectorNames { names: Vec::new(), ids: Default::default() };
        for i in 0..=usize::from(u16::MAX) {
            assert_eq!(names.id(&format!("d{i}")), Some(i as u16));
        }
        assert_eq!(names.id("d7"), Some(7));
        assert_eq!(names.id("one-too-many"), None);
        assert_eq!(names.names.len(), usize::from(u16::MAX) + 1);
    }

    proptest::proptest! {
        /// Scenario: KeyValues whose key is a path source or not, whose value
        /// is a string (short, or too long for one-byte lengths), an int, or
        /// absent, and which may carry a duplicate key or value field or a
        /// field the schema does not know, in either order.
        /// Guarantees: `path_attribute`'s fixed-tag fast path finds the same
        /// string as the field-by-field walk, or defers to it.
        #[test]
        fn path_values_read_fast_match_the_field_walk(
            key in proptest::prop_oneof![proptest::strategy::Just("url.path".to_owned()), proptest::strategy::Just("http.route".to_owned()), "[a-z.]{0,12}"],
            text in "[a-z/?#:]{0,20}|[a-z/]{120,140}",
            which in 0..3u8,
            extra in proptest::option::of((0..4u8, "[a-z/]{0,6}")),
        ) {
            let value = match which {
                0 => Some(AnyValue { value: Some(Value::StringValue(text)) }),
                1 => Some(AnyValue { value: Some(Value::IntValue(7)) }),
                _ => None,
            };
            let mut body = KeyValue { key, value, ..Default::default() }.encode_to_vec();
            if let Some((kind, more)) = extra {
                let field = match kind {
                    0 => KeyValue { key: more, ..Default::default() }.encode_to_vec(),
                    1 => KeyValue { value: Some(AnyValue { value: Some(Value::StringValue(more)) }), ..Default::default() }.encode_to_vec(),
                    // An unknown field 5 (a string), before or after.
                    _ => [&[0x2a, more.len() as u8][..], more.as_bytes()].concat(),
                };
                if kind == 3 { body = [field, body].concat() } else { body.extend_from_slice(&field) }
            }
            let c = Compiled::new(&crate::config::Config::from_json("{}").expect("config")).expect("compiles");
            let noise = c.noise.as_ref().expect("noise is on by default");
            proptest::prop_assert_eq!(
                path_attribute(noise, &body, 0, body.len()),
                path_attribute_walk(noise, &body, 0, body.len())
            );
        }
    }

    proptest::proptest! {
        /// Scenario: path attribute keys of any length (under and over the
        /// last length bucket, duplicates included), and probe keys that are
        /// one of them, share a length with one, or are anything else.
        /// Guarantees: the length-bucketed `is_path_key` answers exactly
        /// whether the probe is one of the configured keys.
        #[test]
        fn path_keys_are_found_by_length_bucket(
            keys in proptest::collection::vec("[ab.]{1,3}|[ab.]{60,70}", 1..8),
            probes in proptest::collection::vec((0..3u8, 0..8usize, "[ab.]{0,3}|[ab.]{60,70}"), 1..16),
        ) {
            let config = serde_json::json!({"noise": {"sources": {"attributes": keys}}});
            let c = Compiled::new(&crate::config::Config::from_json(&config.to_string()).expect("config")).expect("compiles");
            let noise = c.noise.as_ref().expect("noise is on by default");
            for (how, i, other) in probes {
                let key = &keys[i % keys.len()];
                let probe = match how {
                    0 => key.clone(),
                    // Same length, last byte changed.
                    1 => format!("{}{}", &key[..key.len() - 1], if key.ends_with('a') { 'b' } else { 'a' }),
                    _ => other,
                };
                proptest::prop_assert_eq!(noise.is_path_key(probe.as_bytes()), keys.contains(&probe), "{:?} in {:?}", probe, keys);
            }
        }
    }
}
