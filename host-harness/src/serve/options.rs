//! The gateway's settings: command-line flags, the config file's `gateway:`
//! section, and the defaults, merged in that order of precedence.
//!
//! The `gateway:` section belongs to the host. It is taken out of the
//! config document before the rest goes to the component, whose config
//! schema rejects unknown keys.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Default OTLP/HTTP listen address: the OTLP spec's port 4318.
pub const DEFAULT_LISTEN_HTTP: &str = "127.0.0.1:4318";
/// Default OTLP/gRPC listen address: the OTLP spec's port 4317.
pub const DEFAULT_LISTEN_GRPC: &str = "127.0.0.1:4317";
/// Default admin address: 8888, the collector's own telemetry port.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8888";
/// Default request body limit, as received (compressed or not): 16 MiB.
/// The collector's confighttp has no default; 16 MiB holds well over the
/// SDKs' default 512-span export batches, and bounds per-request memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
/// Default limit on a body after gzip decompression: 64 MiB, the engine's
/// default `limits.max_batch_bytes`.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;
/// Default guest memory cap per instance: [`crate::DEFAULT_MAX_MEMORY_BYTES`].
pub const DEFAULT_BATCH_MEMORY_BYTES: u64 = crate::DEFAULT_MAX_MEMORY_BYTES as u64;
/// Default time one batch may run in the component. The engine processes
/// hundreds of MB/s, so a 64 MiB batch needs well under a second; 5 s only
/// stops a component that has gone wrong.
pub const DEFAULT_BATCH_DEADLINE_MS: u64 = 5_000;
/// Default upstream timeout, connect plus request plus response: 5 s, the
/// collector's exporter default.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 5_000;
/// Default limit on batches being processed or forwarded at once, once
/// their bodies are in; past it requests get 503 / `Unavailable` with
/// Retry-After. With the body limit it bounds the memory batches in the
/// workers' hands can hold (128 × 16 MiB).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;
/// Default time a client may take to send a request body once its headers
/// are in: 30 s, as for the headers. A request takes no in-flight place
/// while its body arrives, so this only frees its receiving place.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default limit on requests whose body is still arriving, over every
/// connection of both receivers; past it, 503 / `Unavailable`. They take no
/// in-flight place (a silent client must not starve the workers), and hold
/// memory only as their bytes arrive; 1024 is far over what the SDKs and
/// collectors of one cluster send at once, and each is cut off after
/// [`DEFAULT_BODY_TIMEOUT_MS`].
pub const DEFAULT_MAX_RECEIVING: usize = 1024;
/// Default limit on requests still receiving their body on one connection
/// (HTTP/2 and gRPC streams; HTTP/1.1 has one at a time). A collector's
/// exporter sends on up to 10 streams at once; 16 leaves room, and one
/// connection cannot take more than 16 of [`DEFAULT_MAX_RECEIVING`].
pub const DEFAULT_MAX_RECEIVING_PER_CONNECTION: usize = 16;
/// Default time a connection may stay open with no request in progress:
/// 60 s, well over an SDK's 5 s export interval (so connections are reused),
/// and it frees what clients that went silent hold.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default time an HTTP/1.1 client may take to send its request headers:
/// 10 s. Headers are a few hundred bytes, sent at once; this stops clients
/// that trickle them (slow loris).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default `max_batches_per_instance`: [`crate::DEFAULT_MAX_BATCHES_PER_INSTANCE`].
pub const DEFAULT_MAX_BATCHES_PER_INSTANCE: u64 = crate::DEFAULT_MAX_BATCHES_PER_INSTANCE;
/// Default for `split_batches`: on.
pub const DEFAULT_SPLIT_BATCHES: bool = true;
/// Default for `upstream_gzip`: off; on loopback it costs more CPU than it saves.
pub const DEFAULT_UPSTREAM_GZIP: bool = false;

/// Every gateway setting with a fixed default, by its config key (also its
/// clap id), and the default as `--help` shows it. [`GatewaySection::resolve`]
/// reads the same constants; `workers` defaults to one per core.
pub fn defaults() -> Vec<(&'static str, String)> {
    vec![
        ("upstream_gzip", DEFAULT_UPSTREAM_GZIP.to_string()),
        ("upstream_timeout_ms", DEFAULT_UPSTREAM_TIMEOUT_MS.to_string()),
        ("listen_http", DEFAULT_LISTEN_HTTP.to_owned()),
        ("listen_grpc", DEFAULT_LISTEN_GRPC.to_owned()),
        ("admin", DEFAULT_ADMIN.to_owned()),
        ("workers", format!("one per core, at most {}", super::MAX_WORKERS)),
        ("max_body_bytes", DEFAULT_MAX_BODY_BYTES.to_string()),
        ("max_decompressed_bytes", DEFAULT_MAX_DECOMPRESSED_BYTES.to_string()),
        ("batch_memory_bytes", DEFAULT_BATCH_MEMORY_BYTES.to_string()),
        ("batch_deadline_ms", DEFAULT_BATCH_DEADLINE_MS.to_string()),
        ("max_in_flight", DEFAULT_MAX_IN_FLIGHT.to_string()),
        ("body_timeout_ms", DEFAULT_BODY_TIMEOUT_MS.to_string()),
        ("max_receiving", DEFAULT_MAX_RECEIVING.to_string()),
        ("max_receiving_per_connection", DEFAULT_MAX_RECEIVING_PER_CONNECTION.to_string()),
        ("idle_timeout_ms", DEFAULT_IDLE_TIMEOUT_MS.to_string()),
        ("header_read_timeout_ms", DEFAULT_HEADER_READ_TIMEOUT_MS.to_string()),
        // Shown on `--no-split-batches`: the flag's own default.
        (
            "split_batches",
            if DEFAULT_SPLIT_BATCHES { "off (batches are split)" } else { "on" }.into(),
        ),
        ("max_batches_per_instance", DEFAULT_MAX_BATCHES_PER_INSTANCE.to_string()),
    ]
}

