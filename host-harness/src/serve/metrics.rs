//! The gateway's metrics, rendered in the Prometheus text format.
//!
//! Names follow the collector's own telemetry: `receiver_accepted_spans`,
//! `exporter_sent_spans`, and so on, under the `tracescrub_` prefix.
//! Counters are atomics; the label sets that come from the config (rules,
//! detectors, field kinds) sit in maps behind one lock, taken once per
//! batch. Labels never carry span content.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tracescrub_processor::Stats;

use super::pool::Split;
use super::version::Version;

/// The protocol a batch arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/HTTP.
    Http,
    /// OTLP/gRPC.
    Grpc,
}

impl Transport {
    const ALL: [Transport; 2] = [Transport::Http, Transport::Grpc];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        }
    }
}

/// How a batch ended; the `outcome` label of `tracescrub_processor_batches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed and accepted upstream.
    Ok,
    /// Processed to no spans: acknowledged, nothing forwarded.
    Empty,
    /// Not valid OTLP (or not valid gzip).
    Malformed,
    /// Over a size limit.
    TooLarge,
    /// The component trapped.
    Trap,
    /// The batch ran past its deadline.
    Timeout,
    /// The upstream failed or refused it.
    UpstreamError,
    /// Refused because the gateway was at its in-flight limit.
    Overloaded,
    /// A host-side failure (an instance could not be created).
    Internal,
    /// The client stalled while sending the body and was cut off.
    BodyTimeout,
}

impl Outcome {
    const ALL: [Outcome; 10] = [
        Outcome::Ok,
        Outcome::Empty,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Trap,
        Outcome::Timeout,
        Outcome::UpstreamError,
        Outcome::Overloaded,
        Outcome::Internal,
        Outcome::BodyTimeout,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Empty => "empty",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Overloaded => "overloaded",
            Outcome::Internal => "internal",
            Outcome::BodyTimeout => "body_timeout",
        }
    }
}

/// Upper bounds of the latency histograms' buckets, in seconds: from half a
/// millisecond (a small batch on loopback) to 10 s (past every default
/// deadline and timeout).
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram.
#[derive(Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum_nanos.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Counts keyed by a name from the config or the engine.
#[derive(Default)]
struct Labeled {
    dropped_by_rule: BTreeMap<String, u64>,
    masked_by_detector: BTreeMap<String, u64>,
    masked_by_field: BTreeMap<String, u64>,
}

/// Everything the gateway counts.
#[derive(Default)]
pub struct Metrics {
    accepted_spans: [AtomicU64; 2],
    refused_spans: [AtomicU64; 2],
    sent_spans: AtomicU64,
    send_failed_spans: AtomicU64,
    dropped_descendants: AtomicU64,
    split_batches: AtomicU64,
    split_reruns: AtomicU64,
    batches: [AtomicU64; Outcome::ALL.len()],
    labeled: Mutex<Labeled>,
    processing: Histogram,
    request: Histogram,
    reload_success: AtomicU64,
    reload_failure: AtomicU64,
    team_file_failures: AtomicU64,
    in_flight: AtomicU64,
    receiving: AtomicU64,
}

fn index<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or(0)
}

impl Metrics {
    /// Counts one batch's outcome.
    pub fn batch(&self, outcome: Outcome) {
        self.batches[index(&Outcome::ALL, &outcome)].fetch_add(1, Relaxed);
    }

    /// Counts what the processor did to one batch, how long it took, and
    /// how it was split.
    pub fn processed(&self, stats: &Stats, took: Duration, split: Split) {
        self.processing.observe(took);
        if split.helped {
            self.split_batches.fetch_add(1, Relaxed);
        }
        if split.rerun {
            self.split_reruns.fetch_add(1, Relaxed);
        }
        self.dropped_descendants.fetch_add(stats.dropped_descendants, Relaxed);
        if stats.dropped_by_rule.is_empty()
            && stats.masked_by_detector.is_empty()
            && stats.masked_by_field.is_empty()
        {
            return;
        }
        let mut labeled = self.labeled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let add = |map: &mut BTreeMap<String, u64>, counts: &[tracescrub_processor::Count]| {
            for c in counts {
                match map.get_mut(&c.name) {
                    Some(v) => *v += c.value,
                    None => {
                        map.insert(c.name.clone(), c.value);
                    }
                }
            }
        };
        add(&mut labeled.dropped_by_rule, &stats.dropped_by_rule);
        add(&mut labeled.masked_by_detector, &stats.masked_by_detector);
        add(&mut labeled.masked_by_field, &stats.masked_by_field);
    }

