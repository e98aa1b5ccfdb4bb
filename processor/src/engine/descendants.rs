//! Which spans are dropped: the noisy spans the walk found, and their
//! descendants within the batch.

use crate::wire::WireError;

use super::layers::TEAM;
use super::walk::Walk;
use super::{Fate, SpanRec, indices_where, room, try_collect};

/// Marks every span whose parent chain, within its trace and this batch,
/// reaches a noisy span (`noisy`: their indices, in order), by walking down
/// from the noisy spans: children are found by binary search over spans
/// sorted by (trace id, parent id), in buckets by the parent id's last
/// bytes. Going down rather than up handles spans that share an id (every
/// span with a noisy span's id as its parent is its child) and parent
/// cycles (a span is marked once). Each (trace id, parent id) group of
/// children is walked once, however many dropped spans share that id, so
/// the work is O(n log n) whatever the ids: 40,000 spans that all share one
/// id, their own parent, once took quadratic time. No hashing, so crafted
/// ids cannot slow it past that (ids that share a bucket are one sorted
/// list). Returns the descendants marked, and the children visited (at most
/// one visit per span) for the tests that bound the work.
///
/// A span a team file's rule drops (its id has [`TEAM`] set) takes with it
/// only descendants of its own namespace (`SpanRec::team`), so one team's
/// file never hides another's spans. A span the platform's rules drop
/// takes its whole subtree, whatever the namespaces in it, spans a team
/// rule dropped and theirs included.
pub(super) fn mark_descendants(
    metas: &[SpanRec<'_>],
    noisy: &[u32],
    fates: &mut [Fate],
) -> Result<(usize, usize), WireError> {
    // The walk lets through only 16-byte trace ids and 8-byte span ids (or
    // none): those are sorted and searched as integers, held beside each
    // span's index. Compared through the span records instead, the sort's
    // indirect loads were most of the marking's cost.
    let sized = |id: &[u8]| id.is_empty() || id.len() == 8;
    if metas.iter().all(|m| m.trace_id.len() == 16 && sized(m.span_id) && sized(m.parent_id)) {
        // Little-endian: read as the target stores them (big-endian
        // would swap bytes, which wasm has no instruction for).
        let trace = |t: &[u8]| t.try_into().map_or(0, u128::from_le_bytes);
        let span = |s: &[u8]| s.try_into().map_or(0, u64::from_le_bytes);
        mark_by(metas, noisy, fates, trace, span)
    } else {
        mark_by(metas, noisy, fates, |t| t, |s| s)
    }
}

/// [`mark_descendants`] with trace ids compared as `trace(id)` and span ids
/// as `span(id)`, each of which must tell every two ids it is given apart
/// (empty span ids are never compared); any order they give will do.
fn mark_by<'a, T: Ord + Copy, S: Ord + Copy>(
    metas: &[SpanRec<'a>],
    noisy: &[u32],
    fates: &mut [Fate],
    trace: impl Fn(&'a [u8]) -> T,
    span: impl Fn(&'a [u8]) -> S,
) -> Result<(usize, usize), WireError> {
    // Only traces holding a noisy span can hold descendants, so only their
    // spans are sorted: a small share of the batch. Bit `trace_bit(t)` is
    // set for every noisy trace `t`; a span whose trace's bit is clear is
    // in no noisy trace. A set bit only says "maybe": the few spans of
    // other traces it lets through are sorted too, and never match a
    // noisy span's (trace id, span id). Crafted ids can make every bit
    // collide, which costs the sort of the whole batch: O(n log n) still.
    // The test takes no branch per span (whether a span is in a noisy
    // trace is data no predictor learns), and no search: an exact search
    // here was the marking's main cost in mispredicted branches.
    let mut maybe_noisy = [0u64; TRACE_BITS / 64];
    for &i in noisy {
        let bit = trace_bit(metas[i as usize].trace_id);
        maybe_noisy[bit / 64] |= 1 << (bit % 64);
    }
    let candidates = indices_where(
        metas.len(),
        |i| {
            let m = &metas[i];
            let bit = trace_bit(m.trace_id);
            !m.parent_id.is_empty() & (maybe_noisy[bit / 64] >> (bit % 64) & 1 != 0)
        },
        "span records",
    )?;
    // (trace id, parent id, span index, the parent id's `trace_bit`),
    // bucketed by the parent id's last two bytes (random in a real id),
    // each bucket sorted: a span's children are found by a search within
    // its own id's bucket, which holds a span or two. Crafted ids that
    // share a bucket make it one sorted list: O(n log n) still.
    let mut children = try_collect(
        candidates.len(),
        candidates.iter().map(|&i| {
            let m = &metas[i as usize];
            (trace(m.trace_id), span(m.parent_id), i, trace_bit(m.parent_id) as u16)
        }),
        "span records",
    )?;
    // As many buckets as children (a power of two, 64 to 4,096): the loops
    // over buckets below cost no more than the children do.
    let buckets = children.len().next_power_of_two().clamp(64, TRACE_BITS);
    let bucket = |bit: u16| usize::from(bit) & (buckets - 1);
    // A counting sort: `ends[b]` is first bucket `b`'s size, then where it
    // starts, and once every child is placed, where it ends (its start is
    // `ends[b - 1]`, or 0).
    let mut ends = [0u32; TRACE_BITS];
    for &(_, _, _, bit) in &children {
        ends[bucket(bit)] += 1;
    }
    let mut sum = 0;
    for end in &mut ends[..buckets] {
        (*end, sum) = (sum, sum + *end);
    }
    let mut by_parent = try_collect(children.len(), children.iter().copied(), "span records")?;
    for e in children.drain(..) {
        let b = bucket(e.3);
        by_parent[ends[b] as usize] = e;
        ends[b] += 1;
    }
    let range = |b: usize| (if b == 0 { 0 } else { ends[b - 1] as usize }, ends[b] as usize);
    for b in 0..buckets {
        let (from, to) = range(b);
        if to - from > 1 {
            by_parent[from..to].sort_unstable();
        }
    }
    // `walked[k]`: the group of children starting at `by_parent[k]` has
    // been walked. Spans that share an id share the group: walking it again
    // could mark nothing new.
    let mut walked =
        try_collect(by_parent.len(), std::iter::repeat_n(false, by_parent.len()), "span records")?;
    // Groups walked for one namespace only, by a team rule's drop: at most
    // once per (group, namespace), and namespaces that drop are bounded by
    // the team files.
    let mut walked_for: std::collections::BTreeSet<(usize, &[u8])> = Default::default();
    let scoped = |f: Fate| match f {
        Fate::Noisy(rule) => rule & TEAM != 0,
        _ => false,
    };
    let (mut visited, mut marked) = (0, 0);
    // The platform's drops are walked first (the queue is a stack): a
    // team's walk marks only its own namespace, and a span it marked is not
    // walked again, so walked first it would keep the rest of a subtree a
    // platform drop takes whole.
    let team_drop = |i: &&u32| scoped(fates[**i as usize]);
    let mut queue = try_collect(
        metas.len(),
        noisy.iter().filter(team_drop).chain(noisy.iter().filter(|i| !team_drop(i))).map(|&i| {
            let i = i as usize;
            (i, scoped(fates[i]))
        }),
        "span records",
    )?;
    // Team-dropped spans inside a platform drop's subtree, walked again
    // unrestricted (each once).
    let mut widened = std::collections::BTreeSet::new();
    while let Some((i, restricted)) = queue.pop() {
        if metas[i].span_id.is_empty() {
            // An empty parent id means "root", never "child of this span".
            continue;
        }
        let key = (trace(metas[i].trace_id), span(metas[i].span_id));
        let (from, to) = range(bucket(trace_bit(metas[i].span_id) as u16));
        let first = from + by_parent[from..to].partition_point(|&(t, p, _, _)| (t, p) < key);
        // An empty group's `first` is another key's: leave its flag alone.
        let Some(&(t, p, _, _)) = by_parent[..to].get(first) else { continue };
        let team = metas[i].team;
        if walked[first] || (restricted && walked_for.contains(&(first, team))) || (t, p) != key {
            continue;
        }
        if restricted {
            walked_for.insert((first, team));
        } else {
            walked[first] = true;
        }
        for &(_, _, j, _) in by_parent[first..to].iter().take_while(|&&(t, p, _, _)| (t, p) == key)
        {
            visited += 1;
            let j = j as usize;
            if restricted && metas[j].team != team {
                continue;
            }
            if fates[j] == Fate::Keep {
                fates[j] = Fate::Descendant;
                marked += 1;
                room(&mut queue, "span records")?;
                queue.push((j, restricted));
            } else if !restricted && scoped(fates[j]) && widened.insert(j) {
                room(&mut queue, "span records")?;
                queue.push((j, false));
            }
        }
    }
    Ok((marked, visited))
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

impl<'a> Walk<'a, '_, '_> {
    /// Which spans are dropped, by position; `None` when none is.
    pub(super) fn fates(&mut self) -> Result<Option<Vec<Fate>>, WireError> {
        let Some(noise) = self.c.noise.as_ref() else { return Ok(None) };
        let spans = &self.spans;
        // Most batches hold a noisy span early; a clean one allocates nothing.
        if spans.iter().all(|s| s.rule.is_none()) {
            return Ok(None);
        }
        let noisy = indices_where(spans.len(), |i| spans[i].rule.is_some(), "span records")?;
        let mut fates =
            try_collect(spans.len(), std::iter::repeat_n(Fate::Keep, spans.len()), "span records")?;
        for &i in &noisy {
            if let Some(rule) = spans[i as usize].rule {
                fates[i as usize] = Fate::Noisy(rule);
                self.counters.noisy(rule, rule & TEAM != 0);
            }
        }
        if noise.drop_descendants {
            let (marked, _) = mark_descendants(spans, &noisy, &mut fates)?;
            self.counters.dropped_descendants += marked as u64;
        }
        Ok(Some(fates))
    }
}

/// Descendant marking on graphs that buggy SDKs and hostile clients send:
/// shared span ids, self-parents, cycles, missing parents, empty ids.
#[cfg(test)]
mod tests {
    use super::super::{Fate, SpanRec};
    use super::mark_descendants;

    fn rec<'a>(trace: &'a [u8], span: &'a [u8], parent: &'a [u8]) -> SpanRec<'a> {
        SpanRec {
            trace_id: trace,
            span_id: span,
            parent_id: parent,
            rule: None,
            path: &[],
            start: 0,
            end: 0,
            slot: 0,
            edits_end: 0,
            delta: 0,
            findings: (0, 0),
            team: &[],
        }
    }

    /// The closure by fixpoint: a span is a descendant if it is not noisy
    /// and some dropped span of its trace has a non-empty id equal to its
    /// parent id. Quadratic per round: the obviously right reference.
    fn naive(metas: &[SpanRec<'_>], noisy: &[bool]) -> Vec<bool> {
        let mut dropped = noisy.to_vec();
        loop {
            let mut changed = false;
            for j in 0..metas.len() {
                if dropped[j] || metas[j].parent_id.is_empty() {
                    continue;
                }
                let parent_dropped = (0..metas.len()).any(|i| {
                    dropped[i]
                        && !metas[i].span_id.is_empty()
                        && metas[i].trace_id == metas[j].trace_id
                        && metas[i].span_id == metas[j].parent_id
                });
                if parent_dropped {
                    dropped[j] = true;
                    changed = true;
                }
            }
            if !changed {
                return dropped;
            }
        }
    }

    fn run(metas: &[SpanRec<'_>], noisy: &[bool]) -> (Vec<bool>, usize) {
        let mut fates: Vec<Fate> =
            noisy.iter().map(|&n| if n { Fate::Noisy(0) } else { Fate::Keep }).collect();
        let indices: Vec<u32> = (0..noisy.len() as u32).filter(|&i| noisy[i as usize]).collect();
        let (marked, visited) =
            mark_descendants(metas, &indices, &mut fates).expect("fits in memory");
        let dropped: Vec<bool> = fates.iter().map(|f| f.dropped()).collect();
        let descendants = dropped.iter().zip(noisy).filter(|&(&d, &n)| d && !n).count();
        assert_eq!(marked, descendants, "the count of marked descendants");
        (dropped, visited)
    }

    /// Scenario: a trace across namespaces where a team rule's drop and a
    /// platform rule's drop meet: a team-dropped span with the same id as
    /// a platform-dropped one, in either order in the batch; a team-dropped
    /// span below a platform-dropped one; a team-dropped span alone.
    /// Guarantees: a platform drop takes its whole subtree, whatever the
    /// namespaces and the order; a team drop alone takes only its own
    /// namespace's descendants.
    #[test]
    fn platform_drops_take_subtrees_that_team_drops_reach_first() {
        const TEAM_RULE: Fate = Fate::Noisy(super::TEAM | 1);
        const PLATFORM_RULE: Fate = Fate::Noisy(0);
        let t = TRACES[0][0];
        let span = |id: &'static [u8], parent: &'static [u8], team: &'static [u8]| SpanRec {
            team,
            ..rec(t, id, parent)
        };
        let (one, two, three) = (&b"11111111"[..], &b"22222222"[..], &b"33333333"[..]);
        let dropped = |metas: &[SpanRec<'_>], mut fates: Vec<Fate>| {
            let noisy: Vec<u32> =
                (0..fates.len() as u32).filter(|&i| fates[i as usize].dropped()).collect();
            mark_descendants(metas, &noisy, &mut fates).expect("fits in memory");
            fates.iter().map(|f| f.dropped()).collect::<Vec<bool>>()
        };
        // Same id, both orders: the child in ns-a and its child in ns-b go.
        for swap in [false, true] {
            let mut metas = vec![span(one, b"", b"ns-a"), span(one, b"", b"ns-x")];
            let mut fates = vec![TEAM_RULE, PLATFORM_RULE];
            if swap {
                metas.reverse();
                fates.reverse();
            }
            metas.extend([span(two, one, b"ns-a"), span(three, two, b"ns-b")]);
            fates.extend([Fate::Keep, Fate::Keep]);
            assert_eq!(dropped(&metas, fates), [true; 4], "swapped: {swap}");
        }
        // A team drop below a platform drop: its child in ns-b goes too.
        let metas = [span(one, b"", b"ns-x"), span(two, one, b"ns-a"), span(three, two, b"ns-b")];
        let fates = vec![PLATFORM_RULE, TEAM_RULE, Fate::Keep];
        assert_eq!(dropped(&metas, fates), [true; 3]);
        // A team drop alone: its child in ns-b stays, its child in ns-a goes.
        let metas = [span(two, b"", b"ns-a"), span(three, two, b"ns-b"), span(one, two, b"ns-a")];
        let fates = vec![TEAM_RULE, Fate::Keep, Fate::Keep];
        assert_eq!(dropped(&metas, fates), [true, false, true]);
    }

    /// Ids from a tiny alphabet, so that most spans share an id with
    /// others; `b""` is the empty id. The first set has the sizes the walk
    /// lets through (compared as integers); the second has others, which
    /// take the byte-compare path.
    /// The third set's ids all end alike, so they share one bucket.
    const IDS: [[&[u8]; 5]; 3] = [
        [b"", b"aaaaaaaa", b"bbbbbbbb", b"cccccccc", b"dddddddd"],
        [b"", b"a", b"bb", b"ccc", b"dddddddddd"],
        [b"", b"aaaaaazz", b"bbbbbbzz", b"cccccczz", b"ddddddzz"],
    ];
    const TRACES: [[&[u8]; 2]; 3] = [
        [b"trace-one-16byte", b"trace-two-16byte"],
        [b"t1", b"trace-two"],
        [b"trace-one-16byte", b"trace-two-16byte"],
    ];

    proptest::proptest! {
        /// Scenario: random batches of up to 60 spans over two traces and
        /// five ids (one empty), so duplicates, self-parents, cycles and
        /// missing parents are the rule; random spans are noisy; ids of the
        /// usual sizes or of odd ones, or ids that share a bucket.
        /// Guarantees: the marking equals the naive closure, and no more
        /// children are visited than there are spans: the work is linear in
        /// the graph, not in the number of spans sharing an id.
        #[test]
        fn marking_equals_the_naive_closure_and_visits_each_span_once(
            sizes in 0..3usize,
            spans in proptest::collection::vec((0..2usize, 0..5usize, 0..5usize, proptest::bool::weighted(0.15)), 0..60)
        ) {
            let (traces, ids) = (TRACES[sizes], IDS[sizes]);
            let metas: Vec<SpanRec<'_>> = spans.iter().map(|&(t, s, p, _)| rec(traces[t], ids[s], ids[p])).collect();
            let noisy: Vec<bool> = spans.iter().map(|s| s.3).collect();
            let (marked, visited) = run(&metas, &noisy);
            proptest::prop_assert_eq!(&marked, &naive(&metas, &noisy));
            proptest::prop_assert!(visited <= metas.len(), "visited {} children among {} spans", visited, metas.len());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Scenario: batches of 100 to 3,000 spans with random 8-byte ids,
        /// in traces of five spans whose parents are mostly spans of the
        /// same trace (trees, cycles, self-parents), sometimes an unknown
        /// id or none; one span in five noisy. The bucket count follows
        /// the number of children, so these take it from 64 to 2,048,
        /// where the small batches above stay at 64.
        /// Guarantees: the marking equals the naive closure, and no more
        /// children are visited than there are spans.
        #[test]
        fn marking_of_realistic_batches_equals_the_naive_closure(
            n in 100..3000usize,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let traces: Vec<[u8; 16]> = (0..n / 5 + 1)
                .map(|_| {
                    let mut t = [0u8; 16];
                    t[..8].copy_from_slice(&next().to_le_bytes());
                    t[8..].copy_from_slice(&next().to_le_bytes());
                    t
                })
                .collect();
            let ids: Vec<[u8; 8]> = (0..n).map(|_| next().to_le_bytes()).collect();
            let unknown: Vec<[u8; 8]> = (0..n).map(|_| next().to_le_bytes()).collect();
            let spans: Vec<(usize, usize, Option<usize>, bool)> = (0..n)
                .map(|i| {
                    let r = next();
                    let group = i / 5 * 5;
                    let parent = match r % 8 {
                        0 => None,
                        1 => Some(n + (r >> 8) as usize % n),
                        _ => Some((group + (r >> 8) as usize % 5).min(n - 1)),
                    };
                    (i / 5, i, parent, (r >> 40) % 5 == 0)
                })
                .collect();
            let id = |k: usize| -> &[u8] { if k < n { &ids[k] } else { &unknown[k - n] } };
            let metas: Vec<SpanRec<'_>> = spans
                .iter()
                .map(|&(t, s, p, _)| rec(&traces[t], id(s), p.map_or(&[][..], id)))
                .collect();
            let noisy: Vec<bool> = spans.iter().map(|s| s.3).collect();
            let (marked, visited) = run(&metas, &noisy);
            proptest::prop_assert_eq!(&marked, &naive(&metas, &noisy));
            proptest::prop_assert!(visited <= n, "visited {} children among {} spans", visited, n);
        }
    }

    /// Scenario: 40,000 spans that all carry the same span id, which is
    /// also their parent id (one big cycle), the first noisy; then the same
    /// with two ids that are each other's parent.
    /// Guarantees: all are dropped, and the children visited stay at most
    /// the span count (this input once took quadratic time: 13.8 s).
    #[test]
    fn forty_thousand_spans_sharing_one_id_are_marked_in_linear_work() {
        let n = 40_000;
        for ids in [[&b"12345678"[..], b"12345678"], [b"12345678", b"87654321"]] {
            let metas: Vec<SpanRec<'_>> =
                (0..n).map(|i| rec(TRACES[0][0], ids[i % 2], ids[(i + 1) % 2])).collect();
            let mut noisy = vec![false; n];
            noisy[0] = true;
            let (marked, visited) = run(&metas, &noisy);
            assert!(marked.iter().all(|&m| m), "every span is in the noisy span's cycle");
            assert!(visited <= n, "visited {visited} children for {n} spans");
        }
    }
}
