//! Integration tests: one binary (fastest to link), one module per part of Sluice.

mod api;
mod cli;
mod client;
mod dashboard;
mod fuzz;
mod guests;
mod remote;
mod runner;
mod sandbox;
mod store;
#[path = "../support/mod.rs"]
mod support;