/// Appends `[default: X]` from [`defaults`] to the help of each setting's
/// flag in `command` (the `serve` subcommand), so `--help` cannot drift
/// from the constants.
pub fn document_defaults(mut command: clap::Command) -> clap::Command {
    for (id, default) in defaults() {
        command = command.mut_arg(id, |arg| {
            let shown = |help: Option<&clap::builder::StyledStr>| {
                format!(
                    "{} [default: {default}]",
                    help.map(ToString::to_string).unwrap_or_default()
                )
            };
            let long = arg.get_long_help().map(|h| shown(Some(h)));
            let arg = arg.clone().help(shown(arg.get_help()));
            match long {
                Some(long) => arg.long_help(long),
                None => arg,
            }
        });
    }
    command
}

/// The gateway's settings, declared once: as `tracescrub serve` flags (clap)
/// and as the config file's `gateway:` section (serde, with the same names
/// in snake_case). Every field is optional; [`GatewaySection::resolve`]
/// merges flags over the file over [`defaults`] into [`Settings`].
///
/// Values are read strictly and never quoted back: a wrong type names the
/// key, what was expected and what was found (a string, a list, ...), and
/// where, never the value, which may be a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewaySection {
    /// Where processed batches go: http://HOST:PORT[/PATH] (OTLP/HTTP
    /// protobuf; path default /v1/traces) or grpc://HOST:PORT (OTLP/gRPC).
    #[arg(long, value_name = "URL")]
    #[serde(default, deserialize_with = "strict::string")]
    pub upstream: Option<String>,
    /// Force the upstream protocol, whatever the URL's scheme says.
    #[arg(long, value_name = "PROTOCOL")]
    #[serde(default, deserialize_with = "strict::protocol")]
    pub upstream_protocol: Option<Protocol>,
    /// A header for every upstream request, NAME=VALUE; repeatable (in the
    /// file, a mapping of names to values). Changes on reload.
    #[arg(long = "upstream-header", value_name = "NAME=VALUE", value_parser = parse_header_arg)]
    #[serde(default, deserialize_with = "strict::headers")]
    pub upstream_headers: Vec<(String, String)>,
    /// Gzip batches sent upstream. Changes on reload.
    #[arg(long, num_args = 0, default_missing_value = "true", overrides_with = "no_upstream_gzip")]
    #[serde(default, deserialize_with = "strict::boolean")]
    pub upstream_gzip: Option<bool>,
    /// Do not gzip batches sent upstream, whatever the config file says.
    #[arg(long, num_args = 0, default_missing_value = "false", overrides_with = "upstream_gzip")]
    #[serde(skip)]
    pub(crate) no_upstream_gzip: Option<bool>,
    /// Upstream timeout over connect, send and answer, in ms.
    #[arg(long, value_name = "MS")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub upstream_timeout_ms: Option<u64>,
    /// OTLP/HTTP listen address.
    #[arg(long, value_name = "ADDR")]
    #[serde(default, deserialize_with = "strict::string")]
    pub listen_http: Option<String>,
    /// OTLP/gRPC listen address.
    #[arg(long, value_name = "ADDR")]
    #[serde(default, deserialize_with = "strict::string")]
    pub listen_grpc: Option<String>,
    /// Admin listen address: /metrics, /healthz, /readyz, /-/reload.
    #[arg(long, value_name = "ADDR")]
    #[serde(default, deserialize_with = "strict::string")]
    pub admin: Option<String>,
    /// Worker threads running the component.
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "strict::size")]
    pub workers: Option<usize>,
    /// Largest request body (gRPC: message) as received, in bytes.
    #[arg(long, value_name = "BYTES")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub max_body_bytes: Option<u64>,
    /// Largest request body (gRPC: message) after gunzip, in bytes.
    #[arg(long, value_name = "BYTES")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub max_decompressed_bytes: Option<u64>,
    /// Guest memory cap per worker instance, in bytes.
    #[arg(long, value_name = "BYTES")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub batch_memory_bytes: Option<u64>,
    /// Time one batch may run in the component, in ms.
    #[arg(long, value_name = "MS")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub batch_deadline_ms: Option<u64>,
    /// Batches processed or forwarded at once, their bodies in; past it,
    /// 503 / Unavailable with Retry-After.
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "strict::size")]
    pub max_in_flight: Option<usize>,
    /// Time a client may take to send a request body once its headers are
    /// in, in ms; past it, 408 / DeadlineExceeded.
    #[arg(long, value_name = "MS")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub body_timeout_ms: Option<u64>,
    /// Requests whose body is still arriving, over all connections; past
    /// it, 503 / Unavailable with Retry-After. They hold no in-flight place.
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "strict::size")]
    pub max_receiving: Option<usize>,
    /// Requests whose body is still arriving on one HTTP/2 or gRPC
    /// connection; past it, 503 / Unavailable with Retry-After.
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "strict::size")]
    pub max_receiving_per_connection: Option<usize>,
    /// Time a connection may stay open with no request in progress, in ms;
    /// then it is closed.
    #[arg(long, value_name = "MS")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub idle_timeout_ms: Option<u64>,
    /// Time an HTTP/1.1 client may take to send its request headers, in
    /// ms; then the connection is closed.
    #[arg(long, value_name = "MS")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub header_read_timeout_ms: Option<u64>,
    /// Always process a batch whole on one worker (in the file:
    /// `split_batches: false`). Otherwise a batch of 128 KiB or more that
    /// arrives while other workers are idle is cut between resources and
    /// processed on several workers at once, with the same result (it runs
    /// again whole when a dropped span has a kept child across a cut): less
    /// added latency when the gateway has cores to spare.
    #[arg(long = "no-split-batches", num_args = 0, default_missing_value = "false")]
    #[serde(default, deserialize_with = "strict::boolean")]
    pub split_batches: Option<bool>,
    /// Batches a worker's instance processes before a fresh instance takes
    /// over, so that no batch's data stays in a guest while the next runs;
    /// 0: renew only after a trap.
    #[arg(long, value_name = "N")]
    #[serde(default, deserialize_with = "strict::unsigned")]
    pub max_batches_per_instance: Option<u64>,
}

