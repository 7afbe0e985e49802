//! Where the data commands act: on the store itself, or through a node's HTTP API (`--url`).
//! Both answer with the API's views, so a command prints the same thing either way, and the
//! API's handlers call the same operations as the store side here.

use anyhow::Context as _;
use reqwest::Method;
use sluice::api::auth::AuditView;
use sluice::api::batches::BatchView;
use sluice::api::breakers::BreakerView;
use sluice::api::cron::{CronBody, CronView};
use sluice::api::tokens::{CreatedToken, TokenView};
use sluice::api::topics::SubscriptionView;
use sluice::api::views::{
    AttemptView, EnqueuedOne, JobDetailView, JobPage, JobTreeView, JobView, ModuleView, QueueView,
    UploadView,
};
use sluice::app::App;
use sluice::breakers::BreakerPolicy;
use sluice::client::{ClientError, HttpClient, RequestBody};
use sluice::limits::{Autoscale, QueueLimits};
use sluice::model::{IDEMPOTENCY_PREFIX, JobId, JobState, NewJob, Role, UniqueKey};
use sluice::ops::{CLI_ACTOR, CronSpec, RetentionSecs};
use sluice::store::{JobList, Subscription};
use sluice::unique::UniqueOptions;

/// The store opened from the settings, or a node's API.
pub enum Target {
    Store(App),
    Api(Api),
}

/// A node's API, for the data commands.
pub struct Api {
    client: HttpClient,
    /// Where it is, for messages.
    pub url: String,
}

impl Api {
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Api> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!(
                "`{url}` is not a node's address; use http://HOST:PORT (or https:// behind a proxy)"
            );
        }
        let mut client = HttpClient::new(url);
        if let Some(token) = token {
            client = client.with_token(token);
        }
        Ok(Api {
            client,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    /// Calls an endpoint; a refusal reads as the CLI's own error (the problem's detail).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> anyhow::Result<T> {
        self.client
            .call(method, path, body)
            .await
            .map_err(problem_as_error)
    }
}

/// The node's words for a refusal, as the CLI would have said them.
pub fn problem_as_error(error: ClientError) -> anyhow::Error {
    match error {
        ClientError::Problem { detail, .. } => anyhow::anyhow!(detail),
        other => other.into(),
    }
}

/// Which jobs `sluice jobs` lists.
pub struct JobQuery {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    pub module: Option<String>,
    pub limit: u32,
}

impl Target {
    /// The opened store, for the commands that work on the database only.
    pub fn app(&self) -> anyhow::Result<&App> {
        match self {
            Target::Store(app) => Ok(app),
            Target::Api(api) => anyhow::bail!(
                "this command works on the database, not through a node's API; drop --url {} (and SLUICE_URL)",
                api.url
            ),
        }
    }

    pub async fn modules(&self) -> anyhow::Result<Vec<ModuleView>> {
        match self {
            Target::Store(app) => {
                let modules = app.store.module_list().await?;
                Ok(modules.iter().map(ModuleView::from).collect())
            }
            Target::Api(api) => {
                api.call(Method::GET, "/v1/modules", RequestBody::Empty)
                    .await
            }
        }
    }

    pub async fn jobs(&self, query: JobQuery) -> anyhow::Result<Vec<JobView>> {
        match self {
            Target::Store(app) => {
                let list = JobList {
                    state: query.state,
                    queue: query.queue,
                    module: query.module,
                    limit: query.limit,
                    ..Default::default()
                };
                let jobs = app.store.job_list(list).await?;
                Ok(jobs.iter().map(JobView::from).collect())
            }
            Target::Api(api) => {
                // Pages of the API's largest, newest first, until the limit.
                let mut jobs: Vec<JobView> = Vec::new();
                let mut before = None;
                while jobs.len() < query.limit as usize {
                    let want = (query.limit as usize - jobs.len()).min(1000);
                    let mut path = format!("/v1/jobs?limit={want}");
                    let filters = [
                        ("state", query.state.map(|s| s.as_str().to_string())),
                        ("queue", query.queue.clone()),
                        ("module", query.module.clone()),
                        ("before", before.map(|id: i64| id.to_string())),
                    ];
                    for (key, value) in filters {
                        if let Some(value) = value {
                            path.push_str(&format!("&{key}={}", encode(&value)));
                        }
                    }
                    let page: JobPage = api.call(Method::GET, &path, RequestBody::Empty).await?;
                    jobs.extend(page.jobs);
                    match page.next_before {
                        Some(next) => before = Some(next),
                        None => break,
                    }
                }
                Ok(jobs)
            }
        }
    }

