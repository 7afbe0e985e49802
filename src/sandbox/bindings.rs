//! Host side of the WIT contracts (`guest-sdk/wit/0.1.0` and `guest-sdk/wit/0.2.0`, linked
//! side by side) and the state each attempt's store holds.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capture::Capture;
use super::composer::Composer;
use super::deadline::AttemptClock;
use super::limits::MemoryLimiter;
use super::text::{MAX_MESSAGE_BYTES, bounded};
use crate::model::LogStream;

/// `sluice:job@0.1.0`: log and report-panic, and the guest's catalogue and entry point.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        world: "job",
        path: "guest-sdk/wit/0.1.0",
        exports: { default: async },
    });
}

/// `sluice:job@0.2.0`: 0.1.0 plus composition, and retry-after in `job-error`. The imports
/// that read the store (a child's module, a dependency's output) are async.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        world: "job",
        path: "guest-sdk/wit/0.2.0",
        imports: {
            "sluice:job/compose.enqueue": async,
            "sluice:job/compose.open-batch": async,
            "sluice:job/compose.dependency-output": async,
        },
        exports: { default: async },
    });
}

/// Everything one attempt's wasmtime `Store` owns. Dropped with the store when the attempt ends.
pub(crate) struct AttemptState {
    /// WASI with nothing granted except captured stdout/stderr.
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub capture: Capture,
    /// The deadline as the call hook enforces it at every host crossing.
    pub clock: AttemptClock,
    /// The first panic message the guest reported before aborting.
    pub panic: Option<String>,
    /// What the guest composed, and what it may ask about its job (0.2.0 guests).
    pub composer: Composer,
}

impl WasiView for AttemptState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl AttemptState {
    fn log(&mut self, stream: LogStream, message: &str) {
        self.capture.log(stream, message);
    }

    fn report_panic(&mut self, message: &str) {
        // Only the first counts: the one that explains the abort that follows.
        if self.panic.is_none() {
            self.panic = Some(bounded(message, MAX_MESSAGE_BYTES));
        }
    }
}

impl v0_1::sluice::job::types::Host for AttemptState {}

impl v0_1::sluice::job::host::Host for AttemptState {
    fn log(&mut self, level: v0_1::sluice::job::host::LogLevel, message: String) {
        use v0_1::sluice::job::host::LogLevel;
        let stream = match level {
            LogLevel::Trace => LogStream::Trace,
            LogLevel::Debug => LogStream::Debug,
            LogLevel::Info => LogStream::Info,
            LogLevel::Warn => LogStream::Warn,
            LogLevel::Error => LogStream::Error,
        };
        AttemptState::log(self, stream, &message);
    }

    fn report_panic(&mut self, message: String) {
        AttemptState::report_panic(self, &message);
    }
}

impl v0_2::sluice::job::types::Host for AttemptState {}

impl v0_2::sluice::job::host::Host for AttemptState {
    fn log(&mut self, level: v0_2::sluice::job::host::LogLevel, message: String) {
        use v0_2::sluice::job::host::LogLevel;
        let stream = match level {
            LogLevel::Trace => LogStream::Trace,
            LogLevel::Debug => LogStream::Debug,
            LogLevel::Info => LogStream::Info,
            LogLevel::Warn => LogStream::Warn,
            LogLevel::Error => LogStream::Error,
        };
        AttemptState::log(self, stream, &message);
    }

    fn report_panic(&mut self, message: String) {
        AttemptState::report_panic(self, &message);
    }
}
