//! The walkers: one per OTLP message, validating it and recording the edits
//! that mask its values.

use crate::detect::{self, Hit, Style};
use crate::explain::{Finding, redact};
use crate::fnr::{self, Mode};
use crate::glob::GlobList;
use crate::otlp::{
    LIST_VALUES, any_value, event, ids, key_value, link, request, resource, resource_spans, scope,
    scope_spans, span, status,
};
use crate::path;
use crate::stats::{Counters, FieldKind};
use crate::wire::{
    Field, Fields, Problem, WireError, WireType, read_varint, varint_len, write_varint,
};

use super::layers::{ChainMemo, Judge, Judging, KeyFilter, Verdict, string_attribute};
use super::rules::{
    Compiled, FNR_IDS, Mask, Noise, path_attribute, path_attribute_walk, peek_key, string_after_key,
};
use super::{Container, Delta, Edit, MAX_VALUE_DEPTH, Op, SpanRec, room};

/// Validates the batch and records the edits.
pub(super) struct Walk<'a, 'c, 'f> {
    pub(super) buf: &'a [u8],
    pub(super) c: &'c Compiled,
    /// Set when explaining; then `ids` and `key` say where the walk is.
    pub(super) findings: Option<&'f mut Vec<Finding>>,
    /// (trace id, span id) of the span being walked; empty outside spans.
    pub(super) ids: (&'a [u8], &'a [u8]),
    /// Index of the `ResourceSpans` being walked; `None` outside them.
    pub(super) resource: Option<u32>,
    /// The top-level attribute key being walked.
    pub(super) key: &'a [u8],
    pub(super) edits: Vec<Edit>,
    pub(super) arena: Vec<u8>,
    pub(super) counters: Counters,
    pub(super) spans: Vec<SpanRec<'a>>,
    pub(super) scopes: Vec<Container>,
    pub(super) resources: Vec<Container>,
    /// Reused by glob matching to lowercase a path.
    pub(super) scratch: Vec<u8>,
    /// Inside an attribute value out of the mask scope that a detector with
    /// key globs of its own still scans: personal numbers are not masked.
    pub(super) fnr_off: bool,
    /// Inside an attribute value: bit i set when `mask.extra[i]` scans it.
    pub(super) active: u64,
    /// Reused by the general path for one text's matches.
    pub(super) hits: Vec<Hit>,
    /// Version 2's rules: the plan judging the current resource's spans,
    /// and what the current span's facts decided so far.
    pub(super) chain: Judge,
    /// The last resource's chain, and buffers (see `Layered::chain`).
    pub(super) chain_memo: ChainMemo<'a>,
    pub(super) judging: Judging<'a>,
    /// The keys a span attribute may be judged by: version 1's path keys,
    /// or the current resource's plan's (`Judge::keys`); empty without
    /// noise rules. Every span attribute takes this one test, whatever the
    /// version, and only those it lets through are read further.
    pub(super) span_keys: KeyFilter,
    /// The current resource's `teams.key` value.
    pub(super) team: &'a [u8],
    /// The current resource's mask: the platform's, or its team's when the
    /// team file adds masking; and that mask's `extras` and `general`.
    pub(super) mask: Option<&'c Mask>,
    pub(super) extras: bool,
    pub(super) general: bool,
}

