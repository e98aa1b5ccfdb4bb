//! The batch walker: decides what to drop and what to mask, then writes the
//! batch out in one pass.
//!
//! Processing a batch takes one walk over the wire bytes, which builds no
//! message struct, then two passes over what it recorded:
//! 1. **Walk**: every known message is validated, numbers are masked as
//!    ordered edits (replacements, and new length prefixes for messages whose
//!    length changed), and each span is recorded with its ids, the noise rule
//!    its path matched, and the range of its edits. Messages without edits
//!    cost nothing beyond reading them; most attributes are checked by one
//!    fixed-shape read ([`plain_attribute`]).
//! 2. **Finish**: once every span is known (a child often comes before its
//!    parent), noisy spans and their descendants are marked, and the edit
//!    list is rewritten in place: a dropped span's edits become one deletion,
//!    emptied ScopeSpans and ResourceSpans go, and their parents' length
//!    prefixes are settled. Masks are counted from the edits that remain.
//! 3. **Emit**: copy the input to the output, applying the edits. Unedited
//!    ranges are copied as they were, so unknown fields, non-canonical
//!    encodings and untouched spans survive byte for byte.

use crate::bytes;
use crate::config::{Config, Replacement};
use crate::error::{ConfigProblem, Error};
use crate::explain::{Finding, redact};
use crate::fnr::{self, Mode};
use crate::glob::GlobList;
use crate::otlp::{
    LIST_VALUES, any_value, event, key_value, link, request, resource, resource_spans, scope,
    scope_spans, span, status,
};
use crate::path;
use crate::split::PartLinks;
use crate::stats::{Counters, FieldKind, Stats};
use crate::wire::{
    Field, Fields, Problem, WireError, WireType, read_varint, varint_len, write_varint,
};

/// How deep arrays and kvlists may nest inside an attribute value. Real
/// instrumentations nest two or three levels; the bound keeps the walker's
/// recursion (and so the guest's stack) small on hostile input.
pub(crate) const MAX_VALUE_DEPTH: usize = 32;

impl Noise {
    /// Whether `key` names a path source. Every span attribute asks, so
    /// only the path keys of `key`'s length are compared (two word compares
    /// each, see `bytes`): most keys have none, and no loop runs at all. In
    /// the guest every loop turn also pays an epoch check.
    #[inline(always)]
    fn is_path_key(&self, key: &[u8]) -> bool {
        let bucket = key_bucket(key);
        let (from, to) = (self.path_keys_from[bucket], self.path_keys_from[bucket + 1]);
        from < to && self.path_keys[from as usize..to as usize].iter().any(|a| bytes::eq(a, key))
    }

    /// Matches the path `p` of a span not yet found noisy against the globs.
    /// A span's sources often hold the same path (`url.full`'s path is
    /// `url.path`, and a server span's name holds it too): a repeat of the
    /// path checked last is skipped, as it matched nothing then.
    #[inline(never)]
    fn check_path<'a>(&self, rec: &mut SpanRec<'a>, p: &'a [u8], scratch: &mut Vec<u8>) {
        if rec.path.is_empty() || !bytes::eq(rec.path, p) {
            rec.path = p;
            rec.rule = self.globs.first_match(p, scratch).map(|i| i as u32);
        }
    }
}

/// A config compiled for the walker: globs built, names turned to bytes.
#[derive(Debug)]
pub(crate) struct Compiled {
    noise: Option<Noise>,
    mask: Option<Mask>,
    rule_names: Vec<String>,
}

/// Path keys of this length or longer share the last length bucket.
const LONG_KEY: usize = 64;

/// The length bucket of a path key.
#[inline(always)]
fn key_bucket(key: &[u8]) -> usize {
    key.len().min(LONG_KEY)
}

#[derive(Debug)]
struct Noise {
    globs: GlobList,
    /// The path attribute keys, ordered by length (the last bucket holds
    /// every key of `LONG_KEY` bytes or more).
    path_keys: Vec<Vec<u8>>,
    /// The keys of length bucket `n` are `path_keys[from[n]..from[n + 1]]`.
    path_keys_from: [u32; LONG_KEY + 2],
    span_name: bool,
    drop_descendants: bool,
}

#[derive(Debug)]
struct Mask {
    mode: Mode,
    /// `Some(c)`: digits become `c`, lengths kept. `None`: the label (held at
    /// the start of each walk's arena) replaces the number.
    star: Option<u8>,
    label: Vec<u8>,
    fields: [bool; FieldKind::ALL.len()],
    keys: Option<GlobList>,
}

