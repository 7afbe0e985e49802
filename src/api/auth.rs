//! Who may do what. Every route names the least role it needs; a caller presents a bearer
//! token, whose role must reach it. With no token in the store at all the API is open, and
//! then it listens on loopback only (`bind` refuses more): a laptop needs no set-up.

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
}

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
    let caller = match caller(&state, presented).await {
        Ok(caller) => caller,
        Err(problem) => return refuse(request, problem).await,
    };
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

async fn caller(state: &ApiState, presented: Option<HeaderValue>) -> Result<Caller, Problem> {
    let Some(value) = presented else {
        if state.store.token_exists().await? {
            return Err(unauthorized(
                "this API needs a token: send `Authorization: Bearer TOKEN` (an admin makes one with `sluice token create`)",
            ));
        }
        return Ok(Caller {
            name: LOCAL_CALLER.to_string(),
            role: Role::Admin,
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

/// Records what `caller` did; the action already happened, so a failure to record is
/// logged rather than returned.
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
