//! Runs the tracescrub span-processor WebAssembly component under wasmtime:
//! the library a program embeds to scrub batches in process. It needs only
//! wasmtime, wasmparser and sha2; the `tracescrub` application (`serve`,
//! `replay`, `audit`, `bench`, the file formats) is built on it.
//!
//! The component (`wit/processor.wit`, world `span-processor`) is built from
//! the `tracescrub-processor` crate by `build.rs` and embedded as
//! [`DEFAULT_COMPONENT`]. It imports nothing, so it runs with an empty
//! linker: it cannot reach a file, a socket, a clock or a random source.
//!
//! The pieces, from longest- to shortest-lived:
//!
//! - [`Runtime`]: one [`wasmtime::Engine`], shared by everything.
//! - [`LoadedComponent`]: a compiled component, checked to import nothing and
//!   pre-linked, ready to instantiate cheaply any number of times.
//! - [`ComponentInstance`]: one instance in a store of its own, with a memory
//!   cap and an epoch deadline; holds any number of processors
//!   ([`ProcessorHandle`]), each with its own config.
//! - [`ScrubberInstance`]: the common case, one instance with one processor.
//!
//! ```no_run
//! use tracescrub_runtime::{Runtime, ScrubberInstance};
//!
//! let runtime = Runtime::new()?;
//! let component = runtime.load_default()?;
//! let mut scrubber = ScrubberInstance::create(&component, "{}")?;
//! let (batch, stats) = scrubber.process(&[])?;
//! assert!(batch.is_empty());
//! assert_eq!(stats.spans_in, 0);
//! # Ok::<(), tracescrub_runtime::HostError>(())
//! ```
//!
//! A component error (bad config, malformed batch, batch too large) comes
//! back as [`HostError::Processor`] carrying the same
//! [`tracescrub_processor::Error`] a native [`tracescrub_processor::Processor`]
//! returns, and results use the engine's own [`Stats`] type, so native and
//! component results compare with `==`. A trap ([`HostError::Trap`]) means
//! a bug in tracescrub or a host limit hit; the instance is then poisoned and
//! refuses further calls ([`HostError::Poisoned`]): drop it and make a new one.

// Unix only: the compiled-component cache trusts an artifact by its owner
// and mode.
#[cfg(not(unix))]
compile_error!("tracescrub's host is unix-only (file ownership and modes)");

pub mod cache;
mod error;
mod introspect;
mod scrubber;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracescrub_processor::{ConfigProblem, Count, FieldKind, Finding, Malformed, PartLinks, Stats};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, OptLevel, Store, StoreLimits, StoreLimitsBuilder};

pub use cache::LoadSource;
pub use error::{HostError, one_line};
pub use introspect::{component_exports, component_imports};
pub use scrubber::{DEFAULT_MAX_BATCHES_PER_INSTANCE, Scrubber};

/// The span-processor component built from this workspace by `build.rs`
/// (or the file named by `TRACESCRUB_COMPONENT_OVERRIDE` at build time).
pub const DEFAULT_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tracescrub_processor.wasm"));

/// The name of the interface the component exports.
pub const TRANSFORM_INTERFACE: &str = "tracescrub:processor/transform@0.1.0";

/// The default memory cap of one instance: 256 MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 256 << 20;

/// The default epoch deadline, in ticks beyond the current epoch, set before
/// every call into the component. Large enough that nothing is interrupted
/// unless the embedder increments the epoch ([`Runtime::increment_epoch`]):
/// at one tick every 10 ms it is over a year.
pub const DEFAULT_EPOCH_DEADLINE_TICKS: u64 = u32::MAX as u64;

/// The wasmtime bindings generated from `wit/processor.wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "span-processor",
    });
}

use bindings::exports::tracescrub::processor::transform as wit;

