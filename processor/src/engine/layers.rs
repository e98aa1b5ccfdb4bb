//! Schema version 2's layered noise rules, compiled: which layers judge a
//! resource's spans (chosen once per resource), and the judgement of one
//! span by that chain of layers. See `crate::teams` for the precedence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::bytes;
use crate::config::Config;
use crate::error::ConfigProblem;
use crate::glob::{self, GlobList};
use crate::otlp::{any_value, key_value, resource};
use crate::path;
use crate::teams::{DeferredTeam, MAX_TEAMS, NoiseLayer, NoiseRule, Team, preset_rules, read_team};
use crate::wire::{Fields, WireError, WireType};
use serde_json::Value;

use super::rules::{peek_key, string_after_key};

/// At most this many layers judge a span: service entry, team, override,
/// defaults.
pub(super) const MAX_CHAIN: usize = 4;

/// The layers that judge one resource's spans, highest precedence first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(super) struct Chain {
    layers: [u32; MAX_CHAIN],
    len: u8,
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

/// A resource's chain, as its spans are judged: its [`Plan`]. `None` only
/// before the first resource.
#[derive(Debug, Clone, Default)]
pub(super) struct Judge {
    plan: Option<Arc<Plan>>,
    /// The keys a span attribute may be judged by: the path keys and the
    /// plan's attribute keys (the walk's `span_keys` while the resource's
    /// spans are walked).
    keys: KeyFilter,
}

/// What [`Layered::chain`] keeps between the resources of one batch.
#[derive(Debug, Default)]
pub(super) struct ChainMemo<'a> {
    /// The resource's value of each match key.
    values: Vec<Option<&'a [u8]>>,
    /// The last chain built, and the values it was built for.
    last: Vec<Option<&'a [u8]>>,
    judge: Option<Judge>,
    matched: Vec<u32>,
    hits: Vec<usize>,
    scratch: Vec<u8>,
}

/// A set of attribute keys, as 512 bits indexed by a hash of a key's
/// length and its first two and last bytes: no key in the set is ever
/// missed, and most keys not in it are ruled out with no compare at all.
/// By length alone (`http.method` is as long as `rpc.service`,
/// `http.request.method` as `user_agent.original`) most of a span's keys
/// would still be compared; by length, first and last byte in 256 bits,
/// `db.system` (on every database span) still hit `http.url`'s bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KeyFilter([u64; 8]);

impl KeyFilter {
    #[inline(always)]
    fn bit(key: &[u8]) -> usize {
        let (first, second, last) = match key {
            [] => (0, 0, 0),
            [f] => (*f, 0, *f),
            [f, s, ..] => (*f, *s, key[key.len() - 1]),
        };
        let word = key.len() as u32 & 0xff
            | u32::from(first) << 8
            | u32::from(second) << 16
            | u32::from(last) << 24;
        // Multiplicative hashing: the top bits of the product depend on
        // every byte of the word.
        (word.wrapping_mul(0x9E37_79B1) >> (32 - 9)) as usize
    }

    fn insert(&mut self, key: &[u8]) {
        let b = Self::bit(key);
        self.0[b / 64] |= 1 << (b % 64);
    }

    pub(super) fn of<'k>(keys: impl IntoIterator<Item = &'k [u8]>) -> KeyFilter {
        let mut f = KeyFilter::default();
        for k in keys {
            f.insert(k);
        }
        f
    }

    /// False only when `key` is not in the set.
    #[inline(always)]
    pub(super) fn may_hold(&self, key: &[u8]) -> bool {
        let b = Self::bit(key);
        self.0[b / 64] & 1 << (b % 64) != 0
    }

    fn union(mut self, other: KeyFilter) -> KeyFilter {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        self
    }
}

