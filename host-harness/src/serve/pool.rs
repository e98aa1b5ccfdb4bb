//! The worker pool: one thread per core, each owning a component instance
//! of the version it last ran, and the epoch ticker that bounds every call.
//!
//! A job carries the version its request captured when it started. A worker
//! runs it on an instance of exactly that version, building one when its
//! own is of another version, so a batch in flight during a swap finishes on
//! the version it started with. A trap or a passed deadline discards the
//! instance (it is poisoned); the next job builds a fresh one.
//!
//! Workers also do the request's other CPU work, off the async runtime:
//! gzip decompression (capped), OTLP/JSON decoding, and gzip for upstream.
//!
//! A large batch that arrives while other workers are idle is cut into
//! parts ([`tracescrub_processor::split_points`]: between resources, never
//! through a trace) and the idle workers process parts of it alongside the
//! worker that took it, which joins the outputs. That cuts the latency the
//! gateway adds when it has cores to spare; under load no worker is idle
//! (or the idle ones have queued batches to take) and every batch runs
//! whole. A part no worker has taken by the time its owner gets to it, the
//! owner runs itself, so nothing waits on a busy queue.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::oneshot;
use tracescrub_processor::Stats;

use super::version::{Shared, Version};
use crate::{HostError, InstanceOptions, Runtime, ScrubberInstance};

/// The smallest decoded batch worth cutting into parts: below it, waking
/// another worker costs about what the part would save.
pub const SPLIT_MIN_BYTES: usize = 128 << 10;

