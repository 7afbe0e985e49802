//! Who may do what. Every route names the least role it needs; a caller presents a bearer
//! token, or the dashboard's session cookie (exchanged for a token, see `session.rs`), whose
//! role must reach it. With no token in the store at all the API is open, and then it listens
//! on loopback only (`bind` refuses more): a laptop needs no set-up.
//!
//! Browsers send cookies with requests other sites make, so two guards stand before any
//! action: a request a browser marks as cross-site is refused whatever it carries (this also
//! shields the open API on loopback from web pages), and an action under a session cookie
//! must carry the session's CSRF value in a header, which another site can neither read nor
//! set.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::problem::{ApiResult, Json, Problem, Query};
use crate::model::Role;

/// Who is calling: a token's name and role, or the open API's local caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The text of the dashboard session the caller came with, if it came with one.
    pub session: Option<String>,
}

/// The dashboard session's cookie.
pub const SESSION_COOKIE: &str = "sluice_session";
/// The header an action under a session carries its CSRF value in.
pub const CSRF_HEADER: &str = "x-sluice-csrf";

/// The caller of an API with no tokens in its store (loopback only).
pub const LOCAL_CALLER: &str = "local";

/// `route`, for callers whose role is at least `role`.
pub fn allow(
    role: Role,
    state: &ApiState,
    route: MethodRouter<ApiState>,
) -> MethodRouter<ApiState> {
    route.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), role),
        authorize,
    ))
}

async fn authorize(
    State((state, needed)): State<(ApiState, Role)>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).cloned();
    let session = session_cookie(request.headers());
    let caller = match caller(&state, presented, session).await {
        Ok(caller) => caller,
        Err(problem) => return refuse(request, problem).await,
    };
    if let Some(session) = &caller.session
        && !request.method().is_safe()
    {
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if sent != Some(crate::ops::csrf_token(session).as_str()) {
            let problem = Problem::new(
                StatusCode::FORBIDDEN,
                "csrf",
                format!(
                    "an action under a dashboard session must carry the session's `{CSRF_HEADER}` header; reload the page"
                ),
            );
            return refuse(request, problem).await;
        }
    }
    if caller.role < needed {
        let problem = Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the token `{}` has the role {}; this needs {needed}",
                caller.name, caller.role
            ),
        );
        return refuse(request, problem).await;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

pub(super) async fn caller(
    state: &ApiState,
    presented: Option<HeaderValue>,
    session: Option<String>,
) -> Result<Caller, Problem> {
    let Some(value) = presented else {
        if let Some(session) = session {
            return match crate::ops::session_token(state.store.as_ref(), &session).await? {
                Some(token) => Ok(Caller {
                    name: token.name,
                    role: token.role,
                    session: Some(session),
                }),
                None => Err(unauthorized(
                    "the dashboard session ended (it expired, or its token was revoked): sign in again",
                )),
            };
        }
        if state.store.token_exists().await? {
            return Err(unauthorized(
                "this API needs a token: send `Authorization: Bearer TOKEN` (an admin makes one with `sluice token create`)",
            ));
        }
        return Ok(Caller {
            name: LOCAL_CALLER.to_string(),
            role: Role::Admin,
            session: None,
        });
    };
    let text = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    match crate::ops::authenticate(state.store.as_ref(), text.trim()).await? {
        Some(token) => Ok(Caller {
            name: token.name,
            role: token.role,
            session: None,
        }),
        None => Err(unauthorized(
            "the token is not valid: it was revoked, or never made",
        )),
    }
}

/// Answers a refused request after draining its body (see `body.rs`).
async fn refuse(request: Request, problem: Problem) -> Response {
    let drained = super::body::drain(request.into_body()).await;
    problem.closing_connection(!drained).into_response()
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

/// The session cookie's value, if the request has one. (One cookie of one name is read, so
/// the header is split here rather than through a cookie library.)
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Refuses an action a browser says another site made (`Sec-Fetch-Site`), or whose `Origin`
/// is not the host it was sent to (older browsers); the approach of Go's
/// `http.CrossOriginProtection`. Clients that are not browsers send neither header.
pub async fn same_origin_actions(request: Request, next: Next) -> Response {
    if !request.method().is_safe() && is_cross_origin(request.headers()) {
        let problem = Problem::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "an action from another site's page is refused: act from the dashboard, the CLI or an API client",
        );
        return refuse(request, problem).await;
    }
    next.run(request).await
}

fn is_cross_origin(headers: &axum::http::HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").map(|(_, authority)| authority) != Some(host)
        }
        // `Origin: null` (a sandboxed frame, a redirect) and an origin with no host to
        // compare it with are refused.
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The `WWW-Authenticate` challenge a 401 carries.
pub fn challenge(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// One recorded action.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The token's name (`local` on an API with no tokens, `cli` for a command).
    pub actor: String,
    pub action: String,
    pub target: String,
}

impl From<crate::store::AuditEntry> for AuditView {
    fn from(e: crate::store::AuditEntry) -> AuditView {
        AuditView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
        }
    }
}

/// Paging of the audit log.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditPage {
    /// Only entries with a smaller id.
    pub before: Option<i64>,
    /// At most this many (1 to 1000; 100 by default).
    pub limit: Option<u32>,
}

/// Every recorded action but enqueueing, newest first.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditPage),
    responses(
        (status = 200, body = Vec<AuditView>),
        (status = 400, description = "A malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(page): Query<AuditPage>,
) -> ApiResult<Json<Vec<AuditView>>> {
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(crate::ops::OpError::Invalid("limit must be between 1 and 1000".into()).into());
    }
    let entries = state.store.audit_list(limit, page.before).await?;
    Ok(Json(entries.into_iter().map(AuditView::from).collect()))
}
