//! Bounded capture of a guest's log lines, stdout and stderr into the attempt's result.
//!
//! One byte budget covers all three streams. Writes past it are counted and dropped, never
//! refused: a guest that prints too much must not fail because of it (Rust's `println!`
//! panics when stdout reports an error).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::model::{LogLine, LogStream};

/// The shared, bounded record of everything a guest wrote during one attempt.
#[derive(Clone)]
pub(crate) struct Capture {
    inner: Arc<Mutex<CaptureState>>,
}

struct CaptureState {
    budget: usize,
    used: usize,
    dropped: u64,
    lines: Vec<LogLine>,
    /// Bytes of a stdout/stderr line not yet ended by a newline.
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

impl Capture {
    pub fn new(budget: usize) -> Capture {
        Capture {
            inner: Arc::new(Mutex::new(CaptureState {
                budget,
                used: 0,
                dropped: 0,
                lines: Vec::new(),
                partial_stdout: Vec::new(),
                partial_stderr: Vec::new(),
            })),
        }
    }

    /// Records one log line from the `host.log` import.
    pub fn log(&self, stream: LogStream, text: &str) {
        let mut state = self.inner.lock().unwrap();
        let kept = state.take_budget(text.len());
        if kept > 0 {
            let text = truncate_on_char_boundary(text, kept).to_string();
            state.lines.push(LogLine { stream, text });
        }
    }

    /// A WASI stdout or stderr that writes into this capture.
    pub fn stream(&self, stream: LogStream) -> CapturedStream {
        CapturedStream {
            capture: self.clone(),
            stream,
        }
    }

    fn write(&self, stream: LogStream, bytes: &[u8]) {
        let mut state = self.inner.lock().unwrap();
        let kept = state.take_budget(bytes.len());
        let kept = &bytes[..kept];
        let mut pending = std::mem::take(state.partial(stream));
        pending.extend_from_slice(kept);
        let mut rest = pending.as_slice();
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&rest[..newline]).into_owned();
            state.lines.push(LogLine { stream, text });
            rest = &rest[newline + 1..];
        }
        *state.partial(stream) = rest.to_vec();
    }

    /// The captured lines (unfinished stdout/stderr lines included) and the bytes dropped.
    pub fn finish(&self) -> (Vec<LogLine>, u64) {
        let mut state = self.inner.lock().unwrap();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(state.partial(stream));
            if !rest.is_empty() {
                let text = String::from_utf8_lossy(&rest).into_owned();
                state.lines.push(LogLine { stream, text });
            }
        }
        let mut lines = std::mem::take(&mut state.lines);
        for line in &mut lines {
            if line.text.contains('\0') {
                line.text = super::text::without_nul(&line.text);
            }
        }
        (lines, state.dropped)
    }
}

impl CaptureState {
    /// Reserves up to `wanted` bytes of the budget; returns how many were granted.
    fn take_budget(&mut self, wanted: usize) -> usize {
        let granted = wanted.min(self.budget - self.used);
        self.used += granted;
        self.dropped += (wanted - granted) as u64;
        granted
    }

    fn partial(&mut self, stream: LogStream) -> &mut Vec<u8> {
        match stream {
            LogStream::Stderr => &mut self.partial_stderr,
            _ => &mut self.partial_stdout,
        }
    }
}

fn truncate_on_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest's stdout or stderr, feeding a [`Capture`].
#[derive(Clone)]
pub(crate) struct CapturedStream {
    capture: Capture,
    stream: LogStream,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Writes are always accepted in full: this is the largest chunk a guest may hand us at once.
const WRITE_PERMIT: usize = 64 << 10;

#[async_trait::async_trait]
impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.capture.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.capture.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
