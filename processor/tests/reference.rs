//! The wire-level engine against a naive reference.
//!
//! [`Reference`] re-implements the processor's rules on decoded prost
//! structs: plain loops, clones and `String`s, nothing clever. It shares only
//! the leaf helpers with the engine (`fnr::scan`, `glob::GlobList`,
//! `path::from_attribute`, `path::from_span_name`, `path::normalise`), so
//! what it checks is the engine's walking, dropping, container removal,
//! masking and re-encoding.
//!
//! The property tests run on batches from one generator ([`batch`]): random
//! resources, scopes and spans, attributes of every `AnyValue` kind nested a
//! few levels, events, links and statuses, noisy spans whose children and
//! grandchildren sit in other scopes, ids from a small pool so that parent
//! links (and ids) collide, and valid personal numbers planted in every field
//! kind, whole, split (`DDMMYY-NNNNN`, `DDMMYY NNNNN`) and as int or double
//! values.
//!
//! The privacy invariant is checked with a finder written here from the
//! rules ([`naive_numbers`], [`naive_valid`]), not with `fnr.rs`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;
use tracescrub_processor::config::Replacement;
use tracescrub_processor::fnr::{self, Detector, Mode};
use tracescrub_processor::glob::GlobList;
use tracescrub_processor::{Config, Count, FieldKind, Processor, Stats, path, redact};

// The fuzz targets' checks; this file uses their `by_name`.
#[allow(dead_code)]
#[path = "fuzz_regressions/checks.rs"]
mod checks;

// ---------------------------------------------------------------------------
// The reference processor
// ---------------------------------------------------------------------------

/// What the reference made of a batch.
struct RefOut {
    batch: ExportTraceServiceRequest,
    stats: Stats,
    /// Per span, in batch order: kept in the output.
    kept: Vec<bool>,
    /// Per span, in batch order: at least one number in it was masked.
    masked: Vec<bool>,
    /// Per ScopeSpans, in batch order: kept in the output.
    kept_scopes: Vec<bool>,
    /// Per ResourceSpans, in batch order: kept in the output.
    kept_resources: Vec<bool>,
}

/// Masked-value counts, by detector and by field kind.
struct Tally {
    by_detector: Vec<u64>,
    by_field: Vec<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally { by_detector: vec![0; Detector::ALL.len()], by_field: vec![0; FieldKind::ALL.len()] }
    }

    fn add(&mut self, detector: Detector, field: FieldKind) {
        let d = Detector::ALL.iter().position(|x| *x == detector).unwrap();
        let f = FieldKind::ALL.iter().position(|x| *x == field).unwrap();
        self.by_detector[d] += 1;
        self.by_field[f] += 1;
    }

    fn total(&self) -> u64 {
        self.by_detector.iter().sum()
    }
}

/// Named counts with the zeros left out, as `Stats` lists them.
fn named(names: &[String], values: &[u64]) -> Vec<Count> {
    let mut out = Vec::new();
    for (name, value) in names.iter().zip(values) {
        if *value > 0 {
            out.push(Count { name: name.clone(), value: *value });
        }
    }
    out
}

/// The processor's rules, applied to prost structs.
struct Reference {
    cfg: Config,
    /// The noise globs, when noise filtering is on and has any.
    globs: Option<GlobList>,
    /// `mask.scope.keys`, compiled.
    keys: Option<GlobList>,
}

impl Reference {
    fn new(config_json: &str) -> Reference {
        let cfg = Config::from_json(config_json).unwrap();
        let globs = if cfg.noise.enabled && !cfg.noise.globs.is_empty() {
            Some(GlobList::new(&cfg.noise.globs, cfg.noise.case_sensitive).unwrap())
        } else {
            None
        };
        let keys = cfg.mask.keys.as_ref().map(|k| GlobList::new(k, true).unwrap());
        Reference { cfg, globs, keys }
    }

