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

/// One partition's state as a claim sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub key: String,
    /// Its jobs claimed and not yet finished.
    pub running: u32,
    /// Its rate limit's theoretical arrival time, when it has started anything.
    pub tat: Option<i64>,
}

/// How many jobs of each partition a claim takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    /// Partition key and how many of its jobs to take, in the order the keys were offered.
    pub takes: Vec<(String, u32)>,
    /// The new rate state of each partition that starts something: key and its new tat.
    pub tats: Vec<(String, i64)>,
    /// The earliest time a partition held back by its rate may start again.
    pub next_at: Option<i64>,
}

/// Shares `wanted` starts between `keys` (each with waiting jobs, in turn order: the keys
/// after the last claim's last key first), one per key per round so a key with thousands
/// of jobs waiting does not starve one with a single job.
pub fn plan_partitions(
    partitioning: &Partitioning,
    keys: &[PartitionState],
    wanted: u32,
    now: i64,
) -> PartitionPlan {
    let mut room: Vec<u32> = keys
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
    let mut takes = vec![0u32; keys.len()];
    let mut left = wanted;
    while left > 0 {
        let mut gave = false;
        for (index, free) in room.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            if *free > 0 {
                *free -= 1;
                takes[index] += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    let mut plan = PartitionPlan {
        takes: Vec::new(),
        tats: Vec::new(),
        next_at: None,
    };
    for (partition, &take) in keys.iter().zip(&takes) {
        if let Some(rate) = &partitioning.rate {
            let taken = rate.take(partition.tat, now, take);
            if take > 0 {
                plan.tats.push((partition.key.clone(), taken.tat));
            }
            let blocked = partitioning
                .concurrency
                .is_some_and(|limit| partition.running + take >= limit);
            if !blocked && rate.take(Some(taken.tat), now, 1).allowed == 0 {
                plan.next_at = Some(
                    plan.next_at
                        .map_or(taken.next_at, |at| at.min(taken.next_at)),
                );
            }
        }
        if take > 0 {
            plan.takes.push((partition.key.clone(), take));
        }
    }
    plan
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

    #[test]
    fn partitions_take_turns_and_keep_their_own_limits() {
        let partitioning = Partitioning {
            by: "args.user".into(),
            concurrency: Some(2),
            rate: None,
        };
        let keys = [
            PartitionState {
                key: "big".into(),
                running: 0,
                tat: None,
            },
            PartitionState {
                key: "busy".into(),
                running: 2,
                tat: None,
            },
            PartitionState {
                key: "small".into(),
                running: 1,
                tat: None,
            },
        ];
        let plan = plan_partitions(&partitioning, &keys, 2, 0);
        assert_eq!(
            plan.takes,
            vec![("big".into(), 1), ("small".into(), 1)],
            "one each before a second for anyone"
        );
        let plan = plan_partitions(&partitioning, &keys, 10, 0);
        assert_eq!(plan.takes, vec![("big".into(), 2), ("small".into(), 1)]);
    }

    #[test]
    fn a_partition_rate_says_when_it_frees() {
        let partitioning = Partitioning {
            by: "key".into(),
            concurrency: None,
            rate: Some(per_second(10, 0)),
        };
        let keys = [PartitionState {
            key: "a".into(),
            running: 0,
            tat: None,
        }];
        let plan = plan_partitions(&partitioning, &keys, 5, 0);
        assert_eq!(plan.takes, vec![("a".into(), 1)]);
        assert_eq!(plan.tats, vec![("a".into(), 100_000)]);
        assert_eq!(plan.next_at, Some(100_000));
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
