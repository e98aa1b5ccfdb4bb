//! The load run for `tracescrub serve`, and the same load through rotel.
//!
//! Starts a fast OTLP/HTTP sink in this process, `tracescrub serve` (and,
//! when given, rotel with `rotel_processor.py`) forwarding to it, then:
//!
//! 1. **Latency**: one batch at a time, each batch sent straight to the sink
//!    and then through the gateway; the gateway's added latency is the
//!    difference, per batch. p50 and p99 of those differences, and how
//!    many batches another worker helped with or ran again whole.
//! 2. **Throughput**: `--concurrency` connections send batches for
//!    `--seconds` to each target in turn (the sink directly, as the ceiling
//!    of this machine's loopback and sink; the gateway; rotel). A target's
//!    spans/s is the input spans of its acknowledged batches divided by the
//!    time until the sink had received all their output: rotel acknowledges
//!    before it exports, the gateway after, and this counts both the same.
//!
//! The batches are the benchmark corpus (`tracescrub-corpus`), cut into
//! batches of `--spans-per-batch` spans; the native engine says how many
//! spans of each should reach the sink, so a target that loses spans shows.
//! Only 127.0.0.1 is used. Run by `scripts/serve-load.sh`, which prints the
//! last line, e.g.
//! `serve-load: tracescrub_spans_per_s=N rotel_spans_per_s=N ratio=R p50_added_ms=X p99_added_ms=Y`.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracescrub_corpus::{CorpusOptions, DEFAULT_SEED, generate};

#[derive(Parser)]
#[command(
    about = "Load run: spans/s and added latency of `tracescrub serve`, side by side with rotel"
)]
struct Args {
    /// The `tracescrub` binary (a release build).
    #[arg(long)]
    tracescrub: PathBuf,
    /// rotel's binary (`rotel/rotel-agent` in the rotel wheel); leave out to skip rotel.
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// The Python processor rotel runs.
    #[arg(long)]
    rotel_processor: Option<PathBuf>,
    /// Seconds of sending per target.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent connections per target.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Spans per batch.
    #[arg(long, default_value_t = 1000)]
    spans_per_batch: usize,
    /// Distinct batches, sent round-robin.
    #[arg(long, default_value_t = 64)]
    distinct_batches: usize,
    /// Batches in the latency phase. A p99 rests on the slowest 1 % of
    /// them: with 2000, on 20 batches, so one stall of the machine does not
    /// decide it alone.
    #[arg(long, default_value_t = 2000)]
    latency_samples: usize,
    /// `--workers` for the gateway (its default when left out).
    #[arg(long)]
    workers: Option<usize>,
    /// Where the gateway's and rotel's logs go.
    #[arg(long, default_value = "target/serve-load")]
    workdir: PathBuf,
}

