//! The node's Prometheus metrics (the only module that knows `prometheus-client`): what the
//! engine, the sandbox and the API record, and the text a scrape of `/metrics` returns.
//!
//! Label sets are bounded: queue, module, function, outcome class, job state and store
//! operation, never a job id. Gauges that describe a moment (attempts in flight, pool and
//! memory use) are sampled when scraped; queue depth comes from a count the store makes at
//! most once per [`QUEUE_DEPTH_MAX_AGE`], however often the node is scraped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::breakers::BreakerState;

/// The content type of a scrape's answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How old the queue depth shown may be: counting jobs by state reads an index of the whole
/// table, so it is done at most this often, not once per scrape.
pub const QUEUE_DEPTH_MAX_AGE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    queue: String,
    module: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    queue: String,
    module: String,
    function: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    module: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// One finished attempt, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptSample<'a> {
    pub queue: &'a str,
    pub module: &'a str,
    pub function: &'a str,
    /// The outcome class (`completed`, `trapped`, `timed_out`, ...).
    pub class: &'a str,
    pub duration: Duration,
    /// From when the job was due to when its attempt started.
    pub queue_wait: Duration,
    pub fuel: u64,
    pub peak_memory_bytes: u64,
}

/// What a node knows of itself at the moment of a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeSample {
    pub attempts_in_flight: u64,
    pub instance_slots: u64,
    pub instance_slots_in_use: u64,
    pub memory_budget_bytes: u64,
    pub memory_budget_used_bytes: u64,
}

/// A source of the moment's figures, asked at every scrape.
type Sampler = Box<dyn Fn(&mut NodeSample) + Send + Sync>;

/// Every metric of one process, shared by its engine, sandbox and API.
pub struct NodeMetrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: HistogramFamily<CallLabels>,
    attempt_fuel: HistogramFamily<CallLabels>,
    attempt_memory: HistogramFamily<CallLabels>,
    queue_wait_seconds: HistogramFamily<QueueLabels>,
    enqueued: Family<QueueLabels, Counter>,
    lease_renewals: Counter,
    store_errors: Family<OperationLabels, Counter>,
    queue_jobs: Family<QueueStateLabels, Gauge>,
    queue_concurrency: Family<QueueLabels, Gauge>,
    breaker_state: Family<FunctionLabels, Gauge>,
    claims_held_back: Family<QueueLabels, Counter>,
    in_flight: Gauge,
    instance_slots: Gauge,
    instance_slots_in_use: Gauge,
    memory_budget: Gauge,
    memory_budget_used: Gauge,
    samplers: Mutex<Vec<Sampler>>,
    /// When the queue depth was last counted; also what makes two scrapes count only once.
    depth_counted_at: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics::new()
    }
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 4.4 minutes, each bucket four times the last.
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

fn fuel_histogram() -> Histogram {
    // 10 thousand to 10 trillion units of fuel.
    Histogram::new(exponential_buckets(1e4, 10.0, 10))
}