impl Compiled {
    pub fn new(cfg: &Config) -> Result<Compiled, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let glob_problems =
            |errs: Vec<crate::glob::GlobError>, key: &str, problems: &mut Vec<ConfigProblem>| {
                for e in errs {
                    problems.push(ConfigProblem {
                        path: format!("{key}[{}]", e.index),
                        reason: format!("bad glob {:?}: {}", e.pattern, e.reason),
                    });
                }
            };
        let noise = if cfg.noise.enabled && !cfg.noise.globs.is_empty() {
            match GlobList::new(&cfg.noise.globs, cfg.noise.case_sensitive) {
                Ok(globs) => {
                    let (path_keys, path_keys_from) = path_keys_by_len(&cfg.noise.path_attributes);
                    Some(Noise {
                        globs,
                        path_keys,
                        path_keys_from,
                        span_name: cfg.noise.span_name,
                        drop_descendants: cfg.noise.drop_descendants,
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
        let mask = if cfg.mask.enabled {
            let keys = match &cfg.mask.keys {
                None => None,
                Some(keys) => match GlobList::new(keys, true) {
                    Ok(k) => Some(k),
                    Err(errs) => {
                        glob_problems(errs, "mask.scope.keys", &mut problems);
                        None
                    }
                },
            };
            let mut fields = [false; FieldKind::ALL.len()];
            for f in &cfg.mask.fields {
                fields[f.index()] = true;
            }
            let (star, label) = match &cfg.mask.replacement {
                Replacement::Stars(c) if c.is_ascii_graphic() && !c.is_ascii_digit() => {
                    (Some(*c as u8), Vec::new())
                }
                Replacement::Stars(c) => {
                    problems.push(ConfigProblem {
                        path: "mask.mask_char".into(),
                        reason: format!(
                            "{c:?} must be one printable ASCII character that is not a digit"
                        ),
                    });
                    (Some(b'*'), Vec::new())
                }
                Replacement::Label(l) => (None, l.as_bytes().to_vec()),
            };
            Some(Mask { mode: cfg.mask.mode, star, label, fields, keys })
        } else {
            None
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Compiled { noise, mask, rule_names: cfg.noise.globs.clone() })
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

/// What happens to one span, by its position in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    /// Noise, matched by the glob with this index.
    Noisy(u32),
    /// A descendant of a noisy span in the same batch.
    Descendant,
    Unknown,
}

impl Fate {
    fn dropped(self) -> bool {
        matches!(self, Fate::Noisy(_) | Fate::Descendant)
    }
}

/// A span as the walk met it: where its bytes and edits are, and what noise
/// detection needs. Drops are decided once every span has been seen (a
/// child often comes before its parent), so the walk records and `finish`
/// settles.
struct SpanRec<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_id: &'a [u8],
    rule: Option<u32>,
    /// The path the rule matched, for findings.
    path: &'a [u8],
    /// The whole `ScopeSpans.spans` field, tag to end.
    start: usize,
    end: usize,
    /// Its length-prefix slot in `edits`; its edits run to `edits_end`.
    slot: usize,
    edits_end: usize,
    /// Change in the field's size from the span's own edits.
    delta: Delta,
    /// Its masked-value findings, when explaining.
    findings: (usize, usize),
}

/// A ResourceSpans or ScopeSpans field: removed when it had spans and all of
/// them were dropped; otherwise its length prefix is settled in `finish`.
struct Container {
    start: usize,
    len_at: usize,
    body: usize,
    end: usize,
    slot: usize,
    edits_end: usize,
    /// Indices of its scopes (ResourceSpans) or spans (ScopeSpans).
    children: (usize, usize),
    /// Change in its payload's size from edits outside its spans (resource,
    /// scope).
    own_delta: Delta,
    findings: (usize, usize),
    /// Set by `finish`: the slot's op, or `None` when removed.
    settled: Option<Op>,
}

/// One change to the input, at `start..end`.
#[derive(Debug, Clone, Copy)]
struct Edit {
    start: usize,
    end: usize,
    op: Op,
    /// For a masked number: what found it, and where. Masks are counted from
    /// the edits that survive `finish`, so a dropped span's masks never count.
    mask: Option<(fnr::Detector, FieldKind)>,
}

impl Edit {
    fn new(start: usize, end: usize, op: Op) -> Edit {
        Edit { start, end, op, mask: None }
    }

    /// How many bytes replace `start..end`.
    fn new_len(&self) -> usize {
        match self.op {
            Op::Keep | Op::Star(_) => self.end - self.start,
            Op::Delete => 0,
            Op::Arena { from, to } => to - from,
            Op::Len(v) => varint_len(v),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A length-prefix slot whose message kept its length.
    Keep,
    /// The range is left out.
    Delete,
    /// Every ASCII digit in the range becomes this byte.
    Star(u8),
    /// The range becomes `arena[from..to]`.
    Arena { from: usize, to: usize },
    /// The range (a length prefix) becomes this varint.
    Len(u64),
}

/// What to do to a batch: its edits, in order, and the bytes they insert.
/// Holds no borrow of the batch, so the batch can then be rewritten in place.
pub(crate) struct Plan {
    edits: Vec<Edit>,
    arena: Vec<u8>,
}

/// Processes one batch into `out`.
/// With `findings`, also records what was done to which span.
pub(crate) fn process(
    c: &Compiled,
    buf: &[u8],
    out: &mut Vec<u8>,
    findings: Option<&mut Vec<Finding>>,
) -> Result<Stats, Error> {
    let (plan, stats) = plan(c, buf, findings)?;
    emit(buf, &plan, out).map_err(into_error)?;
    Ok(stats)
}

/// Processes a batch the caller owns, rewriting it in place. That needs no
/// second buffer, which halves the memory a batch takes inside a component.
/// With `links`, also fills them in, for a batch that is one part of a
/// larger one (see `split`).
pub(crate) fn process_owned(
    c: &Compiled,
    mut buf: Vec<u8>,
    links: Option<&mut PartLinks>,
) -> Result<(Vec<u8>, Stats), Error> {
    let (plan, stats) = plan_with(c, &buf, None, links)?;
    emit_in_place(&mut buf, &plan).map_err(into_error)?;
    Ok((buf, stats))
}

/// Walks the batch and settles what to do to it.
pub(crate) fn plan(
    c: &Compiled,
    buf: &[u8],
    findings: Option<&mut Vec<Finding>>,
) -> Result<(Plan, Stats), Error> {
    plan_with(c, buf, findings, None)
}

/// `plan`, also filling in `links` when asked.
fn plan_with(
    c: &Compiled,
    buf: &[u8],
    findings: Option<&mut Vec<Finding>>,
    links: Option<&mut PartLinks>,
) -> Result<(Plan, Stats), Error> {
    let mut walk = Walk {
        buf,
        c,
        edits: Vec::new(),
        arena: Vec::new(),
        counters: Counters::new(c.rule_names.len()),
        findings,
        ids: (&[], &[]),
        key: &[],
        spans: Vec::new(),
        scopes: Vec::new(),
        resources: Vec::new(),
        scratch: Vec::new(),
    };
    if let Some(mask) = &c.mask {
        walk.arena.extend_from_slice(&mask.label);
    }
    walk.request().map_err(into_error)?;
    let fates = walk.finish().map_err(into_error)?;
    // Only noise whose descendants are dropped reaches past its span.
    if let Some(links) = links
        && c.noise.as_ref().is_some_and(|n| n.drop_descendants)
    {
        let dropped = |i: usize| fates.as_ref().is_some_and(|f| f[i].dropped());
        let spans = walk
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.trace_id, s.span_id, s.parent_id, dropped(i)));
        *links = PartLinks::collect(spans, walk.spans.len()).map_err(into_error)?;
    }
    let Walk { edits, arena, counters, .. } = walk;
    Ok((Plan { edits, arena }, counters.into_stats(&c.rule_names)))
}

fn into_error(e: WireError) -> Error {
    match e.problem {
        Problem::OutOfMemory(what) => Error::OutOfMemory { what: what.to_owned() },
        _ => Error::Malformed(e.into()),
    }
}

/// Makes room for one more item in `v`. What the engine holds grows with the
/// batch (span records, edits); when the memory runs out (inside a
/// component: the host's cap), this is a typed error rather than an
/// allocator abort, which would trap.
#[inline(always)]
fn room<T>(v: &mut Vec<T>, what: &'static str) -> Result<(), WireError> {
    if v.len() < v.capacity() { Ok(()) } else { grow(v, what) }
}

#[cold]
fn grow<T>(v: &mut Vec<T>, what: &'static str) -> Result<(), WireError> {
    v.try_reserve(v.len().max(64)).map_err(|_| WireError::new(0, Problem::OutOfMemory(what)))
}

/// A vector of at most `n` items from `items`, or a typed error if memory
/// runs out.
fn try_collect<T>(
    n: usize,
    items: impl Iterator<Item = T>,
    what: &'static str,
) -> Result<Vec<T>, WireError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| WireError::new(0, Problem::OutOfMemory(what)))?;
    v.extend(items);
    Ok(v)
}

/// Applies `edits` (sorted, non-overlapping) to `buf`.
fn emit(buf: &[u8], plan: &Plan, out: &mut Vec<u8>) -> Result<(), WireError> {
    let (edits, arena) = (&plan.edits, &plan.arena);
    // The exact output size, so the output is allocated once and never
    // regrown: inside a component every regrowth copies, and the peak would
    // hold both copies.
    let size = edits.iter().fold(buf.len(), |n, e| n + e.new_len() - (e.end - e.start));
    out.try_reserve_exact(size)
        .map_err(|_| WireError::new(0, Problem::OutOfMemory("the output batch")))?;
    let before = out.len();
    let mut at = 0;
    for e in edits {
        if let Op::Keep = e.op {
            continue;
        }
        out.extend_from_slice(&buf[at..e.start]);
        match e.op {
            Op::Keep | Op::Delete => {}
            Op::Star(c) => out.extend(
                buf[e.start..e.end].iter().map(|&b| if b.is_ascii_digit() { c } else { b }),
            ),
            Op::Arena { from, to } => out.extend_from_slice(&arena[from..to]),
            Op::Len(n) => write_varint(out, n),
        }
        at = e.end;
    }
    out.extend_from_slice(&buf[at..]);
    debug_assert_eq!(out.len() - before, size, "output size as computed");
    Ok(())
}

/// Applies the plan to `buf` itself. Each byte is written at or before the
/// place it is read from, so nothing unread is overwritten: where an edit
/// grows the output (an int masked as a string, a longer label) further
/// than earlier edits shrank it, the input is first moved up by that much.
/// That move is the only extra memory: a few bytes per grown value.
fn emit_in_place(buf: &mut Vec<u8>, plan: &Plan) -> Result<(), WireError> {
    // How far the output would run ahead of the input at worst.
    let (mut growth, mut ahead) = (0isize, 0isize);
    for e in &plan.edits {
        growth += e.new_len() as isize - (e.end - e.start) as isize;
        ahead = ahead.max(growth);
    }
    let base = ahead as usize;
    if base > 0 {
        let len = buf.len();
        buf.try_reserve_exact(base)
            .map_err(|_| WireError::new(0, Problem::OutOfMemory("the output batch")))?;
        buf.resize(len + base, 0);
        buf.copy_within(0..len, base);
    }
    let mut w = 0;
    let mut at = 0;
    for e in plan.edits.iter().filter(|e| !matches!(e.op, Op::Keep)) {
        buf.copy_within(base + at..base + e.start, w);
        w += e.start - at;
        match e.op {
            Op::Keep | Op::Delete => {}
            Op::Star(c) => {
                for i in base + e.start..base + e.end {
                    let b = buf[i];
                    buf[w] = if b.is_ascii_digit() { c } else { b };
                    w += 1;
                }
            }
            Op::Arena { from, to } => {
                buf[w..w + (to - from)].copy_from_slice(&plan.arena[from..to]);
                w += to - from;
            }
            Op::Len(n) => {
                let mut v = n;
                while v >= 0x80 {
                    buf[w] = (v as u8) | 0x80;
                    v >>= 7;
                    w += 1;
                }
                buf[w] = v as u8;
                w += 1;
            }
        }
        at = e.end;
    }
    let end = buf.len();
    buf.copy_within(base + at..end, w);
    w += end - base - at;
    buf.truncate(w);
    Ok(())
}

#[inline(always)]
fn expect(f: &Field, wire: WireType, what: &'static str) -> Result<(), WireError> {
    if f.wire == wire {
        Ok(())
    } else {
        Err(WireError::new(
            f.start,
            Problem::Expected { what, number: f.number, expected: wire, found: f.wire },
        ))
    }
}

/// Whether the KeyValue `body` has the usual shape (a key, then a value
/// holding one string, int or bool, every length under 128) and provably
/// holds no number: no run of six digits in its key or string, an int
/// outside the 10 to 11 digit range. The general walk would then record
/// nothing, so skipping it changes nothing. Fast because it reads the bytes
/// once with fixed tags instead of walking two nested messages field by
/// field; most attributes take it. Pinned to the general walk by the
/// `plain_attributes_need_no_edits` property test.
#[inline(always)]
fn plain_attribute(body: &[u8]) -> bool {
    let [0x0a, key_len, rest @ ..] = body else { return false };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || rest.len() < key_len {
        return false;
    }
    let [0x12, value_len, value @ ..] = &rest[key_len..] else { return false };
    // One scan of the whole body covers key and value: a run of six digits
    // in either is one in the body. (A length byte that reads as a digit can
    // only make this stricter.)
    if *value_len >= 0x80 || usize::from(*value_len) != value.len() || fnr::may_contain(body) {
        return false;
    }
    match value {
        [0x0a, len, text @ ..] => *len < 0x80 && usize::from(*len) == text.len(),
        [0x18, int @ ..] => {
            matches!(read_varint(int, 0, int.len()), Ok((v, used)) if used == int.len() && !int_may_be_number(v as i64))
        }
        [0x10, b] => *b < 0x80,
        _ => false,
    }
}

/// The string value of a span attribute whose key is a path source.
fn path_attribute<'a>(
    noise: &Noise,
    buf: &'a [u8],
    kv_body: usize,
    kv_end: usize,
) -> Result<Option<&'a [u8]>, WireError> {
    // Fast path: encoders write the key first (tag 0x0a, one-byte length),
    // so most attributes are ruled out by a peek and one length compare,
    // without walking the KeyValue. The walk validates it in full anyway.
    let body = &buf[kv_body..kv_end];
    if let [0x0a, len, rest @ ..] = body
        && *len < 0x80
        && let Some(key) = rest.get(..usize::from(*len))
    {
        if !noise.is_path_key(key) {
            return Ok(None);
        }
        // The usual shape after the key, read with fixed tags: the value,
        // holding only the string, both lengths one byte, where
        // `path_attribute_walk` reads two nested messages field by field.
        // Pinned to it by the `path_values_read_fast_match_the_field_walk`
        // property test.
        if let [0x12, value_len, 0x0a, len, string @ ..] = &rest[key.len()..]
            && usize::from(*len) == string.len()
            && usize::from(*value_len) == string.len() + 2
            && *value_len < 0x80
        {
            return Ok(Some(string));
        }
    }
    path_attribute_walk(noise, buf, kv_body, kv_end)
}

