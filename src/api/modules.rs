//! `/v1/modules`: upload a component, list modules, one module with its versions.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::body::ReadError;
use super::problem::{ApiResult, Json, Path, Problem};
use super::views::{ModuleView, UploadView};
use crate::ops::OpError;
use crate::sandbox::ModuleError;

/// A component's bytes, as built by `cargo build --target wasm32-wasip2`.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct WasmBody(#[allow(dead_code)] Vec<u8>);

/// Validate a component and store it as the module's next version.
#[utoipa::path(
    post, path = "/v1/modules/{name}", tag = "modules",
    params(("name" = String, Path, description = "The module's name: letters, digits, `_` and `-`")),
    request_body(content(
        (WasmBody = "application/wasm"),
        (WasmBody = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Stored as a new version", body = UploadView),
        (status = 200, description = "These bytes were already uploaded", body = UploadView),
        (status = 413, description = "Larger than the node's module cap", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid Sluice job module", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upload(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<UploadView>)> {
    let max = state.max_module_bytes;
    let too_large = |size: usize, drained: bool| {
        Problem::from(OpError::Module(ModuleError::TooLarge { size, max }))
            .closing_connection(!drained)
    };
    // The CLI's message for an oversized module, without keeping the body.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(size) = declared
        && size > max
    {
        let drained = size <= super::body::DRAIN_LIMIT && super::body::drain(body).await;
        return Err(too_large(size, drained));
    }
    let wasm = match super::body::read_capped(body, max).await {
        Ok(wasm) => wasm,
        Err(ReadError::Oversize(over)) => return Err(too_large(over.size, over.drained)),
        Err(ReadError::Broken(error)) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body could not be read: {error}"),
            ));
        }
    };
    let uploaded = crate::ops::upload(
        state.store.as_ref(),
        &state.sandbox,
        name,
        wasm,
        &caller.name,
    )
    .await?;
    state.enqueuer.module_uploaded(&uploaded.module.name);
    let status = if uploaded.already_present {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(UploadView {
            module: ModuleView::from(&uploaded.module),
            already_present: uploaded.already_present,
        }),
    ))
}

/// The latest version of every module.
#[utoipa::path(
    get, path = "/v1/modules", tag = "modules",
    responses(
        (status = 200, body = Vec<ModuleView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<ModuleView>>> {
    let modules = state.store.module_list().await?;
    Ok(Json(modules.iter().map(ModuleView::from).collect()))
}

/// A module with every version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleVersions {
    pub name: String,
    /// The version new jobs run unless they pin one.
    pub latest: i32,
    /// Newest first.
    pub versions: Vec<ModuleView>,
}

/// One module with its versions and their functions.
#[utoipa::path(
    get, path = "/v1/modules/{name}", tag = "modules",
    params(("name" = String, Path, description = "The module's name")),
    responses(
        (status = 200, body = ModuleVersions),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Text no name could hold (a NUL character)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ModuleVersions>> {
    let versions = state.store.module_versions(&name).await?;
    let Some(latest) = versions.first().map(|m| m.version) else {
        return Err(OpError::Store(crate::store::StoreError::ModuleNotFound(name)).into());
    };
    Ok(Json(ModuleVersions {
        name,
        latest,
        versions: versions.iter().map(ModuleView::from).collect(),
    }))
}
