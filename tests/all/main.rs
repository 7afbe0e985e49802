//! Integration tests: one binary (fastest to link), one module per part of Sluice.

mod cli;
mod guests;
mod sandbox;
mod store;
mod support;
