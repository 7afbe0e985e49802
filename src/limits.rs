//! Queue limits every node obeys, kept in the store: how many of a queue's jobs run at once
//! across all nodes, how many start per period (a GCRA rate limit), and partitions, whose
//! keys each get a concurrency and a rate of their own. This module is the arithmetic and the
//! choice of jobs; the stores apply it inside their claim, under a lock on the queue's row.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{Codec, NewJob};

/// A queue's limits; an absent one does not limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    /// At most this many of the queue's jobs are claimed (running, or held by a node about to
    /// run them) at once, summed over all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_concurrency: Option<u32>,
    /// At most this many of the queue's jobs start per period, over all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// Each key gets a concurrency and a rate of its own, and keys take turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partitioning>,
}

/// At most `starts` starts per `period_ms`, spread evenly, plus up to `burst` more at once
/// after a quiet spell: no window of one period ever holds more than `starts + burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub starts: u32,
    pub period_ms: u64,
    #[serde(default)]
    pub burst: u32,
}

/// How a queue's jobs are split into partitions, and each partition's own limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Partitioning {
    /// `module`, `function`, `args.FIELD` (a top-level field of JSON args) or `key` (only the
    /// key the client passed). A key the client passes always wins; a job with neither is in
    /// the partition of the empty key.
    pub by: String,
    /// At most this many of one key's jobs at once; 1 runs each key's jobs one at a time, in
    /// enqueue order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most this many of one key's jobs start per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
}

/// What a partition key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionBy {
    Module,
    Function,
    ArgsField(String),
    /// Only the key the client passed.
    Key,
}

/// A queue's concurrency on each node, set by the node between `min` and `max` from the
/// queue's backlog, its jobs' wait to start, and the node's free memory budget and CPU. Not a
/// limit shared by nodes: each node scales its own slots (up to the ceiling its pool was
/// sized for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Autoscale {
    pub min: u32,
    pub max: u32,
    /// The least time between two changes, in seconds.
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    /// How long the queue must have no backlog and half its slots idle before it shrinks,
    /// in seconds.
    #[serde(default = "default_shrink_after_secs")]
    pub shrink_after_secs: u64,
    /// Jobs waiting longer than this to start (milliseconds, on average since the last
    /// look) make it grow, as a backlog does.
    #[serde(default = "default_target_wait_ms")]
    pub target_wait_ms: u64,
}

fn default_cooldown_secs() -> u64 {
    10
}
fn default_shrink_after_secs() -> u64 {
    30
}
fn default_target_wait_ms() -> u64 {
    1000
}

impl Autoscale {
    pub fn check(&self) -> Result<(), String> {
        if self.min == 0 || self.min > self.max || self.max > MAX_LIMIT {
            return Err(format!(
                "autoscaling needs 1 <= min <= max <= {MAX_LIMIT}, not min {} and max {}",
                self.min, self.max
            ));
        }
        if self.cooldown_secs > 86_400 || self.shrink_after_secs > 86_400 {
            return Err("autoscaling's cooldown and shrink delay must be at most a day".into());
        }
        Ok(())
    }
}

/// The longest a partition key may be; a longer one (a client's, or an args field's) is cut.
pub const MAX_PARTITION_KEY_CHARS: usize = 255;

impl PartitionBy {
    pub fn parse(text: &str) -> Result<PartitionBy, String> {
        match text {
            "module" => Ok(PartitionBy::Module),
            "function" => Ok(PartitionBy::Function),
            "key" => Ok(PartitionBy::Key),
            _ => match text.strip_prefix("args.") {
                Some(field) if !field.is_empty() => Ok(PartitionBy::ArgsField(field.to_string())),
                _ => Err(format!(
                    "`{text}` is not a partition: module, function, args.FIELD or key"
                )),
            },
        }
    }

