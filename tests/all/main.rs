//! Integration tests: one binary (fastest to link), one module per part of Sluice.

/// Runs each named scenario (an `async fn(Sluice)` of the module that invokes it) as two
/// tests, `sqlite::NAME` and `postgres::NAME`, each on a fresh store.
macro_rules! both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Sluice::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Sluice::postgres().await).await;
                }
            )*
        }
    };
}

mod api;
mod cli;
mod client;
mod compose;
mod cron;
mod dashboard;
mod fuzz;
mod guests;
mod remote;
mod runner;
mod sandbox;
mod store;
#[path = "../support/mod.rs"]
mod support;
