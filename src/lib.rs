//! Sluice: background jobs, each attempt in its own WebAssembly sandbox.

pub mod model;
pub mod sandbox;
pub mod store;
