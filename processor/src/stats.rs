//! Per-batch statistics: what one call did to one batch.

/// Where a masked value sat in the OTLP data model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// `Span.name`.
    SpanName,
    /// A value under `Span.attributes`.
    SpanAttribute,
    /// `Span.Event.name`.
    EventName,
    /// A value under `Span.Event.attributes`.
    EventAttribute,
    /// A value under `Span.Link.attributes`.
    LinkAttribute,
    /// `Status.message`.
    StatusMessage,
    /// A value under `Resource.attributes`.
    ResourceAttribute,
    /// A value under `InstrumentationScope.attributes`.
    ScopeAttribute,
    /// `InstrumentationScope.name` or `.version`.
    ScopeInfo,
    /// `Span.trace_state` or `Span.Link.trace_state`.
    TraceState,
    /// The key of an attribute or of a kvlist entry.
    AttributeKey,
    /// `ResourceSpans.schema_url` or `ScopeSpans.schema_url`.
    SchemaUrl,
    /// A length-delimited field the OTLP schema the engine knows does not
    /// have (a newer schema's, or a sender's own): masked in place with
    /// length-preserving stars, whatever the replacement.
    UnknownField,
}

impl FieldKind {
    /// Every kind, in the order stats list them.
    pub const ALL: [FieldKind; 13] = [
        FieldKind::SpanName,
        FieldKind::SpanAttribute,
        FieldKind::EventName,
        FieldKind::EventAttribute,
        FieldKind::LinkAttribute,
        FieldKind::StatusMessage,
        FieldKind::ResourceAttribute,
        FieldKind::ScopeAttribute,
        FieldKind::ScopeInfo,
        FieldKind::TraceState,
        FieldKind::AttributeKey,
        FieldKind::SchemaUrl,
        FieldKind::UnknownField,
    ];

    /// The name used in stats and in the config's `mask.scope.fields`.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::SpanName => "span-name",
            FieldKind::SpanAttribute => "span-attribute",
            FieldKind::EventName => "event-name",
            FieldKind::EventAttribute => "event-attribute",
            FieldKind::LinkAttribute => "link-attribute",
            FieldKind::StatusMessage => "status-message",
            FieldKind::ResourceAttribute => "resource-attribute",
            FieldKind::ScopeAttribute => "scope-attribute",
            FieldKind::ScopeInfo => "scope-info",
            FieldKind::TraceState => "trace-state",
            FieldKind::AttributeKey => "attribute-key",
            FieldKind::SchemaUrl => "schema-url",
            FieldKind::UnknownField => "unknown-field",
        }
    }

    /// The kind with this name, if any.
    pub fn from_name(name: &str) -> Option<FieldKind> {
        FieldKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A count keyed by a name: a glob, a detector or a field kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// The glob, detector or field kind.
    pub name: String,
    /// How many.
    pub value: u64,
}

/// What one call did to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans in the input batch.
    pub spans_in: u64,
    /// Spans in the output batch.
    pub spans_out: u64,
    /// Noisy spans plus their descendants.
    pub spans_dropped: u64,
    /// Noisy spans, by the first glob that matched, in config order; zero counts left out.
    pub dropped_by_rule: Vec<Count>,
    /// Spans dropped only because an ancestor in the same batch was noise.
    pub dropped_descendants: u64,
    /// Personal numbers replaced.
    pub values_masked: u64,
    /// Masked values by detector; zero counts left out.
    pub masked_by_detector: Vec<Count>,
    /// Masked values by field kind; zero counts left out.
    pub masked_by_field: Vec<Count>,
}

