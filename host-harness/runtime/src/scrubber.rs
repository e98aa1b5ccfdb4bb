//! [`Scrubber`]: a processor that renews its component instance, so that no
//! batch's data stays in a guest while another batch runs.

use tracescrub_processor::{Finding, PartLinks, Stats};

use crate::{HostError, InstanceOptions, LoadedComponent, ScrubberInstance};

/// Batches an instance processes before it is dropped, when nothing else is
/// said: 32. Chosen from `tracescrub bench` (README, "A fresh guest"): a
/// fresh instance and processor for every batch cost about 28 % of the wasm
/// pass's throughput on the default corpus (2048-span batches), one every 32
/// batches is within the run-to-run noise (under 5 %). Set 1 where no two
/// batches may ever share a guest.
pub const DEFAULT_MAX_BATCHES_PER_INSTANCE: u64 = 32;

/// One config's processor on an instance of the component that is renewed:
///
/// - after a trap (the instance is poisoned and dropped at once);
/// - after `max_batches_per_instance` batches (0: only after a trap). The
///   instance is dropped as soon as its last batch returns, so its memory
///   (reset by the pooling allocator) holds no batch while the scrubber
///   waits for the next one.
///
/// The next call builds the next instance; [`Scrubber::prepare`] builds it
/// ahead, off a latency path.
#[derive(Debug)]
pub struct Scrubber {
    component: LoadedComponent,
    config_json: String,
    options: InstanceOptions,
    max_batches_per_instance: u64,
    current: Option<ScrubberInstance>,
    /// Batches the current instance has processed.
    used: u64,
    /// Instances built so far, the first included.
    instances: u64,
    /// Largest guest memory any of them reached, in bytes.
    memory_peak: usize,
}

impl Scrubber {
    /// Builds the first instance and processor: a config the component
    /// rejects is an error here, not at the first batch.
    pub fn new(
        component: &LoadedComponent,
        config_json: &str,
        options: &InstanceOptions,
        max_batches_per_instance: u64,
    ) -> Result<Scrubber, HostError> {
        let mut scrubber = Scrubber {
            component: component.clone(),
            config_json: config_json.to_owned(),
            options: options.clone(),
            max_batches_per_instance,
            current: None,
            used: 0,
            instances: 0,
            memory_peak: 0,
        };
        scrubber.prepare()?;
        Ok(scrubber)
    }

    /// Builds the next instance now if there is none.
    pub fn prepare(&mut self) -> Result<(), HostError> {
        if self.current.is_none() {
            self.current = Some(ScrubberInstance::create_with(
                &self.component,
                &self.config_json,
                &self.options,
            )?);
            self.used = 0;
            self.instances += 1;
        }
        Ok(())
    }

    /// The deadline of each later call, in epoch ticks from its start, on
    /// this instance and every later one.
    pub fn set_epoch_deadline_ticks(&mut self, ticks: u64) {
        self.options.epoch_deadline_ticks = ticks;
        if let Some(instance) = &mut self.current {
            instance.set_epoch_deadline_ticks(ticks);
        }
    }

    /// Processes one batch; see [`ScrubberInstance::process`].
    pub fn process(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats), HostError> {
        self.call(|instance| instance.process(batch))
    }

    /// Processes one part of a larger batch; see
    /// [`ScrubberInstance::process_part`].
    pub fn process_part(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats, PartLinks), HostError> {
        self.call(|instance| instance.process_part(batch))
    }

    /// Processes one batch and lists each drop and mask; see
    /// [`ScrubberInstance::explain`].
    pub fn explain(&mut self, batch: &[u8]) -> Result<(Vec<u8>, Stats, Vec<Finding>), HostError> {
        self.call(|instance| instance.explain(batch))
    }

    /// Instances built so far, the first included.
    pub fn instances(&self) -> u64 {
        self.instances
    }

