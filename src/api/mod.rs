//! The HTTP API: an axum router over the operations the CLI uses, versioned under `/v1`, with
//! its OpenAPI 3.1 document generated from the handlers (utoipa) and served at
//! `/openapi.json`. Errors are problem documents (`problem.rs`).

mod jobs;
mod modules;
mod nodes;
pub mod problem;
mod queues;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use utoipa::OpenApi;

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
        jobs::enqueue, jobs::enqueue_many, jobs::list, jobs::get, jobs::retry, jobs::cancel,
        jobs::delete,
        queues::list, queues::pause, queues::resume,
        nodes::list,
    ),
    components(schemas(problem::Problem)),
    tags(
        (name = "modules", description = "Job modules: WebAssembly components and their versions"),
        (name = "jobs", description = "Enqueue, find and act on jobs"),
        (name = "queues", description = "Queues, their counts, pause and resume"),
        (name = "nodes", description = "The nodes that run jobs"),
    )
)]
struct ApiDoc;

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

/// The router: `/v1/...`, `/openapi.json` and `/healthz`.
pub fn router(state: ApiState) -> Router {
    let upload_limit = state.max_module_bytes + 1;
    let document = openapi_json();
    Router::new()
        .route("/v1/modules", get(modules::list))
        .route(
            "/v1/modules/{name}",
            get(modules::get)
                .post(modules::upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route("/v1/jobs/bulk", post(jobs::enqueue_many))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/nodes", get(nodes::list))
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document,
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { problem::Problem::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

/// Where the API listens, from `--listen`: an address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

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
        "refusing to listen on {0}: the API has no authentication yet, so it serves loopback addresses only (127.0.0.1, ::1); put a reverse proxy with authentication in front of it"
    )]
    NotLoopback(SocketAddr),
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

/// Binds `addr`, refusing addresses beyond loopback.
pub async fn bind(addr: SocketAddr) -> Result<Bound, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
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
