//! Schema version 2's layered noise rules, compiled: which layers judge a
//! resource's spans (chosen once per resource), and the judgement of one
//! span by that chain of layers. See `crate::teams` for the precedence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::Config;
use crate::error::ConfigProblem;
use crate::glob::GlobList;
use crate::otlp::{any_value, key_value, resource};
use crate::path;
use crate::teams::{NoiseLayer, NoiseRule, preset_rules};
use crate::wire::{Fields, WireError, WireType};

/// At most this many layers judge a span: service entry, team, override,
/// defaults.
pub(super) const MAX_CHAIN: usize = 4;

/// The layers that judge one resource's spans, highest precedence first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(super) struct Chain {
    layers: [u32; MAX_CHAIN],
    len: u8,
}

/// A resource's chain with its path globs merged: what [`Layered::judge`]
/// needs per span.
#[derive(Debug, Clone, Default)]
pub(super) struct Judge {
    chain: Chain,
    /// `None` only before the first resource.
    paths: Option<Arc<MergedPaths>>,
}

/// Every `keep` then `drop` glob of a chain's layers, in chain order, in one
/// matcher: a path is read once (one prefilter pass) whatever the number of
/// layers, and the lowest index that matches is the highest-precedence
/// verdict. Built the first time a resource with that chain comes.
#[derive(Debug)]
struct MergedPaths {
    globs: GlobList,
    /// Per glob: its layer's position in the chain, and what it decides.
    verdicts: Vec<(u8, Verdict)>,
    /// No `keep` glob in the chain: then a path that matches a glob of the
    /// chain's first layer decides at once (the common case, the defaults
    /// alone, matched as version 1 does).
    no_keeps: bool,
}

impl Chain {
    fn push(&mut self, layer: Option<u32>) {
        if let Some(l) = layer {
            self.layers[usize::from(self.len)] = l;
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.layers[..usize::from(self.len)].iter().copied()
    }
}

/// One layer's span-name and attribute rules, compiled (its path globs are
/// matched through [`MergedPaths`]).
#[derive(Debug)]
struct Layer {
    names: GlobList,
    /// (index into `Layered::attr_keys`, glob, rule id).
    attrs: Vec<(usize, GlobList, u32)>,
}

/// One layer as written, with its rule ids, compiled the first time a
/// resource needs it: with hundreds of team files, most are for resources
/// a given gateway never sees, and creating a processor stays quick.
#[derive(Debug)]
struct LazyLayer {
    keep: Vec<String>,
    drop: Vec<String>,
    /// The rule id of each `drop` glob.
    drop_ids: Vec<u32>,
    names: Vec<String>,
    name_ids: Vec<u32>,
    attrs: Vec<(usize, String, u32)>,
    compiled: OnceLock<Layer>,
}

impl LazyLayer {
    fn get(&self) -> &Layer {
        self.compiled.get_or_init(|| Layer {
            names: compile(&self.names, true),
            attrs: self
                .attrs
                .iter()
                .map(|(k, g, id)| (*k, compile(std::slice::from_ref(g), true), *id))
                .collect(),
        })
    }
}

/// Globs the config has checked; a list that still fails to build (its
/// patterns together too big) matches nothing.
fn compile(globs: &[String], case_sensitive: bool) -> GlobList {
    GlobList::new(globs, case_sensitive).unwrap_or_else(|_| {
        GlobList::new(&[], true).unwrap_or_else(|_| unreachable!("an empty list compiles"))
    })
}

/// What decided a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    Drop(u32),
}

/// A span's facts that the rules read, gathered by the walk.
pub(super) struct Facts<'a, 's> {
    /// Paths from the path attributes and a server span's name, in order.
    pub(super) paths: &'s [&'a [u8]],
    pub(super) name: &'a [u8],
    /// (index into `attr_keys`, string value) of the span's rule attributes.
    pub(super) attrs: &'s [(usize, &'a [u8])],
}

/// An override: how many match keys it has, whether final, its layer.
type CompiledOverride = (u32, bool, u32);

