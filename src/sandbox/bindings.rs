//! Host side of the WIT contract (`guest-sdk/wit/job.wit`) and the state each attempt's store holds.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capture::Capture;
use super::deadline::AttemptClock;
use super::limits::MemoryLimiter;
use super::text::{MAX_MESSAGE_BYTES, bounded};
use crate::model::LogStream;

wasmtime::component::bindgen!({
    world: "job",
    path: "guest-sdk/wit",
    exports: { default: async },
});

pub(crate) use self::sluice::job::types::{Codec as WitCodec, JobFunction as WitJobFunction};
pub(crate) use exports::sluice::job::guest::JobError;

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
}

impl WasiView for AttemptState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::sluice::job::types::Host for AttemptState {}

impl self::sluice::job::host::Host for AttemptState {
    fn log(&mut self, level: self::sluice::job::host::LogLevel, message: String) {
        use self::sluice::job::host::LogLevel;
        let stream = match level {
            LogLevel::Trace => LogStream::Trace,
            LogLevel::Debug => LogStream::Debug,
            LogLevel::Info => LogStream::Info,
            LogLevel::Warn => LogStream::Warn,
            LogLevel::Error => LogStream::Error,
        };
        self.capture.log(stream, &message);
    }

    fn report_panic(&mut self, message: String) {
        // Only the first counts: the one that explains the abort that follows.
        if self.panic.is_none() {
            self.panic = Some(bounded(&message, MAX_MESSAGE_BYTES));
        }
    }
}
