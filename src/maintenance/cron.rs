//! The leader's cron duty: each round, every entry's due slots become jobs, each slot once.
//!
//! Once per slot even across a leader change: the entry's `last_slot` moves in the same
//! transaction that inserts the slots' jobs, and only from the value this round read (a
//! compare-and-set), so a leader whose term ran out mid-round inserts nothing; each job
//! also holds its slot's unique key. No slot is missed across a change either: a new leader
//! starts from the stored `last_slot`, and slots no older than the grace (longer than a
//! leader change takes) are inserted whatever the misfire policy.

use std::time::Duration;

use chrono::Utc;

use crate::metrics::NodeMetrics;
use crate::schedule::{self, Schedule};
use crate::store::{CronFire, Store};

/// The most slots one entry inserts per round; the rest follow in the next rounds.
const SLOTS_PER_ROUND: usize = 1000;

pub(super) async fn insert_due(store: &dyn Store, grace: Duration, metrics: &NodeMetrics) {
    let entries = match store.cron_list().await {
        Ok(entries) => entries,
        Err(error) => {
            metrics.store_error("cron_list");
            tracing::warn!(%error, "could not read the cron entries");
            return;
        }
    };
    for entry in entries {
        let schedule = match Schedule::parse(&entry.schedule, &entry.timezone) {
            Ok(schedule) => schedule,
            // Checked when stored; a newer parser could still refuse an old entry.
            Err(error) => {
                tracing::warn!(entry = %entry.name, %error, "cron entry skipped");
                continue;
            }
        };
        let now = Utc::now();
        let Some(plan) = schedule::plan(
            &schedule,
            entry.last_slot,
            entry.misfire,
            now,
            grace,
            SLOTS_PER_ROUND,
        ) else {
            continue;
        };
        if plan.missed {
            tracing::warn!(
                entry = %entry.name,
                since = %entry.last_slot,
                policy = entry.misfire.as_str(),
                "cron slots were missed while no node ran"
            );
        }
        let fire = CronFire {
            name: entry.name.clone(),
            expected_last_slot: entry.last_slot,
            last_slot: plan.last_slot,
            jobs: plan
                .slots
                .iter()
                .map(|slot| crate::ops::slot_job(&entry, *slot))
                .collect(),
        };
        match store.cron_fire(fire).await {
            Ok(Some(enqueued)) => {
                let ids: Vec<_> = enqueued.iter().map(|job| job.id).collect();
                tracing::debug!(entry = %entry.name, jobs = ?ids, last_slot = %plan.last_slot, "cron slots inserted");
            }
            Ok(None) => {
                tracing::info!(entry = %entry.name, "cron entry changed or handled elsewhere meanwhile")
            }
            Err(error) => {
                metrics.store_error("cron_fire");
                tracing::warn!(entry = %entry.name, %error, "could not insert cron slots");
            }
        }
    }
}