/// Parses `--upstream-header NAME=VALUE` for clap, without quoting it back.
fn parse_header_arg(text: &str) -> Result<(String, String), String> {
    parse_header(text).map_err(|e| e.0)
}

/// The upstream's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC.
    Grpc,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        })
    }
}

/// Where processed batches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// The protocol.
    pub protocol: Protocol,
    /// `http://host:port/path` for OTLP/HTTP; `http://host:port` for gRPC
    /// (tonic's channel wants an `http` URI).
    pub uri: hyper::Uri,
}

impl fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.uri)
    }
}

/// The resolved settings. Those under `forward` may change with a reload;
/// the rest are fixed when the gateway starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Upstream.
    pub upstream: UpstreamTarget,
    /// Upstream timeout.
    pub upstream_timeout: Duration,
    /// OTLP/HTTP listen address.
    pub listen_http: String,
    /// OTLP/gRPC listen address.
    pub listen_grpc: String,
    /// Admin listen address.
    pub admin: String,
    /// Worker threads.
    pub workers: usize,
    /// Body limit as received.
    pub max_body_bytes: u64,
    /// Body limit after decompression.
    pub max_decompressed_bytes: u64,
    /// Guest memory cap per instance.
    pub batch_memory_bytes: u64,
    /// Time one batch may run in the component.
    pub batch_deadline: Duration,
    /// Batches in flight at once.
    pub max_in_flight: usize,
    /// Time a client may take to send a request body.
    pub body_timeout: Duration,
    /// Requests whose body is still arriving, over all connections.
    pub max_receiving: usize,
    /// Requests whose body is still arriving, on one connection.
    pub max_receiving_per_connection: usize,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Time an HTTP/1.1 client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Whether idle workers may process parts of a large batch at once.
    pub split_batches: bool,
    /// Batches a worker's instance processes before a fresh one takes over
    /// (0: only after a trap).
    pub max_batches_per_instance: u64,
    /// What may change with a reload.
    pub forward: Forward,
}

/// How batches are forwarded; part of each version, so a reload can change
/// it and every batch is forwarded with the settings of the version that
/// processed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    /// Headers added to every upstream request, by name (lowercase).
    pub headers: BTreeMap<String, String>,
    /// Whether batches are gzip-compressed upstream.
    pub gzip: bool,
}

/// A problem with a setting: which setting, what was expected and what was
/// wrong, never its value (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError(pub String);

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingError {}

