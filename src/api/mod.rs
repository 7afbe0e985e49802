//! The HTTP API: an axum router over the operations the CLI uses, versioned under `/v1`, with
//! its OpenAPI 3.1 document generated from the handlers (utoipa) and served at
//! `/openapi.json`. Errors are problem documents (`problem.rs`).

pub mod auth;
pub mod batches;
mod body;
pub mod breakers;
pub mod cron;
mod dashboard;
mod dead_letters;
mod jobs;
mod metrics;
mod modules;
mod nodes;
pub mod problem;
mod queues;
mod retention;
pub mod session;
mod stats;
pub mod tokens;
pub mod topics;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use utoipa::OpenApi;

use crate::metrics::NodeMetrics;
use crate::sandbox::Sandbox;
use crate::store::Store;

pub use self::jobs::MAX_BULK_JOBS;

/// What every handler reaches: the store, and the sandbox that validates uploads.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub sandbox: Sandbox,
    /// The largest module an upload may carry.
    pub max_module_bytes: usize,
    /// What `/metrics` shows; the API adds its enqueues and store errors.
    pub metrics: Arc<NodeMetrics>,
    /// Attempts of an enqueued job that names no `max_attempts`.
    pub default_max_attempts: i32,
    /// How long a job holds the idempotency key it was enqueued with.
    pub idempotency_period: std::time::Duration,
    /// Single enqueues, committed in groups.
    pub enqueuer: crate::ops::GroupedEnqueue,
    /// The path a reverse proxy serves the node under (`/sluice`), or empty (see
    /// `base_path`): the dashboard's links and the session cookie's path start with it.
    pub base_path: String,
}

impl ApiState {
    /// The state of an API whose metrics also show `sandbox`'s pool and memory use.
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Sandbox,
        max_module_bytes: usize,
        metrics: Arc<NodeMetrics>,
    ) -> ApiState {
        let sampled = sandbox.clone();
        metrics.add_sampler(move |sample| {
            let usage = sampled.usage();
            sample.instance_slots += usage.instance_slots;
            sample.instance_slots_in_use += usage.instance_slots_in_use;
            sample.memory_budget_bytes += usage.memory_budget_bytes;
            sample.memory_budget_used_bytes += usage.memory_budget_used_bytes;
        });
        ApiState {
            enqueuer: crate::ops::GroupedEnqueue::start(store.clone()),
            store,
            sandbox,
            max_module_bytes,
            metrics,
            default_max_attempts: crate::model::NewJob::DEFAULT_MAX_ATTEMPTS,
            idempotency_period: crate::ops::DEFAULT_IDEMPOTENCY_PERIOD,
            base_path: String::new(),
        }
    }
}

/// The largest JSON body (a bulk enqueue of many jobs).
pub const MAX_JSON_BODY: usize = 64 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Background jobs, each attempt in its own WebAssembly sandbox. Errors are RFC 9457 problem documents (`application/problem+json`) with a stable `code`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        modules::upload, modules::list, modules::get,
        jobs::enqueue, jobs::enqueue_many, jobs::list, jobs::get, jobs::tree, jobs::retry, jobs::cancel,
        jobs::delete, jobs::retry_many, jobs::cancel_many, jobs::delete_many,
        queues::list, queues::pause, queues::resume, queues::set_concurrency, queues::set_limits,
        queues::set_autoscale,
        cron::list, cron::put, cron::remove,
        breakers::list, breakers::put, breakers::remove, breakers::reset,
        batches::create, batches::get,
        topics::list, topics::subscribe, topics::unsubscribe, topics::publish,
        retention::get, retention::put,
        nodes::list, metrics::scrape, stats::get,
        tokens::list, tokens::create, tokens::revoke, auth::list,
        session::get, session::create, session::delete,
        dead_letters::groups, dead_letters::failures,
    ),
    components(schemas(problem::Problem)),
    modifiers(&BearerTokens),
    tags(
        (name = "modules", description = "Job modules: WebAssembly components and their versions"),
        (name = "jobs", description = "Enqueue, find and act on jobs"),
        (name = "queues", description = "Queues, their counts, pause, resume, concurrency and limits"),
        (name = "cron", description = "Periodic jobs: the leader inserts a job per slot, once"),
        (name = "retention", description = "How long finished jobs are kept, by state"),
        (name = "breakers", description = "Circuit breakers per module and function: policies, states, resets"),
        (name = "batches", description = "Groups of jobs with callbacks when they end"),
        (name = "topics", description = "Topics: each subscription gets its own job for every event published"),
        (name = "nodes", description = "The nodes that run jobs"),
        (name = "tokens", description = "The API's bearer tokens and their roles"),
        (name = "audit", description = "Who did what, when"),
    )
)]
struct ApiDoc;

