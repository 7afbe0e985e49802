//! Integration tests: one binary (fastest to link), one module per part of Sluice.

mod guests;
mod sandbox;
mod store;
mod support;
