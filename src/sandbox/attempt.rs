//! Running one attempt: a fresh store, limits armed, the call, and the classified outcome.

use std::time::{Duration, Instant};

use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap, WasmBacktrace};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::bindings::{AttemptState, v0_1, v0_2};
use super::budget::Holding;
use super::capture::Capture;
use super::composer::Composer;
use super::deadline::{AttemptClock, DeadlineHook, DeadlinePassed};
use super::limits::{Limits, MemoryLimiter};
use super::module::{Contract, PreparedModule};
use super::text::{MAX_DESCRIPTION_BYTES, MAX_FRAME_NAME_BYTES, MAX_MESSAGE_BYTES, bounded};
use crate::model::{
    AttemptOutcome, AttemptReport, Codec, Failure, FailureKind, JobFunction, LogStream,
};

/// How many wasm frames a trap's failure keeps: enough to point at the culprit.
const BACKTRACE_FRAMES: usize = 6;
/// WASI handles (streams, pollables) one attempt may hold at once. A job needs a handful;
/// each costs host memory that no guest memory cap covers.
pub(crate) const MAX_HANDLES: usize = 10_000;
/// The most random bytes one WASI call may ask for: host memory, allocated per call.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

pub(crate) struct Call<'a> {
    pub module: &'a PreparedModule,
    pub function: &'a str,
    pub args: &'a [u8],
    pub codec: Codec,
    pub limits: Limits,
    /// Fuel between two yields to tokio.
    pub yield_interval: u64,
    /// Whether the call hook checks the deadline at host crossings.
    pub watch_host_calls: bool,
    /// The job as the guest may ask about it, and the node's answers to its composing.
    pub composer: Composer,
}

/// How a guest's `run` returned without output, whichever contract it speaks.
enum JobError {
    Failed(String),
    BadArgs(String),
    UnknownFunction(String),
    RetryAfter { reason: String, delay_ms: u64 },
}

impl From<v0_1::exports::sluice::job::guest::JobError> for JobError {
    fn from(error: v0_1::exports::sluice::job::guest::JobError) -> JobError {
        use v0_1::exports::sluice::job::guest::JobError as Old;
        match error {
            Old::Failed(message) => JobError::Failed(message),
            Old::BadArgs(message) => JobError::BadArgs(message),
            Old::UnknownFunction(name) => JobError::UnknownFunction(name),
        }
    }
}

impl From<v0_2::exports::sluice::job::guest::JobError> for JobError {
    fn from(error: v0_2::exports::sluice::job::guest::JobError) -> JobError {
        use v0_2::exports::sluice::job::guest::JobError as New;
        match error {
            New::Failed(message) => JobError::Failed(message),
            New::BadArgs(message) => JobError::BadArgs(message),
            New::UnknownFunction(name) => JobError::UnknownFunction(name),
            New::RetryAfter(request) => JobError::RetryAfter {
                reason: request.reason,
                delay_ms: request.delay_ms,
            },
        }
    }
}

/// Why an attempt could not start, for a reason that is the node's and not the job's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NodeFault(pub String);

/// Where a wasmtime error came from: making the instance or running the call.
enum Stage {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

pub(crate) async fn run(
    engine: &Engine,
    call: Call<'_>,
    holding: Holding,
) -> Result<AttemptReport, NodeFault> {
    let limits = call.limits;
    let capture = Capture::new(limits.log_bytes);
    // The deadline starts with the instance: compiling and waiting for memory came before.
    let started = Instant::now();
    let deadline = deadline_after(started, limits.timeout);
    let mut store = new_store(
        engine,
        &limits,
        call.yield_interval,
        capture.clone(),
        deadline,
        holding,
        call.composer,
    );
    if call.watch_host_calls {
        store.call_hook_async(DeadlineHook);
    }

    let (function, args) = (call.function, call.args);
    let invocation = async {
        match &call.module.contract {
            Contract::V0_1(pre) => {
                let codec = match call.codec {
                    Codec::Json => v0_1::sluice::job::types::Codec::Json,
                    Codec::Postcard => v0_1::sluice::job::types::Codec::Postcard,
                };
                let job = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Stage::Instantiate)?;
                let returned = job
                    .sluice_job_guest()
                    .call_run(&mut store, function, args, codec)
                    .await
                    .map_err(Stage::Call)?;
                Ok(returned.map_err(JobError::from))
            }
            Contract::V0_2(pre) => {
                let codec = match call.codec {
                    Codec::Json => v0_2::sluice::job::types::Codec::Json,
                    Codec::Postcard => v0_2::sluice::job::types::Codec::Postcard,
                };
                let job = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Stage::Instantiate)?;
                let returned = job
                    .sluice_job_guest()
                    .call_run(&mut store, function, args, codec)
                    .await
                    .map_err(Stage::Call)?;
                Ok(returned.map_err(JobError::from))
            }
        }
    };
    // The deadline: the timer fires while the guest waits on the host (a sleep, a poll) or at
    // its next fuel yield while it computes, and dropping the call unwinds the guest; the
    // call hook traps at the first host crossing past it (a guest busy inside host calls).
    let result = tokio::time::timeout_at(deadline.into(), invocation).await;
    let wall_time = started.elapsed();

    let fuel_left = store.get_fuel().unwrap_or(0);
    let state = store.data_mut();
    let outcome = match result {
        Err(_elapsed) => AttemptOutcome::Failed(timeout_failure(limits.timeout)),
        Ok(Ok(Ok(output))) => check_output(output, &limits),
        Ok(Ok(Err(job_error))) => AttemptOutcome::Failed(guest_failure(job_error)),
        Ok(Err(Stage::Instantiate(error))) => {
            if let Some(full) = error.downcast_ref::<PoolConcurrencyLimitError>() {
                return Err(NodeFault(format!(
                    "no instance slot free on this node ({full}); the job goes back to wait"
                )));
            }
            AttemptOutcome::Failed(classify_error(&error, state, &limits, true))
        }
        Ok(Err(Stage::Call(error))) => {
            AttemptOutcome::Failed(classify_error(&error, state, &limits, false))
        }
    };
    if state.limiter.node_short && matches!(outcome, AttemptOutcome::Failed(_)) {
        return Err(NodeFault(
            "the node's memory budget is held by other attempts; the job goes back to wait".into(),
        ));
    }
    let (logs, logs_dropped_bytes) = capture.finish();
    // What the guest composed matters only if the attempt completed.
    let composed = match outcome {
        AttemptOutcome::Completed { .. } => std::mem::take(&mut state.composer.composed),
        AttemptOutcome::Failed(_) => Default::default(),
    };
    Ok(AttemptReport {
        outcome,
        composed,
        fuel_consumed: limits.fuel.saturating_sub(fuel_left),
        wall_time,
        peak_memory_bytes: state.limiter.peak,
        logs,
        logs_dropped_bytes,
    })
}

