//! `tracescrub bench`: how fast the component is, against the native
//! engine and two reference points, on one workload in one process.
//!
//! The contenders, each timed over every batch of the workload:
//!
//! 1. **wasm**: the component under wasmtime through [`Scrubber::process`],
//!    as `replay` and `serve` run it: copies of the batch into and the output
//!    out of the guest included, and a fresh instance every
//!    `max_batches_per_instance` batches
//!    ([`crate::DEFAULT_MAX_BATCHES_PER_INSTANCE`]), its instantiation and
//!    processor creation included;
//! 2. **native**: [`tracescrub_processor::Processor::process_into`] with one
//!    reused output buffer;
//! 3. **prost round trip**: decode each batch into an
//!    `ExportTraceServiceRequest` and encode it back (reused buffer), no
//!    processing: what a processor that builds message structs pays before
//!    it does anything;
//! 4. **scan**: one pass touching every byte (count the ASCII digits): the
//!    floor any processor that reads its input sits on.
//!
//! After a checked warm-up pass (the component's and the native engine's
//! outputs must be byte-identical), each round hands every batch to all
//! four contenders in turn, and sums each contender's times. A slow spell
//! of a shared machine then falls on all four alike, where whole passes one
//! after another would let it fall on one. The order cycles through all 24
//! from batch to batch, so none always runs first, on a batch not yet in
//! the cache, or always right after the same other. The median round of
//! each is reported.
//!
//! With `--baseline-config`, a second config runs on the component right
//! next to the wasm pass on every batch, before it or after it in turn
//! (see `schedule`), and `config_vs_baseline` is the median of the
//! rounds' own ratios (see [`Report::config_vs_baseline`]).
//!
//! Besides throughput the bench reports the guest's linear-memory peak per
//! batch (each store's limiter records every growth), and how long compiling
//! and instantiating the component take.

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tracescrub_processor::{Processor, Stats};

use crate::{
    HostError, InstanceOptions, LoadSource, LoadedComponent, Runtime, Scrubber, ScrubberInstance,
};

/// Rounds when none is given.
pub const DEFAULT_ROUNDS: usize = 7;

/// Cold loads timed when none is given (each compiles the whole component).
pub const DEFAULT_COLD_LOADS: usize = 3;

/// Instantiations timed.
const INSTANTIATIONS: usize = 25;

/// One megabyte, as in MB/s: 10^6 bytes.
const MB: f64 = 1e6;

/// The batches to run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Where they came from, for the report.
    pub description: String,
    /// Protobuf-encoded `ExportTraceServiceRequest`s.
    pub batches: Vec<Vec<u8>>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The config, as the JSON document the component reads.
    pub config_json: String,
    /// Where the config came from, for the report.
    pub config_origin: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// Where the component came from, for the report.
    pub component_origin: String,
    /// Timed rounds (at least 1).
    pub rounds: usize,
    /// Cold loads timed (at least 1; each compiles the component).
    pub cold_loads: usize,
    /// Have wasmtime write `/tmp/perf-PID.map`, so that `perf report` names
    /// the guest's functions.
    pub perf_map: bool,
    /// Batches the wasm contender's instance processes before a fresh one
    /// takes over (0: only after a trap); [`crate::DEFAULT_MAX_BATCHES_PER_INSTANCE`]
    /// is what `replay` and `serve` use.
    pub max_batches_per_instance: u64,
    /// A second config (JSON, and where it came from) run on the component
    /// next to the first on every batch (see `schedule`): the report then
    /// ends with `config_vs_baseline`, the first's throughput over this one's.
    pub baseline: Option<(String, String)>,
}

/// Why the bench could not run.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<HostError> for BenchError {
    fn from(e: HostError) -> BenchError {
        BenchError(crate::one_line(&e))
    }
}

/// The timings of one contender.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    /// `wasm`, `native`, `prost round trip` or `scan`.
    pub name: &'static str,
    /// One pass over the workload, per round, in round order.
    pub rounds: Vec<Duration>,
    /// The median of `rounds`.
    pub median: Duration,
    /// MB (10^6 bytes) of OTLP input per second, at the median.
    pub mb_per_s: f64,
    /// Spans per second, at the median.
    pub spans_per_s: f64,
}