    fn run(&self, req: &ExportTraceServiceRequest) -> RefOut {
        // Every span, in batch order.
        let mut spans: Vec<&Span> = Vec::new();
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    spans.push(sp);
                }
            }
        }
        let n = spans.len();

        // Noise: which glob each span matched, if any.
        let mut rule: Vec<Option<usize>> = vec![None; n];
        if let Some(globs) = &self.globs {
            for i in 0..n {
                rule[i] = self.noise_rule(globs, spans[i]);
            }
        }
        // Descendants: a span goes if following parent links (same trace id,
        // parent_span_id equal to a span id, in this batch) from it reaches
        // a noisy span. Where ids repeat, a span has several parents and
        // every one of them is followed.
        let mut dropped: Vec<bool> = rule.iter().map(|r| r.is_some()).collect();
        let mut descendants = 0;
        if self.cfg.noise.drop_descendants {
            for i in 0..n {
                if rule[i].is_none() && reaches_noise(&spans, &rule, i) {
                    dropped[i] = true;
                    descendants += 1;
                }
            }
        }

        let mut tally = Tally::new();
        let mut out = ExportTraceServiceRequest::default();
        let mut kept = vec![false; n];
        let mut masked = vec![false; n];
        let mut kept_scopes = Vec::new();
        let mut kept_resources = Vec::new();
        let mut ordinal = 0;
        for rs in &req.resource_spans {
            let mut rs_out = rs.clone();
            rs_out.scope_spans.clear();
            let mut total = 0;
            let mut kept_here = 0;
            let mut scopes_here = Vec::new();
            // The resource and scopes are masked only if they stay, so
            // counts for them go to a tally of their own until then.
            let mut container_tally = Tally::new();
            for ss in &rs.scope_spans {
                let mut ss_out = ss.clone();
                ss_out.spans.clear();
                for sp in &ss.spans {
                    total += 1;
                    let i = ordinal;
                    ordinal += 1;
                    if dropped[i] {
                        continue;
                    }
                    kept_here += 1;
                    kept[i] = true;
                    let mut sp = sp.clone();
                    let before = tally.total();
                    self.mask_span(&mut sp, &mut tally);
                    masked[i] = tally.total() > before;
                    ss_out.spans.push(sp);
                }
                if !ss.spans.is_empty() && ss_out.spans.is_empty() {
                    scopes_here.push(false);
                    continue;
                }
                scopes_here.push(true);
                if let Some(scope) = &mut ss_out.scope {
                    self.mask_string(FieldKind::ScopeInfo, &mut scope.name, &mut container_tally);
                    self.mask_string(
                        FieldKind::ScopeInfo,
                        &mut scope.version,
                        &mut container_tally,
                    );
                    self.mask_attributes(
                        FieldKind::ScopeAttribute,
                        &mut scope.attributes,
                        &mut container_tally,
                    );
                }
                self.mask_string(
                    FieldKind::SchemaUrl,
                    &mut ss_out.schema_url,
                    &mut container_tally,
                );
                rs_out.scope_spans.push(ss_out);
            }
            if total > 0 && kept_here == 0 {
                kept_resources.push(false);
                kept_scopes.extend(scopes_here.iter().map(|_| false));
                continue;
            }
            kept_resources.push(true);
            kept_scopes.extend(scopes_here);
            self.mask_string(FieldKind::SchemaUrl, &mut rs_out.schema_url, &mut container_tally);
            if let Some(resource) = &mut rs_out.resource {
                self.mask_attributes(
                    FieldKind::ResourceAttribute,
                    &mut resource.attributes,
                    &mut container_tally,
                );
            }
            for (t, c) in tally.by_detector.iter_mut().zip(&container_tally.by_detector) {
                *t += c;
            }
            for (t, c) in tally.by_field.iter_mut().zip(&container_tally.by_field) {
                *t += c;
            }
            out.resource_spans.push(rs_out);
        }

        let mut by_rule = vec![0u64; self.cfg.noise.globs.len()];
        for r in rule.iter().flatten() {
            by_rule[*r] += 1;
        }
        let noisy: u64 = by_rule.iter().sum();
        let detector_names: Vec<String> =
            Detector::ALL.iter().map(|d| d.name().to_owned()).collect();
        let field_names: Vec<String> = FieldKind::ALL.iter().map(|k| k.name().to_owned()).collect();
        let stats = Stats {
            spans_in: n as u64,
            spans_out: n as u64 - noisy - descendants,
            spans_dropped: noisy + descendants,
            dropped_by_rule: named(
                &self.cfg.noise.globs.iter().map(|g| redact(g.as_bytes())).collect::<Vec<_>>(),
                &by_rule,
            ),
            dropped_descendants: descendants,
            values_masked: tally.total(),
            masked_by_detector: named(&detector_names, &tally.by_detector),
            masked_by_field: named(&field_names, &tally.by_field),
        };
        RefOut { batch: out, stats, kept, masked, kept_scopes, kept_resources }
    }

    /// The index of the first glob matched by the span's path, normalised:
    /// the first path attribute (in attribute order) whose string value
    /// matches, else the name of a server span.
    fn noise_rule(&self, globs: &GlobList, sp: &Span) -> Option<usize> {
        let mut scratch = Vec::new();
        let mut norm = Vec::new();
        let mut first_match = |p: &[u8]| {
            path::normalise(p, &mut norm);
            globs.first_match(&norm, &mut scratch)
        };
        for kv in &sp.attributes {
            if !self.cfg.noise.path_attributes.contains(&kv.key) {
                continue;
            }
            if let Some(AnyValue { value: Some(Value::StringValue(v)) }) = &kv.value
                && let Some(i) = first_match(path::from_attribute(v.as_bytes()))
            {
                return Some(i);
            }
        }
        if self.cfg.noise.span_name
            && sp.kind == SpanKind::Server as i32
            && let Some(p) = path::from_span_name(sp.name.as_bytes())
        {
            return first_match(p);
        }
        None
    }

    fn masks(&self, kind: FieldKind) -> bool {
        self.cfg.mask.enabled && self.cfg.mask.fields.contains(&kind)
    }

    /// `text` with every number found replaced.
    fn mask_text(&self, kind: FieldKind, text: &[u8], tally: &mut Tally) -> Vec<u8> {
        if !self.masks(kind) {
            return text.to_vec();
        }
        let mut found = Vec::new();
        fnr::scan(text, self.cfg.mask.mode, |f| found.push(f));
        let mut out = Vec::new();
        let mut at = 0;
        for f in found {
            tally.add(f.detector, kind);
            out.extend_from_slice(&text[at..f.start]);
            match &self.cfg.mask.replacement {
                Replacement::Stars(c) => {
                    // A percent-encoded digit becomes the star encoded, so
                    // a URL stays valid; other escapes (separators) stay.
                    let (c, found) = (*c as u8, &text[f.start..f.end]);
                    let mut i = 0;
                    while i < found.len() {
                        let escape = found[i] == b'%'
                            && found
                                .get(i + 1..i + 3)
                                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                        if escape && found[i + 1] == b'3' && found[i + 2].is_ascii_digit() {
                            out.extend_from_slice(format!("%{c:02X}").as_bytes());
                            i += 3;
                        } else if escape {
                            out.extend_from_slice(&found[i..i + 3]);
                            i += 3;
                        } else {
                            out.push(if found[i].is_ascii_digit() { c } else { found[i] });
                            i += 1;
                        }
                    }
                }
                Replacement::Label(label) => out.extend_from_slice(label.as_bytes()),
                Replacement::Hmac => unreachable!("the model's configs never use hmac"),
            }
            at = f.end;
        }
        out.extend_from_slice(&text[at..]);
        out
    }

    fn mask_string(&self, kind: FieldKind, s: &mut String, tally: &mut Tally) {
        *s = String::from_utf8(self.mask_text(kind, s.as_bytes(), tally)).unwrap();
    }

    /// The masked text an int value becomes, if it holds a number: its
    /// 11-digit form, or its 10-digit form zero-padded (then validated in
    /// either mode).
    fn mask_int(&self, v: i64, kind: FieldKind, tally: &mut Tally) -> Option<String> {
        let abs = v.unsigned_abs();
        if !(1_000_000_000..100_000_000_000).contains(&abs) {
            return None;
        }
        let digits = format!("{abs:011}");
        let mode = if abs < 10_000_000_000 { Mode::Validated } else { self.cfg.mask.mode };
        let mut detector = None;
        fnr::scan(digits.as_bytes(), mode, |f| detector = Some(f.detector));
        tally.add(detector?, kind);
        let sign = if v < 0 { "-" } else { "" };
        Some(match &self.cfg.mask.replacement {
            Replacement::Stars(c) => format!("{sign}{}", c.to_string().repeat(11)),
            Replacement::Label(label) => format!("{sign}{label}"),
            Replacement::Hmac => unreachable!("the model's configs never use hmac"),
        })
    }

    /// An attribute value. `scan` says whether its strings and numbers are
    /// looked at; nested kvlist keys follow the value, not the key rules.
    fn mask_value(&self, kind: FieldKind, scan: bool, v: &mut AnyValue, tally: &mut Tally) {
        let Some(value) = &mut v.value else { return };
        match value {
            Value::StringValue(s) => {
                if scan {
                    self.mask_string(kind, s, tally);
                }
            }
            Value::BytesValue(b) => {
                if scan {
                    *b = self.mask_text(kind, b, tally);
                }
            }
            Value::IntValue(i) => {
                if scan && let Some(m) = self.mask_int(*i, kind, tally) {
                    *value = Value::StringValue(m);
                }
            }
            Value::DoubleValue(d) => {
                if scan
                    && d.fract() == 0.0
                    && d.abs() >= 1e9
                    && d.abs() < 1e11
                    && let Some(m) = self.mask_int(*d as i64, kind, tally)
                {
                    *value = Value::StringValue(m);
                }
            }
            Value::ArrayValue(a) => {
                for x in &mut a.values {
                    self.mask_value(kind, scan, x, tally);
                }
            }
            Value::KvlistValue(list) => {
                for kv in &mut list.values {
                    if scan {
                        self.mask_string(FieldKind::AttributeKey, &mut kv.key, tally);
                    }
                    if let Some(v) = &mut kv.value {
                        self.mask_value(kind, scan, v, tally);
                    }
                }
            }
            Value::BoolValue(_) | Value::StringValueStrindex(_) => {}
        }
    }

    /// A top-level attribute list: keys are always scanned; values when
    /// their field kind is on and, with `mask.scope.keys`, their key (as
    /// sent) matches.
    fn mask_attributes(&self, kind: FieldKind, attrs: &mut [KeyValue], tally: &mut Tally) {
        for kv in attrs {
            let mut scan = self.masks(kind);
            if scan && let Some(keys) = &self.keys {
                scan = keys.is_match(kv.key.as_bytes(), &mut Vec::new());
            }
            self.mask_string(FieldKind::AttributeKey, &mut kv.key, tally);
            if let Some(v) = &mut kv.value {
                self.mask_value(kind, scan, v, tally);
            }
        }
    }

    fn mask_span(&self, sp: &mut Span, tally: &mut Tally) {
        self.mask_string(FieldKind::SpanName, &mut sp.name, tally);
        self.mask_string(FieldKind::TraceState, &mut sp.trace_state, tally);
        self.mask_attributes(FieldKind::SpanAttribute, &mut sp.attributes, tally);
        for e in &mut sp.events {
            self.mask_string(FieldKind::EventName, &mut e.name, tally);
            self.mask_attributes(FieldKind::EventAttribute, &mut e.attributes, tally);
        }
        for l in &mut sp.links {
            self.mask_string(FieldKind::TraceState, &mut l.trace_state, tally);
            self.mask_attributes(FieldKind::LinkAttribute, &mut l.attributes, tally);
        }
        if let Some(status) = &mut sp.status {
            self.mask_string(FieldKind::StatusMessage, &mut status.message, tally);
        }
    }
}

