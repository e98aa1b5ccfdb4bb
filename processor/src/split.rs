//! Cutting a batch into parts that several cores process at once, and
//! checking afterwards that the parts gave what the whole would have.
//!
//! Everything the engine does is local to a `ResourceSpans` except dropping
//! descendants, which follows parent links within a trace. So the host cuts
//! a batch between top-level fields of its `ExportTraceServiceRequest`
//! ([`split_ranges`]: each part is a valid request on its own, and
//! concatenating the parts' outputs gives the whole's bytes, since protobuf
//! concatenation is merging and every top-level field stays in its place)
//! and processes each part with [`crate::Processor::process_part`], which
//! also reports the part's [`PartLinks`]. The parts stand for the whole
//! exactly when [`parts_agree`]: no span one part dropped is the parent of
//! a span another part kept. Otherwise the host processes the batch whole.
//! The `split_parts_process_like_the_whole` property test pins both ways.
//!
//! This holds with the config's limits aside: `limits.max_batch_bytes`, and
//! the guest's memory, apply per call, so parts can get through where the
//! whole would be refused. A host that must refuse what the whole would
//! refuses batches over the limit before it cuts them.

use std::ops::Range;

use crate::wire::{Fields, WireError};

/// Byte ranges that cut `batch` into at most `parts` parts of about equal
/// size, between top-level fields, in order and covering it; one range, the
/// whole batch, when it cannot be cut (one resource, or bytes that are not
/// OTLP, which the engine then reports on the whole batch).
///
/// ```
/// // Two ResourceSpans of 4 bytes each.
/// let batch = [0x0a, 2, 0x12, 0, 0x0a, 2, 0x12, 0];
/// assert_eq!(tracescrub_processor::split_ranges(&batch, 2), vec![0..4, 4..8]);
/// assert_eq!(tracescrub_processor::split_ranges(&batch[..4], 2), [0..4]);
/// ```
pub fn split_ranges(batch: &[u8], parts: usize) -> Vec<Range<usize>> {
    let whole = std::iter::once(0..batch.len()).collect();
    if parts < 2 {
        return whole;
    }
    let mut top = Fields::new(batch, 0, batch.len());
    let mut boundaries = Vec::new();
    loop {
        match top.next_field() {
            Ok(Some(f)) if f.start > 0 => boundaries.push(f.start),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return whole,
        }
    }
    let cuts = choose(&boundaries, batch.len(), parts);
    std::iter::once(0)
        .chain(cuts)
        .chain([batch.len()])
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[0]..w[1])
        .collect()
}

/// From the candidate cut offsets, the one nearest each ideal cut, dropping
/// any that would leave a part under a quarter of its fair share: a
/// lopsided split costs a core and saves little time.
fn choose(candidates: &[usize], len: usize, parts: usize) -> Vec<usize> {
    let min_part = len / (4 * parts);
    let mut cuts: Vec<usize> = Vec::with_capacity(parts - 1);
    for i in 1..parts {
        let ideal = len * i / parts;
        let after = cuts.last().copied().unwrap_or(0);
        let at = candidates.partition_point(|&c| c < ideal);
        let nearest = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|j| candidates.get(j).copied())
            .filter(|&c| c >= after + min_part && c > after && len - c >= min_part)
            .min_by_key(|&c| c.abs_diff(ideal));
        if let Some(c) = nearest {
            cuts.push(c);
        }
    }
    cuts
}

/// The parent links of one part of a batch that may reach into another
/// part, as 64-bit keys of (trace id, span id) pairs, sorted and distinct:
/// what [`parts_agree`] needs. Both are empty when the config keeps
/// descendants (or drops no noise), since then a drop never reaches past
/// its own span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartLinks {
    /// (trace id, span id) of every span the part dropped.
    pub dropped: Vec<u64>,
    /// (trace id, parent span id) of every span the part kept that has a
    /// parent.
    pub parents: Vec<u64>,
}

