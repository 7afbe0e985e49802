//! The dashboard: a page and its scripts, embedded in the binary and served by every node at
//! `/` beside the API. It holds no data of its own: every figure and action goes through
//! `/v1` with the caller's role, so the dashboard can do nothing the API would refuse.
//! No build step: the scripts are ES modules as written, and the one library (uPlot, for
//! charts) is vendored under `assets/vendor/` with its licence.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::problem::{Path, Problem};

/// One embedded file: its path under `assets/`, its media type, its bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $media_type:expr) => {
        Asset {
            path: $path,
            media_type: $media_type,
            bytes: include_bytes!(concat!("assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/queues.js", JS),
    asset!("js/pages/jobs.js", JS),
    asset!("js/pages/job.js", JS),
    asset!("js/pages/modules.js", JS),
    asset!("js/pages/nodes.js", JS),
    asset!("js/pages/dead.js", JS),
    asset!("js/pages/signin.js", JS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

const INDEX: &str = include_str!("assets/index.html");

/// Scripts and styles from this node only; no inline script, no frames, no other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

pub(super) async fn index(State(state): State<ApiState>) -> Response {
    // The base path is checked to be letters, digits and `-_.~/`, so it is safe in HTML.
    let page = INDEX.replace("{{BASE}}", &format!("{}/", state.base_path));
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
        .into_response();
    harden(response.headers_mut());
    response
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some((index, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.path == path) else {
        return Problem::not_found(format!("the dashboard has no file `{path}`")).into_response();
    };
    let etag = &etags()[index];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|sent| sent.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response();
    }
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.media_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, etag.clone()),
        ],
        asset.bytes,
    )
        .into_response();
    harden(response.headers_mut());
    response
}

/// Each asset's ETag (a digest of its bytes), computed once: a browser revalidates every
/// load and downloads a file again only when a new binary changed it.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = hex::encode(&Sha256::digest(a.bytes)[..12]);
                HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is header-safe")
            })
            .collect()
    })
}

fn harden(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}