/// [`path_attribute`] by walking the KeyValue and its value field by field.
fn path_attribute_walk<'a>(
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

/// Marks every span whose parent chain, within its trace and this batch,
/// reaches a noisy span, by walking down from the noisy spans: children are
/// found by binary search over spans sorted by (trace id, parent id). Going
/// down rather than up handles spans that share an id (every span with a
/// noisy span's id as its parent is its child) and parent cycles (a span is
/// marked once). Each (trace id, parent id) group of children is walked
/// once, however many dropped spans share that id, so the work is
/// O(n log n) whatever the ids: 40,000 spans that all share one id, their
/// own parent, once took quadratic time. No hashing, so crafted ids cannot
/// slow it. Returns the children visited (at most one visit per span), for
/// the tests that bound the work.
fn mark_descendants(metas: &[SpanRec<'_>], fates: &mut [Fate]) -> Result<usize, WireError> {
    // Only traces holding a noisy span can hold descendants, so only their
    // spans are sorted: a small share of the batch. Trace ids of the usual
    // 16 bytes are compared as integers; others as bytes.
    let mut noisy16: Vec<u128> = Vec::new();
    let mut noisy_other: Vec<&[u8]> = Vec::new();
    // Bit `trace_bit(t)` is set for every noisy trace `t`. Most spans are
    // in no noisy trace, and one bit test then says so without a binary
    // search. Crafted ids can only make it answer "maybe".
    let mut maybe_noisy = [0u64; TRACE_BITS / 64];
    for (m, f) in metas.iter().zip(fates.iter()) {
        if f.dropped() {
            let bit = trace_bit(m.trace_id);
            maybe_noisy[bit / 64] |= 1 << (bit % 64);
            match id16(m.trace_id) {
                Some(t) => noisy16.push(t),
                None => noisy_other.push(m.trace_id),
            }
        }
    }
    noisy16.sort_unstable();
    noisy_other.sort_unstable();
    let in_noisy_trace = |t: &[u8]| {
        let bit = trace_bit(t);
        maybe_noisy[bit / 64] & (1 << (bit % 64)) != 0
            && match id16(t) {
                Some(t) => noisy16.binary_search(&t).is_ok(),
                None => noisy_other.binary_search(&t).is_ok(),
            }
    };
    let mut by_parent = try_collect(
        metas.len(),
        (0..metas.len() as u32).filter(|&i| {
            let m = &metas[i as usize];
            !m.parent_id.is_empty() && in_noisy_trace(m.trace_id)
        }),
        "span records",
    )?;
    // (trace id, parent id) of span `i` against `(trace, id)`; `bytes::cmp`
    // compares ids of the usual sizes as integers.
    let order = |i: u32, trace: &[u8], id: &[u8]| {
        let m = &metas[i as usize];
        bytes::cmp(m.trace_id, trace).then_with(|| bytes::cmp(m.parent_id, id))
    };
    by_parent.sort_unstable_by(|&a, &b| {
        order(a, metas[b as usize].trace_id, metas[b as usize].parent_id)
    });
    // `walked[k]`: the group of children starting at `by_parent[k]` has
    // been walked. Spans that share an id share the group: walking it again
    // could mark nothing new.
    let mut walked =
        try_collect(by_parent.len(), std::iter::repeat_n(false, by_parent.len()), "span records")?;
    let mut visited = 0;
    let mut queue =
        try_collect(metas.len(), (0..metas.len()).filter(|&i| fates[i].dropped()), "span records")?;
    while let Some(i) = queue.pop() {
        let (trace, id) = (metas[i].trace_id, metas[i].span_id);
        if id.is_empty() {
            // An empty parent id means "root", never "child of this span".
            continue;
        }
        let first = by_parent.partition_point(|&j| order(j, trace, id).is_lt());
        // An empty group's `first` is another key's: leave its flag alone.
        let Some(&head) = by_parent.get(first) else { continue };
        if walked[first] || !order(head, trace, id).is_eq() {
            continue;
        }
        walked[first] = true;
        for &j in by_parent[first..].iter().take_while(|&&j| order(j, trace, id).is_eq()) {
            visited += 1;
            let j = j as usize;
            if fates[j] == Fate::Unknown {
                fates[j] = Fate::Descendant;
                room(&mut queue, "span records")?;
                queue.push(j);
            }
        }
    }
    Ok(visited)
}

/// Bits in `mark_descendants`' filter of noisy traces.
const TRACE_BITS: usize = 4096;

/// A trace id's bit in that filter: from its last two bytes, which are as
/// random as any in a real id.
#[inline]
fn trace_bit(id: &[u8]) -> usize {
    let tail = match id {
        [.., a, b] => u16::from_le_bytes([*a, *b]),
        [a] => u16::from(*a),
        [] => 0,
    };
    usize::from(tail) % TRACE_BITS
}

/// A 16-byte id as an integer, for cheap compares.
#[inline]
fn id16(id: &[u8]) -> Option<u128> {
    id.try_into().ok().map(u128::from_be_bytes)
}

/// Validates the batch and records the edits.
struct Walk<'a, 'c, 'f> {
    buf: &'a [u8],
    c: &'c Compiled,
    /// Set when explaining; then `ids` and `key` say where the walk is.
    findings: Option<&'f mut Vec<Finding>>,
    /// (trace id, span id) of the span being walked; empty outside spans.
    ids: (&'a [u8], &'a [u8]),
    /// The top-level attribute key being walked.
    key: &'a [u8],
    edits: Vec<Edit>,
    arena: Vec<u8>,
    counters: Counters,
    spans: Vec<SpanRec<'a>>,
    scopes: Vec<Container>,
    resources: Vec<Container>,
    /// Reused by glob matching to lowercase a path.
    scratch: Vec<u8>,
}