/// `start + timeout`, or a year from `start` for a timeout too long to add (a job stored
/// before limits were validated).
fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600))
}

fn new_store(
    engine: &Engine,
    limits: &Limits,
    yield_interval: u64,
    capture: Capture,
    deadline: Instant,
    holding: Holding,
    composer: Composer,
) -> Store<AttemptState> {
    // Nothing is granted: no preopened directories, no environment, no arguments, no stdin,
    // no sockets. Only stdout and stderr exist, and they go to the bounded capture.
    let wasi = WasiCtxBuilder::new()
        .stdout(capture.stream(LogStream::Stdout))
        .stderr(capture.stream(LogStream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES)
        .build();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES);
    let state = AttemptState {
        wasi,
        table,
        limiter: MemoryLimiter::new(limits.memory_bytes, holding),
        capture,
        clock: AttemptClock::new(deadline),
        panic: None,
        composer,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // A new store has no fuel: arm it before any wasm runs, and yield to tokio every
    // `yield_interval` units so a busy guest cannot hold the thread past its deadline.
    store
        .set_fuel(limits.fuel)
        .expect("fuel is enabled in the engine config");
    store
        .fuel_async_yield_interval(Some(yield_interval))
        .expect("the yield interval is positive");
    store
}

fn check_output(output: Vec<u8>, limits: &Limits) -> AttemptOutcome {
    if output.len() > limits.output_bytes {
        return AttemptOutcome::Failed(Failure::new(
            FailureKind::OutputTooLarge,
            format!(
                "the output is {} bytes; the limit is {} bytes",
                output.len(),
                limits.output_bytes
            ),
        ));
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&output) {
        return AttemptOutcome::Failed(Failure::new(
            FailureKind::GuestError,
            format!("the output is not valid JSON: {error}"),
        ));
    }
    AttemptOutcome::Completed { output }
}

fn guest_failure(error: JobError) -> Failure {
    match error {
        JobError::Failed(message) => Failure::new(
            FailureKind::GuestError,
            bounded(&message, MAX_MESSAGE_BYTES),
        ),
        JobError::BadArgs(message) => Failure::new(
            FailureKind::BadArgs,
            format!(
                "the args do not fit the function: {}",
                bounded(&message, MAX_MESSAGE_BYTES)
            ),
        ),
        JobError::UnknownFunction(name) => Failure::new(
            FailureKind::UnknownFunction,
            format!(
                "the module exports no job function `{}`",
                bounded(&name, MAX_MESSAGE_BYTES)
            ),
        ),
        JobError::RetryAfter { reason, delay_ms } => Failure::retry_after(
            bounded(&reason, MAX_MESSAGE_BYTES),
            Duration::from_millis(delay_ms),
        ),
    }
}

fn timeout_failure(timeout: Duration) -> Failure {
    Failure::new(
        FailureKind::Timeout,
        format!("the attempt ran past its deadline of {timeout:?}"),
    )
}

/// Classifies a wasmtime error from instantiation or the call. The store's state says what
/// the guest was doing: a passed deadline, a reported panic or a refused memory growth
/// explains the trap that followed better than the trap code does. An error that is neither
/// a trap nor one of those came from a host import refusing the guest.
fn classify_error(
    error: &wasmtime::Error,
    state: &mut AttemptState,
    limits: &Limits,
    instantiating: bool,
) -> Failure {
    let trap = error.downcast_ref::<Trap>().copied();
    if state.clock.passed || error.downcast_ref::<DeadlinePassed>().is_some() {
        return timeout_failure(limits.timeout);
    }
    let mut failure = if state.limiter.hit {
        let mut message = format!(
            "the guest tried to grow its memory past the cap of {} MiB",
            limits.memory_bytes >> 20
        );
        if let Some(panic) = &state.panic {
            message += &format!(" (then panicked: {panic})");
        }
        Failure::new(FailureKind::MemoryLimit, message)
    } else if let Some(panic) = state.panic.take() {
        Failure::new(FailureKind::Panic, panic)
    } else if let Some(exit) = error.downcast_ref::<I32Exit>() {
        // WASI 0.2 carries only success or failure: std's exit(3) arrives as status 1.
        let status = match exit.0 {
            0 => "a success status (0)".to_string(),
            status => format!("a failure status ({status})"),
        };
        Failure::new(
            FailureKind::Exit,
            format!("the guest exited with {status} before returning a result"),
        )
    } else if let Some(table) = error.downcast_ref::<ResourceTableError>() {
        match table {
            ResourceTableError::Full => Failure::new(
                FailureKind::ResourceLimit,
                format!(
                    "the guest holds {MAX_HANDLES} WASI handles, the most an attempt may; it must drop the ones it no longer needs"
                ),
            ),
            other => Failure::new(
                FailureKind::Trap,
                format!("the guest used a WASI handle wrongly: {other}"),
            ),
        }
    } else {
        match trap {
            Some(Trap::OutOfFuel) => Failure::new(
                FailureKind::OutOfFuel,
                format!("the attempt used up its fuel budget of {}", limits.fuel),
            ),
            Some(trap) => Failure::new(FailureKind::Trap, trap.to_string()),
            None if instantiating => Failure::new(
                FailureKind::ModuleError,
                format!("the module could not be instantiated: {error:#}"),
            ),
            // Host imports refuse with an error only for requests past a host-side limit.
            None => Failure::new(
                FailureKind::ResourceLimit,
                format!(
                    "a host import refused the guest: {}",
                    bounded(&format!("{error:#}"), MAX_MESSAGE_BYTES)
                ),
            ),
        }
    };
    failure.trap_code = trap.map(trap_code);
    failure.backtrace = error.downcast_ref::<WasmBacktrace>().map(short_backtrace);
    failure
}

/// `UnreachableCodeReached` becomes `unreachable_code_reached`.
fn trap_code(trap: Trap) -> String {
    let mut code = String::new();
    for (i, c) in format!("{trap:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_lowercase());
        } else {
            code.push(c);
        }
    }
    code
}

