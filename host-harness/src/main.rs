//! `tracescrub`: replay, audit and inspect the span processor component.
//!
//! The work happens in the `tracescrub` library; this file defines the
//! command line and prints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tracescrub::audit::by_service::{ByService, Grouping, ServiceReport};
use tracescrub::audit::{AuditReport, audit_file};
use tracescrub::bench::{BenchOptions, Workload};
use tracescrub::config_file::{self, DEFAULT_CONFIG_YAML};
use tracescrub::replay::{Counts, FileReport, Input, Session, collect_inputs, replay_file};
use tracescrub::{HostError, InstanceOptions, LoadedComponent, Runtime};
use tracescrub_corpus::CorpusOptions;
use tracescrub_processor::{Error as EngineError, Finding};

/// Prints a line to stdout; see [`emit`].
macro_rules! say {
    ($($arg:tt)*) => { emit(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Writes to stdout. When the reader has gone (`tracescrub audit ... | head`)
/// it exits at once with 141, as a process killed by SIGPIPE would, rather
/// than panicking as `println!` does.
fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("tracescrub: error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}

/// Drops health-check noise and masks Norwegian personal identity numbers in
/// OpenTelemetry traces, with a WebAssembly component that imports nothing.
#[derive(Parser)]
#[command(
    name = "tracescrub",
    version,
    after_help = "\
Exit status: 0 when all went well; 1 when a batch failed (replay, audit), a
personal number would get through (audit) or a config has problems (config
check); 2 when the command could not run (bad arguments, unreadable config or
component).

Input formats are detected from content: OTLP protobuf, OTLP JSON, OTLP JSON
lines, length-prefixed protobuf (the collector file exporter's `proto`
format), and gzip of each.

The compiled component is cached in $TRACESCRUB_CACHE_DIR, else
$XDG_CACHE_HOME/tracescrub, else ~/.cache/tracescrub: the first run compiles
it, later runs load it in about a millisecond. Delete the directory to clear
it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process captured OTLP files and print what was dropped and masked.
    ///
    /// Each INPUT is a file or a directory (read recursively). With --out,
    /// each processed file is written to the same relative path under DIR,
    /// in the format it came in; a batch that fails is reported with its
    /// file and line or offset, left out of the output, and the run goes on.
    /// The last line reads:
    /// `total: files=N batches=N spans_in=N spans_out=N dropped=N masked=N errors=N`.
    #[command(after_help = "\
Formats, detected from content: OTLP protobuf, OTLP JSON, OTLP JSON lines,
length-prefixed protobuf (the collector file exporter's `proto` format), and
gzip of each. With several INPUTs, outputs keep each INPUT's name in front.

Exit status: 0 no batch failed; 1 a batch failed; 2 the command could not run.

Example:
  tracescrub replay --out scrubbed/ testdata/captures")]
    Replay {
        #[command(flatten)]
        run: RunArgs,
        /// Write processed files under this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Files or directories of captured OTLP trace batches.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
    },
    /// Report what a config would drop and mask, and any personal number it
    /// would let through. Changes nothing.
    ///
    /// Lists each span that would be dropped (span id, rule, path) and each
    /// value that would be masked (span id, field, key, detector), then scans
    /// the processed batches for valid personal numbers with a scanner
    /// independent of the processor. Each one left is printed (file, span id,
    /// field path, never the number) and the exit status is 1.
    ///
    /// With `--by service`, the drops and masks of all inputs are added up
    /// per service instead: for each namespace (the resource attribute
    /// `teams.key`, by default `k8s.namespace.name`) and `service.name`, the
    /// spans each rule dropped and the file the rule was written in (a team
    /// file, or the config), the descendants dropped with them, and the
    /// values masked per detector and field. A resource without
    /// `service.name` shows as `(no service.name)`, one without a namespace
    /// as `-`. Names that hold a number-shaped run are shown starred.
    #[command(after_help = AUDIT_HELP)]
    Audit {
        #[command(flatten)]
        run: RunArgs,
        /// Skip the processor: scan the input as it is.
        #[arg(long)]
        raw: bool,
        /// Print only the per-file summaries (with --by service: one line
        /// per service), not each drop and mask.
        #[arg(long, short)]
        quiet: bool,
        /// Report each drop and mask per file, or add them up per service
        /// over all inputs (not with --raw).
        #[arg(long, value_enum, default_value_t = By::File)]
        by: By,
        /// Files or directories of captured OTLP trace batches.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
    },
    /// Print the default config or check a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure throughput: the component against the native engine, a prost
    /// decode/encode round trip and a plain byte scan, in one process.
    ///
    /// Without INPUT, runs a generated corpus shaped like the SDK captures
    /// (>= 100k spans by default). After a checked warm-up the contenders
    /// alternate over the rounds; the medians are reported, with the guest's
    /// linear-memory peak per batch and the component's load and
    /// instantiate times. Build with `--release`. The last line reads:
    /// `bench: spans_per_s=N wasm_mb_s=N native_mb_s=N prost_roundtrip_mb_s=N
    /// scan_mb_s=N wasm_vs_prost=R wasm_vs_native=R wasm_vs_scan=R`.
    #[command(
        after_help = "Examples:\n  tracescrub bench\n  tracescrub bench --batch-spans 512 --rounds 11\n  tracescrub bench --batch-spans 4096 testdata/captures"
    )]
    Bench(BenchArgs),
    /// Run an OTLP gateway: receive OTLP/HTTP and OTLP/gRPC, process every
    /// batch with the component, forward the result upstream.
    ///
    /// A batch is acknowledged only after the upstream accepted it (or it
    /// processed to no spans). When everything is up, one line goes to
    /// stdout: `serve: ready http=IP:PORT grpc=IP:PORT admin=IP:PORT
    /// component=SHA256 config=SHA256` (the hashes are of the component and
    /// config files' bytes). Logs go to stderr and never contain span
    /// content. Runs until SIGTERM or SIGINT, then answers the batches in
    /// flight (up to 10 s) and exits 0.
    #[command(after_help = SERVE_HELP)]
    Serve(Box<ServeArgs>),
    /// Print the component's WIT world: what it exports and what it imports.
    Inspect {
        /// A component file instead of the embedded one.
        #[arg(long, value_name = "FILE")]
        component: Option<PathBuf>,
        /// Also write the component to FILE, to load it from another host.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
}

const AUDIT_HELP: &str = "\
Lines with --by service, sorted by namespace and service; rules by spans
dropped, masks by values masked:
  service namespace=NS service.name=NAME dropped=N masked=N
    drop  spans=N file=FILE rule=RULE
    drop  spans=N rule=(descendant of a noisy span)
    mask  values=N field=FIELD detector=DETECTOR
With --report json the same, as `services`: [{namespace, service,
spans_dropped, dropped_by_rule: [{rule, file, spans}], dropped_descendants,
values_masked, masked: [{detector, field, values}]}].

Examples:
  tracescrub audit --raw my-service-captures/   # what leaks today?
  tracescrub audit --config mine.yaml my-service-captures/
  tracescrub audit --config scrub.yaml --by service captures/";

const SERVE_HELP: &str = "\
Answers:
  200 / OK                 the upstream accepted the processed batch (or
                           nothing was left to forward)
  400 / InvalidArgument    not OTLP, with the byte offset and reason; or the
                           upstream refused the batch for good. Not retried.
  413 / InvalidArgument    body over --max-body-bytes, or over
                           --max-decompressed-bytes once gunzipped, or a
                           batch over (--batch-memory-bytes - 1 MiB) / 2
  408 / DeadlineExceeded   body not received within --body-timeout-ms
  415, 404, 405            wrong content type or encoding, path, method
  503 / Unavailable        over --max-in-flight (taken once a body is in),
                           --max-receiving or --max-receiving-per-connection
                           (bodies still arriving), a batch past its
                           deadline, or the upstream down, slow or cutting
                           the connection; with Retry-After (gRPC:
                           RetryInfo). Retried by SDKs.
  429 / ResourceExhausted  the upstream throttled; its Retry-After (seconds
                           or an HTTP date) or RetryInfo passed on
  500 / Internal           the component trapped (a processor bug). The
                           instance is discarded; the gateway serves on.

Reload (SIGHUP, a change to --config or --component, POST /-/reload on the
admin port): compile, configure, run a canary batch, then swap. On failure the
old version keeps serving and tracescrub_reloads_total{result=\"failure\"}
goes up. Batches in flight finish on the version they started with.

Config file: the processor config, plus an optional `gateway:` section (the
host takes it out before the component sees the rest). Flags override it:
  gateway:
    upstream: http://tempo:4318           # or grpc://tempo:4317
    upstream_headers: {X-Scope-OrgID: team-a}
    upstream_gzip: true
    upstream_timeout_ms: 5000
    # also: listen_http, listen_grpc, admin, workers, max_body_bytes,
    # max_decompressed_bytes, batch_memory_bytes, batch_deadline_ms,
    # max_in_flight, body_timeout_ms, max_receiving,
    # max_receiving_per_connection, idle_timeout_ms,
    # header_read_timeout_ms, split_batches, max_batches_per_instance
    # (each flag's key; upstream_headers and upstream_gzip change on
    # reload, the rest at restart)

Admin: GET /metrics (Prometheus), GET /healthz, GET /readyz, POST /-/reload.

Examples:
  tracescrub serve --upstream http://tempo:4318
  tracescrub serve --config scrub.yaml --upstream grpc://tempo:4317 \\
      --upstream-header X-Scope-OrgID=team-a --upstream-gzip
  tracescrub serve --upstream http://127.0.0.1:9999 --listen-http 127.0.0.1:0 \\
      --listen-grpc 127.0.0.1:0 --admin 127.0.0.1:0   # any free ports
  curl -X POST http://127.0.0.1:8888/-/reload";

/// The `serve` subcommand's arguments; each overrides the config file's
/// `gateway:` section.
#[derive(clap::Args)]
struct ServeArgs {
    /// YAML or JSON config file: the processor config and an optional
    /// `gateway:` section [default: the embedded platform rules].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A processor component file instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
    /// The gateway's settings, declared once for flags and the config
    /// file (tracescrub::serve::options::GatewaySection).
    #[command(flatten)]
    gateway: tracescrub::serve::options::GatewaySection,
}

fn serve(args: ServeArgs) -> Result<bool, Fatal> {
    let cli = args.gateway;
    let sources =
        tracescrub::serve::version::Sources { config: args.config, component: args.component, cli };
    tracescrub::serve::run(tracescrub::serve::ServeOptions { sources })?;
    Ok(true)
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the embedded default config (the platform's rules), commented.
    Default,
    /// Validate a YAML or JSON config file and list every problem.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// YAML or JSON config file [default: the embedded platform rules; see
    /// `tracescrub config default`].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A processor component file instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
    /// Print the report as text or as JSON.
    #[arg(long, value_enum, default_value_t = Report::Text)]
    report: Report,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Report {
    Text,
    Json,
}

/// How `audit` groups what it found.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    /// Each drop and mask, per file.
    File,
    /// Drops and masks added up per (namespace, service.name) over all inputs.
    Service,
}

/// Exit 2: the command could not run.
struct Fatal(String);

impl<E: std::error::Error> From<E> for Fatal {
    fn from(e: E) -> Fatal {
        Fatal(tracescrub::one_line(&e))
    }
}

fn main() -> ExitCode {
    // `serve --help` shows each setting's default from the constants
    // `resolve` uses.
    let command =
        Cli::command().mut_subcommand("serve", tracescrub::serve::options::document_defaults);
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Replay { run, out, inputs } => replay(&run, out.as_deref(), &inputs),
        Command::Audit { run, raw, quiet, by, inputs } => audit(&run, raw, quiet, by, &inputs),
        Command::Config(ConfigCommand::Default) => {
            emit(format_args!("{DEFAULT_CONFIG_YAML}"));
            Ok(true)
        }
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
        Command::Inspect { component, save } => inspect(component.as_deref(), save.as_deref()),
        Command::Serve(args) => serve(*args),
        Command::Bench(args) => bench(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Fatal(message)) => {
            eprintln!("tracescrub: error: {message}");
            ExitCode::from(2)
        }
    }
}

fn component_bytes(path: Option<&Path>) -> Result<Vec<u8>, Fatal> {
    let Some(p) = path else { return Ok(tracescrub::DEFAULT_COMPONENT.to_vec()) };
    let bytes = std::fs::read(p)
        .map_err(|e| Fatal(format!("cannot read component {}: {e}", p.display())))?;
    // The header says what the file is; name the common mistakes plainly.
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(bytes),
        Some([0, b'a', b's', b'm', 0x01, 0, 0, 0]) => Err(Fatal(format!(
            "{} is a core WebAssembly module, not a component; turn it into one (e.g. `wasm-tools component new`)",
            p.display()
        ))),
        _ => Err(Fatal(format!(
            "{} is not a WebAssembly component (no `\\0asm` component header)",
            p.display()
        ))),
    }
}

fn load(runtime: &Runtime, path: Option<&Path>) -> Result<LoadedComponent, Fatal> {
    let bytes = component_bytes(path)?;
    runtime.load(&bytes).map_err(|e| {
        let what = path.map_or("the embedded component".to_owned(), |p| p.display().to_string());
        Fatal(format!("{what}: {}", tracescrub::one_line(&e)))
    })
}

fn config_json(path: Option<&Path>) -> Result<String, Fatal> {
    let json = match path {
        None => config_file::default_json(),
        Some(p) => config_file::load(p)?,
    };
    // Team files with problems are left out by the component; say so once
    // and go on with the other teams.
    if let Ok(cfg) = tracescrub_processor::Config::from_json(&json) {
        for p in &cfg.teams.problems {
            eprintln!("warning: team file left out: {p}");
        }
    }
    Ok(json)
}

/// Builds a session, turning a rejected config into a listing of its problems.
fn session(
    component: &LoadedComponent,
    config: &str,
    origin: Option<&Path>,
) -> Result<Session, Fatal> {
    Session::new(component, config, InstanceOptions::default()).map_err(|e| match e {
        HostError::Processor(EngineError::InvalidConfig(problems)) => {
            let mut text = format!(
                "config {} is invalid:",
                origin.map_or("(default)".into(), |p| p.display().to_string())
            );
            for p in problems {
                text.push_str(&format!("\n  - {p}"));
            }
            Fatal(text)
        }
        e => Fatal(tracescrub::one_line(&e)),
    })
}

/// A progress bar on stderr for long runs on a terminal; hidden otherwise.
fn progress(inputs: &[Input]) -> ProgressBar {
    let bytes: u64 = inputs.iter().map(|i| i.size).sum();
    // Short runs finish before a bar is worth drawing.
    if !std::io::stderr().is_terminal() || (inputs.len() < 50 && bytes < 32 << 20) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn read_input(input: &Input) -> Result<Vec<u8>, String> {
    std::fs::read(&input.path).map_err(|e| format!("cannot read: {e}"))
}

fn replay(run: &RunArgs, out: Option<&Path>, args: &[PathBuf]) -> Result<bool, Fatal> {
    let inputs = collect_inputs(args)?;
    if let Some(out) = out {
        refuse_out_inside_inputs(out, args)?;
    }
    let runtime = Runtime::new()?;
    let component = load(&runtime, run.component.as_deref())?;
    let config = config_json(run.config.as_deref())?;
    let mut session = session(&component, &config, run.config.as_deref())?;
    let bar = progress(&inputs);
    let mut reports = Vec::new();
    let mut total = Counts::default();
    for input in &inputs {
        bar.set_message(input.relative.display().to_string());
        let (mut report, output) = match read_input(input) {
            Ok(raw) => replay_file(&mut session, &input.path, &raw),
            Err(reason) => (unreadable(&input.path, reason), None),
        };
        if let (Some(dir), Some(bytes)) = (out, output) {
            let target = dir.join(&input.relative);
            let written = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&target, bytes));
            if let Err(e) = written {
                report.counts.errors += 1;
                report.failures.push(tracescrub::replay::BatchError {
                    location: String::new(),
                    reason: format!("cannot write {}: {e}", target.display()),
                });
            }
        }
        total.add(&report.counts);
        if run.report == Report::Text {
            bar.suspend(|| print_file_report(&report));
        }
        reports.push(report);
        bar.inc(input.size);
    }
    bar.finish_and_clear();
    let ok = total.errors == 0;
    if run.report == Report::Json {
        let doc =
            serde_json::json!({ "files": reports, "total": totals_json(reports.len(), &total) });
        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        say!(
            "total: files={} batches={} spans_in={} spans_out={} dropped={} masked={} errors={}",
            reports.len(),
            total.batches,
            total.spans_in,
            total.spans_out,
            total.dropped,
            total.masked,
            total.errors
        );
    }
    Ok(ok)
}

/// Writing into an input would overwrite the captures, or feed the next
/// run its own output.
fn refuse_out_inside_inputs(out: &Path, args: &[PathBuf]) -> Result<(), Fatal> {
    // `out` may not exist yet: resolve the nearest existing ancestor.
    let mut existing = out;
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            }
            _ => break,
        }
    }
    let Ok(mut resolved) = existing.canonicalize() else { return Ok(()) };
    resolved.extend(rest.iter().rev());
    for arg in args {
        if let Ok(input) = arg.canonicalize()
            && input.is_dir()
            && resolved.starts_with(&input)
        {
            return Err(Fatal(format!(
                "--out {} is inside the input {}; outputs would overwrite or be read as inputs; choose a directory outside it",
                out.display(),
                arg.display()
            )));
        }
    }
    Ok(())
}