    /// Counts spans acknowledged to a client.
    pub fn accepted(&self, transport: Transport, spans: u64) {
        self.accepted_spans[index(&Transport::ALL, &transport)].fetch_add(spans, Relaxed);
    }

    /// Counts spans of a batch answered with an error, when known.
    pub fn refused(&self, transport: Transport, spans: u64) {
        self.refused_spans[index(&Transport::ALL, &transport)].fetch_add(spans, Relaxed);
    }

    /// Counts spans the upstream accepted, or failed to.
    pub fn sent(&self, spans: u64, ok: bool) {
        if ok { &self.sent_spans } else { &self.send_failed_spans }.fetch_add(spans, Relaxed);
    }

    /// Observes one request's time from its body being read to its answer.
    pub fn request_took(&self, took: Duration) {
        self.request.observe(took);
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        if ok { &self.reload_success } else { &self.reload_failure }.fetch_add(1, Relaxed);
    }

    /// Team files that failed in a version that loaded (each kept its last
    /// good version).
    pub fn team_file_failures(&self, n: usize) {
        self.team_file_failures.fetch_add(n as u64, Relaxed);
    }

    /// A batch started (`+1`) or ended (`-1`).
    pub fn in_flight(&self, started: bool) {
        if started {
            self.in_flight.fetch_add(1, Relaxed);
        } else {
            self.in_flight.fetch_sub(1, Relaxed);
        }
    }

