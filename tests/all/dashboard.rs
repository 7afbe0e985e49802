//! What the dashboard stands on, through the real binary on both stores: its embedded pages
//! under a base path, sessions (cookie, CSRF header, expiry with the token), refusal of
//! cross-site actions, dead letters with their forensics, and retry with edited args. The
//! pages themselves are driven in Chromium by tests/browser/dashboard.mjs.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::api::{Node, hello_wasm, response};
use crate::support::binary::Sluice;

both_stores!(
    the_pages_are_served_whole_under_a_base_path,
    a_session_acts_for_its_token_only_from_the_dashboard,
    cross_site_actions_are_refused_even_on_the_open_api,
    dead_letters_are_grouped_with_their_forensics,
    a_discarded_job_is_retried_with_edited_args,
    a_filter_no_index_serves_reads_a_window_of_ids,
);

/// `path` with these extra headers (a session cookie, a CSRF header, a browser's
/// `Sec-Fetch-Site`...).
async fn call(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value, HeaderMap) {
    let mut request = node.http.request(method, node.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let headers = answer.headers().clone();
    let (status, body) = response(answer).await;
    (status, body, headers)
}

fn set_cookie(headers: &HeaderMap) -> String {
    headers
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_string()
}

async fn the_pages_are_served_whole_under_a_base_path(sluice: Sluice) {
    let node = Node::start(&sluice, &["serve", "--base-path", "/ops/sluice/"]);
    // The page at the prefix (with or without its slash) and at the root, for a proxy that
    // strips the prefix; its links are relative to the prefix either way.
    for path in ["/ops/sluice/", "/ops/sluice", "/"] {
        let answer = node.http.get(node.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let csp = answer.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
        let page = answer.text().await.unwrap();
        assert!(page.contains(r#"<base href="/ops/sluice/">"#), "{page}");
    }
    // Every file the page names, and every module those scripts import, is served with its
    // media type and an ETag that a revalidation answers with 304.
    let (_, page) = node.text("/ops/sluice/").await;
    let mut wanted: BTreeSet<String> = references(&page, &["href=\"", "src=\""])
        .into_iter()
        .filter(|r| r.starts_with("assets/"))
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(asset) = wanted.pop_first() {
        let answer = node
            .http
            .get(node.url(&format!("/ops/sluice/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        let media = answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let etag = answer.headers()["etag"].clone();
        let body = answer.text().await.unwrap();
        let expected = match asset.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            other => panic!("an unexpected asset kind: {other}"),
        };
        assert!(media.starts_with(expected), "{asset}: {media}");
        let again = node
            .http
            .get(node.url(&format!("/ops/sluice/{asset}")))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
        if asset.ends_with(".js") {
            let directory = asset.rsplit_once('/').unwrap().0;
            for import in references(&body, &["from \""]) {
                wanted.insert(resolve(directory, &import));
            }
        }
        seen.insert(asset);
    }
    assert!(seen.len() >= 14, "only {seen:?} were reached from the page");
    // Nothing else is served from the asset directory.
    for path in [
        "/ops/sluice/assets/nothing.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
    ] {
        let (status, problem) = node.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
    }
    // The API answers under the prefix too.
    let (status, _) = node.get("/ops/sluice/v1/queues").await;
    assert_eq!(status, StatusCode::OK);
    // A base path that is not one is refused with the flag's name.
    let refused = sluice.fails(&["serve", "--base-path", "/a b", "--listen", "127.0.0.1:0"]);
    assert!(refused.contains("--base-path"), "{refused}");
}

/// The texts between each of `openers` and the next `"`.
fn references(text: &str, openers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for opener in openers {
        for (at, _) in text.match_indices(opener) {
            let rest = &text[at + opener.len()..];
            found.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    found
}

/// `import` (like `../api.js`) relative to `directory` (like `assets/js/pages`).
fn resolve(directory: &str, import: &str) -> String {
    let mut parts: Vec<&str> = directory.split('/').collect();
    for part in import.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts.join("/")
}

async fn a_session_acts_for_its_token_only_from_the_dashboard(sluice: Sluice) {
    use reqwest::Method;
    let token = |role: &str, name: &str| {
        sluice
            .ok(&["token", "create", "--role", role, "--name", name])
            .trim()
            .to_string()
    };
    let viewer = token("read", "viewer");
    let operator = token("operate", "operator");
    let node = Node::start(&sluice, &["serve"]);

    // Nobody signed in: the question has an answer, not an error.
    let (status, body, _) = call(&node, Method::GET, "/v1/session", &[], None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, problem, _) = call(
        &node,
        Method::POST,
        "/v1/session",
        &[],
        Some(json!({"token": "sluice_not-one"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");

    // Signing in sets a cookie that scripts cannot read and other sites' requests do not carry.
    let sign_in = |token: String| {
        let node = &node;
        async move {
            let (status, view, headers) = call(
                node,
                Method::POST,
                "/v1/session",
                &[],
                Some(json!({"token": token})),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{view}");
            let cookie = set_cookie(&headers);
            for part in ["HttpOnly", "SameSite=Strict", "Path=/;", "Max-Age=43200"] {
                assert!(cookie.contains(part), "{cookie}");
            }
            assert!(!cookie.contains("Secure"), "{cookie}");
            let pair = cookie.split(';').next().unwrap().to_string();
            (pair, view)
        }
    };
    let (reader_cookie, view) = sign_in(viewer.clone()).await;
    assert_eq!(view["name"], "viewer");
    assert_eq!(view["role"], "read");
    assert_eq!(view["via"], "session");
    let reader_csrf = view["csrf"].as_str().unwrap().to_string();
    assert!(
        !reader_cookie.contains(&viewer),
        "the cookie holds the token"
    );
    let (status, same, _) = call(
        &node,
        Method::GET,
        "/v1/session",
        &[("cookie", &reader_cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same, view);
    // The session reads what its token reads...
    let (status, _, _) = call(
        &node,
        Method::GET,
        "/v1/queues",
        &[("cookie", &reader_cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // ...and is refused what its token is refused, CSRF header or not.
    let pause = "/v1/queues/default/pause";
    let (status, problem, _) = call(
        &node,
        Method::POST,
        pause,
        &[("cookie", &reader_cookie)],
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );
    let (status, problem, _) = call(
        &node,
        Method::POST,
        pause,
        &[("cookie", &reader_cookie), ("x-sluice-csrf", &reader_csrf)],
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // An operator's session acts only with its own CSRF value.
    let (operator_cookie, view) = sign_in(operator.clone()).await;
    let operator_csrf = view["csrf"].as_str().unwrap().to_string();
    assert_ne!(operator_csrf, reader_csrf);
    for csrf in ["", reader_csrf.as_str()] {
        let (status, problem, _) = call(
            &node,
            Method::POST,
            pause,
            &[("cookie", &operator_cookie), ("x-sluice-csrf", csrf)],
            None,
        )
        .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("csrf"))
        );
    }
    let (_, queues) = node
        .with_token(&operator, Method::GET, "/v1/queues", None)
        .await;
    assert!(
        queues
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["paused"] == false),
        "{queues}"
    );
    let (status, _, _) = call(
        &node,
        Method::POST,
        pause,
        &[
            ("cookie", &operator_cookie),
            ("x-sluice-csrf", &operator_csrf),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, queues) = node
        .with_token(&operator, Method::GET, "/v1/queues", None)
        .await;
    assert_eq!(queues[0]["paused"], true, "{queues}");
    // A bearer token needs no CSRF header: it is not sent by a browser on its own.
    let (status, _) = node
        .with_token(&operator, Method::POST, "/v1/queues/default/resume", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Sign-ins and the session's actions are audited under the token's name.
    let admin = token("admin", "auditor");
    let (_, audit) = node
        .with_token(&admin, Method::GET, "/v1/audit", None)
        .await;
    let entries: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    for expected in [
        ("viewer", "session.start"),
        ("operator", "session.start"),
        ("operator", "queue.pause"),
    ] {
        assert!(
            entries.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} not in {entries:?}"
        );
    }

    // Signing out ends the session, and clears the cookie.
    let (status, _, headers) = call(
        &node,
        Method::DELETE,
        "/v1/session",
        &[
            ("cookie", &operator_cookie),
            ("x-sluice-csrf", &operator_csrf),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(set_cookie(&headers).contains("Max-Age=0"));
    let (status, _, headers) = call(
        &node,
        Method::GET,
        "/v1/session",
        &[("cookie", &operator_cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        set_cookie(&headers).contains("Max-Age=0"),
        "an ended session's cookie is cleared"
    );
    let (status, _, _) = call(
        &node,
        Method::GET,
        "/v1/queues",
        &[("cookie", &operator_cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Revoking a token ends its sessions at once.
    sluice.ok(&["token", "revoke", "viewer"]);
    let (status, _, _) = call(
        &node,
        Method::GET,
        "/v1/queues",
        &[("cookie", &reader_cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &node,
        Method::GET,
        "/v1/session",
        &[("cookie", &reader_cookie)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Behind an HTTPS proxy the cookie is Secure.
    let (status, _, headers) = call(
        &node,
        Method::POST,
        "/v1/session",
        &[("x-forwarded-proto", "https")],
        Some(json!({"token": operator})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(set_cookie(&headers).contains("; Secure"));
}

async fn cross_site_actions_are_refused_even_on_the_open_api(sluice: Sluice) {
    use reqwest::Method;
    // No token: the API is open on loopback, which any web page the user opens could post to.
    let node = Node::start(&sluice, &["serve"]);
    let pause = "/v1/queues/default/pause";
    let host = node.base.trim_start_matches("http://").to_string();
    let other_origin = "http://evil.example".to_string();
    let own_origin = format!("http://{host}");
    for (headers, refused) in [
        (vec![("sec-fetch-site", "cross-site")], true),
        (vec![("sec-fetch-site", "same-site")], true),
        (vec![("origin", other_origin.as_str())], true),
        (vec![("origin", "null")], true),
        (vec![("sec-fetch-site", "same-origin")], false),
        (vec![("sec-fetch-site", "none")], false),
        (vec![("origin", own_origin.as_str())], false),
        // A client that is not a browser sends neither header.
        (vec![], false),
    ] {
        let (status, problem, _) = call(&node, Method::POST, pause, &headers, None).await;
        if refused {
            assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {problem}");
            assert_eq!(problem["code"], "cross_origin");
        } else {
            assert_eq!(status, StatusCode::OK, "{headers:?}: {problem}");
        }
    }
    // Reading is never refused for it (a page cannot read another origin's answer anyway).
    let (status, _, _) = call(
        &node,
        Method::GET,
        "/v1/queues",
        &[("sec-fetch-site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // And a refused upload stores nothing.
    let mut request = node
        .http
        .post(node.url("/v1/modules/hello"))
        .header("content-type", "application/wasm")
        .header("sec-fetch-site", "cross-site");
    request = request.body(hello_wasm());
    let (status, _) = response(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, modules) = node.get("/v1/modules").await;
    assert_eq!(modules, json!([]));
    // On the open API there is nobody to sign in.
    let (status, problem) = node.post("/v1/session", json!({"token": "x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, view) = node.get("/v1/session").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (view["via"].as_str(), view["role"].as_str()),
        (Some("open"), Some("admin"))
    );
}

async fn dead_letters_are_grouped_with_their_forensics(sluice: Sluice) {
    sluice.ok(&["upload", sluice_test_artifacts::HELLO]);
    let mut failing = Vec::new();
    for _ in 0..3 {
        failing.push(sluice.enqueue(&["hello", "fail", "--max-attempts", "1"]));
    }
    let unfit = sluice.enqueue(&["hello", "greet", r#"{"nom": 1}"#]);
    let retrying = sluice.enqueue(&["hello", "fail", "--max-attempts", "5", "--queue", "slow"]);
    sluice.ok(&["enqueue", "hello", "noop"]);
    let node = Node::start(
        &sluice,
        &[
            "run",
            "--queue",
            "default=3",
            "--queue",
            "slow=1",
            "--backoff-base",
            "1h",
        ],
    );
    for id in failing.iter().chain([&unfit]) {
        node.wait_for_job(*id, "discarded", |j| j["state"] == "discarded")
            .await;
    }
    node.wait_for_job(retrying, "retryable", |j| j["state"] == "retryable")
        .await;

    let (status, view) = node.get("/v1/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["window"], 10_000);
    let groups = view["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{view}");
    let group = |function: &str| {
        groups
            .iter()
            .find(|g| g["function"] == function)
            .unwrap_or_else(|| panic!("no group for {function}: {view}"))
    };
    let fail = group("fail");
    assert_eq!(
        (
            fail["module"].as_str(),
            fail["class"].as_str(),
            fail["jobs"].as_u64()
        ),
        (Some("hello"), Some("guest_error"), Some(3))
    );
    assert_eq!(fail["last_job"], *failing.iter().max().unwrap());
    assert_eq!(fail["last_message"], "this job always fails");
    let greet = group("greet");
    assert_eq!(
        (
            greet["class"].as_str(),
            greet["jobs"].as_u64(),
            greet["last_job"].as_i64()
        ),
        (Some("bad_args"), Some(1), Some(unfit))
    );

    // The function's recent failures: its discarded jobs and the one still retrying.
    let (status, failures) = node
        .get("/v1/dead-letters/failures?module=hello&function=fail&limit=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{failures}");
    let ids: BTreeSet<i64> = failures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["job_id"].as_i64().unwrap())
        .collect();
    let expected: BTreeSet<i64> = failing.iter().copied().chain([retrying]).collect();
    assert_eq!(ids, expected, "{failures}");
    assert!(
        failures
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["outcome"] == "guest_error")
    );
    let (_, two) = node
        .get("/v1/dead-letters/failures?module=hello&function=fail&limit=2")
        .await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    let (status, problem) = node.get("/v1/dead-letters/failures?module=hello").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, problem) = node
        .get("/v1/dead-letters/failures?module=hello&function=fail&limit=0")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    // The attempt that discarded a job recorded the node and its queue as they were; one that
    // only scheduled a retry did not.
    let (_, job) = node.get(&format!("/v1/jobs/{}", failing[0])).await;
    let context = &job["attempts"][0]["context"];
    assert_eq!(context["node_version"], env!("CARGO_PKG_VERSION"), "{job}");
    assert_eq!(context["queue_concurrency"], 3, "{job}");
    let running = context["queue_running"].as_u64().unwrap();
    let held = context["node_in_flight"].as_u64().unwrap();
    assert!((1..=3).contains(&running) && held >= running, "{context}");
    let (_, job) = node.get(&format!("/v1/jobs/{retrying}")).await;
    assert_eq!(job["attempts"][0]["context"], Value::Null, "{job}");
}

async fn a_discarded_job_is_retried_with_edited_args(sluice: Sluice) {
    sluice.ok(&["upload", sluice_test_artifacts::HELLO]);
    let unfit = sluice.enqueue(&["hello", "greet", r#"{"nom": "Ada"}"#]);
    let node = Node::start(&sluice, &["run"]);
    node.wait_for_job(unfit, "discarded", |j| j["state"] == "discarded")
        .await;

    // Refused edits change nothing.
    // (Args one byte over the 1 MiB cap of new jobs: a JSON string of 2^20 - 1 letters.)
    let oversized = "x".repeat((1 << 20) - 1);
    for (body, code) in [
        (json!({"args": {"name": "x"}, "extra": 1}), "invalid_body"),
        (json!({"args": oversized}), "args_too_large"),
    ] {
        let (status, problem) = node.post(&format!("/v1/jobs/{unfit}/retry"), body).await;
        assert!(status.is_client_error(), "{status}: {}", problem["detail"]);
        assert_eq!(problem["code"], code, "{}", problem["detail"]);
    }
    let (_, job) = node.get(&format!("/v1/jobs/{unfit}")).await;
    assert_eq!(
        (job["state"].as_str(), &job["args"]),
        (Some("discarded"), &json!({"nom": "Ada"}))
    );

    let (status, _) = node
        .post(
            &format!("/v1/jobs/{unfit}/retry"),
            json!({"args": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = node
        .wait_for_job(unfit, "completed", |j| j["state"] == "completed")
        .await;
    assert_eq!(done["output"], "Hello, Ada!");
    assert_eq!(done["args"], json!({"name": "Ada"}));
    assert_eq!(done["attempts"].as_array().unwrap().len(), 2);
    let (_, audit) = node.get("/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "job.retry" && e["target"] == format!("{unfit} (args edited)")),
        "{audit}"
    );
    // A plain retry keeps the args it has.
    let (status, _) = node
        .post(&format!("/v1/jobs/{unfit}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = node
        .wait_for_job(unfit, "completed again", |j| {
            j["attempts"].as_array().unwrap().len() == 3 && j["state"] == "completed"
        })
        .await;
    assert_eq!(again["args"], json!({"name": "Ada"}));
}

async fn a_filter_no_index_serves_reads_a_window_of_ids(sluice: Sluice) {
    sluice.ok(&["upload", sluice_test_artifacts::HELLO]);
    let rare = sluice.enqueue(&["hello", "fail"]);
    // 50,001 jobs above it: one more than a page filtered by function reads.
    let batch = crate::support::temp_dir("window").join("batch");
    std::fs::write(&batch, "null\n".repeat(50_001)).unwrap();
    sluice.ok(&[
        "enqueue",
        "hello",
        "noop",
        "--batch",
        batch.to_str().unwrap(),
    ]);
    let newest = rare + 50_001;
    let node = Node::start(&sluice, &["serve"]);

    let (status, page) = node.get("/v1/jobs?function=fail").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let floor = newest + 1 - 50_000;
    assert_eq!(
        page["jobs"],
        json!([]),
        "the rare job lies below the window"
    );
    assert_eq!(
        (page["searched_to"].as_i64(), page["next_before"].as_i64()),
        (Some(floor), Some(floor))
    );
    let (_, older) = node
        .get(&format!("/v1/jobs?function=fail&before={floor}"))
        .await;
    let ids: Vec<i64> = older["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [rare]);
    assert_eq!(
        (older["next_before"].as_i64(), older["searched_to"].as_i64()),
        (None, None)
    );
    // A full page goes on from its last job; an indexed filter reads no window.
    let (_, full) = node.get("/v1/jobs?function=noop&limit=10").await;
    assert_eq!(full["jobs"].as_array().unwrap().len(), 10);
    assert_eq!(full["next_before"].as_i64(), Some(newest - 9));
    let (_, by_state) = node.get("/v1/jobs?state=available&limit=1").await;
    assert_eq!(by_state["searched_to"], Value::Null);
    assert_eq!(by_state["jobs"][0]["id"].as_i64(), Some(newest));
    // Cursors at the edge of i64 are answered, not overflowed (schemathesis found this).
    let (status, edge) = node
        .get("/v1/jobs?function=&before=-9223372036854775808&after=-9223372036854775808")
        .await;
    assert_eq!((status, &edge["jobs"]), (StatusCode::OK, &json!([])));
    // The args search is bounded by the same window.
    let (_, searched) = node.get("/v1/jobs?args=null&limit=5").await;
    assert_eq!(searched["searched_to"].as_i64(), Some(floor), "{searched}");
}
