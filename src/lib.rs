//! Sluice: background jobs, each attempt in its own WebAssembly sandbox.
//!
//! With the default `node` feature, everything a node is; with only `client`, what an
//! application needs to enqueue jobs (`client`, `model`, `store`).

#[cfg(feature = "node")]
pub mod api;
#[cfg(feature = "node")]
pub mod app;
pub mod breakers;
#[cfg(feature = "client")]
pub mod client;
pub mod compose;
#[cfg(feature = "node")]
pub mod config;
#[cfg(feature = "node")]
pub mod engine;
pub mod limits;
#[cfg(feature = "node")]
pub mod maintenance;
#[cfg(feature = "node")]
pub mod metrics;
pub mod model;
#[cfg(feature = "node")]
pub mod ops;
#[cfg(feature = "node")]
pub mod os;
#[cfg(feature = "node")]
pub mod runner;
#[cfg(feature = "node")]
pub mod sandbox;
#[cfg(feature = "node")]
pub mod schedule;
#[cfg(feature = "node")]
pub mod settings;
pub mod store;
pub mod unique;
