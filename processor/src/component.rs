//! The WebAssembly component shell: the `tracescrub:processor/transform`
//! interface of `wit/processor.wit`, implemented by the engine.
//!
//! Nothing here but decode, call, encode: every decision is the engine's, so
//! the component and a native [`crate::Processor`] give the same answers.
//! Built only for `wasm32` (see `host-harness/runtime/build.rs`).

/// The bindings wit-bindgen generates from `wit/processor.wit`.
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "span-processor",
    });
}

use bindings::exports::tracescrub::processor::transform as wit;

/// The component: the type the generated exports dispatch to.
struct Component;

impl wit::Guest for Component {
    type Processor = ProcessorResource;
}

/// A `processor` resource: one compiled config.
struct ProcessorResource(crate::Processor);

impl wit::GuestProcessor for ProcessorResource {
    fn create(config_json: String) -> Result<wit::Processor, wit::Error> {
        let processor = crate::Processor::new(&config_json).map_err(to_wit_error)?;
        Ok(wit::Processor::new(ProcessorResource(processor)))
    }

    fn process(&self, batch: Vec<u8>) -> Result<wit::Output, wit::Error> {
        // Owned: the batch is rewritten in place, so the guest holds one
        // copy of it, not two.
        let output = self.0.process_owned(batch).map_err(to_wit_error)?;
        Ok(wit::Output { batch: output.batch, stats: to_wit_stats(output.stats) })
    }

    fn process_part(&self, batch: Vec<u8>) -> Result<wit::PartOutput, wit::Error> {
        let (output, links) = self.0.process_part(batch).map_err(to_wit_error)?;
        Ok(wit::PartOutput {
            output: wit::Output { batch: output.batch, stats: to_wit_stats(output.stats) },
            dropped_spans: links.dropped,
            kept_parents: links.parents,
        })
    }

    fn explain(&self, batch: Vec<u8>) -> Result<wit::Explained, wit::Error> {
        let (output, findings) = self.0.explain(&batch).map_err(to_wit_error)?;
        Ok(wit::Explained {
            output: wit::Output { batch: output.batch, stats: to_wit_stats(output.stats) },
            findings: findings.into_iter().map(to_wit_finding).collect(),
        })
    }

    fn explain_located(&self, batch: Vec<u8>) -> Result<wit::ExplainedLocated, wit::Error> {
        let (output, findings) = self.0.explain(&batch).map_err(to_wit_error)?;
        Ok(wit::ExplainedLocated {
            output: wit::Output { batch: output.batch, stats: to_wit_stats(output.stats) },
            findings: findings
                .into_iter()
                .map(|f| wit::LocatedFinding {
                    resource_index: f.resource(),
                    finding: to_wit_finding(f),
                })
                .collect(),
        })
    }

    fn effective_config(&self) -> String {
        self.0.config().to_json()
    }
}

fn to_wit_error(error: crate::Error) -> wit::Error {
    match error {
        crate::Error::InvalidConfig(problems) => wit::Error::InvalidConfig(
            problems
                .into_iter()
                .map(|p| wit::ConfigProblem { path: p.path, reason: p.reason })
                .collect(),
        ),
        crate::Error::Malformed(m) => {
            wit::Error::MalformedBatch(wit::Malformed { offset: m.offset, reason: m.reason })
        }
        crate::Error::TooLarge { size, limit } => {
            wit::Error::BatchTooLarge(wit::TooLarge { size, limit })
        }
        crate::Error::OutOfMemory { what } => wit::Error::OutOfMemory(what),
    }
}

fn to_wit_finding(finding: crate::Finding) -> wit::Finding {
    match finding {
        crate::Finding::Dropped { resource: _, trace_id, span_id, rule, path } => {
            wit::Finding::Dropped(wit::DroppedSpan { trace_id, span_id, rule, path })
        }
        crate::Finding::Masked { resource: _, trace_id, span_id, field, key, detector } => {
            wit::Finding::Masked(wit::MaskedValue {
                trace_id,
                span_id,
                field: field.name().to_owned(),
                key,
                detector,
            })
        }
    }
}

fn to_wit_stats(stats: crate::Stats) -> wit::Stats {
    let counts = |counts: Vec<crate::Count>| -> Vec<wit::Count> {
        counts.into_iter().map(|c| wit::Count { name: c.name, value: c.value }).collect()
    };
    wit::Stats {
        spans_in: stats.spans_in,
        spans_out: stats.spans_out,
        spans_dropped: stats.spans_dropped,
        dropped_by_rule: counts(stats.dropped_by_rule),
        dropped_descendants: stats.dropped_descendants,
        values_masked: stats.values_masked,
        masked_by_detector: counts(stats.masked_by_detector),
        masked_by_field: counts(stats.masked_by_field),
    }
}

/// The canonical-ABI entry points. The only `unsafe` in tracescrub is the
/// glue `export!` expands to (`#[unsafe(export_name)]` functions that lift
/// and lower arguments); it is generated, not written by hand.
#[expect(unsafe_code, reason = "the canonical-ABI glue generated by wit-bindgen's `export!`")]
mod export {
    use super::Component;

    super::bindings::export!(Component with_types_in super::bindings);
}