impl<'a, 'c> Walk<'a, 'c, '_> {
    /// Masks with `mask` from here on (a resource's team may add masking).
    pub(super) fn set_mask(&mut self, mask: Option<&'c Mask>) {
        self.mask = mask;
        self.extras = mask.is_some_and(|m| m.extras);
        self.general = mask.is_some_and(|m| m.general);
    }

    /// Walks the length-delimited field `f` with `inner`, then records a new
    /// length prefix if its payload changed size. Returns the change in the
    /// whole field's size.
    ///
    /// Takes the field's offsets rather than `&Field`: where this is not
    /// inlined, a reference would make the caller store every field it
    /// reads to the guest's shadow stack (in linear memory) first.
    #[inline]
    pub(super) fn nested(
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
    pub(super) fn attribute(
        &mut self,
        f: &Field,
        kind: FieldKind,
        scan: bool,
    ) -> Result<Delta, WireError> {
        if self.findings.is_none() && plain_attribute(f.bytes(self.buf)) && !self.extras {
            return Ok(0);
        }
        self.nested(f.len_at, f.body, f.end, |w, s, e| w.key_value(s, e, kind, scan, 0))
    }

    /// Pushes a placeholder for the length prefix of `f`, settled later.
    pub(super) fn slot(&mut self, f: &Field) -> Result<usize, WireError> {
        room(&mut self.edits, "edits")?;
        self.edits.push(Edit::new(f.len_at, f.body, Op::Keep));
        Ok(self.edits.len() - 1)
    }

    fn findings_len(&self) -> usize {
        self.findings.as_ref().map_or(0, |f| f.len())
    }

    /// A container field walked by `inner`, as a record for `finish`.
    #[inline(never)]
    pub(super) fn container(
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

    pub(super) fn request(&mut self) -> Result<(), WireError> {
        let mut fields = Fields::new(self.buf, 0, self.buf.len());
        while let Some(f) = fields.next_field()? {
            if f.number == request::RESOURCE_SPANS {
                expect(&f, WireType::Len, "ExportTraceServiceRequest.resource_spans")?;
                // At most one per 2 bytes of a batch that fits in memory.
                self.resource = Some(self.resources.len() as u32);
                let rec = self.container(&f, |w| w.scopes.len(), Walk::resource_spans)?;
                room(&mut self.resources, "span records")?;
                self.resources.push(rec);
            } else {
                self.ids = (&[], &[]);
                self.resource = None;
                self.unknown(&f)?;
            }
        }
        Ok(())
    }

    /// Returns the size change of the resource; scope spans are recorded.
    pub(super) fn resource_spans(&mut self, start: usize, end: usize) -> Result<Delta, WireError> {
        let mut delta = 0;
        if let Some(layered) = self.c.noise.as_ref().and_then(|n| n.layered.as_deref()) {
            let (body, body_end) = resource_of(self.buf, start, end)?;
            (self.chain, self.team) =
                layered.chain(self.buf, body, body_end, &mut self.chain_memo)?;
            self.span_keys = self.chain.keys();
        }
        if !self.c.team_masks.is_empty() {
            let team = if self.c.noise.as_ref().is_some_and(|n| n.layered.is_some()) {
                self.team
            } else {
                resource_team(&self.c.team_key, self.buf, start, end)?
            };
            self.set_mask(self.c.mask_for(team));
        }
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
                resource_spans::SCHEMA_URL => {
                    expect(&f, WireType::Len, "ResourceSpans.schema_url")?;
                    self.ids = (&[], &[]);
                    delta += self.text(&f, FieldKind::SchemaUrl, true)?;
                }
                _ => self.unknown(&f)?,
            }
        }
        Ok(delta)
    }

    /// Returns the size change of the scope; spans are recorded. Out of
    /// line in the guest, where inlined it made the span walk's loop spill
    /// more.
    #[cfg_attr(target_arch = "wasm32", inline(never))]
    pub(super) fn scope_spans(&mut self, start: usize, end: usize) -> Result<Delta, WireError> {
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
                scope_spans::SCHEMA_URL => {
                    expect(&f, WireType::Len, "ScopeSpans.schema_url")?;
                    self.ids = (&[], &[]);
                    delta += self.text(&f, FieldKind::SchemaUrl, true)?;
                }
                _ => self.unknown(&f)?,
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
            team: self.team,
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

    /// Judges a span attribute that `span_keys` let through (or one of
    /// an unusual shape): by version 2's rules, or version 1's path keys.
    /// Out of line: most attributes never get here, and inlined it made
    /// the span walk's loop spill more.
    #[inline(never)]
    fn judge_attribute(
        &mut self,
        rec: &mut SpanRec<'a>,
        kv_body: usize,
        kv_end: usize,
    ) -> Result<(), WireError> {
        let Some(noise) = self.c.noise.as_ref() else { return Ok(()) };
        if noise.layered.is_none() {
            if rec.rule.is_none()
                && let Some(value) = path_attribute(noise, self.buf, kv_body, kv_end)?
            {
                noise.check_path(rec, path::from_attribute(value), &mut self.scratch);
            }
            return Ok(());
        }
        if self.judging.settled() {
            return Ok(());
        }
        let Some((key, after)) = peek_key(&self.buf[kv_body..kv_end]) else {
            // Another shape: read in full, and judged by the key it ends with.
            self.gather_path(noise, kv_body, kv_end)?;
            if !self.judging.settled() {
                self.gather_attr_walked(kv_body, kv_end)?;
            }
            return Ok(());
        };
        if noise.is_path_key(key) {
            // The usual shape, or the field walk (see `path_attribute`).
            let value = match string_after_key(after) {
                Some(value) => Some(value),
                None => path_attribute_walk(noise, self.buf, kv_body, kv_end)?,
            };
            if let Some(value) = value {
                self.chain.path(&mut self.judging, path::from_attribute(value), &mut self.scratch);
            }
        }
        if self.judging.settled() {
            return Ok(());
        }
        match string_after_key(after) {
            // The value's first byte first: it rules out most values of a
            // rule's key without a key lookup.
            Some(value) => {
                if self.chain.attr_value_may_match(value)
                    && let Some(at) = self.chain.attr_key(key)
                {
                    self.chain.attr_at(&mut self.judging, at, value, &mut self.scratch);
                }
            }
            None => {
                if self.chain.attr_key(key).is_some() {
                    self.gather_attr_walked(kv_body, kv_end)?;
                }
            }
        }
        Ok(())
    }

    /// Judges a span attribute read field by field: by the key it ends
    /// with, as protobuf keeps the last.
    fn gather_attr_walked(&mut self, kv_body: usize, kv_end: usize) -> Result<(), WireError> {
        if let Some((key, value)) = string_attribute(self.buf, kv_body, kv_end)? {
            self.chain.attr(&mut self.judging, key, value, &mut self.scratch);
        }
        Ok(())
    }

    /// Judges the path of a span attribute, when its key is a path key.
    #[inline(always)]
    fn gather_path(
        &mut self,
        noise: &Noise,
        kv_body: usize,
        kv_end: usize,
    ) -> Result<(), WireError> {
        if let Some(value) = path_attribute(noise, self.buf, kv_body, kv_end)? {
            self.chain.path(&mut self.judging, path::from_attribute(value), &mut self.scratch);
        }
        Ok(())
    }

    pub(super) fn scope(&mut self, start: usize, end: usize) -> Result<Delta, WireError> {
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
                _ => self.unknown(&f)?,
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
            } else {
                self.unknown(&f)?;
            }
        }
        Ok(delta)
    }

    /// Walks a span's fields, filling in what noise detection needs.
    pub(super) fn span(
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
        self.judging.start();
        let mut name: Option<&'a [u8]> = None;
        let mut kind = 0;
        let mut delta = 0;
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                span::TRACE_ID => {
                    expect(&f, WireType::Len, "Span.trace_id")?;
                    rec.trace_id = id(&f, self.buf, "Span.trace_id", ids::TRACE, false)?;
                }
                span::SPAN_ID => {
                    expect(&f, WireType::Len, "Span.span_id")?;
                    rec.span_id = id(&f, self.buf, "Span.span_id", ids::SPAN, false)?;
                }
                span::PARENT_SPAN_ID => {
                    expect(&f, WireType::Len, "Span.parent_span_id")?;
                    rec.parent_id = id(&f, self.buf, "Span.parent_span_id", ids::SPAN, true)?;
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
                    // Most keys are neither a path key nor a rule's: one
                    // peek at the key (see `peek_key`) rules them out.
                    if peek_key(f.bytes(self.buf)).is_none_or(|(k, _)| self.span_keys.may_hold(k)) {
                        self.judge_attribute(rec, f.body, f.end)?;
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
                _ => self.unknown(&f)?,
            }
        }
        // An absent id reads as empty, which no span may have.
        required_ids((rec.trace_id, rec.span_id), start, ("Span.trace_id", "Span.span_id"))?;
        if let Some(noise) = noise
            && noise.layered.is_some()
        {
            let name = name.unwrap_or_default();
            if noise.span_name
                && kind == span::KIND_SERVER
                && let Some(p) = path::from_span_name(name)
            {
                self.chain.path(&mut self.judging, p, &mut self.scratch);
            }
            rec.path = self.judging.first_path();
            rec.rule = match self.chain.verdict(&self.judging, name, &mut self.scratch) {
                Some(Verdict::Drop(id)) => Some(id),
                Some(Verdict::Keep) | None => None,
            };
        } else if let Some(noise) = noise
            && rec.rule.is_none()
            && noise.span_name
            && kind == span::KIND_SERVER
            && let Some(p) = name.and_then(path::from_span_name)
        {
            noise.check_path(rec, p, &mut self.scratch);
        }
        Ok(delta)
    }

    pub(super) fn event(
        &mut self,
        start: usize,
        end: usize,
        scan: bool,
    ) -> Result<Delta, WireError> {
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
                _ => self.unknown(&f)?,
            }
        }
        Ok(delta)
    }

    pub(super) fn link(
        &mut self,
        start: usize,
        end: usize,
        scan: bool,
    ) -> Result<Delta, WireError> {
        let mut delta = 0;
        let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
        let mut fields = Fields::new(self.buf, start, end);
        while let Some(f) = fields.next_field()? {
            match f.number {
                link::TRACE_ID => {
                    expect(&f, WireType::Len, "Span.Link.trace_id")?;
                    trace_id = id(&f, self.buf, "Span.Link.trace_id", ids::TRACE, false)?;
                }
                link::SPAN_ID => {
                    expect(&f, WireType::Len, "Span.Link.span_id")?;
                    span_id = id(&f, self.buf, "Span.Link.span_id", ids::SPAN, false)?;
                }
                link::TRACE_STATE => {
                    expect(&f, WireType::Len, "Span.Link.trace_state")?;
                    delta += self.text(&f, FieldKind::TraceState, scan)?;
                }
                link::ATTRIBUTES => {
                    expect(&f, WireType::Len, "Span.Link.attributes")?;
                    delta += self.attribute(&f, FieldKind::LinkAttribute, scan)?;
                }
                _ => self.unknown(&f)?,
            }
        }
        required_ids((trace_id, span_id), start, ("Span.Link.trace_id", "Span.Link.span_id"))?;
        Ok(delta)
    }

    pub(super) fn status(
        &mut self,
        start: usize,
        end: usize,
        scan: bool,
    ) -> Result<Delta, WireError> {
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
    pub(super) fn key_value(
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
            && let Some(keys) = self.mask.and_then(|m| m.keys.as_ref())
        {
            scan_values = self.key_matches(keys, start, end)?;
        }
        // Other detectors may have key globs of their own: which of them
        // scan this attribute's value is settled here, for every depth.
        let saved = if depth == 0 && self.extras {
            let saved = (self.fnr_off, self.active);
            let bits = self.extra_bits(scan && self.scans(kind), scan_values, start, end)?;
            self.fnr_off = !scan_values;
            self.active = bits;
            scan_values |= bits != 0;
            Some(saved)
        } else {
            None
        };
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
                _ => self.unknown(&f)?,
            }
        }
        if let Some((fnr_off, active)) = saved {
            (self.fnr_off, self.active) = (fnr_off, active);
        }
        Ok(delta)
    }

    /// Which other detectors scan the value of the top-level KeyValue at
    /// `start..end`: those without key globs when the mask scope does
    /// (`in_scope`), those with globs when its field kind is scanned
    /// (`in_fields`) and they match its key.
    fn extra_bits(
        &self,
        in_fields: bool,
        in_scope: bool,
        start: usize,
        end: usize,
    ) -> Result<u64, WireError> {
        let Some(mask) = self.mask else { return Ok(0) };
        if !in_fields {
            return Ok(0);
        }
        let mut bits = if in_scope { mask.scoped_bits } else { 0 };
        if mask.extra.iter().any(|x| x.keys.is_some()) {
            let key = self.last_len_field(start, end, key_value::KEY)?;
            for (i, x) in mask.extra.iter().enumerate() {
                if let Some(keys) = &x.keys
                    && keys.is_match(key, &mut Vec::new())
                {
                    bits |= 1 << i;
                }
            }
        }
        Ok(bits)
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
    fn record(&mut self, kind: FieldKind, detector: u16) {
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
                resource: self.resource,
                trace_id: self.ids.0.to_vec(),
                span_id: self.ids.1.to_vec(),
                field: kind,
                key,
                detector: self.c.detector_names[usize::from(detector)].clone(),
            });
        }
    }

    pub(super) fn any_value(
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
                _ => self.unknown(&f)?,
            }
        }
        Ok(delta)
    }

    /// ArrayValue (`values` are AnyValues) or KeyValueList (`values` are KeyValues).
    pub(super) fn list(
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
            } else {
                self.unknown(&f)?;
            }
        }
        Ok(delta)
    }

    fn scans(&self, kind: FieldKind) -> bool {
        self.mask.is_some_and(|m| m.fields[kind.index()])
    }

    /// Masks the numbers in the payload of the string or bytes field `f`.
    #[inline(always)]
    pub(super) fn text(
        &mut self,
        f: &Field,
        kind: FieldKind,
        scan: bool,
    ) -> Result<Delta, WireError> {
        // The check is inline and the masking is not: most text holds no
        // number, and the caller's field then never leaves registers for a
        // call (in the wasm guest, a struct passed to a call is stored to
        // the shadow stack in linear memory first).
        if !scan || !self.scans(kind) {
            return Ok(0);
        }
        // Other detectors find text with no digits at all.
        if !fnr::may_contain(&self.buf[f.body..f.end]) && !self.extras {
            return Ok(0);
        }
        self.mask_text(f.len_at, f.body, f.end, kind)
    }

    /// A field the walker does not know (a newer schema's, or a sender's
    /// own). Only a length-delimited one can hold text, and its numbers are
    /// starred in place, whatever the replacement: it may be a nested
    /// message whose length prefixes the walker cannot fix, and stars keep
    /// every length. Refusing the batch instead would lose every span of it
    /// to one field a newer SDK added; passing it would leak.
    #[inline(always)]
    pub(super) fn unknown(&mut self, f: &Field) -> Result<(), WireError> {
        if f.wire != WireType::Len
            || !self.scans(FieldKind::UnknownField)
            || !fnr::may_contain(&self.buf[f.body..f.end])
        {
            return Ok(());
        }
        self.star_unknown(f.body, f.end)
    }

    #[inline(never)]
    fn star_unknown(&mut self, body: usize, end: usize) -> Result<(), WireError> {
        let Some(mask) = self.mask else { return Ok(()) };
        let c = mask.star.unwrap_or(b'*');
        let text = &self.buf[body..end];
        let (edits, arena) = (&mut self.edits, &mut self.arena);
        let mut found_any = Vec::new();
        let mut out_of_memory = false;
        fnr::scan(text, mask.mode, |found| {
            out_of_memory |=
                push_stars(edits, arena, text, body, &found, c, FieldKind::UnknownField).is_err();
            if found_any.try_reserve(1).is_ok() {
                found_any.push(found.detector.index() as u16);
            }
        });
        if out_of_memory {
            return Err(WireError::new(body, Problem::OutOfMemory("edits")));
        }
        for d in found_any {
            self.record(FieldKind::UnknownField, d);
        }
        Ok(())
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
        if self.general {
            return self.mask_general(len_at, body, end, kind);
        }
        let Some(mask) = self.mask else { return Ok(0) };
        let text = &self.buf[body..end];
        let first = self.edits.len();
        let (edits, arena, base) = (&mut self.edits, &mut self.arena, body);
        let mut delta = 0;
        let mut out_of_memory = false;
        fnr::scan(text, mask.mode, |found| {
            if room(edits, "edits").is_err() {
                out_of_memory = true;
                return;
            }
            let (start, end) = (base + found.start, base + found.end);
            let masked = Some((found.detector.index() as u16, kind));
            match mask.star {
                Some(c) => {
                    out_of_memory |= push_stars(edits, arena, text, base, &found, c, kind).is_err()
                }
                None => {
                    delta += mask.label.len() as isize - (end - start) as isize;
                    let op = Op::Arena { from: 0, to: mask.label.len() };
                    edits.push(Edit { start, end, op, mask: masked });
                }
            }
        });
        if out_of_memory {
            return Err(WireError::new(body, Problem::OutOfMemory("edits")));
        }
        if self.findings.is_some() {
            // Audits only: a second scan keeps the hot closure above small.
            let mut detectors = Vec::new();
            fnr::scan(text, mask.mode, |found| detectors.push(found.detector.index() as u16));
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

    /// [`Walk::mask_text`] when other detectors are on or numbers become
    /// pseudonyms: every detector that scans here reports its matches,
    /// overlapping matches are merged (the lowest detector id names the
    /// union; privacy fails closed), and each is replaced from the arena.
    #[inline(never)]
    fn mask_general(
        &mut self,
        len_at: usize,
        body: usize,
        end: usize,
        kind: FieldKind,
    ) -> Result<Delta, WireError> {
        let (c, buf) = (self.c, self.buf);
        let Some(mask) = self.mask else { return Ok(0) };
        let text = &buf[body..end];
        let value = matches!(
            kind,
            FieldKind::SpanAttribute
                | FieldKind::EventAttribute
                | FieldKind::LinkAttribute
                | FieldKind::ResourceAttribute
                | FieldKind::ScopeAttribute
        );
        // Attribute values were settled by their key; other text is in the
        // mask scope (the walk only gets here when its field kind is).
        let (fnr_on, bits) =
            if value { (!self.fnr_off, self.active) } else { (true, mask.scoped_bits) };
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let mut out_of_memory = false;
        let mut push = |hits: &mut Vec<Hit>, start: usize, end: usize, detector: u8| {
            if room(hits, "matches").is_err() {
                out_of_memory = true;
            } else {
                hits.push(Hit { start, end, detector });
            }
        };
        if fnr_on && fnr::may_contain(text) {
            fnr::scan(text, mask.mode, |f| {
                push(&mut hits, f.start, f.end, f.detector.index() as u8)
            });
        }
        for (i, x) in mask.extra.iter().enumerate() {
            if bits & (1 << i) != 0 {
                x.scan(text, &mut |s, e| push(&mut hits, s, e, FNR_IDS + i as u8));
            }
        }
        if out_of_memory {
            return Err(WireError::new(body, Problem::OutOfMemory("matches")));
        }
        let exact = detect::merge(&mut hits);
        let first = self.edits.len();
        let mut delta = 0;
        let mut value_buf = Vec::new();
        for (h, &exact) in hits.iter().zip(&exact) {
            let (style, numeric, name) = match h.detector.checked_sub(FNR_IDS) {
                None => (&mask.style, true, c.detector_names[usize::from(h.detector)].as_str()),
                Some(i) => {
                    let x = &mask.extra[usize::from(i)];
                    (&x.style, x.numeric, x.name.as_str())
                }
            };
            let src = &text[h.start..h.end];
            let from = self.arena.len();
            self.arena
                .try_reserve(src.len().max(64))
                .map_err(|_| WireError::new(body, Problem::OutOfMemory("masked values")))?;
            match (style, &mask.keyed) {
                (Style::Stars(ch), _) if numeric && exact => {
                    detect::star_digits(src, *ch, &mut self.arena)
                }
                (Style::Stars(ch), _) => self.arena.extend(std::iter::repeat_n(*ch, src.len())),
                (Style::Label(l), _) => self.arena.extend_from_slice(l),
                (Style::Hmac, Some(keyed)) => {
                    // The value as the detector reads it, so that one
                    // person's number written two ways is one pseudonym.
                    value_buf.clear();
                    if numeric && exact {
                        value_buf = detect::digits_of(src);
                        if name == "phone-no" && value_buf.len() > 8 {
                            value_buf.drain(..value_buf.len() - 8);
                        }
                    } else if exact && name == "email" {
                        value_buf.extend(src.iter().map(u8::to_ascii_lowercase));
                    } else {
                        value_buf.extend_from_slice(src);
                    }
                    keyed.pseudonym(name, &value_buf, &mut self.arena);
                }
                // Compiled::new refuses hmac without a key.
                (Style::Hmac, None) => self.arena.extend(std::iter::repeat_n(b'*', src.len())),
            }
            let to = self.arena.len();
            room(&mut self.edits, "edits")?;
            self.edits.push(Edit {
                start: body + h.start,
                end: body + h.end,
                op: Op::Arena { from, to },
                mask: Some((mask.id(h.detector), kind)),
            });
            delta += (to - from) as isize - (h.end - h.start) as isize;
            self.record(kind, mask.id(h.detector));
        }
        self.hits = hits;
        if delta != 0 {
            let new_len = (end - body) as isize + delta;
            room(&mut self.edits, "edits")?;
            self.edits.insert(first, Edit::new(len_at, body, Op::Len(new_len as u64)));
            delta += varint_len(new_len as u64) as isize - (body - len_at) as isize;
        }
        Ok(delta)
    }

    /// Masks an int (or whole double) value whose decimal form holds a
    /// personal number; the field becomes a string field with the masked text.
    pub(super) fn number(
        &mut self,
        f: &Field,
        v: i64,
        kind: FieldKind,
    ) -> Result<Delta, WireError> {
        let Some(mask) = self.mask else { return Ok(0) };
        if self.fnr_off {
            return Ok(0);
        }
        let Some((digits, padded)) = int_digits(v) else { return Ok(0) };
        // A padded 10-digit int only counts when it validates, even in
        // `any11`: most 10-digit ints are epoch seconds.
        let mode = if padded { Mode::Validated } else { mask.mode };
        let mut found_any = None;
        fnr::scan(&digits, mode, |found| found_any = Some(found));
        let Some(found) = found_any else { return Ok(0) };
        let detector = found.detector.index() as u16;
        self.record(kind, detector);
        let sign: &[u8] = if v < 0 { b"-" } else { b"" };
        let masked: Vec<u8> = match (&mask.style, &mask.keyed, mask.star) {
            (Style::Hmac, Some(keyed), _) => {
                let mut p = sign.to_vec();
                keyed.pseudonym(found.detector.name(), &digits, &mut p);
                p
            }
            (_, _, Some(c)) => [sign, &[c; 11]].concat(),
            (_, _, None) => [sign, &mask.label].concat(),
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
            mask: Some((detector, kind)),
        });
        Ok((to - from) as isize - (f.end - f.start) as isize)
    }
}

