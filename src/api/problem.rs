//! Problem documents (RFC 9457): every error the API returns, with a stable `code` and the
//! CLI's wording in `detail`, and the extractors whose rejections become problems too.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ops::{ErrorKind, OpError};

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What went wrong with a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:sluice:problem:CODE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened, in the words the CLI uses.
    pub detail: String,
    /// A stable, machine-readable name of the problem.
    pub code: String,
    /// Whether the store failed (counted in the metrics); not part of the document.
    #[serde(skip)]
    #[schema(ignore)]
    store_failed: bool,
    /// The request's body was left unread: the reply says `Connection: close`, so the
    /// client does not send its next request down a connection the server is closing.
    #[serde(skip)]
    #[schema(ignore)]
    closes_connection: bool,
}

/// Marks a response whose request the store failed, for the metrics layer to count.
#[derive(Debug, Clone, Copy)]
struct StoreFailed;

/// Counts the responses a store failure caused (`map_response_with_state` layer).
pub async fn count_store_failures(
    axum::extract::State(metrics): axum::extract::State<
        std::sync::Arc<crate::metrics::NodeMetrics>,
    >,
    response: Response,
) -> Response {
    if response.extensions().get::<StoreFailed>().is_some() {
        metrics.store_error("api");
    }
    response
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:sluice:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            store_failed: false,
            closes_connection: false,
        }
    }

    /// The same problem, answered on a connection that closes after it when `close`.
    pub fn closing_connection(mut self, close: bool) -> Problem {
        self.closes_connection = close;
        self
    }

    /// The same problem, its detail saying which part of the request it is about.
    pub fn prefixed(mut self, part: &str) -> Problem {
        self.detail = format!("{part}: {}", self.detail);
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem always serializes");
        let mut response = (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response();
        if self.store_failed {
            response.extensions_mut().insert(StoreFailed);
        }
        if self.closes_connection {
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<OpError> for Problem {
    fn from(error: OpError) -> Problem {
        let status = match error.kind() {
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(%error, "an API request failed");
        }
        let store_failed = matches!(
            &error,
            OpError::Store(
                crate::store::StoreError::Unavailable(_) | crate::store::StoreError::Database(_)
            )
        );
        Problem {
            store_failed,
            ..Problem::new(status, error.code(), error.to_string())
        }
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(error: crate::store::StoreError) -> Problem {
        OpError::from(error).into()
    }
}

/// A rejected body: its status (axum's) with the code that names it.
fn body_rejected(status: StatusCode, detail: String) -> Problem {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "bad_request",
    };
    // A body over the limit was read only up to it.
    Problem::new(status, code, detail).closing_connection(status == StatusCode::PAYLOAD_TOO_LARGE)
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Problem {
        let status = match &rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(bytes) => bytes.status(),
            // Well-formed JSON of the wrong shape (a missing or unknown field).
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        body_rejected(status, rejection.body_text())
    }
}

impl From<BytesRejection> for Problem {
    fn from(rejection: BytesRejection) -> Problem {
        body_rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad_path", rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad_query", rejection.body_text())
    }
}

/// `axum::Json`, rejecting with a problem document.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, rejecting with a problem document.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting with a problem document.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

pub type ApiResult<T> = Result<T, Problem>;
