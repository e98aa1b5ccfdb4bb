//! Replaying captured OTLP files through the component.
//!
//! A [`Session`] owns one component instance with one configured processor
//! and replaces the instance after a trap, so one bad batch never stops a
//! run. [`replay_file`] processes every batch of one file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracescrub_processor::{Finding, Stats};

use crate::formats::{self, Format, Location};
use crate::{
    DEFAULT_MAX_BATCHES_PER_INSTANCE, HostError, InstanceOptions, LoadedComponent, Scrubber,
};

/// One input file, and the path its output takes under `--out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Where to read it.
    pub path: PathBuf,
    /// Its path relative to the argument it was found under (for a file
    /// argument, its file name).
    pub relative: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// An input argument that could not be read.
#[derive(Debug)]
pub struct InputError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "input {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for InputError {}

/// Expands files and directories (recursively, in name order) into inputs.
///
/// Output paths are relative to the one directory argument; with several
/// arguments each keeps its own name in front (`a/0001.binpb`,
/// `b/0001.binpb`), so two inputs never share an output path. If they
/// still would (two arguments with the same name), that is an error.
pub fn collect_inputs(args: &[PathBuf]) -> Result<Vec<Input>, InputError> {
    let mut inputs = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg)
            .map_err(|e| InputError { path: arg.clone(), reason: e.to_string() })?;
        let name = arg.file_name().map(PathBuf::from).unwrap_or_else(|| arg.clone());
        if meta.is_dir() {
            let first = inputs.len();
            walk(arg, arg, &mut inputs)?;
            if args.len() > 1 {
                for input in &mut inputs[first..] {
                    input.relative = name.join(&input.relative);
                }
            }
        } else {
            inputs.push(Input { path: arg.clone(), relative: name, size: meta.len() });
        }
    }
    let mut seen = std::collections::HashMap::new();
    for input in &inputs {
        if let Some(other) = seen.insert(&input.relative, &input.path) {
            return Err(InputError {
                path: input.path.clone(),
                reason: format!(
                    "{} maps to the same output path {} as {}; rename one or replay them separately",
                    input.path.display(),
                    input.relative.display(),
                    other.display()
                ),
            });
        }
    }
    Ok(inputs)
}

/// Symbolic links inside a directory are not followed: a link loop cannot
/// recurse, and a file reached twice is not counted twice. Name a link on
/// the command line to replay what it points to.
fn walk(root: &Path, dir: &Path, inputs: &mut Vec<Input>) -> Result<(), InputError> {
    let err = |path: &Path, e: std::io::Error| InputError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
        if meta.is_symlink() {
            eprintln!(
                "tracescrub: skipping symbolic link {} (name it as an INPUT to follow it)",
                path.display()
            );
        } else if meta.is_dir() {
            walk(root, &path, inputs)?;
        } else if meta.is_file() {
            let relative =
                path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| path.clone());
            inputs.push(Input { path, relative, size: meta.len() });
        }
    }
    Ok(())
}

/// The component with one processor, as `replay` and `audit` run it: a
/// [`Scrubber`] with the default renewal ([`DEFAULT_MAX_BATCHES_PER_INSTANCE`]
/// batches, and after any trap), counting the traps.
pub struct Session {
    scrubber: Scrubber,
    /// Traps seen, each of which cost an instance.
    pub traps: u64,
    /// The built-in detectors the config turned on (`mask.detectors`), for
    /// the audit's residual scan.
    pub detectors: Vec<String>,
}

/// The names in a config's `mask.detectors` (strings, or mappings with a
/// `name`); the component has validated them.
fn detector_names(config_json: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(config_json).unwrap_or_default();
    let items = doc.pointer("/mask/detectors").and_then(|d| d.as_array());
    items
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().or_else(|| d.get("name")?.as_str()).map(str::to_owned))
        .collect()
}

