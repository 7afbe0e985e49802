//! The crate job authors depend on: plain Rust functions become the exports of a Sluice job module.
//!
//! ```ignore
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Welcome { user_id: u64 }
//!
//! fn send_welcome(args: Welcome) -> Result<String, String> {
//!     sluice_guest_sdk::log::info(format!("welcoming user {}", args.user_id));
//!     Ok(format!("sent to {}", args.user_id))
//! }
//!
//! sluice_guest_sdk::export_jobs! {
//!     /// Sends the welcome e-mail.
//!     send_welcome,
//! }
//! ```
//!
//! A job function takes zero or one argument of any `serde::Deserialize` type and returns
//! `Result<T, E>` with `T: serde::Serialize` and `E` any `Display` error or a [`JobFailure`].
//! Args arrive as JSON (the CLI and HTTP edges) or postcard (compact binary, for Rust-typed
//! enqueue); output is always JSON. `Err(e)` fails the attempt with `e.to_string()`; a panic
//! fails it with the panic message; `Err(JobFailure::retry_after(..))` runs the job again
//! later without spending an attempt.
//!
//! Jobs compose through [`compose`]: a job enqueues children, opens batches, publishes to
//! topics and reads the outputs of the jobs it waited for. This SDK speaks the contract
//! `sluice:job@0.2.0` (`wit/0.2.0/job.wit`); modules built with the 0.1.0 SDK keep running.

pub mod compose;
mod failure;

pub use failure::JobFailure;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The generated WIT bindings of `wit/0.2.0/job.wit`; `export_jobs!` and [`compose`] are
/// the supported way to use them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "job",
        path: "wit/0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_job_world",
        default_bindings_module: "::sluice_guest_sdk::bindings",
    });
}

pub use bindings::exports::sluice::job::guest::Guest;
pub use bindings::sluice::job::types::{Codec, JobError, JobFunction};

/// Structured log lines, captured by the host into the attempt's result.
pub mod log {
    use crate::bindings::sluice::job::host::{self, LogLevel};

    pub fn trace(message: impl AsRef<str>) {
        host::log(LogLevel::Trace, message.as_ref());
    }
    pub fn debug(message: impl AsRef<str>) {
        host::log(LogLevel::Debug, message.as_ref());
    }
    pub fn info(message: impl AsRef<str>) {
        host::log(LogLevel::Info, message.as_ref());
    }
    pub fn warn(message: impl AsRef<str>) {
        host::log(LogLevel::Warn, message.as_ref());
    }
    pub fn error(message: impl AsRef<str>) {
        host::log(LogLevel::Error, message.as_ref());
    }
}

/// What a job function returns: output to serialize, or an error message.
pub trait JobResult {
    fn into_output(self) -> Result<Vec<u8>, JobError>;
}

impl<T: Serialize, E: Into<JobFailure>> JobResult for Result<T, E> {
    fn into_output(self) -> Result<Vec<u8>, JobError> {
        match self {
            Ok(value) => serde_json::to_vec(&value)
                .map_err(|e| JobError::Failed(format!("cannot serialize the job's output: {e}"))),
            Err(e) => Err(e.into().into_job_error()),
        }
    }
}

/// A job function of zero or one argument. `Marker` only tells the two shapes apart.
pub trait JobHandler<Marker> {
    fn call(self, args: &[u8], codec: Codec) -> Result<Vec<u8>, JobError>;
}

impl<F, R> JobHandler<()> for F
where
    F: FnOnce() -> R,
    R: JobResult,
{
    fn call(self, _args: &[u8], _codec: Codec) -> Result<Vec<u8>, JobError> {
        self().into_output()
    }
}

impl<F, A, R> JobHandler<(A,)> for F
where
    F: FnOnce(A) -> R,
    A: DeserializeOwned,
    R: JobResult,
{
    fn call(self, args: &[u8], codec: Codec) -> Result<Vec<u8>, JobError> {
        self(decode_args(args, codec)?).into_output()
    }
}

/// Decodes args in either codec into the function's parameter type.
pub fn decode_args<A: DeserializeOwned>(args: &[u8], codec: Codec) -> Result<A, JobError> {
    match codec {
        Codec::Json => serde_json::from_slice(args).map_err(|e| JobError::BadArgs(e.to_string())),
        Codec::Postcard => postcard::from_bytes(args).map_err(|e| JobError::BadArgs(e.to_string())),
    }
}

/// Runs `handler` for one attempt; used by `export_jobs!`.
#[doc(hidden)]
pub fn invoke<M>(
    handler: impl JobHandler<M>,
    args: &[u8],
    codec: Codec,
) -> Result<Vec<u8>, JobError> {
    install_panic_hook();
    handler.call(args, codec)
}

/// Reports a panic's message to the host before the guest aborts: without it the host would
/// only see an `unreachable` trap.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            let message = match info.location() {
                Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
                None => message,
            };
            bindings::sluice::job::host::report_panic(&message);
        }));
    });
}

/// Turns a doc comment collected by `export_jobs!` into a one-paragraph description.
#[doc(hidden)]
pub fn describe(doc_lines: &[&str]) -> String {
    doc_lines
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// Exports the listed functions as this module's jobs. Doc comments become their descriptions.
#[macro_export]
macro_rules! export_jobs {
    ($( $(#[doc = $doc:literal])* $name:ident ),+ $(,)?) => {
        struct __SluiceJobs;

        impl $crate::Guest for __SluiceJobs {
            fn functions() -> ::std::vec::Vec<$crate::JobFunction> {
                ::std::vec![$(
                    $crate::JobFunction {
                        name: ::std::string::String::from(stringify!($name)),
                        description: $crate::describe(&[$($doc),*]),
                    }
                ),+]
            }

            fn run(
                function: ::std::string::String,
                args: ::std::vec::Vec<u8>,
                codec: $crate::Codec,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::JobError> {
                match function.as_str() {
                    $( stringify!($name) => $crate::invoke($name, &args, codec), )+
                    other => ::std::result::Result::Err($crate::JobError::UnknownFunction(
                        ::std::string::String::from(other),
                    )),
                }
            }
        }

        $crate::bindings::__export_job_world!(__SluiceJobs with_types_in $crate::bindings);
    };
}