/// Every rule of a chain's layers merged, in chain order, so that a span is
/// judged by one matcher per fact however many layers the chain has. Built
/// the first time a resource with that chain comes.
#[derive(Debug)]
struct Plan {
    /// Every `keep` then `drop` path glob of each layer: a path is read once
    /// (one prefilter pass), and the lowest index that matches is its
    /// highest-precedence verdict (keeps sit before their layer's drops).
    paths: GlobList,
    /// Per path glob: its layer's position in the chain, and what it decides.
    path_verdicts: Vec<(u8, Verdict)>,
    /// The chain's first layer has a keep glob: a drop there is final only
    /// once every path has been read.
    first_keeps: bool,
    /// Every span-name glob, and per glob its layer's position and rule id.
    names: GlobList,
    name_verdicts: Vec<(u8, u32)>,
    /// The attribute rules by key, each key's in chain order.
    attrs: Vec<(Vec<u8>, Vec<AttrRule>)>,
    /// The keys of `attrs`.
    attr_keys: KeyFilter,
    /// The bytes a value any attribute rule matches can start with (see
    /// [`GlobList::first_bytes`]); `None`: any byte.
    attr_starts: Option<[u64; 4]>,
}

/// An attribute rule of a plan.
#[derive(Debug)]
struct AttrRule {
    /// Its place among all the chain's attribute rules: the lowest that
    /// matches decides.
    order: u32,
    pos: u8,
    id: u32,
    glob: GlobList,
}

/// What a span's facts decided so far under its resource's plan: the walk
/// feeds them in as it reads the span's fields, and nothing is kept but
/// the best verdict of each kind.
#[derive(Debug, Default)]
pub(super) struct Judging<'a> {
    /// The first path read, for findings.
    first_path: Option<&'a [u8]>,
    /// The path read last: a span's sources often repeat one (`url.path`,
    /// `http.target`, a server span's name), and a repeat decides nothing new.
    last_path: Option<&'a [u8]>,
    /// The highest-precedence path verdict: its layer's position, and what
    /// it says (for a drop, the first path that matched in that layer names
    /// the rule).
    path: Option<(u8, Verdict)>,
    /// (order, position, rule id) of the first attribute rule that matched.
    attr: Option<(u32, u8, u32)>,
    /// A path decided in the chain's first layer, for good: nothing read
    /// later can change the verdict.
    settled: bool,
    /// A normalised path.
    norm: Vec<u8>,
}

impl<'a> Judging<'a> {
    /// Forgets the last span's facts (keeping the buffer).
    pub(super) fn start(&mut self) {
        self.first_path = None;
        self.last_path = None;
        self.path = None;
        self.attr = None;
        self.settled = false;
    }

    /// Nothing read from now on can change the verdict.
    #[inline(always)]
    pub(super) fn settled(&self) -> bool {
        self.settled
    }

    /// The first path read, or empty.
    pub(super) fn first_path(&self) -> &'a [u8] {
        self.first_path.unwrap_or_default()
    }
}

