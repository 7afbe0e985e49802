//! The HTTP API end to end through the real binary, on both stores: every endpoint, its
//! error paths as problem documents, nothing stored by a refused request; and the committed
//! OpenAPI document, which must match the code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_test_artifacts as guests;

use crate::support::binary::Sluice;

both_stores!(
    jobs_go_in_and_out_through_the_api,
    bad_requests_are_problems_and_store_nothing,
    tokens_decide_who_may_do_what,
    metrics_count_a_known_run,
    a_running_node_follows_a_queues_concurrency,
    queue_limits_hold_on_a_running_node,
    breakers_are_set_shown_reset_and_removed,
    an_idempotency_key_returns_the_same_job,
    a_unique_job_returns_the_job_of_the_same_call,
    a_killed_node_is_shown_dead,
    bulk_actions_take_ids_or_a_bounded_filter,
    enqueues_are_checked_against_the_module_as_uploaded,
    composition_goes_through_the_api,
);

/// The committed `openapi.json` is what the code generates. To update it after changing
/// the API: `SLUICE_BLESS=1 cargo test --test all openapi`.
#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let generated = sluice::api::openapi_json();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json differs from the API the code serves; regenerate it with \
         `SLUICE_BLESS=1 cargo test --test all openapi` and commit it"
    );
    let document: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/modules/{name}",
        "/v1/queues",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
}

