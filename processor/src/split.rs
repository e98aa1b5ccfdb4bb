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
//! also reports the part's [`PartTraces`]. The parts stand for the whole
//! only when [`parts_agree`]: no trace holding a noisy span (whose
//! descendants are dropped) has spans in another part. Otherwise the host
//! processes the batch whole. The `split_parts_process_like_the_whole`
//! property test pins the first, and that the check is needed.
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
    std::iter::once(0).chain(cuts).chain([batch.len()]).collect::<Vec<_>>().windows(2).map(|w| w[0]..w[1]).collect()
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

/// The traces of one part of a batch, as [`trace_key`]s, sorted and
/// distinct: what [`parts_agree`] needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartTraces {
    /// Every trace with a span in the part (a span without a trace id is
    /// in the empty one).
    pub traces: Vec<u64>,
    /// The traces of the part's noisy spans, when the config drops their
    /// descendants; otherwise empty, since then a drop never reaches past
    /// its own span.
    pub noisy: Vec<u64>,
}

impl PartTraces {
    /// From each span's trace id and whether its descendants are dropped.
    pub(crate) fn collect<'a>(spans: impl Iterator<Item = (&'a [u8], bool)>, n: usize) -> Result<PartTraces, WireError> {
        let out_of_memory = |_| WireError::new(0, crate::wire::Problem::OutOfMemory("part traces"));
        let (mut traces, mut noisy) = (Vec::new(), Vec::new());
        traces.try_reserve_exact(n).map_err(out_of_memory)?;
        noisy.try_reserve_exact(n).map_err(out_of_memory)?;
        for (id, noise) in spans {
            let key = trace_key(id);
            traces.push(key);
            if noise {
                noisy.push(key);
            }
        }
        for keys in [&mut traces, &mut noisy] {
            keys.sort_unstable();
            keys.dedup();
        }
        Ok(PartTraces { traces, noisy })
    }
}

/// Whether parts processed apart gave what their whole would have: true
/// when no part's noisy trace has a span in another part. A noisy span's
/// descendants share its trace, so then every drop the whole would make
/// falls within one part; the whole drops nothing the parts do not either
/// way. Two traces sharing a key can only make this say false. Reports
/// from a component are not trusted to be sorted: this sorts its own copy.
pub fn parts_agree(parts: &[PartTraces]) -> bool {
    let mut owners: Vec<(u64, usize)> =
        parts.iter().enumerate().flat_map(|(i, part)| part.traces.iter().map(move |&key| (key, i))).collect();
    owners.sort_unstable();
    owners.dedup();
    parts.iter().enumerate().all(|(i, part)| {
        part.noisy.iter().all(|&key| {
            let first = owners.partition_point(|&(k, _)| k < key);
            owners[first..].iter().take_while(|&&(k, _)| k == key).all(|&(_, owner)| owner == i)
        })
    })
}

/// A trace id as a 64-bit key. One id always has one key; two ids may
/// share one, which only makes [`parts_agree`] more cautious.
fn trace_key(id: &[u8]) -> u64 {
    match <[u8; 16]>::try_from(id) {
        Ok(id) => {
            let (lo, hi) = id.split_at(8);
            u64::from_le_bytes(lo.try_into().unwrap_or_default()) ^ u64::from_le_bytes(hi.try_into().unwrap_or_default()).rotate_left(29)
        }
        // FNV-1a over the length and the bytes: not 16 bytes is rare.
        Err(_) => std::iter::once(id.len() as u8)
            .chain(id.iter().copied())
            .fold(0xcbf2_9ce4_8422_2325, |h: u64, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)),
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

    fn part(traces: &[&[u8]], noisy: &[&[u8]]) -> PartTraces {
        let spans = traces.iter().map(|t| (*t, false)).chain(noisy.iter().map(|t| (*t, true)));
        PartTraces::collect(spans, traces.len() + noisy.len()).expect("memory")
    }

    #[test]
    fn parts_agree_unless_a_noisy_trace_crosses() {
        let (a, b, c) = (&[0xa1; 16][..], &[0xa2; 16][..], &[0xa3; 5][..]);
        // A trace in two parts is fine while it holds no noise.
        assert!(parts_agree(&[part(&[a, b], &[]), part(&[b, c], &[])]));
        // Noise confined to its part is fine.
        assert!(parts_agree(&[part(&[a], &[a]), part(&[b, c], &[c])]));
        // Noise whose trace has spans in another part is not, either way round.
        assert!(!parts_agree(&[part(&[a], &[b]), part(&[b], &[])]));
        assert!(!parts_agree(&[part(&[a], &[]), part(&[c], &[]), part(&[b], &[a])]));
        // Spans without a trace id share the empty one.
        assert!(!parts_agree(&[part(&[], &[b""]), part(&[b""], &[])]));
        assert!(parts_agree(&[]));
        // A component's lists out of order or repeated change nothing.
        let (ka, kb, kc) = (trace_key(a), trace_key(b), trace_key(c));
        let unsorted = |traces: Vec<u64>, noisy: Vec<u64>| PartTraces { traces, noisy };
        assert!(!parts_agree(&[unsorted(vec![kc, ka, kb, ka], vec![kb]), unsorted(vec![kc, kb], vec![])]));
        assert!(parts_agree(&[unsorted(vec![kc, ka, kb, ka], vec![kb]), unsorted(vec![kc, ka], vec![])]));
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
    fn legacy_scope_spans_report_their_traces() {
        // Field 1000 (instrumentation_library_spans), tag 0xc2 0x3e.
        let legacy = |spans: &[u8]| {
            let inner = [&[0xc2, 0x3e, spans.len() as u8][..], spans].concat();
            len_field(1, &inner)
        };
        let modern = |spans: &[u8]| len_field(1, &len_field(2, spans));
        let health = legacy(&span(7, 1, 0, "GET /isAlive"));
        let p = crate::Processor::new("{}").expect("default config");
        let run = |batch: &[u8]| -> Vec<PartTraces> {
            let ranges = split_ranges(batch, 2);
            assert_eq!(ranges.len(), 2);
            ranges.into_iter().map(|r| p.process_part(batch[r].to_vec()).expect("valid").1).collect()
        };
        // The health check's child, in another resource of its trace.
        let child = modern(&span(7, 2, 1, "SELECT 1"));
        let parts = run(&[health.clone(), child].concat());
        assert_eq!(parts[0].noisy, vec![trace_key(&[7; 16])]);
        assert!(!parts_agree(&parts));
        // A span of another trace there instead.
        let other = modern(&span(8, 2, 1, "SELECT 1"));
        assert!(parts_agree(&run(&[health, other].concat())));
    }

    #[test]
    fn part_traces_are_sorted_distinct_keys() {
        let (a, b) = (&[0xa1; 16][..], &[0xa2; 16][..]);
        let p = part(&[b, a, b, a], &[a]);
        let mut want = vec![trace_key(a), trace_key(b)];
        want.sort_unstable();
        assert_eq!(p, PartTraces { traces: want, noisy: vec![trace_key(a)] });
        // Sizes other than 16 bytes have keys too, and the length counts.
        assert_ne!(trace_key(&[0; 5]), trace_key(&[0; 6]));
        assert_ne!(trace_key(a), trace_key(b));
    }
}
