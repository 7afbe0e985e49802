//! Fault tests through the real `sluice` binary: many nodes on one store, crashes at chosen
//! moments, database outages, hostile guests under load.
//!
//! Timings are what these scenarios measure, so each one has the machine to itself while it
//! runs (`cluster::own_the_machine`). `SLUICE_SOAK=1` scales every scenario up for a long
//! manual run (`.ci/soak`).

mod autoscale;
mod breakers;
mod cluster;
mod compose;
mod crashes;
mod cron;
mod hostile_load;
mod limits;
mod many_nodes;
mod outages;
mod poison;
#[path = "../support/mod.rs"]
mod support;