/// Whether following parent links from span `start` reaches a noisy span.
fn reaches_noise(spans: &[&Span], rule: &[Option<usize>], start: usize) -> bool {
    let mut seen = vec![false; spans.len()];
    let mut todo = vec![start];
    while let Some(i) = todo.pop() {
        if seen[i] {
            continue;
        }
        seen[i] = true;
        if rule[i].is_some() {
            return true;
        }
        let child = spans[i];
        if child.parent_span_id.is_empty() {
            continue;
        }
        for (j, parent) in spans.iter().enumerate() {
            if parent.trace_id == child.trace_id && parent.span_id == child.parent_span_id {
                todo.push(j);
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------
// An independent personal-number finder, for the privacy invariant
// ---------------------------------------------------------------------------

/// Whether 11 ASCII digits are a valid fødselsnummer, D-, H- or synthetic
/// number: check digits by mod 11 (k1 may leave remainder 0 to 3, the 2032
/// rule) and a real date once the offsets are taken off.
fn naive_valid(digits: &[u8]) -> bool {
    if digits.len() != 11 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d: Vec<u32> = digits.iter().map(|b| u32::from(b - b'0')).collect();
    let w1 = [3, 7, 6, 1, 8, 9, 4, 5, 2, 1];
    let w2 = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1];
    let mut s1 = 0;
    for i in 0..10 {
        s1 += d[i] * w1[i];
    }
    let mut s2 = 0;
    for i in 0..11 {
        s2 += d[i] * w2[i];
    }
    if s1 % 11 > 3 || s2 % 11 != 0 {
        return false;
    }
    let day = d[0] * 10 + d[1];
    let month = d[2] * 10 + d[3];
    let yy = d[4] * 10 + d[5];
    // Try every combination of offsets: D (day + 40), H (month + 40),
    // synthetic (month + 80).
    for day_offset in [0, 40] {
        for month_offset in [0, 40, 80] {
            if day <= day_offset || month <= month_offset {
                continue;
            }
            let (dd, mm) = (day - day_offset, month - month_offset);
            let days_in_month = match mm {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if yy.is_multiple_of(4) => 29,
                2 => 28,
                _ => 0,
            };
            if (1..=days_in_month).contains(&dd) {
                return true;
            }
        }
    }
    false
}

/// Every valid number in `hay`, as byte ranges: maximal runs of exactly 11
/// digits, and a maximal run of exactly 6 digits, one space or dash, and a
/// maximal run of exactly 5.
fn naive_numbers(hay: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < hay.len() {
        if hay[i].is_ascii_digit() {
            let start = i;
            while i < hay.len() && hay[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for &(s, e) in &runs {
        if e - s == 11 && naive_valid(&hay[s..e]) {
            out.push((s, e));
        }
    }
    for pair in runs.windows(2) {
        let ((s1, e1), (s2, e2)) = (pair[0], pair[1]);
        if e1 - s1 == 6 && s2 == e1 + 1 && (hay[e1] == b' ' || hay[e1] == b'-') && e2 - s2 == 5 {
            let mut digits = hay[s1..e1].to_vec();
            digits.extend_from_slice(&hay[s2..e2]);
            if naive_valid(&digits) {
                out.push((s1, e2));
            }
        }
    }
    out
}

/// Whether an int value spells a valid number (11 digits, or 10 digits
/// zero-padded to 11).
fn naive_int_is_number(v: i64) -> bool {
    let abs = v.unsigned_abs();
    (1_000_000_000..100_000_000_000).contains(&abs) && naive_valid(format!("{abs:011}").as_bytes())
}

fn naive_double_is_number(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() >= 1e9 && v.abs() < 1e11 && naive_int_is_number(v as i64)
}

/// Every piece of text and every number in a batch, at every depth.
#[derive(Default)]
struct Contents {
    texts: Vec<Vec<u8>>,
    ints: Vec<i64>,
    doubles: Vec<f64>,
}

impl Contents {
    fn of(req: &ExportTraceServiceRequest) -> Contents {
        let mut c = Contents::default();
        for rs in &req.resource_spans {
            c.text(rs.schema_url.as_bytes());
            if let Some(r) = &rs.resource {
                c.attributes(&r.attributes);
                for e in &r.entity_refs {
                    c.text(e.schema_url.as_bytes());
                    c.text(e.r#type.as_bytes());
                    for k in e.id_keys.iter().chain(&e.description_keys) {
                        c.text(k.as_bytes());
                    }
                }
            }
            for ss in &rs.scope_spans {
                c.text(ss.schema_url.as_bytes());
                if let Some(s) = &ss.scope {
                    c.text(s.name.as_bytes());
                    c.text(s.version.as_bytes());
                    c.attributes(&s.attributes);
                }
                for sp in &ss.spans {
                    for t in [&sp.trace_id, &sp.span_id, &sp.parent_span_id] {
                        c.text(t);
                    }
                    c.text(sp.name.as_bytes());
                    c.text(sp.trace_state.as_bytes());
                    c.attributes(&sp.attributes);
                    for e in &sp.events {
                        c.text(e.name.as_bytes());
                        c.attributes(&e.attributes);
                    }
                    for l in &sp.links {
                        c.text(&l.trace_id);
                        c.text(&l.span_id);
                        c.text(l.trace_state.as_bytes());
                        c.attributes(&l.attributes);
                    }
                    if let Some(s) = &sp.status {
                        c.text(s.message.as_bytes());
                    }
                }
            }
        }
        c
    }

    fn text(&mut self, t: &[u8]) {
        self.texts.push(t.to_vec());
    }

    fn attributes(&mut self, attrs: &[KeyValue]) {
        for kv in attrs {
            self.text(kv.key.as_bytes());
            if let Some(v) = &kv.value {
                self.value(v);
            }
        }
    }

    fn value(&mut self, v: &AnyValue) {
        match &v.value {
            Some(Value::StringValue(s)) => self.text(s.as_bytes()),
            Some(Value::BytesValue(b)) => self.text(b),
            Some(Value::IntValue(i)) => self.ints.push(*i),
            Some(Value::DoubleValue(d)) => self.doubles.push(*d),
            Some(Value::ArrayValue(a)) => a.values.iter().for_each(|x| self.value(x)),
            Some(Value::KvlistValue(l)) => self.attributes(&l.values),
            Some(Value::BoolValue(_) | Value::StringValueStrindex(_)) | None => {}
        }
    }

    /// Descriptions of every valid number left in the batch.
    fn survivors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.texts {
            for (s, e) in naive_numbers(t) {
                out.push(format!(
                    "{:?} in {:?}",
                    String::from_utf8_lossy(&t[s..e]),
                    String::from_utf8_lossy(t)
                ));
            }
        }
        out.extend(
            self.ints.iter().filter(|v| naive_int_is_number(**v)).map(|v| format!("int {v}")),
        );
        out.extend(
            self.doubles
                .iter()
                .filter(|v| naive_double_is_number(**v))
                .map(|v| format!("double {v}")),
        );
        out
    }
}

// ---------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------

/// Completes `DDMMYY` + individual number with check digits, so that k1's
/// sum over the first 10 digits leaves remainder `rest` (0 before 2032,
/// 0 to 3 after); None when a check digit would be 10.
fn complete(dd: u32, mm: u32, yy: u32, individual: u32, rest: u32) -> Option<String> {
    let first9 = format!("{dd:02}{mm:02}{yy:02}{individual:03}");
    let mut d: Vec<u32> = first9.bytes().map(|b| u32::from(b - b'0')).collect();
    let s1: u32 = d.iter().zip([3, 7, 6, 1, 8, 9, 4, 5, 2]).map(|(x, w)| x * w).sum();
    // rest 0: k1 = 11 - s1 % 11, with 11 -> 0.
    let k1 = (11 + rest - s1 % 11) % 11;
    if k1 == 10 {
        return None;
    }
    d.push(k1);
    let s2: u32 = d.iter().zip([5, 4, 3, 2, 7, 6, 5, 4, 3, 2]).map(|(x, w)| x * w).sum();
    let k2 = (11 - s2 % 11) % 11;
    if k2 == 10 {
        return None;
    }
    Some(format!("{first9}{k1}{k2}"))
}

fn days_in(month: u32, yy: u32) -> u32 {
    match month {
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A valid number: fødselsnummer, D-number (day + 40), H-number (month +
/// 40) or synthetic (month + 80), mostly with the classic k1, sometimes with
/// the 2032 rule's remainders 1 to 3.
fn valid_number() -> impl Strategy<Value = String> {
    (
        0u32..4,
        1u32..=12,
        0u32..100,
        1u32..=31,
        0u32..1000,
        prop_oneof![4 => Just(0u32), 1 => 1u32..=3],
    )
        .prop_map(|(kind, month, yy, day, individual, rest)| {
            let day = (day - 1) % days_in(month, yy) + 1;
            let (dd, mm) = match kind {
                0 => (day, month),
                1 => (day + 40, month),
                2 => (day, month + 40),
                _ => (day, month + 80),
            };
            // A check digit of 10 means: try the next individual number.
            (0..1000).find_map(|k| complete(dd, mm, yy, (individual + k) % 1000, rest)).unwrap()
        })
}

const WORDS: &[&str] = &[
    "",
    " ",
    "-",
    "=",
    "_",
    "/",
    ":",
    "fnr ",
    "person ",
    "SELECT * FROM p WHERE id=",
    "ø",
    "日本",
    "\u{1f600}",
    "GET /",
    "/users/",
];

/// Text that often holds a valid number, whole or split, next to words,
/// digit runs, separators and non-ASCII characters.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_owned),
        3 => valid_number(),
        2 => (valid_number(), prop::sample::select(vec![' ', '-'])).prop_map(|(n, sep)| format!("{}{sep}{}", &n[..6], &n[6..])),
        2 => "[0-9]{1,13}",
        1 => "[ -~]{0,6}",
        1 => "\\PC{0,3}",
    ];
    prop::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => text().prop_map(String::into_bytes),
        1 => (prop::collection::vec(any::<u8>(), 0..8), valid_number(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(a, n, b)| [a, n.into_bytes(), b].concat()),
    ]
}

fn int_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => valid_number().prop_map(|n| n.parse::<i64>().unwrap()),
        1 => valid_number().prop_map(|n| -n.parse::<i64>().unwrap()),
        2 => any::<i64>(),
        1 => 1_000_000_000i64..100_000_000_000,
        1 => Just(1_700_000_000i64),
    ]
}

/// No NaN: the tests compare decoded batches with `==`.
fn double_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => valid_number().prop_map(|n| n.parse::<f64>().unwrap()),
        1 => valid_number().prop_map(|n| -n.parse::<f64>().unwrap()),
        1 => valid_number().prop_map(|n| n.parse::<f64>().unwrap() + 0.5),
        2 => prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::INFINITE,
    ]
}

/// Attribute keys: the path sources, keys some configs narrow to, and text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["db.statement", "db.x", "k", "kafka.key", "user.id", "http.method", "url.path", "http.url"])
            .prop_map(str::to_owned),
        2 => text(),
        1 => text().prop_map(|t| format!("k{t}")),
    ]
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        4 => text().prop_map(|s| Some(Value::StringValue(s))),
        1 => any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        3 => int_value().prop_map(|i| Some(Value::IntValue(i))),
        2 => double_value().prop_map(|d| Some(Value::DoubleValue(d))),
        2 => bytes().prop_map(|b| Some(Value::BytesValue(b))),
        1 => Just(None),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values }))
            }),
            prop::collection::vec((key(), proptest::option::weighted(0.9, inner)), 0..3).prop_map(
                |pairs| {
                    let values = pairs
                        .into_iter()
                        .map(|(key, value)| KeyValue { key, value, ..Default::default() })
                        .collect();
                    AnyValue { value: Some(Value::KvlistValue(KeyValueList { values })) }
                }
            ),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec((key(), proptest::option::weighted(0.9, any_value())), 0..4).prop_map(
        |pairs| {
            pairs
                .into_iter()
                .map(|(key, value)| KeyValue { key, value, ..Default::default() })
                .collect()
        },
    )
}

