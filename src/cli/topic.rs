//! `sluice topic subscribe|unsubscribe|list|publish`: topics, where every subscription gets
//! its own job for each event published.

use sluice::store::Subscription;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Each event published to TOPIC becomes a job of MODULE's FUNCTION on QUEUE.
    Subscribe {
        topic: String,
        queue: String,
        module: String,
        function: String,
        /// Attempts each delivered job has.
        #[arg(long, default_value_t = sluice::model::NewJob::DEFAULT_MAX_ATTEMPTS)]
        max_attempts: i32,
    },
    /// Remove a subscription.
    Unsubscribe {
        topic: String,
        queue: String,
        module: String,
        function: String,
    },
    /// List the subscriptions.
    List,
    /// Publish ARGS_JSON to TOPIC: one job per subscription, in one transaction.
    Publish {
        topic: String,
        /// The event as JSON; `null` when omitted.
        args: Option<String>,
        /// The partition the jobs count in, on queues with partitions.
        #[arg(long)]
        partition_key: Option<String>,
    },
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let target = &context.target;
    match args.action {
        Action::Subscribe {
            topic,
            queue,
            module,
            function,
            max_attempts,
        } => {
            let subscription = Subscription {
                topic,
                queue,
                module,
                function,
                max_attempts,
            };
            let shown = describe(&subscription);
            let added = target.subscribe(subscription).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "subscribed": shown, "new": added }));
            } else if added {
                out!("subscribed {shown}");
            } else {
                out!("{shown} was subscribed already");
            }
        }
        Action::Unsubscribe {
            topic,
            queue,
            module,
            function,
        } => {
            let subscription = Subscription {
                topic,
                queue,
                module,
                function,
                max_attempts: 1,
            };
            let shown = describe(&subscription);
            target.unsubscribe(subscription).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "unsubscribed": shown }));
            } else {
                out!("unsubscribed {shown}");
            }
        }
        Action::List => {
            let subscriptions = target.subscriptions().await?;
            if context.json {
                super::print_view(&subscriptions);
                return Ok(());
            }
            if subscriptions.is_empty() {
                out!(
                    "no subscriptions; add one with `sluice topic subscribe TOPIC QUEUE MODULE FUNCTION`"
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = subscriptions
                .iter()
                .map(|s| {
                    vec![
                        s.topic.clone(),
                        s.queue.clone(),
                        format!("{}.{}", s.module, s.function),
                        s.max_attempts.to_string(),
                    ]
                })
                .collect();
            super::print_table(&["TOPIC", "QUEUE", "JOB", "ATTEMPTS"], &rows);
        }
        Action::Publish {
            topic,
            args,
            partition_key,
        } => {
            let args = args.unwrap_or_else(|| "null".into());
            let ids = target.publish(&topic, &args, partition_key).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "topic": topic, "ids": ids }));
            } else if ids.is_empty() {
                out!("published to {topic}: no subscription, no job");
            } else {
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                out!("published to {topic}: jobs {}", ids.join(", "));
            }
        }
    }
    Ok(())
}

fn describe(subscription: &Subscription) -> String {
    format!(
        "{} to {}.{} on {}",
        subscription.topic, subscription.module, subscription.function, subscription.queue
    )
}
