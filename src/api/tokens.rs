//! `/v1/tokens`: make, list and revoke the API's bearer tokens (admin), as `sluice token` does.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Path, Problem};
use crate::model::Role;
use crate::ops::OpError;

pub(super) fn role_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Role::ALL.iter().map(|role| role.as_str())))
        .build()
}

/// A token as stored: its text is never shown again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    /// `read`, `operate` or `admin`.
    #[schema(schema_with = role_schema)]
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<&crate::store::TokenInfo> for TokenView {
    fn from(token: &crate::store::TokenInfo) -> TokenView {
        TokenView {
            name: token.name.clone(),
            role: token.role,
            created_at: token.created_at,
        }
    }
}

/// A token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1 to 64 letters, digits, `_`, `-` and `.`; shown in the audit log.
    pub name: String,
    /// The role's name: `read`, `operate` or `admin`.
    pub role: String,
}

/// A new token, with its text: shown in this answer only.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// `Authorization: Bearer` this; only its hash is stored.
    #[serde(rename = "token")]
    pub text: String,
}

/// Every token, by name (their text cannot be shown again).
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens",
    responses(
        (status = 200, body = Vec<TokenView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<TokenView>>> {
    let tokens = state.store.token_list().await?;
    Ok(Json(tokens.iter().map(TokenView::from).collect()))
}

/// Make a token; its text is in this answer and nowhere else.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, description = "A malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or role, or the name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<TokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let role = Role::parse(&request.role).ok_or_else(|| {
        OpError::Invalid(format!(
            "`{}` is not a role; one of: read, operate, admin",
            request.role
        ))
    })?;
    let (text, info) =
        crate::ops::create_token(state.store.as_ref(), &request.name, role, &caller.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: TokenView::from(&info),
            text,
        }),
    ))
}

/// Delete a token: its holder is refused from the next request on.
#[utoipa::path(
    delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Text no name could hold (a NUL character)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    crate::ops::revoke_token(state.store.as_ref(), &name, &caller.name).await?;
    Ok(StatusCode::NO_CONTENT)
}