impl Judge {
    /// Reads one of the span's paths; it is normalised (see
    /// [`path::normalise`]) first.
    pub(super) fn path<'a>(&self, j: &mut Judging<'a>, p: &'a [u8], scratch: &mut Vec<u8>) {
        j.first_path.get_or_insert(p);
        if j.settled || j.last_path.is_some_and(|last| bytes::eq(last, p)) {
            return;
        }
        j.last_path = Some(p);
        let Some(plan) = self.plan.as_deref() else { return };
        // Most paths need no normalising and are matched as they are.
        let p: &[u8] = if path::needs_normalising(p) {
            path::normalise(p, &mut j.norm);
            &j.norm
        } else {
            p
        };
        let Some(g) = plan.paths.first_match(p, scratch) else { return };
        let (pos, verdict) = plan.path_verdicts[g];
        // A higher layer, or a keep in the same layer (keep globs beat the
        // drops of their layer on any path), takes over.
        let better = match j.path {
            None => true,
            Some((at, held)) => {
                pos < at || pos == at && verdict == Verdict::Keep && held != verdict
            }
        };
        if better {
            j.path = Some((pos, verdict));
        }
        j.settled = pos == 0 && (verdict == Verdict::Keep || !plan.first_keeps);
    }

    /// The keys a span attribute may be judged by (see [`KeyFilter`]):
    /// every other key is neither a path key nor a rule's.
    pub(super) fn keys(&self) -> KeyFilter {
        self.keys
    }

    /// Which of the chain's attribute keys `key` is, if any: its place in
    /// the plan, for [`Judge::attr_at`]. Most keys that get here are path
    /// keys, and the plan's own filter rules them out.
    #[inline]
    pub(super) fn attr_key(&self, key: &[u8]) -> Option<usize> {
        let plan = self.plan.as_deref()?;
        if !plan.attr_keys.may_hold(key) {
            return None;
        }
        plan.attrs.iter().position(|(k, _)| bytes::eq(k, key))
    }

    /// Whether some attribute rule could match the string `value`, by its
    /// first byte alone: most values of a rule's key (user agents that are
    /// no `kube-probe/...`) start with a byte no rule's glob starts with,
    /// and are then ruled out before the key is looked up.
    #[inline]
    pub(super) fn attr_value_may_match(&self, value: &[u8]) -> bool {
        let Some(plan) = self.plan.as_deref() else { return false };
        glob::may_start_with(plan.attr_starts.as_ref(), value)
    }

    /// Reads a span attribute whose value is a string.
    pub(super) fn attr(
        &self,
        j: &mut Judging<'_>,
        key: &[u8],
        value: &[u8],
        scratch: &mut Vec<u8>,
    ) {
        if let Some(at) = self.attr_key(key) {
            self.attr_at(j, at, value, scratch);
        }
    }

    /// Reads the string value of the chain's attribute key `at` (from
    /// [`Judge::attr_key`]).
    pub(super) fn attr_at(
        &self,
        j: &mut Judging<'_>,
        at: usize,
        value: &[u8],
        scratch: &mut Vec<u8>,
    ) {
        let Some((_, rules)) = self.plan.as_deref().and_then(|p| p.attrs.get(at)) else { return };
        for r in rules {
            // Rules are in order: none from here on can beat the one held.
            if j.attr.is_some_and(|(order, _, _)| order <= r.order) {
                break;
            }
            if r.glob.is_match(value, scratch) {
                j.attr = Some((r.order, r.pos, r.id));
                break;
            }
        }
    }

    /// The span's verdict, once every field is read: the first layer of
    /// the chain that decides it, and in that layer a `keep` glob on any
    /// path, then a `drop` glob, then a span-name rule, then an attribute
    /// rule.
    pub(super) fn verdict(
        &self,
        j: &Judging<'_>,
        name: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Option<Verdict> {
        if j.settled {
            return j.path.map(|(_, v)| v);
        }
        let plan = self.plan.as_deref()?;
        // (position, kind, verdict): the lowest wins.
        let mut best = j.path.map(|(pos, v)| (pos, 0, v));
        if best.is_none_or(|(pos, _, _)| pos > 0)
            && let Some(g) = plan.names.first_match(name, scratch)
        {
            let (pos, id) = plan.name_verdicts[g];
            if best.is_none_or(|(at, kind, _)| (pos, 1) < (at, kind)) {
                best = Some((pos, 1, Verdict::Drop(id)));
            }
        }
        if let Some((_, pos, id)) = j.attr
            && best.is_none_or(|(at, kind, _)| (pos, 2) < (at, kind))
        {
            best = Some((pos, 2, Verdict::Drop(id)));
        }
        best.map(|(_, _, v)| v)
    }
}

