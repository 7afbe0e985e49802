//! `sluice breaker list|set|remove|reset`: circuit breakers per module and function.

use std::time::Duration;

use sluice::breakers::BreakerPolicy;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List the breakers: policies, states and the calls in their windows.
    List,
    /// Guard FUNCTION of MODULE (`*`: each of its functions without a policy of its own)
    /// with a breaker: it opens when the failure rate over the window passes the threshold,
    /// and while open its jobs wait without spending an attempt.
    Set {
        module: String,
        function: String,
        /// The share of failed calls (0 to 1) over the window that opens it.
        #[arg(long, default_value_t = 0.5)]
        failure_rate: f64,
        /// The window the rate is measured over.
        #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
        window: Duration,
        /// Fewer calls than this in the window never open it.
        #[arg(long, default_value_t = 20)]
        min_calls: u32,
        /// How long it stays open after a first trip; each trip in a row doubles it.
        #[arg(long, value_parser = super::parse_duration, default_value = "30s")]
        cooldown: Duration,
        #[arg(long, value_parser = super::parse_duration, default_value = "10m")]
        max_cooldown: Duration,
        /// Probe attempts after the cooldown that decide between closing and reopening.
        #[arg(long, default_value_t = 3)]
        probes: u32,
        /// Failure classes that do not count (comma-separated; `--ignore ''` counts all).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "bad_args,unknown_function"
        )]
        ignore: Vec<String>,
    },
    /// Remove the policy of FUNCTION of MODULE (or `*`); its jobs run unguarded.
    Remove { module: String, function: String },
    /// Close the breaker of FUNCTION of MODULE now.
    Reset { module: String, function: String },
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::List => {
            let breakers = context.target.breakers().await?;
            if context.json {
                super::print_view(&breakers);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = breakers
                .iter()
                .map(|breaker| {
                    vec![
                        format!("{}.{}", breaker.module, breaker.function),
                        serde_json::to_value(breaker.state)
                            .ok()
                            .and_then(|state| state.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        format!("{}/{}", breaker.failures, breaker.calls),
                        breaker.trips.to_string(),
                        breaker
                            .reopen_at
                            .map_or_else(String::new, |at| at.to_rfc3339()),
                    ]
                })
                .collect();
            super::print_table(
                &["FUNCTION", "STATE", "FAILED", "TRIPS", "PROBES AT"],
                &rows,
            );
        }
        Action::Set {
            module,
            function,
            failure_rate,
            window,
            min_calls,
            cooldown,
            max_cooldown,
            probes,
            ignore,
        } => {
            let policy = BreakerPolicy {
                failure_rate,
                window_secs: window.as_secs(),
                min_calls,
                cooldown_secs: cooldown.as_secs(),
                max_cooldown_secs: max_cooldown.as_secs(),
                probes,
                ignore: ignore.into_iter().filter(|c| !c.is_empty()).collect(),
            };
            context
                .target
                .set_breaker(&module, &function, Some(&policy))
                .await?;
            if context.json {
                super::print_json(&serde_json::json!({
                    "module": module, "function": function, "policy": policy,
                }));
            } else {
                out!("breaker {module}.{function} set");
            }
        }
        Action::Remove { module, function } => {
            context.target.set_breaker(&module, &function, None).await?;
            out!("breaker {module}.{function} removed");
        }
        Action::Reset { module, function } => {
            context.target.reset_breaker(&module, &function).await?;
            out!("breaker {module}.{function} closed");
        }
    }
    Ok(())
}