/// Owns the one wasmtime engine every component and instance shares.
///
/// The engine has the component model on, epoch interruption on (so an
/// embedder can bound a call's run time by incrementing the epoch) and
/// Cranelift optimizing for speed. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    /// Compiled components on disk; `None`: every load compiles.
    cache: Option<Arc<cache::ArtifactCache>>,
}

impl Runtime {
    /// Creates the engine, with compiled components cached on disk in
    /// [`cache::default_dir`]: `$TRACESCRUB_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/tracescrub`, else `$HOME/.cache/tracescrub` (empty
    /// values, and relative XDG and HOME paths, are skipped). Entries are keyed
    /// on the component's content hash, the wasmtime version and these engine
    /// settings: loading a component compiled before skips Cranelift and takes
    /// about a millisecond. See [`cache`]. If there is no cache directory (no
    /// home directory, say), every load compiles.
    pub fn new() -> Result<Runtime, HostError> {
        Runtime::build(true, false)
    }

    /// Creates the engine without the on-disk cache: every load compiles.
    pub fn uncached() -> Result<Runtime, HostError> {
        Runtime::build(false, false)
    }

    /// Creates the engine without the on-disk cache, with wasmtime's perf
    /// map profiler (`/tmp/perf-<pid>.map`), so `perf` can name guest
    /// functions: `tracescrub bench --perf-map`.
    pub fn profiled() -> Result<Runtime, HostError> {
        Runtime::build(false, true)
    }

    /// Creates the engine with the on-disk cache in `dir`.
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Result<Runtime, HostError> {
        let mut runtime = Runtime::build(false, false)?;
        runtime.cache = Some(Arc::new(cache::ArtifactCache::new(dir, &runtime.engine)));
        Ok(runtime)
    }

    /// The one place engine settings are made. `cache` puts the on-disk
    /// cache in [`cache::default_dir`]; `perf_map` adds wasmtime's perf map
    /// profiler.
    fn build(cache: bool, perf_map: bool) -> Result<Runtime, HostError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling()));
        if perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(HostError::Engine)?;
        let cache = cache
            .then(cache::default_dir)
            .flatten()
            .map(|dir| Arc::new(cache::ArtifactCache::new(dir, &engine)));
        Ok(Runtime { engine, cache })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The on-disk cache of compiled components, if there is one.
    pub fn cache(&self) -> Option<&cache::ArtifactCache> {
        self.cache.as_deref()
    }

    /// Compiles (or loads from the cache) and pre-links a component given
    /// as bytes; [`LoadedComponent::source`] says which.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent, HostError> {
        LoadedComponent::new(self, bytes)
    }

    /// Compiles (or loads from the cache) and pre-links [`DEFAULT_COMPONENT`].
    pub fn load_default(&self) -> Result<LoadedComponent, HostError> {
        self.load(DEFAULT_COMPONENT)
    }

    /// Advances the engine's epoch by one tick. A call into any instance
    /// traps once the epoch passes the deadline set when the call began
    /// ([`InstanceOptions::epoch_deadline_ticks`] ticks later). Nothing
    /// ticks on its own: an embedder that wants a time bound calls this
    /// from a timer thread.
    pub fn increment_epoch(&self) {
        self.engine.increment_epoch();
    }
}

/// Component instances that can be live at once in one [`Runtime`]. `serve`
/// holds one per worker, plus one per worker while a new version's canary
/// runs, so it takes at most `(POOL_SLOTS - 8) / 2` workers (`serve`'s
/// `MAX_WORKERS`).
pub const POOL_SLOTS: u32 = 128;

/// Core instances and tables one component instance takes from the pool at
/// most: the component is built as three core modules (wit-component's shim
/// and fix-up around the engine) with two tables; 4 leaves room to grow.
const CORE_PER_COMPONENT: u32 = 4;

/// Linear memory kept resident per pool slot when its instance is dropped
/// (zeroed with memset, not decommitted): more than a 2048-span batch's guest
/// peak, so a fresh instance per batch touches no new page.
pub const KEEP_RESIDENT_BYTES: usize = 64 << 20;