/// Splits a config file's text (YAML or JSON) into the component's part, as
/// a JSON document, and the `gateway:` section.
///
/// The section is read from the text itself, so an error names the line,
/// column and byte offset in the file; it never quotes a value.
pub fn split_config(text: &str) -> Result<(String, GatewaySection), SettingError> {
    let mut value = crate::config_file::to_value(text).map_err(SettingError)?;
    let Some(object) = value.as_object_mut() else {
        return Err(SettingError(format!(
            "the config document is {}; expected a mapping of keys such as `gateway:` and `noise:`",
            strict::json_kind(&value)
        )));
    };
    let gateway = match object.remove("gateway") {
        None | Some(serde_json::Value::Null) => GatewaySection::default(),
        Some(_) => {
            /// The document, with every key but `gateway` ignored.
            #[derive(Deserialize)]
            struct Document {
                #[serde(default, deserialize_with = "strict::section")]
                gateway: Option<GatewaySection>,
            }
            serde_yaml_ng::from_str::<Document>(text)
                .map_err(|e| SettingError(strict::describe(&e)))?
                .gateway
                .unwrap_or_default()
        }
    };
    Ok((value.to_string(), gateway))
}

impl GatewaySection {
    /// Resolves `cli` over `self` (the file) over the defaults. Headers are
    /// merged by name, case-insensitively, the command line winning.
    pub fn resolve(&self, cli: &GatewaySection) -> Result<Settings, SettingError> {
        let upstream_url =
            cli.upstream.as_deref().or(self.upstream.as_deref()).ok_or_else(|| {
                SettingError(
                    "no upstream: give --upstream URL or `gateway.upstream` in the config file"
                        .into(),
                )
            })?;
        let upstream =
            parse_upstream(upstream_url, cli.upstream_protocol.or(self.upstream_protocol))?;
        let mut headers = BTreeMap::new();
        let entries = self
            .upstream_headers
            .iter()
            .enumerate()
            .map(|(i, h)| ("`gateway.upstream_headers`", i, h))
            .chain(
                cli.upstream_headers.iter().enumerate().map(|(i, h)| ("--upstream-header", i, h)),
            );
        for (origin, index, (name, value)) in entries {
            // Neither the name nor the value is quoted: a misplaced
            // `Authorization: Bearer ...` may sit in either.
            let header = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SettingError(format!(
                    "{origin} entry {}: the name is not a valid HTTP header name (letters, digits \
                     and !#$%&'*+-.^_`|~ only)",
                    index + 1
                ))
            })?;
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(SettingError(format!(
                    "{origin} entry {}: the value is not valid in an HTTP header (visible ASCII \
                     and spaces only)",
                    index + 1
                )));
            }
            // gRPC metadata names must be lowercase; HTTP names are
            // case-insensitive, so lowercase serves both.
            headers.insert(header.as_str().to_owned(), value.clone());
        }
        let workers = cli.workers.or(self.workers).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, usize::from).min(super::MAX_WORKERS)
        });
        let settings = Settings {
            upstream,
            upstream_timeout: Duration::from_millis(
                cli.upstream_timeout_ms
                    .or(self.upstream_timeout_ms)
                    .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_MS),
            ),
            listen_http: cli
                .listen_http
                .clone()
                .or_else(|| self.listen_http.clone())
                .unwrap_or_else(|| DEFAULT_LISTEN_HTTP.into()),
            listen_grpc: cli
                .listen_grpc
                .clone()
                .or_else(|| self.listen_grpc.clone())
                .unwrap_or_else(|| DEFAULT_LISTEN_GRPC.into()),
            admin: cli
                .admin
                .clone()
                .or_else(|| self.admin.clone())
                .unwrap_or_else(|| DEFAULT_ADMIN.into()),
            workers,
            max_body_bytes: cli
                .max_body_bytes
                .or(self.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_decompressed_bytes: cli
                .max_decompressed_bytes
                .or(self.max_decompressed_bytes)
                .unwrap_or(DEFAULT_MAX_DECOMPRESSED_BYTES),
            batch_memory_bytes: cli
                .batch_memory_bytes
                .or(self.batch_memory_bytes)
                .unwrap_or(DEFAULT_BATCH_MEMORY_BYTES),
            batch_deadline: Duration::from_millis(
                cli.batch_deadline_ms
                    .or(self.batch_deadline_ms)
                    .unwrap_or(DEFAULT_BATCH_DEADLINE_MS),
            ),
            max_in_flight: cli
                .max_in_flight
                .or(self.max_in_flight)
                .unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            body_timeout: Duration::from_millis(
                cli.body_timeout_ms.or(self.body_timeout_ms).unwrap_or(DEFAULT_BODY_TIMEOUT_MS),
            ),
            max_receiving: cli
                .max_receiving
                .or(self.max_receiving)
                .unwrap_or(DEFAULT_MAX_RECEIVING),
            max_receiving_per_connection: cli
                .max_receiving_per_connection
                .or(self.max_receiving_per_connection)
                .unwrap_or(DEFAULT_MAX_RECEIVING_PER_CONNECTION),
            idle_timeout: Duration::from_millis(
                cli.idle_timeout_ms.or(self.idle_timeout_ms).unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
            ),
            header_read_timeout: Duration::from_millis(
                cli.header_read_timeout_ms
                    .or(self.header_read_timeout_ms)
                    .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_MS),
            ),
            split_batches: cli
                .split_batches
                .or(self.split_batches)
                .unwrap_or(DEFAULT_SPLIT_BATCHES),
            max_batches_per_instance: cli
                .max_batches_per_instance
                .or(self.max_batches_per_instance)
                .unwrap_or(DEFAULT_MAX_BATCHES_PER_INSTANCE),
            forward: Forward {
                headers,
                gzip: cli
                    .upstream_gzip
                    .or(cli.no_upstream_gzip)
                    .or(self.upstream_gzip)
                    .unwrap_or(DEFAULT_UPSTREAM_GZIP),
            },
        };
        settings.check()?;
        Ok(settings)
    }
}

