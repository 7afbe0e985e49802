//! The example module: the seed's test jobs, used by the demo, the tests and the benchmarks.

mod kernel;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_guest_sdk::log;

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

fn greet(args: Greeting) -> Result<String, Infallible> {
    log::info(format!("greeting {}", args.name));
    Ok(format!("Hello, {}!", args.name))
}

fn fail() -> Result<(), String> {
    Err("this job always fails".to_string())
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(Serialize)]
struct HeavyReport {
    rounds: u64,
    primes: u32,
}

fn heavy(args: Millis) -> Result<HeavyReport, Infallible> {
    let until = Instant::now() + Duration::from_millis(args.ms);
    let mut report = HeavyReport { rounds: 0, primes: 0 };
    while Instant::now() < until {
        report.primes = kernel::count_primes(20_000);
        report.rounds += 1;
    }
    Ok(report)
}

fn sleep(args: Millis) -> Result<u64, Infallible> {
    std::thread::sleep(Duration::from_millis(args.ms));
    Ok(args.ms)
}

fn noop() -> Result<(), Infallible> {
    Ok(())
}

#[derive(Deserialize)]
struct Limit {
    limit: u32,
}

fn count_primes(args: Limit) -> Result<u32, Infallible> {
    Ok(kernel::count_primes(args.limit))
}

#[derive(Deserialize)]
struct Rounds {
    rounds: u32,
}

/// A fixed amount of work, unlike `heavy`'s fixed wall time: how long it takes says how
/// much CPU the attempt got.
fn crunch(args: Rounds) -> Result<u32, Infallible> {
    let mut primes = 0;
    for _ in 0..args.rounds {
        primes = kernel::count_primes(std::hint::black_box(20_000));
    }
    Ok(primes)
}

#[derive(Deserialize, Serialize)]
struct Echo {
    text: String,
    times: u32,
}

fn echo(args: Echo) -> Result<Echo, Infallible> {
    Ok(args)
}

sluice_guest_sdk::export_jobs! {
    /// Returns "Hello, NAME!" for args {"name": NAME}.
    greet,
    /// Always fails: exercises retries and the dead-letter state.
    fail,
    /// Burns CPU for about {"ms": N} milliseconds.
    heavy,
    /// Waits {"ms": N} milliseconds without burning CPU.
    sleep,
    /// Does nothing: the cheapest possible attempt.
    noop,
    /// Counts the primes below {"limit": N}.
    count_primes,
    /// Counts the primes below 20,000, {"rounds": N} times: N units of CPU work.
    crunch,
    /// Returns its args unchanged: {"text": S, "times": N}.
    echo,
}