impl Stats {
    /// Adds `other` to these stats, as if one batch had held both: for the
    /// parts of a batch cut at [`crate::split_ranges`]. Named counts are
    /// summed by name; a name these stats lack goes after their own, so
    /// the lists keep their order only up to that.
    pub fn add(&mut self, other: &Stats) {
        self.spans_in += other.spans_in;
        self.spans_out += other.spans_out;
        self.spans_dropped += other.spans_dropped;
        self.dropped_descendants += other.dropped_descendants;
        self.values_masked += other.values_masked;
        for (mine, theirs) in [
            (&mut self.dropped_by_rule, &other.dropped_by_rule),
            (&mut self.masked_by_detector, &other.masked_by_detector),
            (&mut self.masked_by_field, &other.masked_by_field),
        ] {
            for count in theirs {
                match mine.iter_mut().find(|c| c.name == count.name) {
                    Some(c) => c.value += count.value,
                    None => mine.push(count.clone()),
                }
            }
        }
    }
}

/// Fixed-size counters the engine bumps on the hot path; turned into
/// [`Stats`] once per batch.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub spans_in: u64,
    /// By the platform's rule ids.
    pub noisy_by_rule: Vec<u64>,
    /// Team rules that fired, by id: few per batch, out of thousands.
    pub noisy_by_team_rule: Vec<(u32, u64)>,
    pub dropped_descendants: u64,
    /// By detector id: the personal-number family, then the config's
    /// other detectors.
    pub by_detector: Vec<u64>,
    pub by_field: [u64; FieldKind::ALL.len()],
}

impl Counters {
    pub fn new(rules: usize, detectors: usize) -> Counters {
        Counters {
            noisy_by_rule: vec![0; rules],
            by_detector: vec![0; detectors],
            ..Counters::default()
        }
    }

    /// One more span dropped as noise by rule `id`, a team file's or not.
    pub fn noisy(&mut self, id: u32, team: bool) {
        if !team {
            if let Some(n) = self.noisy_by_rule.get_mut(id as usize) {
                *n += 1;
            }
        } else if let Some((_, n)) = self.noisy_by_team_rule.iter_mut().find(|(r, _)| *r == id) {
            *n += 1;
        } else {
            self.noisy_by_team_rule.push((id, 1));
        }
    }

    pub fn masked(&mut self, detector: u16, field: FieldKind) {
        if let Some(n) = self.by_detector.get_mut(usize::from(detector)) {
            *n += 1;
        }
        self.by_field[field.index()] += 1;
    }

    /// The stats, rules named by `rule_name` (team rules follow the
    /// platform's, by id).
    pub fn into_stats(
        mut self,
        rule_name: impl Fn(u32) -> String,
        detector_names: &[String],
    ) -> Stats {
        let noisy: u64 = self.noisy_by_rule.iter().sum::<u64>()
            + self.noisy_by_team_rule.iter().map(|(_, n)| n).sum::<u64>();
        self.noisy_by_team_rule.sort_unstable();
        // Only the rules that fired, named: with team files there are thousands.
        let dropped_by_rule = (0u32..)
            .zip(self.noisy_by_rule.iter().copied())
            .chain(self.noisy_by_team_rule.iter().copied())
            .filter(|&(_, value)| value > 0)
            .map(|(id, value)| Count { name: rule_name(id), value })
            .collect();
        let dropped = noisy + self.dropped_descendants;
        let named = |pairs: Vec<(String, u64)>| {
            pairs
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(name, value)| Count { name, value })
                .collect()
        };
        Stats {
            spans_in: self.spans_in,
            spans_out: self.spans_in - dropped,
            spans_dropped: dropped,
            dropped_by_rule,
            dropped_descendants: self.dropped_descendants,
            values_masked: self.by_detector.iter().sum(),
            masked_by_detector: fired(detector_names, &self.by_detector),
            masked_by_field: named(
                FieldKind::ALL.iter().map(|k| k.name().to_owned()).zip(self.by_field).collect(),
            ),
        }
    }
}

/// The names whose count is above zero, with their counts; filtered before
/// a name is cloned, as configs bring many detector names.
fn fired(names: &[String], counts: &[u64]) -> Vec<Count> {
    names
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(name, &value)| Count { name: name.clone(), value })
        .collect()
}
