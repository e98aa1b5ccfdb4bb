//! The worker pool: one thread per core, each owning a component instance
//! of the version it last ran, and the epoch ticker that bounds every call.
//!
//! A job carries the version its request captured when it started. A worker
//! runs it on an instance of exactly that version, building one when its
//! own is of another version, so a batch in flight during a swap finishes on
//! the version it started with. A worker's [`Scrubber`] renews its instance
//! after `max_batches_per_instance` batches, and after a trap or a passed
//! deadline (the instance is poisoned); the next instance is built right
//! after the reply goes out.
//!
//! Workers also do the request's other CPU work, off the async runtime:
//! gzip decompression (capped), OTLP/JSON decoding, and gzip for upstream.
//!
//! A large batch that arrives while other workers are idle is cut into
//! parts ([`tracescrub_processor::split_ranges`]: between resources) and
//! the idle workers process parts of it alongside the worker that took it,
//! which joins the outputs. That cuts the latency the gateway adds when it
//! has cores to spare; under load no worker is idle (or the idle ones have
//! queued batches to take) and every batch runs whole. A part no worker has
//! taken by the time its owner gets to it, the owner runs itself, so
//! nothing waits on a busy queue. The cut is speculative: each part reports
//! its parent links, and when a span one part dropped is the parent of a
//! span another part kept ([`tracescrub_processor::parts_agree`] says no),
//! the owner runs the batch whole, with a deadline of its own, so the
//! client gets the whole batch's result.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::sync::oneshot;
use tracescrub_processor::{PartLinks, Stats};

use super::options::Settings;
use super::version::{Shared, Version};
use crate::{HostError, InstanceOptions, Runtime, Scrubber};

/// The smallest part of a batch worth handing to another worker: below
/// it, waking the worker costs about what the part would save. So batches
/// of twice this or more are cut.
pub const SPLIT_MIN_PART_BYTES: usize = 64 << 10;

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
        let thread =
            std::thread::Builder::new().name("tracescrub-epoch".into()).spawn(move || {
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
    /// How it was split.
    pub split: Split,
}

/// How a batch was cut into parts, if it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    /// Other workers ran parts of it.
    pub helped: bool,
    /// Its parts did not agree, so it ran again whole.
    pub rerun: bool,
}

/// What running a batch's parts came to.
enum Parts {
    /// The parts' outputs joined, and their stats summed.
    Joined(Vec<u8>, Stats),
    /// The whole must run: the parts disagree (`disagree`), or a
    /// part is malformed or too large, where the client is owed the
    /// whole's offset or limit.
    Whole { disagree: bool },
}

/// Why a batch could not be processed. Messages never quote span content.
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

/// What a worker takes from the queue.
enum Task {
    /// A request's batch.
    Batch(Job),
    /// A part of a batch that another worker took.
    Part(Arc<Part>),
    /// Nothing came for a while: time to check the instance's version.
    Idle,
}

/// A part of a batch, offered to idle workers.
struct Part {
    /// The version its batch captured.
    version: Shared,
    /// Its bytes: a slice of the decoded batch.
    bytes: Bytes,
    /// When the batch's deadline passes: its parts share it.
    deadline: Instant,
    /// Where a helper sends the result.
    reply: SyncSender<PartResult>,
}

/// A processed batch: the output and its stats.
type BatchResult = Result<(Vec<u8>, Stats), BatchError>;

/// A processed part: also its parent links.
type PartResult = Result<(Vec<u8>, Stats, PartLinks), BatchError>;

/// The worker threads and their queue.
pub struct Pool {
    shared: Arc<Common>,
    threads: Vec<JoinHandle<()>>,
}

/// The queue, behind [`Common::queue`]. Parts are kept apart from batches
/// so they never take a batch's place, and a part its owner takes back is
/// removed, so none is left behind.
struct Queue {
    batches: VecDeque<Job>,
    parts: VecDeque<Arc<Part>>,
    /// Batches it holds at most.
    capacity: usize,
    /// Workers waiting for a task.
    idle: usize,
    /// No more batches come; workers end once the queue is empty.
    closed: bool,
}