    pub async fn job(&self, id: JobId) -> anyhow::Result<JobDetailView> {
        match self {
            Target::Store(app) => {
                let detail = app.store.job_get(id).await?;
                Ok(JobDetailView {
                    job: JobView::from(&detail.job),
                    attempts: detail.attempts.iter().map(AttemptView::from).collect(),
                })
            }
            Target::Api(api) => {
                api.call(Method::GET, &format!("/v1/jobs/{id}"), RequestBody::Empty)
                    .await
            }
        }
    }

    pub async fn retry(&self, id: JobId) -> anyhow::Result<JobView> {
        match self {
            Target::Store(app) => {
                let job = sluice::ops::retry_job(app.store.as_ref(), id, None, CLI_ACTOR).await?;
                Ok(JobView::from(&job))
            }
            Target::Api(api) => {
                let path = format!("/v1/jobs/{id}/retry");
                api.call(Method::POST, &path, RequestBody::Empty).await
            }
        }
    }

    pub async fn cancel(&self, id: JobId) -> anyhow::Result<JobView> {
        match self {
            Target::Store(app) => {
                let job = sluice::ops::cancel_job(app.store.as_ref(), id, CLI_ACTOR).await?;
                Ok(JobView::from(&job))
            }
            Target::Api(api) => {
                let path = format!("/v1/jobs/{id}/cancel");
                api.call(Method::POST, &path, RequestBody::Empty).await
            }
        }
    }

