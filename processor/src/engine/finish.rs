//! Finish: once every span is known, drops spans and emptied containers,
//! settles length prefixes, counts masks and orders findings.

use crate::explain::{Finding, redact};
use crate::wire::{WireError, varint_len};

use super::walk::Walk;
use super::{Container, Delta, Edit, Fate, Op, try_collect};

impl<'a> Walk<'a, '_, '_> {
    /// Settles what the walk left open, once every span is known: drops
    /// spans and emptied containers, fixes container length prefixes, then
    /// counts the masks that remain and (when explaining) orders findings.
    ///
    /// The edits are rewritten in place: each dropped span or removed
    /// container becomes one Delete over its slot, which it always has (or
    /// widens the Delete right before it), so the list only shrinks.
    /// Returns which spans were dropped, by position (`None`: none was).
    pub(super) fn finish(&mut self) -> Result<Option<Vec<Fate>>, WireError> {
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
        // Dropped spans often come in runs (a probe and its subtree): a
        // deletion that starts where the last one ended extends it, and
        // the emitter makes one copy less (in the guest, one call less).
        fn delete(edits: &mut [Edit], w: &mut usize, start: usize, end: usize) {
            match edits[..*w].last_mut() {
                Some(last) if matches!(last.op, Op::Delete) && last.end == start => last.end = end,
                _ => put(edits, w, Edit::new(start, end, Op::Delete)),
            }
        }
        for rs in resources.iter() {
            while r < rs.slot {
                copy(edits, &mut w, r);
                r += 1;
            }
            let Some(op) = rs.settled else {
                delete(edits, &mut w, rs.start, rs.end);
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
                            delete(edits, &mut w, ss.start, ss.end);
                            r = ss.edits_end;
                            next_span = ss.children.1;
                        }
                    }
                    continue;
                }
                if next_span < spans.len() && spans[next_span].slot == r {
                    let sp = &spans[next_span];
                    if dropped(next_span) {
                        delete(edits, &mut w, sp.start, sp.end);
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
        // Every span sits in a scope of a resource, in batch order: a
        // resource's spans run from its first scope's first to its last
        // scope's last.
        for (resource, rs) in self.resources.iter().enumerate() {
            let scopes = &self.scopes[rs.children.0..rs.children.1];
            let first = scopes.first().map_or(0, |ss| ss.children.0);
            let end = scopes.last().map_or(0, |ss| ss.children.1);
            for (i, sp) in self.spans.iter().enumerate().take(end).skip(first) {
                let fate = fates.map_or(Fate::Keep, |f| f[i]);
                if !fate.dropped() {
                    continue;
                }
                mark(sp.findings);
                let rule = match fate {
                    Fate::Noisy(r) => Some(self.c.rule_name(r)),
                    _ => None,
                };
                dropped.push(Finding::Dropped {
                    resource: resource as u32,
                    trace_id: sp.trace_id.to_vec(),
                    span_id: sp.span_id.to_vec(),
                    rule,
                    path: redact(&{
                        // Audits show the path the rules matched.
                        let mut norm = Vec::new();
                        crate::path::normalise(sp.path, &mut norm);
                        norm
                    }),
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
