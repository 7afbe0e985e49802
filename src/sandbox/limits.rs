//! Per-attempt limits and the resource limiter that enforces the memory cap.

use std::time::Duration;

use crate::model::LimitOverrides;

/// The limits one attempt runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units (roughly wasm instructions) the attempt may burn: deterministic CPU budget.
    pub fuel: u64,
    /// Largest linear memory the guest may grow to.
    pub memory_bytes: u64,
    /// Wall-clock deadline, enforced by a timer that fires while the guest waits on the host
    /// or at its next fuel yield while it computes.
    pub timeout: Duration,
    /// Largest output the attempt may return.
    pub output_bytes: usize,
    /// Bytes of log lines, stdout and stderr kept; the rest is counted and dropped.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000_000,
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(60),
            output_bytes: 1 << 20,
            log_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// These limits with a job's overrides applied; memory never exceeds `memory_ceiling`,
    /// the size of a slot in the instance pool.
    pub fn with_overrides(self, overrides: &LimitOverrides, memory_ceiling: u64) -> Limits {
        Limits {
            fuel: overrides.fuel.unwrap_or(self.fuel),
            memory_bytes: overrides
                .memory_bytes
                .unwrap_or(self.memory_bytes)
                .min(memory_ceiling),
            timeout: overrides.timeout.unwrap_or(self.timeout),
            ..self
        }
    }
}

/// Enforces the memory cap and remembers what the guest asked for, so a failed allocation
/// can be classified as a memory-limit failure rather than a bare trap.
pub(crate) struct MemoryLimiter {
    cap: u64,
    /// Largest memory size granted so far.
    pub peak: u64,
    /// Set when a growth was refused because of the cap.
    pub hit: bool,
}

/// Tables only hold function references; a guest never needs many.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub fn new(cap: u64) -> MemoryLimiter {
        MemoryLimiter {
            cap,
            peak: 0,
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