/// Change in a message's encoded size caused by the edits inside it.
type Delta = isize;

impl<'a> Walk<'a, '_, '_> {
    /// Walks the length-delimited field `f` with `inner`, then records a new
    /// length prefix if its payload changed size. Returns the change in the
    /// whole field's size.
    ///
    /// Takes the field's offsets rather than `&Field`: where this is not
    /// inlined, a reference would make the caller store every field it
    /// reads to the guest's shadow stack (in linear memory) first.
    #[inline]
    fn nested(
        &mut self,
        len_at: usize,
        body: usize,
        end: usize,
        inner: impl FnOnce(&mut Self, usize, usize) -> Result<Delta, WireError>,
    ) -> Result<Delta, WireError> {
        let first = self.edits.len();
        let delta = inner(self, body, end)?;
        if delta == 0 {
            // Same length (the common case: nothing masked, or masked in
            // place): the prefix stays as it was, and no slot was paid for.
            return Ok(0);
        }
        let new_len = ((end - body) as isize + delta) as u64;
        // Before the edits just recorded inside, so edits stay in order; only
        // this message's own edits move.
        room(&mut self.edits, "edits")?;
        self.edits.insert(first, Edit::new(len_at, body, Op::Len(new_len)));
        Ok(delta + varint_len(new_len) as isize - (body - len_at) as isize)
    }

    /// A top-level attribute: the KeyValue field `f`.
    #[inline(always)]
    fn attribute(&mut self, f: &Field, kind: FieldKind, scan: bool) -> Result<Delta, WireError> {
        if self.findings.is_none() && plain_attribute(f.bytes(self.buf)) {
            return Ok(0);
        }
        self.nested(f.len_at, f.body, f.end, |w, s, e| w.key_value(s, e, kind, scan, 0))
    }

