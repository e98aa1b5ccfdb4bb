//! A version: one compiled component with one config, checked by a canary
//! batch, and the hashes that name it.
//!
//! Building a version reads the files, compiles the component (through the
//! runtime's cache, and not at all when its hash is unchanged), creates a
//! processor with the config and runs the canary through it. Any failure
//! names the step and leaves nothing behind.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sha2::{Digest, Sha256};

use super::options::{GatewaySection, Settings, split_config};
use crate::{HostError, InstanceOptions, LoadedComponent, Runtime, ScrubberInstance};

/// Where versions come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The config file; `None` is the embedded default.
    pub config: Option<PathBuf>,
    /// The component file; `None` is the embedded component.
    pub component: Option<PathBuf>,
    /// Command-line settings, which override the file's `gateway:` section.
    pub cli: GatewaySection,
}

/// A live or candidate version.
pub struct Version {
    /// Tells versions apart within this process (1, 2, ...).
    pub id: u64,
    /// The compiled component.
    pub component: LoadedComponent,
    /// The component's config document (the file without `gateway:`).
    pub config_json: String,
    /// SHA-256 of the component file's bytes, lowercase hex.
    pub component_sha256: String,
    /// SHA-256 of the config file's bytes (of the embedded default YAML when
    /// no file is given), lowercase hex: `sha256sum FILE` gives the same.
    /// With team files, a hash of that and the document with the team files
    /// attached; never of the key.
    pub config_sha256: String,
    /// The settings this version was built with; `forward` applies to the
    /// batches it processes.
    pub settings: Settings,
    /// The processor's `limits.max_batch_bytes`, from the component's own
    /// effective config; `None` if it does not say. A batch over it is not
    /// cut into parts, each of which would pass.
    pub max_batch_bytes: Option<u64>,
    /// Team files whose new version failed (and which kept their last good
    /// one, if they had one), by name.
    pub failed_teams: Vec<String>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("id", &self.id)
            .field("component_sha256", &self.component_sha256)
            .field("config_sha256", &self.config_sha256)
            .finish_non_exhaustive()
    }
}

/// The step a version build failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Reading or parsing the config file, or its `gateway:` section.
    Config,
    /// Reading the component file.
    ReadComponent,
    /// Compiling and linking the component.
    Compile,
    /// Instantiating it and creating a processor with the config.
    Configure,
    /// Running the canary batch.
    Canary,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Config => "config",
            Step::ReadComponent => "read-component",
            Step::Compile => "compile",
            Step::Configure => "configure",
            Step::Canary => "canary",
        })
    }
}

/// Why a version could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError {
    /// The step that failed.
    pub step: Step,
    /// What went wrong, naming the file. Never contains span content.
    pub message: String,
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} step failed: {}", self.step, self.message)
    }
}

impl std::error::Error for VersionError {}

fn fail(step: Step, message: impl Into<String>) -> VersionError {
    VersionError { step, message: message.into() }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the config (file or default): its hash, the component's config
/// JSON and the resolved settings.
pub fn read_config(sources: &Sources) -> Result<(String, String, Settings), VersionError> {
    let (text, origin) = match &sources.config {
        None => {
            (crate::config_file::DEFAULT_CONFIG_YAML.to_owned(), "the default config".to_owned())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                fail(Step::Config, format!("cannot read config file {}: {e}", path.display()))
            })?;
            (text, format!("config file {}", path.display()))
        }
    };
    let hash = sha256_hex(text.as_bytes());
    let (component_json, section) =
        split_config(&text).map_err(|e| fail(Step::Config, format!("{origin}: {e}")))?;
    let config_dir = sources.config.as_deref().and_then(Path::parent);
    let (component_json, teams) = crate::config_file::attach_teams(&component_json, config_dir);
    // With team files, the hash covers them too: a team's edit is a new
    // config. It is taken before the key joins the document, so that no
    // hash the gateway shows depends on the key.
    let hash = match teams {
        Some(_) => sha256_hex(format!("{hash}\n{component_json}").as_bytes()),
        None => hash,
    };
    let component_json = crate::config_file::resolve_key(&component_json, config_dir)
        .map_err(|reason| fail(Step::Config, format!("{origin}: {reason}")))?;
    let settings =
        section.resolve(&sources.cli).map_err(|e| fail(Step::Config, format!("{origin}: {e}")))?;
    Ok((hash, component_json, settings))
}

