//! tracescrub's engine: drops noise spans and masks Norwegian personal
//! identity numbers in OTLP trace batches.
//!
//! The engine works on the protobuf wire format. It reads an
//! `ExportTraceServiceRequest`, decides what to drop and what to mask, and
//! writes the batch back out copying every untouched byte range as it was,
//! so that fields it does not know survive. The same code runs natively
//! (tests, fuzzing, benchmarks) and inside the WebAssembly component.
//!
//! ```
//! use tracescrub_processor::Processor;
//!
//! // `{}` is the platform's default rules.
//! let processor = Processor::new("{}").unwrap();
//! // An empty batch is a valid batch.
//! let out = processor.process(&[]).unwrap();
//! assert!(out.batch.is_empty());
//! assert_eq!(out.stats.spans_in, 0);
//!
//! // A bad config is rejected with every problem listed.
//! let err = Processor::new(r#"{"noise": {"globs": 3}, "mask": {"mode": "some"}}"#).unwrap_err();
//! assert!(err.to_string().contains("noise.globs"));
//! assert!(err.to_string().contains("mask.mode"));
//! ```

mod bytes;
pub mod config;
pub mod detect;
mod engine;
mod error;
mod explain;
pub mod fnr;
pub mod glob;
mod otlp;
pub mod path;
mod split;
mod stats;
pub mod teams;
mod wire;

#[cfg(target_arch = "wasm32")]
mod component;

pub use config::Config;
pub use error::{ConfigProblem, Error, Malformed};
pub use explain::{Finding, redact};
pub use split::{PartLinks, parts_agree, split_ranges};
pub use stats::{Count, FieldKind, Stats};

/// A processed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The processed `ExportTraceServiceRequest`; byte-identical to the input
    /// when nothing changed.
    pub batch: Vec<u8>,
    /// What was done to it.
    pub stats: Stats,
}

/// A compiled config, ready to process batches. Cheap to share: processing
/// takes `&self`.
#[derive(Debug)]
pub struct Processor {
    config: Config,
    compiled: engine::Compiled,
}

impl Processor {
    /// Compiles a config given as a JSON document. `{}` means the defaults.
    pub fn new(config_json: &str) -> Result<Processor, Error> {
        let config =
            Config::from_json_deferring_teams(config_json).map_err(Error::InvalidConfig)?;
        Processor::from_config(config)
    }

    /// Compiles an already-parsed config.
    pub fn from_config(config: Config) -> Result<Processor, Error> {
        let compiled = engine::Compiled::new(&config).map_err(Error::InvalidConfig)?;
        Ok(Processor { config, compiled })
    }

    /// The config in force, with every default filled in.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Processes one batch of protobuf-encoded `ExportTraceServiceRequest` bytes.
    pub fn process(&self, batch: &[u8]) -> Result<Output, Error> {
        let mut out = Vec::new();
        let stats = self.process_into(batch, &mut out)?;
        Ok(Output { batch: out, stats })
    }

    /// Like [`Processor::process`], but writes into `out` (cleared first), so
    /// a caller can reuse one buffer across batches. On error `out` is empty.
    pub fn process_into(&self, batch: &[u8], out: &mut Vec<u8>) -> Result<Stats, Error> {
        self.run(batch, out, None)
    }

    /// Like [`Processor::process`], but takes the batch by value and
    /// rewrites it in place rather than into a second buffer: half the
    /// memory, one copy less. On error the batch is dropped.
    pub fn process_owned(&self, batch: Vec<u8>) -> Result<Output, Error> {
        self.check_size(&batch)?;
        let (batch, stats) = engine::process_owned(&self.compiled, batch, None)?;
        Ok(Output { batch, stats })
    }

    /// Like [`Processor::process_owned`], for a batch that is one part of
    /// a larger one (cut by [`split_ranges`]): also returns the part's
    /// parent links. The parts' outputs, concatenated, are what the whole
    /// would give, and their stats sum to its stats, when [`parts_agree`]
    /// on their links; otherwise process the whole. Each part is held to
    /// `limits.max_batch_bytes` alone: check the whole against it first.
    ///
    /// ```
    /// use tracescrub_processor::{Processor, parts_agree, split_ranges};
    /// // Two ResourceSpans, each with one span of its own trace (a 16-byte
    /// // trace id in field 1, an 8-byte span id in field 2).
    /// let resource = |trace: u8| {
    ///     let span = [&[0x0a, 16][..], &[trace; 16], &[0x12, 8], &[trace; 8]].concat();
    ///     let scope = [&[0x12, span.len() as u8][..], &span].concat();
    ///     [&[0x0a, scope.len() as u8 + 2, 0x12, scope.len() as u8][..], &scope].concat()
    /// };
    /// let batch = [resource(1), resource(2)].concat();
    /// let processor = Processor::new("{}")?;
    /// let mut joined = Vec::new();
    /// let mut links = Vec::new();
    /// for range in split_ranges(&batch, 2) {
    ///     let (output, part) = processor.process_part(batch[range].to_vec())?;
    ///     joined.extend(output.batch);
    ///     links.push(part);
    /// }
    /// assert!(parts_agree(&links));
    /// assert_eq!(joined, processor.process(&batch)?.batch);
    /// # Ok::<(), tracescrub_processor::Error>(())
    /// ```
    pub fn process_part(&self, batch: Vec<u8>) -> Result<(Output, PartLinks), Error> {
        self.check_size(&batch)?;
        let mut links = PartLinks::default();
        let (batch, stats) = engine::process_owned(&self.compiled, batch, Some(&mut links))?;
        Ok((Output { batch, stats }, links))
    }

    /// Like [`Processor::process`], and also lists what was done to which
    /// span: the drops (with the glob and path) and the masks (with the
    /// field, key and detector). For audits; slower than `process`.
    pub fn explain(&self, batch: &[u8]) -> Result<(Output, Vec<Finding>), Error> {
        let mut out = Vec::new();
        let mut findings = Vec::new();
        let stats = self.run(batch, &mut out, Some(&mut findings))?;
        Ok((Output { batch: out, stats }, findings))
    }

    fn run(
        &self,
        batch: &[u8],
        out: &mut Vec<u8>,
        findings: Option<&mut Vec<Finding>>,
    ) -> Result<Stats, Error> {
        out.clear();
        self.check_size(batch)?;
        let result = engine::process(&self.compiled, batch, out, findings);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn check_size(&self, batch: &[u8]) -> Result<(), Error> {
        let limit = self.config.limits.max_batch_bytes;
        if batch.len() as u64 > limit {
            return Err(Error::TooLarge { size: batch.len() as u64, limit });
        }
        Ok(())
    }
}
