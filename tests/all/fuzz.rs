//! Fuzzed modules through upload and, when they compile, through attempts: whatever the
//! bytes, the engine answers with an error or a classified report, never a crash or a hang.
//!
//! Three generators, in turn: core modules from `wasm-smith` (always refused, as core
//! modules); the hello component with its main core module replaced by a `wasm-smith` module
//! of the same imports and exports (so it links, and random code runs behind the real
//! contract); and the hello and hostile components with random byte-level damage.
//! CI runs a fixed-seed corpus; `SLUICE_FUZZ_CASES=N SLUICE_FUZZ_SEED=S` runs a longer one.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use sluice::model::{Codec, LimitOverrides};
use sluice::sandbox::{ModuleError, Sandbox, SandboxConfig};
use sluice_test_artifacts as guests;

use crate::support::{read_guest, temp_dir};

/// No single upload or attempt of a fuzzed module may take longer than this.
const HANG: Duration = Duration::from_secs(30);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_modules_never_crash_or_hang_the_engine() {
    let cases = env_number("SLUICE_FUZZ_CASES", 240);
    let seed = env_number("SLUICE_FUZZ_SEED", 0x0515_11ce);
    let mut rng = fastrand::Rng::with_seed(seed);
    // A cache of its own: fuzzed artifacts must not fill the shared one.
    let sandbox = Sandbox::new(SandboxConfig::new(temp_dir("fuzz-cache"))).unwrap();
    let hello = read_guest(guests::HELLO);
    let hostile = read_guest(guests::HOSTILE);
    let main_module = largest_core_module(&hello);
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();

    for case in 0..cases {
        let (kind, wasm) = match case % 3 {
            0 => ("smith core module", smith_module(&mut rng, None)),
            1 => (
                "hello with a smith core",
                splice(
                    &hello,
                    main_module.clone(),
                    &smith_module(&mut rng, Some(&hello[main_module.clone()])),
                ),
            ),
            _ => {
                let base = if rng.bool() { &hello } else { &hostile };
                ("damaged component", damage(&mut rng, base))
            }
        };
        let verdict = tokio::time::timeout(HANG, sandbox.validate(&wasm))
            .await
            .unwrap_or_else(|_| panic!("case {case} (seed {seed}): upload hung"));
        if std::env::var_os("SLUICE_FUZZ_VERBOSE").is_some()
            && let Err(error) = &verdict
        {
            println!("case {case} ({kind}): {error}");
        }
        let upload = match &verdict {
            Ok(_) => "accepted".to_string(),
            Err(error) => refusal(error).to_string(),
        };
        if kind == "smith core module" {
            assert!(
                matches!(verdict, Err(ModuleError::CoreModule)),
                "case {case}: a core module was not refused as one: {verdict:?}"
            );
        }
        *tally.entry(format!("{kind}: upload {upload}")).or_default() += 1;

        // Whatever compiles runs, accepted or not: random code behind the real contract.
        let Ok(module) = sandbox.prepare(&wasm).await else {
            continue;
        };
        let mut functions: Vec<String> = verdict
            .map(|functions| functions.into_iter().map(|f| f.name).collect())
            .unwrap_or_default();
        functions.truncate(3);
        functions.push("noop".into());
        let limits = LimitOverrides {
            fuel: Some(50_000_000),
            memory_bytes: Some(16 << 20),
            timeout: Some(Duration::from_secs(5)),
        };
        for function in functions {
            let report = tokio::time::timeout(
                HANG,
                sandbox.run(&module, &function, b"null", Codec::Json, &limits),
            )
            .await
            .unwrap_or_else(|_| panic!("case {case} (seed {seed}): {function} hung"))
            .unwrap_or_else(|fault| panic!("case {case} (seed {seed}): node fault {fault}"));
            let outcome = match report.failure() {
                Some(failure) => format!("{:?}", failure.kind),
                None => "completed".into(),
            };
            *tally.entry(format!("{kind}: run {outcome}")).or_default() += 1;
        }
    }
    println!("{cases} fuzzed modules (seed {seed}):");
    for (what, count) in &tally {
        println!("  {count:5}  {what}");
    }
    let ran: u32 = tally
        .iter()
        .filter(|(what, _)| what.starts_with("hello with a smith core: run"))
        .map(|(_, count)| count)
        .sum();
    assert!(
        ran > 0,
        "no spliced module ever ran: the fuzzer does not reach attempts"
    );
}

