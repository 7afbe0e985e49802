//! Per-attempt limits and the resource limiter that enforces the memory cap.

use std::time::Duration;

use super::budget::Holding;
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

/// Enforces the memory cap over all of an attempt's memories together, charges their growth
/// to the node's budget, and remembers which refused a growth, so the trap that follows is
/// classified by its cause.
pub(crate) struct MemoryLimiter {
    cap: u64,
    /// Bytes of all the attempt's memories now.
    total: u64,
    /// Largest `total` so far.
    pub peak: u64,
    /// Set when a growth was refused because of the job's cap.
    pub hit: bool,
    /// Set when a growth within the cap was refused because the node's budget was short.
    pub node_short: bool,
    holding: Holding,
}

/// Tables only hold function references; a guest never needs many.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub fn new(cap: u64, holding: Holding) -> MemoryLimiter {
        MemoryLimiter {
            cap,
            total: 0,
            peak: 0,
            hit: false,
            node_short: false,
            holding,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    // Called for each memory's initial size too (from 0), so `total` covers every memory.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.total + growth;
        if total > self.cap {
            self.hit = true;
            return Ok(false);
        }
        if !self.holding.cover(total) {
            self.node_short = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
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