/// Bearer tokens on every operation, and the 401 and 403 any of them can answer.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `sluice token create`; none is needed while the store has no token (loopback only)",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let problem = || {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))))
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in [
                    ("401", "No token, or one that is not valid"),
                    ("403", "The token's role is not enough"),
                ] {
                    operation.responses.responses.insert(
                        status.to_string(),
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(problem::PROBLEM_JSON, problem())
                                .build(),
                        ),
                    );
                }
            }
        }
    }
}

/// The OpenAPI document, as committed in `openapi.json`.
pub fn openapi_json() -> String {
    let mut document = ApiDoc::openapi();
    // The crate's version would make every release rewrite the committed document; the
    // contract's version is the path's (`/v1`).
    document.info.version = "1".to_string();
    document
        .to_pretty_json()
        .expect("the OpenAPI document always serializes")
        + "\n"
}

/// The router: `/v1/...` (each route with the least role it needs), `/openapi.json`,
/// `/healthz` and the dashboard (open to all; its data comes through `/v1`), at the root
/// and under the base path alike.
pub fn router(state: ApiState) -> Router {
    let base = state.base_path.clone();
    if base.is_empty() {
        return routes(state);
    }
    // A nested "/" answers only at "/sluice"; the page is most often asked for as "/sluice/",
    // the form a proxy's prefix rule and the session cookie's path take.
    let index = Router::new()
        .route(&format!("{base}/"), get(dashboard::index))
        .with_state(state.clone());
    let routes = routes(state);
    Router::new()
        .nest(&base, routes.clone())
        .merge(routes)
        .merge(index)
}