impl Session {
    /// Instantiates `component` and configures it. A bad config is
    /// `HostError::Processor(Error::InvalidConfig(..))` listing every problem.
    pub fn new(
        component: &LoadedComponent,
        config_json: &str,
        options: InstanceOptions,
    ) -> Result<Session, HostError> {
        let scrubber =
            Scrubber::new(component, config_json, &options, DEFAULT_MAX_BATCHES_PER_INSTANCE)?;
        Ok(Session { scrubber, traps: 0, detectors: detector_names(config_json) })
    }

    /// Processes one batch.
    pub fn process(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats), HostError> {
        let result = self.scrubber.process(batch);
        self.count(&result);
        result
    }

    /// Processes one batch and lists what was done.
    pub fn explain(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats, Vec<Finding>), HostError> {
        let result = self.scrubber.explain(batch);
        self.count(&result);
        result
    }

    fn count<T>(&mut self, result: &Result<T, HostError>) {
        if matches!(result, Err(HostError::Trap(_))) {
            self.traps += 1;
        }
    }
}

/// Figures for a file or a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Batches read (including failed ones).
    pub batches: u64,
    /// Spans in the batches that were processed.
    pub spans_in: u64,
    /// Spans out of them.
    pub spans_out: u64,
    /// Spans dropped.
    pub dropped: u64,
    /// Values masked.
    pub masked: u64,
    /// Batches (or whole files) that failed.
    pub errors: u64,
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counts) {
        self.batches += other.batches;
        self.spans_in += other.spans_in;
        self.spans_out += other.spans_out;
        self.dropped += other.dropped;
        self.masked += other.masked;
        self.errors += other.errors;
    }

    fn add_stats(&mut self, s: &Stats) {
        self.spans_in += s.spans_in;
        self.spans_out += s.spans_out;
        self.dropped += s.spans_dropped;
        self.masked += s.values_masked;
    }
}

/// A batch that failed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchError {
    /// `line 3`, `record 2 at byte 120`, or empty for a whole file.
    pub location: String,
    /// What was wrong.
    pub reason: String,
}

/// What replaying one file did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The file.
    pub path: String,
    /// Its detected format, if it could be read at all.
    pub format: Option<String>,
    /// The figures.
    #[serde(flatten)]
    pub counts: Counts,
    /// Each failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<BatchError>,
}

/// Replays one file: its report, and its processed content in the same
/// format (without the batches that failed), or `None` if it could not be
/// read at all.
pub fn replay_file(
    session: &mut Session,
    path: &Path,
    raw: &[u8],
) -> (FileReport, Option<Vec<u8>>) {
    let mut report = FileReport {
        path: path.display().to_string(),
        format: None,
        counts: Counts::default(),
        failures: Vec::new(),
    };
    let (format, batches) = match formats::read(raw) {
        Ok(read) => read,
        Err(e) => {
            report.counts.errors += 1;
            report.failures.push(BatchError { location: String::new(), reason: e.0 });
            return (report, None);
        }
    };
    report.format = Some(format.to_string());
    let mut outputs = Vec::new();
    for batch in batches {
        report.counts.batches += 1;
        let result =
            batch.bytes.and_then(|bytes| session.process(&bytes).map_err(|e| crate::one_line(&e)));
        match result {
            Ok((out, stats)) => {
                report.counts.add_stats(&stats);
                outputs.push(out);
            }
            Err(reason) => {
                report.counts.errors += 1;
                report.failures.push(BatchError { location: location(batch.location), reason });
            }
        }
    }
    if outputs.is_empty() && report.counts.errors > 0 {
        // An empty file would read back as a valid, empty request: the
        // failed batches would look processed.
        return (report, None);
    }
    let written = write_back(format, &outputs, &mut report);
    (report, written)
}

fn write_back(format: Format, outputs: &[Vec<u8>], report: &mut FileReport) -> Option<Vec<u8>> {
    match formats::write(format, outputs) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            report.counts.errors += 1;
            report.failures.push(BatchError { location: String::new(), reason: e.0 });
            None
        }
    }
}

/// A location as text; empty for a whole file.
pub fn location(l: Location) -> String {
    l.to_string()
}
