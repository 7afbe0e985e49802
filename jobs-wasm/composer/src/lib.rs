//! The test guest of composition (sluice:job@0.2.0): children, fan-out and fan-in,
//! dependencies' outputs, batches, topics, retry-after, and refusals the guest handles.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_guest_sdk::JobFailure;
use sluice_guest_sdk::compose::{self, Batch, Call, Callbacks, Job};

#[derive(Deserialize)]
struct Count {
    n: u32,
}

#[derive(Deserialize, Serialize)]
struct Number {
    x: u64,
}

/// Enqueues `n` children `square({"x": i})` and a `sum` that waits for them all.
fn fan_out(args: Count) -> Result<u32, JobFailure> {
    let mut children = Vec::with_capacity(args.n as usize);
    for x in 0..args.n {
        let child = Job::new("composer", "square")
            .args(&Number { x: u64::from(x) })
            .enqueue()?;
        children.push(child);
    }
    Job::new("composer", "sum")
        .depends_on_all(&children)
        .enqueue()?;
    Ok(args.n)
}

fn square(args: Number) -> Result<u64, Infallible> {
    Ok(args.x * args.x)
}

#[derive(Serialize)]
struct Total {
    count: usize,
    sum: u64,
    /// How each dependency ended, by state.
    states: BTreeMap<String, usize>,
}

/// Sums the outputs of the jobs it waited for (those that completed).
fn sum() -> Result<Total, JobFailure> {
    let mut total = Total {
        count: 0,
        sum: 0,
        states: BTreeMap::new(),
    };
    for dependency in compose::dependencies() {
        *total.states.entry(dependency.state.clone()).or_default() += 1;
        if dependency.completed() {
            total.sum += dependency.output::<u64>()?;
            total.count += 1;
        }
    }
    Ok(total)
}

#[derive(Deserialize)]
struct FailFirst {
    n: u32,
    /// Fail every attempt before this one, after enqueuing.
    succeed_at: i32,
}

/// Enqueues `n` children, then fails until attempt `succeed_at`: a retried parent must
/// leave children only from the attempt that completed.
fn enqueue_then_fail(args: FailFirst) -> Result<i32, JobFailure> {
    let attempt = compose::current().attempt;
    for x in 0..args.n {
        Job::new("composer", "square")
            .args(&Number { x: u64::from(x) })
            .enqueue()?;
    }
    if attempt < args.succeed_at {
        return Err(JobFailure::failed(format!(
            "attempt {attempt} fails after enqueuing"
        )));
    }
    Ok(attempt)
}

#[derive(Deserialize)]
struct Pause {
    n: u32,
    ms: u64,
}

/// Enqueues `n` children, then sleeps: a node killed meanwhile must leave no children.
fn enqueue_then_sleep(args: Pause) -> Result<u32, JobFailure> {
    for x in 0..args.n {
        Job::new("composer", "square")
            .args(&Number { x: u64::from(x) })
            .enqueue()?;
    }
    std::thread::sleep(Duration::from_millis(args.ms));
    Ok(args.n)
}

/// Tries to enqueue calls that cannot be made and returns the host's refusals: a guest
/// handles them like any error.
fn enqueue_refused() -> Result<Vec<String>, Infallible> {
    let attempts = [
        Job::new("no-such-module", "f"),
        Job::new("composer", "no_such_function"),
        Job::new("composer", "square").max_attempts(0),
        Job::new("composer", "square").depends_on(compose::Waited::Child(
            compose::Child::from_handle(7),
        )),
    ];
    Ok(attempts
        .into_iter()
        .map(|job| match job.enqueue() {
            Ok(_) => "accepted".to_string(),
            Err(refusal) => refusal.message().to_string(),
        })
        .collect())
}

#[derive(Deserialize)]
struct Event {
    topic: String,
    event: serde_json::Value,
}

/// Publishes an event, delivered when this attempt completes.
fn publish(args: Event) -> Result<(), JobFailure> {
    compose::publish(&args.topic, &args.event)
}

#[derive(Deserialize)]
struct Batched {
    n: u32,
    /// Children `fail_below` of them fail (`x < fail_below`).
    fail_below: u64,
}