    /// The partition of `job`, when the client passed no key: a field missing from the args
    /// (or args that are not JSON) make the empty key.
    pub fn key_of(&self, job: &NewJob) -> String {
        let key = match self {
            PartitionBy::Module => job.module.clone(),
            PartitionBy::Function => job.function.clone(),
            PartitionBy::Key => String::new(),
            PartitionBy::ArgsField(field) => match job.codec {
                Codec::Postcard => String::new(),
                Codec::Json => serde_json::from_slice::<serde_json::Value>(&job.args)
                    .ok()
                    .and_then(|args| args.get(field).cloned())
                    .map(|value| match value {
                        serde_json::Value::String(text) => text,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default(),
            },
        };
        cut(key)
    }
}

fn cut(key: String) -> String {
    if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
        key
    } else {
        key.chars().take(MAX_PARTITION_KEY_CHARS).collect()
    }
}

/// The partition key each job goes in under its queue's limits (`limits_by_queue`): the
/// client's key, else the one its queue's partitioning derives; `None` on a queue without
/// partitions.
pub fn partition_keys(
    jobs: &[NewJob],
    limits_by_queue: &HashMap<String, QueueLimits>,
) -> Vec<Option<String>> {
    jobs.iter()
        .map(|job| {
            let partitioning = limits_by_queue
                .get(&job.queue)
                .and_then(|limits| limits.partition.as_ref());
            match (&job.partition_key, partitioning) {
                (Some(key), _) => Some(cut(key.clone())),
                (None, Some(partitioning)) => PartitionBy::parse(&partitioning.by)
                    .ok()
                    .map(|by| by.key_of(job)),
                (None, None) => None,
            }
        })
        .collect()
}

/// The most any count or rate may be set to.
pub const MAX_LIMIT: u32 = 1_000_000;

impl QueueLimits {
    /// Refuses limits that could never let a job start or that name no partition.
    pub fn check(&self) -> Result<(), String> {
        let count = |what: &str, n: u32| {
            if (1..=MAX_LIMIT).contains(&n) {
                Ok(())
            } else {
                Err(format!("{what} must be 1 to {MAX_LIMIT}, not {n}"))
            }
        };
        if let Some(n) = self.global_concurrency {
            count("a global concurrency", n)?;
        }
        if let Some(rate) = &self.rate {
            rate.check()?;
        }
        if let Some(partition) = &self.partition {
            PartitionBy::parse(&partition.by)?;
            if let Some(n) = partition.concurrency {
                count("a partition's concurrency", n)?;
            }
            if let Some(rate) = &partition.rate {
                rate.check()?;
            }
        }
        Ok(())
    }

    /// Whether any limit is set.
    pub fn limits_anything(&self) -> bool {
        self.global_concurrency.is_some() || self.rate.is_some() || self.partition.is_some()
    }
}

impl RateLimit {
    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_LIMIT).contains(&self.starts) {
            return Err(format!(
                "a rate must allow 1 to {MAX_LIMIT} starts per period, not {}",
                self.starts
            ));
        }
        if !(1..=86_400_000).contains(&self.period_ms) {
            return Err("a rate's period must be 1 ms to 1 day".into());
        }
        if self.burst > MAX_LIMIT {
            return Err(format!("a rate's burst must be at most {MAX_LIMIT}"));
        }
        Ok(())
    }

    /// The time between two starts at the steady rate, in microseconds, rounded up so the
    /// rate is never exceeded.
    fn interval_micros(&self) -> i64 {
        let period = self.period_ms as i64 * 1000;
        ((period + self.starts as i64 - 1) / self.starts as i64).max(1)
    }

    /// GCRA: with the limit's theoretical arrival time `tat` (microseconds; `None` when it
    /// never started anything), how many of `wanted` starts may happen at `now`.
    pub fn take(&self, tat: Option<i64>, now: i64, wanted: u32) -> RateTake {
        let interval = self.interval_micros();
        let tolerance = interval * self.burst as i64;
        let from = tat.map_or(now, |tat| tat.max(now));
        let allowed = if from - now > tolerance {
            0
        } else {
            (((now + tolerance - from) / interval + 1) as u64).min(wanted as u64) as u32
        };
        let tat = from + interval * allowed as i64;
        RateTake {
            allowed,
            tat,
            next_at: tat - tolerance,
        }
    }
}

impl std::fmt::Display for RateLimit {
    /// `50/1s`, with `+B` for a burst: the form `sluice queue limits` reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let period = std::time::Duration::from_millis(self.period_ms);
        write!(f, "{}/{}", self.starts, humantime_like(period))?;
        if self.burst > 0 {
            write!(f, "+{}", self.burst)?;
        }
        Ok(())
    }
}