/// One layer's rules as written, with their rule ids; a chain's [`Plan`]
/// compiles them together.
#[derive(Debug)]
struct Written {
    keep: Vec<String>,
    drop: Vec<String>,
    /// The rule id of each `drop` glob.
    drop_ids: Vec<u32>,
    names: Vec<String>,
    name_ids: Vec<u32>,
    /// (key, glob, rule id).
    attrs: Vec<(String, String, u32)>,
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

/// An override: how many match keys it has, whether final, its layer.
type CompiledOverride = (u32, bool, u32);

/// One match key's globs over every override that names it: (match key
/// index, the globs, the override each glob belongs to). One matcher per key
/// rather than per override: fifty overrides build two matchers, not fifty,
/// and a resource's value is read once per key.
type OverrideKey = (usize, GlobList, Vec<u32>);

/// Team rule ids and team layers are `TEAM | file << 15 | n`: the file's
/// place among the team files (sorted by name) and the rule's (or layer's)
/// place in that file. A file's ids are known without reading the others,
/// so each file is read and compiled only when its namespace first comes,
/// and its rules still sort in config order.
pub(super) const TEAM: u32 = 1 << 31;

/// The id of a team file's `n`th rule or layer.
fn team_id(file: usize, n: usize) -> u32 {
    TEAM | (file as u32) << 15 | n as u32
}

/// The file and place of a team rule id or layer.
fn team_parts(id: u32) -> (usize, usize) {
    (((id & !TEAM) >> 15) as usize, (id & 0x7fff) as usize)
}

/// A team file, compiled when a resource of its namespace first comes.
#[derive(Debug)]
struct TeamEntry {
    name: Vec<u8>,
    source: TeamSource,
    /// `None`: the file has problems and is left out whole.
    rules: OnceLock<Option<Box<TeamRules>>>,
}

#[derive(Debug)]
enum TeamSource {
    /// Read when the config was (it adds masking, or the host asked for
    /// every file's problems up front).
    Read(Box<Team>),
    /// Shared with the config, which the processor keeps.
    Deferred(Arc<DeferredTeam>),
}

/// A team file's layers: its own first, then one per `services` entry.
#[derive(Debug)]
struct TeamRules {
    layers: Vec<Written>,
    /// Per `services` entry, its `service.name` glob.
    services: Vec<GlobList>,
    /// Rule names by place in the file, redacted.
    names: Vec<String>,
}

/// A KeyValue's key and string value.
type StringAttribute<'a> = (&'a [u8], &'a [u8]);

/// Every layer, and how a resource picks its chain.
#[derive(Debug)]
pub(super) struct Layered {
    /// 0 is the defaults; then the overrides'. Team layers are the teams'.
    layers: Vec<Written>,
    overrides: Vec<CompiledOverride>,
    override_keys: Vec<OverrideKey>,
    /// Merged path matchers by chain.
    plans: Mutex<HashMap<Chain, Arc<Plan>>>,
    case_sensitive: bool,
    /// Sorted by name.
    teams: Vec<TeamEntry>,
    /// Resource attribute keys read to pick a chain: `teams.key` first,
    /// `service.name` second, then the overrides' keys.
    match_keys: Vec<Vec<u8>>,
    /// The keys of `match_keys`: most resource attributes are ruled out
    /// by it with no compare.
    match_filter: KeyFilter,
    /// The path keys (`noise.sources.attributes`).
    path_keys: KeyFilter,
}

impl Layered {
    /// Compiles the version-2 rules. `None` when there are none, so a
    /// version-1 config keeps the plain path. Rule ids continue after the
    /// default globs' (`first_id`); the names of the platform's rules come
    /// back in id order (team rules are named by [`Layered::team_rule_name`]).
    pub(super) fn new(
        cfg: &Config,
        first_id: u32,
    ) -> Result<Option<(Layered, Vec<String>)>, Vec<ConfigProblem>> {
        let mut main_rules: Vec<(String, NoiseRule)> =
            cfg.noise.rules.iter().map(|r| ("noise.rules".to_owned(), r.clone())).collect();
        for name in &cfg.noise.presets {
            for r in preset_rules(name).unwrap_or_default() {
                main_rules.push((format!("preset {name}"), r));
            }
        }
        let no_teams = cfg.teams.files.is_empty() && cfg.teams.deferred.is_empty();
        if main_rules.is_empty() && cfg.overrides.is_empty() && no_teams {
            return Ok(None);
        }
        let case_sensitive = cfg.noise.case_sensitive;
        let mut b = Builder { names: Vec::new(), next_id: first_id, problems: Vec::new() };
        // The defaults: the default globs keep their ids (0..), the rules follow.
        let defaults = NoiseLayer { source: "noise".into(), ..NoiseLayer::default() };
        let mut layers = Vec::with_capacity(1 + cfg.overrides.len());
        layers.push(b.layer(&defaults, &main_rules));
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
        let read = cfg.teams.files.iter().map(|t| TeamEntry {
            name: t.name.as_bytes().to_vec(),
            source: TeamSource::Read(Box::new(t.clone())),
            rules: OnceLock::new(),
        });
        let deferred = cfg.teams.deferred.iter().map(|t| TeamEntry {
            name: t.name.as_bytes().to_vec(),
            source: TeamSource::Deferred(Arc::clone(t)),
            rules: OnceLock::new(),
        });
        let mut teams: Vec<TeamEntry> = read.chain(deferred).collect();
        teams.sort_by(|a, b| a.name.cmp(&b.name));
        // The config leaves out the files past the limit; a backstop.
        teams.truncate(MAX_TEAMS);
        if !b.problems.is_empty() {
            return Err(b.problems);
        }
        let layered = Layered {
            layers,
            overrides,
            override_keys,
            plans: Mutex::new(HashMap::new()),
            case_sensitive,
            teams,
            match_filter: KeyFilter::of(match_keys.iter().map(Vec::as_slice)),
            match_keys,
            path_keys: KeyFilter::of(cfg.noise.path_attributes.iter().map(|k| k.as_bytes())),
        };
        Ok(Some((layered, b.names)))
    }