    pub async fn delete(&self, id: JobId) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                Ok(sluice::ops::delete_job(app.store.as_ref(), id, CLI_ACTOR).await?)
            }
            Target::Api(api) => {
                let path = format!("/v1/jobs/{id}");
                api.call(Method::DELETE, &path, RequestBody::Empty).await
            }
        }
    }

    pub async fn queues(&self) -> anyhow::Result<Vec<QueueView>> {
        match self {
            Target::Store(app) => {
                let queues = app
                    .store
                    .queue_list(Some(sluice::store::QUEUE_COUNT_CAP))
                    .await?;
                Ok(queues.iter().map(QueueView::from).collect())
            }
            Target::Api(api) => {
                api.call(Method::GET, "/v1/queues", RequestBody::Empty)
                    .await
            }
        }
    }

    pub async fn cron_list(&self) -> anyhow::Result<Vec<CronView>> {
        match self {
            Target::Store(app) => {
                let entries = app.store.cron_list().await?;
                Ok(entries.iter().map(CronView::from).collect())
            }
            Target::Api(api) => api.call(Method::GET, "/v1/cron", RequestBody::Empty).await,
        }
    }

    pub async fn cron_put(&self, name: &str, spec: CronSpec) -> anyhow::Result<CronView> {
        match self {
            Target::Store(app) => {
                let entry =
                    sluice::ops::put_cron(app.store.as_ref(), name, spec, CLI_ACTOR).await?;
                Ok(CronView::from(&entry))
            }
            Target::Api(api) => {
                let args = match spec.args.as_deref().map(serde_json::from_str) {
                    None => None,
                    Some(Ok(args)) => Some(args),
                    // Refused in the CLI's words before the request, as locally.
                    Some(Err(error)) => {
                        return Err(sluice::ops::OpError::BadArgs(format!(
                            "{error}: {}",
                            spec.args.unwrap_or_default()
                        ))
                        .into());
                    }
                };
                let body = CronBody {
                    schedule: spec.schedule,
                    module: spec.module,
                    function: spec.function,
                    args,
                    queue: spec.queue,
                    timezone: spec.timezone,
                    misfire: spec.misfire,
                    priority: spec.priority,
                    max_attempts: spec.max_attempts,
                };
                let path = format!("/v1/cron/{}", encode(name));
                api.call(
                    Method::PUT,
                    &path,
                    RequestBody::Json(serde_json::to_value(body)?),
                )
                .await
            }
        }
    }

    pub async fn cron_remove(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::remove_cron(app.store.as_ref(), name, CLI_ACTOR).await?;
            }
            Target::Api(api) => {
                let path = format!("/v1/cron/{}", encode(name));
                api.call::<serde_json::Value>(Method::DELETE, &path, RequestBody::Empty)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn set_queue_paused(&self, name: &str, paused: bool) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::set_queue_paused(app.store.as_ref(), name, paused, CLI_ACTOR).await?;
            }
            Target::Api(api) => {
                let action = if paused { "pause" } else { "resume" };
                let path = format!("/v1/queues/{}/{action}", encode(name));
                api.call::<serde_json::Value>(Method::POST, &path, RequestBody::Empty)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn set_queue_concurrency(
        &self,
        name: &str,
        concurrency: Option<u32>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::set_queue_concurrency(
                    app.store.as_ref(),
                    name,
                    concurrency,
                    CLI_ACTOR,
                )
                .await?;
            }
            Target::Api(api) => {
                let path = format!("/v1/queues/{}/concurrency", encode(name));
                let body = RequestBody::Json(serde_json::json!({ "concurrency": concurrency }));
                api.call::<serde_json::Value>(Method::PUT, &path, body)
                    .await?;
            }
        }
        Ok(())
    }

    /// A job's parent, children, dependencies and batch.
    pub async fn tree(&self, id: JobId) -> anyhow::Result<JobTreeView> {
        match self {
            Target::Store(app) => {
                let tree = sluice::ops::compose::tree(app.store.as_ref(), id).await?;
                Ok(JobTreeView::from(&tree))
            }
            Target::Api(api) => {
                api.call(
                    Method::GET,
                    &format!("/v1/jobs/{id}/tree"),
                    RequestBody::Empty,
                )
                .await
            }
        }
    }

    pub async fn batch(&self, id: i64) -> anyhow::Result<BatchView> {
        match self {
            Target::Store(app) => {
                let batch = sluice::ops::compose::batch(app.store.as_ref(), id).await?;
                Ok(BatchView::from(&batch))
            }
            Target::Api(api) => {
                api.call(
                    Method::GET,
                    &format!("/v1/batches/{id}"),
                    RequestBody::Empty,
                )
                .await
            }
        }
    }

    pub async fn subscriptions(&self) -> anyhow::Result<Vec<SubscriptionView>> {
        match self {
            Target::Store(app) => {
                let found = sluice::ops::compose::subscriptions(app.store.as_ref(), None).await?;
                Ok(found.into_iter().map(SubscriptionView::from).collect())
            }
            Target::Api(api) => {
                api.call(Method::GET, "/v1/topics", RequestBody::Empty)
                    .await
            }
        }
    }

    /// Subscribes; false if it was subscribed already.
    pub async fn subscribe(&self, subscription: Subscription) -> anyhow::Result<bool> {
        match self {
            Target::Store(app) => {
                Ok(
                    sluice::ops::compose::subscribe(app.store.as_ref(), subscription, CLI_ACTOR)
                        .await?,
                )
            }
            Target::Api(api) => {
                let path = format!("/v1/topics/{}/subscriptions", encode(&subscription.topic));
                let before = self.subscriptions().await?;
                let _: SubscriptionView = api
                    .call(Method::POST, &path, subscription_body(&subscription))
                    .await?;
                Ok(!before.iter().any(|s| {
                    (&s.topic, &s.queue, &s.module, &s.function)
                        == (
                            &subscription.topic,
                            &subscription.queue,
                            &subscription.module,
                            &subscription.function,
                        )
                }))
            }
        }
    }

    /// Unsubscribes; an error if there was no such subscription.
    pub async fn unsubscribe(&self, subscription: Subscription) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::compose::unsubscribe(app.store.as_ref(), &subscription, CLI_ACTOR)
                    .await?;
                Ok(())
            }
            Target::Api(api) => {
                let path = format!("/v1/topics/{}/subscriptions", encode(&subscription.topic));
                api.call(Method::DELETE, &path, subscription_body(&subscription))
                    .await
            }
        }
    }

    /// Publishes a JSON event; returns the ids of the jobs it became.
    pub async fn publish(
        &self,
        topic: &str,
        json_args: &str,
        partition_key: Option<String>,
    ) -> anyhow::Result<Vec<JobId>> {
        match self {
            Target::Store(app) => {
                let enqueued = sluice::ops::compose::publish(
                    app.store.as_ref(),
                    topic,
                    json_args,
                    partition_key,
                )
                .await?;
                Ok(enqueued.iter().map(|job| job.id).collect())
            }
            Target::Api(api) => {
                let args: serde_json::Value = serde_json::from_str(json_args)
                    .map_err(|e| sluice::ops::OpError::BadArgs(format!("{e}: {json_args}")))?;
                let path = format!("/v1/topics/{}/events", encode(topic));
                let body = RequestBody::Json(
                    serde_json::json!({ "args": args, "partition_key": partition_key }),
                );
                let published: serde_json::Value = api.call(Method::POST, &path, body).await?;
                Ok(published["ids"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(|id| id.as_i64()).collect())
                    .unwrap_or_default())
            }
        }
    }

    pub async fn breakers(&self) -> anyhow::Result<Vec<BreakerView>> {
        match self {
            Target::Store(app) => {
                let breakers = sluice::ops::list_breakers(app.store.as_ref()).await?;
                Ok(breakers.iter().map(BreakerView::from).collect())
            }
            Target::Api(api) => {
                api.call(Method::GET, "/v1/breakers", RequestBody::Empty)
                    .await
            }
        }
    }

    /// Sets (or with `None` removes) a breaker policy.
    pub async fn set_breaker(
        &self,
        module: &str,
        function: &str,
        policy: Option<&BreakerPolicy>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::set_breaker_policy(
                    app.store.as_ref(),
                    module,
                    function,
                    policy.cloned(),
                    CLI_ACTOR,
                )
                .await?;
            }
            Target::Api(api) => {
                let path = format!("/v1/breakers/{}/{}", encode(module), encode(function));
                match policy {
                    Some(policy) => {
                        let body = RequestBody::Json(serde_json::to_value(policy)?);
                        api.call::<serde_json::Value>(Method::PUT, &path, body)
                            .await?;
                    }
                    None => {
                        api.call::<serde_json::Value>(Method::DELETE, &path, RequestBody::Empty)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn reset_breaker(&self, module: &str, function: &str) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::reset_breaker(app.store.as_ref(), module, function, CLI_ACTOR).await?;
            }
            Target::Api(api) => {
                let path = format!("/v1/breakers/{}/{}/reset", encode(module), encode(function));
                api.call::<serde_json::Value>(Method::POST, &path, RequestBody::Empty)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn retention(&self) -> anyhow::Result<Option<RetentionSecs>> {
        match self {
            Target::Store(app) => Ok(sluice::ops::stored_retention(app.store.as_ref())
                .await?
                .map(RetentionSecs::from)),
            Target::Api(api) => {
                api.call(Method::GET, "/v1/retention", RequestBody::Empty)
                    .await
            }
        }
    }

    pub async fn set_retention(&self, retention: RetentionSecs) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::set_retention(app.store.as_ref(), retention, CLI_ACTOR).await?;
            }
            Target::Api(api) => {
                let body = RequestBody::Json(serde_json::to_value(retention)?);
                api.call::<serde_json::Value>(Method::PUT, "/v1/retention", body)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn set_queue_autoscale(
        &self,
        name: &str,
        autoscale: Option<&Autoscale>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::set_queue_autoscale(
                    app.store.as_ref(),
                    name,
                    autoscale.cloned(),
                    CLI_ACTOR,
                )
                .await?;
            }
            Target::Api(api) => {
                let path = format!("/v1/queues/{}/autoscale", encode(name));
                let body = RequestBody::Json(serde_json::json!({ "autoscale": autoscale }));
                api.call::<serde_json::Value>(Method::PUT, &path, body)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn set_queue_limits(&self, name: &str, limits: &QueueLimits) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                sluice::ops::set_queue_limits(
                    app.store.as_ref(),
                    name,
                    Some(limits.clone()),
                    CLI_ACTOR,
                )
                .await?;
            }
            Target::Api(api) => {
                let path = format!("/v1/queues/{}/limits", encode(name));
                let body = RequestBody::Json(serde_json::to_value(limits)?);
                api.call::<serde_json::Value>(Method::PUT, &path, body)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores `wasm` as the next version of `name`; `sandbox` validates and compiles it when
    /// the store is local (a node's API does both itself).
    pub async fn upload(
        &self,
        name: String,
        wasm: Vec<u8>,
        sandbox: impl FnOnce() -> anyhow::Result<sluice::sandbox::Sandbox>,
    ) -> Result<UploadView, UploadError> {
        match self {
            Target::Store(app) => {
                let sandbox = sandbox().map_err(UploadError::Other)?;
                let uploaded =
                    sluice::ops::upload(app.store.as_ref(), &sandbox, name, wasm, CLI_ACTOR)
                        .await
                        .map_err(|error| match error {
                            sluice::ops::OpError::Module(_) => {
                                UploadError::Refused(error.to_string())
                            }
                            other => UploadError::Other(other.into()),
                        })?;
                Ok(UploadView {
                    module: ModuleView::from(&uploaded.module),
                    already_present: uploaded.already_present,
                })
            }
            Target::Api(api) => {
                let path = format!("/v1/modules/{}", encode(&name));
                let body = RequestBody::Bytes {
                    content_type: "application/wasm",
                    bytes: wasm,
                };
                api.client
                    .call(Method::POST, &path, body)
                    .await
                    .map_err(|error| match error {
                        ClientError::Problem { code, detail, .. }
                            if code == "invalid_module" || code == "module_too_large" =>
                        {
                            UploadError::Refused(detail)
                        }
                        other => UploadError::Other(problem_as_error(other)),
                    })
            }
        }
    }

    /// Enqueues one job, as checked by `sluice::ops` here or by the node. Through a node,
    /// its own default number of attempts applies unless `max_attempts_named`.
    pub async fn enqueue(
        &self,
        mut job: NewJob,
        max_attempts_named: bool,
        unique: Option<&UniqueOptions>,
    ) -> anyhow::Result<EnqueuedOne> {
        match self {
            Target::Store(app) => {
                job.unique = unique_key(&job, unique)?.or(job.unique);
                let enqueued = sluice::ops::enqueue(app.store.as_ref(), job).await?;
                Ok(EnqueuedOne {
                    id: enqueued.id,
                    existing: enqueued.existing,
                })
            }
            Target::Api(api) => {
                let enqueued = api
                    .client
                    .enqueue(&call_of(job, max_attempts_named, unique)?)
                    .await
                    .map_err(problem_as_error)?;
                Ok(EnqueuedOne {
                    id: enqueued.id,
                    existing: enqueued.existing,
                })
            }
        }
    }

    /// Enqueues many jobs: all or none on the store; through a node, in requests of the API's
    /// largest bulk, each all or none, calling `progress` with the count stored so far.
    pub async fn enqueue_many(
        &self,
        mut jobs: Vec<NewJob>,
        max_attempts_named: bool,
        unique: Option<&UniqueOptions>,
        progress: impl Fn(usize),
    ) -> anyhow::Result<(usize, usize)> {
        let count = jobs.len();
        let existing = match self {
            Target::Store(app) => {
                for job in &mut jobs {
                    job.unique = unique_key(job, unique)?.or(job.unique.take());
                }
                let enqueued = sluice::ops::enqueue_many(app.store.as_ref(), jobs).await?;
                enqueued.iter().filter(|job| job.existing).count()
            }
            Target::Api(api) => {
                let mut stored = 0;
                let mut existing = 0;
                for chunk in jobs.chunks(sluice::api::MAX_BULK_JOBS) {
                    let calls = chunk
                        .iter()
                        .cloned()
                        .map(|job| call_of(job, max_attempts_named, unique))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let enqueued = api
                        .client
                        .enqueue_many(&calls)
                        .await
                        .map_err(problem_as_error)
                        .with_context(|| {
                            format!(
                                "after {stored} of {count} jobs were enqueued (lines 1 to {stored})"
                            )
                        })?;
                    existing += enqueued.iter().filter(|job| job.existing).count();
                    stored += chunk.len();
                    progress(stored);
                }
                existing
            }
        };
        Ok((count, existing))
    }
}

/// Tokens and the audit log: `sluice token` and `sluice audit`.
impl Target {
    pub async fn tokens(&self) -> anyhow::Result<Vec<TokenView>> {
        match self {
            Target::Store(app) => {
                let tokens = app.store.token_list().await?;
                Ok(tokens.iter().map(TokenView::from).collect())
            }
            Target::Api(api) => {
                api.call(Method::GET, "/v1/tokens", RequestBody::Empty)
                    .await
            }
        }
    }

    pub async fn token_create(&self, name: &str, role: Role) -> anyhow::Result<CreatedToken> {
        match self {
            Target::Store(app) => {
                let (text, info) =
                    sluice::ops::create_token(app.store.as_ref(), name, role, CLI_ACTOR).await?;
                Ok(CreatedToken {
                    token: TokenView::from(&info),
                    text,
                })
            }
            Target::Api(api) => {
                let body = serde_json::json!({ "name": name, "role": role.as_str() });
                api.call(Method::POST, "/v1/tokens", RequestBody::Json(body))
                    .await
            }
        }
    }

    pub async fn token_revoke(&self, name: &str) -> anyhow::Result<()> {
        match self {
            Target::Store(app) => {
                Ok(sluice::ops::revoke_token(app.store.as_ref(), name, CLI_ACTOR).await?)
            }
            Target::Api(api) => {
                let path = format!("/v1/tokens/{}", encode(name));
                api.call(Method::DELETE, &path, RequestBody::Empty).await
            }
        }
    }

    /// The newest `limit` entries of the audit log.
    pub async fn audit(&self, limit: u32) -> anyhow::Result<Vec<AuditView>> {
        match self {
            Target::Store(app) => {
                let entries = app.store.audit_list(limit, None).await?;
                Ok(entries.into_iter().map(AuditView::from).collect())
            }
            Target::Api(api) => {
                let mut entries: Vec<AuditView> = Vec::new();
                while entries.len() < limit as usize {
                    let want = (limit as usize - entries.len()).min(1000);
                    let mut path = format!("/v1/audit?limit={want}");
                    if let Some(last) = entries.last() {
                        path.push_str(&format!("&before={}", last.id));
                    }
                    let page: Vec<AuditView> =
                        api.call(Method::GET, &path, RequestBody::Empty).await?;
                    let done = page.len() < want;
                    entries.extend(page);
                    if done {
                        break;
                    }
                }
                Ok(entries)
            }
        }
    }
}

/// Why an upload did not store a module.
pub enum UploadError {
    /// The module itself was refused (not wasm, too large, ...): the reason.
    Refused(String),
    Other(anyhow::Error),
}

/// The unique job's key of `job`, if it is one, as a local enqueue stores it.
fn unique_key(job: &NewJob, unique: Option<&UniqueOptions>) -> anyhow::Result<Option<UniqueKey>> {
    let Some(options) = unique else {
        return Ok(None);
    };
    let key = options
        .key_for(job, chrono::Utc::now())
        .map_err(sluice::ops::OpError::Invalid)?;
    Ok(Some(key))
}

/// The client's call for a job the CLI built; its attempts only if the user named them.
fn subscription_body(subscription: &Subscription) -> RequestBody {
    RequestBody::Json(serde_json::json!({
        "queue": subscription.queue,
        "module": subscription.module,
        "function": subscription.function,
        "max_attempts": subscription.max_attempts,
    }))
}

fn call_of(
    job: NewJob,
    max_attempts_named: bool,
    unique: Option<&UniqueOptions>,
) -> anyhow::Result<sluice::client::Call> {
    let args: serde_json::Value =
        serde_json::from_slice(&job.args).context("the args are not JSON")?;
    let mut call = sluice::client::Call::new(job.module, job.function)
        .json(&args)?
        .queue(job.queue)
        .priority(job.priority);
    if max_attempts_named {
        call = call.max_attempts(job.max_attempts);
    }
    if let Some(at) = job.scheduled_at {
        call = call.run_at(at);
    }
    if let Some(version) = job.module_version {
        call = call.version(version);
    }
    if let Some(fuel) = job.limits.fuel {
        call = call.fuel(fuel);
    }
    if let Some(timeout) = job.limits.timeout {
        call = call.timeout(timeout);
    }
    if let Some(memory) = job.limits.memory_bytes {
        call = call.memory(memory);
    }
    if let Some(key) = job.unique {
        // The node namespaces the key again as it stores it.
        let text = key.key.strip_prefix(IDEMPOTENCY_PREFIX).unwrap_or(&key.key);
        call = call.idempotency_key(text);
    }
    if let Some(options) = unique {
        call = call.unique(options.clone());
    }
    if let Some(key) = job.partition_key {
        call = call.partition_key(key);
    }
    for dependency in job.depends_on {
        if let sluice::compose::JobRef::Stored(id) = dependency.on {
            call = call.depends_on(id, dependency.if_failed);
        }
    }
    Ok(call)
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