/// Paths that the default globs take for noise, and near misses.
const PATHS: &[&str] = &[
    "/isAlive",
    "/app/isReady",
    "/prometheus",
    "/metrics",
    "/api/v1/metrics",
    "/actuator/health",
    "/internal/health",
    "/internal/healthz",
    "/internal/status/x",
    "/ISALIVE",
    "http://svc:8080/metrics?x=1",
    "https://h/app/isAlive#f",
    "/api/user-metrics",
    "/actuator",
    "/users/42",
    "/login?next=/metrics",
];

/// The attributes a path is read from by default, and one that is not.
const PATH_KEYS: &[&str] =
    &["url.path", "http.target", "http.route", "url.full", "http.url", "http.path"];

/// Trace ids: one of a few of the 16 bytes OTLP requires; never ASCII
/// digits. (Ids of other lengths make a batch malformed:
/// `ids_of_other_lengths_are_refused`.)
fn trace_id(i: u8) -> Vec<u8> {
    vec![0xa0 + i; 16]
}

/// Span ids from a small pool, so ids repeat and parent links hit; 0 is
/// the empty id, which only a parent may have (a root).
fn span_id(i: u8) -> Vec<u8> {
    if i == 0 { Vec::new() } else { vec![0xb0 + i; 8] }
}

const SPAN_IDS: u8 = 5;

fn span_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => text(),
        1 => (prop::sample::select(vec!["GET", "POST", "_OTHER", "get", "OPTIONS"]), prop::sample::select(vec![" ", "  "]),
              prop::sample::select(PATHS), prop::sample::select(vec!["", "?x=1", " extra"]))
            .prop_map(|(m, sp, p, tail)| format!("{m}{sp}{p}{tail}")),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (any::<u64>(), text(), attributes(), 0u32..3).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    )
}