    /// Pushes a placeholder for the length prefix of `f`, settled later.
    fn slot(&mut self, f: &Field) -> Result<usize, WireError> {
        room(&mut self.edits, "edits")?;
        self.edits.push(Edit::new(f.len_at, f.body, Op::Keep));
        Ok(self.edits.len() - 1)
    }

    fn findings_len(&self) -> usize {
        self.findings.as_ref().map_or(0, |f| f.len())
    }

    /// A container field walked by `inner`, as a record for `finish`.
    fn container(
        &mut self,
        f: &Field,
        children: fn(&Self) -> usize,
        inner: impl FnOnce(&mut Self, usize, usize) -> Result<Delta, WireError>,
    ) -> Result<Container, WireError> {
        let slot = self.slot(f)?;
        let (first_child, first_finding) = (children(self), self.findings_len());
        let own_delta = inner(self, f.body, f.end)?;
        Ok(Container {
            start: f.start,
            len_at: f.len_at,
            body: f.body,
            end: f.end,
            slot,
            edits_end: self.edits.len(),
            children: (first_child, children(self)),
            own_delta,
            findings: (first_finding, self.findings_len()),
            settled: None,
        })
    }

    fn request(&mut self) -> Result<(), WireError> {
        let mut fields = Fields::new(self.buf, 0, self.buf.len());
        while let Some(f) = fields.next_field()? {
            if f.number == request::RESOURCE_SPANS {
                expect(&f, WireType::Len, "ExportTraceServiceRequest.resource_spans")?;
                let rec = self.container(&f, |w| w.scopes.len(), Walk::resource_spans)?;
                room(&mut self.resources, "span records")?;
                self.resources.push(rec);
            }
        }
        Ok(())
    }