    /// The largest guest memory any instance of this scrubber reached, in bytes.
    pub fn memory_peak(&self) -> usize {
        self.current.as_ref().map_or(self.memory_peak, |i| self.memory_peak.max(i.memory_peak()))
    }

    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut ScrubberInstance) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        self.prepare()?;
        let Some(instance) = self.current.as_mut() else {
            unreachable!("prepare built an instance")
        };
        let result = f(instance);
        self.used += 1;
        let spent =
            self.max_batches_per_instance != 0 && self.used >= self.max_batches_per_instance;
        if spent || instance.is_poisoned() {
            self.memory_peak = self.memory_peak.max(instance.memory_peak());
            self.current = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    /// Compiled once for all tests here.
    fn component() -> LoadedComponent {
        static COMPONENT: std::sync::OnceLock<LoadedComponent> = std::sync::OnceLock::new();
        COMPONENT
            .get_or_init(|| Runtime::uncached().expect("engine").load_default().expect("component"))
            .clone()
    }

    /// Scenario: three batches through scrubbers that renew after 1, after 2
    /// and never.
    /// Guarantees: instances built are 3, 2 and 1; the outputs are the same
    /// whatever the renewal.
    #[test]
    fn instances_are_renewed_after_the_configured_batches() {
        let component = component();
        let mut outputs = Vec::new();
        for (max, expected) in [(1, 3), (2, 2), (0, 1)] {
            let mut scrubber = Scrubber::new(&component, "{}", &InstanceOptions::default(), max)
                .expect("scrubber");
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(scrubber.process(&[]).expect("empty batch"));
            }
            assert_eq!(scrubber.instances(), expected, "max_batches_per_instance {max}");
            outputs.push(out);
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    }

    /// Scenario: `POOL_SLOTS` instances live at once (`serve` holds at most
    /// two per worker and the canary's, under it).
    /// Guarantees: the pooling allocator's slots (component instances, core
    /// instances, tables, memories) hold them all; the component's three
    /// core modules and two tables each once made the pool run out at 42.
    #[test]
    fn the_pool_holds_pool_slots_instances() {
        let component = component();
        let live: Vec<ScrubberInstance> = (0..crate::POOL_SLOTS as usize)
            .map(|i| {
                ScrubberInstance::create(&component, "{}")
                    .unwrap_or_else(|e| panic!("instance {i}: {}", crate::one_line(&e)))
            })
            .collect();
        assert_eq!(live.len(), crate::POOL_SLOTS as usize);
    }

    /// Scenario: a scrubber that renews after every batch processes one.
    /// Guarantees: no instance is kept while it waits for the next batch, so
    /// no batch's data stays in a guest between batches.
    #[test]
    fn a_fresh_guest_per_batch_keeps_no_instance_between_batches() {
        let mut scrubber =
            Scrubber::new(&component(), "{}", &InstanceOptions::default(), 1).expect("scrubber");
        scrubber.process(&[]).expect("batch");
        assert!(scrubber.current.is_none(), "the instance outlived its batch");
        scrubber.prepare().expect("prepare");
        assert!(scrubber.current.is_some());
    }

    /// Scenario: a batch larger than the memory cap traps the instance
    /// (copying it in cannot fit), then an ordinary batch follows.
    /// Guarantees: the trap is returned, the poisoned instance is dropped,
    /// and the next batch runs on a new one, with no renewal limit set.
    #[test]
    fn a_trap_discards_the_instance_and_the_next_batch_gets_a_new_one() {
        let options = InstanceOptions::default().with_max_memory_bytes(4 << 20);
        let mut scrubber = Scrubber::new(&component(), "{}", &options, 0).expect("scrubber");
        let error = scrubber.process(&vec![0u8; 8 << 20]).expect_err("over the cap");
        assert!(matches!(error, HostError::Trap(_)), "{error}");
        assert!(scrubber.current.is_none());
        scrubber.process(&[]).expect("a fresh instance takes the next batch");
        assert_eq!(scrubber.instances(), 2);
    }
}