/// Where the `resource` of the ResourceSpans at `start..end` is (its last
/// occurrence, as protobuf readers keep; empty at `end` when absent). Found
/// first, as it may follow the spans on the wire.
fn resource_of(buf: &[u8], start: usize, end: usize) -> Result<(usize, usize), WireError> {
    let mut resource = (end, end);
    let mut fields = Fields::new(buf, start, end);
    while let Some(f) = fields.next_field()? {
        if f.number == resource_spans::RESOURCE && f.wire == WireType::Len {
            resource = (f.body, f.end);
        }
    }
    Ok(resource)
}

/// The `key` attribute's string value of the ResourceSpans at `start..end`,
/// or empty: the resource's team, when no noise layers read it already.
fn resource_team<'a>(
    key: &[u8],
    buf: &'a [u8],
    start: usize,
    end: usize,
) -> Result<&'a [u8], WireError> {
    let (body, body_end) = resource_of(buf, start, end)?;
    let mut team: &'a [u8] = &[];
    let mut attrs = Fields::new(buf, body, body_end);
    while let Some(a) = attrs.next_field()? {
        if a.number == resource::ATTRIBUTES
            && a.wire == WireType::Len
            && let Some((k, v)) = string_attribute(buf, a.body, a.end)?
            && k == key
        {
            team = v;
        }
    }
    Ok(team)
}