/// The pooling allocator's settings. Instances come from slots reserved up
/// front, and a slot is reset when its instance is dropped (its memory
/// zeroed with `madvise`), so a fresh instance per batch costs a slot reset,
/// not a round of `mmap`s, and never sees an earlier batch's data. The slots
/// are address space, not memory: each reserves wasmtime's default
/// `memory_reservation` (4 GiB plus guards) and commits only what the guest
/// touches.
fn pooling() -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_SLOTS)
        .total_core_instances(POOL_SLOTS * CORE_PER_COMPONENT)
        .total_tables(POOL_SLOTS * CORE_PER_COMPONENT)
        // One memory per component instance: the engine's.
        .total_memories(POOL_SLOTS);
    // Zero a used memory with memset up to this size rather than madvise:
    // the pages stay resident, and the next instance does not take a page
    // fault on every page it touches again.
    pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
    pool
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("cache", &self.cache).finish_non_exhaustive()
    }
}

/// The data each store carries: its resource limits, and the largest linear
/// memory the guest has grown to.
struct StoreState {
    limits: StoreLimits,
    /// Bytes; the memory's initial size counts as a growth from 0.
    memory_peak: usize,
}

impl wasmtime::ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_peak = self.memory_peak.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A compiled span-processor component, linked against nothing and ready to
/// instantiate. Cheap to clone.
#[derive(Clone)]
pub struct LoadedComponent {
    engine: Engine,
    pre: bindings::SpanProcessorPre<StoreState>,
    source: LoadSource,
}

impl LoadedComponent {
    /// Compiles `bytes` (or loads them from the runtime's cache) and links
    /// the component with an empty linker: a component that imports
    /// anything, or does not export the transform interface, is rejected
    /// here.
    pub fn new(runtime: &Runtime, bytes: &[u8]) -> Result<LoadedComponent, HostError> {
        let engine = runtime.engine.clone();
        let (component, source) = match &runtime.cache {
            Some(cache) => cache.load(&engine, bytes)?,
            None => {
                (Component::new(&engine, bytes).map_err(HostError::Compile)?, LoadSource::Compiled)
            }
        };
        let linker = Linker::<StoreState>::new(&engine);
        let instance_pre = linker.instantiate_pre(&component).map_err(HostError::Link)?;
        let pre = bindings::SpanProcessorPre::new(instance_pre).map_err(HostError::Link)?;
        Ok(LoadedComponent { engine, pre, source })
    }

    /// Whether the component was compiled or mapped from the cache.
    pub fn source(&self) -> LoadSource {
        self.source
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        self.pre.instance_pre().component()
    }

    /// Instantiates the component in a store of its own.
    pub fn instantiate(&self, options: &InstanceOptions) -> Result<ComponentInstance, HostError> {
        ComponentInstance::new(self, options)
    }
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent").field("source", &self.source).finish_non_exhaustive()
    }
}

/// Limits for one component instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceOptions {
    /// The most linear memory the instance may grow to, in bytes. Growing
    /// past it traps. Default [`DEFAULT_MAX_MEMORY_BYTES`].
    pub max_memory_bytes: usize,
    /// Epoch ticks a call may run before it traps; see
    /// [`Runtime::increment_epoch`]. Default [`DEFAULT_EPOCH_DEADLINE_TICKS`].
    pub epoch_deadline_ticks: u64,
}

impl Default for InstanceOptions {
    fn default() -> InstanceOptions {
        InstanceOptions {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            epoch_deadline_ticks: DEFAULT_EPOCH_DEADLINE_TICKS,
        }
    }
}

impl InstanceOptions {
    /// These options with a different memory cap.
    #[must_use]
    pub fn with_max_memory_bytes(mut self, bytes: usize) -> InstanceOptions {
        self.max_memory_bytes = bytes;
        self
    }