/// A node serving the API on a free loopback port; killed when dropped.
pub(crate) struct Node {
    child: Child,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Node {
    pub(crate) fn start(sluice: &Sluice, command: &[&str]) -> Node {
        let mut args = command.to_vec();
        if !args.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        let mut child = sluice
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (address, found) = std::sync::mpsc::channel();
        // Reads the log for the address, then keeps draining it so the node never blocks.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(at) = line.find("API listening on http://") {
                    let _ = address.send(line[at + "API listening on ".len()..].to_string());
                }
            }
        });
        let base = found
            .recv_timeout(Duration::from_secs(60))
            .expect("the node never said where the API listens");
        Node {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with `Authorization: Bearer TOKEN`.
    pub(crate) async fn with_token(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        response(request.send().await.unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        response(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        response(
            self.http
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        response(request.send().await.unwrap()).await
    }

    /// The body of a GET that must succeed, as text, with its content type.
    pub(crate) async fn text(&self, path: &str) -> (String, String) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        (content_type, response.text().await.unwrap())
    }

    pub(crate) async fn delete(&self, path: &str) -> (StatusCode, Value) {
        response(self.http.delete(self.url(path)).send().await.unwrap()).await
    }

    /// Polls a job until `done` holds for it (at most 60 s).
    pub(crate) async fn wait_for_job(
        &self,
        id: i64,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if done(&job) {
                return job;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job {id} never became {what}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn job_count(&self) -> usize {
        let (_, page) = self.get("/v1/jobs?limit=1000").await;
        page["jobs"].as_array().unwrap().len()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and JSON body (null when empty); problems must carry their media type.
pub(crate) async fn response(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap();
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status}");
    }
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, value)
}

/// Posts `size` zero bytes to `path` with `Transfer-Encoding: chunked` (no declared length)
/// over a raw connection, and returns the whole reply.
async fn chunked_post(base: &str, path: &str, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/wasm\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 10_000];
    for _ in 0..size / chunk.len() {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

pub(crate) fn hello_wasm() -> Vec<u8> {
    std::fs::read(guests::HELLO).unwrap()
}

async fn jobs_go_in_and_out_through_the_api(sluice: Sluice) {
    let node = Node::start(
        &sluice,
        &["run", "--queue", "default=4", "--queue", "other=2"],
    );

    // Upload: a new version, then the same bytes again.
    let (status, uploaded) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    assert_eq!(uploaded["version"], 1);
    assert_eq!(uploaded["already_present"], false);
    assert!(
        uploaded["functions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "greet")
    );
    let (status, again) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["already_present"], true);
    let (_, modules) = node.get("/v1/modules").await;
    assert_eq!(modules[0]["name"], "hello");
    let (status, module) = node.get("/v1/modules/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(module["latest"], 1);
    assert_eq!(module["versions"].as_array().unwrap().len(), 1);
    assert_eq!(module["versions"][0]["digest"], uploaded["digest"]);

    // One job runs to completion; its attempt is recorded with its forensics.
    let (status, enqueued) = node
        .post(
            "/v1/jobs",
            json!({"module": "hello", "function": "greet", "args": {"name": "api"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enqueued}");
    let id = enqueued["id"].as_i64().unwrap();
    let job = node
        .wait_for_job(id, "completed", |job| job["state"] == "completed")
        .await;
    assert_eq!(job["output"], "Hello, api!");
    assert_eq!(job["attempts"][0]["outcome"], "completed");
    assert!(job["attempts"][0]["fuel_consumed"].as_u64().unwrap() > 0);
    assert!(job["attempts"][0]["node"].as_str().unwrap().len() > 1);
    // The CLI prints the same view of the job.
    let cli = sluice.job(id);
    assert_eq!(cli["output"], job["output"]);
    assert_eq!(cli["state"], job["state"]);

    // Bulk: every job stored, in order, on the queue asked for.
    let calls: Vec<Value> = (0..25)
        .map(|n| json!({"module": "hello", "function": "greet", "args": {"name": format!("n{n}")}, "queue": "other"}))
        .collect();
    let (status, bulk) = node.post("/v1/jobs/bulk", json!({ "jobs": calls })).await;
    assert_eq!(status, StatusCode::CREATED, "{bulk}");
    let ids: Vec<i64> = bulk["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 25);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    node.wait_for_job(ids[24], "completed", |job| job["state"] == "completed")
        .await;

    // Filters and the cursor.
    let (_, found) = node.get("/v1/jobs?queue=other&args=n17").await;
    let found = found["jobs"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["args"]["name"], "n17");
    let mut seen = Vec::new();
    let mut path = "/v1/jobs?queue=other&function=greet&limit=10".to_string();
    loop {
        let (status, page) = node.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(before) => {
                path = format!("/v1/jobs?queue=other&function=greet&limit=10&before={before}")
            }
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let (_, range) = node
        .get(&format!("/v1/jobs?after={}&before={}", ids[2], ids[6]))
        .await;
    let range: Vec<i64> = range["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(range, [ids[5], ids[4], ids[3]]);
    let (_, completed) = node.get("/v1/jobs?state=completed&module=hello").await;
    assert_eq!(completed["jobs"].as_array().unwrap().len(), 26);

    // A job that fails is discarded after its one attempt; retry gives it one more.
    let (_, failing) = node
        .post(
            "/v1/jobs",
            json!({"module": "hello", "function": "fail", "max_attempts": 1}),
        )
        .await;
    let failing = failing["id"].as_i64().unwrap();
    let job = node
        .wait_for_job(failing, "discarded", |job| job["state"] == "discarded")
        .await;
    assert_eq!(job["attempts"][0]["outcome"], "guest_error", "{job}");
    let (status, retried) = node
        .post(&format!("/v1/jobs/{failing}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    node.wait_for_job(failing, "discarded again", |job| {
        job["state"] == "discarded" && job["attempts"].as_array().unwrap().len() == 2
    })
    .await;

    // A scheduled job is cancelled; a finished one cannot be: 409.
    let (_, later) = node
        .post(
            "/v1/jobs",
            json!({"module": "hello", "function": "noop", "run_in_ms": 3_600_000}),
        )
        .await;
    let later = later["id"].as_i64().unwrap();
    let (status, cancelled) = node
        .post(&format!("/v1/jobs/{later}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");
    let (status, refused) = node.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "invalid_transition");

    // Delete: gone, then 404.
    let (status, _) = node.delete(&format!("/v1/jobs/{later}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = node.get(&format!("/v1/jobs/{later}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(gone["detail"], format!("no job with id {later}"));

    // Queues: counts by state; a paused queue is not claimed from.
    let (_, queues) = node.get("/v1/queues").await;
    let other = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "other")
        .unwrap();
    assert_eq!(other["counts"]["completed"], 25, "{other}");
    let (status, paused) = node.post("/v1/queues/other/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["paused"], true);
    let (_, waiting) = node
        .post(
            "/v1/jobs",
            json!({"module": "hello", "function": "noop", "queue": "other"}),
        )
        .await;
    let waiting = waiting["id"].as_i64().unwrap();
    // A job on a live queue enqueued after it completes, so the node has looked since.
    let (_, probe) = node
        .post("/v1/jobs", json!({"module": "hello", "function": "noop"}))
        .await;
    node.wait_for_job(probe["id"].as_i64().unwrap(), "completed", |job| {
        job["state"] == "completed"
    })
    .await;
    let (_, still) = node.get(&format!("/v1/jobs/{waiting}")).await;
    assert_eq!(still["state"], "available", "{still}");
    let (_, queues) = node.get("/v1/queues").await;
    assert!(
        queues
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "other" && q["paused"] == true)
    );
    node.post("/v1/queues/other/resume", json!({})).await;
    node.wait_for_job(waiting, "completed", |job| job["state"] == "completed")
        .await;

    // The node is in the registry, with its queues.
    let (_, nodes) = node.get("/v1/nodes").await;
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let queues: Vec<&str> = nodes[0]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap())
        .collect();
    assert!(
        queues.contains(&"other") && queues.contains(&"default"),
        "{queues:?}"
    );

    // The document and the health check.
    let (status, document) = node.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let health = node.http.get(node.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

async fn bad_requests_are_problems_and_store_nothing(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve", "--max-module-size", "200000"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let greet = |extra: Value| {
        let mut call = json!({"module": "hello", "function": "greet", "args": {"name": "x"}});
        for (key, value) in extra.as_object().unwrap() {
            call[key] = value.clone();
        }
        call
    };
    // Each refused enqueue: its status, its stable code, the CLI's words.
    let cases = [
        (
            json!({"module": "nope", "function": "greet"}),
            StatusCode::NOT_FOUND,
            "module_not_found",
            "no module named `nope`",
        ),
        // A NUL no name could hold (PostgreSQL refuses it in text): refused, not a 500.
        (
            json!({"module": "a\u{0}", "function": "greet"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_module_name",
            "is not a valid module name",
        ),
        (
            greet(json!({"function": "gr\u{0}eet"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "is not a function name",
        ),
        (
            greet(json!({"version": 9})),
            StatusCode::NOT_FOUND,
            "module_version_not_found",
            "has no version 9",
        ),
        (
            greet(json!({"function": "nope"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_function",
            "exports no function `nope`",
        ),
        (
            greet(json!({"max_attempts": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "--max-attempts must be at least 1",
        ),
        (
            greet(json!({"fuel": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "--fuel must be at least 1",
        ),
        (
            greet(json!({"memory": 10})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "--memory must be at least",
        ),
        (
            greet(json!({"timeout_ms": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "--timeout must be longer than 0s",
        ),
        (
            greet(json!({"queue": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "is not a queue name",
        ),
        (
            greet(json!({"codec": "postcard", "args": "zz"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_args",
            "hex digits",
        ),
        (
            greet(json!({"run_at": "2030-01-01T00:00:00Z", "run_in_ms": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "not both",
        ),
        (
            greet(json!({"run_in_ms": u64::MAX})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "too far",
        ),
        (
            greet(json!({"surprise": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "unknown field `surprise`",
        ),
        (
            json!({"function": "greet"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "missing field `module`",
        ),
        (
            greet(json!({"args": "x".repeat(1 << 20)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "args_too_large",
            "the limit is 1048576 bytes",
        ),
    ];
    for (body, status, code, words) in cases {
        let (got, problem) = node.post("/v1/jobs", body.clone()).await;
        assert_eq!(got, status, "{body} -> {problem}");
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status.as_u16());
        assert_eq!(problem["type"], format!("urn:sluice:problem:{code}"));
        assert!(
            problem["detail"].as_str().unwrap().contains(words),
            "{problem} should say {words}"
        );
    }
    // A NUL in a path or a filter is a 4xx wherever it lands, on either store.
    for path in [
        "/v1/jobs?module=%00",
        "/v1/jobs?queue=%00",
        "/v1/modules/%00",
        "/v1/breakers",
    ] {
        let (got, body) = node.get(path).await;
        assert!(
            got.is_client_error() || got == StatusCode::OK,
            "{path}: {got} {body}"
        );
    }
    let (got, body) = node
        .post("/v1/breakers/hello/gr%00eet/reset", json!({}))
        .await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // The same refusals in bulk: the bad call is named, and none of the batch is stored.
    let (status, problem) = node
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [greet(json!({})), greet(json!({"function": "nope"}))]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "unknown_function");
    let (status, problem) = node
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [greet(json!({})), greet(json!({"codec": "postcard", "args": 5}))]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"].as_str().unwrap().starts_with("job 1: "),
        "{problem}"
    );
    let too_many: Vec<Value> = (0..=sluice::api::MAX_BULK_JOBS)
        .map(|_| greet(json!({})))
        .collect();
    let (status, problem) = node
        .post("/v1/jobs/bulk", json!({ "jobs": too_many }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 10000 jobs")
    );

    // Bodies that are not what the endpoint takes.
    let (status, problem) = node
        .post_raw("/v1/jobs", "application/json", b"{\"module\":".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "bad_request");
    let (status, problem) = node
        .post_raw("/v1/jobs", "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(problem["code"], "unsupported_media_type");

    // Uploads: not wasm, a bad name, over the node's cap (the CLI's words for each).
    let (status, problem) = node
        .post_raw("/v1/modules/junk", "application/wasm", b"garbage".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "invalid_module");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not WebAssembly")
    );
    let (status, problem) = node
        .post_raw("/v1/modules/bad%20name", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "bad_module_name");
    let (status, problem) = node
        .post_raw("/v1/modules/big", "application/wasm", vec![0; 300_000])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["code"], "module_too_large");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--max-module-size")
    );
    let (status, problem) = node.get("/v1/modules/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "module_not_found");
    // A refused upload leaves the connection usable: each request below goes down the one
    // connection the previous one left (a reply sent before the body was read used to close
    // it under the client's next request).
    let one_connection = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for _ in 0..20 {
        let refused = one_connection
            .post(node.url("/v1/modules/big"))
            .header("content-type", "application/wasm")
            .body(vec![0; 4 << 20])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers().get("connection"), None);
        let (status, _) = response(
            one_connection
                .get(node.url("/v1/modules/hello"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Without a declared length the cap holds as the body arrives, with the same problem.
    let reply = chunked_post(&node.base, "/v1/modules/big", 300_000).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("module_too_large"), "{reply}");
    assert!(reply.contains("the module is 300000 bytes"), "{reply}");

    // Queries and paths.
    for (path, status, code) in [
        (
            "/v1/jobs?state=bogus",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "/v1/jobs?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "/v1/jobs?limit=5000",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        ("/v1/jobs?limit=x", StatusCode::BAD_REQUEST, "bad_query"),
        ("/v1/jobs?colour=red", StatusCode::BAD_REQUEST, "bad_query"),
        ("/v1/jobs/abc", StatusCode::BAD_REQUEST, "bad_path"),
        ("/v1/jobs/12345", StatusCode::NOT_FOUND, "job_not_found"),
        ("/v1/nowhere", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (got, problem) = node.get(path).await;
        assert_eq!(got, status, "{path}: {problem}");
        assert_eq!(problem["code"], code, "{path}: {problem}");
    }
    let (status, problem) = node.delete("/v1/queues").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(problem["code"], "method_not_allowed");
    let (status, problem) = node.post("/v1/jobs/777/retry", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "job_not_found");

    // Nothing of the above was stored.
    assert_eq!(node.job_count().await, 0);
    assert_eq!(sluice.count("available"), 0);
}

async fn tokens_decide_who_may_do_what(sluice: Sluice) {
    use reqwest::Method;
    // With no token in the store, only loopback is served.
    let refused = sluice.fails(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(refused.contains("the store has no API token"), "{refused}");

    let token = |role: &str, name: &str| {
        let text = sluice.ok(&["token", "create", "--role", role, "--name", name]);
        text.trim().to_string()
    };
    let viewer = token("read", "viewer");
    let worker = token("operate", "worker");
    let boss = token("admin", "boss");
    assert!(
        viewer.starts_with("sluice_") && viewer.len() > 60,
        "{viewer}"
    );
    let again = sluice.fails(&["token", "create", "--role", "read", "--name", "viewer"]);
    assert!(again.contains("a token named `viewer` exists"), "{again}");
    let tokens = sluice.json(&["token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), 3);
    assert!(
        !tokens.to_string().contains(&viewer),
        "a token's text was stored or shown"
    );

    // Now tokens exist: an address beyond loopback is allowed, and every caller needs one.
    let node = Node::start(&sluice, &["run"]);
    let (status, problem) = node.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["code"], "unauthorized");
    let challenge = node.http.get(node.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(challenge.headers()["www-authenticate"], "Bearer");
    let (status, _) = node
        .with_token("sluice_not-a-real-one", Method::GET, "/v1/jobs", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The document and the health check stay open.
    assert_eq!(node.get("/openapi.json").await.0, StatusCode::OK);
    // A scraper needs a token too; any role will do.
    let scrape = |token: Option<&str>| {
        let mut request = node.http.get(node.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(scrape(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(Some(&viewer)).await, StatusCode::OK);

    let upload = |token: String| {
        let node = &node;
        async move {
            let request = node
                .http
                .post(node.url("/v1/modules/hello"))
                .bearer_auth(token)
                .header("content-type", "application/wasm")
                .body(hello_wasm());
            response(request.send().await.unwrap()).await
        }
    };
    let enqueue = json!({"module": "hello", "function": "noop"});
    // read: sees, but cannot enqueue or upload.
    assert_eq!(upload(viewer.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(upload(worker.clone()).await.0, StatusCode::FORBIDDEN);
    let (status, uploaded) = upload(boss.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let (status, problem) = node
        .with_token(&viewer, Method::POST, "/v1/jobs", Some(enqueue.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["code"], "forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("needs operate"),
        "{problem}"
    );
    let (status, enqueued) = node
        .with_token(&worker, Method::POST, "/v1/jobs", Some(enqueue.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enqueued}");
    let id = enqueued["id"].as_i64().unwrap();
    let (status, _) = node
        .with_token(&viewer, Method::GET, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for (method, path) in [
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::POST, format!("/v1/jobs/{id}/retry")),
        (Method::DELETE, format!("/v1/jobs/{id}")),
        (Method::POST, "/v1/queues/default/pause".to_string()),
        (Method::POST, "/v1/jobs/bulk".to_string()),
        (Method::GET, "/v1/audit".to_string()),
    ] {
        let (status, _) = node
            .with_token(&viewer, method, &path, Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "read may not {path}");
    }
    let (status, _) = node
        .with_token(&worker, Method::POST, "/v1/queues/default/pause", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = node
        .with_token(&worker, Method::GET, "/v1/audit", None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "operate may not read the audit log"
    );

    // The audit log names who did what; enqueues are not in it; refused actions neither.
    sluice.ok(&["queue", "resume", "default"]);
    let (status, audit) = node.with_token(&boss, Method::GET, "/v1/audit", None).await;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let entry = |actor: &str, action: &str, target: &str| {
        (actor.to_string(), action.to_string(), target.to_string())
    };
    assert_eq!(
        entries,
        [
            entry("cli", "queue.resume", "default"),
            entry("worker", "queue.pause", "default"),
            entry("boss", "module.upload", "hello v1"),
            entry("cli", "token.create", "boss (admin)"),
            entry("cli", "token.create", "worker (operate)"),
            entry("cli", "token.create", "viewer (read)"),
        ]
    );

    // A revoked token is refused from the next request on.
    sluice.ok(&["token", "revoke", "worker"]);
    let (status, _) = node
        .with_token(&worker, Method::GET, "/v1/jobs", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    drop(node);
    let wide = Node::start(&sluice, &["serve", "--listen", "0.0.0.0:0"]);
    assert!(wide.base.contains("0.0.0.0:"), "{}", wide.base);
}

/// The value of the sample `name{labels}` in a scrape, if it is there.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

async fn metrics_count_a_known_run(sluice: Sluice) {
    let node = Node::start(&sluice, &["run", "--queue", "default=4"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, one) = node
            .post("/v1/jobs", json!({"module": "hello", "function": "noop"}))
            .await;
        ids.push(one["id"].as_i64().unwrap());
    }
    let calls = json!({"jobs": [
        {"module": "hello", "function": "noop"},
        {"module": "hello", "function": "noop"},
        {"module": "hello", "function": "fail", "max_attempts": 1},
    ]});
    let (status, bulk) = node.post("/v1/jobs/bulk", calls).await;
    assert_eq!(status, StatusCode::CREATED, "{bulk}");
    ids.extend(
        bulk["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap()),
    );
    for id in ids {
        node.wait_for_job(id, "finished", |job| job["finalized_at"].is_string())
            .await;
    }

    // The last outcome's job leaves the node's in-flight set just after its write commits.
    let started = Instant::now();
    let (content_type, scrape) = loop {
        let (content_type, scrape) = node.text("/metrics").await;
        if sample(&scrape, "sluice_attempts_in_flight") == Some(0.0) {
            break (content_type, scrape);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{scrape}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(scrape.trim_end().ends_with("# EOF"), "{scrape}");
    let call = |function: &str| format!(r#"queue="default",module="hello",function="{function}""#);
    let noop = call("noop");
    let fail = call("fail");
    let expected = [
        (
            format!(r#"sluice_attempts_total{{{noop},class="completed"}}"#),
            5.0,
        ),
        (
            format!(r#"sluice_attempts_total{{{fail},class="guest_error"}}"#),
            1.0,
        ),
        (
            format!("sluice_attempt_duration_seconds_count{{{noop}}}"),
            5.0,
        ),
        (format!("sluice_attempt_fuel_count{{{fail}}}"), 1.0),
        (
            format!("sluice_attempt_peak_memory_bytes_count{{{noop}}}"),
            5.0,
        ),
        (
            r#"sluice_queue_wait_seconds_count{queue="default"}"#.to_string(),
            6.0,
        ),
        (
            r#"sluice_enqueued_jobs_total{queue="default"}"#.to_string(),
            6.0,
        ),
        (
            r#"sluice_queue_jobs{queue="default",state="completed"}"#.to_string(),
            5.0,
        ),
        (
            r#"sluice_queue_jobs{queue="default",state="discarded"}"#.to_string(),
            1.0,
        ),
        (
            r#"sluice_queue_jobs{queue="default",state="available"}"#.to_string(),
            0.0,
        ),
        ("sluice_instance_slots_in_use".to_string(), 0.0),
        ("sluice_memory_budget_used_bytes".to_string(), 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(
            sample(&scrape, &series),
            Some(value),
            "{series} in\n{scrape}"
        );
    }
    assert!(sample(&scrape, "sluice_instance_slots").unwrap() >= 4.0);
    assert!(sample(&scrape, "sluice_memory_budget_bytes").unwrap() > 0.0);
    assert!(sample(&scrape, "sluice_lease_renewals_total").is_some());
    // The fuel a noop burns lands in a bucket well under the largest.
    let fuel_sum = sample(&scrape, &format!("sluice_attempt_fuel_sum{{{noop}}}")).unwrap();
    assert!(fuel_sum > 0.0);
    // Bounded label sets: no job ids anywhere.
    assert!(!scrape.contains("id=\""), "{scrape}");

    // The same run in the stats for charts, once the node has added its counts (every 5 s).
    let started = Instant::now();
    loop {
        let (status, stats) = node.get("/v1/stats?minutes=5").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let series = &stats["series"][0];
        let total = |key: &str| {
            series["points"].as_array().map_or(0, |points| {
                points.iter().map(|p| p[key].as_u64().unwrap()).sum::<u64>()
            })
        };
        if total("completed") == 5 && total("failed") == 1 {
            assert_eq!(series["queue"], "default");
            assert_eq!(series["points"].as_array().unwrap().len(), 5);
            let busy = series["points"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["completed"].as_u64().unwrap() > 0)
                .unwrap();
            assert!(busy["wait_p99_ms"].is_u64(), "{stats}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, problem) = node.get("/v1/stats?minutes=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}

/// Polls the node's metrics until `series` reads `value` (at most 30 s).
async fn wait_for_sample(node: &Node, series: &str, value: f64) {
    let started = Instant::now();
    loop {
        let (_, scrape) = node.text("/metrics").await;
        if sample(&scrape, series) == Some(value) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{series} never read {value}:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The most attempts of `ids` that ran at the same moment, from their recorded history.
async fn most_at_once(node: &Node, ids: &[i64]) -> usize {
    let mut edges = Vec::new();
    for id in ids {
        let job = node
            .wait_for_job(*id, "completed", |job| job["state"] == "completed")
            .await;
        for attempt in job["attempts"].as_array().unwrap() {
            let at = |key: &str| crate::support::binary::time(&attempt[key]);
            // An end sorts before a start at the same instant: touching is not overlapping.
            edges.push((at("started_at"), 1));
            edges.push((at("finished_at"), -1));
        }
    }
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

async fn a_running_node_follows_a_queues_concurrency(sluice: Sluice) {
    let node = Node::start(&sluice, &["run", "--queue", "default=4"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let series = r#"sluice_queue_concurrency{queue="default"}"#;
    wait_for_sample(&node, series, 4.0).await;
    let set = |concurrency: Value| {
        let node = &node;
        async move {
            let request = node
                .http
                .put(node.url("/v1/queues/default/concurrency"))
                .json(&json!({ "concurrency": concurrency }));
            response(request.send().await.unwrap()).await
        }
    };
    let sleepers = |count: usize, ms: u64| {
        let node = &node;
        async move {
            let calls: Vec<Value> = (0..count)
                .map(|_| json!({"module": "hello", "function": "sleep", "args": {"ms": ms}}))
                .collect();
            let (status, bulk) = node.post("/v1/jobs/bulk", json!({ "jobs": calls })).await;
            assert_eq!(status, StatusCode::CREATED, "{bulk}");
            bulk["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_i64().unwrap())
                .collect::<Vec<i64>>()
        }
    };

    // Lowered to one: the jobs run one at a time.
    let (status, body) = set(json!(1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_sample(&node, series, 1.0).await;
    let (_, queues) = node.get("/v1/queues").await;
    assert_eq!(queues[0]["concurrency"], 1, "{queues}");
    let ids = sleepers(4, 150).await;
    assert_eq!(most_at_once(&node, &ids).await, 1);

    // Raised past the node's ceiling (the 4 slots its pool was sized for): clamped there.
    set(json!(100)).await;
    wait_for_sample(&node, series, 4.0).await;
    let ids = sleepers(8, 300).await;
    assert_eq!(most_at_once(&node, &ids).await, 4);

    // Cleared: the node's own setting again. A concurrency of 0 is refused.
    set(json!(2)).await;
    wait_for_sample(&node, series, 2.0).await;
    set(Value::Null).await;
    wait_for_sample(&node, series, 4.0).await;
    let (status, problem) = set(json!(0)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"].as_str().unwrap().contains("1 to 10000"),
        "{problem}"
    );
    let (_, audit) = node.get("/v1/audit").await;
    assert!(audit.to_string().contains("default=100"), "{audit}");
}

async fn queue_limits_hold_on_a_running_node(sluice: Sluice) {
    let node = Node::start(&sluice, &["run", "--queue", "default=4"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let set = |limits: Value| {
        let node = &node;
        async move {
            let request = node
                .http
                .put(node.url("/v1/queues/default/limits"))
                .json(&limits);
            response(request.send().await.unwrap()).await
        }
    };
    // Limits that could never start a job, or that name no partition, are refused in the
    // CLI's words, and nothing is stored.
    for (bad, words) in [
        (json!({"global_concurrency": 0}), "1 to 1000000"),
        (
            json!({"rate": {"starts": 5, "period_ms": 0}}),
            "1 ms to 1 day",
        ),
        (
            json!({"partition": {"by": "colour"}}),
            "module, function, args.FIELD or key",
        ),
    ] {
        let (status, problem) = set(bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(words),
            "{problem}"
        );
    }
    let (status, problem) = set(json!({"global": 2})).await;
    assert!(
        status.is_client_error(),
        "an unknown field: {status} {problem}"
    );
    let (_, queues) = node.get("/v1/queues").await;
    assert!(
        queues
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["limits"].is_null()),
        "{queues}"
    );

    // Two at once over all nodes, though the node runs four.
    let (status, body) = set(json!({"global_concurrency": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let calls: Vec<Value> = (0..6)
        .map(|_| json!({"module": "hello", "function": "sleep", "args": {"ms": 150}}))
        .collect();
    let (status, bulk) = node.post("/v1/jobs/bulk", json!({ "jobs": calls })).await;
    assert_eq!(status, StatusCode::CREATED, "{bulk}");
    let ids: Vec<i64> = bulk["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(most_at_once(&node, &ids).await, 2);
    let (_, scrape) = node.text("/metrics").await;
    let held = sample(&scrape, r#"sluice_claims_held_back_total{queue="default"}"#);
    assert!(held.is_some_and(|n| n >= 1.0), "{scrape}");
    let (_, queues) = node.get("/v1/queues").await;
    let default = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap();
    assert_eq!(
        default["limits"],
        json!({"global_concurrency": 2}),
        "{queues}"
    );

    // `{}` lifts them; the change is audited.
    let (status, _) = set(json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, queues) = node.get("/v1/queues").await;
    assert!(
        queues
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["limits"].is_null()),
        "{queues}"
    );
    let (_, audit) = node.get("/v1/audit").await;
    assert!(audit.to_string().contains("queue.limits"), "{audit}");
}

async fn breakers_are_set_shown_reset_and_removed(sluice: Sluice) {
    let node = Node::start(&sluice, &["run", "--queue", "default=2"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let put = |path: &str, body: Value| {
        let node = &node;
        let path = path.to_string();
        async move {
            response(
                node.http
                    .put(node.url(&path))
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Refused in the CLI's words.
    for (bad, words) in [
        (json!({"failure_rate": 1.5}), "above 0 and at most 1"),
        (json!({"ignore": ["sadness"]}), "not a failure class"),
        (json!({"probes": 0}), "1 to 1000 probes"),
    ] {
        let (status, problem) = put("/v1/breakers/hello/fail", bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(words),
            "{problem}"
        );
    }
    let (_, listed) = node.get("/v1/breakers").await;
    assert_eq!(listed, json!([]), "nothing stored by a refusal");

    // `fail` always fails: five calls open its breaker.
    let (status, policy) = put(
        "/v1/breakers/hello/fail",
        json!({"min_calls": 5, "cooldown_secs": 3600, "max_cooldown_secs": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    assert_eq!(policy["probes"], 3, "defaults fill the rest");
    // Nodes follow a policy within half a second: this one shows it read it.
    let series = r#"sluice_breaker_state{module="hello",function="fail"}"#;
    wait_for_sample(&node, series, 0.0).await;
    let calls: Vec<Value> = (0..5)
        .map(|_| json!({"module": "hello", "function": "fail", "max_attempts": 1}))
        .collect();
    let (status, _) = node.post("/v1/jobs/bulk", json!({ "jobs": calls })).await;
    assert_eq!(status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(30);
    let open = loop {
        let (_, listed) = node.get("/v1/breakers").await;
        if listed[0]["state"] == "open" {
            break listed[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never opened: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (open["calls"].as_u64(), open["failures"].as_u64()),
        (Some(5), Some(5))
    );
    assert!(open["reopen_at"].is_string());
    wait_for_sample(
        &node,
        r#"sluice_breaker_state{module="hello",function="fail"}"#,
        2.0,
    )
    .await;

    // A job enqueued while it is open waits, spending no attempt.
    let (_, job) = node
        .post("/v1/jobs", json!({"module": "hello", "function": "fail"}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let waiting = node
        .wait_for_job(id, "scheduled until the cooldown ends", |job| {
            job["state"] == "scheduled"
        })
        .await;
    assert_eq!(waiting["attempt"], 0, "{waiting}");

    // Reset closes it; removing the policy leaves the function unguarded.
    let (status, _) = node.post("/v1/breakers/hello/fail/reset", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = node.get("/v1/breakers").await;
    assert_eq!(listed[0]["state"], "closed", "{listed}");
    let (status, problem) = node.post("/v1/breakers/hello/nope/reset", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let removed = node
        .http
        .delete(node.url("/v1/breakers/hello/fail"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let (_, listed) = node.get("/v1/breakers").await;
    assert!(listed[0]["policy"].is_null(), "{listed}");
}

async fn an_idempotency_key_returns_the_same_job(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let call = json!({"module": "hello", "function": "noop", "idempotency_key": "order-17"});
    let (status, first) = node.post("/v1/jobs", call.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["existing"], false);
    let (status, again) = node.post("/v1/jobs", call).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["id"], &again["existing"]),
        (&first["id"], &json!(true))
    );

    // The header names the same key; one that contradicts the body is refused.
    let with_header = |key: &str, body: Value| {
        let node = &node;
        let request = node
            .http
            .post(node.url("/v1/jobs"))
            .header("idempotency-key", key)
            .json(&body);
        async move { response(request.send().await.unwrap()).await }
    };
    let plain = json!({"module": "hello", "function": "noop"});
    let (status, by_header) = with_header("order-17", plain.clone()).await;
    assert_eq!((status, &by_header["id"]), (StatusCode::OK, &first["id"]));
    let (status, problem) = with_header(
        "order-18",
        json!({"module": "hello", "function": "noop", "idempotency_key": "order-19"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"].as_str().unwrap().contains("differ"),
        "{problem}"
    );
    let (status, problem) = with_header("", plain.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(node.job_count().await, 1);

    // In bulk: the held key and a new one given twice.
    let calls = json!({"jobs": [
        {"module": "hello", "function": "noop", "idempotency_key": "order-17"},
        {"module": "hello", "function": "noop", "idempotency_key": "order-20"},
        {"module": "hello", "function": "noop", "idempotency_key": "order-20"},
    ]});
    let (status, bulk) = node.post("/v1/jobs/bulk", calls).await;
    assert_eq!(status, StatusCode::CREATED, "{bulk}");
    let ids = bulk["ids"].as_array().unwrap();
    assert_eq!(ids[0], first["id"]);
    assert_eq!(ids[1], ids[2]);
    assert_eq!(bulk["existing"], json!([ids[0], ids[2]]));
    assert_eq!(node.job_count().await, 2);

    // The CLI takes the same key and finds the same job.
    let cli = sluice.json(&["enqueue", "hello", "noop", "--idempotency-key", "order-17"]);
    assert_eq!((&cli["id"], &cli["existing"]), (&first["id"], &json!(true)));
}

async fn a_killed_node_is_shown_dead(sluice: Sluice) {
    let api = Node::start(&sluice, &["serve"]);
    let worker = Node::start(&sluice, &["run", "--lease", "900ms", "--node-id", "doomed"]);
    let health = || async {
        let (status, nodes) = api.get("/v1/nodes").await;
        assert_eq!(status, StatusCode::OK);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|node| node["id"] == "doomed")
            .cloned()
    };
    let started = Instant::now();
    let node = loop {
        if let Some(node) = health().await
            && node["health"] == "up"
        {
            break node;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node never beat"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(node["lease_ms"], 900);
    // Alone, it is the leader.
    let started = Instant::now();
    while health().await.unwrap()["leader"] != true {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node never led"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop(worker); // kill -9: no chance to deregister
    let started = Instant::now();
    loop {
        let node = health().await.expect("a killed node stays in the registry");
        if node["health"] == "dead" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{node}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bulk_actions_take_ids_or_a_bounded_filter(sluice: Sluice) {
    let node = Node::start(&sluice, &["run", "--queue", "default=4"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let enqueue = |function: &str, queue: &str, count: usize| {
        let node = &node;
        let calls: Vec<Value> = (0..count)
            .map(|_| json!({"module": "hello", "function": function, "queue": queue, "max_attempts": 1}))
            .collect();
        async move {
            let (status, bulk) = node.post("/v1/jobs/bulk", json!({ "jobs": calls })).await;
            assert_eq!(status, StatusCode::CREATED, "{bulk}");
            bulk["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    let failing = enqueue("fail", "default", 3).await;
    for id in &failing {
        node.wait_for_job(*id, "discarded", |job| job["state"] == "discarded")
            .await;
    }
    // No node serves `parked`: its jobs stay available.
    let parked = enqueue("noop", "parked", 3).await;

    // A filter takes at most its limit, and says when it matched more.
    let cancel = json!({"filter": {"queue": "parked", "limit": 2}});
    let (status, first) = node.post("/v1/jobs/cancel", cancel.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["done"], json!([parked[2], parked[1]]));
    assert_eq!(first["more"], true);
    let (_, rest) = node
        .post(
            "/v1/jobs/cancel",
            json!({"filter": {"queue": "parked", "state": "available"}}),
        )
        .await;
    assert_eq!(rest["done"], json!([parked[0]]));
    assert_eq!(rest["more"], false);

    // Retry every discarded job of one function: each runs again (and fails again).
    let (_, retried) = node
        .post(
            "/v1/jobs/retry",
            json!({"filter": {"state": "discarded", "function": "fail"}}),
        )
        .await;
    let mut done: Vec<i64> = retried["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    done.sort();
    assert_eq!(done, failing);
    for id in &failing {
        // The job and its attempts are read apart: wait for both to show the second run.
        node.wait_for_job(*id, "failed twice", |job| {
            job["state"] == "discarded" && job["attempts"].as_array().unwrap().len() == 2
        })
        .await;
    }

    // By ids: each job it fits; a missing one is refused alone, with the single action's code.
    let (status, deleted) = node
        .post(
            "/v1/jobs/delete",
            json!({"ids": [parked[0], 987654321, parked[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["done"], json!([parked[0], parked[1]]));
    assert_eq!(deleted["refused"][0]["id"], 987654321);
    assert_eq!(deleted["refused"][0]["code"], "job_not_found");
    let (status, _) = node.get(&format!("/v1/jobs/{}", parked[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, cancelled) = node
        .post("/v1/jobs/cancel", json!({"ids": [failing[0]]}))
        .await;
    assert_eq!(
        cancelled["refused"][0]["code"], "invalid_transition",
        "{cancelled}"
    );

    // Neither, both, too many, a bad filter: refused whole, nothing done.
    let too_many: Vec<i64> = (1..=1001).collect();
    for body in [
        json!({}),
        json!({"ids": [parked[2]], "filter": {"queue": "parked"}}),
        json!({"ids": too_many}),
        json!({"filter": {"state": "nonsense"}}),
        json!({"filter": {"limit": 0}}),
    ] {
        let (status, problem) = node.post("/v1/jobs/delete", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
    }
    assert_eq!(
        node.get(&format!("/v1/jobs/{}", parked[2])).await.0,
        StatusCode::OK
    );
    let (_, audit) = node.get("/v1/audit").await;
    let cancels = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "job.cancel")
        .count();
    // Each job done is recorded; the one refused is not.
    assert_eq!(cancels, 3, "{audit}");
}

/// Single enqueues check their call against modules the node read lately: a version uploaded
/// through the node is what the very next enqueue is checked against, a pinned version stays
/// as it was, and a module that was missing is found as soon as it is uploaded anywhere.
async fn enqueues_are_checked_against_the_module_as_uploaded(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve"]);
    let greet = json!({"module": "m", "function": "greet", "args": {"name": "x"}});
    let (status, _) = node
        .post_raw("/v1/modules/m", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = node.post("/v1/jobs", greet.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    // Version 2 of `m` exports no `greet`.
    let hostile = std::fs::read(guests::HOSTILE).unwrap();
    let (status, _) = node
        .post_raw("/v1/modules/m", "application/wasm", hostile)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) = node.post("/v1/jobs", greet.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "unknown_function");
    let mut pinned = greet.clone();
    pinned["version"] = json!(1);
    for _ in 0..2 {
        let (status, problem) = node.post("/v1/jobs", pinned.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{problem}");
    }

    let fresh = json!({"module": "fresh", "function": "noop"});
    let (status, problem) = node.post("/v1/jobs", fresh.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    sluice.ok(&["upload", guests::HELLO, "--name", "fresh"]);
    let (status, problem) = node.post("/v1/jobs", fresh).await;
    assert_eq!(status, StatusCode::CREATED, "{problem}");
    assert_eq!(node.job_count().await, 4);
}

async fn a_unique_job_returns_the_job_of_the_same_call(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let call = |name: &str, lang: &str| {
        json!({
            "module": "hello", "function": "greet",
            "args": {"name": name, "lang": lang},
            "unique": {"fields": ["name"]},
        })
    };
    let (status, first) = node.post("/v1/jobs", call("Ada", "fr")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = node.post("/v1/jobs", call("Ada", "en")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["id"], &again["existing"]),
        (&first["id"], &json!(true))
    );

    // In bulk, with the ids found.
    let (status, bulk) = node
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [call("Ada", "de"), call("Grace", "en")]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bulk}");
    assert_eq!(bulk["ids"][0], first["id"]);
    assert_eq!(bulk["existing"], json!([first["id"]]));
    assert_ne!(bulk["ids"][1], first["id"]);

    // The CLI makes the same key, on the store and through the node.
    let args = r#"{"name":"Ada","lang":"it"}"#;
    let local = sluice.json(&["enqueue", "hello", "greet", args, "--unique-fields", "name"]);
    assert_eq!(
        (&local["id"], &local["existing"]),
        (&first["id"], &json!(true))
    );
    let remote = sluice.json(&[
        "--url",
        &node.base,
        "enqueue",
        "hello",
        "greet",
        args,
        "--unique-fields",
        "name",
    ]);
    assert_eq!(
        (&remote["id"], &remote["existing"]),
        (&first["id"], &json!(true))
    );

    // Refusals.
    let mut both = call("Ada", "fr");
    both["idempotency_key"] = json!("order-1");
    let (status, problem) = node.post("/v1/jobs", both).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let mut running = call("Ada", "fr");
    running["unique"]["finished"] = json!(["running"]);
    let (status, problem) = node.post("/v1/jobs", running).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("is not a finished state"),
        "{problem}"
    );

    // A cancelled job gives its key up; it cannot come back while another holds it.
    let (_, zed) = node.post("/v1/jobs", call("Zed", "fr")).await;
    let zed = zed["id"].as_i64().unwrap();
    let (status, _) = node
        .post(&format!("/v1/jobs/{zed}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, next) = node.post("/v1/jobs", call("Zed", "fr")).await;
    assert_eq!(status, StatusCode::CREATED, "{next}");
    let (status, problem) = node.post(&format!("/v1/jobs/{zed}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "unique_key_held");
}

/// Topics, batches, dependencies and trees through the API: each resource's happy path, and
/// its refusals as problems that store nothing.
async fn composition_goes_through_the_api(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve"]);
    let (status, _) = node
        .post_raw("/v1/modules/hello", "application/wasm", hello_wasm())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let greet = json!({"module": "hello", "function": "greet", "args": {"name": "x"}});

    // Topics: subscribe (again: 200), list, publish one job per subscription, unsubscribe.
    let mail = json!({"queue": "mail", "module": "hello", "function": "greet"});
    let (status, body) = node
        .post("/v1/topics/users.new/subscriptions", mail.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = node
        .post("/v1/topics/users.new/subscriptions", mail.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    let audit = json!({"queue": "audit", "module": "hello", "function": "noop", "max_attempts": 2});
    node.post("/v1/topics/users.new/subscriptions", audit).await;
    let (_, topics) = node.get("/v1/topics").await;
    assert_eq!(topics.as_array().unwrap().len(), 2, "{topics}");
    let (status, published) = node
        .post(
            "/v1/topics/users.new/events",
            json!({"args": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let ids = published["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let (_, job) = node.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(job["args"], json!({"name": "Ada"}), "{job}");
    }
    let removed = node
        .http
        .delete(node.url("/v1/topics/users.new/subscriptions"))
        .json(&mail)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);

    // A batch from outside, with a callback; its progress.
    let (status, batch) = node
        .post(
            "/v1/batches",
            json!({"jobs": [greet.clone(), greet.clone()],
                   "on_finished": {"module": "hello", "function": "greet", "context": {"name": "done"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let (status, view) = node.get(&format!("/v1/batches/{}", batch["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["counts"]["total"], 2);
    assert_eq!(view["counts"]["waiting"], 2);
    assert_eq!(view["finished"], false);
    assert_eq!(view["on_finished"]["job_id"], Value::Null);

    // Dependencies at enqueue, by id and by index in a bulk request; the trees show them.
    let first = batch["ids"][0].as_i64().unwrap();
    let mut waiting = greet.clone();
    waiting["depends_on"] = json!([{"job": first, "if_failed": "run"}]);
    let (status, held) = node.post("/v1/jobs", waiting).await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let (_, held_job) = node.get(&format!("/v1/jobs/{}", held["id"])).await;
    assert_eq!(held_job["state"], "held", "{held_job}");
    assert_eq!(held_job["waits_for"], 1, "{held_job}");
    let mut second = greet.clone();
    second["depends_on"] = json!([{"index": 0}]);
    let (status, bulk) = node
        .post("/v1/jobs/bulk", json!({"jobs": [greet.clone(), second]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bulk}");
    let (status, tree) = node.get(&format!("/v1/jobs/{first}/tree")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tree["batch"]["id"], batch["id"]);
    assert_eq!(tree["waited_on_by"][0]["job_id"], held["id"]);
    assert_eq!(tree["waited_on_by"][0]["if_failed"], "run");
    let (_, tree) = node.get(&format!("/v1/jobs/{}/tree", bulk["ids"][1])).await;
    assert_eq!(tree["waits_for"][0]["job_id"], bulk["ids"][0]);

    // Refusals: each a problem, none stored.
    let before = node.job_count().await;
    let mut later = greet.clone();
    later["depends_on"] = json!([{"index": 1}]);
    let mut both = greet.clone();
    both["depends_on"] = json!([{"job": 1, "index": 0}]);
    let refusals = [
        (
            "/v1/topics/users.new/subscriptions",
            json!({"queue": "mail", "module": "nope", "function": "greet"}),
            StatusCode::NOT_FOUND,
            "module_not_found",
        ),
        (
            "/v1/topics/users.new/subscriptions",
            json!({"queue": "mail", "module": "hello", "function": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_function",
        ),
        (
            "/v1/topics/two%20words/events",
            json!({"args": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "/v1/topics/a%00b/events",
            json!({"args": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "/v1/jobs/bulk",
            json!({"jobs": [later, greet.clone()]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "/v1/jobs",
            both,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "/v1/batches",
            json!({"jobs": [greet.clone(), {"module": "hello", "function": "nope"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_function",
        ),
        (
            "/v1/batches",
            json!({"jobs": [greet.clone()], "on_success": {"module": "hello", "function": "nope"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_function",
        ),
    ];
    for (path, body, status, code) in refusals {
        let (got, problem) = node.post(path, body.clone()).await;
        assert_eq!(got, status, "{path} {body} -> {problem}");
        assert_eq!(problem["code"], code, "{path} {body} -> {problem}");
    }
    assert_eq!(node.job_count().await, before, "a refusal stored a job");
    let (status, problem) = node.get("/v1/batches/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, _) = node.get("/v1/jobs/999999/tree").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = node
        .http
        .delete(node.url("/v1/topics/users.new/subscriptions"))
        .json(&mail)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Subscriptions are operators' changes: audited.
    let (_, log) = node.get("/v1/audit").await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"topic.subscribe"), "{actions:?}");
    assert!(actions.contains(&"topic.unsubscribe"), "{actions:?}");
}
