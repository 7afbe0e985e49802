//! Running one attempt: a fresh store, limits armed, the call, and the classified outcome.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, WasmBacktrace};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::{AttemptState, JobError, WitCodec, WitJobFunction};
use super::capture::Capture;
use super::limits::{Limits, MemoryLimiter};
use super::module::PreparedModule;
use crate::model::{
    AttemptOutcome, AttemptReport, Codec, Failure, FailureKind, JobFunction, LogStream,
};

/// How many wasm frames a trap's failure keeps: enough to point at the culprit.
const BACKTRACE_FRAMES: usize = 6;

pub(crate) struct Call<'a> {
    pub module: &'a PreparedModule,
    pub function: &'a str,
    pub args: &'a [u8],
    pub codec: Codec,
    pub limits: Limits,
    /// Fuel between two yields to tokio.
    pub yield_interval: u64,
}

pub(crate) async fn run(engine: &Engine, call: Call<'_>) -> AttemptReport {
    let limits = call.limits;
    let capture = Capture::new(limits.log_bytes);
    let mut store = new_store(engine, &limits, call.yield_interval, capture.clone());
    let started = Instant::now();

    let function = call.function;
    let codec = match call.codec {
        Codec::Json => WitCodec::Json,
        Codec::Postcard => WitCodec::Postcard,
    };
    let invocation = async {
        let job = call.module.pre.instantiate_async(&mut store).await?;
        job.sluice_job_guest()
            .call_run(&mut store, function, call.args, codec)
            .await
    };
    // The deadline: the timer fires while the guest waits on the host (a sleep, a poll) or at
    // its next fuel yield while it computes; dropping the call unwinds the guest.
    let result = tokio::time::timeout(limits.timeout, invocation).await;
    let wall_time = started.elapsed();

    let fuel_left = store.get_fuel().unwrap_or(0);
    let state = store.data_mut();
    let outcome = match result {
        Err(_elapsed) => AttemptOutcome::Failed(timeout_failure(limits.timeout)),
        Ok(Ok(Ok(output))) => check_output(output, &limits),
        Ok(Ok(Err(job_error))) => AttemptOutcome::Failed(guest_failure(job_error)),
        Ok(Err(error)) => AttemptOutcome::Failed(classify_trap(&error, state, &limits)),
    };
    let (logs, logs_dropped_bytes) = capture.finish();
    AttemptReport {
        outcome,
        fuel_consumed: limits.fuel.saturating_sub(fuel_left),
        wall_time,
        peak_memory_bytes: state.limiter.peak,
        logs,
        logs_dropped_bytes,
    }
}

fn new_store(
    engine: &Engine,
    limits: &Limits,
    yield_interval: u64,
    capture: Capture,
) -> Store<AttemptState> {
    // Nothing is granted: no preopened directories, no environment, no arguments, no stdin,
    // no sockets. Only stdout and stderr exist, and they go to the bounded capture.
    let wasi = WasiCtxBuilder::new()
        .stdout(capture.stream(LogStream::Stdout))
        .stderr(capture.stream(LogStream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = AttemptState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(limits.memory_bytes),
        capture,
        panic: None,
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
        JobError::Failed(message) => Failure::new(FailureKind::GuestError, message),
        JobError::BadArgs(message) => Failure::new(
            FailureKind::BadArgs,
            format!("the args do not fit the function: {message}"),
        ),
        JobError::UnknownFunction(name) => Failure::new(
            FailureKind::UnknownFunction,
            format!("the module exports no job function `{name}`"),
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
/// the guest was doing: a reported panic, or a refused memory growth, explains the trap that
/// followed better than the trap code does.
fn classify_trap(error: &wasmtime::Error, state: &mut AttemptState, limits: &Limits) -> Failure {
    let trap = error.downcast_ref::<Trap>().copied();
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
    } else {
        match trap {
            Some(Trap::OutOfFuel) => Failure::new(
                FailureKind::OutOfFuel,
                format!("the attempt used up its fuel budget of {}", limits.fuel),
            ),
            Some(trap) => Failure::new(FailureKind::Trap, trap.to_string()),
            None => Failure::new(FailureKind::ModuleError, format!("{error:#}")),
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
            Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
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
) -> Result<Vec<JobFunction>, String> {
    let capture = Capture::new(limits.log_bytes);
    let mut store = new_store(engine, &limits, yield_interval, capture);
    let listing = async {
        let job = module.pre.instantiate_async(&mut store).await?;
        job.sluice_job_guest().call_functions(&mut store).await
    };
    match tokio::time::timeout(limits.timeout, listing).await {
        Err(_elapsed) => Err(timeout_failure(limits.timeout).message),
        Ok(Err(error)) => Err(classify_trap(&error, store.data_mut(), &limits).message),
        Ok(Ok(functions)) => Ok(functions
            .into_iter()
            .map(|WitJobFunction { name, description }| JobFunction { name, description })
            .collect()),
    }
}