/// Stars the number `found` in `text` (at `base` in the batch): its digits
/// become `c`, its length kept. A number with a percent escape in it (an
/// encoded separator such as `%20`, or encoded digits `%31%33...`) is
/// written to `arena` by [`detect::star_digits`]: encoded digits become `c`
/// encoded and other escapes are kept, so a URL stays valid and keeps its
/// separator. `Err` when memory for the edits ran out.
fn push_stars(
    edits: &mut Vec<Edit>,
    arena: &mut Vec<u8>,
    text: &[u8],
    base: usize,
    found: &fnr::Found,
    c: u8,
    kind: FieldKind,
) -> Result<(), WireError> {
    let (start, end) = (base + found.start, base + found.end);
    let mask = Some((found.detector.index() as u16, kind));
    room(edits, "edits")?;
    let number = &text[found.start..found.end];
    if number.contains(&b'%') {
        let from = arena.len();
        arena
            .try_reserve(number.len())
            .map_err(|_| WireError::new(start, Problem::OutOfMemory("masked values")))?;
        detect::star_digits(number, c, arena);
        edits.push(Edit { start, end, op: Op::Arena { from, to: arena.len() }, mask });
    } else {
        edits.push(Edit { start, end, op: Op::Star(c), mask });
    }
    Ok(())
}

