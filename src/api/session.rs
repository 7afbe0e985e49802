//! `/v1/session`: the dashboard's sign-in. A token is exchanged once for a session whose text
//! lives in an HttpOnly cookie (the page's scripts never hold a secret); the page reads its
//! role and CSRF value here, and signs out by ending the session.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::{Caller, SESSION_COOKIE, session_cookie};
use super::problem::{ApiResult, Json, Problem};
use super::tokens::role_schema;
use crate::model::Role;
use crate::ops::OpError;

/// Who the caller is, and what the dashboard needs to act as them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The token's name (`local` on an API with no tokens).
    pub name: String,
    /// `read`, `operate` or `admin`: the page shows only the actions the role may take.
    #[schema(schema_with = role_schema)]
    pub role: Role,
    /// How the caller came: `session` (the cookie), `token` (a bearer token) or `open` (an
    /// API with no tokens, on loopback).
    pub via: String,
    /// The value every action under this session sends in the `x-sluice-csrf` header; null
    /// unless `via` is `session`.
    pub csrf: Option<String>,
}

impl SessionView {
    fn of(caller: &Caller) -> SessionView {
        let via = match &caller.session {
            Some(_) => "session",
            None if caller.name == super::auth::LOCAL_CALLER => "open",
            None => "token",
        };
        SessionView {
            name: caller.name.clone(),
            role: caller.role,
            via: via.to_string(),
            csrf: caller.session.as_deref().map(crate::ops::csrf_token),
        }
    }
}

/// A token to sign in with.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The token's text, as `sluice token create` printed it.
    pub token: String,
}

/// The caller, as the dashboard sees them; 204 when nobody is signed in, so the sign-in page
/// is reached without an error (a session that ended also clears its cookie).
#[utoipa::path(
    get, path = "/v1/session", tag = "tokens",
    responses(
        (status = 200, body = SessionView),
        (status = 204, description = "Nobody is signed in: no session cookie (or one that ended) and no token"),
        (status = 401, description = "The bearer token is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Response> {
    let bearer = headers.get(header::AUTHORIZATION).cloned();
    let presented_token = bearer.is_some();
    let session = session_cookie(&headers);
    let had_session = session.is_some();
    match super::auth::caller(&state, bearer, session).await {
        Ok(caller) => Ok(Json(SessionView::of(&caller)).into_response()),
        // Without a token, a refusal only ever means "no (live) session": not an error for
        // the one endpoint whose question is whether there is one.
        Err(problem) if !presented_token && problem.status == StatusCode::UNAUTHORIZED.as_u16() => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if had_session {
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, cookie(&state, &headers, "", 0));
            }
            Ok(response)
        }
        Err(problem) => Err(problem),
    }
}

/// Exchange a token for a dashboard session (an HttpOnly, same-site cookie, for 12 hours).
#[utoipa::path(
    post, path = "/v1/session", tag = "tokens",
    request_body = SignInRequest,
    responses(
        (status = 201, description = "Signed in; the cookie is set", body = SessionView),
        (status = 401, description = "Not a valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The API has no tokens: nobody needs to sign in", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(request): Json<SignInRequest>,
) -> ApiResult<Response> {
    let store = state.store.as_ref();
    if !store.token_exists().await? {
        return Err(OpError::Invalid(
            "this API has no tokens, so nobody signs in: it is open on loopback".into(),
        )
        .into());
    }
    let Some(session) = crate::ops::sign_in(store, request.token.trim()).await? else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not valid: it was revoked, or never made",
        ));
    };
    let caller = Caller {
        name: session.token.name.clone(),
        role: session.token.role,
        session: Some(session.text.clone()),
    };
    let max_age = crate::ops::SESSION_LIFETIME.as_secs();
    let cookie = cookie(&state, &headers, &session.text, max_age);
    let mut response = (StatusCode::CREATED, Json(SessionView::of(&caller))).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// End the dashboard session (sign out); the cookie is cleared.
#[utoipa::path(
    delete, path = "/v1/session", tag = "tokens",
    responses(
        (status = 204, description = "Signed out (or was not signed in)"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(session) = session_cookie(&headers) {
        crate::ops::sign_out(state.store.as_ref(), &session).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, &headers, "", 0));
    Ok(response)
}

/// The session cookie: HttpOnly (scripts cannot read it), SameSite=Strict (other sites'
/// requests do not carry it), scoped to the base path, and Secure when the request reached
/// a proxy over HTTPS.
fn cookie(state: &ApiState, headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let text = format!(
        "{SESSION_COOKIE}={value}; Path={}/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        state.base_path,
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("a session's text and a checked base path are header-safe")
}