    /// These options with a different epoch deadline.
    #[must_use]
    pub fn with_epoch_deadline_ticks(mut self, ticks: u64) -> InstanceOptions {
        self.epoch_deadline_ticks = ticks;
        self
    }
}

/// Tells instances apart, so a [`ProcessorHandle`] is only used with the
/// instance that made it.
static NEXT_INSTANCE_ID: AtomicU64 = AtomicU64::new(0);

/// One instance of the component, in a store of its own. Holds any number of
/// processors, each with its own config; they share nothing but the memory
/// cap.
///
/// After a trap the instance is poisoned: every later call returns
/// [`HostError::Poisoned`]. Drop it and instantiate a new one.
pub struct ComponentInstance {
    id: u64,
    store: Store<StoreState>,
    bindings: bindings::SpanProcessor,
    epoch_deadline_ticks: u64,
    poisoned: bool,
}

/// A processor inside a [`ComponentInstance`]. Not `Clone`: giving it to
/// [`ComponentInstance::drop_processor`] ends it. A handle simply dropped
/// keeps its processor alive until the instance is dropped.
#[derive(Debug)]
pub struct ProcessorHandle {
    instance: u64,
    resource: ResourceAny,
}

impl ComponentInstance {
    /// Instantiates `component` with `options`.
    pub fn new(
        component: &LoadedComponent,
        options: &InstanceOptions,
    ) -> Result<ComponentInstance, HostError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(options.max_memory_bytes)
            // A memory.grow past the cap fails rather than traps: the engine
            // allocates what grows with the batch fallibly and answers
            // `out-of-memory`, so a large batch is an error, not a dead
            // instance. (Copying in a batch larger than the cap still traps.)
            .trap_on_grow_failure(false)
            .build();
        let mut store = Store::new(&component.engine, StoreState { limits, memory_peak: 0 });
        store.limiter(|state| state);
        // Instantiation can run guest code (start functions), so the
        // deadline must be set before it too; see `call`.
        store.set_epoch_deadline(options.epoch_deadline_ticks);
        let bindings = component.pre.instantiate(&mut store).map_err(HostError::Instantiate)?;
        Ok(ComponentInstance {
            id: NEXT_INSTANCE_ID.fetch_add(1, Ordering::Relaxed),
            store,
            bindings,
            epoch_deadline_ticks: options.epoch_deadline_ticks,
            poisoned: false,
        })
    }

    /// Whether a call trapped, so the instance refuses further calls.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The largest the guest's linear memory has been, in bytes, since the
    /// instance was created.
    pub fn memory_peak(&self) -> usize {
        self.store.data().memory_peak
    }

    /// The deadline of each later call, in epoch ticks from its start, in
    /// place of [`InstanceOptions::epoch_deadline_ticks`].
    pub fn set_epoch_deadline_ticks(&mut self, ticks: u64) {
        self.epoch_deadline_ticks = ticks;
    }

    /// Creates a processor from a config JSON document (`{}` for the
    /// defaults). A rejected config is
    /// `HostError::Processor(Error::InvalidConfig(problems))`.
    pub fn create_processor(&mut self, config_json: &str) -> Result<ProcessorHandle, HostError> {
        let created =
            self.call(|store, guest| guest.processor().call_create(store, config_json))?;
        let resource = created.map_err(from_wit_error)?;
        Ok(ProcessorHandle { instance: self.id, resource })
    }

    /// Processes one batch (protobuf-encoded `ExportTraceServiceRequest`)
    /// with `processor`: the processed batch and what was done to it.
    pub fn process(
        &mut self,
        processor: &ProcessorHandle,
        batch: &[u8],
    ) -> Result<(Vec<u8>, Stats), HostError> {
        let resource = self.resource(processor)?;
        let output =
            self.call(|store, guest| guest.processor().call_process(store, resource, batch))?;
        let output = output.map_err(from_wit_error)?;
        Ok((output.batch, from_wit_stats(output.stats)))
    }

    /// Like [`ComponentInstance::process`], for one part of a larger batch
    /// (cut by [`tracescrub_processor::split_ranges`]): also the part's
    /// parent links, for [`tracescrub_processor::parts_agree`].
    pub fn process_part(
        &mut self,
        processor: &ProcessorHandle,
        batch: &[u8],
    ) -> Result<(Vec<u8>, Stats, PartLinks), HostError> {
        let resource = self.resource(processor)?;
        let part =
            self.call(|store, guest| guest.processor().call_process_part(store, resource, batch))?;
        let part = part.map_err(from_wit_error)?;
        let links = PartLinks { dropped: part.dropped_spans, parents: part.kept_parents };
        Ok((part.output.batch, from_wit_stats(part.output.stats), links))
    }

    /// Like [`ComponentInstance::process`], and also lists each drop and
    /// each mask, for audits, each with the index of the `ResourceSpans` it
    /// came from (`explain-located`).
    pub fn explain(
        &mut self,
        processor: &ProcessorHandle,
        batch: &[u8],
    ) -> Result<(Vec<u8>, Stats, Vec<Finding>), HostError> {
        let resource = self.resource(processor)?;
        let explained = self
            .call(|store, guest| guest.processor().call_explain_located(store, resource, batch))?;
        let explained = explained.map_err(from_wit_error)?;
        let findings =
            explained.findings.into_iter().map(from_wit_finding).collect::<Result<_, _>>()?;
        Ok((explained.output.batch, from_wit_stats(explained.output.stats), findings))
    }

    /// The effective config of `processor`, every default filled in, as JSON.
    pub fn effective_config(&mut self, processor: &ProcessorHandle) -> Result<String, HostError> {
        let resource = self.resource(processor)?;
        self.call(|store, guest| guest.processor().call_effective_config(store, resource))
    }

    /// Ends `processor`, freeing what it holds inside the instance.
    pub fn drop_processor(&mut self, processor: ProcessorHandle) -> Result<(), HostError> {
        let resource = self.resource(&processor)?;
        self.call(|store, _| resource.resource_drop(store))
    }

    fn resource(&self, processor: &ProcessorHandle) -> Result<ResourceAny, HostError> {
        if processor.instance == self.id {
            Ok(processor.resource)
        } else {
            Err(HostError::WrongInstance)
        }
    }

    /// Runs one call into the guest: refuses if poisoned, sets the epoch
    /// deadline, and poisons the instance if the call fails.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<StoreState>, &wit::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, HostError> {
        if self.poisoned {
            return Err(HostError::Poisoned);
        }
        // The engine has epoch interruption on, and a store's deadline starts
        // at the epoch it was created in: without a fresh deadline every
        // call would trap at its first epoch check. So each call gets
        // `epoch_deadline_ticks` from now; it traps only if the embedder
        // increments the epoch that often while it runs.
        self.store.set_epoch_deadline(self.epoch_deadline_ticks);
        let guest = self.bindings.tracescrub_processor_transform();
        match f(&mut self.store, guest) {
            Ok(value) => Ok(value),
            Err(error) => {
                // A trap can leave the guest's memory and resource table
                // half-updated: nothing it returns can be trusted any more.
                self.poisoned = true;
                Err(HostError::Trap(error))
            }
        }
    }
}

