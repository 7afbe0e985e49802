//! A deterministic CPU kernel, shared with the benchmark that compares it against native code.

/// Counts the primes below `limit` with a sieve of Eratosthenes: loops, branches and memory
/// traffic, the mix a real CPU-bound job has.
pub fn count_primes(limit: u32) -> u32 {
    let limit = limit as usize;
    if limit < 3 {
        return 0;
    }
    let mut composite = vec![false; limit];
    let mut count = 0;
    for n in 2..limit {
        if composite[n] {
            continue;
        }
        count += 1;
        // Saturating: on wasm32, n * n overflows usize for n above 65,535.
        let mut multiple = n.saturating_mul(n);
        while multiple < limit {
            composite[multiple] = true;
            multiple += n;
        }
    }
    count
}