    /// The rules of the `i`th team file, read and compiled on first use;
    /// `None` when the file has problems.
    fn team_rules(&self, i: usize) -> Option<&TeamRules> {
        let entry = &self.teams[i];
        let rules = entry.rules.get_or_init(|| {
            let read;
            let team = match &entry.source {
                TeamSource::Read(team) => team.as_ref(),
                TeamSource::Deferred(d) => {
                    let doc: Value = serde_json::from_str(&d.doc).ok()?;
                    read = read_team(&d.name, &d.file, &doc).ok()?;
                    &read
                }
            };
            let mut b = Builder { names: Vec::new(), next_id: team_id(i, 0), problems: Vec::new() };
            let mut layers = vec![b.layer(&team.noise, &[])];
            let mut services = Vec::new();
            for (glob, layer) in &team.services {
                layers.push(b.layer(layer, &[]));
                services.push(compile(std::slice::from_ref(glob), true));
            }
            // Rule names reach stats, metrics and audits: never a number.
            let names = b.names.iter().map(|n| crate::explain::redact(n.as_bytes())).collect();
            Some(Box::new(TeamRules { layers, services, names }))
        });
        rules.as_deref()
    }

    /// The name of a team rule (an id with [`TEAM`] set), as stats show it.
    pub(super) fn team_rule_name(&self, id: u32) -> Option<&str> {
        let (file, n) = team_parts(id);
        self.teams.get(file)?.rules.get()?.as_ref()?.names.get(n).map(String::as_str)
    }

    /// A layer, by its index or team id.
    fn written(&self, layer: u32) -> &Written {
        if layer & TEAM == 0 {
            return &self.layers[layer as usize];
        }
        let (file, n) = team_parts(layer);
        match self.teams[file].rules.get() {
            Some(Some(rules)) => &rules.layers[n],
            // A chain names a team layer only once its rules are compiled.
            _ => unreachable!("a team layer in a chain before its file was compiled"),
        }
    }