impl PartLinks {
    /// From each span's trace id, span id, parent id and whether it was
    /// dropped.
    pub(crate) fn collect<'a>(
        spans: impl Iterator<Item = (&'a [u8], &'a [u8], &'a [u8], bool)>,
        n: usize,
    ) -> Result<PartLinks, WireError> {
        let out_of_memory = |_| WireError::new(0, crate::wire::Problem::OutOfMemory("part links"));
        let (mut dropped, mut parents) = (Vec::new(), Vec::new());
        dropped.try_reserve_exact(n).map_err(out_of_memory)?;
        parents.try_reserve_exact(n).map_err(out_of_memory)?;
        for (trace, span, parent, is_dropped) in spans {
            if is_dropped {
                dropped.push(link_key(trace, span));
            } else if !parent.is_empty() {
                parents.push(link_key(trace, parent));
            }
        }
        for keys in [&mut dropped, &mut parents] {
            keys.sort_unstable();
            keys.dedup();
        }
        Ok(PartLinks { dropped, parents })
    }
}

/// Whether parts processed apart gave what their whole would have: true
/// exactly when no span a part dropped is, by (trace id, span id), the
/// parent of a span another part kept. Parts never drop what the whole
/// keeps (noise is a span's own business, and a part's parent links are
/// the whole's). Take a span the whole drops and its part keeps, and the
/// chain of parents the whole's marking followed down to it from a noisy
/// span: the kept span nearest the noisy one has a parent some part
/// dropped. Its own part would have dropped it too, so another part did,
/// which this sees; and such a link is one the whole follows. Two links
/// sharing a key can only make this say false. A component's lists are
/// not trusted to be sorted: this sorts its own copy.
pub fn parts_agree(parts: &[PartLinks]) -> bool {
    // Drops are few and parent links many: sort the drops.
    let mut dropped: Vec<(u64, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, part)| part.dropped.iter().map(move |&key| (key, i)))
        .collect();
    if dropped.is_empty() {
        return true;
    }
    dropped.sort_unstable();
    parts.iter().enumerate().all(|(i, part)| {
        part.parents.iter().all(|&key| {
            let first = dropped.partition_point(|&(k, _)| k < key);
            dropped[first..].iter().take_while(|&&(k, _)| k == key).all(|&(_, owner)| owner == i)
        })
    })
}

