//! A module built against sluice:job@0.1.0 with the pinned 0.1.0 SDK: newer hosts must keep
//! uploading and running it unchanged.

use serde::Deserialize;
use sluice_guest_sdk::log;

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

fn greet(args: Greeting) -> Result<String, String> {
    log::info(format!("greeting {} the 0.1.0 way", args.name));
    Ok(format!("Hello from 0.1.0, {}!", args.name))
}

fn fail() -> Result<(), String> {
    Err("a 0.1.0 job failing as it always did".to_string())
}

sluice_guest_sdk::export_jobs! {
    /// Returns "Hello from 0.1.0, NAME!" for args {"name": NAME}.
    greet,
    /// Always fails.
    fail,
}
