//! The node-wide memory budget. Every attempt's memory growth, across all of its memories,
//! is charged to one pool for the whole node, so a thousand small attempts fit while a few
//! large ones take turns, and the node's resident memory stays bounded whatever the guests do.
//!
//! An attempt is admitted once the pool has room for its start (`ADMISSION_BYTES`, about
//! what a Rust component instantiates with); it waits for that, and its deadline starts only
//! after. Growth beyond what it holds is taken from the pool without waiting: a guest cannot
//! wait inside `memory.grow`. Growth past the job's own cap is the job's `memory_limit`;
//! growth the pool cannot cover because other attempts hold it is the node's shortage, and
//! the attempt is handed back without counting.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget's unit: one wasm page.
const UNIT: u64 = 64 << 10;
/// What an attempt holds from the start: a Rust wasip2 component's memories at
/// instantiation, with room to spare for its first allocations.
pub(crate) const ADMISSION_BYTES: u64 = 4 << 20;

/// The pool every attempt of this node draws its memory from.
#[derive(Clone)]
pub struct MemoryBudget {
    pool: Arc<Semaphore>,
    total_bytes: u64,
}

impl MemoryBudget {
    /// The smallest budget: one attempt's start.
    pub const MIN_BYTES: u64 = ADMISSION_BYTES;

    /// A budget of `bytes` (rounded down to whole pages, at least one admission).
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = (bytes / UNIT).max(ADMISSION_BYTES / UNIT);
        let units = units.min(Semaphore::MAX_PERMITS as u64);
        MemoryBudget {
            pool: Arc::new(Semaphore::new(units as usize)),
            total_bytes: units * UNIT,
        }
    }

    /// Half of this machine's physical memory (or 4 GiB where it cannot be read).
    pub fn default_bytes() -> u64 {
        physical_memory_bytes().map_or(4 << 30, |bytes| bytes / 2)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes not held by any attempt now.
    pub fn available_bytes(&self) -> u64 {
        self.pool.available_permits() as u64 * UNIT
    }

    /// Waits until the pool can hold a new attempt's start, and takes it.
    pub(crate) async fn admit(&self) -> Holding {
        let units = (ADMISSION_BYTES / UNIT) as u32;
        let permit = self
            .pool
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the pool is never closed");
        Holding {
            pool: self.pool.clone(),
            permit: Some(permit),
            held_bytes: ADMISSION_BYTES,
        }
    }
}

/// What one attempt holds of the budget; given back when the attempt's store is dropped.
pub(crate) struct Holding {
    pool: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    held_bytes: u64,
}

impl Holding {
    /// Makes sure `bytes` are held in all, taking more from the pool if needed without
    /// waiting; false when the pool has not enough free.
    pub fn cover(&mut self, bytes: u64) -> bool {
        if bytes <= self.held_bytes {
            return true;
        }
        let units = (bytes - self.held_bytes).div_ceil(UNIT);
        let Ok(units) = u32::try_from(units) else {
            return false;
        };
        match self.pool.clone().try_acquire_many_owned(units) {
            Ok(more) => {
                match &mut self.permit {
                    Some(permit) => permit.merge(more),
                    None => self.permit = Some(more),
                }
                self.held_bytes += u64::from(units) * UNIT;
                true
            }
            Err(_) => false,
        }
    }
}

/// MemTotal from /proc/meminfo.
fn physical_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_wait_for_admission_and_growth_takes_what_is_free() {
        let budget = MemoryBudget::new(3 * ADMISSION_BYTES);
        let mut first = budget.admit().await;
        let second = budget.admit().await;
        // Growing within what it holds costs nothing; beyond, it takes from the pool.
        assert!(first.cover(ADMISSION_BYTES));
        assert!(first.cover(ADMISSION_BYTES + UNIT));
        assert!(
            !first.cover(3 * ADMISSION_BYTES),
            "only one admission's worth is left"
        );
        // A third attempt no longer fits whole: it waits until one ends.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.admit().await.held_bytes }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(second);
        assert_eq!(waiting.await.unwrap(), ADMISSION_BYTES);
        drop(first);
        assert_eq!(budget.available_bytes(), budget.total_bytes());
    }
}