/// `1s`, `250ms`, `1m30s`: a period as the CLI reads it, without a dependency here.
fn humantime_like(period: std::time::Duration) -> String {
    let ms = period.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

impl RateLimit {
    /// Reads `N/PERIOD` (`50/1s`, `1000/1m`), `PERIOD` as `parse_period` reads it.
    pub fn parse(
        text: &str,
        burst: u32,
        parse_period: impl Fn(&str) -> Result<std::time::Duration, String>,
    ) -> Result<RateLimit, String> {
        let (starts, period) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate: starts per period, like 50/1s"))?;
        let starts = starts
            .trim()
            .parse()
            .map_err(|_| format!("`{starts}` is not a number of starts"))?;
        let period = parse_period(period.trim())?;
        let rate = RateLimit {
            starts,
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            burst,
        };
        rate.check()?;
        Ok(rate)
    }
}

impl std::fmt::Display for QueueLimits {
    /// One line: `global 10, rate 50/1s+5, by args.user: 1 at once, 2/1s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.global_concurrency {
            parts.push(format!("global {n}"));
        }
        if let Some(rate) = &self.rate {
            parts.push(format!("rate {rate}"));
        }
        if let Some(partition) = &self.partition {
            let mut each = Vec::new();
            if let Some(n) = partition.concurrency {
                each.push(format!("{n} at once"));
            }
            if let Some(rate) = &partition.rate {
                each.push(rate.to_string());
            }
            if each.is_empty() {
                parts.push(format!("by {}", partition.by));
            } else {
                parts.push(format!("by {}: {}", partition.by, each.join(" ")));
            }
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join(", "))
    }
}

/// What a rate limit allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTake {
    pub allowed: u32,
    /// The theoretical arrival time to store after the starts.
    pub tat: i64,
    /// When the next start beyond these is allowed (microseconds).
    pub next_at: i64,
}

/// A limited claim, planned from what the store read under the queue's lock: how many jobs
/// the global concurrency and the rate let it take, the partitions' share, and what it leaves
/// behind (the rate's state, the partition cursor, when to ask again). The stores fetch and
/// claim; the decisions are made here, once for both.
#[derive(Debug)]
pub struct LimitedClaim<'a> {
    limits: &'a QueueLimits,
    rate_tat: Option<i64>,
    now: i64,
    /// How many jobs it may take.
    pub wanted: u32,
    held_until: Option<i64>,
    /// Claimed and retrying jobs by partition key.
    occupied: HashMap<String, u32>,
    pub cursor: Option<String>,
}

/// A partition key's claimed and retrying jobs, as the store counts them: `(key, claimed,
/// retrying)`, the key `None` outside partitions.
pub type Occupancy = (Option<String>, i64, i64);

/// The most partitions one claim looks at beyond those it may take from.
const PARTITIONS_LOOKED_AT: i64 = 1000;

impl<'a> LimitedClaim<'a> {
    /// Whether the claim must count the queue's claimed and retrying jobs first.
    pub fn counts_occupancy(limits: &QueueLimits) -> bool {
        limits.global_concurrency.is_some() || limits.partition.is_some()
    }

    /// Applies the global concurrency and the rate to the `asked` jobs.
    pub fn new(
        limits: &'a QueueLimits,
        rate_tat: Option<i64>,
        cursor: Option<String>,
        occupancy: Vec<Occupancy>,
        asked: u32,
        now: i64,
    ) -> LimitedClaim<'a> {
        let claimed: i64 = occupancy.iter().map(|(_, n, _)| n).sum();
        let mut claim = LimitedClaim {
            limits,
            rate_tat,
            now,
            wanted: asked,
            held_until: None,
            // A key's job waiting to be retried (failed, or lost with its node) holds its
            // place too: the key's later jobs must not overtake it.
            occupied: occupancy
                .into_iter()
                .filter_map(|(key, claimed, retrying)| Some((key?, (claimed + retrying) as u32)))
                .collect(),
            cursor,
        };
        if let Some(global) = limits.global_concurrency {
            let free = (i64::from(global) - claimed).max(0) as u32;
            if free < claim.wanted {
                claim.wanted = free;
                claim.hold(claim.poll());
            }
        }
        if let Some(rate) = &limits.rate {
            let take = rate.take(rate_tat, now, claim.wanted);
            if take.allowed < claim.wanted {
                claim.wanted = take.allowed;
                claim.hold(take.next_at);
            }
        }
        claim
    }

    fn poll(&self) -> i64 {
        self.now + crate::store::HELD_BACK_POLL.as_micros() as i64
    }

    fn hold(&mut self, at: i64) {
        self.held_until = Some(self.held_until.map_or(at, |held| held.min(at)));
    }

    /// How many partition keys to look at: one per job it may take, plus those already full.
    pub fn keys_to_look_at(&self) -> i64 {
        let full = match self.limits.partition.as_ref().and_then(|p| p.concurrency) {
            Some(limit) => self.occupied.values().filter(|n| **n >= limit).count(),
            None => 0,
        };
        (i64::from(self.wanted) + full as i64).min(PARTITIONS_LOOKED_AT)
    }

    /// The rounds that share the claim between `keys` (in turn order, with their rates'
    /// states in `tats`), for a queue with partitions.
    pub fn rounds(
        &self,
        keys: &[String],
        tats: &HashMap<String, i64>,
    ) -> Option<PartitionRounds<'a>> {
        let partitioning = self.limits.partition.as_ref()?;
        let states = keys
            .iter()
            .map(|key| PartitionState {
                key: key.clone(),
                running: self.occupied.get(key).copied().unwrap_or(0),
                tat: tats.get(key).copied(),
            })
            .collect();
        Some(PartitionRounds::new(
            partitioning,
            states,
            self.wanted,
            self.now,
        ))
    }

    /// Takes in what the rounds decided; returns the partitions' new rate states to store.
    pub fn partitions_done(&mut self, outcome: PartitionOutcome) -> Vec<(String, i64)> {
        if let Some(at) = outcome.held_until {
            self.hold(at);
        }
        if outcome.cursor.is_some() {
            self.cursor = outcome.cursor;
        }
        outcome.tats
    }

    /// The rate's new state once `claimed` jobs were taken, and when to ask again.
    pub fn finish(&self, claimed: u32) -> (Option<i64>, Option<chrono::DateTime<chrono::Utc>>) {
        let tat = self
            .limits
            .rate
            .map(|rate| rate.take(self.rate_tat, self.now, claimed).tat)
            .or(self.rate_tat);
        let held = self
            .held_until
            .and_then(chrono::DateTime::from_timestamp_micros);
        (tat, held)
    }
}