fn routes(state: ApiState) -> Router {
    use crate::model::Role::{Admin, Operate, Read};
    let document = openapi_json();
    let s = &state;
    Router::new()
        .merge(dashboard::routes())
        .route(
            "/v1/session",
            get(session::get)
                .post(session::create)
                .delete(session::delete),
        )
        .route(
            "/v1/dead-letters",
            auth::allow(Read, s, get(dead_letters::groups)),
        )
        .route(
            "/v1/dead-letters/failures",
            auth::allow(Read, s, get(dead_letters::failures)),
        )
        .route("/v1/modules", auth::allow(Read, s, get(modules::list)))
        .route(
            "/v1/modules/{name}",
            auth::allow(Read, s, get(modules::get)).merge(auth::allow(
                Admin,
                s,
                post(modules::upload),
            )),
        )
        .route(
            "/v1/jobs",
            auth::allow(Operate, s, post(jobs::enqueue)).merge(auth::allow(
                Read,
                s,
                get(jobs::list),
            )),
        )
        .route(
            "/v1/jobs/bulk",
            auth::allow(Operate, s, post(jobs::enqueue_many)),
        )
        .route(
            "/v1/jobs/retry",
            auth::allow(Operate, s, post(jobs::retry_many)),
        )
        .route(
            "/v1/jobs/cancel",
            auth::allow(Operate, s, post(jobs::cancel_many)),
        )
        .route(
            "/v1/jobs/delete",
            auth::allow(Operate, s, post(jobs::delete_many)),
        )
        .route(
            "/v1/jobs/{id}",
            auth::allow(Read, s, get(jobs::get)).merge(auth::allow(
                Operate,
                s,
                delete(jobs::delete),
            )),
        )
        .route(
            "/v1/jobs/{id}/retry",
            auth::allow(Operate, s, post(jobs::retry)),
        )
        .route(
            "/v1/jobs/{id}/cancel",
            auth::allow(Operate, s, post(jobs::cancel)),
        )
        .route("/v1/queues", auth::allow(Read, s, get(queues::list)))
        .route(
            "/v1/queues/{name}/pause",
            auth::allow(Operate, s, post(queues::pause)),
        )
        .route(
            "/v1/queues/{name}/resume",
            auth::allow(Operate, s, post(queues::resume)),
        )
        .route(
            "/v1/queues/{name}/concurrency",
            auth::allow(Operate, s, put(queues::set_concurrency)),
        )
        .route(
            "/v1/queues/{name}/autoscale",
            auth::allow(Operate, s, put(queues::set_autoscale)),
        )
        .route(
            "/v1/queues/{name}/limits",
            auth::allow(Operate, s, put(queues::set_limits)),
        )
        .route(
            "/v1/retention",
            auth::allow(Read, s, get(retention::get)).merge(auth::allow(
                Operate,
                s,
                put(retention::put),
            )),
        )
        .route("/v1/breakers", auth::allow(Read, s, get(breakers::list)))
        .route(
            "/v1/batches",
            auth::allow(Operate, s, post(batches::create)),
        )
        .route("/v1/batches/{id}", auth::allow(Read, s, get(batches::get)))
        .route("/v1/topics", auth::allow(Read, s, get(topics::list)))
        .route(
            "/v1/topics/{topic}/subscriptions",
            auth::allow(Operate, s, post(topics::subscribe)).merge(auth::allow(
                Operate,
                s,
                delete(topics::unsubscribe),
            )),
        )
        .route(
            "/v1/topics/{topic}/events",
            auth::allow(Operate, s, post(topics::publish)),
        )
        .route("/v1/jobs/{id}/tree", auth::allow(Read, s, get(jobs::tree)))
        .route(
            "/v1/breakers/{module}/{function}",
            auth::allow(Operate, s, put(breakers::put)).merge(auth::allow(
                Operate,
                s,
                delete(breakers::remove),
            )),
        )
        .route(
            "/v1/breakers/{module}/{function}/reset",
            auth::allow(Operate, s, post(breakers::reset)),
        )
        .route("/v1/cron", auth::allow(Read, s, get(cron::list)))
        .route(
            "/v1/cron/{name}",
            auth::allow(Operate, s, put(cron::put)).merge(auth::allow(
                Operate,
                s,
                delete(cron::remove),
            )),
        )
        .route("/v1/nodes", auth::allow(Read, s, get(nodes::list)))
        .route("/v1/stats", auth::allow(Read, s, get(stats::get)))
        .route(
            "/v1/tokens",
            auth::allow(Admin, s, get(tokens::list).post(tokens::create)),
        )
        .route(
            "/v1/tokens/{name}",
            auth::allow(Admin, s, delete(tokens::revoke)),
        )
        .route("/v1/audit", auth::allow(Admin, s, get(auth::list)))
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document,
                )
            }),
        )
        .route("/metrics", auth::allow(Read, s, get(metrics::scrape)))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { problem::Problem::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .layer(axum::middleware::from_fn(auth::same_origin_actions))
        .layer(axum::middleware::map_response(|response| async move {
            auth::challenge(response)
        }))
        .layer(axum::middleware::map_response_with_state(
            state.metrics.clone(),
            problem::count_store_failures,
        ))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

/// A base path as the router wants it: empty, or `/` and segments without a trailing `/`
/// (`sluice/` and `/sluice/` both give `/sluice`).
pub fn base_path(text: &str) -> Result<String, String> {
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let fits = |segment: &str| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    if !trimmed.split('/').all(fits) || trimmed.split('/').any(|s| s == "v1" || s == "assets") {
        return Err(format!(
            "`{text}` is not a base path: use segments of letters, digits, `-`, `_`, `.` and `~` separated by `/` (like /sluice), none of them v1 or assets"
        ));
    }
    Ok(format!("/{trimmed}"))
}

/// Where the API listens, from `--listen`: an address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Off => f.write_str("none"),
            Listen::On(addr) => write!(f, "{addr}"),
        }
    }
}

impl Listen {
    /// Parses `HOST:PORT` or `none`.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if text == "none" {
            return Ok(Listen::Off);
        }
        text.parse::<SocketAddr>().map(Listen::On).map_err(|_| {
            format!(
                "`{text}` is not an address to listen on; use IP:PORT (like 127.0.0.1:7700) or none"
            )
        })
    }
}

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0}: the store has no API token, so anyone who reaches the address could act on every job; make one with `sluice token create --role admin --name NAME`, or listen on loopback (127.0.0.1)"
    )]
    NoToken(SocketAddr),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener, whose address is known before serving (port 0 picks one).
pub struct Bound {
    listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
}

/// Binds `addr`; an address beyond loopback only once the store has a token.
pub async fn bind(addr: SocketAddr, store: &dyn Store) -> Result<Bound, ServeError> {
    if !addr.ip().is_loopback() && !store.token_exists().await? {
        return Err(ServeError::NoToken(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(Bound { listener, addr })
}

/// Serves the API on `bound` until `shutdown` resolves.
pub async fn serve(
    bound: Bound,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(bound.listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
