//! Paths of the guests in jobs-wasm/, built for wasm32-wasip2 by this crate's build script.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