/// One match key's globs over every override that names it: (match key
/// index, the globs, the override each glob belongs to). One matcher per key
/// rather than per override: fifty overrides build two matchers, not fifty,
/// and a resource's value is read once per key.
type OverrideKey = (usize, GlobList, Vec<u32>);

/// A team: its name, its layer, and its services' globs and layers (the
/// globs compiled when the team's first resource comes).
type CompiledTeam = (Vec<u8>, u32, Vec<(String, u32)>, OnceLock<Vec<GlobList>>);

/// A KeyValue's key and string value.
type StringAttribute<'a> = (&'a [u8], &'a [u8]);

/// Every layer, and how a resource picks its chain.
#[derive(Debug)]
pub(super) struct Layered {
    /// 0 is the defaults; then the overrides', teams' and services'.
    layers: Vec<LazyLayer>,
    overrides: Vec<CompiledOverride>,
    override_keys: Vec<OverrideKey>,
    /// Merged path matchers by chain.
    merged: Mutex<HashMap<Chain, Arc<MergedPaths>>>,
    case_sensitive: bool,
    /// Sorted by name.
    teams: Vec<CompiledTeam>,
    /// Resource attribute keys read to pick a chain: `teams.key` first,
    /// `service.name` second, then the overrides' keys.
    match_keys: Vec<Vec<u8>>,
    /// Span attribute keys the rules read.
    pub(super) attr_keys: Vec<Vec<u8>>,
    /// Bit n set when some key in `attr_keys` is n bytes long (bit 63: 63
    /// or longer): most span attributes' keys are ruled out by length alone.
    attr_key_lens: u64,
}

/// Names of the rules past the default globs, in id order, for stats, and
/// whether each is a team file's.
pub(super) type RuleNames = Vec<(String, bool)>;

impl Layered {
    /// Compiles the version-2 rules. `None` when there are none, so a
    /// version-1 config keeps the plain path. Rule ids continue after the
    /// default globs' (`first_id`).
    pub(super) fn new(
        cfg: &Config,
        first_id: u32,
    ) -> Result<Option<(Layered, RuleNames)>, Vec<ConfigProblem>> {
        let mut main_rules: Vec<(String, NoiseRule)> =
            cfg.noise.rules.iter().map(|r| ("noise.rules".to_owned(), r.clone())).collect();
        for name in &cfg.noise.presets {
            for r in preset_rules(name).unwrap_or_default() {
                main_rules.push((format!("preset {name}"), r));
            }
        }
        if main_rules.is_empty() && cfg.overrides.is_empty() && cfg.teams.files.is_empty() {
            return Ok(None);
        }
        let case_sensitive = cfg.noise.case_sensitive;
        let mut b = Builder {
            names: Vec::new(),
            next_id: first_id,
            attr_keys: Vec::new(),
            team: false,
            problems: Vec::new(),
        };
        // The defaults: the default globs keep their ids (0..), the rules follow.
        let defaults = NoiseLayer { source: "noise".into(), ..NoiseLayer::default() };
        let mut layers = vec![b.layer(&defaults, &main_rules)];
        layers[0].drop = cfg.noise.globs.clone();
        layers[0].drop_ids = (0..cfg.noise.globs.len() as u32).collect();

        let mut match_keys: Vec<Vec<u8>> =
            vec![cfg.teams.key.as_bytes().to_vec(), b"service.name".to_vec()];
        let key_index =
            |k: &str, keys: &mut Vec<Vec<u8>>| match keys.iter().position(|x| x == k.as_bytes()) {
                Some(i) => i,
                None => {
                    keys.push(k.as_bytes().to_vec());
                    keys.len() - 1
                }
            };
        let mut overrides = Vec::new();
        // Per match key index: (globs, owning override).
        let mut by_key: Vec<(usize, Vec<String>, Vec<u32>)> = Vec::new();
        for (n, o) in cfg.overrides.iter().enumerate() {
            for (k, g) in &o.matches {
                let i = key_index(k, &mut match_keys);
                let at = match by_key.iter().position(|(x, _, _)| *x == i) {
                    Some(at) => at,
                    None => {
                        by_key.push((i, Vec::new(), Vec::new()));
                        by_key.len() - 1
                    }
                };
                by_key[at].1.push(g.clone());
                by_key[at].2.push(n as u32);
            }
            layers.push(b.layer(&o.noise, &[]));
            overrides.push((o.matches.len() as u32, o.is_final, layers.len() as u32 - 1));
        }
        let override_keys = by_key
            .into_iter()
            .map(|(i, globs, owners)| (i, b.glob(&globs, true), owners))
            .collect();
        let mut teams = Vec::new();
        b.team = true;
        for t in &cfg.teams.files {
            layers.push(b.layer(&t.noise, &[]));
            let team_layer = layers.len() as u32 - 1;
            let mut services = Vec::new();
            for (glob, layer) in &t.services {
                layers.push(b.layer(layer, &[]));
                services.push((glob.clone(), layers.len() as u32 - 1));
            }
            teams.push((t.name.as_bytes().to_vec(), team_layer, services, OnceLock::new()));
        }
        teams.sort_by(|a, b| a.0.cmp(&b.0));
        if !b.problems.is_empty() {
            return Err(b.problems);
        }
        let layered = Layered {
            layers,
            overrides,
            override_keys,
            merged: Mutex::new(HashMap::new()),
            case_sensitive,
            teams,
            match_keys,
            attr_key_lens: b.attr_keys.iter().fold(0, |m, k| m | length_bit(k.len())),
            attr_keys: b.attr_keys,
        };
        Ok(Some((layered, b.names)))
    }

