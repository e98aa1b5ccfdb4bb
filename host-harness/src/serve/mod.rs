//! `tracescrub serve`: an OTLP gateway that runs every batch through the
//! component and forwards what comes out.
//!
//! ```text
//!  OTLP/HTTP :4318 ─┐                                  ┌─ OTLP/HTTP or
//!  OTLP/gRPC :4317 ─┴─ admit ─ worker pool ─ upstream ─┴─ OTLP/gRPC upstream
//!                     (in-flight cap)  (component)      (ack only on its 2xx / OK)
//!  admin :8888: /metrics /healthz /readyz POST /-/reload
//! ```
//!
//! What each module owns:
//! - [`options`]: settings from flags, the config's `gateway:` section and defaults;
//! - [`version`]: building a version (component + config + hashes) and its canary;
//! - [`pool`]: the worker threads, their instances and the epoch ticker;
//! - [`upstream`]: forwarding, with pooled connections and timeouts;
//! - [`http`], [`grpc`]: the OTLP receivers; [`admin`]: the admin endpoints;
//! - [`reload`]: swapping versions on SIGHUP, file change or `POST /-/reload`;
//! - [`metrics`]: counters and histograms in the Prometheus text format.
//!
//! Logs go to stderr, one line per event, and never carry span content:
//! counts, sizes, hashes, error kinds and byte offsets only.

/// The most worker threads `serve` runs: two guests each (its own, and a new
/// version's during a reload) fit in [`crate::POOL_SLOTS`] with room to spare.
pub const MAX_WORKERS: usize = (crate::POOL_SLOTS as usize - 8) / 2;

pub mod admin;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod options;
pub mod pool;
pub mod reload;
pub mod rpc;
pub mod upstream;
pub mod version;

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use self::metrics::{Metrics, Outcome, Transport};
use self::options::Settings;
use self::pool::{BatchError, BodyKind, EpochTicker, Job, Pool};
use self::upstream::{SendError, Upstream};
use self::version::{Shared, Sources, Version, VersionError};
use crate::{InstanceOptions, Runtime};

/// Seconds a client is told to wait (Retry-After) when the gateway is
/// overloaded or the upstream failed without saying how long to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// How long a shutdown waits for batches in flight to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What `tracescrub serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Config and component files, and command-line settings.
    pub sources: Sources,
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The first version could not be built.
    Version(VersionError),
    /// A listener could not be bound.
    Bind {
        /// Which listener: `http`, `grpc` or `admin`.
        what: &'static str,
        /// The setting that gave the address (`listen_http`, ...).
        setting: &'static str,
        /// The address asked for.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Anything else at start: the runtime, the engine, threads, the watcher.
    Start(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Version(e) => write!(f, "cannot load the first version: {e}"),
            // The address is not quoted: like every setting's value, it is
            // the operator's to see in the config, not in logs.
            ServeError::Bind { what, setting, address: _, source } => {
                write!(
                    f,
                    "cannot listen for {what} on the address in `gateway.{setting}` (--{}): {source}; \
                     give IP:PORT, or another port (port 0 takes any free port)",
                    setting.replace('_', "-")
                )
            }
            ServeError::Start(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ServeError {}

/// Writes one log line to stderr: `serve: ` and the event.
pub fn log(event: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "serve: {event}");
}

/// Why a batch was not acknowledged; each receiver maps it to its
/// protocol's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// The body is not valid OTLP (or gzip). Not retryable.
    Malformed(String),
    /// The body is over a size limit. Not retryable.
    TooLarge(String),
    /// The gateway is at its in-flight limit. Retryable.
    Overloaded,
    /// The gateway is receiving as many bodies as the named setting
    /// allows (over all connections, or on this one). Retryable.
    Busy(&'static str),
    /// The batch ran past its deadline in the component. Retryable: the
    /// deadline may have been hit under load.
    Timeout,
    /// The component trapped: a bug in the processor, which would trap on
    /// this batch again. Not retryable.
    Trap,
    /// The upstream did not accept the batch.
    Upstream(SendError),
    /// The gateway itself failed (an instance could not be created).
    Internal(String),
    /// The client did not send the whole body within the body timeout (the
    /// limit in ms). Not retryable: OTLP retries only 429, 502, 503, 504.
    BodyTimeout(u128),
}

impl ExportError {
    /// Whether the client should send the batch again.
    pub fn retryable(&self) -> bool {
        match self {
            ExportError::Overloaded | ExportError::Busy(_) | ExportError::Timeout => true,
            ExportError::Upstream(e) => !matches!(e, SendError::Rejected(_)),
            ExportError::Malformed(_)
            | ExportError::TooLarge(_)
            | ExportError::Trap
            | ExportError::Internal(_)
            | ExportError::BodyTimeout(_) => false,
        }
    }

    /// Seconds for Retry-After (gRPC: `RetryInfo`), for retryable errors.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ExportError::Upstream(SendError::Throttled { retry_after, .. }) => Some(*retry_after),
            e if e.retryable() => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            ExportError::Malformed(_) => Outcome::Malformed,
            ExportError::TooLarge(_) => Outcome::TooLarge,
            ExportError::Overloaded | ExportError::Busy(_) => Outcome::Overloaded,
            ExportError::Timeout => Outcome::Timeout,
            ExportError::Trap => Outcome::Trap,
            ExportError::Upstream(_) => Outcome::UpstreamError,
            ExportError::Internal(_) => Outcome::Internal,
            ExportError::BodyTimeout(_) => Outcome::BodyTimeout,
        }
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Malformed(why) | ExportError::TooLarge(why) => f.write_str(why),
            ExportError::Overloaded => write!(f, "the gateway is at its in-flight limit; retry after {RETRY_AFTER_SECS} s"),
            ExportError::Busy(setting) => write!(
                f,
                "the gateway is receiving as many request bodies as --{} allows; retry after {RETRY_AFTER_SECS} s",
                setting.replace('_', "-")
            ),
            ExportError::Timeout => {
                f.write_str("processing the batch ran past the gateway's per-batch deadline; retry, or send smaller batches")
            }
            ExportError::Trap => {
                f.write_str("the span processor failed on this batch (a bug in the processor); the batch was not forwarded")
            }
            ExportError::Upstream(e) => e.fmt(f),
            ExportError::Internal(why) => write!(f, "gateway error: {why}"),
            ExportError::BodyTimeout(ms) => {
                write!(f, "request body not received within {ms} ms (--body-timeout-ms); send the whole body without pausing")
            }
        }
    }
}