fn link() -> impl Strategy<Value = Link> {
    (0u8..3, 1..=SPAN_IDS, text(), attributes(), any::<u32>()).prop_map(
        |(t, s, trace_state, attributes, flags)| Link {
            trace_id: trace_id(t),
            span_id: span_id(s),
            trace_state,
            attributes,
            dropped_attributes_count: 0,
            flags,
        },
    )
}

fn span() -> impl Strategy<Value = Span> {
    let ids = (0u8..4, 1..=SPAN_IDS, prop_oneof![3 => Just(0u8), 4 => 1..=SPAN_IDS]);
    let noise = proptest::option::weighted(
        0.3,
        (
            prop::sample::select(PATH_KEYS),
            prop::sample::select(PATHS),
            any::<prop::sample::Index>(),
        ),
    );
    let body = (0i32..6, span_name(), attributes(), noise, text());
    let rest = (
        prop::collection::vec(event(), 0..2),
        prop::collection::vec(link(), 0..2),
        proptest::option::of(
            (text(), 0i32..3).prop_map(|(message, code)| Status { message, code }),
        ),
        any::<(u64, u64, u32)>(),
    );
    (ids, body, rest).prop_map(
        |(
            (t, s, p),
            (kind, name, mut attributes, noise, trace_state),
            (events, links, status, (start, end, flags)),
        )| {
            if let Some((key, path, at)) = noise {
                let kv = KeyValue {
                    key: key.into(),
                    value: Some(AnyValue { value: Some(Value::StringValue(path.into())) }),
                    ..Default::default()
                };
                attributes.insert(at.index(attributes.len() + 1), kv);
            }
            Span {
                trace_id: trace_id(t),
                span_id: span_id(s),
                parent_span_id: span_id(p),
                trace_state,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: 0,
                events,
                dropped_events_count: 0,
                links,
                dropped_links_count: 0,
                status,
            }
        },
    )
}

/// Schema URLs: none, the usual one, or one carrying a number (a URL is
/// text, and is masked like any).
fn schema_url() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => Just("https://opentelemetry.io/schemas/1.21.0".to_owned()),
        1 => valid_number().prop_map(|n| format!("https://schemas.example/{n}/1.0")),
    ]
}

fn scope_spans() -> impl Strategy<Value = ScopeSpans> {
    let scope = proptest::option::weighted(0.7, (text(), text(), attributes())).prop_map(|s| {
        s.map(|(name, version, attributes)| InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: 0,
        })
    });
    (scope, prop::collection::vec(span(), 0..6), schema_url())
        .prop_map(|(scope, spans, schema_url)| ScopeSpans { scope, spans, schema_url })
}

fn resource_spans() -> impl Strategy<Value = ResourceSpans> {
    let resource = proptest::option::weighted(0.8, (attributes(), 0u32..2)).prop_map(|r| {
        r.map(|(attributes, dropped_attributes_count)| Resource {
            attributes,
            dropped_attributes_count,
            entity_refs: vec![],
        })
    });
    (resource, prop::collection::vec(scope_spans(), 0..4), schema_url()).prop_map(
        |(resource, scope_spans, schema_url)| ResourceSpans { resource, scope_spans, schema_url },
    )
}

fn batch() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec(resource_spans(), 1..4)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

// ---------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------

const DEFAULT: &str = "{}";
const ALL_OFF: &str = r#"{"noise":{"enabled":false},"mask":{"enabled":false}}"#;

/// Configs the differential test runs under, the default most often.
const CONFIGS: &[&str] = &[
    DEFAULT,
    DEFAULT,
    DEFAULT,
    r#"{"mask":{"replacement":"label","label":"[fnr]"}}"#,
    r#"{"mask":{"mode":"any11"}}"#,
    r##"{"mask":{"mask_char":"#"}}"##,
    r#"{"noise":{"drop_descendants":false}}"#,
    r#"{"mask":{"scope":{"fields":["span-attribute","span-name","scope-attribute"],"keys":["db.*","k*"]}}}"#,
    r#"{"mask":{"scope":{"fields":["event-attribute","link-attribute","resource-attribute","attribute-key","trace-state"]}}}"#,
    r#"{"noise":{"case_sensitive":true,"sources":{"span_name":false,"attributes":["url.path","http.path"]},"extra_globs":["/users/*"]}}"#,
    ALL_OFF,
];

/// Configs under which every valid number must be gone.
const MASK_ALL: &[&str] = &[
    DEFAULT,
    r#"{"mask":{"replacement":"label","label":"[fnr]"}}"#,
    r#"{"mask":{"mode":"any11"}}"#,
    r##"{"mask":{"mask_char":"#"}}"##,
    r#"{"noise":{"enabled":false}}"#,
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

// ---------------------------------------------------------------------------
// Unknown fields, spliced in by hand
// ---------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Who an unknown field belongs to: it must survive exactly when its owner
/// does.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Request,
    Resource(usize),
    Scope(usize),
    Span(usize),
}

/// One injected unknown field: its whole encoding, and whether it is unique
/// in the batch (a length-delimited marker), so that its absence means
/// something.
struct Injected {
    owner: Owner,
    bytes: Vec<u8>,
    unique: bool,
    /// The valid number planted in its text, when the splicer plants.
    number: Option<String>,
}

/// Encodes a batch as prost would, but with unknown fields (numbers 50 to
/// 99, every wire type) appended to Span, ScopeSpans, ResourceSpans,
/// InstrumentationScope, Resource, KeyValue and AnyValue messages, at every
/// depth.
struct Splicer {
    rng: u64,
    owner: Owner,
    injected: Vec<Injected>,
    /// Plant a valid number in every length-delimited unknown field.
    plant: bool,
}

impl Splicer {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A valid personal number drawn from the splicer's generator.
    fn valid_number(&mut self) -> String {
        loop {
            let (dd, mm) = (1 + (self.next() % 28) as u32, 1 + (self.next() % 12) as u32);
            let (yy, individual) = ((self.next() % 100) as u32, (self.next() % 1000) as u32);
            if let Some(n) = complete(dd, mm, yy, individual, 0) {
                return n;
            }
        }
    }

    /// Appends zero to two unknown fields to a message.
    fn unknowns(&mut self, out: &mut Vec<u8>) {
        let count = self.next() % 3;
        for _ in 0..count {
            let field = 50 + (self.next() % 50) as u32;
            let mut bytes = Vec::new();
            let mut number = None;
            let unique = match self.next() % 4 {
                1 if self.plant => {
                    let n = self.valid_number();
                    let text = format!("note #{}: id={n};", self.injected.len());
                    put_len(&mut bytes, field, text.as_bytes());
                    number = Some(n);
                    true
                }
                0 => {
                    put_varint(&mut bytes, u64::from(field << 3));
                    put_varint(&mut bytes, self.next() >> (self.next() % 64));
                    false
                }
                1 => {
                    let marker =
                        format!("unknown field #{} of {:?}", self.injected.len(), self.owner);
                    put_len(&mut bytes, field, marker.as_bytes());
                    true
                }
                2 => {
                    put_varint(&mut bytes, u64::from(field << 3 | 5));
                    bytes.extend_from_slice(&(self.next() as u32).to_le_bytes());
                    false
                }
                _ => {
                    put_varint(&mut bytes, u64::from(field << 3 | 1));
                    bytes.extend_from_slice(&self.next().to_le_bytes());
                    false
                }
            };
            out.extend_from_slice(&bytes);
            self.injected.push(Injected { owner: self.owner, bytes, unique, number });
        }
    }