fn read_component(path: Option<&Path>) -> Result<Vec<u8>, VersionError> {
    let Some(path) = path else { return Ok(crate::DEFAULT_COMPONENT.to_vec()) };
    let bytes = std::fs::read(path).map_err(|e| {
        fail(Step::ReadComponent, format!("cannot read component file {}: {e}", path.display()))
    })?;
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(bytes),
        Some([0, b'a', b's', b'm', 0x01, 0, 0, 0]) => Err(fail(
            Step::ReadComponent,
            format!(
                "{} is a core WebAssembly module, not a component; turn it into one (e.g. `wasm-tools component new`)",
                path.display()
            ),
        )),
        _ => Err(fail(
            Step::ReadComponent,
            format!(
                "{} is not a WebAssembly component (no `\\0asm` component header)",
                path.display()
            ),
        )),
    }
}

/// Builds version `id` from `sources`. `previous` is reused when the
/// component bytes are unchanged, so a config-only reload compiles nothing.
pub fn build(
    runtime: &Runtime,
    sources: &Sources,
    id: u64,
    previous: Option<&Version>,
    instance_options: &InstanceOptions,
) -> Result<Version, VersionError> {
    let (config_sha256, config_json, settings) = read_config(sources)?;
    // A team file that fails keeps its last good version; the others move on.
    let (config_json, failed_teams) =
        crate::config_file::keep_last_good(&config_json, previous.map(|p| p.config_json.as_str()));
    let bytes = read_component(sources.component.as_deref())?;
    let component_sha256 = sha256_hex(&bytes);
    let origin = sources
        .component
        .as_ref()
        .map_or("the embedded component".to_owned(), |p| p.display().to_string());
    let component = match previous {
        Some(p) if p.component_sha256 == component_sha256 => p.component.clone(),
        _ => runtime
            .load(&bytes)
            .map_err(|e| fail(Step::Compile, format!("{origin}: {}", crate::one_line(&e))))?,
    };
    let mut canary = ScrubberInstance::create_with(&component, &config_json, instance_options)
        .map_err(|e| match e {
            HostError::Processor(tracescrub_processor::Error::InvalidConfig(problems)) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                fail(Step::Configure, format!("the config is invalid: {}", listed.join("; ")))
            }
            e => fail(Step::Configure, format!("{origin}: {}", crate::one_line(&e))),
        })?;
    run_canary(&mut canary).map_err(|why| fail(Step::Canary, format!("{origin}: {why}")))?;
    let max_batch_bytes = canary
        .effective_config()
        .ok()
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|config| config["limits"]["max_batch_bytes"].as_u64());
    Ok(Version {
        id,
        component,
        config_json,
        component_sha256,
        config_sha256,
        settings,
        max_batch_bytes,
        failed_teams,
    })
}

/// The canary: a small batch like real traffic (a health check and a span
/// carrying a fictional, valid personal number). The new version must
/// process it without error and return a batch that decodes, with no more
/// spans than went in. What it drops or masks is the config's business.
pub fn canary_batch() -> Vec<u8> {
    let text =
        |s: &str| Some(AnyValue { value: Some(any_value::Value::StringValue(s.to_owned())) });
    let kv =
        |k: &str, v: &str| KeyValue { key: k.to_owned(), value: text(v), ..Default::default() };
    let span = |id: u8, name: &str, attributes: Vec<KeyValue>| Span {
        trace_id: vec![0x7c; 16],
        span_id: vec![id; 8],
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_000_000,
        attributes,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "tracescrub-canary")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(1, "GET /isAlive", vec![kv("url.path", "/isAlive")]),
                    span(
                        2,
                        "GET /api/person/:fnr",
                        vec![
                            kv("url.path", "/api/person/17053650260"),
                            kv("enduser.id", "17053650260"),
                        ],
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Spans in the canary batch.
const CANARY_SPANS: u64 = 2;

fn run_canary(instance: &mut ScrubberInstance) -> Result<(), String> {
    let (out, stats) = instance
        .process(&canary_batch())
        .map_err(|e| format!("the canary batch failed: {}", crate::one_line(&e)))?;
    if stats.spans_in != CANARY_SPANS || stats.spans_out > stats.spans_in {
        return Err(format!(
            "the canary batch came back with spans_in={} spans_out={}; expected spans_in={CANARY_SPANS} and no more out than in",
            stats.spans_in, stats.spans_out
        ));
    }
    let decoded = ExportTraceServiceRequest::decode(out.as_slice())
        .map_err(|e| format!("the canary batch came back as invalid protobuf: {e}"))?;
    let spans: usize =
        decoded.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    if spans as u64 != stats.spans_out {
        return Err(format!(
            "the canary batch came back with {spans} spans but the stats say {}",
            stats.spans_out
        ));
    }
    // Parts of large batches go through `process-part`: it must agree.
    let (part, part_stats, _) = instance
        .process_part(&canary_batch())
        .map_err(|e| format!("the canary batch failed as a part: {}", crate::one_line(&e)))?;
    if (part, part_stats) != (out, stats) {
        return Err("the canary batch came back from process-part other than from process".into());
    }
    Ok(())
}

/// A version shared by everything that runs batches on it.
pub type Shared = Arc<Version>;
