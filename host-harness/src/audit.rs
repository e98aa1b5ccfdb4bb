//! Audits: what a config would drop and mask in captured files, and which
//! personal numbers would still get through.
//!
//! An audit changes nothing. It explains each batch through the component,
//! then decodes the processed batch and runs the independent
//! [`residual`] scan over it. With `raw`, it skips the
//! processor and scans the input as it is: what leaks today.
//! [`by_service`] groups what it found by the service it came from.

pub mod by_service;

use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;
use tracescrub_processor::Finding;

use self::by_service::{ByService, resource_keys};
use crate::formats;
use crate::replay::{BatchError, Session, location};
use crate::residual::{self, Residual};

/// What auditing one file found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// The file.
    pub path: String,
    /// Batches read.
    pub batches: u64,
    /// Spans the config would drop.
    pub would_drop: u64,
    /// Values the config would mask.
    pub would_mask: u64,
    /// Personal numbers left after processing (or, raw, in the input).
    pub residual: u64,
    /// Batches or files that could not be read.
    pub errors: u64,
    /// Each drop and mask (not in JSON reports: counts only).
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// The drops and masks, tallied per service.
    #[serde(skip)]
    pub by_service: ByService,
    /// Each personal number left, with its place.
    #[serde(skip)]
    pub leaks: Vec<Residual>,
    /// Each failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<BatchError>,
}

/// Audits one file. `session` is `None` for a raw audit; `team_key` is the
/// resource attribute that names a service's namespace (see
/// [`by_service::Grouping`]).
pub fn audit_file(
    mut session: Option<&mut Session>,
    team_key: &str,
    path: &Path,
    raw: &[u8],
) -> AuditReport {
    let mut report = AuditReport { path: path.display().to_string(), ..AuditReport::default() };
    let batches = match formats::read(raw) {
        Ok((_, batches)) => batches,
        Err(e) => {
            report.errors += 1;
            report.failures.push(BatchError { location: String::new(), reason: e.0 });
            return report;
        }
    };
    let detectors = session.as_ref().map(|s| s.detectors.clone()).unwrap_or_default();
    for batch in batches {
        report.batches += 1;
        let fail = |report: &mut AuditReport, reason: String| {
            report.errors += 1;
            report.failures.push(BatchError { location: location(batch.location), reason });
        };
        let input = match batch.bytes {
            Ok(b) => b,
            Err(reason) => {
                fail(&mut report, reason);
                continue;
            }
        };
        let after = match session.as_deref_mut() {
            None => input,
            Some(s) => match s.explain(&input) {
                Ok((out, stats, findings)) => {
                    report.would_drop += stats.spans_dropped;
                    report.would_mask += stats.values_masked;
                    let keys = resource_keys(&input, team_key);
                    report.by_service.add(keys.as_deref(), &findings);
                    report.findings.extend(findings);
                    out
                }
                Err(e) => {
                    fail(&mut report, crate::one_line(&e));
                    continue;
                }
            },
        };
        match ExportTraceServiceRequest::decode(after.as_slice()) {
            Ok(req) => {
                let leaks = residual::scan_with(&req, &detectors);
                report.residual += leaks.len() as u64;
                report.leaks.extend(leaks);
            }
            Err(e) => fail(&mut report, format!("does not decode as OTLP: {e}")),
        }
    }
    report
}