    fn any_value(&mut self, v: &AnyValue) -> Vec<u8> {
        let mut out = Vec::new();
        match &v.value {
            Some(Value::ArrayValue(a)) => {
                let mut body = Vec::new();
                for x in &a.values {
                    let x = self.any_value(x);
                    put_len(&mut body, 1, &x);
                }
                put_len(&mut out, 5, &body);
            }
            Some(Value::KvlistValue(l)) => {
                let mut body = Vec::new();
                for kv in &l.values {
                    let kv = self.key_value(kv);
                    put_len(&mut body, 1, &kv);
                }
                put_len(&mut out, 6, &body);
            }
            _ => out = v.encode_to_vec(),
        }
        self.unknowns(&mut out);
        out
    }

    fn key_value(&mut self, kv: &KeyValue) -> Vec<u8> {
        let mut out = KeyValue { key: kv.key.clone(), value: None, key_strindex: kv.key_strindex }
            .encode_to_vec();
        if let Some(v) = &kv.value {
            let v = self.any_value(v);
            put_len(&mut out, 2, &v);
        }
        self.unknowns(&mut out);
        out
    }

    fn attributes(&mut self, out: &mut Vec<u8>, field: u32, attrs: &[KeyValue]) {
        for kv in attrs {
            let kv = self.key_value(kv);
            put_len(out, field, &kv);
        }
    }

    fn span(&mut self, sp: &Span) -> Vec<u8> {
        let mut out = Span { attributes: Vec::new(), ..sp.clone() }.encode_to_vec();
        self.attributes(&mut out, 9, &sp.attributes);
        self.unknowns(&mut out);
        out
    }