/// One partition's state as a claim sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub key: String,
    /// Its jobs claimed and not yet finished, and those waiting to be retried: a key's later
    /// jobs must not overtake them.
    pub running: u32,
    /// Its rate limit's theoretical arrival time, when it has started anything.
    pub tat: Option<i64>,
}

/// A claim's share of `wanted` starts between partitions, in rounds: each round asks every
/// key with room for one more job in turn (so a key with thousands of jobs waiting does not
/// starve one with a single job), and a key that had fewer jobs than asked drops out, so
/// the next round gives its share to the others. The store fetches each round's jobs.
#[derive(Debug)]
pub struct PartitionRounds<'a> {
    partitioning: &'a Partitioning,
    keys: Vec<PartitionState>,
    /// How many more of each key's jobs its concurrency and rate allow.
    room: Vec<u32>,
    taken: Vec<u32>,
    exhausted: Vec<bool>,
    left: u32,
    wanted: u32,
    now: i64,
}

/// One round's ask of one partition: skip the jobs already taken, take the next `take`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAsk {
    pub key: String,
    pub skip: u32,
    pub take: u32,
}

/// What a claim's partitions leave behind: their new rate states, where the next claim
/// starts, and when asking again can take more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOutcome {
    pub tats: Vec<(String, i64)>,
    pub cursor: Option<String>,
    pub held_until: Option<i64>,
}

/// The most rounds one claim takes: each is one statement.
const MAX_ROUNDS: u32 = 4;

