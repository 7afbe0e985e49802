//! Enqueueing through a node's HTTP API (`POST /v1/jobs`, `POST /v1/jobs/bulk`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, ClientError, Enqueued};
use crate::model::Codec;

/// A node's API at `base` (like `http://127.0.0.1:7700`), with a bearer token if it needs one.
#[derive(Debug, Clone)]
pub struct HttpClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct One {
    id: i64,
    existing: bool,
}

#[derive(Deserialize)]
struct Many {
    ids: Vec<i64>,
    existing: Vec<i64>,
}

#[derive(Deserialize)]
struct Problem {
    code: String,
    detail: String,
}

impl HttpClient {
    pub fn new(base: impl Into<String>) -> HttpClient {
        HttpClient {
            base: base.into().trim_end_matches('/').to_string(),
            token: None,
            http: reqwest::Client::new(),
        }
    }

    /// Sends `Authorization: Bearer TOKEN` (a token of role `operate` or `admin`).
    pub fn with_token(mut self, token: impl Into<String>) -> HttpClient {
        self.token = Some(token.into());
        self
    }

    /// Enqueues one call; the node checks it as `sluice enqueue` does.
    pub async fn enqueue(&self, call: &Call) -> Result<Enqueued, ClientError> {
        let one: One = self.post("/v1/jobs", body(call)?).await?;
        Ok(Enqueued {
            id: one.id,
            existing: one.existing,
        })
    }

    /// Enqueues many calls in one request (at most 10,000): all are stored, or none.
    pub async fn enqueue_many(&self, calls: &[Call]) -> Result<Vec<Enqueued>, ClientError> {
        let jobs = calls.iter().map(body).collect::<Result<Vec<_>, _>>()?;
        let many: Many = self.post("/v1/jobs/bulk", json!({ "jobs": jobs })).await?;
        Ok(many
            .ids
            .iter()
            .map(|&id| Enqueued {
                id,
                existing: many.existing.contains(&id),
            })
            .collect())
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<T, ClientError> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if !status.is_success() {
            let problem: Problem = serde_json::from_slice(&bytes)
                .map_err(|_| ClientError::Http(format!("{status} without a problem document")))?;
            return Err(ClientError::Problem {
                status: status.as_u16(),
                code: problem.code,
                detail: problem.detail,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Http(e.to_string()))
    }
}

/// The API's view of a call (`EnqueueRequest` in the OpenAPI document).
fn body(call: &Call) -> Result<Value, ClientError> {
    let args = match call.codec {
        Codec::Json => {
            serde_json::from_slice(&call.args).map_err(|e| ClientError::BadArgs(e.to_string()))?
        }
        Codec::Postcard => Value::String(hex::encode(&call.args)),
    };
    let mut body = json!({
        "module": call.module,
        "function": call.function,
        "args": args,
        "codec": call.codec.as_str(),
        "queue": call.queue,
        "priority": call.priority,
    });
    let fields = body.as_object_mut().expect("an object");
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(key.to_string(), value);
        }
    };
    set("max_attempts", call.max_attempts.map(Value::from));
    set(
        "run_at",
        call.run_at.map(|at| Value::String(at.to_rfc3339())),
    );
    set("version", call.version.map(Value::from));
    set("fuel", call.limits.fuel.map(Value::from));
    set(
        "timeout_ms",
        call.limits
            .timeout
            .map(|t| Value::from(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))),
    );
    set("memory", call.limits.memory_bytes.map(Value::from));
    set(
        "idempotency_key",
        call.idempotency_key.clone().map(Value::String),
    );
    Ok(body)
}