type Fail = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() -> Result<(), Fail> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.workdir)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Fail> {
    let corpus = generate(&CorpusOptions {
        seed: DEFAULT_SEED,
        min_spans: args.spans_per_batch * args.distinct_batches,
        batch_spans: args.spans_per_batch,
    })?;
    // What the default config leaves of each batch, from the native engine.
    let engine = tracescrub_processor::Processor::new("{}")?;
    let mut out_spans = Vec::new();
    for b in &corpus.batches {
        out_spans.push(engine.process(b)?.stats.spans_out);
    }
    let batches: Vec<Bytes> = corpus.batches.into_iter().map(Bytes::from).collect();
    let in_spans = args.spans_per_batch as u64;
    eprintln!(
        "serve-load: {} distinct batches of {} spans ({} bytes on average); {:.1} % of spans are noise",
        batches.len(),
        in_spans,
        corpus.bytes / batches.len() as u64,
        100.0 * corpus.noise_spans as f64 / corpus.spans as f64
    );

    let sink = Arc::new(SinkStats::default());
    let sink_addr = start_sink(sink.clone()).await?;
    let sink_uri = format!("http://{sink_addr}/v1/traces");

    let mut gateway = Gateway::start(&args, &format!("http://{sink_addr}"))?;
    let gw_uri = format!("http://{}/v1/traces", gateway.http);
    let mut rotel = match (&args.rotel, &args.rotel_processor) {
        (Some(bin), Some(processor)) => {
            Some(Rotel::start(&args.workdir, bin, processor, sink_addr)?)
        }
        _ => None,
    };

    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency * 2)
        .build_http();

    // 1. Latency, one batch at a time (after a warm-up of both paths).
    for b in batches.iter().take(20) {
        post(&client, &sink_uri, b.clone()).await?;
        post(&client, &gw_uri, b.clone()).await?;
    }
    const SPLIT: &str = "tracescrub_processor_split_batches_total";
    const RERUN: &str = "tracescrub_processor_split_reruns_total";
    let (split_before, rerun_before) =
        (gateway.counter(&client, SPLIT).await?, gateway.counter(&client, RERUN).await?);
    let (mut direct, mut through, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.latency_samples {
        let b = &batches[i % batches.len()];
        let t = Instant::now();
        post(&client, &sink_uri, b.clone()).await?;
        let d = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        post(&client, &gw_uri, b.clone()).await?;
        let g = t.elapsed().as_secs_f64() * 1e3;
        direct.push(d);
        through.push(g);
        added.push(g - d);
    }
    let (p50_added, p99_added) = (percentile(&mut added, 50.0), percentile(&mut added, 99.0));
    println!(
        "serve-load: latency ms per {in_spans}-span batch (n={}): direct p50={:.3} p99={:.3}; through tracescrub p50={:.3} p99={:.3}; added p50={p50_added:.3} p99={p99_added:.3}",
        args.latency_samples,
        percentile(&mut direct, 50.0),
        percentile(&mut direct, 99.0),
        percentile(&mut through, 50.0),
        percentile(&mut through, 99.0),
    );
    println!(
        "serve-load: of those batches, another worker ran a part of {}, and {} ran again whole as a dropped span had a kept child across a cut",
        gateway.counter(&client, SPLIT).await? - split_before,
        gateway.counter(&client, RERUN).await? - rerun_before,
    );

    // 2. Throughput, one target at a time: they share this machine's cores.
    let load = Load {
        client: &client,
        batches: &batches,
        out_spans: &out_spans,
        in_spans,
        concurrency: args.concurrency,
        duration: Duration::from_secs_f64(args.seconds),
        sink: &sink,
    };
    // Straight to the sink nothing is processed: every span arrives.
    let unprocessed = vec![in_spans; batches.len()];
    Load { out_spans: &unprocessed, ..load }.run(&sink_uri, None).await.print("direct-to-sink");
    let ts_run = load.run(&gw_uri, Some(gateway.child.id())).await;
    ts_run.print("tracescrub");
    let rotel_run = match &rotel {
        Some(r) => {
            let run = load.run(&format!("http://{}/v1/traces", r.http), Some(r.child.id())).await;
            run.print("rotel");
            Some(run)
        }
        None => None,
    };

    gateway.stop();
    if let Some(r) = rotel.as_mut() {
        r.stop();
    }

    let ts = ts_run.spans_per_s();
    match rotel_run {
        Some(r) => println!(
            "serve-load: tracescrub_spans_per_s={ts:.0} rotel_spans_per_s={:.0} ratio={:.2} p50_added_ms={p50_added:.3} p99_added_ms={p99_added:.3}",
            r.spans_per_s(),
            ts / r.spans_per_s().max(f64::MIN_POSITIVE),
        ),
        None => println!(
            "serve-load: tracescrub_spans_per_s={ts:.0} rotel_spans_per_s=n/a ratio=n/a p50_added_ms={p50_added:.3} p99_added_ms={p99_added:.3}"
        ),
    }
    Ok(())
}

/// Nearest-rank percentile; sorts `v`.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

async fn post(client: &HttpClient, uri: &str, body: Bytes) -> Result<(), Fail> {
    let req =
        Request::post(uri).header(CONTENT_TYPE, "application/x-protobuf").body(Full::new(body))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    // Read the answer to the end so the connection goes back to the pool.
    resp.into_body().collect().await?;
    if status != StatusCode::OK {
        return Err(format!("{uri} answered {status}").into());
    }
    Ok(())
}

// ------------------------------------------------------------------ sink

