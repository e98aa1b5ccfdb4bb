//! The emitter: applies a settled plan to the batch, into a new buffer or
//! in place.

use crate::wire::{Problem, WireError, write_varint};

use super::{Op, Plan};

/// Applies `edits` (sorted, non-overlapping) to `buf`.
pub(super) fn emit(buf: &[u8], plan: &Plan, out: &mut Vec<u8>) -> Result<(), WireError> {
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
pub(super) fn emit_in_place(buf: &mut Vec<u8>, plan: &Plan) -> Result<(), WireError> {
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