    /// Returns the size change of the resource; scope spans are recorded.
    fn resource_spans(&mut self, start: usize, end: usize) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                resource_spans::RESOURCE => {
                    expect(&f, WireType::Len, "ResourceSpans.resource")?;
                    self.ids = (&[], &[]);
                    delta += self.nested(f.len_at, f.body, f.end, |w, s, e| {
                        w.attributes_in(
                            s,
                            e,
                            resource::ATTRIBUTES,
                            FieldKind::ResourceAttribute,
                            "Resource.attributes",
                        )
                    })?;
                }
                resource_spans::SCOPE_SPANS | resource_spans::LEGACY_LIBRARY_SPANS => {
                    expect(&f, WireType::Len, "ResourceSpans.scope_spans")?;
                    let rec = self.container(&f, |w| w.spans.len(), Walk::scope_spans)?;
                    room(&mut self.scopes, "span records")?;
                    self.scopes.push(rec);
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    /// Returns the size change of the scope; spans are recorded. Out of
    /// line in the guest, where inlined it made the span walk's loop spill
    /// more.
    #[cfg_attr(target_arch = "wasm32", inline(never))]
    fn scope_spans(&mut self, start: usize, end: usize) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                scope_spans::SCOPE => {
                    expect(&f, WireType::Len, "ScopeSpans.scope")?;
                    self.ids = (&[], &[]);
                    delta += self.nested(f.len_at, f.body, f.end, |w, s, e| w.scope(s, e))?;
                }
                scope_spans::SPANS => {
                    expect(&f, WireType::Len, "ScopeSpans.spans")?;
                    self.span_field(&f)?;
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    /// Walks one span (masking it as if it were kept: whether it is dropped
    /// is known only in `finish`) and records it.
    fn span_field(&mut self, f: &Field) -> Result<(), WireError> {
        self.counters.spans_in += 1;
        let slot = self.slot(f)?;
        let first_finding = self.findings_len();
        let mut rec = SpanRec {
            trace_id: &[],
            span_id: &[],
            parent_id: &[],
            rule: None,
            path: &[],
            start: f.start,
            end: f.end,
            slot,
            edits_end: 0,
            delta: 0,
            findings: (0, 0),
        };
        let payload = self.span(f.body, f.end, &mut rec)?;
        if payload != 0 {
            let new_len = ((f.end - f.body) as isize + payload) as u64;
            self.edits[slot].op = Op::Len(new_len);
            rec.delta = payload + varint_len(new_len) as isize - (f.body - f.len_at) as isize;
        }
        rec.edits_end = self.edits.len();
        rec.findings = (first_finding, self.findings_len());
        room(&mut self.spans, "span records")?;
        self.spans.push(rec);
        Ok(())
    }

    fn scope(&mut self, start: usize, end: usize) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                scope::NAME | scope::VERSION => {
                    expect(&f, WireType::Len, "InstrumentationScope.name")?;
                    delta += self.text(&f, FieldKind::ScopeInfo, true)?;
                }
                scope::ATTRIBUTES => {
                    expect(&f, WireType::Len, "InstrumentationScope.attributes")?;
                    delta += self.attribute(&f, FieldKind::ScopeAttribute, true)?;
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    /// The repeated KeyValue field `number` of the message at `start..end`.
    fn attributes_in(
        &mut self,
        start: usize,
        end: usize,
        number: u32,
        kind: FieldKind,
        what: &'static str,
    ) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            if f.number == number {
                expect(&f, WireType::Len, what)?;
                delta += self.attribute(&f, kind, true)?;
            }
        }
        Ok(delta)
    }

    /// Walks a span's fields, filling in what noise detection needs.
    fn span(
        &mut self,
        start: usize,
        end: usize,
        rec: &mut SpanRec<'a>,
    ) -> Result<Delta, WireError> {
        if self.findings.is_some() {
            self.ids = (
                self.last_len_field(start, end, span::TRACE_ID)?,
                self.last_len_field(start, end, span::SPAN_ID)?,
            );
        }
        let noise = self.c.noise.as_ref();
        let mut name: Option<&'a [u8]> = None;
        let mut kind = 0;
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                span::TRACE_ID => {
                    expect(&f, WireType::Len, "Span.trace_id")?;
                    rec.trace_id = f.bytes(self.buf);
                }
                span::SPAN_ID => {
                    expect(&f, WireType::Len, "Span.span_id")?;
                    rec.span_id = f.bytes(self.buf);
                }
                span::PARENT_SPAN_ID => {
                    expect(&f, WireType::Len, "Span.parent_span_id")?;
                    rec.parent_id = f.bytes(self.buf);
                }
                span::KIND => {
                    expect(&f, WireType::Varint, "Span.kind")?;
                    kind = f.varint;
                }
                span::NAME => {
                    expect(&f, WireType::Len, "Span.name")?;
                    name = Some(f.bytes(self.buf));
                    delta += self.text(&f, FieldKind::SpanName, true)?;
                }
                span::TRACE_STATE => {
                    expect(&f, WireType::Len, "Span.trace_state")?;
                    delta += self.text(&f, FieldKind::TraceState, true)?;
                }
                span::ATTRIBUTES => {
                    expect(&f, WireType::Len, "Span.attributes")?;
                    if let Some(noise) = noise
                        && rec.rule.is_none()
                        && let Some(value) = path_attribute(noise, self.buf, f.body, f.end)?
                    {
                        noise.check_path(rec, path::from_attribute(value), &mut self.scratch);
                    }
                    delta += self.attribute(&f, FieldKind::SpanAttribute, true)?;
                }
                span::EVENTS => {
                    expect(&f, WireType::Len, "Span.events")?;
                    delta += self.nested(f.len_at, f.body, f.end, |w, s, e| w.event(s, e, true))?;
                }
                span::LINKS => {
                    expect(&f, WireType::Len, "Span.links")?;
                    delta += self.nested(f.len_at, f.body, f.end, |w, s, e| w.link(s, e, true))?;
                }
                span::STATUS => {
                    expect(&f, WireType::Len, "Span.status")?;
                    delta +=
                        self.nested(f.len_at, f.body, f.end, |w, s, e| w.status(s, e, true))?;
                }
                _ => {}
            }
        }
        if let Some(noise) = noise
            && rec.rule.is_none()
            && noise.span_name
            && kind == span::KIND_SERVER
            && let Some(p) = name.and_then(path::from_span_name)
        {
            noise.check_path(rec, p, &mut self.scratch);
        }
        Ok(delta)
    }

    /// Which spans are dropped, by position; `None` when none is.
    fn fates(&mut self) -> Result<Option<Vec<Fate>>, WireError> {
        let Some(noise) = self.c.noise.as_ref() else { return Ok(None) };
        if self.spans.iter().all(|s| s.rule.is_none()) {
            return Ok(None);
        }
        let mut fates = try_collect(
            self.spans.len(),
            self.spans.iter().map(|s| s.rule.map_or(Fate::Unknown, Fate::Noisy)),
            "span records",
        )?;
        if noise.drop_descendants {
            mark_descendants(&self.spans, &mut fates)?;
        }
        for f in &mut fates {
            match *f {
                Fate::Noisy(rule) => self.counters.noisy_by_rule[rule as usize] += 1,
                Fate::Descendant => self.counters.dropped_descendants += 1,
                _ => *f = Fate::Keep,
            }
        }
        Ok(Some(fates))
    }

    /// Settles what the walk left open, once every span is known: drops
    /// spans and emptied containers, fixes container length prefixes, then
    /// counts the masks that remain and (when explaining) orders findings.
    ///
    /// The edits are rewritten in place: each dropped span or removed
    /// container becomes one Delete over its slot, which it always has, so
    /// the list only shrinks.
    /// Returns which spans were dropped, by position (`None`: none was).
    fn finish(&mut self) -> Result<Option<Vec<Fate>>, WireError> {
        let fates = self.fates()?;
        let dropped = |i: usize| fates.as_ref().is_some_and(|f| f[i].dropped());
        let (spans, scopes, resources, edits) =
            (&self.spans, &mut self.scopes, &mut self.resources, &mut self.edits);
        for rs in resources.iter_mut() {
            let (mut payload, mut total, mut kept) = (rs.own_delta, 0, 0);
            for ss in &mut scopes[rs.children.0..rs.children.1] {
                let (mut ss_payload, mut ss_kept) = (ss.own_delta, 0);
                for (i, sp) in spans.iter().enumerate().take(ss.children.1).skip(ss.children.0) {
                    if dropped(i) {
                        ss_payload -= (sp.end - sp.start) as isize;
                    } else {
                        ss_kept += 1;
                        ss_payload += sp.delta;
                    }
                }
                let ss_total = ss.children.1 - ss.children.0;
                (total, kept) = (total + ss_total, kept + ss_kept);
                if ss_total > 0 && ss_kept == 0 {
                    payload -= (ss.end - ss.start) as isize;
                } else {
                    let (op, d) = settle(ss, ss_payload);
                    ss.settled = Some(op);
                    payload += d;
                }
            }
            if !(total > 0 && kept == 0) {
                rs.settled = Some(settle(rs, payload).0);
            }
        }

        let (mut w, mut r) = (0, 0);
        let (mut next_ss, mut next_span) = (0, 0);
        // Writes at `w` <= `r`: each replacement stands for at least its slot.
        fn put(edits: &mut [Edit], w: &mut usize, e: Edit) {
            edits[*w] = e;
            *w += 1;
        }
        fn copy(edits: &mut [Edit], w: &mut usize, r: usize) {
            edits[*w] = edits[r];
            *w += 1;
        }
        for rs in resources.iter() {
            while r < rs.slot {
                copy(edits, &mut w, r);
                r += 1;
            }
            let Some(op) = rs.settled else {
                put(edits, &mut w, Edit::new(rs.start, rs.end, Op::Delete));
                r = rs.edits_end;
                next_ss = rs.children.1;
                next_span = if rs.children.1 > rs.children.0 {
                    scopes[rs.children.1 - 1].children.1
                } else {
                    next_span
                };
                continue;
            };
            put(edits, &mut w, Edit::new(rs.len_at, rs.body, op));
            r += 1;
            while r < rs.edits_end {
                if next_ss < scopes.len() && scopes[next_ss].slot == r {
                    let ss = &scopes[next_ss];
                    next_ss += 1;
                    match ss.settled {
                        Some(op) => {
                            put(edits, &mut w, Edit::new(ss.len_at, ss.body, op));
                            r += 1;
                        }
                        None => {
                            put(edits, &mut w, Edit::new(ss.start, ss.end, Op::Delete));
                            r = ss.edits_end;
                            next_span = ss.children.1;
                        }
                    }
                    continue;
                }
                if next_span < spans.len() && spans[next_span].slot == r {
                    let sp = &spans[next_span];
                    if dropped(next_span) {
                        put(edits, &mut w, Edit::new(sp.start, sp.end, Op::Delete));
                        r = sp.edits_end;
                        next_span += 1;
                        continue;
                    }
                    next_span += 1;
                }
                copy(edits, &mut w, r);
                r += 1;
            }
        }
        while r < edits.len() {
            copy(edits, &mut w, r);
            r += 1;
        }
        edits.truncate(w);

        for e in edits.iter() {
            if let Some((detector, kind)) = e.mask {
                self.counters.masked(detector, kind);
            }
        }
        if self.findings.is_some() {
            self.settle_findings(fates.as_deref())?;
        }
        Ok(fates)
    }

    /// Findings of spans that were dropped: one `Dropped` each, first, in
    /// batch order; then the masks that were output.
    fn settle_findings(&mut self, fates: Option<&[Fate]>) -> Result<(), WireError> {
        let Some(findings) = self.findings.as_deref_mut() else { return Ok(()) };
        let mut gone =
            try_collect(findings.len(), std::iter::repeat_n(false, findings.len()), "findings")?;
        let mut mark = |(a, b): (usize, usize)| gone[a..b].fill(true);
        let mut dropped = Vec::new();
        for (i, sp) in self.spans.iter().enumerate() {
            let fate = fates.map_or(Fate::Keep, |f| f[i]);
            if fate.dropped() {
                mark(sp.findings);
                let rule = match fate {
                    Fate::Noisy(r) => Some(self.c.rule_names[r as usize].clone()),
                    _ => None,
                };
                dropped.push(Finding::Dropped {
                    trace_id: sp.trace_id.to_vec(),
                    span_id: sp.span_id.to_vec(),
                    rule,
                    path: redact(sp.path),
                });
            }
        }
        for c in self.scopes.iter().chain(&self.resources).filter(|c| c.settled.is_none()) {
            mark(c.findings);
        }
        let masked =
            std::mem::take(findings).into_iter().zip(gone).filter(|(_, g)| !g).map(|(f, _)| f);
        *findings = dropped.into_iter().chain(masked).collect();
        Ok(())
    }

    fn event(&mut self, start: usize, end: usize, scan: bool) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                event::NAME => {
                    expect(&f, WireType::Len, "Span.Event.name")?;
                    delta += self.text(&f, FieldKind::EventName, scan)?;
                }
                event::ATTRIBUTES => {
                    expect(&f, WireType::Len, "Span.Event.attributes")?;
                    delta += self.attribute(&f, FieldKind::EventAttribute, scan)?;
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    fn link(&mut self, start: usize, end: usize, scan: bool) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                link::TRACE_STATE => {
                    expect(&f, WireType::Len, "Span.Link.trace_state")?;
                    delta += self.text(&f, FieldKind::TraceState, scan)?;
                }
                link::ATTRIBUTES => {
                    expect(&f, WireType::Len, "Span.Link.attributes")?;
                    delta += self.attribute(&f, FieldKind::LinkAttribute, scan)?;
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    fn status(&mut self, start: usize, end: usize, scan: bool) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            if f.number == status::MESSAGE {
                expect(&f, WireType::Len, "Status.message")?;
                delta += self.text(&f, FieldKind::StatusMessage, scan)?;
            }
        }
        Ok(delta)
    }

    /// A KeyValue. `scan` says whether values may be masked at all; the key
    /// scope (`mask.scope.keys`) applies to top-level keys only (`depth` 0),
    /// and nested values inherit their top-level key's verdict.
    fn key_value(
        &mut self,
        start: usize,
        end: usize,
        kind: FieldKind,
        scan: bool,
        depth: usize,
    ) -> Result<Delta, WireError> {
        if depth == 0 && self.findings.is_some() {
            self.key = self.last_len_field(start, end, key_value::KEY)?;
        }
        let mut scan_values = scan && self.scans(kind);
        if scan_values
            && depth == 0
            && let Some(keys) = self.c.mask.as_ref().and_then(|m| m.keys.as_ref())
        {
            scan_values = self.key_matches(keys, start, end)?;
        }
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                key_value::KEY => {
                    expect(&f, WireType::Len, "KeyValue.key")?;
                    delta += self.text(&f, FieldKind::AttributeKey, scan)?;
                }
                key_value::VALUE => {
                    expect(&f, WireType::Len, "KeyValue.value")?;
                    delta += self.nested(f.len_at, f.body, f.end, |w, s, e| {
                        w.any_value(s, e, kind, scan_values, depth)
                    })?;
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    /// Whether the KeyValue at `start..end` has a key in the key scope.
    fn key_matches(&self, keys: &GlobList, start: usize, end: usize) -> Result<bool, WireError> {
        let key = self.last_len_field(start, end, key_value::KEY)?;
        Ok(keys.is_match(key, &mut Vec::new()))
    }

    /// The payload of the last occurrence of field `number` in the message
    /// at `start..end` (the one protobuf readers keep), or empty.
    fn last_len_field(&self, start: usize, end: usize, number: u32) -> Result<&'a [u8], WireError> {
        let mut found: &'a [u8] = &[];
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            if f.number == number && f.wire == WireType::Len {
                found = f.bytes(self.buf);
            }
        }
        Ok(found)
    }

    /// Records a masked value when explaining.
    fn record(&mut self, kind: FieldKind, detector: fnr::Detector) {
        if let Some(findings) = self.findings.as_deref_mut() {
            let key = match kind {
                FieldKind::SpanAttribute
                | FieldKind::EventAttribute
                | FieldKind::LinkAttribute
                | FieldKind::ResourceAttribute
                | FieldKind::ScopeAttribute
                | FieldKind::AttributeKey => redact(self.key),
                _ => String::new(),
            };
            findings.push(Finding::Masked {
                trace_id: self.ids.0.to_vec(),
                span_id: self.ids.1.to_vec(),
                field: kind,
                key,
                detector,
            });
        }
    }

    fn any_value(
        &mut self,
        start: usize,
        end: usize,
        kind: FieldKind,
        scan: bool,
        depth: usize,
    ) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                any_value::STRING | any_value::BYTES => {
                    expect(&f, WireType::Len, "AnyValue string or bytes")?;
                    if scan {
                        delta += self.text(&f, kind, true)?;
                    }
                }
                any_value::BOOL => expect(&f, WireType::Varint, "AnyValue.bool_value")?,
                any_value::INT => {
                    expect(&f, WireType::Varint, "AnyValue.int_value")?;
                    if scan {
                        delta += self.number(&f, f.varint as i64, kind)?;
                    }
                }
                any_value::DOUBLE => {
                    expect(&f, WireType::Fixed64, "AnyValue.double_value")?;
                    if scan {
                        let bytes: [u8; 8] = self.buf[f.body..f.end].try_into().unwrap_or_default();
                        let v = f64::from_le_bytes(bytes);
                        // Only whole numbers can spell an 11-digit run; the
                        // range check also keeps the cast exact.
                        if v.fract() == 0.0 && v.abs() >= 1e9 && v.abs() < 1e11 {
                            delta += self.number(&f, v as i64, kind)?;
                        }
                    }
                }
                any_value::ARRAY | any_value::KVLIST => {
                    expect(&f, WireType::Len, "AnyValue array or kvlist")?;
                    if depth + 1 > MAX_VALUE_DEPTH {
                        return Err(WireError::new(f.start, Problem::TooDeep(MAX_VALUE_DEPTH)));
                    }
                    let is_array = f.number == any_value::ARRAY;
                    delta += self.nested(f.len_at, f.body, f.end, |w, s, e| {
                        w.list(s, e, kind, scan, depth + 1, is_array)
                    })?;
                }
                _ => {}
            }
        }
        Ok(delta)
    }

    /// ArrayValue (`values` are AnyValues) or KeyValueList (`values` are KeyValues).
    fn list(
        &mut self,
        start: usize,
        end: usize,
        kind: FieldKind,
        scan: bool,
        depth: usize,
        is_array: bool,
    ) -> Result<Delta, WireError> {
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            if f.number == LIST_VALUES {
                expect(
                    &f,
                    WireType::Len,
                    if is_array { "ArrayValue.values" } else { "KeyValueList.values" },
                )?;
                delta += if is_array {
                    self.nested(f.len_at, f.body, f.end, |w, s, e| {
                        w.any_value(s, e, kind, scan, depth)
                    })?
                } else {
                    self.nested(f.len_at, f.body, f.end, |w, s, e| {
                        w.key_value(s, e, kind, scan, depth)
                    })?
                };
            }
        }
        Ok(delta)
    }

    fn scans(&self, kind: FieldKind) -> bool {
        self.c.mask.as_ref().is_some_and(|m| m.fields[kind.index()])
    }

    /// Masks the numbers in the payload of the string or bytes field `f`.
    #[inline(always)]
    fn text(&mut self, f: &Field, kind: FieldKind, scan: bool) -> Result<Delta, WireError> {
        // The check is inline and the masking is not: most text holds no
        // number, and the caller's field then never leaves registers for a
        // call (in the wasm guest, a struct passed to a call is stored to
        // the shadow stack in linear memory first).
        if !scan || !self.scans(kind) || !fnr::may_contain(&self.buf[f.body..f.end]) {
            return Ok(0);
        }
        self.mask_text(f.len_at, f.body, f.end, kind)
    }

    /// [`Walk::text`] for a payload at `body..end` that may hold a number.
    #[inline(never)]
    fn mask_text(
        &mut self,
        len_at: usize,
        body: usize,
        end: usize,
        kind: FieldKind,
    ) -> Result<Delta, WireError> {
        let Some(mask) = self.c.mask.as_ref() else { return Ok(0) };
        let text = &self.buf[body..end];
        let first = self.edits.len();
        let (edits, base) = (&mut self.edits, body);
        let mut delta = 0;
        let mut out_of_memory = false;
        fnr::scan(text, mask.mode, |found| {
            if room(edits, "edits").is_err() {
                out_of_memory = true;
                return;
            }
            let (start, end) = (base + found.start, base + found.end);
            let masked = Some((found.detector, kind));
            let op = match mask.star {
                // A percent-encoded separator (`%20`, `%2D`, `%C2%A0`) holds
                // digits that are not the number's: star the 6 and the 5
                // digits apart, so the URL stays valid and keeps its
                // separator. The second edit counts nothing.
                Some(c)
                    if found.end - found.start > 11
                        && text[found.start + 6..found.end - 5].iter().any(u8::is_ascii_digit) =>
                {
                    edits.push(Edit { start, end: start + 6, op: Op::Star(c), mask: masked });
                    if room(edits, "edits").is_err() {
                        out_of_memory = true;
                        return;
                    }
                    edits.push(Edit { start: end - 5, end, op: Op::Star(c), mask: None });
                    return;
                }
                Some(c) => Op::Star(c),
                None => {
                    delta += mask.label.len() as isize - (end - start) as isize;
                    Op::Arena { from: 0, to: mask.label.len() }
                }
            };
            edits.push(Edit { start, end, op, mask: masked });
        });
        if out_of_memory {
            return Err(WireError::new(body, Problem::OutOfMemory("edits")));
        }
        if self.findings.is_some() {
            // Audits only: a second scan keeps the hot closure above small.
            let mut detectors = Vec::new();
            fnr::scan(text, mask.mode, |found| detectors.push(found.detector));
            for d in detectors {
                self.record(kind, d);
            }
        }
        if delta != 0 {
            // The text changed length: its own prefix must change too.
            let new_len = (end - body) as isize + delta;
            // It goes before the replacements just recorded: edits stay in order.
            room(&mut self.edits, "edits")?;
            self.edits.insert(first, Edit::new(len_at, body, Op::Len(new_len as u64)));
            delta += varint_len(new_len as u64) as isize - (body - len_at) as isize;
        }
        Ok(delta)
    }

    /// Masks an int (or whole double) value whose decimal form holds a
    /// personal number; the field becomes a string field with the masked text.
    fn number(&mut self, f: &Field, v: i64, kind: FieldKind) -> Result<Delta, WireError> {
        let Some(mask) = self.c.mask.as_ref() else { return Ok(0) };
        let Some((digits, padded)) = int_digits(v) else { return Ok(0) };
        // A padded 10-digit int only counts when it validates, even in
        // `any11`: most 10-digit ints are epoch seconds.
        let mode = if padded { Mode::Validated } else { mask.mode };
        let mut found_any = None;
        fnr::scan(&digits, mode, |found| found_any = Some(found));
        let Some(found) = found_any else { return Ok(0) };
        self.record(kind, found.detector);
        let sign: &[u8] = if v < 0 { b"-" } else { b"" };
        let masked: Vec<u8> = match mask.star {
            Some(c) => [sign, &[c; 11]].concat(),
            None => [sign, &mask.label].concat(),
        };
        let from = self.arena.len();
        // A tag, a length varint (at most 10 bytes) and the text.
        self.arena
            .try_reserve(masked.len() + 11)
            .map_err(|_| WireError::new(f.start, Problem::OutOfMemory("masked values")))?;
        room(&mut self.edits, "edits")?;
        self.arena.push(((any_value::STRING << 3) | 2) as u8);
        write_varint(&mut self.arena, masked.len() as u64);
        self.arena.extend_from_slice(&masked);
        let to = self.arena.len();
        self.edits.push(Edit {
            start: f.start,
            end: f.end,
            op: Op::Arena { from, to },
            mask: Some((found.detector, kind)),
        });
        Ok((to - from) as isize - (f.end - f.start) as isize)
    }
}