impl Settings {
    fn check(&self) -> Result<(), SettingError> {
        let positive = [
            ("workers", self.workers as u64),
            ("max_body_bytes", self.max_body_bytes),
            ("max_decompressed_bytes", self.max_decompressed_bytes),
            ("batch_memory_bytes", self.batch_memory_bytes),
            ("batch_deadline_ms", self.batch_deadline.as_millis() as u64),
            ("upstream_timeout_ms", self.upstream_timeout.as_millis() as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("body_timeout_ms", self.body_timeout.as_millis() as u64),
            ("max_receiving", self.max_receiving as u64),
            ("max_receiving_per_connection", self.max_receiving_per_connection as u64),
            ("idle_timeout_ms", self.idle_timeout.as_millis() as u64),
            ("header_read_timeout_ms", self.header_read_timeout.as_millis() as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(SettingError(format!(
                    "`gateway.{name}` (--{}) is 0; it must be at least 1",
                    name.replace('_', "-")
                )));
            }
        }
        if self.workers > super::MAX_WORKERS {
            return Err(SettingError(format!(
                "`gateway.workers` (--workers) is over the most, {} (each worker holds a guest \
                  from an instance pool of {} slots, and a reload briefly holds a second)",
                super::MAX_WORKERS,
                crate::POOL_SLOTS
            )));
        }
        if usize::try_from(self.batch_memory_bytes).is_err() {
            return Err(SettingError(
                "`gateway.batch_memory_bytes` (--batch-memory-bytes) does not fit this machine's \
                  address space; give a smaller cap"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The settings fixed at start that differ between `self` and `other`,
    /// by name: a reload cannot change them.
    pub fn fixed_changes(&self, other: &Settings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let pairs: [(&'static str, bool); 18] = [
            ("upstream", self.upstream != other.upstream),
            ("upstream_timeout_ms", self.upstream_timeout != other.upstream_timeout),
            ("listen_http", self.listen_http != other.listen_http),
            ("listen_grpc", self.listen_grpc != other.listen_grpc),
            ("admin", self.admin != other.admin),
            ("workers", self.workers != other.workers),
            ("max_body_bytes", self.max_body_bytes != other.max_body_bytes),
            ("max_decompressed_bytes", self.max_decompressed_bytes != other.max_decompressed_bytes),
            ("batch_memory_bytes", self.batch_memory_bytes != other.batch_memory_bytes),
            ("batch_deadline_ms", self.batch_deadline != other.batch_deadline),
            ("max_in_flight", self.max_in_flight != other.max_in_flight),
            ("body_timeout_ms", self.body_timeout != other.body_timeout),
            ("max_receiving", self.max_receiving != other.max_receiving),
            (
                "max_receiving_per_connection",
                self.max_receiving_per_connection != other.max_receiving_per_connection,
            ),
            ("idle_timeout_ms", self.idle_timeout != other.idle_timeout),
            ("header_read_timeout_ms", self.header_read_timeout != other.header_read_timeout),
            ("split_batches", self.split_batches != other.split_batches),
            (
                "max_batches_per_instance",
                self.max_batches_per_instance != other.max_batches_per_instance,
            ),
        ];
        for (name, differs) in pairs {
            if differs {
                changed.push(name);
            }
        }
        changed
    }
}

/// Parses `http://host:port[/path]` or `grpc://host:port`.
pub fn parse_upstream(
    url: &str,
    protocol: Option<Protocol>,
) -> Result<UpstreamTarget, SettingError> {
    // The URL is not quoted: it may carry credentials.
    let bad = |why: &str| {
        SettingError(format!(
            "`gateway.upstream` (--upstream): {why}; expected http://host:port[/path] or \
             grpc://host:port"
        ))
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let scheme_protocol = match uri.scheme_str() {
        Some("http") => Protocol::Http,
        Some("grpc") => Protocol::Grpc,
        Some("https" | "grpcs") => {
            return Err(bad(
                "TLS is not supported; put the gateway and its upstream on a trusted network",
            ));
        }
        _ => return Err(bad("no http:// or grpc:// scheme")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    if authority.as_str().contains('@') {
        // It would be logged with the upstream, and hyper sends no
        // credentials from a URL anyway.
        return Err(bad(
            "credentials in the URL are not sent; give them as an upstream header (Authorization)",
        ));
    }
    if authority.port_u16().is_none() {
        return Err(bad("no port"));
    }
    let protocol = protocol.unwrap_or(scheme_protocol);
    let path = match (protocol, uri.path()) {
        (Protocol::Http, "" | "/") => "/v1/traces".to_owned(),
        (Protocol::Http, path) => {
            uri.path_and_query().map_or(path.to_owned(), |p| p.as_str().to_owned())
        }
        (Protocol::Grpc, "" | "/") => "/".to_owned(),
        (Protocol::Grpc, _) => return Err(bad("a gRPC upstream takes no path")),
    };
    let uri = hyper::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| bad("cannot be rebuilt as an http URI"))?;
    Ok(UpstreamTarget { protocol, uri })
}

/// Parses `NAME=VALUE` (also `NAME: VALUE`) for `--upstream-header`.
pub fn parse_header(text: &str) -> Result<(String, String), SettingError> {
    // The text is not quoted back: it is meant to hold a header's value.
    let split = text.find(['=', ':']).ok_or_else(|| {
        SettingError("an upstream header has no `=` or `:`; expected NAME=VALUE".to_owned())
    })?;
    let (name, value) = (text[..split].trim(), text[split + 1..].trim());
    if name.is_empty() {
        return Err(SettingError(
            "an upstream header has an empty name; expected NAME=VALUE".to_owned(),
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Strict, value-free deserializers for the `gateway:` section.
///
/// serde's own messages quote the value they did not expect (`invalid type:
/// string "Authorization: Bearer ...", expected a map`). These visitors take
/// every kind of value and refuse a wrong one with what was expected and the
/// kind found, between [`MARK`]s, so [`describe`] can build the message from
/// the key path, that text and the location, and nothing else.
mod strict {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{self, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{GatewaySection, Protocol};

    /// Brackets the messages made here inside a deserializer's error text.
    const MARK: char = '\u{1f}';

    fn mismatch<E: de::Error>(expected: &str, found: &str) -> E {
        E::custom(format_args!("{MARK}expected {expected}, found {found}{MARK}"))
    }

    /// What kind of JSON value `value` is, for a message.
    pub fn json_kind(value: &serde_json::Value) -> &'static str {
        match value {
            serde_json::Value::Null => "empty",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "a list",
            serde_json::Value::Object(_) => "a mapping",
        }
    }

    /// The message for an error from reading the section: the key path,
    /// what was expected and found, and the line, column and byte offset.
    pub fn describe(error: &serde_yaml_ng::Error) -> String {
        let text = error.to_string();
        let at = error.location().map_or(String::new(), |l| {
            format!(" (line {}, column {}, byte {})", l.line(), l.column(), l.index())
        });
        if let Some(start) = text.find(MARK) {
            let path = text[..start].strip_suffix(": ").unwrap_or("gateway");
            // Header names are the user's: the path stops at the mapping.
            let path = if path.starts_with("gateway.upstream_headers") {
                "gateway.upstream_headers"
            } else if is_key_path(path) {
                path
            } else {
                "gateway"
            };
            let message = text[start + 1..].split(MARK).next().unwrap_or_default();
            return format!("config key `{path}`: {message}{at}");
        }
        let named = |prefix: &str| {
            let rest = &text[text.find(prefix)? + prefix.len()..];
            let name = &rest[..rest.find('`')?];
            is_key_path(name).then(|| name.to_owned())
        };
        if text.contains("unknown field `") {
            let known = ["upstream", "upstream_protocol", "upstream_headers"]
                .into_iter()
                .chain(super::defaults().into_iter().map(|(key, _)| key))
                .collect::<Vec<_>>()
                .join(", ");
            return match named("unknown field `") {
                Some(name) => format!(
                    "config key `gateway.{name}` is not a gateway setting{at}; the settings are: {known}"
                ),
                None => format!(
                    "config key `gateway` has an unknown key{at}; the settings are: {known}"
                ),
            };
        }
        if let Some(name) = named("duplicate field `") {
            return format!("config key `gateway.{name}` is given twice{at}; keep one");
        }
        format!("config key `gateway` is not a valid gateway section{at}")
    }

    /// Whether `path` looks like a path of setting names (so it can be shown).
    fn is_key_path(path: &str) -> bool {
        !path.is_empty()
            && path.len() <= 64
            && path
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    }

    /// The kinds of value a setting takes.
    #[derive(Clone, Copy)]
    enum Want {
        Text,
        Protocol,
        Boolean,
        Unsigned,
        Size,
    }

    impl Want {
        fn describe(self) -> &'static str {
            match self {
                Want::Text => "a string",
                Want::Protocol => "`http` or `grpc`",
                Want::Boolean => "true or false",
                Want::Unsigned => "a whole number, 0 or more",
                Want::Size => "a whole number, 0 or more, that fits this machine's address space",
            }
        }
    }

    /// A value read for a setting.
    enum Got {
        Text(String),
        Protocol(Protocol),
        Boolean(bool),
        Unsigned(u64),
        Empty,
    }

    /// Reads one setting's value, refusing a wrong kind by its kind only.
    struct Setting(Want);

    impl<'de> Visitor<'de> for Setting {
        type Value = Got;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0.describe())
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Got, E> {
            match self.0 {
                Want::Boolean => Ok(Got::Boolean(v)),
                want => Err(mismatch(want.describe(), "a boolean")),
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Got, E> {
            match self.0 {
                Want::Unsigned => Ok(Got::Unsigned(v)),
                Want::Size if usize::try_from(v).is_ok() => Ok(Got::Unsigned(v)),
                Want::Size => Err(mismatch(Want::Size.describe(), "a larger number")),
                want => Err(mismatch(want.describe(), "a number")),
            }
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Got, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(mismatch(self.0.describe(), "a negative number")),
            }
        }

        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Got, E> {
            Err(mismatch(self.0.describe(), "a number too large"))
        }

        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Got, E> {
            Err(mismatch(self.0.describe(), "a number too large"))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Got, E> {
            Err(mismatch(self.0.describe(), "a fractional number"))
        }

        fn visit_char<E: de::Error>(self, v: char) -> Result<Got, E> {
            self.visit_str(v.encode_utf8(&mut [0; 4]))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Got, E> {
            match self.0 {
                Want::Text => Ok(Got::Text(v.to_owned())),
                Want::Protocol if v.eq_ignore_ascii_case("http") => {
                    Ok(Got::Protocol(Protocol::Http))
                }
                Want::Protocol if v.eq_ignore_ascii_case("grpc") => {
                    Ok(Got::Protocol(Protocol::Grpc))
                }
                Want::Protocol => Err(mismatch(Want::Protocol.describe(), "another string")),
                // A quoted number is still a string here: the user meant a
                // number, and saying so is enough.
                want => Err(mismatch(want.describe(), "a string")),
            }
        }

        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Got, E> {
            Err(mismatch(self.0.describe(), "bytes"))
        }

        fn visit_none<E: de::Error>(self) -> Result<Got, E> {
            Ok(Got::Empty)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Got, E> {
            Ok(Got::Empty)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Got, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Got, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Got, A::Error> {
            Err(mismatch(self.0.describe(), "a list"))
        }

        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Got, A::Error> {
            Err(mismatch(self.0.describe(), "a mapping"))
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Got, A::Error> {
            Err(mismatch(self.0.describe(), "a tagged value"))
        }
    }

    fn read<'de, D: Deserializer<'de>>(d: D, want: Want) -> Result<Got, D::Error> {
        d.deserialize_any(Setting(want))
    }

    /// A string setting.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match read(d, Want::Text)? {
            Got::Text(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// `http` or `grpc`.
    pub fn protocol<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Protocol>, D::Error> {
        match read(d, Want::Protocol)? {
            Got::Protocol(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// A boolean setting.
    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match read(d, Want::Boolean)? {
            Got::Boolean(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// A count, size or time in ms.
    pub fn unsigned<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match read(d, Want::Unsigned)? {
            Got::Unsigned(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// A count held in a `usize`.
    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        match read(d, Want::Size)? {
            Got::Unsigned(v) => Ok(usize::try_from(v).ok()),
            _ => Ok(None),
        }
    }

    /// A key or value inside `upstream_headers`: read whatever it is, so
    /// that a wrong one is refused at the mapping, whose path does not
    /// carry the user's header names.
    enum Entry {
        Text(String),
        Other(&'static str),
    }

    struct AnyEntry;

    impl<'de> de::DeserializeSeed<'de> for AnyEntry {
        type Value = Entry;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for AnyEntry {
        type Value = Entry;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entry, E> {
            Ok(Entry::Other("a boolean"))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entry, E> {
            Ok(Entry::Other("a number"))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entry, E> {
            Ok(Entry::Other("a number"))
        }

        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Entry, E> {
            Ok(Entry::Other("a number"))
        }

        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Entry, E> {
            Ok(Entry::Other("a number"))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entry, E> {
            Ok(Entry::Other("a number"))
        }

        fn visit_char<E: de::Error>(self, v: char) -> Result<Entry, E> {
            Ok(Entry::Text(v.to_string()))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
            Ok(Entry::Text(v.to_owned()))
        }

        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Entry, E> {
            Ok(Entry::Other("bytes"))
        }

        fn visit_none<E: de::Error>(self) -> Result<Entry, E> {
            Ok(Entry::Other("nothing"))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
            Ok(Entry::Other("nothing"))
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Entry::Other("a list"))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Entry::Other("a mapping"))
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Entry, A::Error> {
            Err(mismatch("a string", "a tagged value"))
        }
    }

    const HEADERS: &str = "a mapping of header names to values";

    struct Headers;

    impl<'de> Visitor<'de> for Headers {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(HEADERS)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut headers = Vec::new();
            let mut wrong = None;
            while let Some(name) = map.next_key_seed(AnyEntry)? {
                let value = map.next_value_seed(AnyEntry)?;
                let entry = headers.len() + usize::from(wrong.is_some()) + 1;
                match (name, value) {
                    (Entry::Text(name), Entry::Text(value)) => headers.push((name, value)),
                    (Entry::Other(found), _) if wrong.is_none() => {
                        wrong = Some(format!(
                            "a header name (a string) in entry {entry}, found {found}"
                        ));
                    }
                    (_, Entry::Other(found)) if wrong.is_none() => {
                        wrong = Some(format!(
                            "a string value in entry {entry}, found {found} (quote it)"
                        ));
                    }
                    _ => {}
                }
            }
            match wrong {
                Some(what) => Err(A::Error::custom(format_args!("{MARK}expected {what}{MARK}"))),
                None => Ok(headers),
            }
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(mismatch(HEADERS, "a boolean"))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(mismatch(HEADERS, "a number"))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(mismatch(HEADERS, "a number"))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(mismatch(HEADERS, "a number"))
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(mismatch(HEADERS, "a string"))
        }

        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Err(mismatch(HEADERS, "bytes"))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(mismatch(HEADERS, "a list"))
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(mismatch(HEADERS, "a tagged value"))
        }
    }

    /// `upstream_headers`: a mapping of names to string values.
    pub fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        d.deserialize_any(Headers)
    }

    const SECTION: &str = "a mapping of gateway settings";

    struct Section;

    impl<'de> Visitor<'de> for Section {
        type Value = Option<GatewaySection>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(SECTION)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(mismatch(SECTION, "a boolean"))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(mismatch(SECTION, "a number"))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(mismatch(SECTION, "a number"))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(mismatch(SECTION, "a number"))
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(mismatch(SECTION, "a string"))
        }

        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Err(mismatch(SECTION, "bytes"))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(mismatch(SECTION, "a list"))
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(mismatch(SECTION, "a tagged value"))
        }
    }

    /// The `gateway:` section itself.
    pub fn section<'de, D: Deserializer<'de>>(d: D) -> Result<Option<GatewaySection>, D::Error> {
        d.deserialize_any(Section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_parse() {
        let cases = [
            ("http://127.0.0.1:4318", None, Protocol::Http, "http://127.0.0.1:4318/v1/traces"),
            (
                "http://tempo:4318/otlp/v1/traces",
                None,
                Protocol::Http,
                "http://tempo:4318/otlp/v1/traces",
            ),
            ("grpc://tempo:4317", None, Protocol::Grpc, "http://tempo:4317/"),
            ("http://tempo:4317", Some(Protocol::Grpc), Protocol::Grpc, "http://tempo:4317/"),
        ];
        for (url, forced, protocol, uri) in cases {
            let t = parse_upstream(url, forced).unwrap();
            assert_eq!((t.protocol, t.uri.to_string().as_str()), (protocol, uri), "{url}");
        }
        for bad in [
            "tempo:4318",
            "https://tempo:443",
            "http://tempo",
            "grpc://tempo:4317/x",
            "ftp://x:1",
            "http://user:s3cr3t@tempo:4318",
        ] {
            let e = parse_upstream(bad, None).unwrap_err();
            assert!(e.0.contains("upstream") && !e.0.contains("s3cr3t"), "{bad}: {e}");
        }
    }

    #[test]
    fn gateway_section_is_split_off_and_checked() {
        let (rest, gw) =
            split_config(r#"{"mask":{"mode":"any11"},"gateway":{"upstream":"http://a:1","upstream_headers":{"X-Scope-OrgID":"t"}}}"#)
                .unwrap();
        assert_eq!(rest, r#"{"mask":{"mode":"any11"}}"#);
        assert_eq!(gw.upstream.as_deref(), Some("http://a:1"));
        let e = split_config(r#"{"gateway":{"upstreem":"x"}}"#).unwrap_err();
        assert!(e.0.contains("upstreem"), "{e}");
        assert_eq!(split_config("{}").unwrap().0, "{}");
    }

    #[test]
    fn command_line_wins_and_headers_merge() {
        let file = GatewaySection {
            upstream: Some("http://file:1".into()),
            upstream_headers: [("X-Scope-OrgID".into(), "file".into()), ("X-A".into(), "a".into())]
                .into(),
            upstream_gzip: Some(true),
            ..GatewaySection::default()
        };
        let cli = GatewaySection {
            upstream: Some("grpc://cli:2".into()),
            upstream_headers: [("x-scope-orgid".into(), "cli".into())].into(),
            ..GatewaySection::default()
        };
        let s = file.resolve(&cli).unwrap();
        assert_eq!(s.upstream.protocol, Protocol::Grpc);
        assert_eq!(s.forward.headers.get("x-scope-orgid").map(String::as_str), Some("cli"));
        assert_eq!(s.forward.headers.get("x-a").map(String::as_str), Some("a"));
        assert!(s.forward.gzip);
        let e = GatewaySection::default().resolve(&GatewaySection::default()).unwrap_err();
        assert!(e.0.contains("--upstream"), "{e}");
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("X-Scope-OrgID=team-a").unwrap(),
            ("X-Scope-OrgID".into(), "team-a".into())
        );
        assert_eq!(
            parse_header("Authorization: Bearer x=y").unwrap(),
            ("Authorization".into(), "Bearer x=y".into())
        );
        assert!(parse_header("novalue").is_err());
    }
}