    fn request(&mut self, req: &ExportTraceServiceRequest) -> Vec<u8> {
        let (mut span_at, mut scope_at) = (0, 0);
        let mut out = Vec::new();
        for (r, rs) in req.resource_spans.iter().enumerate() {
            let mut rs_out = Vec::new();
            if let Some(res) = &rs.resource {
                self.owner = Owner::Resource(r);
                let mut res_out =
                    Resource { attributes: Vec::new(), ..res.clone() }.encode_to_vec();
                self.attributes(&mut res_out, 1, &res.attributes);
                self.unknowns(&mut res_out);
                put_len(&mut rs_out, 1, &res_out);
            }
            for ss in &rs.scope_spans {
                let mut ss_out = Vec::new();
                if let Some(scope) = &ss.scope {
                    self.owner = Owner::Scope(scope_at);
                    let mut scope_out =
                        InstrumentationScope { attributes: Vec::new(), ..scope.clone() }
                            .encode_to_vec();
                    self.attributes(&mut scope_out, 3, &scope.attributes);
                    self.unknowns(&mut scope_out);
                    put_len(&mut ss_out, 1, &scope_out);
                }
                for sp in &ss.spans {
                    self.owner = Owner::Span(span_at);
                    span_at += 1;
                    let sp = self.span(sp);
                    put_len(&mut ss_out, 2, &sp);
                }
                if !ss.schema_url.is_empty() {
                    put_len(&mut ss_out, 3, ss.schema_url.as_bytes());
                }
                self.owner = Owner::Scope(scope_at);
                scope_at += 1;
                self.unknowns(&mut ss_out);
                put_len(&mut rs_out, 2, &ss_out);
            }
            if !rs.schema_url.is_empty() {
                put_len(&mut rs_out, 3, rs.schema_url.as_bytes());
            }
            self.owner = Owner::Resource(r);
            self.unknowns(&mut rs_out);
            put_len(&mut out, 1, &rs_out);
        }
        self.owner = Owner::Request;
        self.unknowns(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Scenario: generated batches, prost-encoded, under a range of configs.
    /// Guarantees: the engine's output is byte for byte the reference's
    /// prost encoding, and its stats are the reference's: span counts, drops
    /// by rule and descendants, and masked values by detector and field.
    /// `process_owned`, which rewrites the batch in place when it can, makes
    /// exactly what `process` makes.
    #[test]
    fn engine_equals_reference(req in batch(), config in prop::sample::select(CONFIGS)) {
        let input = req.encode_to_vec();
        let processor = Processor::new(config).unwrap();
        let out = processor.process(&input).unwrap();
        let want = Reference::new(config).run(&req);
        prop_assert_eq!(&out.stats, &want.stats, "{}", config);
        prop_assert!(out.batch == want.batch.encode_to_vec(), "output differs from the reference under {}", config);
        prop_assert_eq!(processor.process_owned(input).unwrap(), out, "in place under {}", config);
    }

    /// Scenario: generated batches under configs that mask every field kind.
    /// Guarantees: (a) no valid number is left in any text or number at any
    /// depth, by a finder independent of the engine's; (b) spans_out <=
    /// spans_in and the output holds spans_out spans; (c) each span the
    /// reference neither drops nor masks is in the output byte for byte;
    /// (d) with every rule off the output is the input; (e) processing the
    /// output again changes nothing.
    #[test]
    fn output_invariants(req in batch(), config in prop::sample::select(MASK_ALL)) {
        let input = req.encode_to_vec();
        let p = Processor::new(config).unwrap();
        let out = p.process(&input).unwrap();
        let decoded = ExportTraceServiceRequest::decode(out.batch.as_slice()).unwrap();

        let survivors = Contents::of(&decoded).survivors();
        prop_assert!(survivors.is_empty(), "numbers survived under {}: {:?}", config, survivors);

        prop_assert!(out.stats.spans_out <= out.stats.spans_in);
        prop_assert_eq!(span_count(&decoded) as u64, out.stats.spans_out);
        prop_assert_eq!(span_count(&req) as u64, out.stats.spans_in);

        let want = Reference::new(config).run(&req);
        let spans = req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
        for (i, sp) in spans.enumerate() {
            if want.kept[i] && !want.masked[i] {
                prop_assert!(contains(&out.batch, &sp.encode_to_vec()), "untouched span {} changed", i);
            }
        }

        let off = Processor::new(ALL_OFF).unwrap().process(&input).unwrap();
        prop_assert!(off.batch == input, "rules off changed the batch");
        prop_assert_eq!(off.stats.spans_out, off.stats.spans_in);

        let again = p.process(&out.batch).unwrap();
        prop_assert!(again.batch == out.batch, "second pass changed the output under {}", config);
        prop_assert_eq!(again.stats.values_masked, 0);
        prop_assert_eq!(again.stats.spans_dropped, 0);
    }

    /// Scenario: generated batches with unknown fields spliced into Span,
    /// ScopeSpans, ResourceSpans, InstrumentationScope, Resource, KeyValue
    /// and AnyValue messages at every depth.
    /// Guarantees: every unknown field of a kept message is in the output
    /// byte for byte and every unique one of a dropped message is gone; the
    /// output decodes (prost skips unknown fields) to the reference's result
    /// for the batch without them, with the same stats.
    #[test]
    fn unknown_fields_survive(req in batch(), config in prop::sample::select(CONFIGS), seed in any::<u64>()) {
        let mut splicer = Splicer { rng: seed, owner: Owner::Request, injected: Vec::new(), plant: false };
        let input = splicer.request(&req);
        // The splice is transparent to prost.
        prop_assert_eq!(&ExportTraceServiceRequest::decode(input.as_slice()).unwrap(), &req);

        let out = Processor::new(config).unwrap().process(&input).unwrap();
        let want = Reference::new(config).run(&req);
        prop_assert_eq!(&out.stats, &want.stats, "{}", config);
        prop_assert_eq!(&ExportTraceServiceRequest::decode(out.batch.as_slice()).unwrap(), &want.batch, "{}", config);

        for u in &splicer.injected {
            let kept = match u.owner {
                Owner::Request => true,
                Owner::Resource(r) => want.kept_resources[r],
                Owner::Scope(s) => want.kept_scopes[s],
                Owner::Span(s) => want.kept[s],
            };
            if kept {
                prop_assert!(contains(&out.batch, &u.bytes), "unknown field of kept {:?} lost: {:?}", u.owner, u.bytes);
            } else if u.unique {
                prop_assert!(!contains(&out.batch, &u.bytes), "unknown field of dropped {:?} kept", u.owner);
            }
        }
    }

    /// Scenario: generated batches with unknown length-delimited fields
    /// spliced in at every depth, each holding text with a valid personal
    /// number.
    /// Guarantees: under configs that mask every field kind, no planted
    /// number is left in the output; each such field of a kept message is
    /// there with the number's digits starred in place (its length kept,
    /// whatever the replacement) and is counted as `unknown-field`; the
    /// output otherwise decodes to the reference's result.
    #[test]
    fn unknown_text_fields_are_masked(req in batch(), config in prop::sample::select(MASK_ALL), seed in any::<u64>()) {
        let mut splicer = Splicer { rng: seed, owner: Owner::Request, injected: Vec::new(), plant: true };
        let input = splicer.request(&req);
        let out = Processor::new(config).unwrap().process(&input).unwrap();
        let want = Reference::new(config).run(&req);
        prop_assert_eq!(&ExportTraceServiceRequest::decode(out.batch.as_slice()).unwrap(), &want.batch, "{}", config);
        let star = if config.contains("mask_char") { b'#' } else { b'*' };
        let mut planted_kept = 0;
        for u in &splicer.injected {
            let Some(n) = &u.number else { continue };
            prop_assert!(!contains(&out.batch, n.as_bytes()), "{} survived in an unknown field of {:?}", n, u.owner);
            let kept = match u.owner {
                Owner::Request => true,
                Owner::Resource(r) => want.kept_resources[r],
                Owner::Scope(s) => want.kept_scopes[s],
                Owner::Span(s) => want.kept[s],
            };
            if kept {
                let at = u.bytes.windows(n.len()).position(|w| w == n.as_bytes()).unwrap();
                let mut starred = u.bytes.clone();
                starred[at..at + n.len()].fill(star);
                prop_assert!(contains(&out.batch, &starred), "unknown field of kept {:?} not starred in place", u.owner);
                planted_kept += 1;
            }
        }
        let unknown = out.stats.masked_by_field.iter().find(|c| c.name == "unknown-field").map_or(0, |c| c.value);
        prop_assert_eq!(unknown, planted_kept);
        prop_assert_eq!(out.stats.values_masked, want.stats.values_masked + planted_kept);
    }

    /// Scenario: a generated batch with one span's or link's id set to a
    /// length OTLP does not allow: a required id empty, ids of 5 to 24
    /// bytes, some holding a personal number.
    /// Guarantees: the batch is refused as malformed, under every config
    /// (rules off too), naming the field, at an offset inside the batch.
    #[test]
    fn ids_of_other_lengths_are_refused(
        mut req in batch(),
        which in 0..5u8,
        len in prop::sample::select(vec![0usize, 5, 7, 9, 12, 15, 16, 17, 24]),
        at in any::<prop::sample::Index>(),
        config in prop::sample::select(CONFIGS),
    ) {
        let (allowed, field): (&[usize], &str) = match which {
            0 => (&[16], "Span.trace_id"),
            1 => (&[8], "Span.span_id"),
            2 => (&[0, 8], "Span.parent_span_id"),
            3 => (&[16], "Span.Link.trace_id"),
            _ => (&[8], "Span.Link.span_id"),
        };
        prop_assume!(!allowed.contains(&len));
        let n = span_count(&req);
        prop_assume!(n > 0);
        let sp = req.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans).nth(at.index(n)).unwrap();
        // Ids of 11 bytes or more carry a number: a field that smuggles one.
        let bad: Vec<u8> = format!("{FNR}{}", "x".repeat(len)).into_bytes()[..len].to_vec();
        if which >= 3 && sp.links.is_empty() {
            sp.links.push(Link { trace_id: trace_id(1), span_id: span_id(1), ..Default::default() });
        }
        match which {
            0 => sp.trace_id = bad,
            1 => sp.span_id = bad,
            2 => sp.parent_span_id = bad,
            3 => sp.links[0].trace_id = bad,
            _ => sp.links[0].span_id = bad,
        }
        let input = req.encode_to_vec();
        match Processor::new(config).unwrap().process(&input) {
            Err(tracescrub_processor::Error::Malformed(m)) => {
                prop_assert!(m.reason.contains(field) && m.reason.contains(&format!("is {len} bytes")), "{}", m);
                prop_assert!((m.offset as usize) < input.len());
            }
            other => prop_assert!(false, "{} of {} bytes passed: {:?}", field, len, other.map(|o| o.stats)),
        }
    }

    /// Scenario: generated valid numbers.
    /// Guarantees: both the engine's classifier and the independent one
    /// accept them, whole and split.
    #[test]
    fn generated_numbers_are_valid(n in valid_number()) {
        prop_assert!(naive_valid(n.as_bytes()), "{}", n);
        prop_assert!(fnr::classify(n.as_bytes().try_into().unwrap()).is_some(), "{}", n);
        for sep in [" ", "-"] {
            let split = format!("x{}{sep}{}x", &n[..6], &n[6..]);
            prop_assert_eq!(naive_numbers(split.as_bytes()), vec![(1, 13)]);
        }
    }

    /// Scenario: random digit strings, whole and split.
    /// Guarantees: the engine's finder and the independent one agree, so a
    /// clean bill from the latter means something.
    #[test]
    fn independent_finder_agrees_with_fnr(hay in prop::collection::vec(prop_oneof![6 => b'0'..=b'9', 1 => Just(b' '), 1 => Just(b'-'), 1 => any::<u8>()], 0..60)) {
        let mut fast = Vec::new();
        fnr::scan(&hay, Mode::Validated, |f| fast.push((f.start, f.end)));
        let mut naive = naive_numbers(&hay);
        naive.sort_unstable();
        prop_assert_eq!(fast, naive);
    }
}

/// Scenario: generated batches with unknown fields spliced in at every
/// depth (the request's own too), cut at `split_ranges` into 2 to 4 parts,
/// each processed with `process_part`, under a range of configs. Trace ids
/// come from a small pool, so traces cross resources, noisy spans included.
/// Guarantees: whenever `parts_agree` on the parts' links, concatenating
/// the parts' outputs gives the whole batch's output byte for byte, and the
/// parts' stats add up to the whole's; each part's output is what `process`
/// gives it; whenever they do not agree, the concatenated outputs differ
/// from the whole's (the check is exact); and enough batches of each kind
/// occur for that to mean something.
#[test]
fn split_parts_process_like_the_whole() {
    use std::cell::Cell;
    use tracescrub_processor::{parts_agree, split_ranges};
    let config =
        ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let (cases, agreed, disagreed) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let strategy = (batch(), prop::sample::select(CONFIGS), any::<u64>(), 2usize..=4);
    runner
        .run(&strategy, |(req, config, seed, parts)| {
            let input =
                Splicer { rng: seed, owner: Owner::Request, injected: Vec::new(), plant: false }
                    .request(&req);
            let ranges = split_ranges(&input, parts);
            cases.set(cases.get() + 1);
            if ranges.len() < 2 {
                return Ok(());
            }
            prop_assert!(ranges.len() <= parts, "{:?}", ranges);
            let p = Processor::new(config).unwrap();
            let whole = p.process(&input).unwrap();
            let (mut batch, mut stats, mut links) = (Vec::new(), Stats::default(), Vec::new());
            for range in &ranges {
                let (part, part_links) = p.process_part(input[range.clone()].to_vec()).unwrap();
                prop_assert!(part.batch == p.process(&input[range.clone()]).unwrap().batch);
                batch.extend_from_slice(&part.batch);
                stats.add(&part.stats);
                links.push(part_links);
            }
            if !parts_agree(&links) {
                // The check is exact: parts that disagree would have given
                // other bytes.
                prop_assert!(
                    batch != whole.batch,
                    "parts {:?} disagree, yet join into the whole under {}",
                    ranges,
                    config
                );
                disagreed.set(disagreed.get() + 1);
                return Ok(());
            }
            agreed.set(agreed.get() + 1);
            prop_assert!(
                batch == whole.batch,
                "parts {:?} differ from the whole under {}",
                ranges,
                config
            );
            prop_assert_eq!(checks::by_name(stats), checks::by_name(whole.stats), "{}", config);
            Ok(())
        })
        .unwrap();
    assert!(
        agreed.get() * 8 >= cases.get(),
        "only {} of {} batches were cut into parts that agree",
        agreed.get(),
        cases.get()
    );
    assert!(
        disagreed.get() > 0,
        "no batch was cut into parts that disagree: the generator does not exercise the check"
    );
}

// ---------------------------------------------------------------------------
// Examples: the reference and the checker on fixed inputs
// ---------------------------------------------------------------------------

/// A valid fødselsnummer (01.01.1990).
const FNR: &str = "01019012138";

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn plain_span(id: u8, parent: u8, name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: trace_id(1),
        span_id: span_id(id),
        parent_span_id: span_id(parent),
        name: name.into(),
        attributes,
        ..Default::default()
    }
}