/// How often the epoch ticks. The deadline is counted in these ticks, so it
/// is enforced to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long an idle worker waits for a job before checking that its
/// instance is of the active version (and building one if not), so the
/// first batch after a reload does not pay for instantiation.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Increments the engine's epoch every [`EPOCH_TICK`] on a thread of its
/// own. Stops and joins the thread when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `runtime`'s engine.
    pub fn start(runtime: &Runtime) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, runtime) = (Arc::clone(&stop), runtime.clone());
        let thread = std::thread::Builder::new().name("tracescrub-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                runtime.increment_epoch();
            }
        })?;
        Ok(EpochTicker { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Epoch ticks for a deadline: rounded up, plus one because the deadline
/// is counted from the current epoch, which may be about to tick.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos())) as u64 + 1
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyKind {
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// OTLP/JSON rather than protobuf.
    pub json: bool,
}

/// A processed batch, ready to forward.
#[derive(Debug)]
pub struct Processed {
    /// The processed request, protobuf, gzip-compressed when `gzipped`.
    pub batch: Bytes,
    /// Whether `batch` is gzip-compressed.
    pub gzipped: bool,
    /// What the processor did.
    pub stats: Stats,
    /// How many parts it ran in: 1, or more when idle workers helped.
    pub parts: usize,
}

/// Why a batch could not be processed. Messages never quote span content
/// except where they quote the client's own input back to it (JSON errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Not valid OTLP, or corrupt gzip; the client's message.
    Malformed {
        /// Byte offset of the problem, when known.
        offset: Option<u64>,
        /// What was wrong.
        message: String,
    },
    /// Over a size limit.
    TooLarge(String),
    /// The component trapped.
    Trap,
    /// The component ran past the deadline.
    Timeout,
    /// The host could not build an instance.
    Internal(String),
}

/// One batch for a worker.
pub struct Job {
    /// The version the request captured.
    pub version: Shared,
    /// The body as received.
    pub body: Bytes,
    /// How it is encoded.
    pub kind: BodyKind,
    /// Whether to gzip the output for upstream (OTLP/HTTP with gzip on).
    pub gzip_output: bool,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Processed, BatchError>>,
}

/// What the workers take from the queue.
enum Task {
    /// A request's batch.
    Batch(Job),
    /// A part of a batch that another worker took.
    Part(Arc<Part>),
}

/// A part of a batch, offered to idle workers.
struct Part {
    /// The version its batch captured.
    version: Shared,
    /// Its bytes: a slice of the decoded batch.
    bytes: Bytes,
    /// Set by whoever runs it: a helper, or the owner when none has.
    taken: AtomicBool,
    /// Where a helper sends the result.
    reply: SyncSender<PartResult>,
}

/// A processed batch or part: the output and its stats.
type PartResult = Result<(Vec<u8>, Stats), BatchError>;

/// The worker threads and their job queue.
pub struct Pool {
    jobs: Option<SyncSender<Task>>,
    shared: Arc<Common>,
    threads: Vec<JoinHandle<()>>,
}

/// What every worker shares.
struct Common {
    jobs: Mutex<Receiver<Task>>,
    /// The queue's sending side, for offering parts; taken away when the
    /// pool stops, so the workers see the queue close.
    offer: Mutex<Option<SyncSender<Task>>>,
    /// Workers waiting for a task.
    idle: AtomicUsize,
    /// Batches in the queue, not yet taken: idle workers will take those
    /// rather than parts.
    queued: AtomicUsize,
    active: Arc<RwLock<Shared>>,
    options: InstanceOptions,
    max_decompressed: u64,
    /// The largest decoded batch the guest memory cap holds; see [`max_batch_for_memory`].
    max_batch: u64,
    /// Whether idle workers may take parts of a batch.
    split: bool,
}

/// Guest memory the engine needs beyond twice the batch (its baseline).
const GUEST_BASELINE_BYTES: u64 = 1 << 20;

/// The largest decoded batch an instance capped at `memory_cap` bytes can
/// take: the engine needs up to 2 × batch + 1 MiB. A larger one would hit the
/// cap while the input is copied in, where the guest's allocator aborts (a
/// trap, indistinguishable from a processor bug), so the host refuses it first.
pub fn max_batch_for_memory(memory_cap: u64) -> u64 {
    memory_cap.saturating_sub(GUEST_BASELINE_BYTES) / 2
}

impl Pool {
    /// Starts `workers` threads, each with an instance of the active
    /// version built before this returns. The queue holds `queue` jobs.
    pub fn start(
        workers: usize,
        queue: usize,
        active: Arc<RwLock<Shared>>,
        options: InstanceOptions,
        max_decompressed: u64,
        split: bool,
    ) -> Result<Pool, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let max_batch = max_batch_for_memory(options.max_memory_bytes as u64);
        let shared = Arc::new(Common {
            jobs: Mutex::new(rx),
            offer: Mutex::new(Some(tx.clone())),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            active,
            options,
            max_decompressed,
            max_batch,
            split,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers {
            let (shared, ready) = (Arc::clone(&shared), ready_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("tracescrub-worker-{n}"))
                .spawn(move || Worker { shared, instance: None }.run(&ready))
                .map_err(|e| format!("cannot start worker thread {n}: {e}"))?;
            threads.push(thread);
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(why),
                Err(_) => return Err("a worker thread ended while starting".into()),
            }
        }
        Ok(Pool { jobs: Some(tx), shared, threads })
    }

    /// Queues a job; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else { return Err(job) };
        // Counted before it can be taken, so the count never goes below 0.
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        match jobs.try_send(Task::Batch(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(task) | TrySendError::Disconnected(task)) => match task {
                Task::Batch(job) => {
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                    Err(job)
                }
                Task::Part(_) => unreachable!("sent a batch"),
            },
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends each worker after its current job.
        self.jobs = None;
        self.shared.offer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

struct Worker {
    shared: Arc<Common>,
    /// The instance and the id of its version.
    instance: Option<(u64, ScrubberInstance)>,
}

impl Worker {
    fn run(mut self, ready: &std::sync::mpsc::Sender<Result<(), String>>) {
        let first = self.active();
        let started = self.instance_for(&first).map(|_| ()).map_err(|e| format!("cannot instantiate the component: {}", describe(&e)));
        let _ = ready.send(started);
        loop {
            self.shared.idle.fetch_add(1, Ordering::SeqCst);
            let next = {
                let jobs = self.shared.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                jobs.recv_timeout(IDLE_CHECK)
            };
            self.shared.idle.fetch_sub(1, Ordering::SeqCst);
            match next {
                Ok(Task::Batch(job)) => {
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                    self.handle(job);
                }
                Ok(Task::Part(part)) => {
                    if !part.taken.swap(true, Ordering::AcqRel) {
                        let result = self.run_batch(&part.version, &part.bytes);
                        // The owner waits for it; gone only if it panicked.
                        let _ = part.reply.send(result);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let active = self.active();
                    // Best effort: a failure here shows again on the next job.
                    let _ = self.instance_for(&active);
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn active(&self) -> Shared {
        Arc::clone(&self.shared.active.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn instance_for(&mut self, version: &Version) -> Result<&mut ScrubberInstance, HostError> {
        let current = matches!(&self.instance, Some((id, i)) if *id == version.id && !i.is_poisoned());
        if !current {
            self.instance = None;
            let instance = ScrubberInstance::create_with(&version.component, &version.config_json, &self.shared.options)?;
            self.instance = Some((version.id, instance));
        }
        match &mut self.instance {
            Some((_, instance)) => Ok(instance),
            None => unreachable!("set above"),
        }
    }

    fn handle(&mut self, job: Job) {
        if job.reply.is_closed() {
            // The client went away while the job was queued.
            return;
        }
        let result = self.process(&job);
        let _ = job.reply.send(result);
    }

    fn process(&mut self, job: &Job) -> Result<Processed, BatchError> {
        // `Bytes`, so parts are slices of it rather than copies.
        let mut body = job.body.clone();
        if job.kind.gzip {
            body = Bytes::from(gunzip(&body, self.shared.max_decompressed)?);
        } else if body.len() as u64 > self.shared.max_decompressed {
            return Err(BatchError::TooLarge(format!(
                "body of {} bytes is over the limit of {} bytes",
                body.len(),
                self.shared.max_decompressed
            )));
        }
        if job.kind.json {
            body = Bytes::from(json_to_protobuf(&body)?);
        }
        let (size, max_batch) = (body.len() as u64, self.shared.max_batch);
        if size > max_batch {
            return Err(BatchError::TooLarge(format!(
                "decoded batch of {size} bytes is over the limit of {max_batch} bytes that fits the per-batch guest memory \
                 (--batch-memory-bytes {}); send smaller batches or raise --batch-memory-bytes",
                self.shared.options.max_memory_bytes
            )));
        }
        // Workers with nothing to do once the queued batches are taken.
        let spare = self.shared.idle.load(Ordering::SeqCst).saturating_sub(self.shared.queued.load(Ordering::SeqCst));
        let cuts = if self.shared.split && spare > 0 && body.len() >= SPLIT_MIN_BYTES {
            tracescrub_processor::split_points(&body, 1 + spare)
        } else {
            Vec::new()
        };
        let (batch, stats, parts) = if cuts.is_empty() {
            let (batch, stats) = self.run_batch(&job.version, &body)?;
            (batch, stats, 1)
        } else {
            self.run_parts(&job.version, &body, &cuts)?
        };
        if job.gzip_output && stats.spans_out > 0 {
            return Ok(Processed { batch: Bytes::from(gzip(&batch)), gzipped: true, stats, parts });
        }
        Ok(Processed { batch: Bytes::from(batch), gzipped: false, stats, parts })
    }

    /// Runs `body` on an instance of `version`.
    fn run_batch(&mut self, version: &Version, body: &[u8]) -> PartResult {
        let instance = self.instance_for(version).map_err(|e| match e.trap_code() {
            Some(wasmtime::Trap::Interrupt) => BatchError::Timeout,
            Some(_) => BatchError::Trap,
            None => BatchError::Internal(format!("cannot instantiate the component: {}", describe(&e))),
        })?;
        let result = instance.process(body);
        if result.is_err() && instance.is_poisoned() {
            self.instance = None;
        }
        result.map_err(|e| match e {
            HostError::Processor(tracescrub_processor::Error::Malformed(m)) => {
                BatchError::Malformed { offset: Some(m.offset), message: m.to_string() }
            }
            HostError::Processor(e @ (tracescrub_processor::Error::TooLarge { .. } | tracescrub_processor::Error::OutOfMemory { .. })) => {
                BatchError::TooLarge(e.to_string())
            }
            e if e.trap_code() == Some(wasmtime::Trap::Interrupt) => BatchError::Timeout,
            HostError::Trap(_) | HostError::Poisoned => BatchError::Trap,
            e => BatchError::Internal(describe(&e)),
        })
    }

    /// Runs `body` cut at `cuts`: offers every part but the first to idle
    /// workers, runs the first, then each part no one took, then joins.
    /// Returns how many parts it ran in: 1 when it had to run it whole.
    fn run_parts(&mut self, version: &Shared, body: &Bytes, cuts: &[usize]) -> Result<(Vec<u8>, Stats, usize), BatchError> {
        let bounds: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied()).chain([body.len()]).collect();
        let offer = self.shared.offer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut offered = Vec::with_capacity(cuts.len());
        for range in bounds.windows(2).skip(1) {
            let (reply, result) = std::sync::mpsc::sync_channel(1);
            let part = Arc::new(Part {
                version: Arc::clone(version),
                bytes: body.slice(range[0]..range[1]),
                taken: AtomicBool::new(false),
                reply,
            });
            // A full queue means no one is idle after all: run it here.
            if let Some(offer) = &offer {
                let _ = offer.try_send(Task::Part(Arc::clone(&part)));
            }
            offered.push((part, result));
        }
        drop(offer);
        let first = self.run_batch(version, &body[..bounds[1]]);
        let mut results = vec![first];
        for (part, result) in offered {
            // Taken here even when a part has failed, so no helper starts it.
            let mine = !part.taken.swap(true, Ordering::AcqRel);
            if results.iter().any(Result::is_err) {
                // The batch fails or runs whole: a helper's part is not
                // waited for (it answers into a channel no one reads).
                continue;
            }
            results.push(if mine {
                self.run_batch(version, &part.bytes)
            } else {
                result.recv().unwrap_or_else(|_| Err(BatchError::Internal("a worker ended while running a part of the batch".into())))
            });
        }
        let mut joined: Option<(Vec<u8>, Stats)> = None;
        for result in results {
            match result {
                Ok((batch, stats)) => match &mut joined {
                    None => joined = Some((batch, stats)),
                    Some((all, total)) => {
                        all.extend_from_slice(&batch);
                        total.add(&stats);
                    }
                },
                // Offsets and limits are the whole batch's business: run
                // it whole for the message a client would otherwise get.
                Err(BatchError::Malformed { .. } | BatchError::TooLarge(_)) => {
                    let (batch, stats) = self.run_batch(version, body)?;
                    return Ok((batch, stats, 1));
                }
                Err(e) => return Err(e),
            }
        }
        let (batch, stats) = joined.unwrap_or_default();
        Ok((batch, stats, bounds.len() - 1))
    }
}

/// A host error on one line, without the guest's backtrace.
fn describe(e: &HostError) -> String {
    match e.trap_code() {
        Some(code) => format!("{e} ({code})"),
        None => super::version::chain(e),
    }
}

/// Decompresses at most `limit` bytes: a body that inflates past it is
/// refused after `limit + 1` bytes, however far it would go (a gzip bomb).
pub fn gunzip(body: &[u8], limit: u64) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit + 1);
    decoder.read_to_end(&mut out).map_err(|e| BatchError::Malformed { offset: None, message: format!("gzip body is corrupt: {e}") })?;
    if out.len() as u64 > limit {
        return Err(BatchError::TooLarge(format!("gzip body inflates past the limit of {limit} bytes; send smaller batches")));
    }
    Ok(out)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Fast: upstream gzip saves bandwidth, not CPU; level 1 gets most of it.
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// OTLP/JSON to protobuf, with the `opentelemetry-proto` serde mapping.
pub fn json_to_protobuf(body: &[u8]) -> Result<Vec<u8>, BatchError> {
    // serde reads a struct from an array too; OTLP/JSON is an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(BatchError::Malformed {
            offset: None,
            message: "body is not OTLP/JSON: expected an object like {\"resourceSpans\": [...]}".into(),
        });
    }
    let request: ExportTraceServiceRequest = serde_json::from_slice(body).map_err(|e| BatchError::Malformed {
        offset: None,
        message: format!("body is not OTLP/JSON (line {} column {}): {e}", e.line(), e.column()),
    })?;
    Ok(request.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_limit_leaves_room_for_two_copies_and_the_baseline() {
        assert_eq!(max_batch_for_memory(256 << 20), (255 << 20) / 2);
        assert_eq!(max_batch_for_memory(4 << 20), 3 << 19);
        assert_eq!(max_batch_for_memory(1 << 19), 0);
    }

    #[test]
    fn deadline_rounds_up_in_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(11)), 3);
        assert_eq!(deadline_ticks(Duration::from_secs(5)), 501);
    }

    /// Scenario: 1 KiB of gzip that inflates to 10 MiB of zeros, capped at 1 MiB.
    /// Guarantees: refused as too large, having inflated no more than the cap.
    #[test]
    fn gzip_bomb_is_refused_at_the_cap() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert!(matches!(gunzip(&bomb, 1 << 20), Err(BatchError::TooLarge(_))));
        assert_eq!(gunzip(&bomb, 10 << 20).unwrap().len(), 10 << 20);
        assert!(matches!(gunzip(b"\x1f\x8b garbage", 100), Err(BatchError::Malformed { .. })));
    }
}
