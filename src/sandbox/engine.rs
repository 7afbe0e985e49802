//! The process-wide wasmtime `Engine`: compiler settings, the instance pool and the epoch ticker.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SandboxConfig;

/// A Rust wasip2 component instantiates a handful of core modules (the program plus
/// wit-component shims); this bounds them per component.
const CORE_INSTANCES_PER_COMPONENT: u32 = 10;

pub(crate) fn build(config: &SandboxConfig) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let slots = config.max_instances;
    pool.total_component_instances(slots)
        .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots * 2)
        .max_memories_per_component(2)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memory_size(config.memory_ceiling as usize)
        // Keep a little of each slot's memory resident: zeroing a page we already own is
        // cheaper than faulting a fresh one in on the next attempt.
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes);

    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm)
}

/// Advances the engine's epoch every `tick` so deadlines fire and busy guests yield, until
/// the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("cannot spawn the epoch ticker thread");
}