fn memory_histogram() -> Histogram {
    // 64 KiB (one wasm page) to 4 GiB.
    Histogram::new(exponential_buckets(65536.0, 4.0, 9))
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::with_prefix("sluice");
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "attempts",
            "Attempts finished on this node, by queue, module, function and outcome class",
            attempts.clone(),
        );
        let attempt_seconds = HistogramFamily::<CallLabels>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "attempt_duration",
            "Wall time of an attempt, from instance start to outcome",
            Unit::Seconds,
            attempt_seconds.clone(),
        );
        let attempt_fuel = HistogramFamily::<CallLabels>::new_with_constructor(
            fuel_histogram as fn() -> Histogram,
        );
        registry.register(
            "attempt_fuel",
            "Fuel an attempt consumed",
            attempt_fuel.clone(),
        );
        let attempt_memory = HistogramFamily::<CallLabels>::new_with_constructor(
            memory_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "attempt_peak_memory",
            "The largest linear memory an attempt reached",
            Unit::Bytes,
            attempt_memory.clone(),
        );
        let queue_wait_seconds = HistogramFamily::<QueueLabels>::new_with_constructor(
            seconds_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "queue_wait",
            "From when a job was due to when its attempt started",
            Unit::Seconds,
            queue_wait_seconds.clone(),
        );
        let enqueued = Family::<QueueLabels, Counter>::default();
        registry.register(
            "enqueued_jobs",
            "Jobs enqueued through this process's API",
            enqueued.clone(),
        );
        let lease_renewals = Counter::default();
        registry.register(
            "lease_renewals",
            "Leases this node renewed with its heartbeats",
            lease_renewals.clone(),
        );
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Calls to the store that failed, by operation",
            store_errors.clone(),
        );
        let queue_jobs = Family::<QueueStateLabels, Gauge>::default();
        registry.register(
            "queue_jobs",
            "Jobs in the store by queue and state (counted at most every 10 seconds)",
            queue_jobs.clone(),
        );
        let queue_concurrency = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_concurrency",
            "How many of a queue's jobs this node runs at once, as in force now",
            queue_concurrency.clone(),
        );
        let breaker_state = Family::<FunctionLabels, Gauge>::default();
        registry.register(
            "breaker_state",
            "Each circuit breaker as this node last read it: 0 closed, 1 half open, 2 open",
            breaker_state.clone(),
        );
        let claims_held_back = Family::<QueueLabels, Counter>::default();
        registry.register(
            "claims_held_back",
            "Claims of this node that a queue's limits (global concurrency, rate, partitions) held back",
            claims_held_back.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let in_flight = gauge(
            &mut registry,
            "attempts_in_flight",
            "Attempts claimed by this node whose outcome is not yet written",
        );
        let instance_slots = gauge(
            &mut registry,
            "instance_slots",
            "Slots in this node's pool of wasm instances",
        );
        let instance_slots_in_use = gauge(
            &mut registry,
            "instance_slots_in_use",
            "Slots of the instance pool an attempt holds now",
        );
        let memory_budget = gauge(
            &mut registry,
            "memory_budget_bytes",
            "Bytes of memory all attempts of this node may hold together",
        );
        let memory_budget_used = gauge(
            &mut registry,
            "memory_budget_used_bytes",
            "Bytes of the memory budget attempts hold now",
        );
        NodeMetrics {
            registry,
            attempts,
            attempt_seconds,
            attempt_fuel,
            attempt_memory,
            queue_wait_seconds,
            enqueued,
            lease_renewals,
            store_errors,
            queue_jobs,
            queue_concurrency,
            breaker_state,
            claims_held_back,
            in_flight,
            instance_slots,
            instance_slots_in_use,
            memory_budget,
            memory_budget_used,
            samplers: Mutex::new(Vec::new()),
            depth_counted_at: tokio::sync::Mutex::new(None),
        }
    }

    /// Counts one finished attempt and adds it to the histograms.
    pub fn attempt(&self, sample: &AttemptSample<'_>) {
        let call = CallLabels {
            queue: sample.queue.to_string(),
            module: sample.module.to_string(),
            function: sample.function.to_string(),
        };
        self.attempt_seconds
            .get_or_create(&call)
            .observe(sample.duration.as_secs_f64());
        self.attempt_fuel
            .get_or_create(&call)
            .observe(sample.fuel as f64);
        self.attempt_memory
            .get_or_create(&call)
            .observe(sample.peak_memory_bytes as f64);
        self.queue_wait_seconds
            .get_or_create(&QueueLabels {
                queue: call.queue.clone(),
            })
            .observe(sample.queue_wait.as_secs_f64());
        let CallLabels {
            queue,
            module,
            function,
        } = call;
        self.attempts
            .get_or_create(&AttemptLabels {
                queue,
                module,
                function,
                class: sample.class.to_string(),
            })
            .inc();
    }

    /// Counts jobs enqueued into `queue`.
    pub fn enqueued(&self, queue: &str, count: u64) {
        self.enqueued
            .get_or_create(&QueueLabels {
                queue: queue.to_string(),
            })
            .inc_by(count);
    }

    pub fn leases_renewed(&self, count: u64) {
        self.lease_renewals.inc_by(count);
    }

    /// The concurrency in force on this node for `queue`.
    pub fn set_queue_concurrency(&self, queue: &str, concurrency: u32) {
        self.queue_concurrency
            .get_or_create(&QueueLabels {
                queue: queue.to_string(),
            })
            .set(i64::from(concurrency));
    }

    /// Counts a claim that `queue`'s limits held back.
    pub fn claim_held_back(&self, queue: &str) {
        self.claims_held_back
            .get_or_create(&QueueLabels {
                queue: queue.to_string(),
            })
            .inc();
    }

    /// A circuit breaker's state as this node last read it.
    pub fn set_breaker_state(&self, module: &str, function: &str, state: BreakerState) {
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        self.breaker_state
            .get_or_create(&FunctionLabels {
                module: module.to_string(),
                function: function.to_string(),
            })
            .set(value);
    }

    /// Counts a failed call to the store; `operation` is one of a fixed few names.
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    /// Adds a source of the moment's figures, asked at every scrape. Sources add to what the
    /// others found (a process may hold a sandbox and an engine).
    pub fn add_sampler(&self, sampler: impl Fn(&mut NodeSample) + Send + Sync + 'static) {
        self.samplers.lock().unwrap().push(Box::new(sampler));
    }

    /// Whether the queue depth is older than [`QUEUE_DEPTH_MAX_AGE`]; if so, the caller
    /// counts it and hands it to [`NodeMetrics::set_queue_depth`]. The guard it returns makes
    /// concurrent scrapes wait for that one count instead of each making their own.
    pub async fn queue_depth_due(&self) -> Option<DepthGuard<'_>> {
        let counted_at = self.depth_counted_at.lock().await;
        let fresh = counted_at.is_some_and(|at| at.elapsed() < QUEUE_DEPTH_MAX_AGE);
        (!fresh).then_some(DepthGuard { counted_at })
    }

    /// Replaces the queue depth with `counts` of (queue, state, jobs).
    pub fn set_queue_depth<'a>(
        &self,
        guard: DepthGuard<'_>,
        counts: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    ) {
        // A queue or state that emptied must read 0, not its last count: start from zero.
        self.queue_jobs.clear();
        for (queue, state, jobs) in counts {
            self.queue_jobs
                .get_or_create(&QueueStateLabels {
                    queue: queue.to_string(),
                    state: state.to_string(),
                })
                .set(i64::try_from(jobs).unwrap_or(i64::MAX));
        }
        let DepthGuard { mut counted_at } = guard;
        *counted_at = Some(Instant::now());
    }

    /// What the node's sources say of it now.
    pub fn sample(&self) -> NodeSample {
        let mut sample = NodeSample::default();
        for sampler in self.samplers.lock().unwrap().iter() {
            sampler(&mut sample);
        }
        sample
    }

    /// The text of a scrape (OpenMetrics).
    pub fn render(&self) -> String {
        let sample = self.sample();
        let set = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.in_flight, sample.attempts_in_flight);
        set(&self.instance_slots, sample.instance_slots);
        set(&self.instance_slots_in_use, sample.instance_slots_in_use);
        set(&self.memory_budget, sample.memory_budget_bytes);
        set(&self.memory_budget_used, sample.memory_budget_used_bytes);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Held while the queue depth is being counted.
pub struct DepthGuard<'a> {
    counted_at: tokio::sync::MutexGuard<'a, Option<Instant>>,
}
