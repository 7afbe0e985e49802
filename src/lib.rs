//! Sluice: background jobs, each attempt in its own WebAssembly sandbox.

pub mod api;
pub mod app;
pub mod config;
pub mod engine;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod os;
pub mod runner;
pub mod sandbox;
pub mod settings;
pub mod store;
