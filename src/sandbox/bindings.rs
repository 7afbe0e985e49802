//! Host side of the WIT contract (`guest-sdk/wit/job.wit`) and the state each attempt's store holds.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capture::Capture;
use super::limits::MemoryLimiter;
use crate::model::LogStream;

wasmtime::component::bindgen!({
    world: "job",
    path: "guest-sdk/wit",
    exports: { default: async },
});

pub(crate) use self::sluice::job::types::{Codec as WitCodec, JobFunction as WitJobFunction};
pub(crate) use exports::sluice::job::guest::JobError;

/// The longest panic message kept; a guest could report megabytes.
const MAX_PANIC_MESSAGE: usize = 4096;

/// Everything one attempt's wasmtime `Store` owns. Dropped with the store when the attempt ends.
pub(crate) struct AttemptState {
    /// WASI with nothing granted except captured stdout/stderr.
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub capture: Capture,
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

    fn report_panic(&mut self, mut message: String) {
        if self.panic.is_none() {
            if message.len() > MAX_PANIC_MESSAGE {
                let mut end = MAX_PANIC_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            self.panic = Some(message);
        }
    }
}
