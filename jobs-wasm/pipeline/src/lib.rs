//! The example pipeline, after the seed's social-media one: `ingest` fans a batch of posts
//! out to one `transform` job per post (each post's author its partition key), and a
//! `store` job that waits for them all fans in: it aggregates their outputs and publishes
//! a summary to the topic `posts.stored`, whose subscribers (`notify`) each get a job.
//!
//! Each step is a sandboxed attempt. The children and the event are written only when the
//! attempt that made them completes, so a retried step never duplicates the next one.

use std::collections::BTreeMap;
use std::convert::Infallible;

use serde::{Deserialize, Serialize};
use sluice_guest_sdk::compose::{self, Job};
use sluice_guest_sdk::{JobFailure, log};

#[derive(Deserialize, Serialize, Clone)]
struct Post {
    author: String,
    text: String,
}

#[derive(Deserialize)]
struct Feed {
    posts: Vec<Post>,
}

/// Ingests a feed: one `transform` per post, then a `store` that waits for every one.
fn ingest(feed: Feed) -> Result<usize, JobFailure> {
    let mut transformed = Vec::with_capacity(feed.posts.len());
    for post in &feed.posts {
        let child = Job::new("pipeline", "transform")
            .args(post)
            .partition_key(post.author.as_str())
            .enqueue()?;
        transformed.push(child);
    }
    Job::new("pipeline", "store")
        .depends_on_all(&transformed)
        .enqueue()?;
    log::info(format!("ingested {} posts", feed.posts.len()));
    Ok(feed.posts.len())
}

#[derive(Deserialize, Serialize)]
struct Transformed {
    author: String,
    words: usize,
    hashtags: Vec<String>,
    mentions: Vec<String>,
}

/// Normalises one post: its words, hashtags and mentions.
fn transform(post: Post) -> Result<Transformed, Infallible> {
    let mut hashtags = Vec::new();
    let mut mentions = Vec::new();
    let mut words = 0;
    for word in post.text.split_whitespace() {
        words += 1;
        let clean: String = word
            .trim_matches(|c: char| !c.is_alphanumeric() && c != '#' && c != '@')
            .to_lowercase();
        if let Some(tag) = clean.strip_prefix('#').filter(|tag| !tag.is_empty()) {
            hashtags.push(tag.to_string());
        } else if let Some(name) = clean.strip_prefix('@').filter(|name| !name.is_empty()) {
            mentions.push(name.to_string());
        }
    }
    Ok(Transformed {
        author: post.author,
        words,
        hashtags,
        mentions,
    })
}

#[derive(Serialize, Deserialize)]
struct Summary {
    posts: usize,
    words: usize,
    by_author: BTreeMap<String, usize>,
    /// Hashtags by how often they were used, most used first (ties by name).
    top_hashtags: Vec<(String, usize)>,
}

/// Fans in: aggregates every transformed post and publishes the summary.
fn store() -> Result<Summary, JobFailure> {
    let mut summary = Summary {
        posts: 0,
        words: 0,
        by_author: BTreeMap::new(),
        top_hashtags: Vec::new(),
    };
    let mut tags = BTreeMap::<String, usize>::new();
    for post in compose::outputs::<Transformed>()? {
        summary.posts += 1;
        summary.words += post.words;
        *summary.by_author.entry(post.author).or_default() += 1;
        for tag in post.hashtags {
            *tags.entry(tag).or_default() += 1;
        }
    }
    let mut top: Vec<(String, usize)> = tags.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    summary.top_hashtags = top;
    compose::publish("posts.stored", &summary)?;
    Ok(summary)
}

/// A subscriber of `posts.stored`: says what was stored.
fn notify(summary: Summary) -> Result<String, Infallible> {
    let message = format!(
        "stored {} posts ({} words) by {} authors",
        summary.posts,
        summary.words,
        summary.by_author.len()
    );
    log::info(&message);
    Ok(message)
}

sluice_guest_sdk::export_jobs! {
    /// Fans {"posts": [{"author", "text"}]} out to a transform per post, and in to a store.
    ingest,
    /// Counts one post's words and finds its hashtags and mentions.
    transform,
    /// Aggregates the transformed posts it waited for, and publishes to `posts.stored`.
    store,
    /// Subscriber of `posts.stored`: describes the summary.
    notify,
}