fn one_scope(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn names(req: &ExportTraceServiceRequest) -> Vec<String> {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

/// Scenario: the independent checker on published examples.
/// Guarantees: it accepts valid numbers of every kind (2032 rule included)
/// and rejects bad check digits and dates, so the privacy invariant is not
/// vacuous.
#[test]
fn independent_checker_examples() {
    for valid in [
        "13097248022",
        "29020075838",
        "53097248016",
        "13527248013",
        "10915596784",
        "02013299997",
        "70108299914",
        FNR,
    ] {
        assert!(naive_valid(valid.as_bytes()), "{valid}");
    }
    for invalid in
        ["13097248032", "13097248023", "32127248022", "13137248022", "29020112345", "12345678901"]
    {
        assert!(!naive_valid(invalid.as_bytes()), "{invalid}");
    }
    assert_eq!(naive_numbers(b"a 130972-48022 b 13097248022"), vec![(17, 28), (2, 14)]);
    assert_eq!(naive_numbers(b"130972  48022 1130972-48022 13097248022 1"), vec![(28, 39)]);
    assert!(naive_numbers(b"130972  48022 1130972-48022 130972480221").is_empty());
    assert!(naive_int_is_number(1_019_012_138));
    assert!(!naive_int_is_number(1_700_000_000));
}

/// Scenario: a noisy span, its child in another scope and grandchild in
/// another resource, and numbers in a kept span and in the scope of an
/// emptied container.
/// Guarantees: the reference drops the subtree and the emptied containers,
/// masks the rest, and the engine agrees with it.
#[test]
fn reference_on_a_fixed_batch() {
    let noisy =
        plain_span(1, 0, "probe", vec![kv("url.path", Value::StringValue("/isAlive".into()))]);
    let child = plain_span(2, 1, "child", vec![]);
    let grandchild = plain_span(3, 2, "grandchild", vec![]);
    let keep = plain_span(
        4,
        0,
        &format!("lookup {FNR}"),
        vec![kv("k", Value::IntValue(FNR.parse().unwrap()))],
    );
    let mut req = one_scope(vec![noisy, keep]);
    req.resource_spans[0].scope_spans.push(ScopeSpans {
        scope: Some(InstrumentationScope { name: format!("lib {FNR}"), ..Default::default() }),
        spans: vec![child],
        ..Default::default()
    });
    req.resource_spans.push(one_scope(vec![grandchild]).resource_spans.remove(0));

    let want = Reference::new(DEFAULT).run(&req);
    assert_eq!(names(&want.batch), ["lookup ***********"]);
    assert_eq!(want.batch.resource_spans.len(), 1);
    assert_eq!(want.batch.resource_spans[0].scope_spans.len(), 1);
    assert_eq!(
        (want.stats.spans_in, want.stats.spans_out, want.stats.dropped_descendants),
        (4, 1, 2)
    );
    assert_eq!(want.stats.values_masked, 2);
    assert_eq!(
        (want.kept_scopes, want.kept_resources),
        (vec![true, false, false], vec![true, false])
    );

    let out = Processor::new(DEFAULT).unwrap().process(&req.encode_to_vec()).unwrap();
    assert_eq!(out.batch, want.batch.encode_to_vec());
}

/// Scenario: two spans of one trace share a span id; one of them is noise,
/// and a third span's parent id is that shared id. The batch is sent in each
/// order.
/// Guarantees: the third span descends from a noisy span (its parent id
/// names it) and is dropped whatever the order of the spans in the batch.
#[test]
fn bug_descendant_of_duplicate_span_id_kept_depending_on_span_order() {
    let noisy =
        plain_span(1, 0, "noisy", vec![kv("url.path", Value::StringValue("/metrics".into()))]);
    let twin = plain_span(1, 0, "twin", vec![]);
    let child = plain_span(2, 1, "child", vec![]);
    let p = Processor::new(DEFAULT).unwrap();
    for order in [[0, 1, 2], [1, 0, 2], [2, 0, 1], [2, 1, 0]] {
        let all = [&noisy, &twin, &child];
        let req = one_scope(order.iter().map(|&i| all[i].clone()).collect());
        let out = p.process(&req.encode_to_vec()).unwrap();
        let kept = names(&ExportTraceServiceRequest::decode(out.batch.as_slice()).unwrap());
        assert_eq!(kept, ["twin"], "order {order:?}");
    }
}

/// Scenario: a scope name and a resource attribute hold numbers, and every
/// span under them is noise, so the containers are removed.
/// Guarantees: nothing of them is in the output, so nothing is counted as
/// masked: `values_masked` counts numbers replaced in the output.
#[test]
fn bug_masks_in_removed_containers_are_counted() {
    let noisy =
        plain_span(1, 0, "probe", vec![kv("url.path", Value::StringValue("/isAlive".into()))]);
    let mut req = one_scope(vec![noisy]);
    req.resource_spans[0].resource = Some(Resource {
        attributes: vec![kv("host.user", Value::StringValue(FNR.into()))],
        ..Default::default()
    });
    req.resource_spans[0].scope_spans[0].scope =
        Some(InstrumentationScope { name: format!("lib {FNR}"), ..Default::default() });
    let out = Processor::new(DEFAULT).unwrap().process(&req.encode_to_vec()).unwrap();
    assert!(out.batch.is_empty());
    assert_eq!(out.stats.spans_dropped, 1);
    assert_eq!(out.stats.values_masked, 0, "{:?}", out.stats);
    assert!(out.stats.masked_by_field.is_empty(), "{:?}", out.stats);
}