/// What every worker shares.
struct Common {
    queue: Mutex<Queue>,
    /// Signalled when a task is queued or the queue closes.
    ready: Condvar,
    active: Arc<RwLock<Shared>>,
    options: InstanceOptions,
    /// The time one batch may run in the component, its parts together.
    deadline: Duration,
    max_decompressed: u64,
    /// The largest decoded batch the guest memory cap holds; see [`max_batch_for_memory`].
    max_batch: u64,
    /// Whether idle workers may take parts of a batch.
    split: bool,
    /// Batches an instance processes before a fresh one takes over.
    max_batches_per_instance: u64,
}

impl Common {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a task: parts first, as their owners wait on them.
    fn next_task(&self) -> Option<Task> {
        let mut queue = self.queue();
        queue.idle += 1;
        let until = Instant::now() + IDLE_CHECK;
        let task = loop {
            if let Some(part) = queue.parts.pop_front() {
                break Some(Task::Part(part));
            }
            if let Some(job) = queue.batches.pop_front() {
                break Some(Task::Batch(job));
            }
            if queue.closed {
                break None;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Some(Task::Idle);
            }
            queue = self.ready.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
        };
        queue.idle -= 1;
        task
    }

    /// Ranges that cut `body` into one part per spare worker (idle, and
    /// not needed for a queued batch or part) plus `taken`, when that makes
    /// two parts or more, no part under [`SPLIT_MIN_PART_BYTES`] is due, and
    /// the batch is within the config's `limits.max_batch_bytes` (each part
    /// is checked against it alone); otherwise the one range of the whole.
    fn ranges_for(&self, version: &Version, body: &[u8], taken: usize) -> Vec<Range<usize>> {
        let whole = tracescrub_processor::split_ranges(body, 1);
        if !self.split
            || body.len() < 2 * SPLIT_MIN_PART_BYTES
            || version.max_batch_bytes.is_none_or(|max| body.len() as u64 > max)
        {
            return whole;
        }
        let spare = {
            let queue = self.queue();
            queue.idle.saturating_sub(queue.batches.len() + queue.parts.len())
        };
        let parts = (taken + spare).min(body.len() / SPLIT_MIN_PART_BYTES);
        if parts < 2 { whole } else { tracescrub_processor::split_ranges(body, parts) }
    }
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
    /// Starts `settings.workers` threads, each with an instance of the
    /// active version built before this returns. The queue holds
    /// `settings.max_in_flight` jobs.
    pub fn start(
        settings: &Settings,
        active: Arc<RwLock<Shared>>,
        options: InstanceOptions,
    ) -> Result<Pool, String> {
        let workers = settings.workers;
        let max_batch = max_batch_for_memory(options.max_memory_bytes as u64);
        let queue = Queue {
            batches: VecDeque::new(),
            parts: VecDeque::new(),
            capacity: settings.max_in_flight,
            idle: 0,
            closed: false,
        };
        let shared = Arc::new(Common {
            queue: Mutex::new(queue),
            ready: Condvar::new(),
            active,
            options,
            deadline: settings.batch_deadline,
            max_decompressed: settings.max_decompressed_bytes,
            max_batch,
            split: settings.split_batches,
            max_batches_per_instance: settings.max_batches_per_instance,
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
        Ok(Pool { shared, threads })
    }

    /// Queues a job; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.shared.queue();
        if queue.closed || queue.batches.len() >= queue.capacity {
            return Err(job);
        }
        queue.batches.push_back(job);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends each worker once the queue is empty.
        self.shared.queue().closed = true;
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

struct Worker {
    shared: Arc<Common>,
    /// The scrubber (which renews its instance) and the id of its version.
    instance: Option<(u64, Scrubber)>,
}

impl Worker {
    fn run(mut self, ready: &std::sync::mpsc::Sender<Result<(), String>>) {
        let first = self.active();
        let started = self
            .instance_for(&first)
            .map(|_| ())
            .map_err(|e| format!("cannot instantiate the component: {}", describe(&e)));
        let _ = ready.send(started);
        while let Some(task) = self.shared.next_task() {
            match task {
                Task::Batch(job) => {
                    self.handle(job);
                    self.prepare();
                }
                Task::Part(part) => {
                    let result = self.run_part(&part.version, &part.bytes, part.deadline);
                    // Fails only if the owner stopped waiting (another part
                    // failed).
                    let _ = part.reply.send(result);
                    self.prepare();
                }
                Task::Idle => {
                    let active = self.active();
                    // Best effort: a failure here shows again on the next job.
                    let _ = self.instance_for(&active);
                }
            }
        }
    }

    fn active(&self) -> Shared {
        Arc::clone(&self.shared.active.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Builds the next instance once the reply is sent, if the last batch
    /// used up the instance (`max_batches_per_instance`) or trapped, so the
    /// next batch does not wait for one. Best effort: a failure here shows
    /// again on the next job.
    fn prepare(&mut self) {
        if let Some((_, scrubber)) = &mut self.instance {
            scrubber.set_epoch_deadline_ticks(self.shared.options.epoch_deadline_ticks);
            let _ = scrubber.prepare();
        }
    }

    fn instance_for(&mut self, version: &Version) -> Result<&mut Scrubber, HostError> {
        if !matches!(&self.instance, Some((id, _)) if *id == version.id) {
            self.instance = None;
            let scrubber = Scrubber::new(
                &version.component,
                &version.config_json,
                &self.shared.options,
                self.shared.max_batches_per_instance,
            )?;
            self.instance = Some((version.id, scrubber));
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
            body = Bytes::from(
                crate::body::gunzip(&body, self.shared.max_decompressed)
                    .map_err(BatchError::from)?,
            );
        } else if body.len() as u64 > self.shared.max_decompressed {
            return Err(BatchError::TooLarge(format!(
                "body of {} bytes is over the limit of {} bytes",
                body.len(),
                self.shared.max_decompressed
            )));
        }
        if job.kind.json {
            body =
                Bytes::from(crate::body::json_traces_to_protobuf(&body).map_err(BatchError::from)?);
        }
        let (size, max_batch) = (body.len() as u64, self.shared.max_batch);
        if size > max_batch {
            return Err(BatchError::TooLarge(format!(
                "decoded batch of {size} bytes is over the limit of {max_batch} bytes that fits the per-batch guest memory \
                 (--batch-memory-bytes {}); send smaller batches or raise --batch-memory-bytes",
                self.shared.options.max_memory_bytes
            )));
        }
        let deadline = Instant::now() + self.shared.deadline;
        let ranges = self.shared.ranges_for(&job.version, &body, 1);
        let (batch, stats, split) = if ranges.len() < 2 {
            let (batch, stats) = self.run_batch(&job.version, &body, deadline)?;
            (batch, stats, Split::default())
        } else {
            let (parts, helped) = self.run_parts(&job.version, &body, ranges, deadline)?;
            match parts {
                Parts::Joined(batch, stats) => (batch, stats, Split { helped, rerun: false }),
                Parts::Whole { disagree } => {
                    // A deadline of its own: the time the parts took is the
                    // gateway's guess gone wrong, not the batch's doing.
                    let (batch, stats) =
                        self.run_batch(&job.version, &body, Instant::now() + self.shared.deadline)?;
                    (batch, stats, Split { helped, rerun: disagree })
                }
            }
        };
        if job.gzip_output && stats.spans_out > 0 {
            return Ok(Processed { batch: Bytes::from(gzip(&batch)), gzipped: true, stats, split });
        }
        Ok(Processed { batch: Bytes::from(batch), gzipped: false, stats, split })
    }

    /// Runs `body` on an instance of `version`, with what is left until
    /// `deadline`.
    fn run_batch(&mut self, version: &Version, body: &[u8], deadline: Instant) -> BatchResult {
        self.call(version, deadline, |instance| instance.process(body))
    }

    /// Runs `part` of a batch, as `run_batch` does, also for its links.
    fn run_part(&mut self, version: &Version, part: &[u8], deadline: Instant) -> PartResult {
        self.call(version, deadline, |instance| instance.process_part(part))
    }

    /// One call on an instance of `version`, its errors as the client
    /// sees them; a trap discards the instance.
    fn call<T>(
        &mut self,
        version: &Version,
        deadline: Instant,
        call: impl FnOnce(&mut Scrubber) -> Result<T, HostError>,
    ) -> Result<T, BatchError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BatchError::Timeout);
        }
        let instance = self.instance_for(version).map_err(|e| match e.trap_code() {
            Some(wasmtime::Trap::Interrupt) => BatchError::Timeout,
            Some(_) => BatchError::Trap,
            None => {
                BatchError::Internal(format!("cannot instantiate the component: {}", describe(&e)))
            }
        })?;
        instance.set_epoch_deadline_ticks(deadline_ticks(left));
        // A trap discards the instance inside the scrubber; the next call
        // gets a fresh one.
        call(instance).map_err(|e| match e {
            HostError::Processor(tracescrub_processor::Error::Malformed(m)) => {
                BatchError::Malformed { offset: Some(m.offset), message: m.to_string() }
            }
            HostError::Processor(
                e @ (tracescrub_processor::Error::TooLarge { .. }
                | tracescrub_processor::Error::OutOfMemory { .. }),
            ) => BatchError::TooLarge(e.to_string()),
            e if e.trap_code() == Some(wasmtime::Trap::Interrupt) => BatchError::Timeout,
            HostError::Trap(_) | HostError::Poisoned => BatchError::Trap,
            e => BatchError::Internal(describe(&e)),
        })
    }

    /// Runs `body` cut into `ranges`: offers every part but the first to
    /// idle workers, runs the first, then takes back and runs each part no
    /// one took, then joins, if the parts agree. Also returns
    /// whether another worker ran a part.
    fn run_parts(
        &mut self,
        version: &Shared,
        body: &Bytes,
        ranges: Vec<Range<usize>>,
        deadline: Instant,
    ) -> Result<(Parts, bool), BatchError> {
        let mut ranges = ranges.into_iter();
        let first = ranges.next().unwrap_or_default();
        let mut offered = Vec::with_capacity(ranges.len());
        {
            let mut queue = self.shared.queue();
            for range in ranges {
                let (reply, result) = std::sync::mpsc::sync_channel(1);
                let part = Arc::new(Part {
                    version: Arc::clone(version),
                    bytes: body.slice(range),
                    deadline,
                    reply,
                });
                queue.parts.push_back(Arc::clone(&part));
                offered.push((part, result));
            }
        }
        for _ in &offered {
            self.shared.ready.notify_one();
        }
        let mut results = vec![self.run_part(version, &body[first], deadline)];
        let mut helped = false;
        for (part, result) in offered {
            // Taken back if still queued, so no helper starts it; even when
            // a part has failed.
            let mine = {
                let mut queue = self.shared.queue();
                let at = queue.parts.iter().position(|p| Arc::ptr_eq(p, &part));
                at.and_then(|at| queue.parts.remove(at)).is_some()
            };
            if results.iter().any(Result::is_err) {
                // The batch fails or runs whole: a helper's part is not
                // waited for (it answers into a channel no one reads).
                continue;
            }
            results.push(if mine {
                self.run_part(version, &part.bytes, deadline)
            } else {
                helped = true;
                // Ours is not the last sender then, should the helper die.
                drop(part);
                result.recv().unwrap_or_else(|_| {
                    Err(BatchError::Internal(
                        "a worker ended while running a part of the batch".into(),
                    ))
                })
            });
        }
        let mut parts = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(part) => parts.push(part),
                // Offsets and limits are the whole batch's business.
                Err(BatchError::Malformed { .. } | BatchError::TooLarge(_)) => {
                    return Ok((Parts::Whole { disagree: false }, helped));
                }
                Err(e) => return Err(e),
            }
        }
        let links: Vec<PartLinks> =
            parts.iter_mut().map(|(_, _, links)| std::mem::take(links)).collect();
        if !tracescrub_processor::parts_agree(&links) {
            // A span dropped in one part has a child another part kept,
            // which the whole would have dropped.
            return Ok((Parts::Whole { disagree: true }, helped));
        }
        let mut parts = parts.into_iter();
        let (mut joined, mut total, _) = parts.next().unwrap_or_default();
        joined.reserve(parts.as_slice().iter().map(|(batch, _, _)| batch.len()).sum());
        for (batch, stats, _) in parts {
            joined.extend_from_slice(&batch);
            total.add(&stats);
        }
        Ok((Parts::Joined(joined, total), helped))
    }
}

/// A host error on one line, without the guest's backtrace.
fn describe(e: &HostError) -> String {
    match e.trap_code() {
        Some(code) => format!("{e} ({code})"),
        None => crate::one_line(e),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Fast: upstream gzip saves bandwidth, not CPU; level 1 gets most of it.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

impl From<crate::body::BodyError> for BatchError {
    fn from(error: crate::body::BodyError) -> BatchError {
        match error.kind {
            crate::body::BodyErrorKind::TooLarge => BatchError::TooLarge(error.message),
            _ => BatchError::Malformed { offset: None, message: error.message },
        }
    }
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
}