impl std::fmt::Debug for ComponentInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentInstance")
            .field("id", &self.id)
            .field("epoch_deadline_ticks", &self.epoch_deadline_ticks)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// One component instance holding one processor: the usual way to run the
/// component.
#[derive(Debug)]
pub struct ScrubberInstance {
    instance: ComponentInstance,
    processor: ProcessorHandle,
}

impl ScrubberInstance {
    /// Instantiates `component` with the default [`InstanceOptions`] and
    /// creates a processor from `config_json`.
    pub fn create(
        component: &LoadedComponent,
        config_json: &str,
    ) -> Result<ScrubberInstance, HostError> {
        ScrubberInstance::create_with(component, config_json, &InstanceOptions::default())
    }

    /// Instantiates `component` with `options` and creates a processor from
    /// `config_json`.
    pub fn create_with(
        component: &LoadedComponent,
        config_json: &str,
        options: &InstanceOptions,
    ) -> Result<ScrubberInstance, HostError> {
        let mut instance = component.instantiate(options)?;
        let processor = instance.create_processor(config_json)?;
        Ok(ScrubberInstance { instance, processor })
    }

    /// Processes one batch: the processed batch and what was done to it.
    pub fn process(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats), HostError> {
        self.instance.process(&self.processor, batch)
    }

