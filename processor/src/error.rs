//! The engine's error type: what was wrong, and where.

use std::fmt;

/// Why a config could not be compiled or a batch could not be processed.
///
/// A failed call produces no output: privacy fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The config was rejected. Every problem found is listed.
    InvalidConfig(Vec<ConfigProblem>),
    /// The batch is not a valid OTLP `ExportTraceServiceRequest`.
    Malformed(Malformed),
    /// Processing the batch needs more memory than the processor may use
    /// (inside a component: the host's memory cap). Nothing was output.
    OutOfMemory {
        /// What the memory was for, e.g. "span records".
        what: String,
    },
    /// The batch is larger than `limits.max_batch_bytes`.
    TooLarge {
        /// The batch's size in bytes.
        size: u64,
        /// The limit in force, in bytes.
        limit: u64,
    },
}

/// One problem in a config document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path from the document root, e.g. `noise.globs[2]`; empty for the root.
    pub path: String,
    /// What is wrong, and where possible what to write instead.
    pub reason: String,
}

/// Where and why a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Byte offset into the batch of the first byte that could not be read.
    pub offset: u64,
    /// What was expected there.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "config: {}", self.reason)
        } else {
            write!(f, "config key `{}`: {}", self.path, self.reason)
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed batch at byte {}: {}", self.offset, self.reason)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(problems) => {
                write!(f, "invalid config ({} problem", problems.len())?;
                if problems.len() != 1 {
                    f.write_str("s")?;
                }
                f.write_str(")")?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
            Error::Malformed(m) => m.fmt(f),
            Error::OutOfMemory { what } => write!(
                f,
                "processing the batch needs more memory than the processor may use (for {what}); split it into smaller batches or raise the host's memory cap"
            ),
            Error::TooLarge { size, limit } => {
                write!(
                    f,
                    "batch of {size} bytes is over the limit of {limit} bytes; split it or raise limits.max_batch_bytes"
                )
            }
        }
    }
}

impl std::error::Error for Error {}