/// What the sink has received, for all targets together (phases run one at
/// a time, so a phase reads the change over its own span).
#[derive(Default)]
struct SinkStats {
    spans: AtomicU64,
    requests: AtomicU64,
    bad: AtomicU64,
    /// Nanoseconds from [`epoch`] to the last accepted request.
    last_ns: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

async fn start_sink(stats: Arc<SinkStats>) -> Result<SocketAddr, Fail> {
    epoch();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let stats = stats.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| sink_request(req, stats.clone()));
                // HTTP/1 or h2c, whichever the exporter speaks.
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn sink_request(
    req: Request<Incoming>,
    stats: Arc<SinkStats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let gzip = req
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST)),
    };
    let spans = if gzip {
        let mut plain = Vec::new();
        match flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain) {
            Ok(_) => count_spans(&plain),
            Err(_) => None,
        }
    } else {
        count_spans(&body)
    };
    let Some(spans) = spans else {
        stats.bad.fetch_add(1, Ordering::Relaxed);
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    stats.spans.fetch_add(spans, Ordering::Relaxed);
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.last_ns.fetch_max(epoch().elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(answer(StatusCode::OK))
}

/// An empty ExportTraceServiceResponse (all fields default), or an error.
fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/x-protobuf"));
    r
}

/// Spans in an ExportTraceServiceRequest, counted by walking only the
/// `resource_spans` (1) > `scope_spans` (2) > `spans` (2) framing, so the
/// sink stays cheap next to what it measures. None if the framing is broken.
fn count_spans(buf: &[u8]) -> Option<u64> {
    let mut n = 0;
    for_each_len_field(buf, 1, |rs| {
        for_each_len_field(rs, 2, |ss| {
            for_each_len_field(ss, 2, |_| {
                n += 1;
                Some(())
            })
        })
    })?;
    Some(n)
}

/// Calls `f` with the payload of every length-delimited field `number`,
/// skipping all others.
fn for_each_len_field(
    mut buf: &[u8],
    number: u64,
    mut f: impl FnMut(&[u8]) -> Option<()>,
) -> Option<()> {
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let payload = buf.get(..len)?;
                if key >> 3 == number {
                    f(payload)?;
                }
                buf = &buf[len..];
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(())
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

// ------------------------------------------------------------------ load

#[derive(Clone, Copy)]
struct Load<'a> {
    client: &'a HttpClient,
    batches: &'a [Bytes],
    out_spans: &'a [u64],
    in_spans: u64,
    concurrency: usize,
    duration: Duration,
    sink: &'a SinkStats,
}

struct Run {
    acked: u64,
    rejected: u64,
    errors: u64,
    expected_out: u64,
    delivered: u64,
    in_spans: u64,
    /// From the first send to the later of the last answer and the sink's
    /// last receipt.
    elapsed: f64,
    cpu_seconds: Option<f64>,
}

impl Run {
    fn spans_per_s(&self) -> f64 {
        (self.acked * self.in_spans) as f64 / self.elapsed
    }

    fn print(&self, target: &str) {
        let per_cpu = match self.cpu_seconds {
            Some(c) if c > 0.0 => format!(
                " cpu_s={c:.2} spans_per_cpu_s={:.0}",
                (self.acked * self.in_spans) as f64 / c
            ),
            _ => String::new(),
        };
        println!(
            "serve-load: target={target} spans_per_s={:.0} batches_acked={} rejected={} errors={} elapsed_s={:.2} sink_spans={}/{}{per_cpu}",
            self.spans_per_s(),
            self.acked,
            self.rejected,
            self.errors,
            self.elapsed,
            self.delivered,
            self.expected_out
        );
    }
}