    /// Processes one part of a larger batch: also the part's links. See
    /// [`ComponentInstance::process_part`].
    pub fn process_part(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats, PartLinks), HostError> {
        self.instance.process_part(&self.processor, batch)
    }

    /// Processes one batch and lists each drop and each mask, for audits.
    pub fn explain(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats, Vec<Finding>), HostError> {
        self.instance.explain(&self.processor, batch)
    }

    /// The effective config, every default filled in, as JSON.
    pub fn effective_config(&mut self) -> Result<String, HostError> {
        self.instance.effective_config(&self.processor)
    }

    /// Whether a call trapped, so the instance refuses further calls.
    pub fn is_poisoned(&self) -> bool {
        self.instance.is_poisoned()
    }

    /// The largest the guest's linear memory has been, in bytes.
    pub fn memory_peak(&self) -> usize {
        self.instance.memory_peak()
    }

    /// The deadline of each later call, in epoch ticks from its start.
    pub fn set_epoch_deadline_ticks(&mut self, ticks: u64) {
        self.instance.set_epoch_deadline_ticks(ticks);
    }
}

fn from_wit_error(error: wit::Error) -> HostError {
    HostError::Processor(match error {
        wit::Error::InvalidConfig(problems) => tracescrub_processor::Error::InvalidConfig(
            problems
                .into_iter()
                .map(|p| ConfigProblem { path: p.path, reason: p.reason })
                .collect(),
        ),
        wit::Error::MalformedBatch(m) => {
            tracescrub_processor::Error::Malformed(Malformed { offset: m.offset, reason: m.reason })
        }
        wit::Error::BatchTooLarge(t) => {
            tracescrub_processor::Error::TooLarge { size: t.size, limit: t.limit }
        }
        wit::Error::OutOfMemory(what) => tracescrub_processor::Error::OutOfMemory { what },
    })
}

/// A finding naming a field kind or detector this host does not know came
/// from a component newer than the host.
fn from_wit_finding(located: wit::LocatedFinding) -> Result<Finding, HostError> {
    Ok(match located.finding {
        wit::Finding::Dropped(d) => Finding::Dropped {
            // A span always sits in a resource.
            resource: located.resource_index.ok_or_else(|| {
                HostError::Contract("a dropped span's finding names no resource".into())
            })?,
            trace_id: d.trace_id,
            span_id: d.span_id,
            rule: d.rule,
            path: d.path,
        },
        wit::Finding::Masked(m) => Finding::Masked {
            resource: located.resource_index,
            trace_id: m.trace_id,
            span_id: m.span_id,
            field: FieldKind::from_name(&m.field).ok_or_else(|| {
                HostError::Contract(format!("unknown field kind {:?} in a finding", m.field))
            })?,
            key: m.key,
            // Detector names come from the config too (custom patterns).
            detector: m.detector,
        },
    })
}

fn from_wit_stats(stats: wit::Stats) -> Stats {
    let counts = |counts: Vec<wit::Count>| -> Vec<Count> {
        counts.into_iter().map(|c| Count { name: c.name, value: c.value }).collect()
    };
    Stats {
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
