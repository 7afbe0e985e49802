//! The process-wide wasmtime `Engine`: compiler settings and the instance pool.
//!
//! CPU is metered with fuel alone. Fuel gives every attempt a deterministic budget and, with
//! an async yield interval, regular points where a busy guest hands the thread back to tokio,
//! so the attempt's deadline timer can fire and other tasks run. Epoch interruption would add
//! a second check on every loop back-edge for the same two services: measured on a CPU-bound
//! guest, fuel + epochs ran at 2.78x native, fuel alone at 2.21x (BENCHMARKS.md).

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SandboxConfig;

/// A Rust wasip2 component instantiates a handful of core modules (the program plus
/// wit-component shims); this bounds them per component.
const CORE_INSTANCES_PER_COMPONENT: u32 = 10;

pub(crate) fn build(config: &SandboxConfig) -> wasmtime::Result<Engine> {
    // Between attempts a slot's memory must be reset. With PAGEMAP_SCAN (Linux 6.7+) only the
    // pages the last attempt touched within the resident prefix are reset and nothing is
    // unmapped: 9.5 µs per no-op attempt. Without it the whole resident prefix is memset, so
    // keep it small; the rest is unmapped and faulted back in: 21 µs at 64 KiB, 35 µs at
    // 1 MiB (BENCHMARKS.md).
    let keep_resident = if PoolingAllocationConfig::is_pagemap_scan_available() {
        config.keep_resident_bytes
    } else {
        config.keep_resident_bytes.min(64 << 10)
    };
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
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(keep_resident)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .max_wasm_stack(config.max_wasm_stack)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm)
}