impl Load<'_> {
    async fn run(&self, uri: &str, pid: Option<u32>) -> Run {
        let acked = AtomicU64::new(0);
        let rejected = AtomicU64::new(0);
        let errors = AtomicU64::new(0);
        let expected_out = AtomicU64::new(0);
        let next = AtomicU64::new(0);
        let sink_before = self.sink.spans.load(Ordering::Relaxed);
        let cpu_before = pid.and_then(cpu_seconds);
        let start = Instant::now();
        let sender = || async {
            while start.elapsed() < self.duration {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % self.batches.len();
                let Ok(req) = Request::post(uri)
                    .header(CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(self.batches[i].clone()))
                else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                match self.client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == StatusCode::OK;
                        let _ = resp.into_body().collect().await;
                        if ok {
                            acked.fetch_add(1, Ordering::Relaxed);
                            expected_out.fetch_add(self.out_spans[i], Ordering::Relaxed);
                        } else {
                            // Backpressure (429/503): back off a little, as an exporter would.
                            rejected.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        };
        join_all((0..self.concurrency).map(|_| sender())).await;
        let sent_end = start.elapsed().as_secs_f64();
        // Wait until the sink holds all the output of the acknowledged batches
        // (or it stops growing for 5 s: then what is missing was lost).
        let expected = expected_out.load(Ordering::Relaxed);
        let mut last_change = Instant::now();
        let mut seen = 0;
        loop {
            let delivered = self.sink.spans.load(Ordering::Relaxed) - sink_before;
            if delivered >= expected {
                break;
            }
            if delivered != seen {
                seen = delivered;
                last_change = Instant::now();
            } else if last_change.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let last_receipt = Duration::from_nanos(self.sink.last_ns.load(Ordering::Relaxed));
        let receipt_since_start =
            last_receipt.saturating_sub(start.duration_since(epoch())).as_secs_f64();
        let cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        Run {
            acked: acked.load(Ordering::Relaxed),
            rejected: rejected.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
            expected_out: expected,
            delivered: self.sink.spans.load(Ordering::Relaxed) - sink_before,
            in_spans: self.in_spans,
            elapsed: sent_end.max(receipt_since_start),
            cpu_seconds: cpu,
        }
    }
}

/// Runs the futures concurrently on this task and waits for all of them
/// (a join_all without another dependency; the hyper client runs each
/// connection on the runtime's own tasks).
async fn join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut set: Vec<Option<std::pin::Pin<Box<F>>>> = futs.map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in set.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
}

/// User plus system CPU time of a process, from /proc (Linux only).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: utime and stime are the
    // 14th and 15th fields of the whole line, the 12th and 13th after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on every Linux architecture this runs on.
    Some(ticks / 100.0)
}

// ------------------------------------------------------------------ processes

struct Gateway {
    child: Child,
    http: String,
    admin: String,
}

impl Gateway {
    fn start(args: &Args, upstream: &str) -> Result<Gateway, Fail> {
        let log_path = args.workdir.join("gateway.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&args.tracescrub);
        cmd.args([
            "serve",
            "--upstream",
            upstream,
            "--listen-http",
            "127.0.0.1:0",
            "--listen-grpc",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ]);
        if let Some(w) = args.workers {
            cmd.args(["--workers", &w.to_string()]);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("serve: ready ") {
                    let _ = tx.send(line);
                }
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(180)) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(
                format!("the gateway printed no ready line; see {}", log_path.display()).into()
            );
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_owned)
                .ok_or_else(|| format!("no {name} in {line:?}"))
        };
        let (http, admin) = (field("http=")?, field("admin=")?);
        eprintln!("{line}");
        Ok(Gateway { child, http, admin })
    }

    /// A counter from the gateway's `/metrics`.
    async fn counter(&self, client: &HttpClient, name: &str) -> Result<f64, Fail> {
        let req =
            Request::get(format!("http://{}/metrics", self.admin)).body(Full::new(Bytes::new()))?;
        let text = client.request(req).await?.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&text);
        let value =
            text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
        Ok(value.ok_or_else(|| format!("no {name} in the gateway's metrics"))?)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rotel {
    child: Child,
    http: SocketAddr,
}

impl Rotel {
    fn start(
        workdir: &Path,
        bin: &Path,
        processor: &Path,
        sink: SocketAddr,
    ) -> Result<Rotel, Fail> {
        let http = free_port()?;
        let grpc = free_port()?;
        let log_path = workdir.join("rotel.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(bin)
            .arg("start")
            .args([
                "--otlp-http-endpoint",
                &http.to_string(),
                "--otlp-grpc-endpoint",
                &grpc.to_string(),
            ])
            .args([
                "--otlp-exporter-endpoint",
                &format!("http://{sink}"),
                "--otlp-exporter-protocol",
                "http",
            ])
            // The gateway forwards uncompressed; so does rotel here.
            .args(["--otlp-exporter-compression", "none"])
            .arg("--otlp-with-trace-processor")
            .arg(processor)
            .arg("--pid-file")
            .arg(workdir.join("rotel.pid"))
            .arg("--log-file")
            .arg(workdir.join("rotel-agent.log"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut rotel = Rotel { child, http };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(http).is_err() {
            if Instant::now() > deadline || rotel.child.try_wait()?.is_some() {
                rotel.stop();
                return Err(format!("rotel did not start; see {}", log_path.display()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("serve-load: rotel listening on {http}");
        Ok(rotel)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (rotel takes fixed addresses only).
fn free_port() -> Result<SocketAddr, Fail> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}
