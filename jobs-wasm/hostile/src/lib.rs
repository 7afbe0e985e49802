//! Test guests for every way a job can misbehave; each must fail only its own attempt.

use std::convert::Infallible;
use std::hint::black_box;

use serde::Deserialize;
use sluice_guest_sdk::log;

/// Spins forever: the fuel budget or the deadline must stop it.
fn infinite_loop() -> Result<(), Infallible> {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates until the memory cap refuses to grow.
fn allocate_forever() -> Result<usize, Infallible> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = 1;
        hoard.push(black_box(chunk));
    }
}

#[allow(unconditional_recursion)]
fn descend(depth: u64) -> u64 {
    // black_box keeps the call from becoming a loop.
    black_box(depth) + black_box(descend(depth + 1))
}

/// Recurses without end: the wasm stack limit must stop it.
fn recurse_forever() -> Result<u64, Infallible> {
    Ok(descend(0))
}

/// Panics with a message the host must report.
fn panic() -> Result<(), Infallible> {
    panic!("the guest panicked on purpose");
}

/// Executes the `unreachable` instruction.
fn unreachable() -> Result<(), Infallible> {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    unreachable!()
}

#[derive(Deserialize)]
struct Size {
    mb: usize,
}

/// Returns an output of {"mb": N} megabytes.
fn huge_output(args: Size) -> Result<String, Infallible> {
    Ok("x".repeat(args.mb << 20))
}

#[derive(Deserialize)]
struct Lines {
    lines: u32,
}

/// Writes {"lines": N} log lines and as much to stdout and stderr.
fn log_flood(args: Lines) -> Result<u32, Infallible> {
    for i in 0..args.lines {
        log::info(format!("log line {i} of a flood"));
        println!("stdout line {i} of a flood");
        eprintln!("stderr line {i} of a flood");
    }
    Ok(args.lines)
}

#[derive(Deserialize)]
struct Path {
    path: String,
}

/// Tries to read a host file.
fn read_file(args: Path) -> Result<String, String> {
    std::fs::read_to_string(&args.path).map_err(|e| format!("cannot read {}: {e}", args.path))
}

#[derive(Deserialize)]
struct Var {
    name: String,
}

/// Tries to read a host environment variable, and counts the variables it can see.
fn read_env(args: Var) -> Result<String, String> {
    let visible = std::env::vars().count();
    std::env::var(&args.name)
        .map_err(|e| format!("cannot read env {} ({visible} variables visible): {e}", args.name))
}

#[derive(Deserialize)]
struct Address {
    addr: String,
}

/// Tries to open a TCP connection.
fn open_socket(args: Address) -> Result<String, String> {
    std::net::TcpStream::connect(&args.addr)
        .map(|_| format!("connected to {}", args.addr))
        .map_err(|e| format!("cannot connect to {}: {e}", args.addr))
}

#[derive(Deserialize)]
struct Kib {
    kib: usize,
}

/// Logs messages of {"kib": N} KiB forever: host work the fuel meter does not see.
fn log_loop(args: Kib) -> Result<(), Infallible> {
    let message = "x".repeat(args.kib << 10);
    loop {
        log::info(&message);
    }
}

/// Reports panics of {"kib": N} KiB forever, without ever panicking.
fn report_panic_loop(args: Kib) -> Result<(), Infallible> {
    let message = "x".repeat(args.kib << 10);
    loop {
        sluice_guest_sdk::bindings::sluice::job::host::report_panic(&message);
    }
}

/// Writes {"kib": N} KiB to stdout forever, straight to the WASI stream.
fn stdout_loop(args: Kib) -> Result<(), Infallible> {
    let chunk = vec![b'x'; args.kib << 10];
    let stdout = wasip2::cli::stdout::get_stdout();
    loop {
        // The capture never refuses; a refusal would only end the loop sooner.
        for piece in chunk.chunks(4096) {
            let _ = stdout.blocking_write_and_flush(piece);
        }
    }
}

/// Reads the clocks forever.
fn clock_loop() -> Result<u64, Infallible> {
    let mut sum: u64 = 0;
    loop {
        sum = black_box(sum.wrapping_add(wasip2::clocks::monotonic_clock::now()));
        sum = black_box(sum.wrapping_add(wasip2::clocks::wall_clock::now().seconds));
    }
}

/// Asks for {"kib": N} KiB of random bytes forever.
fn random_loop(args: Kib) -> Result<(), Infallible> {
    loop {
        black_box(wasip2::random::random::get_random_bytes((args.kib << 10) as u64));
    }
}

/// Polls an already-ready pollable forever: host calls that never wait.
fn poll_loop() -> Result<(), Infallible> {
    let ready = wasip2::clocks::monotonic_clock::subscribe_duration(0);
    loop {
        black_box(wasip2::io::poll::poll(&[&ready]));
    }
}

/// Sleeps far past any deadline.
fn sleep_forever() -> Result<(), Infallible> {
    std::thread::sleep(std::time::Duration::from_secs(u64::MAX >> 2));
    Ok(())
}

#[derive(Deserialize)]
struct Status {
    status: i32,
}

/// Exits the component with {"status": N}, as `std::process::exit` does.
fn exit(args: Status) -> Result<(), Infallible> {
    std::process::exit(args.status)
}

/// Creates handles (pollables) forever without dropping any: the WASI handle table fills.
fn handle_flood() -> Result<(), Infallible> {
    loop {
        std::mem::forget(wasip2::clocks::monotonic_clock::subscribe_duration(1));
    }
}

#[derive(Deserialize)]
struct Hold {
    mb: usize,
    ms: u64,
}

/// Takes {"mb": N} MiB of memory, holds it {"ms": M} milliseconds, and returns N: a large
/// but well-behaved job, for the node's memory budget.
fn hold_memory(args: Hold) -> Result<usize, Infallible> {
    let held = black_box(vec![1u8; args.mb << 20]);
    std::thread::sleep(std::time::Duration::from_millis(args.ms));
    Ok(held.len() >> 20)
}

/// Fails with an error message of {"mb": N} megabytes.
fn huge_error(args: Size) -> Result<(), String> {
    Err("e".repeat(args.mb << 20))
}

/// Panics with a message of {"mb": N} megabytes.
fn huge_panic(args: Size) -> Result<(), Infallible> {
    panic!("{}", "p".repeat(args.mb << 20));
}

sluice_guest_sdk::export_jobs! {
    infinite_loop,
    allocate_forever,
    recurse_forever,
    panic,
    unreachable,
    huge_output,
    log_flood,
    read_file,
    read_env,
    open_socket,
    log_loop,
    report_panic_loop,
    stdout_loop,
    clock_loop,
    random_loop,
    poll_loop,
    sleep_forever,
    exit,
    handle_flood,
    huge_error,
    huge_panic,
    hold_memory,
}