fn short_backtrace(backtrace: &WasmBacktrace) -> String {
    let frames: Vec<String> = backtrace
        .frames()
        .iter()
        .take(BACKTRACE_FRAMES)
        .map(|frame| match frame.func_name() {
            Some(name) => bounded(
                &format!("{:#}", rustc_demangle::demangle(name)),
                MAX_FRAME_NAME_BYTES,
            ),
            None => format!("<wasm function {}>", frame.func_index()),
        })
        .collect();
    frames.join(" <- ")
}

/// Calls the module's `functions` export in a fresh instance, under `limits`.
pub(crate) async fn list_functions(
    engine: &Engine,
    module: &PreparedModule,
    limits: Limits,
    yield_interval: u64,
    holding: Holding,
) -> Result<Vec<JobFunction>, String> {
    let capture = Capture::new(limits.log_bytes);
    let deadline = deadline_after(Instant::now(), limits.timeout);
    let mut store = new_store(
        engine,
        &limits,
        yield_interval,
        capture,
        deadline,
        holding,
        Composer::default(),
    );
    store.call_hook_async(DeadlineHook);
    let listing = async {
        let listed: Vec<(String, String)> = match &module.contract {
            Contract::V0_1(pre) => {
                let job = pre.instantiate_async(&mut store).await?;
                let functions = job.sluice_job_guest().call_functions(&mut store).await?;
                functions
                    .into_iter()
                    .map(|f| (f.name, f.description))
                    .collect()
            }
            Contract::V0_2(pre) => {
                let job = pre.instantiate_async(&mut store).await?;
                let functions = job.sluice_job_guest().call_functions(&mut store).await?;
                functions
                    .into_iter()
                    .map(|f| (f.name, f.description))
                    .collect()
            }
        };
        Ok::<_, wasmtime::Error>(listed)
    };
    match tokio::time::timeout_at(deadline.into(), listing).await {
        Err(_elapsed) => Err(timeout_failure(limits.timeout).message),
        Ok(Err(error)) => Err(classify_error(&error, store.data_mut(), &limits, false).message),
        Ok(Ok(functions)) => Ok(functions
            .into_iter()
            .map(|(name, description)| JobFunction {
                name,
                description: bounded(&description, MAX_DESCRIPTION_BYTES),
            })
            .collect()),
    }
}
