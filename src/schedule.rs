//! Cron schedules: when an entry's slots fall, and which of them a leader inserts at a given
//! moment. croner reads the expressions and chrono-tz the zones; no other module knows either.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::store::Misfire;

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Reads a standard cron expression (five fields, or six with seconds first; names of
    /// months and days, ranges, steps, `L`, `#` and `W`, and the `@daily`-style nicknames)
    /// in an IANA time zone.
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, String> {
        let zone: Tz = timezone.parse().map_err(|_| {
            format!("`{timezone}` is not a time zone; use an IANA name such as UTC or Europe/Paris")
        })?;
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        // The expression is the user's text and croner a parser of many forms: a panic in it
        // is one more way of not being a cron expression, never a failed request.
        let parsed = std::panic::catch_unwind(|| parser.parse(expression))
            .map_err(|_| "the parser gave up on it".to_string())
            .and_then(|parsed| parsed.map_err(|error| error.to_string()));
        let cron = parsed.map_err(|error| {
            format!(
                "`{expression}` is not a cron expression ({error}); use five fields \
                 (minute hour day month weekday) or six with seconds first"
            )
        })?;
        Ok(Schedule { cron, zone })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.find(after, false, true)
    }

    /// The first slot at or after `at`.
    fn next_from(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.find(at, true, true)
    }

    /// The newest slot strictly before `before`.
    fn last_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.find(before, false, false)
    }

    fn find(&self, at: DateTime<Utc>, inclusive: bool, forward: bool) -> Option<DateTime<Utc>> {
        // Slots are whole seconds; croner counts from the second it is given.
        let at = at.with_timezone(&self.zone);
        let found = if forward {
            self.cron.find_next_occurrence(&at, inclusive)
        } else {
            self.cron.find_previous_occurrence(&at, inclusive)
        };
        found.ok().map(|slot| slot.with_timezone(&Utc))
    }
}

/// What a leader does for one entry at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The slots to insert a job for, oldest first.
    pub slots: Vec<DateTime<Utc>>,
    /// The entry's new `last_slot`: the newest slot handled, inserted or skipped.
    pub last_slot: DateTime<Utc>,
    /// Whether slots older than the grace were passed over (all of them under `Skip`, all
    /// but the newest under `RunOnce`).
    pub missed: bool,
}

