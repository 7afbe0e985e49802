//! A queue's slots on this node: how many of its jobs may run at once, a limit that can
//! change while attempts hold slots (an operator's `PUT /v1/queues/{name}/concurrency`).
//!
//! Lowering the limit below what is in use stops nothing: the slots in use are owed, and
//! each is retired as its attempt gives it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct Slots {
    free: Arc<Semaphore>,
    limit: AtomicU32,
    /// Slots in use beyond the limit: retired instead of freed as they come back.
    owed: AtomicU32,
    /// The highest limit this node takes (what its instance pool was sized for).
    ceiling: u32,
}

/// One slot, held by one attempt; given back (or retired) when dropped.
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Slots {
    pub(crate) fn new(limit: u32, ceiling: u32) -> Arc<Slots> {
        let ceiling = ceiling.max(1);
        let limit = limit.clamp(1, ceiling);
        Arc::new(Slots {
            free: Arc::new(Semaphore::new(limit as usize)),
            limit: AtomicU32::new(limit),
            owed: AtomicU32::new(0),
            ceiling,
        })
    }

    /// A free slot, if there is one.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        Some(Slot {
            permit: Some(permit),
            slots: self.clone(),
        })
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Slots attempts hold now (it may pass the limit just after the limit was lowered).
    pub(crate) fn in_use(&self) -> u32 {
        (self.limit() + self.owed.load(Ordering::Acquire))
            .saturating_sub(self.free.available_permits() as u32)
    }

    /// Changes the limit, clamped to 1..=ceiling; returns the limit now in force. Only the
    /// one task that follows the queue's settings calls it, so changes never interleave.
    pub(crate) fn set_limit(&self, wanted: u32) -> u32 {
        let new = wanted.clamp(1, self.ceiling);
        let old = self.limit.swap(new, Ordering::AcqRel);
        if new > old {
            let mut more = new - old;
            // Owed slots are cancelled first: they are in use and now within the limit.
            let cancelled = self
                .owed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owed| {
                    Some(owed.saturating_sub(more))
                })
                .expect("the update always succeeds");
            more -= cancelled.min(more);
            self.free.add_permits(more as usize);
        } else if new < old {
            let fewer = old - new;
            let retired = self.free.forget_permits(fewer as usize) as u32;
            self.owed.fetch_add(fewer - retired, Ordering::AcqRel);
        }
        new
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let owed = &self.slots.owed;
        let retire = owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owed| {
                owed.checked_sub(1)
            })
            .is_ok();
        if retire {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_limit_retires_slots_as_they_come_back() {
        let slots = Slots::new(3, 8);
        let held: Vec<Slot> = (0..3).map(|_| slots.try_take().unwrap()).collect();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.set_limit(1), 1);
        assert_eq!(slots.in_use(), 3);
        let mut held = held.into_iter();
        drop(held.next());
        drop(held.next());
        // Two came back and were retired: the one still held is the whole limit.
        assert!(slots.try_take().is_none());
        assert_eq!(slots.in_use(), 1);
        drop(held.next());
        let one = slots.try_take().expect("the limit of one is free again");
        assert!(slots.try_take().is_none());
        drop(one);
    }

    #[test]
    fn a_higher_limit_cancels_what_is_owed_first_and_stops_at_the_ceiling() {
        let slots = Slots::new(4, 6);
        let held: Vec<Slot> = (0..4).map(|_| slots.try_take().unwrap()).collect();
        slots.set_limit(2);
        assert_eq!(slots.set_limit(100), 6);
        // Four in use, none owed any more: two more can start.
        assert_eq!(slots.in_use(), 4);
        let more: Vec<Slot> = (0..2).map(|_| slots.try_take().unwrap()).collect();
        assert!(slots.try_take().is_none());
        drop(held);
        drop(more);
        assert_eq!(slots.in_use(), 0);
        assert_eq!(slots.free.available_permits(), 6);
    }
}
