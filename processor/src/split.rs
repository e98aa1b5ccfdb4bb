//! Where a batch can be cut so that its parts can be processed apart, on
//! several cores, with the same result as the whole.
//!
//! Everything the engine does is local to a `ResourceSpans` except dropping
//! descendants, which follows parent links within a trace. So a cut between
//! two top-level fields of the `ExportTraceServiceRequest`, with no trace on
//! both sides of it, is safe: each part is a valid request on its own, and
//! processing the parts and concatenating the outputs (protobuf
//! concatenation is merging, and every top-level field stays in its place)
//! gives the bytes the whole would give, and stats that sum to its stats.
//! The `split_parts_process_like_the_whole` property test pins that.

use crate::otlp::{request, resource_spans, scope_spans, span};
use crate::wire::{Field, Fields, WireError, WireType};

/// Byte offsets at which `batch` may be cut into at most `parts` parts of
/// about equal size, in increasing order; empty when it cannot be cut (one
/// resource, traces that span every candidate cut, or bytes that are not
/// OTLP, which the engine then reports on the whole batch).
///
/// ```
/// // Two ResourceSpans, each with one span of its own trace.
/// let resource = |trace: u8| {
///     let span = [&[0x0a, 16][..], &[trace; 16]].concat();
///     let scope = [&[0x12, span.len() as u8][..], &span].concat();
///     [&[0x0a, scope.len() as u8 + 2, 0x12, scope.len() as u8][..], &scope].concat()
/// };
/// let batch = [resource(1), resource(2)].concat();
/// assert_eq!(tracescrub_processor::split_points(&batch, 2), vec![batch.len() / 2]);
/// // The same trace on both sides: no cut.
/// let batch = [resource(1), resource(1)].concat();
/// assert!(tracescrub_processor::split_points(&batch, 2).is_empty());
/// ```
pub fn split_points(batch: &[u8], parts: usize) -> Vec<usize> {
    if parts < 2 {
        return Vec::new();
    }
    // The top level first: an SDK's batch is one resource, with nothing
    // to cut, and its spans need no walk.
    let Ok(top) = top_level(batch) else { return Vec::new() };
    let n = top.len();
    if n < 2 {
        return Vec::new();
    }
    let Ok(mut traces) = span_traces(batch, &top) else { return Vec::new() };
    // `crossing[k]`: how many traces have spans both before top-level field
    // `k` and at or after it. A cut before field `k` is safe when it is 0.
    let mut crossing = vec![0i32; n + 1];
    traces.sort_unstable();
    for group in traces.chunk_by(|a, b| a.0 == b.0) {
        let (first, last) = (group[0].1, group[group.len() - 1].1);
        if first < last {
            crossing[first + 1] += 1;
            crossing[last + 1] -= 1;
        }
    }
    let mut open = 0;
    let safe: Vec<usize> = (0..n)
        .filter_map(|k| {
            open += crossing[k];
            (k > 0 && open == 0).then_some(top[k].start)
        })
        .collect();
    choose(&safe, batch.len(), parts)
}

/// From the safe cut offsets, the one nearest each ideal cut, dropping any
/// that would leave a part under a quarter of its fair share: a lopsided
/// split costs a core and saves little time.
fn choose(safe: &[usize], len: usize, parts: usize) -> Vec<usize> {
    let min_part = len / (4 * parts);
    let mut cuts: Vec<usize> = Vec::with_capacity(parts - 1);
    for i in 1..parts {
        let ideal = len * i / parts;
        let after = cuts.last().copied().unwrap_or(0);
        let at = safe.partition_point(|&c| c < ideal);
        let nearest = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|j| safe.get(j).copied())
            .filter(|&c| c >= after + min_part && c > after && len - c >= min_part)
            .min_by_key(|&c| c.abs_diff(ideal));
        if let Some(c) = nearest {
            cuts.push(c);
        }
    }
    cuts
}

/// A trace id as a sort key: the usual 16 bytes exactly, other sizes
/// folded into the same space. Two ids may share a key (then the cut
/// treats them as one trace, which only makes it safer); one id never has
/// two keys.
fn trace_key(id: &[u8]) -> u128 {
    match <[u8; 16]>::try_from(id) {
        Ok(id) => u128::from_le_bytes(id),
        Err(_) => id.iter().fold(id.len() as u128, |k, &b| k.rotate_left(8) ^ u128::from(b)),
    }
}

/// A span's trace key and the index of the top-level field it is under.
type TraceAt = (u128, usize);

/// The top-level fields of the request.
fn top_level(batch: &[u8]) -> Result<Vec<Field>, WireError> {
    let mut top = Fields::new(batch, 0, batch.len());
    let mut fields = Vec::new();
    while let Some(f) = top.next_field()? {
        fields.push(f);
    }
    Ok(fields)
}