    /// Whether an attribute whose key is `len` bytes long may be one the
    /// rules read.
    #[inline(always)]
    pub(super) fn may_be_attr_key(&self, len: usize) -> bool {
        self.attr_key_lens & length_bit(len) != 0
    }

    /// The chain for a resource whose attributes are at `start..end` of
    /// `buf` (a `Resource` message), read once per resource.
    pub(super) fn chain<'a>(
        &self,
        buf: &'a [u8],
        start: usize,
        end: usize,
    ) -> Result<(Judge, &'a [u8]), WireError> {
        let mut values: Vec<Option<&[u8]>> = vec![None; self.match_keys.len()];
        let mut fields = Fields::new(buf, start, end);
        while let Some(f) = fields.next_field()? {
            if f.number != resource::ATTRIBUTES || f.wire != WireType::Len {
                continue;
            }
            if let Some((key, value)) = string_attribute(buf, f.body, f.end)?
                && let Some(i) = self.match_keys.iter().position(|k| k == key)
            {
                values[i] = Some(value);
            }
        }
        let mut scratch = Vec::new();
        let (team, service) = (values[0], values[1]);
        let mut team_layers = (None, None);
        if let Some(ns) = team
            && let Ok(t) = self.teams.binary_search_by(|t| t.0.as_slice().cmp(ns))
        {
            let (_, layer, services, globs) = &self.teams[t];
            let globs = globs.get_or_init(|| {
                services.iter().map(|(g, _)| compile(std::slice::from_ref(g), true)).collect()
            });
            let svc = service.and_then(|s| {
                globs
                    .iter()
                    .zip(services)
                    .find(|(g, _)| g.is_match(s, &mut scratch))
                    .map(|(_, (_, l))| *l)
            });
            team_layers = (svc, Some(*layer));
        }
        // How many of each override's keys the resource matches.
        let mut matched = vec![0u32; self.overrides.len()];
        let mut hits = Vec::new();
        for (i, globs, owners) in &self.override_keys {
            if let Some(v) = values.get(*i).copied().flatten() {
                globs.matches_into(v, &mut scratch, &mut hits);
                for &h in &hits {
                    matched[owners[h] as usize] += 1;
                }
            }
        }
        let over =
            self.overrides.iter().zip(&matched).find(|((n, _, _), m)| *m == n).map(|(o, _)| o);
        let mut chain = Chain::default();
        match over {
            Some((_, true, l)) => {
                chain.push(Some(*l));
                chain.push(team_layers.0);
                chain.push(team_layers.1);
            }
            Some((_, false, l)) => {
                chain.push(team_layers.0);
                chain.push(team_layers.1);
                chain.push(Some(*l));
            }
            None => {
                chain.push(team_layers.0);
                chain.push(team_layers.1);
            }
        }
        chain.push(Some(0));
        let paths = self.merged_paths(chain);
        Ok((Judge { chain, paths: Some(paths) }, team.unwrap_or_default()))
    }

    /// The merged path matcher of `chain`, built on first use.
    fn merged_paths(&self, chain: Chain) -> Arc<MergedPaths> {
        // A poisoned lock only means a panic elsewhere mid-insert: the map
        // itself is whole.
        let mut cache = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.entry(chain).or_insert_with(|| {
            let (mut globs, mut verdicts) = (Vec::new(), Vec::new());
            for (pos, l) in chain.iter().enumerate() {
                let lazy = &self.layers[l as usize];
                globs.extend(lazy.keep.iter().cloned());
                verdicts.extend(lazy.keep.iter().map(|_| (pos as u8, Verdict::Keep)));
                globs.extend(lazy.drop.iter().cloned());
                verdicts.extend(lazy.drop_ids.iter().map(|&id| (pos as u8, Verdict::Drop(id))));
            }
            let no_keeps = verdicts.iter().all(|(_, v)| *v != Verdict::Keep);
            Arc::new(MergedPaths {
                globs: compile(&globs, self.case_sensitive),
                verdicts,
                no_keeps,
            })
        });
        Arc::clone(entry)
    }

    /// The first layer of the chain that decides the span, if any: in each
    /// layer, a `keep` glob on any path, then a `drop` glob on the first path
    /// one matches, then a span-name rule, then an attribute rule. Paths are
    /// normalised (see [`path::normalise`]) into `norm` first.
    pub(super) fn judge(
        &self,
        judge: &Judge,
        facts: &Facts<'_, '_>,
        norm: &mut Vec<Vec<u8>>,
        scratch: &mut Vec<u8>,
    ) -> Option<Verdict> {
        // The highest-precedence path verdict: the lowest merged index any
        // path matches (keep globs sit before their layer's drop globs, so
        // a keep on any path beats a drop of its layer); for a drop, the
        // first path that matched in that layer names the rule.
        let mut best: Option<(u8, Verdict)> = None;
        if let Some(merged) = judge.paths.as_deref() {
            let mut lowest: Option<usize> = None;
            let mut firsts: [Option<usize>; 8] = [None; 8];
            norm.resize_with(facts.paths.len(), Vec::new);
            for (i, (p, out)) in facts.paths.iter().zip(norm.iter_mut()).enumerate() {
                // Most paths need no normalising and are matched as they are.
                let p: &[u8] = if path::needs_normalising(p) {
                    path::normalise(p, out);
                    out
                } else {
                    p
                };
                if let Some(g) = merged.globs.first_match(p, scratch) {
                    // No later path can match a higher precedence, and this
                    // is the first path to match its layer: what follows
                    // would name this glob too.
                    if merged.no_keeps && merged.verdicts[g].0 == 0 && i < firsts.len() {
                        return Some(merged.verdicts[g].1);
                    }
                    if lowest.is_none_or(|l| g < l) {
                        lowest = Some(g);
                    }
                    // Past eight paths (never seen in practice) the lowest
                    // index decides alone.
                    if let Some(slot) = firsts.get_mut(i) {
                        *slot = Some(g);
                    }
                }
            }
            best = lowest.map(|g| {
                let (pos, verdict) = merged.verdicts[g];
                let first_in_layer = firsts.iter().flatten().find(|&&f| {
                    merged.verdicts[f].0 == pos && merged.verdicts[f].1 != Verdict::Keep
                });
                match (verdict, first_in_layer) {
                    (Verdict::Drop(_), Some(&f)) => merged.verdicts[f],
                    _ => (pos, verdict),
                }
            });
        }
        for (pos, l) in judge.chain.iter().enumerate() {
            if let Some((at, verdict)) = best
                && usize::from(at) == pos
            {
                return Some(verdict);
            }
            let lazy = &self.layers[l as usize];
            let layer = lazy.get();
            if let Some(g) = layer.names.first_match(facts.name, scratch) {
                return Some(Verdict::Drop(lazy.name_ids[g]));
            }
            for (key, glob, id) in &layer.attrs {
                if facts.attrs.iter().any(|(k, v)| k == key && glob.is_match(v, scratch)) {
                    return Some(Verdict::Drop(*id));
                }
            }
        }
        None
    }
}