/// The slots after `last_slot` that are due at `now`, at most `limit` of them (the rest
/// come next time). A slot no older than `grace` is on time and gets its own job (a leader
/// change takes up to the grace, so no slot is missed for it); older slots were missed
/// while no node ran, and `misfire` decides. `None` when nothing is due.
pub fn plan(
    schedule: &Schedule,
    last_slot: DateTime<Utc>,
    misfire: Misfire,
    now: DateTime<Utc>,
    grace: Duration,
    limit: usize,
) -> Option<Plan> {
    let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
    // Whole seconds, rounded up: a slot at `on_time_from` or later is on time.
    let on_time_from = now
        .checked_sub_signed(grace)
        .and_then(|at| at.duration_round_up(TimeDelta::seconds(1)).ok())
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut slots = Vec::new();
    let mut newest = last_slot;
    let mut missed = false;
    if last_slot < on_time_from
        && let Some(latest_missed) = schedule.last_before(on_time_from)
        && latest_missed > last_slot
    {
        missed = true;
        newest = latest_missed;
        if misfire == Misfire::RunOnce {
            slots.push(latest_missed);
        }
    }
    let mut next = if newest >= on_time_from {
        schedule.next_after(newest)
    } else {
        schedule.next_from(on_time_from)
    };
    while let Some(slot) = next
        && slot <= now
        && slots.len() < limit
    {
        slots.push(slot);
        newest = slot;
        next = schedule.next_after(slot);
    }
    (newest > last_slot).then_some(Plan {
        slots,
        last_slot: newest,
        missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn every_second() -> Schedule {
        Schedule::parse("* * * * * *", "UTC").unwrap()
    }

    #[test]
    fn five_fields_read_minutes_and_six_read_seconds_first() {
        let hourly = Schedule::parse("30 * * * *", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-12-07T10:15:00Z")),
            Some(at("2026-12-07T10:30:00Z"))
        );
        let seconds = Schedule::parse("*/15 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(at("2026-12-07T10:15:00Z")),
            Some(at("2026-12-07T10:15:15Z"))
        );
    }

    #[test]
    fn a_schedule_is_read_in_its_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        let paris = Schedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            paris.next_after(at("2026-12-07T00:00:00Z")),
            Some(at("2026-12-07T08:00:00Z"))
        );
        assert_eq!(
            paris.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T07:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_in_words() {
        let error = Schedule::parse("61 * * * *", "UTC").unwrap_err();
        assert!(error.contains("is not a cron expression"), "{error}");
        let error = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(error.contains("is not a time zone"), "{error}");
        assert!(
            Schedule::parse("* * * * * * 2030", "UTC").is_err(),
            "no year field"
        );
    }

    #[test]
    fn on_time_slots_each_get_a_job() {
        let plan = plan(
            &every_second(),
            at("2026-12-07T10:00:00Z"),
            Misfire::Skip,
            at("2026-12-07T10:00:03.5Z"),
            Duration::from_secs(10),
            100,
        )
        .unwrap();
        assert_eq!(
            plan.slots,
            vec![
                at("2026-12-07T10:00:01Z"),
                at("2026-12-07T10:00:02Z"),
                at("2026-12-07T10:00:03Z")
            ]
        );
        assert_eq!(plan.last_slot, at("2026-12-07T10:00:03Z"));
        assert!(!plan.missed);
    }

    #[test]
    fn nothing_is_due_before_the_next_slot() {
        let minutely = Schedule::parse("* * * * *", "UTC").unwrap();
        let last = at("2026-12-07T10:00:00Z");
        let now = at("2026-12-07T10:00:59.9Z");
        assert_eq!(
            plan(
                &minutely,
                last,
                Misfire::Skip,
                now,
                Duration::from_secs(5),
                100
            ),
            None
        );
    }

    #[test]
    fn missed_slots_are_skipped_or_run_once() {
        // Down from 10:00:00 to 10:01:00, with a grace of 10 s: slots up to 10:00:50 were
        // missed; 10:00:50 to 10:01:00 are on time.
        let last = at("2026-12-07T10:00:00Z");
        let now = at("2026-12-07T10:01:00Z");
        let grace = Duration::from_secs(10);
        let skip = plan(&every_second(), last, Misfire::Skip, now, grace, 100).unwrap();
        assert!(skip.missed);
        assert_eq!(skip.slots.first(), Some(&at("2026-12-07T10:00:50Z")));
        assert_eq!(skip.slots.len(), 11);
        assert_eq!(skip.last_slot, now);

        let once = plan(&every_second(), last, Misfire::RunOnce, now, grace, 100).unwrap();
        assert!(once.missed);
        assert_eq!(
            once.slots[0],
            at("2026-12-07T10:00:49Z"),
            "one job for the missed"
        );
        assert_eq!(once.slots[1..], skip.slots[..]);
    }

    #[test]
    fn a_long_outage_costs_one_step_not_one_per_missed_slot() {
        let last = at("2026-01-01T00:00:00Z");
        let now = at("2026-12-07T10:00:00Z");
        let plan = plan(
            &every_second(),
            last,
            Misfire::Skip,
            now,
            Duration::from_secs(2),
            100,
        )
        .unwrap();
        assert_eq!(plan.slots.len(), 3, "09:59:58 to 10:00:00 only");
        assert_eq!(plan.last_slot, now);
    }

    #[test]
    fn a_plan_stops_at_its_limit_and_the_rest_follow() {
        let last = at("2026-12-07T10:00:00Z");
        let now = at("2026-12-07T10:00:10Z");
        let grace = Duration::from_secs(60);
        let first = plan(&every_second(), last, Misfire::Skip, now, grace, 4).unwrap();
        assert_eq!(first.slots.len(), 4);
        assert_eq!(first.last_slot, at("2026-12-07T10:00:04Z"));
        let rest = plan(
            &every_second(),
            first.last_slot,
            Misfire::Skip,
            now,
            grace,
            100,
        )
        .unwrap();
        assert_eq!(rest.slots.first(), Some(&at("2026-12-07T10:00:05Z")));
        assert_eq!(rest.last_slot, now);
    }
}