    /// A request started (`+1`) or stopped (`-1`) receiving its body.
    pub fn receiving(&self, started: bool) {
        if started {
            self.receiving.fetch_add(1, Relaxed);
        } else {
            self.receiving.fetch_sub(1, Relaxed);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, active: &Version, workers: usize) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(
            &mut out,
            "tracescrub_receiver_accepted_spans_total",
            "Spans in batches acknowledged to the client.",
        );
        for t in Transport::ALL {
            let v = self.accepted_spans[index(&Transport::ALL, &t)].load(Relaxed);
            let _ = writeln!(
                out,
                "tracescrub_receiver_accepted_spans_total{{transport=\"{}\"}} {v}",
                t.name()
            );
        }
        counter(
            &mut out,
            "tracescrub_receiver_refused_spans_total",
            "Spans in batches answered with an error, where the span count was known (processed, then not forwarded).",
        );
        for t in Transport::ALL {
            let v = self.refused_spans[index(&Transport::ALL, &t)].load(Relaxed);
            let _ = writeln!(
                out,
                "tracescrub_receiver_refused_spans_total{{transport=\"{}\"}} {v}",
                t.name()
            );
        }
        counter(&mut out, "tracescrub_exporter_sent_spans_total", "Spans the upstream accepted.");
        let _ =
            writeln!(out, "tracescrub_exporter_sent_spans_total {}", self.sent_spans.load(Relaxed));
        counter(
            &mut out,
            "tracescrub_exporter_send_failed_spans_total",
            "Spans the upstream failed or refused to accept.",
        );
        let _ = writeln!(
            out,
            "tracescrub_exporter_send_failed_spans_total {}",
            self.send_failed_spans.load(Relaxed)
        );
        {
            let labeled = self.labeled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            counter(
                &mut out,
                "tracescrub_processor_dropped_spans_total",
                "Noise spans dropped, by the glob that matched them.",
            );
            for (rule, v) in &labeled.dropped_by_rule {
                let _ = writeln!(
                    out,
                    "tracescrub_processor_dropped_spans_total{{rule=\"{}\"}} {v}",
                    escape(rule)
                );
            }
            counter(
                &mut out,
                "tracescrub_processor_masked_values_total",
                "Personal numbers masked, by detector (fnr, d-number, h-number, synthetic, any11).",
            );
            for (detector, v) in &labeled.masked_by_detector {
                let _ = writeln!(
                    out,
                    "tracescrub_processor_masked_values_total{{detector=\"{}\"}} {v}",
                    escape(detector)
                );
            }
            counter(
                &mut out,
                "tracescrub_processor_masked_fields_total",
                "Personal numbers masked, by field kind.",
            );
            for (field, v) in &labeled.masked_by_field {
                let _ = writeln!(
                    out,
                    "tracescrub_processor_masked_fields_total{{field=\"{}\"}} {v}",
                    escape(field)
                );
            }
        }
        counter(
            &mut out,
            "tracescrub_processor_dropped_descendant_spans_total",
            "Spans dropped because an ancestor in the same batch was noise.",
        );
        let _ = writeln!(
            out,
            "tracescrub_processor_dropped_descendant_spans_total {}",
            self.dropped_descendants.load(Relaxed)
        );
        counter(
            &mut out,
            "tracescrub_processor_split_batches_total",
            "Batches cut into parts of which idle workers ran some, alongside the worker that took the batch.",
        );
        let _ = writeln!(
            out,
            "tracescrub_processor_split_batches_total {}",
            self.split_batches.load(Relaxed)
        );
        counter(
            &mut out,
            "tracescrub_processor_split_reruns_total",
            "Batches processed in parts and then again whole, because a span dropped in one part had a child kept in another.",
        );
        let _ = writeln!(
            out,
            "tracescrub_processor_split_reruns_total {}",
            self.split_reruns.load(Relaxed)
        );
        counter(&mut out, "tracescrub_processor_batches_total", "Batches by how they ended.");
        for o in Outcome::ALL {
            let v = self.batches[index(&Outcome::ALL, &o)].load(Relaxed);
            let _ =
                writeln!(out, "tracescrub_processor_batches_total{{outcome=\"{}\"}} {v}", o.name());
        }
        self.processing.render(
            &mut out,
            "tracescrub_processor_batch_duration_seconds",
            "Time from a batch's body being read to its processed form: queueing, decompression, decoding and the component.",
        );
        self.request.render(
            &mut out,
            "tracescrub_receiver_request_duration_seconds",
            "Time from a batch's body being read to its answer, forwarding included.",
        );
        counter(
            &mut out,
            "tracescrub_reloads_total",
            "Reloads by result; a failed reload leaves the old version serving.",
        );
        let _ = writeln!(
            out,
            "tracescrub_reloads_total{{result=\"success\"}} {}",
            self.reload_success.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tracescrub_reloads_total{{result=\"failure\"}} {}",
            self.reload_failure.load(Relaxed)
        );
        counter(
            &mut out,
            "tracescrub_team_file_failures_total",
            "Team files left out of a version that loaded; each keeps its last good version.",
        );
        let _ = writeln!(
            out,
            "tracescrub_team_file_failures_total {}",
            self.team_file_failures.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tracescrub_active_version The version serving: its component and config hashes."
        );
        let _ = writeln!(out, "# TYPE tracescrub_active_version gauge");
        let _ = writeln!(
            out,
            "tracescrub_active_version{{component_sha256=\"{}\",config_sha256=\"{}\"}} 1",
            active.component_sha256, active.config_sha256
        );
        let _ = writeln!(
            out,
            "# HELP tracescrub_in_flight_batches Batches being processed or forwarded, their bodies in."
        );
        let _ = writeln!(out, "# TYPE tracescrub_in_flight_batches gauge");
        let _ = writeln!(out, "tracescrub_in_flight_batches {}", self.in_flight.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP tracescrub_receiving_requests Requests whose body is still arriving."
        );
        let _ = writeln!(out, "# TYPE tracescrub_receiving_requests gauge");
        let _ = writeln!(out, "tracescrub_receiving_requests {}", self.receiving.load(Relaxed));
        let _ = writeln!(out, "# HELP tracescrub_workers Worker threads running the component.");
        let _ = writeln!(out, "# TYPE tracescrub_workers gauge");
        let _ = writeln!(out, "tracescrub_workers {workers}");
        out
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