impl<'a> PartitionRounds<'a> {
    /// `keys` in turn order: those after the last claim's last key first.
    pub fn new(
        partitioning: &'a Partitioning,
        keys: Vec<PartitionState>,
        wanted: u32,
        now: i64,
    ) -> PartitionRounds<'a> {
        let room = keys
            .iter()
            .map(|partition| {
                let free = partitioning
                    .concurrency
                    .map_or(u32::MAX, |limit| limit.saturating_sub(partition.running));
                match &partitioning.rate {
                    None => free,
                    Some(rate) => rate.take(partition.tat, now, free).allowed,
                }
            })
            .collect();
        PartitionRounds {
            partitioning,
            taken: vec![0; keys.len()],
            exhausted: vec![false; keys.len()],
            keys,
            room,
            left: wanted,
            wanted,
            now,
        }
    }

    /// The next round's asks, in turn order; none when the claim is done.
    pub fn next_round(&mut self, round: u32) -> Vec<PartitionAsk> {
        if round >= MAX_ROUNDS {
            return Vec::new();
        }
        let mut asks = vec![0u32; self.keys.len()];
        let mut left = self.left;
        while left > 0 {
            let mut gave = false;
            for (index, ask) in asks.iter_mut().enumerate() {
                if left == 0 {
                    break;
                }
                if !self.exhausted[index] && self.room[index] > *ask {
                    *ask += 1;
                    left -= 1;
                    gave = true;
                }
            }
            if !gave {
                break;
            }
        }
        asks.iter()
            .enumerate()
            .filter(|(_, take)| **take > 0)
            .map(|(index, &take)| PartitionAsk {
                key: self.keys[index].key.clone(),
                skip: self.taken[index],
                take,
            })
            .collect()
    }

    /// Records what a round got: `got(key)` jobs of each key asked.
    pub fn got(&mut self, asks: &[PartitionAsk], got: impl Fn(&str) -> u32) {
        for ask in asks {
            let Some(index) = self.keys.iter().position(|k| k.key == ask.key) else {
                continue;
            };
            let fetched = got(&ask.key).min(ask.take);
            self.taken[index] += fetched;
            self.room[index] -= fetched;
            self.left -= fetched;
            if fetched < ask.take {
                self.exhausted[index] = true;
            }
        }
    }

    pub fn finish(self) -> PartitionOutcome {
        let mut outcome = PartitionOutcome {
            tats: Vec::new(),
            cursor: None,
            held_until: None,
        };
        let short = self.left > 0;
        let poll = self.now + crate::store::HELD_BACK_POLL.as_micros() as i64;
        let mut hold = |at: i64| {
            outcome.held_until = Some(outcome.held_until.map_or(at, |held: i64| held.min(at)));
        };
        for (index, partition) in self.keys.iter().enumerate() {
            let taken = self.taken[index];
            if taken > 0 {
                outcome.cursor = Some(partition.key.clone());
            }
            if let Some(rate) = &self.partitioning.rate
                && taken > 0
            {
                let after = rate.take(partition.tat, self.now, taken);
                outcome.tats.push((partition.key.clone(), after.tat));
            }
            // A key with jobs left that its own limits held back frees when one of its jobs
            // finishes (on whichever node) or when its rate allows.
            if !short || self.exhausted[index] || self.room[index] > 0 {
                continue;
            }
            let by_concurrency = self
                .partitioning
                .concurrency
                .is_some_and(|limit| partition.running + taken >= limit);
            if by_concurrency {
                hold(poll);
            } else if let Some(rate) = &self.partitioning.rate {
                let tat = rate.take(partition.tat, self.now, taken).tat;
                hold(rate.take(Some(tat), self.now, 1).next_at);
            }
        }
        outcome
    }

    /// How many jobs the rounds took in all.
    pub fn taken(&self) -> u32 {
        self.wanted - self.left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(starts: u32, burst: u32) -> RateLimit {
        RateLimit {
            starts,
            period_ms: 1000,
            burst,
        }
    }

    #[test]
    fn a_rate_spreads_starts_evenly_after_its_burst() {
        let rate = per_second(50, 4);
        let first = rate.take(None, 0, 100);
        assert_eq!(first.allowed, 5, "one start plus the burst at once");
        let again = rate.take(Some(first.tat), 0, 100);
        assert_eq!(again.allowed, 0);
        assert_eq!(again.next_at, 20_000, "the next start one interval later");
        let later = rate.take(Some(first.tat), 40_000, 100);
        assert_eq!(later.allowed, 2);
    }

    #[test]
    fn no_window_of_one_period_holds_more_than_the_rate_plus_its_burst() {
        let rate = per_second(50, 7);
        let mut tat = None;
        let mut starts = Vec::new();
        // Claims every 3 ms for five seconds, each wanting more than the limit.
        for step in 0..1700 {
            let now = step * 3_000;
            let take = rate.take(tat, now, 1000);
            tat = Some(take.tat);
            starts.extend(std::iter::repeat_n(now, take.allowed as usize));
        }
        let worst = starts
            .iter()
            .map(|&from| {
                starts
                    .iter()
                    .filter(|&&at| at >= from && at < from + 1_000_000)
                    .count()
            })
            .max()
            .unwrap();
        assert_eq!(worst, 57, "50 per second plus a burst of 7, at most");
        assert!(starts.len() >= 50 * 5, "the rate is used: {}", starts.len());
    }

    fn state(key: &str, running: u32) -> PartitionState {
        PartitionState {
            key: key.into(),
            running,
            tat: None,
        }
    }

    fn asks(asks: &[PartitionAsk]) -> Vec<(&str, u32, u32)> {
        asks.iter()
            .map(|ask| (ask.key.as_str(), ask.skip, ask.take))
            .collect()
    }

    #[test]
    fn partitions_take_turns_and_keep_their_own_limits() {
        let partitioning = Partitioning {
            by: "args.user".into(),
            concurrency: Some(2),
            rate: None,
        };
        let keys = vec![state("big", 0), state("busy", 2), state("small", 1)];
        let mut rounds = PartitionRounds::new(&partitioning, keys.clone(), 2, 0);
        assert_eq!(
            asks(&rounds.next_round(0)),
            [("big", 0, 1), ("small", 0, 1)],
            "one each before a second for anyone"
        );
        let mut rounds = PartitionRounds::new(&partitioning, keys, 10, 0);
        let first = rounds.next_round(0);
        assert_eq!(asks(&first), [("big", 0, 2), ("small", 0, 1)]);
        rounds.got(&first, |_| 1);
        assert_eq!(rounds.taken(), 2);
        assert!(
            rounds.next_round(1).is_empty(),
            "big had one job, small is full"
        );
        let outcome = rounds.finish();
        assert_eq!(outcome.cursor.as_deref(), Some("small"));
        assert!(
            outcome.held_until.is_some(),
            "small and busy free when a job ends"
        );
    }

    #[test]
    fn a_key_with_fewer_jobs_than_asked_gives_its_share_to_the_others() {
        let partitioning = Partitioning {
            by: "key".into(),
            concurrency: None,
            rate: None,
        };
        let keys = vec![state("a", 0), state("b", 0)];
        let mut rounds = PartitionRounds::new(&partitioning, keys, 10, 0);
        let first = rounds.next_round(0);
        assert_eq!(asks(&first), [("a", 0, 5), ("b", 0, 5)]);
        rounds.got(&first, |key| if key == "a" { 2 } else { 5 });
        let second = rounds.next_round(1);
        assert_eq!(asks(&second), [("b", 5, 3)], "b takes a's share");
        rounds.got(&second, |_| 3);
        assert_eq!(rounds.taken(), 10);
        assert_eq!(rounds.finish().held_until, None);
    }

    #[test]
    fn a_partition_rate_says_when_it_frees() {
        let partitioning = Partitioning {
            by: "key".into(),
            concurrency: None,
            rate: Some(per_second(10, 0)),
        };
        let mut rounds = PartitionRounds::new(&partitioning, vec![state("a", 0)], 5, 0);
        let first = rounds.next_round(0);
        assert_eq!(asks(&first), [("a", 0, 1)]);
        rounds.got(&first, |_| 1);
        assert!(rounds.next_round(1).is_empty());
        let outcome = rounds.finish();
        assert_eq!(outcome.tats, vec![("a".to_string(), 100_000)]);
        assert_eq!(outcome.held_until, Some(100_000));
    }

    #[test]
    fn keys_come_from_the_client_or_the_partitioning() {
        let job = |args: &str, key: Option<&str>| NewJob {
            queue: "q".into(),
            module: "m".into(),
            module_version: None,
            function: "f".into(),
            args: args.as_bytes().to_vec(),
            codec: Codec::Json,
            priority: 0,
            max_attempts: 1,
            scheduled_at: None,
            limits: Default::default(),
            unique: None,
            partition_key: key.map(str::to_string),
            depends_on: Vec::new(),
            parent_id: None,
            batch_id: None,
        };
        let limits = HashMap::from([(
            "q".to_string(),
            QueueLimits {
                partition: Some(Partitioning {
                    by: "args.user".into(),
                    concurrency: Some(1),
                    rate: None,
                }),
                ..QueueLimits::default()
            },
        )]);
        let jobs = [
            job(r#"{"user":"ann"}"#, None),
            job(r#"{"user":7}"#, None),
            job(r#"{"other":1}"#, None),
            job(r#"{"user":"ann"}"#, Some("mine")),
        ];
        assert_eq!(
            partition_keys(&jobs, &limits),
            vec![
                Some("ann".into()),
                Some("7".into()),
                Some(String::new()),
                Some("mine".into())
            ]
        );
        let mut other_queue = job("{}", None);
        other_queue.queue = "plain".into();
        assert_eq!(partition_keys(&[other_queue], &limits), vec![None]);
    }

    #[test]
    fn limits_that_could_never_start_a_job_are_refused() {
        let zero = QueueLimits {
            global_concurrency: Some(0),
            ..QueueLimits::default()
        };
        assert!(zero.check().is_err());
        let bad_partition = QueueLimits {
            partition: Some(Partitioning {
                by: "args.".into(),
                concurrency: None,
                rate: None,
            }),
            ..QueueLimits::default()
        };
        assert!(bad_partition.check().is_err());
    }
}
