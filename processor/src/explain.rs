//! Findings: what the processor did to which span, for audits.
//!
//! Findings carry no personal data: every text they quote (a matched path,
//! an attribute key) has its digit runs masked first. Each names the
//! `ResourceSpans` it came from by its index in the batch, so a host can
//! read that resource's attributes (`service.name`, the namespace) from the
//! input and group findings by service.

use crate::fnr::{self, Mode};
use crate::stats::FieldKind;

/// One thing the processor did to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A span dropped as noise, or as the descendant of a noisy span.
    Dropped {
        /// Index of the span's `ResourceSpans` in the batch, 0-based.
        resource: u32,
        /// The span's trace id (raw bytes).
        trace_id: Vec<u8>,
        /// The span's id (raw bytes).
        span_id: Vec<u8>,
        /// The glob that matched; `None` for a descendant.
        rule: Option<String>,
        /// The path that matched, masked; empty for a descendant.
        path: String,
    },
    /// A value masked.
    Masked {
        /// Index of the `ResourceSpans` the value sat in, 0-based; `None`
        /// for an unknown field of the request itself, outside every
        /// resource.
        resource: Option<u32>,
        /// The span's trace id; empty for resource and scope fields.
        trace_id: Vec<u8>,
        /// The span's id; empty for resource and scope fields.
        span_id: Vec<u8>,
        /// Where the value sat.
        field: FieldKind,
        /// The top-level attribute key, masked; empty for non-attribute fields.
        key: String,
        /// The detector that found it, by name (as in
        /// [`crate::Stats::masked_by_detector`]): `fnr`, `email`, a pattern's name...
        detector: String,
    },
}

impl Finding {
    /// Index of the `ResourceSpans` the finding came from; `None` for an
    /// unknown field of the request itself.
    pub fn resource(&self) -> Option<u32> {
        match self {
            Finding::Dropped { resource, .. } => Some(*resource),
            Finding::Masked { resource, .. } => *resource,
        }
    }
}

/// `text` as a string with every 11-digit run and split form masked, valid
/// or not: quoted text in a report must never leak what it reports on.
/// Findings pass every text they quote through it; a host that prints other
/// text from a batch or a config (a `service.name`, a namespace) can too.
///
/// ```
/// use tracescrub_processor::redact;
/// assert_eq!(redact(b"person-17053650260"), "person-***********");
/// assert_eq!(redact(b"checkout"), "checkout");
/// ```
pub fn redact(text: &[u8]) -> String {
    if !fnr::may_contain(text) {
        return String::from_utf8_lossy(text).into_owned();
    }
    let mut out = text.to_vec();
    fnr::scan(text, Mode::Any11, |f| {
        for b in &mut out[f.start..f.end] {
            if b.is_ascii_digit() {
                *b = b'*';
            }
        }
    });
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_any_number_shaped_run() {
        assert_eq!(redact(b"/internal/health/12345678901"), "/internal/health/***********");
        assert_eq!(redact(b"person.010190 12138"), "person.****** *****");
        assert_eq!(redact(b"/isAlive"), "/isAlive");
    }
}