/// A batch's place in the in-flight limit, taken once its body is in and
/// held until it is answered.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    gateway: Arc<Gateway>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gateway.metrics.in_flight(false);
    }
}

/// A request's place among those still receiving their body: one of
/// `max_receiving`, and one of its connection's
/// `max_receiving_per_connection`. Given back once the body is in (or the
/// request is answered), before the batch takes an in-flight place.
pub struct Receiving {
    _total: OwnedSemaphorePermit,
    _connection: Option<OwnedSemaphorePermit>,
    gateway: Arc<Gateway>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.gateway.metrics.receiving(false);
    }
}

/// What the gateway keeps per client connection: its receiving places and
/// whether a request is in progress, for the idle timeout.
pub struct Connection {
    receiving: Arc<Semaphore>,
    /// Requests in progress.
    active: std::sync::atomic::AtomicUsize,
    /// When the last request ended, or the connection opened.
    last_ended: std::sync::Mutex<Instant>,
}

impl Connection {
    /// A new connection allowing `per_connection` bodies in receipt at once.
    pub fn new(per_connection: usize) -> Arc<Connection> {
        Arc::new(Connection {
            receiving: Arc::new(Semaphore::new(per_connection)),
            active: std::sync::atomic::AtomicUsize::new(0),
            last_ended: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// Marks a request in progress until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        RequestGuard(Arc::clone(self))
    }

    /// How long the connection has had no request in progress; `None`
    /// while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = *self.last_ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(last.elapsed())
    }
}

/// A request in progress on a [`Connection`].
pub struct RequestGuard(Arc<Connection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last_ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Instant::now();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running gateway: the active version, the workers, the upstream.
pub struct Gateway {
    active: Arc<RwLock<Shared>>,
    pool: Pool,
    admission: Arc<Semaphore>,
    receiving: Arc<Semaphore>,
    upstream: Upstream,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// The settings fixed at start.
    pub settings: Settings,
    reloader: reload::Reloader,
    ready: AtomicBool,
    failure_log: std::sync::Mutex<FailureLog>,
    started: Instant,
    _ticker: EpochTicker,
}

/// Batch-failure log lines allowed per second. Past it they are counted and
/// summed up in one line, so an upstream outage under load cannot flood
/// stderr; the metrics count every batch regardless.
const FAILURE_LINES_PER_SEC: u32 = 20;

/// The state of the batch-failure log's rate limit.
#[derive(Default)]
struct FailureLog {
    /// The second (since start) being counted.
    second: u64,
    /// Lines written in it.
    lines: u32,
    /// Lines left out since the last summary.
    suppressed: u64,
}

impl Gateway {
    /// Builds the first version, starts the epoch ticker and the workers.
    /// Must be called inside a tokio runtime (the upstream pool needs one).
    pub fn start(runtime: Runtime, sources: Sources) -> Result<Arc<Gateway>, ServeError> {
        let (_, _, settings) = version::read_config(&sources).map_err(ServeError::Version)?;
        let instance_options = InstanceOptions::default()
            .with_max_memory_bytes(
                usize::try_from(settings.batch_memory_bytes).unwrap_or(usize::MAX),
            )
            .with_epoch_deadline_ticks(pool::deadline_ticks(settings.batch_deadline));
        let ticker = EpochTicker::start(&runtime)
            .map_err(|e| ServeError::Start(format!("cannot start the epoch ticker thread: {e}")))?;
        let first = version::build(&runtime, &sources, 1, None, &instance_options)
            .map_err(ServeError::Version)?;
        let failed_teams = first.failed_teams.len();
        if failed_teams > 0 {
            log(format_args!(
                "start: team file(s) {} have problems and are left out (see `tracescrub config check`)",
                first.failed_teams.join(", ")
            ));
        }
        let active = Arc::new(RwLock::new(Arc::new(first)));
        let pool = Pool::start(&settings, Arc::clone(&active), instance_options.clone())
            .map_err(ServeError::Start)?;
        let upstream = Upstream::new(&settings.upstream, settings.upstream_timeout)
            .map_err(ServeError::Start)?;
        let metrics = Metrics::default();
        metrics.team_file_failures(failed_teams);
        Ok(Arc::new(Gateway {
            active,
            pool,
            admission: Arc::new(Semaphore::new(settings.max_in_flight)),
            receiving: Arc::new(Semaphore::new(settings.max_receiving)),
            upstream,
            metrics,
            reloader: reload::Reloader::new(runtime, sources, instance_options),
            settings,
            ready: AtomicBool::new(true),
            failure_log: std::sync::Mutex::default(),
            started: Instant::now(),
            _ticker: ticker,
        }))
    }

    /// The version serving now.
    pub fn active(&self) -> Shared {
        Arc::clone(&self.active.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether a version is live and the workers are up.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Takes a place in the in-flight limit, or refuses at once.
    pub fn admit(self: &Arc<Self>, transport: Transport) -> Result<Admission, ExportError> {
        match Arc::clone(&self.admission).try_acquire_owned() {
            Ok(permit) => {
                self.metrics.in_flight(true);
                Ok(Admission { _permit: permit, gateway: Arc::clone(self) })
            }
            Err(_) => {
                self.record_failure(&ExportError::Overloaded, transport, 0);
                Err(ExportError::Overloaded)
            }
        }
    }

    /// Takes a place among the requests receiving their body, over all
    /// connections and on `connection`, or refuses at once.
    pub fn receive(
        self: &Arc<Self>,
        connection: Option<&Connection>,
        transport: Transport,
    ) -> Result<Receiving, ExportError> {
        let refuse = |setting: &'static str| {
            let error = ExportError::Busy(setting);
            self.record_failure(&error, transport, 0);
            error
        };
        let per_connection = match connection {
            Some(c) => Some(
                Arc::clone(&c.receiving)
                    .try_acquire_owned()
                    .map_err(|_| refuse("max_receiving_per_connection"))?,
            ),
            None => None,
        };
        let total =
            Arc::clone(&self.receiving).try_acquire_owned().map_err(|_| refuse("max_receiving"))?;
        self.metrics.receiving(true);
        Ok(Receiving { _total: total, _connection: per_connection, gateway: Arc::clone(self) })
    }

    /// Processes one batch and forwards it; `Ok` only once the upstream
    /// accepted it (or it processed to no spans). Returns the spans received.
    pub async fn export(
        &self,
        _admission: &Admission,
        body: Bytes,
        kind: BodyKind,
        transport: Transport,
    ) -> Result<u64, ExportError> {
        let started = Instant::now();
        let size = body.len();
        let result = self.export_inner(body, kind, transport, started).await;
        self.metrics.request_took(started.elapsed());
        match &result {
            Ok(_) => {}
            Err(e) => self.record_failure(e, transport, size),
        }
        result
    }

    async fn export_inner(
        &self,
        body: Bytes,
        kind: BodyKind,
        transport: Transport,
        started: Instant,
    ) -> Result<u64, ExportError> {
        // The version is captured once: processing and forwarding both use it.
        let version = self.active();
        let forward = &version.settings.forward;
        let (reply, answer) = oneshot::channel();
        let gzip_output = forward.gzip && self.upstream.gzips_bodies();
        let job = Job { version: Arc::clone(&version), body, kind, gzip_output, reply };
        self.pool.submit(job).map_err(|_| ExportError::Overloaded)?;
        let processed = answer
            .await
            .map_err(|_| ExportError::Internal("the worker ended before answering".into()))?
            .map_err(|e| match e {
                BatchError::Malformed { message, .. } => ExportError::Malformed(message),
                BatchError::TooLarge(why) => ExportError::TooLarge(why),
                BatchError::Trap => ExportError::Trap,
                BatchError::Timeout => ExportError::Timeout,
                BatchError::Internal(why) => ExportError::Internal(why),
            })?;
        let stats = &processed.stats;
        self.metrics.processed(stats, started.elapsed(), processed.split);
        if stats.spans_out == 0 {
            // Nothing left to deliver: acknowledged without a call upstream.
            self.metrics.batch(Outcome::Empty);
            self.metrics.accepted(transport, stats.spans_in);
            return Ok(stats.spans_in);
        }
        match self
            .upstream
            .send(processed.batch, processed.gzipped, forward.gzip, &forward.headers)
            .await
        {
            Ok(()) => {
                self.metrics.sent(stats.spans_out, true);
                self.metrics.batch(Outcome::Ok);
                self.metrics.accepted(transport, stats.spans_in);
                Ok(stats.spans_in)
            }
            Err(e) => {
                self.metrics.sent(stats.spans_out, false);
                self.metrics.refused(transport, stats.spans_in);
                Err(ExportError::Upstream(e))
            }
        }
    }

    /// Counts and logs a batch that was not acknowledged. The log line has
    /// the error kind and sizes, never the message (a JSON error can quote
    /// the body).
    fn record_failure(&self, error: &ExportError, transport: Transport, size: usize) {
        let outcome = error.outcome();
        self.metrics.batch(outcome);
        {
            let mut limit =
                self.failure_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let second = self.started.elapsed().as_secs();
            if second != limit.second {
                if limit.suppressed > 0 {
                    log(format_args!(
                        "batch failed: {} more failures not logged (see the metrics)",
                        limit.suppressed
                    ));
                }
                *limit = FailureLog { second, lines: 0, suppressed: 0 };
            }
            if limit.lines >= FAILURE_LINES_PER_SEC {
                limit.suppressed += 1;
                return;
            }
            limit.lines += 1;
        }
        let detail = match error {
            ExportError::Upstream(e) => {
                format!(" upstream=\"{}\"", e.to_string().replace('"', "'"))
            }
            ExportError::Internal(why) => format!(" reason=\"{}\"", why.replace('"', "'")),
            _ => String::new(),
        };
        log(format_args!(
            "batch failed: outcome={} transport={} bytes={size}{detail}",
            outcome.name(),
            transport.name()
        ));
    }

    /// Reloads: builds a version from the files and swaps it in if it
    /// passes. See [`reload`].
    pub async fn reload(self: &Arc<Self>, trigger: &str) -> Result<Shared, VersionError> {
        reload::reload(self, trigger).await
    }
}

/// Bound listeners' addresses, for the readiness line.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// OTLP/HTTP.
    pub http: SocketAddr,
    /// OTLP/gRPC.
    pub grpc: SocketAddr,
    /// Admin.
    pub admin: SocketAddr,
}

/// The line printed on stdout once everything is up.
pub fn readiness_line(bound: &Bound, version: &Version) -> String {
    format!(
        "serve: ready http={} grpc={} admin={} component={} config={}",
        bound.http, bound.grpc, bound.admin, version.component_sha256, version.config_sha256
    )
}

fn bind(
    what: &'static str,
    setting: &'static str,
    address: &str,
) -> Result<std::net::TcpListener, ServeError> {
    let listener = std::net::TcpListener::bind(address).map_err(|source| ServeError::Bind {
        what,
        setting,
        address: address.to_owned(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(|source| ServeError::Bind {
        what,
        setting,
        address: address.to_owned(),
        source,
    })?;
    Ok(listener)
}

/// Runs the gateway until SIGTERM or SIGINT: binds the listeners, prints the
/// readiness line, serves, and on a signal stops taking new batches and
/// waits (up to 10 s) for those in flight to be answered.
pub fn run(options: ServeOptions) -> Result<(), ServeError> {
    // The async side only moves bytes; the worker threads do the CPU work.
    let io_threads = std::thread::available_parallelism().map_or(2, usize::from).clamp(2, 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .thread_name("tracescrub-io")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Start(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(serve(options))
}

async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let runtime = Runtime::new()
        .map_err(|e| ServeError::Start(format!("cannot create the wasmtime engine: {e}")))?;
    let sources = options.sources;
    // Bind first, so a taken port fails before the compile.
    let (_, _, settings) = version::read_config(&sources).map_err(ServeError::Version)?;
    let http_listener = bind("OTLP/HTTP", "listen_http", &settings.listen_http)?;
    let grpc_listener = bind("OTLP/gRPC", "listen_grpc", &settings.listen_grpc)?;
    let admin_listener = bind("admin", "admin", &settings.admin)?;
    let local = |l: &std::net::TcpListener, what: &'static str, setting, address: &str| {
        l.local_addr().map_err(|source| ServeError::Bind {
            what,
            setting,
            address: address.to_owned(),
            source,
        })
    };
    let bound = Bound {
        http: local(&http_listener, "OTLP/HTTP", "listen_http", &settings.listen_http)?,
        grpc: local(&grpc_listener, "OTLP/gRPC", "listen_grpc", &settings.listen_grpc)?,
        admin: local(&admin_listener, "admin", "admin", &settings.admin)?,
    };
    let watched = tokio::task::block_in_place(|| reload::Watched::read(&sources));
    let gateway = {
        let sources = sources.clone();
        tokio::task::block_in_place(|| Gateway::start(runtime, sources))?
    };
    let to_tokio = |l: std::net::TcpListener| {
        tokio::net::TcpListener::from_std(l)
            .map_err(|e| ServeError::Start(format!("cannot use a listener: {e}")))
    };
    let (http_listener, grpc_listener, admin_listener) =
        (to_tokio(http_listener)?, to_tokio(grpc_listener)?, to_tokio(admin_listener)?);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = tokio::spawn(http::serve(Arc::clone(&gateway), http_listener, stop_rx.clone()));
    let grpc_task = tokio::spawn(grpc::serve(Arc::clone(&gateway), grpc_listener, stop_rx.clone()));
    let admin_task =
        tokio::spawn(admin::serve(Arc::clone(&gateway), admin_listener, stop_rx.clone()));
    let watch = reload::watch(Arc::clone(&gateway), watched).map_err(ServeError::Start)?;

    let active = gateway.active();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", readiness_line(&bound, &active));
        let _ = out.flush();
    }
    log(format_args!(
        "started: workers={} upstream={} max_in_flight={} batch_deadline_ms={} component={} config={}",
        gateway.settings.workers,
        gateway.settings.upstream,
        gateway.settings.max_in_flight,
        gateway.settings.batch_deadline.as_millis(),
        active.component_sha256,
        active.config_sha256
    ));

    wait_for_stop().await;
    log(format_args!(
        "stopping: no new batches; waiting up to {} s for those in flight",
        SHUTDOWN_GRACE.as_secs()
    ));
    gateway.ready.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    drop(watch);
    let all = u32::try_from(gateway.settings.max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, gateway.admission.acquire_many(all)).await;
    let grace = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = http_task.await;
        let _ = grpc_task.await;
        let _ = admin_task.await;
    });
    let _ = grace.await;
    match drained {
        Ok(_) => log(format_args!("stopped: every batch in flight was answered")),
        Err(_) => log(format_args!(
            "stopped: batches still in flight after {} s were cut off (not acknowledged)",
            SHUTDOWN_GRACE.as_secs()
        )),
    }
    Ok(())
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the process still stops on the default action.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