/// (trace key, top-level field index) for every span, under both the
/// current and the legacy scope spans field. Every trace id field of a span
/// is listed, not only the last: more constraints can only make a cut
/// safer.
fn span_traces(batch: &[u8], top: &[Field]) -> Result<Vec<TraceAt>, WireError> {
    let mut traces = Vec::new();
    for (index, f) in top.iter().enumerate() {
        if f.number != request::RESOURCE_SPANS || f.wire != WireType::Len {
            continue;
        }
        let mut resource = Fields::new(batch, f.body, f.end);
        while let Some(s) = resource.next_field()? {
            let is_scope = s.number == resource_spans::SCOPE_SPANS || s.number == resource_spans::LEGACY_LIBRARY_SPANS;
            if !is_scope || s.wire != WireType::Len {
                continue;
            }
            let mut scope = Fields::new(batch, s.body, s.end);
            while let Some(sp) = scope.next_field()? {
                if sp.number != scope_spans::SPANS || sp.wire != WireType::Len {
                    continue;
                }
                let mut fields = Fields::new(batch, sp.body, sp.end);
                let mut found = false;
                while let Some(t) = fields.next_field()? {
                    if t.number == span::TRACE_ID {
                        traces.push((trace_key(t.bytes(batch)), index));
                        found = true;
                    }
                }
                if !found {
                    // No trace id reads as the empty one, which is a trace too.
                    traces.push((trace_key(&[]), index));
                }
            }
        }
    }
    Ok(traces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(number: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        [&[number << 3 | 2, body.len() as u8][..], body].concat()
    }

    /// A ResourceSpans holding one span per trace id given (empty: no
    /// trace id field at all).
    fn resource(traces: &[&[u8]]) -> Vec<u8> {
        let spans: Vec<u8> =
            traces.iter().flat_map(|t| len_field(2, &if t.is_empty() { vec![0x28, 1] } else { len_field(1, t) })).collect();
        len_field(1, &len_field(2, &spans))
    }

    fn cuts_of(resources: &[Vec<u8>], parts: usize) -> Vec<usize> {
        split_points(&resources.concat(), parts)
    }

    fn offsets(resources: &[Vec<u8>]) -> Vec<usize> {
        resources
            .iter()
            .scan(0, |at, r| {
                *at += r.len();
                Some(*at)
            })
            .collect()
    }

    #[test]
    fn cuts_only_where_no_trace_crosses() {
        let (a, b, c) = (&[0xa1; 16][..], &[0xa2; 16][..], &[0xa3; 5][..]);
        let rs = [resource(&[a]), resource(&[a, b]), resource(&[b]), resource(&[c]), resource(&[c])];
        let at = offsets(&rs);
        // Only the cut before the fourth resource separates the traces.
        assert_eq!(cuts_of(&rs, 2), vec![at[2]]);
        assert!(cuts_of(&rs[..3], 2).is_empty());
        // Spans without a trace id share the empty one.
        let rs = [resource(&[b""]), resource(&[a]), resource(&[b""])];
        assert!(cuts_of(&rs, 2).is_empty());
    }

    #[test]
    fn parts_are_balanced_and_never_tiny() {
        let rs: Vec<Vec<u8>> = (0..8u8).map(|i| resource(&[&[i; 16]])).collect();
        let at = offsets(&rs);
        assert_eq!(cuts_of(&rs, 2), vec![at[3]]);
        assert_eq!(cuts_of(&rs, 4), vec![at[1], at[3], at[5]]);
        // More parts than resources: one cut per boundary at most.
        assert_eq!(cuts_of(&rs[..2], 8).len(), 1);
        // A part under a quarter of its share is not worth a core. (Five
        // spans of one trace per resource, for size.)
        let big = |t: u8| resource(&[&[t; 16][..]; 5]);
        let small = resource(&[&[1; 16]]);
        let rs = [small.clone(), big(9), big(8)];
        assert_eq!(cuts_of(&rs, 2), vec![offsets(&rs)[1]]);
        let rs = [small, big(9), big(9), big(9)];
        assert!(cuts_of(&rs, 2).is_empty());
    }

    #[test]
    fn nothing_to_cut() {
        assert!(split_points(&[], 2).is_empty());
        assert!(split_points(&resource(&[&[1; 16]]), 2).is_empty());
        let two = [resource(&[&[1; 16]]), resource(&[&[2; 16]])].concat();
        assert!(split_points(&two, 1).is_empty());
        // Not OTLP: the engine reports it on the whole batch.
        let mut bad = two.clone();
        bad.push(0x0a);
        assert!(split_points(&bad, 2).is_empty());
    }

    #[test]
    fn legacy_scope_spans_and_other_fields_count() {
        let (a, b) = (&[0xa1; 16][..], &[0xa2; 16][..]);
        // Field 1000 (instrumentation_library_spans), tag 0xc2 0x3e.
        let legacy = |t: &[u8]| {
            let spans = len_field(2, &len_field(1, t));
            let inner = [&[0xc2, 0x3e, spans.len() as u8][..], &spans].concat();
            len_field(1, &inner)
        };
        let rs = [legacy(a), resource(&[b]), legacy(a)];
        assert!(cuts_of(&rs, 2).is_empty());
        // An unknown top-level field is a boundary like any other.
        let rs = [resource(&[a]), len_field(9, b"x"), resource(&[b])];
        assert!(!cuts_of(&rs, 2).is_empty());
    }
}
