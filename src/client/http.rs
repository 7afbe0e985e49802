//! A node's HTTP API from Rust: enqueueing (`POST /v1/jobs`, `POST /v1/jobs/bulk`), and any
//! other endpoint by path (`HttpClient::call`), a refusal becoming `ClientError::Problem`.

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
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

/// What a request to the API carries.
#[derive(Debug, Clone)]
pub enum RequestBody {
    Empty,
    Json(Value),
    /// Raw bytes, like a component to upload (`application/wasm`).
    Bytes {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
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

    async fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, ClientError> {
        self.call(Method::POST, path, RequestBody::Json(body)).await
    }

    /// Any endpoint of the API (`/openapi.json` lists them), its answer read as `T` (an
    /// empty answer, like a `204`, as JSON `null`); a refusal is `ClientError::Problem`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> Result<T, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        request = match body {
            RequestBody::Empty => request,
            RequestBody::Json(value) => request.json(&value),
            RequestBody::Bytes {
                content_type,
                bytes,
            } => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Http(format!("{}: {e}", self.base)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if !status.is_success() {
            let problem: Problem = serde_json::from_slice(&bytes).map_err(|_| {
                ClientError::Http(format!(
                    "{} answered {status} without a problem document; is it a Sluice node?",
                    self.base
                ))
            })?;
            return Err(ClientError::Problem {
                status: status.as_u16(),
                code: problem.code,
                detail: problem.detail,
            });
        }
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| {
            ClientError::Http(format!(
                "{} answered what this client cannot read ({e}); is it a Sluice node of the same version?",
                self.base
            ))
        })
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
    set(
        "unique",
        call.unique
            .as_ref()
            .map(|options| serde_json::to_value(options).expect("options serialize")),
    );
    set(
        "partition_key",
        call.partition_key.clone().map(Value::String),
    );
    if !call.depends_on.is_empty() {
        let waits: Vec<Value> = call
            .depends_on
            .iter()
            .filter_map(|dependency| match dependency.on {
                crate::compose::JobRef::Stored(id) => {
                    Some(json!({"job": id, "if_failed": dependency.if_failed.as_str()}))
                }
                crate::compose::JobRef::Child(_) => None,
            })
            .collect();
        set("depends_on", Some(Value::Array(waits)));
    }
    Ok(body)
}
