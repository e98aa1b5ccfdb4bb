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
//!
//! Each phase has its module: `rules` (the compiled config, where rules are
//! matched), `walk` (the walkers, where values are masked), `descendants`
//! (which spans a noisy span takes with it), `finish` and `emit`. This
//! module holds what they share: the span and edit records, and the entry
//! points that run the phases in order.

mod descendants;
mod emit;
mod finish;
mod layers;
mod rules;
mod walk;

use crate::error::Error;
use crate::explain::Finding;
use crate::split::PartLinks;
use crate::stats::{Counters, FieldKind, Stats};
use crate::wire::{Problem, WireError, varint_len};

use emit::{emit, emit_in_place};
pub(crate) use rules::Compiled;
use walk::Walk;

/// How deep arrays and kvlists may nest inside an attribute value. Real
/// instrumentations nest two or three levels; the bound keeps the walker's
/// recursion (and so the guest's stack) small on hostile input.
pub(crate) const MAX_VALUE_DEPTH: usize = 32;

/// Change in a message's encoded size caused by the edits inside it.
type Delta = isize;

/// What happens to one span, by its position in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    /// Noise, matched by the glob with this index.
    Noisy(u32),
    /// A descendant of a noisy span in the same batch.
    Descendant,
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
    /// Its resource's `teams.key` value (version 2 with team files; else
    /// empty): a team rule's drop reaches only descendants that share it.
    team: &'a [u8],
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
    mask: Option<(u16, FieldKind)>,
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
        counters: Counters::new(c.rule_names.len(), c.detector_names.len()),
        fnr_off: false,
        active: 0,
        hits: Vec::new(),
        findings,
        ids: (&[], &[]),
        resource: None,
        key: &[],
        spans: Vec::new(),
        scopes: Vec::new(),
        resources: Vec::new(),
        scratch: Vec::new(),
        chain: Default::default(),
        chain_memo: Default::default(),
        judging: Default::default(),
        // Version 2 sets it per resource.
        span_keys: c
            .noise
            .as_ref()
            .filter(|n| n.layered.is_none())
            .map_or(Default::default(), |n| n.path_filter),
        team: &[],
        mask: None,
        extras: false,
        general: false,
    };
    walk.set_mask(c.mask.as_ref());
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
    let stats = counters.into_stats(|id| c.rule_name(id), &c.detector_names);
    Ok((Plan { edits, arena }, stats))
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

/// The indices `i < n` for which `keep(i)`, in order, or a typed error if
/// memory runs out. It takes no branch on `keep`: where that is data (which
/// spans are noise, which traces hold them), no predictor learns it, and a
/// mispredicted branch costs more than the write it skips.
fn indices_where(
    n: usize,
    keep: impl Fn(usize) -> bool,
    what: &'static str,
) -> Result<Vec<u32>, WireError> {
    let mut out = try_collect(n, std::iter::repeat_n(0, n), what)?;
    let mut k = 0;
    for i in 0..n {
        out[k] = i as u32;
        k += usize::from(keep(i));
    }
    out.truncate(k);
    Ok(out)
}

#[cfg(test)]
mod tests;