impl Contender {
    fn new(name: &'static str, rounds: Vec<Duration>, bytes: u64, spans: u64) -> Contender {
        let median = median(&rounds);
        let secs = median.as_secs_f64().max(1e-9);
        Contender {
            name,
            rounds,
            median,
            mb_per_s: bytes as f64 / MB / secs,
            spans_per_s: spans as f64 / secs,
        }
    }
}

/// Linear memory of the guest, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReport {
    /// After instantiating and creating the processor, before any batch.
    pub baseline: usize,
    /// Per batch, its size and the peak of a fresh instance that processed
    /// it and nothing else.
    pub per_batch_peak: Vec<(usize, usize)>,
    /// The peak of one instance that processed every batch in turn.
    pub run_peak: usize,
}

/// Loading and instantiating the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Creating the wasmtime engine.
    pub engine: Duration,
    /// `Runtime::load` from bytes (Cranelift compile and link), each try.
    pub cold_loads: Vec<Duration>,
    /// `Runtime::load` from tracescrub's compiled-component cache plus
    /// instantiating, each try.
    pub cached_loads: Vec<Duration>,
    /// Creating the processor in each of those instances, each try.
    pub cached_creates: Vec<Duration>,
    /// Where the timed cached loads came from: `Compiled` if there is no
    /// usable cache directory.
    pub cached_source: LoadSource,
    /// Instantiating from the pre-linked component, median.
    pub instantiate: Duration,
    /// Creating the processor in a fresh instance (config parse and glob
    /// compile inside the guest), median.
    pub create_processor: Duration,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The workload's description.
    pub workload: String,
    /// Where the config came from.
    pub config_origin: String,
    /// Where the component came from.
    pub component_origin: String,
    /// The wasm contender's `max_batches_per_instance`.
    pub max_batches_per_instance: u64,
    /// Instances the wasm contender built over the timed rounds.
    pub wasm_instances: u64,
    /// Batches run.
    pub batches: usize,
    /// Spans in them.
    pub spans: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Bytes of the largest batch.
    pub largest_batch: usize,
    /// What the processor did to the workload (one pass), summed.
    pub totals: Totals,
    /// wasm, native, prost round trip, scan.
    pub contenders: [Contender; 4],
    /// The wasm contender under the baseline config, and where that came from.
    pub baseline: Option<(Contender, String)>,
    /// Guest memory.
    pub memory: MemoryReport,
    /// Load and instantiate times.
    pub load: LoadReport,
    /// The whole run, wall clock.
    pub elapsed: Duration,
}

/// Stats summed over the workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Spans in.
    pub spans_in: u64,
    /// Spans dropped (noise and descendants).
    pub spans_dropped: u64,
    /// Values masked.
    pub values_masked: u64,
    /// Output bytes.
    pub bytes_out: u64,
}

impl Totals {
    fn add(&mut self, stats: &Stats, bytes_out: usize) {
        self.spans_in += stats.spans_in;
        self.spans_dropped += stats.spans_dropped;
        self.values_masked += stats.values_masked;
        self.bytes_out += bytes_out as u64;
    }
}