    /// The chain for a resource whose attributes are at `start..end` of
    /// `buf` (a `Resource` message), read once per resource. `memo` is the
    /// batch's: its buffers, and the last resource's chain, which the next
    /// resource takes when its match values are the same (the pods of one
    /// service, each a resource of its own, often follow each other).
    pub(super) fn chain<'a>(
        &self,
        buf: &'a [u8],
        start: usize,
        end: usize,
        memo: &mut ChainMemo<'a>,
    ) -> Result<(Judge, &'a [u8]), WireError> {
        memo.values.clear();
        memo.values.resize(self.match_keys.len(), None);
        let mut fields = Fields::new(buf, start, end);
        while let Some(f) = fields.next_field()? {
            if f.number != resource::ATTRIBUTES || f.wire != WireType::Len {
                continue;
            }
            // Most resource attributes are none of the match keys: one peek
            // at the key rules them out (see `peek_key`), and the usual
            // shape's string is read without a walk. The resource's walk
            // validates every attribute anyway (a malformed one skipped here
            // fails the batch there, with that walk's message).
            let attribute = match peek_key(f.bytes(buf)) {
                Some((key, _)) if !self.match_filter.may_hold(key) => continue,
                Some((key, after)) => match string_after_key(after) {
                    Some(value) => Some((key, value)),
                    None => string_attribute(buf, f.body, f.end)?,
                },
                None => string_attribute(buf, f.body, f.end)?,
            };
            if let Some((key, value)) = attribute
                && let Some(i) = self.match_keys.iter().position(|k| k == key)
            {
                memo.values[i] = Some(value);
            }
        }
        let team = memo.values[0];
        if let Some(judge) = &memo.judge
            && memo.last == memo.values
        {
            return Ok((judge.clone(), team.unwrap_or_default()));
        }
        let judge = self.judge(memo);
        memo.last.clone_from(&memo.values);
        memo.judge = Some(judge.clone());
        Ok((judge, team.unwrap_or_default()))
    }

    /// The chain for the match values in `memo.values`.
    fn judge(&self, memo: &mut ChainMemo<'_>) -> Judge {
        let scratch = &mut memo.scratch;
        let (team, service) = (memo.values[0], memo.values[1]);
        let mut team_layers = (None, None);
        if let Some(ns) = team
            && let Ok(t) = self.teams.binary_search_by(|t| t.name.as_slice().cmp(ns))
            && let Some(rules) = self.team_rules(t)
        {
            let svc =
                service.and_then(|s| rules.services.iter().position(|g| g.is_match(s, scratch)));
            team_layers = (svc.map(|n| team_id(t, 1 + n)), Some(team_id(t, 0)));
        }
        // How many of each override's keys the resource matches.
        let matched = &mut memo.matched;
        matched.clear();
        matched.resize(self.overrides.len(), 0);
        for (i, globs, owners) in &self.override_keys {
            if let Some(v) = memo.values.get(*i).copied().flatten() {
                globs.matches_into(v, scratch, &mut memo.hits);
                for &h in &memo.hits {
                    matched[owners[h] as usize] += 1;
                }
            }
        }
        let over = self
            .overrides
            .iter()
            .zip(matched.iter())
            .find(|((n, _, _), m)| *m == n)
            .map(|(o, _)| o);
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
        let plan = self.plan(chain);
        let keys = plan.attr_keys.union(self.path_keys);
        Judge { keys, plan: Some(plan) }
    }

    /// The plan of `chain`, built on first use.
    fn plan(&self, chain: Chain) -> Arc<Plan> {
        // A poisoned lock only means a panic elsewhere mid-insert: the map
        // itself is whole.
        let mut cache = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        let plan = cache.entry(chain).or_insert_with(|| {
            let (mut paths, mut path_verdicts) = (Vec::new(), Vec::new());
            let (mut names, mut name_verdicts) = (Vec::new(), Vec::new());
            let mut attrs: Vec<(Vec<u8>, Vec<AttrRule>)> = Vec::new();
            let mut order = 0;
            for (pos, l) in chain.iter().enumerate() {
                let (w, pos) = (self.written(l), pos as u8);
                paths.extend(w.keep.iter().cloned());
                path_verdicts.extend(w.keep.iter().map(|_| (pos, Verdict::Keep)));
                paths.extend(w.drop.iter().cloned());
                path_verdicts.extend(w.drop_ids.iter().map(|&id| (pos, Verdict::Drop(id))));
                names.extend(w.names.iter().cloned());
                name_verdicts.extend(w.name_ids.iter().map(|&id| (pos, id)));
                for (key, glob, id) in &w.attrs {
                    let rule = AttrRule {
                        order,
                        pos,
                        id: *id,
                        glob: compile(std::slice::from_ref(glob), true),
                    };
                    order += 1;
                    match attrs.iter_mut().find(|(k, _)| k == key.as_bytes()) {
                        Some((_, rules)) => rules.push(rule),
                        None => attrs.push((key.as_bytes().to_vec(), vec![rule])),
                    }
                }
            }
            let first_keeps = path_verdicts.iter().any(|&(pos, v)| pos == 0 && v == Verdict::Keep);
            let attr_starts =
                attrs.iter().flat_map(|(_, rules)| rules).try_fold([0u64; 4], |mut all, r| {
                    let starts = r.glob.first_bytes()?;
                    all.iter_mut().zip(starts).for_each(|(a, s)| *a |= s);
                    Some(all)
                });
            Arc::new(Plan {
                paths: compile(&paths, self.case_sensitive),
                path_verdicts,
                first_keeps,
                names: compile(&names, true),
                name_verdicts,
                attr_keys: KeyFilter::of(attrs.iter().map(|(k, _)| k.as_slice())),
                attrs,
                attr_starts,
            })
        });
        Arc::clone(plan)
    }
}