/// Whether `v` has 10 or 11 decimal digits: [`int_digits`] has some.
/// Inline, for the plain-attribute check.
#[inline(always)]
fn int_may_be_number(v: i64) -> bool {
    (1_000_000_000..100_000_000_000).contains(&v.unsigned_abs())
}

/// The 11 decimal digits of an int that could be a personal number, and
/// whether they were zero-padded: a 10-digit value is a number whose leading
/// zero the integer type dropped (everyone born on the 1st to the 9th).
fn int_digits(v: i64) -> Option<([u8; 11], bool)> {
    if !int_may_be_number(v) {
        return None;
    }
    let mut abs = v.unsigned_abs();
    let padded = abs < 10_000_000_000;
    let mut digits = [b'0'; 11];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (abs % 10) as u8;
        abs /= 10;
    }
    Some((digits, padded))
}

/// The slot op and the change in the whole field's size for a container
/// whose payload changed by `payload`.
fn settle(c: &Container, payload: Delta) -> (Op, Delta) {
    if payload == 0 {
        return (Op::Keep, 0);
    }
    let new_len = ((c.end - c.body) as isize + payload) as u64;
    (Op::Len(new_len), payload + varint_len(new_len) as isize - (c.body - c.len_at) as isize)
}

#[cfg(test)]
mod tests;