/// Opens a batch of `n` children of `fail_if_below`, with every callback.
fn open_batch(args: Batched) -> Result<u32, JobFailure> {
    let callback = |what: &str| Call::new("composer", "batch_done").args(&what);
    let batch = Batch::open(
        Callbacks::new()
            .on_finished(callback("finished"))
            .on_success(callback("success"))
            .on_discard(callback("discard")),
    )?;
    for x in 0..u64::from(args.n) {
        Job::new("composer", "fail_if_below")
            .args(&serde_json::json!({ "x": x, "below": args.fail_below }))
            .max_attempts(1)
            .in_batch(batch)
            .enqueue()?;
    }
    Ok(args.n)
}

#[derive(Deserialize)]
struct Threshold {
    x: u64,
    below: u64,
}

fn fail_if_below(args: Threshold) -> Result<u64, String> {
    if args.x < args.below {
        return Err(format!("{} is below {}", args.x, args.below));
    }
    Ok(args.x)
}

/// A batch callback: returns the args it was given (batch, counts, context).
fn batch_done(args: serde_json::Value) -> Result<serde_json::Value, Infallible> {
    Ok(args)
}

#[derive(Deserialize)]
struct Later {
    /// Milliseconds since the Unix epoch.
    until_ms: u64,
}

/// Asks to run again until the clock passes `until_ms`; then completes with its attempt
/// number (1 if asking spent none).
fn retry_later(args: Later) -> Result<i32, JobFailure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    if now < args.until_ms {
        return Err(JobFailure::retry_after(
            Duration::from_millis(args.until_ms - now),
            "the downstream said 429",
        ));
    }
    Ok(compose::current().attempt)
}

#[derive(Serialize)]
struct Whoami {
    id: i64,
    attempt: i32,
    parent: Option<i64>,
    batch: Option<i64>,
}

/// Its own context, as the host tells it.
fn whoami() -> Result<Whoami, Infallible> {
    let context = compose::current();
    Ok(Whoami {
        id: context.id,
        attempt: context.attempt,
        parent: context.parent,
        batch: context.batch,
    })
}

#[derive(Deserialize)]
struct Bytes {
    bytes: usize,
}

/// A string output of about `bytes` bytes.
fn big(args: Bytes) -> Result<String, Infallible> {
    Ok("x".repeat(args.bytes))
}

#[derive(Serialize)]
struct Measured {
    inline: Vec<bool>,
    lengths: Vec<usize>,
}

/// Reads every dependency's output (fetching those not inline) and reports their lengths.
fn measure() -> Result<Measured, JobFailure> {
    let dependencies = compose::dependencies();
    let mut measured = Measured {
        inline: Vec::new(),
        lengths: Vec::new(),
    };
    for dependency in &dependencies {
        measured.inline.push(dependency.is_inline());
        measured.lengths.push(dependency.output::<String>()?.len());
    }
    Ok(measured)
}

#[derive(Deserialize)]
struct Foreign {
    id: i64,
}

/// Tries to read the output of a job it did not wait for: refused.
fn read_foreign(args: Foreign) -> Result<String, Infallible> {
    Ok(match compose::read_output(args.id) {
        Ok(_) => "read".to_string(),
        Err(refusal) => refusal.message().to_string(),
    })
}

sluice_guest_sdk::export_jobs! {
    /// Enqueues {"n": N} squares and a sum that waits for them.
    fan_out,
    /// Returns x*x for {"x": X}.
    square,
    /// Sums the outputs of the jobs it waited for.
    sum,
    /// Enqueues {"n": N} children, then fails until attempt {"succeed_at": A}.
    enqueue_then_fail,
    /// Enqueues {"n": N} children, then sleeps {"ms": MS}.
    enqueue_then_sleep,
    /// Returns the host's refusals of calls that cannot be made.
    enqueue_refused,
    /// Publishes {"event": E} to {"topic": T}.
    publish,
    /// Opens a batch of {"n": N} children, those below {"fail_below": F} failing.
    open_batch,
    /// Fails when {"x": X} is below {"below": B}.
    fail_if_below,
    /// A batch callback: returns its args.
    batch_done,
    /// Asks to run again until the clock passes {"until_ms": EPOCH_MS}.
    retry_later,
    /// Returns its own id, attempt, parent and batch.
    whoami,
    /// Returns a string of {"bytes": N} bytes.
    big,
    /// Reads its dependencies' outputs and reports their lengths.
    measure,
    /// Tries to read the output of job {"id": ID}, which it did not wait for.
    read_foreign,
}