/// Compiles layers and names their rules.
struct Builder {
    /// The rules' names, in id order.
    names: Vec<String>,
    next_id: u32,
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
        self.names.push(name);
        self.next_id += 1;
        self.next_id - 1
    }

    fn layer(&mut self, l: &NoiseLayer, extra_rules: &[(String, NoiseRule)]) -> Written {
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
                NoiseRule::Attribute { key, glob } => attrs.push((key, glob, id)),
            }
        }
        Written {
            keep: l.keep_globs.clone(),
            drop: l.extra_globs.clone(),
            drop_ids,
            names,
            name_ids,
            attrs,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::KeyFilter;
    use proptest::prelude::*;

    proptest! {
        /// Guarantees: a key put in the filter is always found, whatever
        /// else is in it: an attribute rule is never skipped.
        #[test]
        fn key_filter_never_misses_a_key(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70), 1..12),
        ) {
            let f = KeyFilter::of(keys.iter().map(Vec::as_slice));
            for k in &keys {
                prop_assert!(f.may_hold(k));
            }
        }
    }

    /// Guarantees: the filter tells the common span keys from the presets'
    /// keys, which share their lengths: this is what it is for.
    #[test]
    fn key_filter_rules_out_common_keys_of_the_same_length() {
        let f = KeyFilter::of(["user_agent.original", "rpc.service"].map(str::as_bytes));
        assert!(!KeyFilter::default().may_hold(b"user_agent.original"));
        for k in ["http.request.method", "http.method", "http.target", "http.scheme"] {
            assert!(!f.may_hold(k.as_bytes()), "{k}");
        }
    }

    /// Guarantees: with the default path keys and every preset's keys in
    /// it, the filter rules out the keys that spans carry most (semantic
    /// conventions old and new): each one it lets through costs an
    /// out-of-line read in the span walk.
    #[test]
    fn key_filter_rules_out_the_usual_span_keys() {
        let mut held: Vec<&str> = crate::config::DEFAULT_PATH_ATTRIBUTES.to_vec();
        for (_, rules) in crate::teams::PRESETS {
            held.extend(rules.iter().map(|(k, _)| *k).filter(|k| !k.is_empty()));
        }
        let f = KeyFilter::of(held.iter().map(|k| k.as_bytes()));
        let usual = "\
             db.system db.statement db.name db.operation db.user db.query.text db.namespace \
             db.operation.name db.collection.name db.redis.database_index net.peer.name \
             net.peer.port net.host.name net.host.port net.transport server.address \
             server.port client.address network.peer.address network.peer.port \
             network.protocol.name network.protocol.version network.transport http.method \
             http.request.method http.status_code http.response.status_code http.scheme \
             http.flavor http.host http.client_ip url.scheme url.query thread.id \
             thread.name code.function code.namespace code.filepath code.lineno \
             messaging.system messaging.operation messaging.destination.name \
             messaging.kafka.message.key messaging.message.id rpc.system rpc.method \
             rpc.grpc.status_code peer.service otel.status_code error.type \
             exception.message exception.type component span.kind";
        let through: Vec<&str> =
            usual.split_whitespace().filter(|k| f.may_hold(k.as_bytes())).collect();
        assert!(through.is_empty(), "let through: {through:?}");
    }
}