/// A short name for why an upload was refused.
fn refusal(error: &ModuleError) -> &'static str {
    match error {
        ModuleError::Empty => "refused: empty",
        ModuleError::NotWasm => "refused: not wasm",
        ModuleError::TooLarge { .. } => "refused: too large",
        ModuleError::CoreModule => "refused: core module",
        ModuleError::Invalid(_) => "refused: invalid",
        ModuleError::WrongWorld { .. } => "refused: wrong world",
        ModuleError::ExportMismatch { .. } => "refused: export mismatch",
        ModuleError::UnsupportedImport(_) => "refused: unsupported import",
        ModuleError::Catalogue(_) => "refused: catalogue failed",
        ModuleError::NoFunctions => "refused: no functions",
        ModuleError::Cache { .. } => "refused: cache",
    }
}

/// A `wasm-smith` module from random bytes; with `shape`, one with exactly the imports it may
/// use and the exports it must have.
fn smith_module(rng: &mut fastrand::Rng, shape: Option<&[u8]>) -> Vec<u8> {
    let mut entropy = vec![0u8; 4096];
    rng.fill(&mut entropy);
    let mut input = arbitrary::Unstructured::new(&entropy);
    let config = wasm_smith::Config {
        available_imports: shape.map(<[u8]>::to_vec),
        exports: shape.map(<[u8]>::to_vec),
        max_memory32_bytes: 1 << 24,
        // The pooling allocator gives each instance one memory: the exported one, which is
        // generated whatever this limit says.
        max_memories: 0,
        // Proposals wasmtime does not enable by default would only ever be refused.
        exceptions_enabled: false,
        gc_enabled: false,
        compact_imports_enabled: false,
        memory64_enabled: false,
        threads_enabled: false,
        wide_arithmetic_enabled: false,
        // Sluice's engine is built without wasmtime's GC, which `externref` needs.
        reference_types_enabled: false,
        ..wasm_smith::Config::default()
    };
    wasm_smith::Module::new(config, &mut input)
        .expect("wasm-smith cannot fail on enough entropy")
        .to_bytes()
}

/// The byte range of the component's largest top-level core module: its main code.
fn largest_core_module(component: &[u8]) -> Range<usize> {
    let mut largest: Option<Range<usize>> = None;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::ModuleSection {
            unchecked_range, ..
        } = payload.unwrap()
        {
            let range = unchecked_range.start as usize..unchecked_range.end as usize;
            if largest.as_ref().is_none_or(|r| r.len() < range.len()) {
                largest = Some(range);
            }
        }
    }
    largest.expect("the component has no core module")
}

/// The component with the core module at `range` (its section header just before it)
/// replaced by `module`.
fn splice(component: &[u8], range: Range<usize>, module: &[u8]) -> Vec<u8> {
    let old_size = leb128(range.len());
    let header = range.start - old_size.len() - 1;
    assert_eq!(component[header], 1, "not a core module section");
    assert_eq!(&component[header + 1..range.start], old_size.as_slice());
    let mut out = component[..header].to_vec();
    out.push(1);
    out.extend(leb128(module.len()));
    out.extend_from_slice(module);
    out.extend_from_slice(&component[range.end..]);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A valid component with one to eight random byte-level injuries.
fn damage(rng: &mut fastrand::Rng, component: &[u8]) -> Vec<u8> {
    let mut out = component.to_vec();
    for _ in 0..rng.usize(1..=8) {
        let at = rng.usize(..out.len());
        match rng.u8(0..4) {
            0 => out[at] ^= 1 << rng.u8(0..8),
            1 => out[at] = rng.u8(..),
            2 => {
                let end = (at + rng.usize(1..64)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let noise: Vec<u8> = (0..rng.usize(1..16)).map(|_| rng.u8(..)).collect();
                out.splice(at..at, noise);
            }
        }
        if out.is_empty() {
            break;
        }
    }
    out
}