fn unreadable(path: &Path, reason: String) -> FileReport {
    FileReport {
        path: path.display().to_string(),
        format: None,
        counts: Counts { errors: 1, ..Counts::default() },
        failures: vec![tracescrub::replay::BatchError { location: String::new(), reason }],
    }
}

fn totals_json(files: usize, c: &Counts) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["files"] = files.into();
    v
}

fn print_file_report(r: &FileReport) {
    let c = &r.counts;
    say!(
        "{}: format={} batches={} spans_in={} spans_out={} dropped={} masked={} errors={}",
        r.path,
        r.format.as_deref().unwrap_or("unreadable"),
        c.batches,
        c.spans_in,
        c.spans_out,
        c.dropped,
        c.masked,
        c.errors
    );
    for f in &r.failures {
        let at = if f.location.is_empty() { String::new() } else { format!("{}: ", f.location) };
        say!("  error: {}: {at}{}", r.path, f.reason);
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn audit(run: &RunArgs, raw: bool, quiet: bool, by: By, args: &[PathBuf]) -> Result<bool, Fatal> {
    if raw && by == By::Service {
        return Err(Fatal(
            "--by service adds up what the processor drops and masks; --raw skips the processor (leave out one of them)".into(),
        ));
    }
    let inputs = collect_inputs(args)?;
    let runtime = Runtime::new()?;
    let component = load(&runtime, run.component.as_deref())?;
    let config = config_json(run.config.as_deref())?;
    let grouping = Grouping::new(&config, run.config.as_deref());
    let mut session =
        if raw { None } else { Some(session(&component, &config, run.config.as_deref())?) };
    let bar = progress(&inputs);
    let mut reports: Vec<AuditReport> = Vec::new();
    let mut by_service = ByService::default();
    for input in &inputs {
        let mut report = match read_input(input) {
            Ok(bytes) => audit_file(session.as_mut(), &grouping.team_key, &input.path, &bytes),
            Err(reason) => AuditReport {
                path: input.path.display().to_string(),
                errors: 1,
                failures: vec![tracescrub::replay::BatchError { location: String::new(), reason }],
                ..AuditReport::default()
            },
        };
        by_service.merge(std::mem::take(&mut report.by_service));
        if run.report == Report::Text {
            match by {
                By::File => bar.suspend(|| print_audit_report(&report, quiet)),
                By::Service => bar.suspend(|| print_leaks_and_failures(&report)),
            }
        }
        reports.push(report);
        bar.inc(input.size);
    }
    bar.finish_and_clear();
    let sum = |f: fn(&AuditReport) -> u64| -> u64 { reports.iter().map(f).sum() };
    let (drop, mask, residual, errors) =
        (sum(|r| r.would_drop), sum(|r| r.would_mask), sum(|r| r.residual), sum(|r| r.errors));
    let services = (by == By::Service).then(|| by_service.report(&grouping));
    if run.report == Report::Json {
        let mut doc = serde_json::json!({
            "mode": if raw { "raw" } else { "processed" },
            "files": reports,
            "total": {"files": reports.len(), "would_drop": drop, "would_mask": mask, "residual": residual, "errors": errors},
        });
        if let Some(services) = &services {
            doc["by"] = "service".into();
            doc["services"] = serde_json::to_value(services).unwrap_or_default();
        }
        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for s in services.iter().flatten() {
            print_service_report(s, quiet);
        }
        if residual > 0 {
            let what = if raw { "in the input" } else { "after processing" };
            say!("LEAK: {residual} personal number(s) {what}; see the leak lines above");
        }
        say!(
            "total: files={} would_drop={drop} would_mask={mask} residual={residual} errors={errors}",
            reports.len()
        );
    }
    Ok(residual == 0 && errors == 0)
}

fn print_audit_report(r: &AuditReport, quiet: bool) {
    if !quiet {
        for f in &r.findings {
            match f {
                Finding::Dropped { span_id, rule: Some(rule), path, .. } => {
                    say!("drop  {} span={} rule={rule} path={path}", r.path, hex(span_id));
                }
                Finding::Dropped { span_id, rule: None, .. } => {
                    say!(
                        "drop  {} span={} rule=(descendant of a noisy span)",
                        r.path,
                        hex(span_id)
                    );
                }
                Finding::Masked { span_id, field, key, detector, .. } => {
                    let key = if key.is_empty() { String::new() } else { format!(" key={key}") };
                    say!(
                        "mask  {} span={} field={}{key} detector={}",
                        r.path,
                        hex(span_id),
                        field.name(),
                        detector
                    );
                }
            }
        }
    }
    // Leaks are printed even when quiet: they are what an audit is for.
    print_leaks_and_failures(r);
    say!(
        "{}: batches={} would_drop={} would_mask={} residual={} errors={}",
        r.path,
        r.batches,
        r.would_drop,
        r.would_mask,
        r.residual,
        r.errors
    );
}

/// A file's leak and error lines: printed whatever else is left out.
fn print_leaks_and_failures(r: &AuditReport) {
    for l in &r.leaks {
        let span = if l.span_id.is_empty() { "-" } else { &l.span_id };
        say!("leak  {} span={span} field={}", r.path, l.field);
    }
    for f in &r.failures {
        let at = if f.location.is_empty() { String::new() } else { format!("{}: ", f.location) };
        say!("  error: {}: {at}{}", r.path, f.reason);
    }
}

/// One service's block of `audit --by service`; the rule goes last, as it
/// may hold spaces.
fn print_service_report(s: &ServiceReport, quiet: bool) {
    say!(
        "service namespace={} service.name={} dropped={} masked={}",
        s.namespace,
        s.service,
        s.spans_dropped,
        s.values_masked
    );
    if quiet {
        return;
    }
    for r in &s.dropped_by_rule {
        say!("  drop  spans={} file={} rule={}", r.spans, r.file, r.rule);
    }
    if s.dropped_descendants > 0 {
        say!("  drop  spans={} rule=(descendant of a noisy span)", s.dropped_descendants);
    }
    for m in &s.masked {
        say!("  mask  values={} field={} detector={}", m.values, m.field, m.detector);
    }
}

fn config_check(file: &Path) -> Result<bool, Fatal> {
    // Unreadable is exit 2 (the check could not run); unparsable is exit 1.
    let json = match config_file::load(file) {
        Ok(json) => json,
        Err(e) if e.unreadable => return Err(Fatal(e.to_string())),
        Err(e) => {
            say!("{e}");
            return Ok(false);
        }
    };
    // Validated by the component itself, so the check is exactly what a
    // host loading this config would see.
    let runtime = Runtime::new()?;
    let component = load(&runtime, None)?;
    match Session::new(&component, &json, InstanceOptions::default()) {
        Ok(_) => {
            // Team files are left out, not fatal, when loading; a check fails
            // on them, naming each problem as `file:key.path`.
            let cfg = tracescrub_processor::Config::from_json(&json).map_err(|_| {
                Fatal("the component accepted a config the engine refuses: a bug".into())
            })?;
            let never = tracescrub_processor::teams::unreachable_rules(&cfg);
            for p in &never {
                say!("note: {p}");
            }
            if !cfg.teams.problems.is_empty() {
                let n = cfg.teams.problems.len();
                say!("{}: {n} problem(s) in team files, which are left out", file.display());
                for p in &cfg.teams.problems {
                    say!("  - {p}");
                }
                return Ok(false);
            }
            let teams = cfg.teams.files.len();
            if teams > 0 {
                say!("ok: {} is a valid config, with {teams} team file(s)", file.display());
            } else {
                say!("ok: {} is a valid config", file.display());
            }
            Ok(true)
        }
        Err(HostError::Processor(EngineError::InvalidConfig(problems))) => {
            say!("{}: {} problem(s)", file.display(), problems.len());
            for p in problems {
                say!("  - {p}");
            }
            Ok(false)
        }
        Err(e) => Err(Fatal(tracescrub::one_line(&e))),
    }
}

fn inspect(path: Option<&Path>, save: Option<&Path>) -> Result<bool, Fatal> {
    let bytes = component_bytes(path)?;
    if let Some(target) = save {
        std::fs::write(target, &bytes)
            .map_err(|e| Fatal(format!("cannot write {}: {e}", target.display())))?;
    }
    let imports = tracescrub::component_imports(&bytes)?;
    let exports = tracescrub::component_exports(&bytes)?;
    let decoded = wit_component::decode(&bytes)
        .map_err(|e| Fatal(format!("cannot decode the component's WIT: {e:#}")))?;
    let resolve = decoded.resolve();
    let root = decoded.package();
    let nested: Vec<_> =
        resolve.packages.iter().map(|(id, _)| id).filter(|id| *id != root).collect();
    let mut printer = wit_component::WitPrinter::default();
    printer
        .print(resolve, root, &nested)
        .map_err(|e| Fatal(format!("cannot print the component's WIT: {e:#}")))?;
    say!("// exports: {}", if exports.is_empty() { "(none)".into() } else { exports.join(", ") });
    say!("// imports: {}", if imports.is_empty() { "(none)".into() } else { imports.join(", ") });
    say!("{}", printer.output);
    Ok(true)
}

/// The `bench` subcommand's arguments.
#[derive(clap::Args)]
struct BenchArgs {
    /// YAML or JSON config file [default: the embedded platform rules].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A second config to compare with: both run on the component, side by
    /// side on every batch and taking turns to go first, and the last line
    /// ends with `config_vs_baseline=R` (--config's throughput over this
    /// one's: the median over the rounds of each round's ratio).
    #[arg(long, value_name = "FILE")]
    baseline_config: Option<PathBuf>,
    /// A processor component file instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
    /// Spans per batch: of the generated corpus (512..=8192) [default:
    /// 2048], or re-batch the INPUT batches to this size.
    #[arg(long, value_name = "N")]
    batch_spans: Option<usize>,
    /// Timed rounds; the median is reported.
    #[arg(long, value_name = "N", default_value_t = tracescrub::bench::DEFAULT_ROUNDS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    rounds: usize,
    /// Seed of the generated corpus.
    #[arg(long, value_name = "N", default_value_t = tracescrub_corpus::DEFAULT_SEED)]
    seed: u64,
    /// Spans in the generated corpus, at least (rounded up to whole batches).
    #[arg(long, value_name = "N", default_value_t = tracescrub_corpus::DEFAULT_MIN_SPANS)]
    spans: usize,
    /// Write /tmp/perf-PID.map so that `perf report` names the guest's
    /// functions (a component built without stripping has names).
    #[arg(long)]
    perf_map: bool,
    /// Batches the wasm pass's instance processes before a fresh instance
    /// takes over, as in `replay` and `serve` (0: only after a trap).
    #[arg(long, value_name = "N", default_value_t = tracescrub::DEFAULT_MAX_BATCHES_PER_INSTANCE)]
    max_batches_per_instance: u64,
    /// Files or directories of captured OTLP trace batches [default: a
    /// generated corpus].
    #[arg(value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

fn bench(args: &BenchArgs) -> Result<bool, Fatal> {
    let workload = if args.inputs.is_empty() {
        let options = CorpusOptions {
            seed: args.seed,
            min_spans: args.spans,
            batch_spans: args.batch_spans.unwrap_or(tracescrub_corpus::DEFAULT_BATCH_SPANS),
        };
        let started = std::time::Instant::now();
        let corpus = tracescrub_corpus::generate(&options)?;
        Workload {
            description: format!(
                "generated corpus (seed {:#x}, {} spans per batch, made in {:.1} s; {:.1} % noise spans, {} personal numbers planted in {} values)",
                options.seed,
                options.batch_spans,
                started.elapsed().as_secs_f64(),
                corpus.noise_spans as f64 * 100.0 / corpus.spans.max(1) as f64,
                corpus.planted_numbers,
                corpus.values
            ),
            batches: corpus.batches,
        }
    } else {
        bench_inputs(&args.inputs, args.batch_spans)?
    };
    let options = BenchOptions {
        config_json: config_json(args.config.as_deref())?,
        config_origin: args
            .config
            .as_ref()
            .map_or("the embedded default".into(), |p| p.display().to_string()),
        component: component_bytes(args.component.as_deref())?,
        component_origin: args
            .component
            .as_ref()
            .map_or("the embedded one".into(), |p| p.display().to_string()),
        rounds: args.rounds,
        cold_loads: tracescrub::bench::DEFAULT_COLD_LOADS,
        perf_map: args.perf_map,
        max_batches_per_instance: args.max_batches_per_instance,
        baseline: match &args.baseline_config {
            None => None,
            Some(p) => Some((config_json(Some(p))?, p.display().to_string())),
        },
    };
    let report =
        tracescrub::bench::run(&workload, &options, &mut |what| eprintln!("bench: {what}"))?;
    say!("{report}");
    Ok(true)
}

/// The batches of the input files, re-batched to `batch_spans` if given.
/// Batches that cannot be read are left out, with a warning.
fn bench_inputs(args: &[PathBuf], batch_spans: Option<usize>) -> Result<Workload, Fatal> {
    let inputs = collect_inputs(args)?;
    let mut batches = Vec::new();
    for input in &inputs {
        let raw = read_input(input)
            .map_err(|reason| Fatal(format!("{}: {reason}", input.path.display())))?;
        let (_, read) = tracescrub::formats::read(&raw)
            .map_err(|e| Fatal(format!("{}: {e}", input.path.display())))?;
        for batch in read {
            match batch.bytes {
                Ok(bytes) => batches.push(bytes),
                Err(reason) => eprintln!(
                    "bench: warning: {}: {}: {reason}; left out",
                    input.path.display(),
                    batch.location
                ),
            }
        }
    }
    let read = batches.len();
    if let Some(n) = batch_spans {
        batches = tracescrub_corpus::rebatch(&batches, n)?;
    }
    let rebatched =
        batch_spans.map_or(String::new(), |n| format!(", re-batched to {n} spans per batch"));
    Ok(Workload {
        description: format!("{} file(s), {read} batch(es){rebatched}", inputs.len()),
        batches,
    })
}
