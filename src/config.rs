//! Typed, validated settings of a node: which queues it serves and how it paces its work.

use std::time::Duration;

/// One queue a node serves and how many of its jobs it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub name: String,
    pub concurrency: u32,
}

impl QueueConfig {
    /// Parses `NAME=CONCURRENCY` (or `NAME`, with the default concurrency).
    pub fn parse(text: &str) -> Result<QueueConfig, String> {
        let (name, concurrency) = match text.split_once('=') {
            Some((name, n)) => {
                let n: u32 = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a concurrency (a positive number)"))?;
                (name, n)
            }
            None => (text, EngineConfig::DEFAULT_CONCURRENCY),
        };
        if name.is_empty() {
            return Err(format!("`{text}` names no queue; use NAME=CONCURRENCY"));
        }
        if concurrency == 0 {
            return Err(format!("queue {name} needs a concurrency of at least 1"));
        }
        Ok(QueueConfig {
            name: name.to_string(),
            concurrency,
        })
    }
}

/// How long the leader keeps finished jobs of each state before pruning them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub completed: Duration,
    pub discarded: Duration,
    pub cancelled: Duration,
}

impl Retention {
    pub const DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);

    /// The same retention for every finished state.
    pub fn all(period: Duration) -> Retention {
        Retention {
            completed: period,
            discarded: period,
            cancelled: period,
        }
    }

    /// Each finished state with its retention.
    pub fn by_state(&self) -> [(crate::model::JobState, Duration); 3] {
        use crate::model::JobState;
        [
            (JobState::Completed, self.completed),
            (JobState::Discarded, self.discarded),
            (JobState::Cancelled, self.cancelled),
        ]
    }
}

/// How a node runs: queues, leases, pacing, retries and shutdown.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's identity in leases, history and the nodes table.
    pub node_id: String,
    pub queues: Vec<QueueConfig>,
    /// How long a claim stays valid without a heartbeat; a dead node's jobs come back after it.
    pub lease: Duration,
    /// How often to look for jobs when no notification arrives.
    pub poll_interval: Duration,
    /// Largest batch one fetch claims, and the most jobs a queue holds claimed ahead of
    /// its free slots (it holds about as many as it starts in 50 ms, and at least two
    /// rounds of slots).
    pub max_fetch: u32,
    /// Largest batch of outcomes one store call writes.
    pub max_completion_batch: usize,
    /// How often the leader stages due jobs and rescues expired leases.
    pub maintenance_interval: Duration,
    /// How long finished jobs are kept, by state; the leader prunes older ones.
    pub retention: Retention,
    /// First retry delay; each later one doubles, up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long running attempts may finish after a shutdown signal before being handed back.
    pub grace_period: Duration,
    /// Stop once no job of the served queues is available, running or waiting to retry.
    pub exit_when_idle: bool,
    /// Attempts lost with their node in a row after which a job is dead-lettered.
    pub poison_limit: i32,
}

impl EngineConfig {
    pub const DEFAULT_CONCURRENCY: u32 = 16;
    pub const DEFAULT_POISON_LIMIT: i32 = 3;

    pub fn new(node_id: String, queues: Vec<QueueConfig>) -> EngineConfig {
        EngineConfig {
            node_id,
            queues,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_fetch: 1000,
            max_completion_batch: 500,
            maintenance_interval: Duration::from_secs(1),
            retention: Retention::all(Retention::DEFAULT),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            grace_period: Duration::from_secs(10),
            exit_when_idle: false,
            poison_limit: EngineConfig::DEFAULT_POISON_LIMIT,
        }
    }

    /// The heartbeat renews leases three times per lease period, so one missed beat is harmless.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease / 3
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.queues.is_empty() {
            return Err("a node must serve at least one queue".into());
        }
        if self.lease < Duration::from_millis(300) {
            return Err("the lease must be at least 300ms".into());
        }
        for (name, interval) in [
            ("--poll", self.poll_interval),
            ("--maintenance-interval", self.maintenance_interval),
            ("--backoff-base", self.backoff_base),
            ("--backoff-max", self.backoff_max),
        ] {
            if interval.is_zero() {
                return Err(format!("{name} must be longer than 0s"));
            }
        }
        if self.backoff_max < self.backoff_base {
            return Err(format!(
                "--backoff-max ({:?}) must not be shorter than --backoff-base ({:?})",
                self.backoff_max, self.backoff_base
            ));
        }
        if self.poison_limit < 1 {
            return Err("--poison-limit must be at least 1".into());
        }
        if self.max_fetch == 0 || self.max_completion_batch == 0 {
            return Err("the fetch and completion batch sizes must be at least 1".into());
        }
        let mut names: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("a queue is listed twice".into());
        }
        Ok(())
    }

    /// A fresh node id: host, process and a random suffix, unique across restarts.
    pub fn generate_node_id() -> String {
        let host = hostname();
        format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