/// The id in `f`, checked against the one length OTLP allows (or empty,
/// where `may_be_empty`: a root's parent). An id of another length is no
/// OTLP span: often another signal's request sent as traces, or a field
/// used to smuggle text past the scanner.
#[inline(always)]
fn id<'a>(
    f: &Field,
    buf: &'a [u8],
    what: &'static str,
    len: usize,
    may_be_empty: bool,
) -> Result<&'a [u8], WireError> {
    let bytes = f.bytes(buf);
    if bytes.len() == len || (may_be_empty && bytes.is_empty()) {
        Ok(bytes)
    } else {
        Err(id_length(f.start, what, bytes.len(), len, may_be_empty))
    }
}

/// A span's or link's ids once all its fields are read: an absent id reads
/// as empty, which neither may have.
#[inline(always)]
fn required_ids(
    (trace_id, span_id): (&[u8], &[u8]),
    at: usize,
    (trace_what, span_what): (&'static str, &'static str),
) -> Result<(), WireError> {
    if trace_id.is_empty() {
        return Err(id_length(at, trace_what, 0, ids::TRACE, false));
    }
    if span_id.is_empty() {
        return Err(id_length(at, span_what, 0, ids::SPAN, false));
    }
    Ok(())
}

#[cold]
fn id_length(
    at: usize,
    what: &'static str,
    len: usize,
    want: usize,
    may_be_empty: bool,
) -> WireError {
    let allowed = match (want, may_be_empty) {
        (ids::TRACE, _) => "16 bytes",
        (_, true) => "8 bytes or none",
        _ => "8 bytes",
    };
    WireError::new(at, Problem::IdLength { what, len, allowed })
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

#[inline(always)]
pub(super) fn expect(f: &Field, wire: WireType, what: &'static str) -> Result<(), WireError> {
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
pub(super) fn plain_attribute(body: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use prost::Message;

    use super::super::tests::{FNR, kv, s};
    use super::{Walk, plain_attribute};
    use crate::engine::Compiled;
    use crate::stats::Counters;

    /// The usual attributes, with no number in them, take the fast path: a
    /// string, an int outside the 10 to 11 digit range, a bool, and a string
    /// with a digit run shorter than six.
    #[test]
    fn plain_attributes_take_the_fast_path() {
        let plain = [
            kv("http.request.method", s("GET")),
            kv("http.response.status_code", Value::IntValue(200)),
            kv("db.statement", s("SELECT * FROM orders WHERE id = $1 LIMIT 50")),
            kv("net.peer.port", Value::IntValue(999_999_999)),
            kv("error", Value::BoolValue(true)),
            kv("user.code", s("ab12345cd")),
        ];
        for attribute in plain {
            assert!(plain_attribute(&attribute.encode_to_vec()), "{attribute:?}");
        }
        for holds_number in [
            kv("db.statement", s(&format!("id = {FNR}"))),
            kv("id", Value::IntValue(1_019_012_138)),
        ] {
            assert!(!plain_attribute(&holds_number.encode_to_vec()), "{holds_number:?}");
        }
    }

    proptest::proptest! {
        /// Scenario: KeyValues of every shape the fast path accepts or nearly
        /// accepts (keys and values with digit runs, ints around the 10 to 11
        /// digit range, bools, long values with two-byte lengths, some holding
        /// a number).
        /// Guarantees: whenever `plain_attribute` skips one, the general walk,
        /// under the widest masking config, records no edit and no error for it.
        #[test]
        fn plain_attributes_need_no_edits(
            key in "[a-z.0-9]{0,12}",
            text in "[a-z /=]{0,10}[0-9]{0,12}[ -]?[0-9]{0,6}[a-z/]{0,10}|[a-z0-9 ]{100,140}|[a-z ]{90,130}[0-9]{5,11}[a-z ]{0,20}",
            int in proptest::prop_oneof![proptest::num::i64::ANY, -200_000_000_000i64..200_000_000_000],
            which in 0..3u8,
        ) {
            let value = match which {
                0 => AnyValue { value: Some(Value::StringValue(text)) },
                1 => AnyValue { value: Some(Value::IntValue(int)) },
                _ => AnyValue { value: Some(Value::BoolValue(int % 2 == 0)) },
            };
            let body = KeyValue { key, value: Some(value), ..Default::default() }.encode_to_vec();
            if plain_attribute(&body) {
                for cfg in [r#"{"mask":{"mode":"any11"}}"#, r#"{"mask":{"replacement":"label"}}"#] {
                    let c = Compiled::new(&crate::config::Config::from_json(cfg).expect("config")).expect("compiles");
                    let mut walk = Walk {
                        buf: &body, c: &c, edits: Vec::new(), arena: Vec::new(), counters: Counters::new(0, 5), findings: None, fnr_off: false, active: 0, hits: Vec::new(),
                        ids: (&[], &[]), resource: None, key: &[], spans: Vec::new(), scopes: Vec::new(), resources: Vec::new(), scratch: Vec::new(), chain: Default::default(), chain_memo: Default::default(), judging: Default::default(), span_keys: Default::default(), team: &[],
                        mask: None, extras: false, general: false,
                    };
                    walk.set_mask(c.mask.as_ref());
                    let delta = walk.key_value(0, body.len(), crate::FieldKind::SpanAttribute, true, 0).expect("valid");
                    proptest::prop_assert_eq!(delta, 0);
                    proptest::prop_assert!(walk.edits.is_empty(), "{:?}", walk.edits);
                }
            }
        }
    }
}
