//! The CLI through a node's API (`--url`), on both stores: the data commands print what they
//! print on the database itself, refuse with the same words, never open a database, and
//! carry the token's role.

use std::process::Output;

use serde_json::Value;
use sluice_test_artifacts as guests;

use crate::api::Node;
use crate::support::binary::Sluice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_a_node_on_sqlite() {
    the_cli_works_through_a_node(Sluice::sqlite().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_a_node_on_postgres() {
    the_cli_works_through_a_node(Sluice::postgres().await);
}

/// The CLI of a machine with no database, pointed at a node's API.
struct Remote {
    /// A database nothing listens on: a command that opened it would fail.
    no_database: Sluice,
    url: String,
    token: Option<String>,
}

impl Remote {
    fn output(&self, args: &[&str]) -> Output {
        let mut command = self.no_database.command(args);
        command.env("SLUICE_URL", &self.url);
        match &self.token {
            Some(token) => command.env("SLUICE_TOKEN", token),
            None => command.env_remove("SLUICE_TOKEN"),
        };
        command.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "sluice --url {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(!output.status.success(), "sluice --url {args:?} succeeded");
        String::from_utf8(output.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

fn the_cli_works_through_a_node(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve"]);
    let mut remote = Remote {
        no_database: Sluice {
            database_url: "postgres://nobody@127.0.0.1:1/none".to_string(),
        },
        url: node.base.clone(),
        token: None,
    };

    // Upload through the node, then the same bytes again.
    let uploaded = remote.json(&["upload", guests::HELLO]);
    assert_eq!(uploaded["name"], "hello");
    assert_eq!(uploaded["version"], 1);
    assert_eq!(uploaded["already_present"], false);
    assert!(
        remote
            .ok(&["upload", guests::HELLO])
            .contains("already uploaded")
    );
    let junk = std::env::temp_dir().join(format!("junk-{}.wasm", std::process::id()));
    std::fs::write(&junk, b"not wasm").unwrap();
    let refused = remote.fails(&["upload", junk.to_str().unwrap()]);
    let local = sluice.fails(&["upload", junk.to_str().unwrap()]);
    assert_eq!(refused, local, "the node's refusal reads as the CLI's own");
    assert!(refused.contains("was not uploaded"), "{refused}");

    // Enqueue: one, a batch, and the CLI's refusals word for word.
    let one = remote.json(&[
        "enqueue",
        "hello",
        "greet",
        r#"{"name":"Ada"}"#,
        "--priority",
        "3",
    ]);
    let id = one["id"].as_i64().unwrap();
    let batch = (0..25)
        .map(|i| format!("{{\"name\":\"n{i}\"}}\n"))
        .collect::<String>();
    let file = std::env::temp_dir().join(format!("batch-{}.jsonl", std::process::id()));
    std::fs::write(&file, batch).unwrap();
    let count = remote.json(&[
        "enqueue",
        "hello",
        "greet",
        "--batch",
        file.to_str().unwrap(),
    ]);
    assert_eq!(count["count"], 25);
    for call in [
        &["enqueue", "hello", "nope"][..],
        &["enqueue", "nope", "greet"],
        &["enqueue", "hello", "greet", "--max-attempts", "0"],
    ] {
        assert_eq!(remote.fails(call), sluice.fails(call), "{call:?}");
    }
    let keyed = ["enqueue", "hello", "noop", "--idempotency-key", "k-1"];
    let first = remote.json(&keyed);
    let again = remote.json(&keyed);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["existing"], true);

    // Reads: the same JSON as on the database itself.
    for read in [
        &["jobs", "--limit", "100"][..],
        &["jobs", "--state", "available", "--limit", "7"],
        &["job", &id.to_string()],
        &["queues"],
        &["modules"],
    ] {
        assert_eq!(remote.json(read), sluice.json(read), "{read:?}");
    }
    let job = remote.json(&["job", &id.to_string()]);
    assert_eq!(
        (job["args"]["name"].as_str(), job["priority"].as_i64()),
        (Some("Ada"), Some(3))
    );
    // Past one page of the API's listing.
    assert_eq!(
        remote
            .json(&["jobs", "--limit", "1500"])
            .as_array()
            .unwrap()
            .len(),
        27
    );

    // Actions.
    let cancelled = remote.json(&["job", "cancel", &id.to_string()]);
    assert_eq!(cancelled["state"], "cancelled");
    let retried = remote.json(&["job", "retry", &id.to_string()]);
    assert_eq!(retried["state"], "available");
    remote.ok(&["job", "delete", &id.to_string()]);
    assert!(sluice.fails(&["job", &id.to_string()]).contains("no job"));
    assert_eq!(
        remote.fails(&["job", &id.to_string()]),
        sluice.fails(&["job", &id.to_string()])
    );
    remote.ok(&["queue", "pause", "default"]);
    remote.ok(&["queue", "concurrency", "default", "3"]);
    let queues = sluice.json(&["queues"]);
    assert_eq!(queues[0]["paused"], true);
    assert_eq!(queues[0]["concurrency"], 3);
    remote.ok(&["queue", "resume", "default"]);
    assert_eq!(sluice.json(&["queues"])[0]["paused"], false);
    let audit = sluice.json(&["audit"]);
    assert!(
        audit.to_string().contains("queue.pause"),
        "actions through the node are audited: {audit}"
    );

    // Commands that work on a database say so instead of trying one.
    let refused = remote.fails(&["migrate"]);
    assert!(refused.contains("works on the database"), "{refused}");

    // Once the store has tokens, the node wants one, and the role decides.
    let read = sluice.ok(&["token", "create", "--role", "read", "--name", "viewer"]);
    let refused = remote.fails(&["jobs"]);
    assert!(refused.contains("Authorization"), "{refused}");
    remote.token = Some(read.trim().to_string());
    assert_eq!(
        remote.json(&["jobs", "--limit", "100"]),
        sluice.json(&["jobs", "--limit", "100"])
    );
    let refused = remote.fails(&["enqueue", "hello", "noop"]);
    assert!(refused.contains("role"), "{refused}");

    // Tokens and the audit log through the node, with an admin token only.
    let refused = remote.fails(&["token", "list"]);
    assert!(refused.contains("this needs admin"), "{refused}");
    let admin = sluice.ok(&["token", "create", "--role", "admin", "--name", "boss"]);
    remote.token = Some(admin.trim().to_string());
    let made = remote.json(&["token", "create", "--role", "operate", "--name", "worker"]);
    assert_eq!(
        (made["name"].as_str(), made["role"].as_str()),
        (Some("worker"), Some("operate"))
    );
    let worker = made["token"].as_str().unwrap().to_string();
    assert!(worker.starts_with("sluice_"), "{made}");
    assert_eq!(
        remote.json(&["token", "list"]),
        sluice.json(&["token", "list"])
    );
    assert_eq!(remote.json(&["token", "list"]).as_array().unwrap().len(), 3);
    let taken = ["token", "create", "--role", "read", "--name", "worker"];
    assert_eq!(remote.fails(&taken), sluice.fails(&taken));
    let missing = ["token", "revoke", "nobody"];
    assert_eq!(remote.fails(&missing), sluice.fails(&missing));
    remote.token = Some(worker.clone());
    remote.ok(&["enqueue", "hello", "noop"]);
    remote.token = Some(admin.trim().to_string());
    remote.ok(&["token", "revoke", "worker"]);
    remote.token = Some(worker);
    let refused = remote.fails(&["jobs"]);
    assert!(refused.contains("revoked, or never made"), "{refused}");
    remote.token = Some(admin.trim().to_string());
    let audit = remote.json(&["audit", "--limit", "1500"]);
    assert_eq!(audit, sluice.json(&["audit", "--limit", "1500"]));
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions[..2],
        [("boss", "token.revoke"), ("boss", "token.create")],
        "{audit}"
    );

    // A node that is not there is named.
    remote.url = "http://127.0.0.1:1".to_string();
    let refused = remote.fails(&["jobs"]);
    assert!(refused.contains("cannot reach the Sluice API"), "{refused}");
}