/// Runs the bench. `progress` is told what is happening (for stderr).
pub fn run(
    workload: &Workload,
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, BenchError> {
    let started = Instant::now();
    if workload.batches.is_empty() {
        return Err(BenchError("the workload has no batches".into()));
    }
    let rounds = options.rounds.max(1);
    let bytes: u64 = workload.batches.iter().map(|b| b.len() as u64).sum();
    let largest_batch = workload.batches.iter().map(Vec::len).max().unwrap_or(0);

    progress("compiling the component");
    let t = Instant::now();
    // Cold: no compiled-code cache, so each load compiles.
    let runtime = if options.perf_map { Runtime::profiled()? } else { Runtime::uncached()? };
    let engine_time = t.elapsed();
    let mut cold_loads = Vec::new();
    let mut component = None;
    for _ in 0..options.cold_loads.max(1) {
        let t = Instant::now();
        let loaded = runtime.load(&options.component)?;
        cold_loads.push(t.elapsed());
        component = Some(loaded);
    }
    let Some(component) = component else { return Err(BenchError("no component loaded".into())) };
    // Cached: the first load fills the cache (if this component was not in
    // it already); the timed ones map it and instantiate, then create the
    // processor, timed apart.
    let cached_runtime = Runtime::new()?;
    cached_runtime.load(&options.component)?;
    let (mut cached_loads, mut cached_creates, mut cached_source) =
        (Vec::new(), Vec::new(), LoadSource::Cache);
    for _ in 0..options.cold_loads.max(1) {
        let t = Instant::now();
        let loaded = cached_runtime.load(&options.component)?;
        let mut instance = loaded.instantiate(&InstanceOptions::default())?;
        cached_loads.push(t.elapsed());
        let t = Instant::now();
        black_box(instance.create_processor(&options.config_json)?);
        cached_creates.push(t.elapsed());
        cached_source = loaded.source();
    }
    let (instantiate, create_processor) = instantiate_times(&component, &options.config_json)?;
    let load = LoadReport {
        engine: engine_time,
        cold_loads,
        cached_loads,
        cached_creates,
        cached_source,
        instantiate,
        create_processor,
    };

    let mut scrubber = Scrubber::new(
        &component,
        &options.config_json,
        &InstanceOptions::default(),
        options.max_batches_per_instance,
    )?;
    let native = Processor::new(&options.config_json)
        .map_err(|e| BenchError(format!("the native engine rejects the config: {e}")))?;

    // Warm-up and check: the same bytes and stats from both engines.
    progress("warm-up and check");
    let mut totals = Totals::default();
    let mut out = Vec::new();
    for (i, batch) in workload.batches.iter().enumerate() {
        let stats = native
            .process_into(batch, &mut out)
            .map_err(|e| BenchError(format!("batch {i}: native engine: {e}")))?;
        let (wasm_out, wasm_stats) = scrubber
            .process(batch)
            .map_err(|e| BenchError(format!("batch {i}: component: {}", crate::one_line(&e))))?;
        if wasm_out != out || wasm_stats != stats {
            return Err(BenchError(format!(
                "batch {i}: the component and the native engine disagree"
            )));
        }
        totals.add(&stats, out.len());
    }
    let spans = totals.spans_in;
    let mut prost_buf = Vec::new();
    prost_pass(&workload.batches, &mut prost_buf)?;
    scan_pass(&workload.batches);

    let mut baseline = match &options.baseline {
        None => None,
        Some((json, _)) => {
            let mut s = Scrubber::new(
                &component,
                json,
                &InstanceOptions::default(),
                options.max_batches_per_instance,
            )?;
            // Warm-up, and a check that it takes every batch.
            wasm_pass(&mut s, &workload.batches)?;
            Some(s)
        }
    };
    let instances_before = scrubber.instances();
    let orders = orders();
    // The four contenders' rounds, then the baseline config's.
    let mut times: [Vec<Duration>; 5] = Default::default();
    let mut turn = 0;
    for round in 0..rounds {
        progress(&format!("round {}/{rounds}", round + 1));
        let mut sums = [Duration::ZERO; 5];
        for batch in &workload.batches {
            let batch = std::slice::from_ref(batch);
            for which in schedule(&orders, turn, baseline.is_some()) {
                let t = Instant::now();
                match which {
                    0 => wasm_pass(&mut scrubber, batch)?,
                    1 => native_pass(&native, batch, &mut out)?,
                    2 => prost_pass(batch, &mut prost_buf)?,
                    3 => scan_pass(batch),
                    // BASELINE: scheduled only when there is one.
                    _ => {
                        if let Some(s) = baseline.as_mut() {
                            wasm_pass(s, batch)?;
                        }
                    }
                }
                sums[which] += t.elapsed();
            }
            turn += 1;
        }
        for (time, sum) in times.iter_mut().zip(sums) {
            time.push(sum);
        }
    }
    let [wasm, native_t, prost, scan, baseline_times] = times;
    let baseline = options.baseline.as_ref().map(|(_, origin)| {
        (Contender::new("wasm, baseline", baseline_times, bytes, spans), origin.clone())
    });
    let wasm_instances = scrubber.instances() - instances_before;
    let contenders = [
        Contender::new("wasm", wasm, bytes, spans),
        Contender::new("native", native_t, bytes, spans),
        Contender::new("prost round trip", prost, bytes, spans),
        Contender::new("scan", scan, bytes, spans),
    ];

    progress("measuring guest memory");
    let memory = memory_report(&component, &options.config_json, &workload.batches)?;

    Ok(Report {
        workload: workload.description.clone(),
        config_origin: options.config_origin.clone(),
        component_origin: options.component_origin.clone(),
        max_batches_per_instance: options.max_batches_per_instance,
        wasm_instances,
        batches: workload.batches.len(),
        spans,
        bytes,
        largest_batch,
        totals,
        contenders,
        baseline,
        memory,
        load,
        elapsed: started.elapsed(),
    })
}

/// The baseline config's pass, in [`schedule`].
const BASELINE: usize = 4;

/// The passes over the `turn`th batch, in order: the four contenders in
/// the turn's order, with the baseline config's pass (when there is one)
/// right next to the wasm pass. The two configs then meet the same batch,
/// the same warm or cold cache and the same moment of a shared machine.
/// The baseline goes first on every other batch, and each order comes with
/// it on either side: whichever config runs second finds the other's code
/// and the batch warm, so neither may always run second. (The baseline
/// used to run before or after all four contenders: the same config then
/// read about 3 % slower as the wasm contender than as the baseline.)
fn schedule(orders: &[[usize; 4]], turn: usize, baseline: bool) -> Vec<usize> {
    let mut passes = orders[turn % orders.len()].to_vec();
    if baseline {
        let wasm = passes.iter().position(|&p| p == 0).unwrap_or_default();
        let first = (turn + turn / orders.len()).is_multiple_of(2);
        passes.insert(if first { wasm } else { wasm + 1 }, BASELINE);
    }
    passes
}

/// The 24 orders of the four contenders. Taken in turn, batch after batch,
/// each contender runs first (on a batch not yet in the cache) as often as
/// any other, and after each of the others as often: the wasm pass churns
/// the cache more than the scan does, and no contender always follows it.
fn orders() -> Vec<[usize; 4]> {
    let mut all = Vec::with_capacity(24);
    for a in 0..4 {
        for b in (0..4).filter(|&b| b != a) {
            for c in (0..4).filter(|&c| c != a && c != b) {
                all.push([a, b, c, 6 - a - b - c]);
            }
        }
    }
    all
}

/// Medians of instantiating from the pre-linked component, and of creating
/// a processor in a fresh instance.
fn instantiate_times(
    component: &LoadedComponent,
    config_json: &str,
) -> Result<(Duration, Duration), BenchError> {
    let mut instantiate = Vec::new();
    let mut create = Vec::new();
    for _ in 0..INSTANTIATIONS {
        let t = Instant::now();
        let mut instance = component.instantiate(&InstanceOptions::default())?;
        instantiate.push(t.elapsed());
        let t = Instant::now();
        let processor = instance.create_processor(config_json)?;
        create.push(t.elapsed());
        black_box(processor);
    }
    Ok((median(&instantiate), median(&create)))
}

fn wasm_pass(scrubber: &mut Scrubber, batches: &[Vec<u8>]) -> Result<(), BenchError> {
    for batch in batches {
        let (out, stats) = scrubber.process(black_box(batch))?;
        black_box((out, stats));
    }
    Ok(())
}

fn native_pass(
    processor: &Processor,
    batches: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Result<(), BenchError> {
    for batch in batches {
        let stats =
            processor.process_into(black_box(batch), out).map_err(|e| BenchError(e.to_string()))?;
        black_box((&out, stats));
    }
    Ok(())
}

fn prost_pass(batches: &[Vec<u8>], buf: &mut Vec<u8>) -> Result<(), BenchError> {
    for batch in batches {
        let request = ExportTraceServiceRequest::decode(black_box(batch.as_slice()))
            .map_err(|e| BenchError(format!("prost: {e}")))?;
        buf.clear();
        request.encode(buf).map_err(|e| BenchError(format!("prost: {e}")))?;
        black_box(&buf);
    }
    Ok(())
}

/// Counts the ASCII digits of every batch: one read of every byte.
fn scan_pass(batches: &[Vec<u8>]) {
    let mut digits = 0u64;
    for batch in batches {
        for &b in black_box(batch.as_slice()) {
            digits += u64::from(b.is_ascii_digit());
        }
    }
    black_box(digits);
}

/// The median over rounds of `baseline[i] / config[i]`: how much faster
/// the config ran than the baseline in the same round (0 with no rounds).
/// Of an even count, the mean of the middle two: either one alone would
/// lean one way, and the figure read the other way round would then not be
/// its inverse.
fn paired_ratio(config: &[Duration], baseline: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = config
        .iter()
        .zip(baseline)
        .map(|(c, b)| b.as_secs_f64() / c.as_secs_f64().max(1e-9))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => ratios[n / 2],
        _ => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Guest memory.

fn memory_report(
    component: &LoadedComponent,
    config_json: &str,
    batches: &[Vec<u8>],
) -> Result<MemoryReport, BenchError> {
    let fresh = || ScrubberInstance::create(component, config_json);
    let baseline = fresh()?.memory_peak();
    let mut per_batch_peak = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut instance = fresh()?;
        instance.process(batch)?;
        per_batch_peak.push((batch.len(), instance.memory_peak()));
    }
    let mut whole = fresh()?;
    for batch in batches {
        whole.process(batch)?;
    }
    Ok(MemoryReport { baseline, per_batch_peak, run_peak: whole.memory_peak() })
}

// ---------------------------------------------------------------------------
// The report.

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

impl Report {
    /// The contender at `index` in [`Report::contenders`].
    fn contender(&self, index: usize) -> &Contender {
        &self.contenders[index]
    }

    /// wasm's throughput over contender `index`'s.
    fn ratio(&self, index: usize) -> f64 {
        self.contender(0).mb_per_s / self.contender(index).mb_per_s.max(f64::MIN_POSITIVE)
    }

    /// The first config's wasm throughput over the baseline config's: the
    /// median over the rounds of each round's ratio. Both configs ran
    /// every batch of a round side by side, so a slow spell of the machine
    /// falls on both halves of a round's ratio, where the two medians of
    /// the throughput lines may come from different rounds.
    pub fn config_vs_baseline(&self) -> Option<f64> {
        let (b, _) = self.baseline.as_ref()?;
        Some(paired_ratio(&self.contender(0).rounds, &b.rounds))
    }

    /// The report's last line, for scripts.
    pub fn summary_line(&self) -> String {
        let baseline = self
            .config_vs_baseline()
            .map_or(String::new(), |r| format!(" config_vs_baseline={r:.2}"));
        format!(
            "bench: spans_per_s={:.0} wasm_mb_s={:.0} native_mb_s={:.0} prost_roundtrip_mb_s={:.0} scan_mb_s={:.0} wasm_vs_prost={:.2} wasm_vs_native={:.2} wasm_vs_scan={:.2}",
            self.contender(0).spans_per_s,
            self.contender(0).mb_per_s,
            self.contender(1).mb_per_s,
            self.contender(2).mb_per_s,
            self.contender(3).mb_per_s,
            self.ratio(2),
            self.ratio(1),
            self.ratio(3),
        ) + &baseline
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        let pct = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 * 100.0 / d as f64 };
        writeln!(f, "workload: {}", self.workload)?;
        writeln!(
            f,
            "  {} batches, {} spans, {:.1} MB ({} bytes/span on average, largest batch {:.2} MB)",
            self.batches,
            self.spans,
            self.bytes as f64 / MB,
            self.bytes / self.spans.max(1),
            self.largest_batch as f64 / MB
        )?;
        writeln!(f, "config: {}; component: {}", self.config_origin, self.component_origin)?;
        let renewal = match self.max_batches_per_instance {
            0 => "one instance for every batch (renewed only after a trap)".to_owned(),
            1 => "a fresh instance for every batch".to_owned(),
            n => format!("a fresh instance every {n} batches"),
        };
        writeln!(
            f,
            "wasm runs {renewal}: {} instances over the timed rounds",
            self.wasm_instances
        )?;
        writeln!(
            f,
            "processing: {} spans dropped ({:.1} %), {} values masked, output {:.1} MB ({:.1} % of input); component and native outputs identical",
            t.spans_dropped,
            pct(t.spans_dropped, t.spans_in),
            t.values_masked,
            t.bytes_out as f64 / MB,
            pct(t.bytes_out, self.bytes)
        )?;
        writeln!(f)?;
        let l = &self.load;
        let cold: Vec<String> = l.cold_loads.iter().map(|d| ms(*d)).collect();
        writeln!(f, "component load (engine creation {}):", ms(l.engine))?;
        writeln!(
            f,
            "  cold load (Runtime::load from bytes: Cranelift compile + link): {} (median {})",
            cold.join(", "),
            ms(median(&l.cold_loads))
        )?;
        let cached: Vec<String> = l.cached_loads.iter().map(|d| ms(*d)).collect();
        let source = match l.cached_source {
            LoadSource::Cache => "tracescrub's compiled-component cache",
            _ => "NO CACHE: no writable cache directory, so these compiled",
        };
        writeln!(
            f,
            "  cached load + instantiate ({source}): {} (median {})",
            cached.join(", "),
            ms(median(&l.cached_loads))
        )?;
        let creates: Vec<String> = l.cached_creates.iter().map(|d| ms(*d)).collect();
        writeln!(
            f,
            "  then create processor: {} (median {})",
            creates.join(", "),
            ms(median(&l.cached_creates))
        )?;
        writeln!(
            f,
            "  instantiate from the pre-linked component: {} (median of {INSTANTIATIONS})",
            us(l.instantiate)
        )?;
        writeln!(
            f,
            "  create processor in a fresh instance (config + globs in the guest): {} (median of {INSTANTIATIONS})",
            us(l.create_processor)
        )?;
        writeln!(f)?;
        let m = &self.memory;
        let mut peaks: Vec<usize> = m.per_batch_peak.iter().map(|&(_, peak)| peak).collect();
        peaks.sort_unstable();
        // The batch whose growth over the baseline is largest relative to
        // its size (the baseline alone would make the smallest batch win).
        let growth = |(len, peak): (usize, usize)| {
            peak.saturating_sub(m.baseline) as f64 / len.max(1) as f64
        };
        let (worst_len, worst_peak) = m
            .per_batch_peak
            .iter()
            .copied()
            .max_by(|&a, &b| growth(a).total_cmp(&growth(b)))
            .unwrap_or((1, 0));
        let (lo, mid, hi) = (
            peaks.first().copied().unwrap_or(0),
            peaks.get(peaks.len() / 2).copied().unwrap_or(0),
            peaks.last().copied().unwrap_or(0),
        );
        writeln!(f, "guest linear memory (largest memory.grow the store's limiter allowed):")?;
        writeln!(f, "  after instantiate + create processor: {}", mib(m.baseline))?;
        writeln!(
            f,
            "  fresh instance, one batch: min {} / median {} / max {}",
            mib(lo),
            mib(mid),
            mib(hi)
        )?;
        writeln!(
            f,
            "  worst growth relative to its batch: peak {} for a {:.2} MB batch ({:.1}x the batch; growth over the baseline {:.1}x)",
            mib(worst_peak),
            worst_len as f64 / MB,
            worst_peak as f64 / worst_len.max(1) as f64,
            worst_peak.saturating_sub(m.baseline) as f64 / worst_len.max(1) as f64
        )?;
        writeln!(
            f,
            "  one instance, every batch in turn: {} (memory never shrinks)",
            mib(m.run_peak)
        )?;
        writeln!(f)?;
        let rounds = self.contender(0).rounds.len();
        writeln!(f, "throughput, median of {rounds} rounds (MB = 10^6 bytes of OTLP input):")?;
        for c in &self.contenders {
            let (min, max) = (
                c.rounds.iter().min().copied().unwrap_or_default(),
                c.rounds.iter().max().copied().unwrap_or_default(),
            );
            writeln!(
                f,
                "  {:<17} {:>8.0} MB/s {:>12.0} spans/s   pass {} (min {}, max {})",
                c.name,
                c.mb_per_s,
                c.spans_per_s,
                ms(c.median),
                ms(min),
                ms(max)
            )?;
        }
        if let Some((b, origin)) = &self.baseline {
            writeln!(
                f,
                "  {:<17} {:>8.0} MB/s {:>12.0} spans/s   pass {}   (the baseline config: {origin})",
                b.name,
                b.mb_per_s,
                b.spans_per_s,
                ms(b.median),
            )?;
        }
        writeln!(
            f,
            "ratios (wasm throughput / other): wasm/native {:.2}, wasm/prost round trip {:.2}, wasm/scan {:.2}",
            self.ratio(1),
            self.ratio(2),
            self.ratio(3)
        )?;
        writeln!(f, "run time: {:.1} s", self.elapsed.as_secs_f64())?;
        write!(f, "{}", self.summary_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_MAX_BATCHES_PER_INSTANCE;
    use tracescrub_corpus::{CorpusOptions, generate};

    #[test]
    fn the_orders_are_every_permutation_once() {
        let orders = orders();
        let mut sorted = orders.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 24);
        for order in &orders {
            let mut o = *order;
            o.sort_unstable();
            assert_eq!(o, [0, 1, 2, 3], "{order:?}");
        }
        // Each contender follows each other one equally often.
        for a in 0..4 {
            for b in (0..4).filter(|&b| b != a) {
                let after = orders.iter().filter(|o| o.windows(2).any(|w| w == [a, b])).count();
                assert_eq!(after, 6, "{b} after {a}");
            }
        }
    }

    /// Scenario: every turn of two passes through the orders, with and
    /// without a baseline config.
    /// Guarantees: each batch gets every contender once; the baseline pass
    /// sits right next to the wasm pass, before it on exactly half the
    /// batches, and every order comes with the baseline on either side.
    #[test]
    fn the_baseline_runs_next_to_the_wasm_pass_on_either_side_alike() {
        let orders = orders();
        let (mut first, mut sides) = (0, std::collections::BTreeSet::new());
        for turn in 0..2 * orders.len() {
            let passes = schedule(&orders, turn, true);
            let mut sorted = passes.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, BASELINE], "turn {turn}: {passes:?}");
            let at = |p: usize| passes.iter().position(|&x| x == p).unwrap_or(usize::MAX);
            assert_eq!(at(0).abs_diff(at(BASELINE)), 1, "turn {turn}: {passes:?}");
            first += usize::from(at(BASELINE) < at(0));
            sides.insert((turn % orders.len(), at(BASELINE) < at(0)));
            assert_eq!(schedule(&orders, turn, false), orders[turn % orders.len()]);
        }
        assert_eq!(first, orders.len());
        assert_eq!(sides.len(), 2 * orders.len());
        // Neither config runs twice in a row, across batches either: a
        // pass right after its own finds its instance hot.
        let passes: Vec<usize> =
            (0..4 * orders.len()).flat_map(|t| schedule(&orders, t, true)).collect();
        let twice = |w: &[usize]| w[0] == w[1] && (w[0] == 0 || w[0] == BASELINE);
        assert!(!passes.windows(2).any(twice), "{passes:?}");
    }

    /// Scenario: three rounds, a slow spell in the last, and the two
    /// configs' round times ordered differently.
    /// Guarantees: the ratio is the median of each round's own ratio
    /// (1.10 here), not the ratio of the two medians (1.20).
    #[test]
    fn config_vs_baseline_pairs_rounds() {
        let d = Duration::from_micros;
        let config = [d(1000), d(1050), d(3000)];
        let baseline = [d(1100), d(1260), d(3150)];
        let r = paired_ratio(&config, &baseline);
        assert!((r - 1.1).abs() < 1e-9, "{r}");
        let (c, b) = (median(&config), median(&baseline));
        assert!((b.as_secs_f64() / c.as_secs_f64() - 1.2).abs() < 1e-9);
        assert_eq!(paired_ratio(&[], &[]), 0.0);
        // An even count takes the mean of the middle two, so that the
        // figure read the other way round is its inverse.
        let (config, baseline) = ([d(1000), d(1000)], [d(1100), d(1200)]);
        let r = paired_ratio(&config, &baseline);
        assert!((r - 1.15).abs() < 1e-9, "{r}");
        let back = paired_ratio(&baseline, &config);
        assert!((back - (1.0 / 1.1 + 1.0 / 1.2) / 2.0).abs() < 1e-9, "{back}");
    }

    #[test]
    fn median_takes_the_middle_round() {
        let d = Duration::from_millis;
        assert_eq!(median(&[d(5), d(1), d(3)]), d(3));
        assert_eq!(median(&[d(4), d(2)]), d(4));
        assert_eq!(median(&[]), Duration::ZERO);
    }

    /// Scenario: a short run on a small generated workload with the
    /// embedded component.
    /// Guarantees: every contender is timed each round, the spans are
    /// counted, memory grows past the baseline, and the last line of the
    /// report is the summary scripts parse, with integer figures and
    /// two-decimal ratios in the documented order.
    #[test]
    fn a_short_run_reports_every_figure() {
        let corpus =
            generate(&CorpusOptions { seed: 9, min_spans: 1024, batch_spans: 512 }).unwrap();
        let workload = Workload { description: "test".into(), batches: corpus.batches };
        let options = BenchOptions {
            config_json: "{}".into(),
            config_origin: "test".into(),
            component: crate::DEFAULT_COMPONENT.to_vec(),
            component_origin: "embedded".into(),
            rounds: 2,
            cold_loads: 1,
            perf_map: false,
            max_batches_per_instance: DEFAULT_MAX_BATCHES_PER_INSTANCE,
            baseline: None,
        };
        let report = run(&workload, &options, &mut |_| {}).unwrap();
        assert_eq!(report.spans, corpus.spans);
        assert_eq!(report.batches, 2);
        for c in &report.contenders {
            assert_eq!(c.rounds.len(), 2, "{}", c.name);
            assert!(c.mb_per_s > 0.0 && c.spans_per_s > 0.0, "{}", c.name);
        }
        assert!(report.memory.baseline > 0);
        assert!(
            report.memory.per_batch_peak.iter().all(|&(_, peak)| peak >= report.memory.baseline)
        );
        assert!(report.memory.run_peak >= report.memory.baseline);
        assert_eq!(report.totals.values_masked, corpus.planted_numbers);

        let text = report.to_string();
        let last = text.lines().last().unwrap();
        assert_eq!(last, report.summary_line());
        let rest = last.strip_prefix("bench: ").unwrap();
        let keys: Vec<&str> = rest.split(' ').map(|kv| kv.split_once('=').unwrap().0).collect();
        assert_eq!(
            keys,
            [
                "spans_per_s",
                "wasm_mb_s",
                "native_mb_s",
                "prost_roundtrip_mb_s",
                "scan_mb_s",
                "wasm_vs_prost",
                "wasm_vs_native",
                "wasm_vs_scan"
            ]
        );
        for kv in rest.split(' ') {
            let (key, value) = kv.split_once('=').unwrap();
            if key.contains("_vs_") {
                let (whole, frac) = value.split_once('.').unwrap();
                assert!(
                    whole.parse::<u64>().is_ok() && frac.len() == 2 && frac.parse::<u64>().is_ok(),
                    "{kv}"
                );
            } else {
                assert!(value.parse::<u64>().is_ok(), "{kv}");
            }
        }
    }

    /// Scenario: a short run with a baseline config that drops nothing and
    /// masks nothing, against the default.
    /// Guarantees: the baseline contender is timed every round, and the
    /// last line ends with `config_vs_baseline=R`, R the baseline's round
    /// times over the config's, round by round (the mean of the two
    /// rounds' ratios here), to two decimals.
    #[test]
    fn a_baseline_config_runs_beside_and_ends_the_last_line() {
        let corpus =
            generate(&CorpusOptions { seed: 3, min_spans: 1024, batch_spans: 512 }).unwrap();
        let workload = Workload { description: "test".into(), batches: corpus.batches };
        let off = r#"{"noise":{"enabled":false},"mask":{"enabled":false}}"#;
        let options = BenchOptions {
            config_json: "{}".into(),
            config_origin: "test".into(),
            component: crate::DEFAULT_COMPONENT.to_vec(),
            component_origin: "embedded".into(),
            rounds: 2,
            cold_loads: 1,
            perf_map: false,
            max_batches_per_instance: DEFAULT_MAX_BATCHES_PER_INSTANCE,
            baseline: Some((off.into(), "off.json".into())),
        };
        let report = run(&workload, &options, &mut |_| {}).unwrap();
        let (b, origin) = report.baseline.as_ref().expect("a baseline contender");
        assert_eq!((b.rounds.len(), origin.as_str()), (2, "off.json"));
        let r = report.config_vs_baseline().unwrap();
        let ratio =
            |i: usize| b.rounds[i].as_secs_f64() / report.contenders[0].rounds[i].as_secs_f64();
        assert!((r - (ratio(0) + ratio(1)) / 2.0).abs() < 1e-9, "{r}");
        let last = report.summary_line();
        assert!(last.ends_with(&format!(" config_vs_baseline={r:.2}")), "{last}");
        assert!(report.to_string().contains("the baseline config: off.json"));
    }

    #[test]
    fn an_empty_workload_is_refused() {
        let workload = Workload { description: "empty".into(), batches: Vec::new() };
        let options = BenchOptions {
            config_json: "{}".into(),
            config_origin: String::new(),
            component: Vec::new(),
            component_origin: String::new(),
            rounds: 1,
            cold_loads: 1,
            perf_map: false,
            max_batches_per_instance: DEFAULT_MAX_BATCHES_PER_INSTANCE,
            baseline: None,
        };
        assert!(run(&workload, &options, &mut |_| {}).is_err());
    }
}