/// Compiles layers and names their rules.
struct Builder {
    names: RuleNames,
    next_id: u32,
    attr_keys: Vec<Vec<u8>>,
    /// Layers built now are a team file's.
    team: bool,
    problems: Vec<ConfigProblem>,
}

impl Builder {
    fn glob(&mut self, globs: &[String], case_sensitive: bool) -> GlobList {
        match GlobList::new(globs, case_sensitive) {
            Ok(g) => g,
            Err(errors) => {
                // The config checks every glob first; this is a backstop.
                for e in errors {
                    self.problems.push(ConfigProblem {
                        path: format!("glob {}", e.index),
                        reason: format!("bad glob: {}", e.reason),
                    });
                }
                GlobList::new(&[], true).unwrap_or_else(|_| unreachable!("an empty list compiles"))
            }
        }
    }

    fn id(&mut self, name: String) -> u32 {
        self.names.push((name, self.team));
        self.next_id += 1;
        self.next_id - 1
    }

    fn layer(&mut self, l: &NoiseLayer, extra_rules: &[(String, NoiseRule)]) -> LazyLayer {
        let drop_ids = l.extra_globs.iter().map(|g| self.id(joined(&[&l.source, g]))).collect();
        let rules = l
            .rules
            .iter()
            .map(|r| (l.source.clone(), r.clone()))
            .chain(extra_rules.iter().cloned());
        let (mut names, mut name_ids, mut attrs) = (Vec::new(), Vec::new(), Vec::new());
        for (source, rule) in rules.collect::<Vec<_>>() {
            let [what, glob] = rule.name_parts();
            let id = self.id(joined(&[&source, what, glob]));
            match rule {
                NoiseRule::SpanName(g) => {
                    names.push(g);
                    name_ids.push(id);
                }
                NoiseRule::Attribute { key, glob } => {
                    let k = match self.attr_keys.iter().position(|x| x == key.as_bytes()) {
                        Some(k) => k,
                        None => {
                            self.attr_keys.push(key.into_bytes());
                            self.attr_keys.len() - 1
                        }
                    };
                    attrs.push((k, glob, id));
                }
            }
        }
        LazyLayer {
            keep: l.keep_globs.clone(),
            drop: l.extra_globs.clone(),
            drop_ids,
            names,
            name_ids,
            attrs,
            compiled: OnceLock::new(),
        }
    }
}

/// The bit of [`Layered::may_be_attr_key`]'s mask for a key `len` bytes long.
#[inline(always)]
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// `parts` joined by spaces: a rule's name (`teams/a.yaml */ping`). Not
/// `format!`: a config with hundreds of team files names thousands of rules
/// each time a processor is created.
fn joined(parts: &[&str]) -> String {
    let mut name = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            name.push(' ');
        }
        name.push_str(p);
    }
    name
}

/// The key and string value of the KeyValue at `start..end`, when its value
/// is a string.
pub(super) fn string_attribute(
    buf: &[u8],
    start: usize,
    end: usize,
) -> Result<Option<StringAttribute<'_>>, WireError> {
    let (mut key, mut value) = (None, None);
    let mut fields = Fields::new(buf, start, end);
    while let Some(f) = fields.next_field()? {
        match (f.number, f.wire) {
            (key_value::KEY, WireType::Len) => key = Some(f.bytes(buf)),
            (key_value::VALUE, WireType::Len) => {
                let mut inner = Fields::new(buf, f.body, f.end);
                value = None;
                while let Some(g) = inner.next_field()? {
                    if g.number == any_value::STRING && g.wire == WireType::Len {
                        value = Some(g.bytes(buf));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(key.zip(value))
}