/// A (trace id, span id) pair as a 64-bit key. One pair always has one
/// key; two pairs may share one, which only makes [`parts_agree`] more
/// cautious.
fn link_key(trace: &[u8], span: &[u8]) -> u64 {
    const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
    match (<[u8; 16]>::try_from(trace), <[u8; 8]>::try_from(span)) {
        (Ok(trace), Ok(span)) => {
            let (lo, hi) = trace.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
            (word(lo) ^ word(hi).rotate_left(29)).wrapping_mul(MIX) ^ u64::from_le_bytes(span)
        }
        // FNV-1a over both lengths and both ids: other sizes are rare.
        _ => [trace.len() as u8, span.len() as u8]
            .into_iter()
            .chain(trace.iter().copied())
            .chain(span.iter().copied())
            .fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(number: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        [&[number << 3 | 2, body.len() as u8][..], body].concat()
    }

    /// A ResourceSpans with a body of `size` bytes.
    fn resource(size: usize) -> Vec<u8> {
        len_field(1, &len_field(2, &vec![0; size - 2]))
    }

    fn starts(fields: &[Vec<u8>]) -> Vec<usize> {
        fields
            .iter()
            .scan(0, |at, f| {
                let start = *at;
                *at += f.len();
                Some(start)
            })
            .collect()
    }

    /// The cut offsets of `split_ranges`, after checking its ranges cover
    /// the batch in order.
    fn cuts(fields: &[Vec<u8>], parts: usize) -> Vec<usize> {
        let batch = fields.concat();
        let ranges = split_ranges(&batch, parts);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(batch.len()));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start && w[0].start < w[0].end));
        ranges[1..].iter().map(|r| r.start).collect()
    }

    #[test]
    fn cuts_between_top_level_fields_into_balanced_parts() {
        let rs: Vec<Vec<u8>> = (0..8).map(|_| resource(20)).collect();
        let at = starts(&rs);
        assert_eq!(cuts(&rs, 2), vec![at[4]]);
        assert_eq!(cuts(&rs, 4), vec![at[2], at[4], at[6]]);
        // More parts than fields: one cut per boundary at most.
        assert_eq!(cuts(&rs[..2], 8), vec![at[1]]);
        // The nearest boundary to the middle, wherever it is.
        let rs = [resource(10), resource(60), resource(30), resource(20)];
        assert_eq!(cuts(&rs, 2), vec![starts(&rs)[2]]);
        // An unknown top-level field is a boundary like any other.
        let rs = [resource(20), len_field(9, &[7; 20]), resource(20)];
        assert_eq!(cuts(&rs, 3), starts(&rs)[1..].to_vec());
    }

    #[test]
    fn never_a_part_under_a_quarter_of_its_share() {
        let rs = [resource(100), resource(10)];
        assert!(cuts(&rs, 2).is_empty());
        let rs = [resource(100), resource(30)];
        assert_eq!(cuts(&rs, 2), vec![starts(&rs)[1]]);
    }

    fn whole(len: usize) -> Vec<Range<usize>> {
        std::iter::once(0..len).collect()
    }

    #[test]
    fn nothing_to_cut() {
        assert_eq!(split_ranges(&[], 2), whole(0));
        assert!(cuts(&[resource(20)], 2).is_empty());
        assert!(cuts(&[resource(20), resource(20)], 1).is_empty());
        // Not OTLP: the engine reports it on the whole batch.
        let mut bad = [resource(20), resource(20)].concat();
        bad.push(0x0a);
        assert_eq!(split_ranges(&bad, 2), whole(bad.len()));
    }

    /// A part's links from its spans: (trace, span id, parent id, dropped).
    fn part(spans: &[(u8, u8, u8, bool)]) -> PartLinks {
        let ids: Vec<[Vec<u8>; 3]> = spans
            .iter()
            .map(|&(t, s, p, _)| {
                [vec![t; 16], vec![s; 8], if p == 0 { Vec::new() } else { vec![p; 8] }]
            })
            .collect();
        let links = ids.iter().zip(spans).map(|([t, s, p], &(.., d))| (&t[..], &s[..], &p[..], d));
        PartLinks::collect(links, ids.len()).expect("memory")
    }

    #[test]
    fn parts_agree_unless_a_dropped_span_has_a_kept_child_elsewhere() {
        // Trace 1: root 1 dropped, with child 2 (kept where it is) and child
        // 3 (dropped where it is, as noise of its own).
        let root = (1, 1, 0, true);
        // A trace in two parts is fine while nothing in it is dropped.
        assert!(parts_agree(&[part(&[(1, 1, 0, false)]), part(&[(1, 2, 1, false)])]));
        // A dropped span with its kept child in the same part: the part
        // would have dropped the child; nothing crosses.
        assert!(parts_agree(&[part(&[root, (1, 2, 1, false)]), part(&[(2, 5, 4, false)])]));
        // Its child dropped in the other part: the whole drops it too.
        assert!(parts_agree(&[part(&[root]), part(&[(1, 3, 1, true)])]));
        // Its child kept in the other part: the whole would drop it.
        assert!(!parts_agree(&[part(&[root]), part(&[(1, 2, 1, false)])]));
        assert!(!parts_agree(&[
            part(&[(1, 2, 1, false)]),
            part(&[(2, 5, 4, false)]),
            part(&[root])
        ]));
        // The same ids in another trace are no child of it.
        assert!(parts_agree(&[part(&[root]), part(&[(9, 2, 1, false)])]));
        assert!(parts_agree(&[]));
        // A component's lists out of order or repeated change nothing.
        let crossing = [part(&[root]), part(&[(1, 2, 1, false), (2, 5, 4, false)])];
        let unsorted = |p: &PartLinks| PartLinks {
            dropped: p.dropped.iter().rev().chain(&p.dropped).copied().collect(),
            parents: p.parents.iter().rev().chain(&p.parents).copied().collect(),
        };
        assert!(!parts_agree(&[unsorted(&crossing[0]), unsorted(&crossing[1])]));
    }

    /// A span: trace id, span id, parent id (none when 0), name; a server span.
    fn span(trace: u8, id: u8, parent: u8, name: &str) -> Vec<u8> {
        let mut body = [len_field(1, &[trace; 16]), len_field(2, &[id; 8])].concat();
        if parent != 0 {
            body.extend(len_field(4, &[parent; 8]));
        }
        body.extend(len_field(5, name.as_bytes()));
        body.extend([0x30, 2]);
        len_field(2, &body)
    }

    #[test]
    fn legacy_scope_spans_report_their_links() {
        // Field 1000 (instrumentation_library_spans), tag 0xc2 0x3e.
        let legacy = |spans: &[u8]| {
            let inner = [&[0xc2, 0x3e, spans.len() as u8][..], spans].concat();
            len_field(1, &inner)
        };
        let modern = |spans: &[u8]| len_field(1, &len_field(2, spans));
        let health = legacy(&span(7, 1, 0, "GET /isAlive"));
        let p = crate::Processor::new("{}").expect("default config");
        let run = |batch: &[u8]| -> Vec<PartLinks> {
            let ranges = split_ranges(batch, 2);
            assert_eq!(ranges.len(), 2);
            ranges
                .into_iter()
                .map(|r| p.process_part(batch[r].to_vec()).expect("valid").1)
                .collect()
        };
        // The health check's child, in another resource of its trace.
        let parts = run(&[health.clone(), modern(&span(7, 2, 1, "SELECT 1"))].concat());
        assert_eq!(parts[0].dropped, vec![link_key(&[7; 16], &[1; 8])]);
        assert!(!parts_agree(&parts));
        // A child in the legacy field, of a health check in the other part.
        let parts =
            run(&[modern(&span(7, 1, 0, "GET /isAlive")), legacy(&span(7, 2, 1, "SELECT 1"))]
                .concat());
        assert_eq!(parts[1].parents, vec![link_key(&[7; 16], &[1; 8])]);
        assert!(!parts_agree(&parts));
        // A span of another trace there instead.
        assert!(parts_agree(&run(&[health, modern(&span(8, 2, 1, "SELECT 1"))].concat())));
    }

    #[test]
    fn a_grandchild_across_the_cut_of_a_dropped_descendant_disagrees() {
        let modern = |spans: &[u8]| len_field(1, &len_field(2, spans));
        let p = crate::Processor::new("{}").expect("default config");
        // A health check and its child; the child's child past the cut.
        let a = modern(&[span(7, 1, 0, "GET /isAlive"), span(7, 2, 1, "SELECT 1")].concat());
        let run = |b: &[u8]| -> Vec<PartLinks> {
            let batch = [a.clone(), modern(b)].concat();
            split_ranges(&batch, 2)
                .into_iter()
                .map(|r| p.process_part(batch[r].to_vec()).expect("valid").1)
                .collect()
        };
        let parts = run(&span(7, 3, 2, "GET /inner"));
        assert_eq!(parts.len(), 2);
        assert!(parts[0].dropped.contains(&link_key(&[7; 16], &[2; 8])));
        assert!(!parts_agree(&parts));
        // The same trace past the cut, but no child of anything dropped.
        assert!(parts_agree(&run(&span(7, 3, 9, "GET /inner"))));
        assert!(parts_agree(&run(&span(7, 3, 0, "GET /other"))));
    }

    #[test]
    fn part_links_are_sorted_distinct_keys_and_empty_when_descendants_are_kept() {
        let p = part(&[(2, 3, 1, false), (1, 1, 0, true), (2, 4, 1, false), (1, 2, 0, true)]);
        let mut dropped = vec![link_key(&[1; 16], &[1; 8]), link_key(&[1; 16], &[2; 8])];
        dropped.sort_unstable();
        assert_eq!(p, PartLinks { dropped, parents: vec![link_key(&[2; 16], &[1; 8])] });
        // Sizes other than 16 and 8 bytes have keys too, and lengths count.
        assert_ne!(link_key(&[0; 5], &[0; 3]), link_key(&[0; 6], &[0; 2]));
        assert_ne!(link_key(&[1; 16], &[2; 8]), link_key(&[2; 16], &[1; 8]));
        let keep = crate::Processor::new(r#"{"noise": {"drop_descendants": false}}"#)
            .expect("valid config");
        let batch = len_field(
            1,
            &len_field(2, &[span(7, 1, 0, "GET /isAlive"), span(7, 2, 1, "SELECT 1")].concat()),
        );
        assert_eq!(keep.process_part(batch).expect("valid").1, PartLinks::default());
    }
}
