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
/// Default limit on batches being received, processed or forwarded at
/// once; past it requests get 503 / `Unavailable` with Retry-After. With the
/// body limit it bounds the memory requests can hold (128 × 16 MiB).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;
/// Default time a client may take to send a request body once its headers
/// are in: 30 s, as for the headers. The body is read while holding an
/// in-flight place, so a stalled client must not keep it for long.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;

/// The `gateway:` section of a config file, and the same settings from the
/// command line. Every field is optional; see [`Settings`] for the
/// resolved values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewaySection {
    /// Where processed batches go: `http://host:port[/path]` (OTLP/HTTP
    /// protobuf, path default `/v1/traces`) or `grpc://host:port` (OTLP/gRPC).
    pub upstream: Option<String>,
    /// `http` or `grpc`, overriding what the upstream URL's scheme implies.
    pub upstream_protocol: Option<Protocol>,
    /// Headers sent with every forwarded batch (e.g. `X-Scope-OrgID`).
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    /// Whether forwarded batches are gzip-compressed.
    pub upstream_gzip: Option<bool>,
    /// Upstream timeout in milliseconds.
    pub upstream_timeout_ms: Option<u64>,
    /// OTLP/HTTP listen address.
    pub listen_http: Option<String>,
    /// OTLP/gRPC listen address.
    pub listen_grpc: Option<String>,
    /// Admin (metrics, health, reload) listen address.
    pub admin: Option<String>,
    /// Worker threads running the component.
    pub workers: Option<usize>,
    /// Request body limit in bytes, as received.
    pub max_body_bytes: Option<u64>,
    /// Request body limit in bytes after decompression.
    pub max_decompressed_bytes: Option<u64>,
    /// Guest memory cap per instance, in bytes.
    pub batch_memory_bytes: Option<u64>,
    /// Time one batch may run in the component, in milliseconds.
    pub batch_deadline_ms: Option<u64>,
    /// Batches received, processed or forwarded at once.
    pub max_in_flight: Option<usize>,
    /// Time a client may take to send a request body, in milliseconds.
    pub body_timeout_ms: Option<u64>,
    /// Whether idle workers may process parts of a large batch at once.
    pub split_batches: Option<bool>,
    /// Batches a worker's instance processes before a fresh one takes over
    /// (0: only after a trap).
    pub max_batches_per_instance: Option<u64>,
}

/// The upstream's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// A problem with a setting, naming the setting and the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError(pub String);

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingError {}

/// Splits a config document (JSON, from [`crate::config_file::to_json`]) into
/// the component's part and the `gateway:` section.
pub fn split_config(json: &str) -> Result<(String, GatewaySection), SettingError> {
    let mut value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| SettingError(format!("config is not a JSON document: {e}")))?;
    let gateway = match value.as_object_mut().and_then(|o| o.remove("gateway")) {
        None | Some(serde_json::Value::Null) => GatewaySection::default(),
        Some(section) => serde_json::from_value(section)
            .map_err(|e| SettingError(format!("config key `gateway`: {e}")))?,
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
        for (name, value) in self.upstream_headers.iter().chain(&cli.upstream_headers) {
            let header = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SettingError(format!(
                    "upstream header name {name:?} is not a valid HTTP header name"
                ))
            })?;
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(SettingError(format!(
                    "upstream header {name:?} has a value that is not valid in an HTTP header"
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
            split_batches: cli.split_batches.or(self.split_batches).unwrap_or(true),
            max_batches_per_instance: cli
                .max_batches_per_instance
                .or(self.max_batches_per_instance)
                .unwrap_or(crate::DEFAULT_MAX_BATCHES_PER_INSTANCE),
            forward: Forward {
                headers,
                gzip: cli.upstream_gzip.or(self.upstream_gzip).unwrap_or(false),
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
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(SettingError(format!(
                    "gateway setting `{name}` is 0; it must be at least 1"
                )));
            }
        }
        if self.workers > super::MAX_WORKERS {
            return Err(SettingError(format!(
                "gateway setting `workers` is {}; at most {} (each worker holds a guest from an \
                 instance pool of {} slots, and a reload briefly holds a second)",
                self.workers,
                super::MAX_WORKERS,
                crate::POOL_SLOTS
            )));
        }
        if usize::try_from(self.batch_memory_bytes).is_err() {
            return Err(SettingError(format!(
                "batch_memory_bytes {} does not fit this machine's address space",
                self.batch_memory_bytes
            )));
        }
        Ok(())
    }

    /// The settings fixed at start that differ between `self` and `other`,
    /// by name: a reload cannot change them.
    pub fn fixed_changes(&self, other: &Settings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let pairs: [(&'static str, bool); 14] = [
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
    let bad = |why: &str| {
        SettingError(format!(
            "upstream {url:?}: {why}; expected http://host:port[/path] or grpc://host:port"
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
    let split = text
        .find(['=', ':'])
        .ok_or_else(|| SettingError(format!("header {text:?}: expected NAME=VALUE")))?;
    let (name, value) = (text[..split].trim(), text[split + 1..].trim());
    if name.is_empty() {
        return Err(SettingError(format!(
            "header {text:?}: the name is empty; expected NAME=VALUE"
        )));
    }
    Ok((name.to_owned(), value.to_owned()))
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
        for bad in
            ["tempo:4318", "https://tempo:443", "http://tempo", "grpc://tempo:4317/x", "ftp://x:1"]
        {
            let e = parse_upstream(bad, None).unwrap_err();
            assert!(e.0.contains("upstream"), "{bad}: {e}");
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
