//! Errors of the `/api` endpoints, as `application/problem+json` (RFC 9457).

use std::sync::LazyLock;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::api::IntakeApi;

/// A problem detail.
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        let slug = title.to_ascii_lowercase().replace(' ', "-");
        Self {
            kind: format!("https://comnestor.dev/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

/// Every error an `/api` endpoint answers with.
#[derive(Debug, ApiResponse)]
pub enum ProblemResponse {
    /// The request is malformed.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// Missing or wrong credentials.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The app is disabled, or `app_key` names another app.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No such event.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The `Idempotency-Key` was used before with a different request.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The event data is larger than the app allows.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not JSON (`Content-Type: application/json`).
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// A field is invalid; `detail` names it.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Over the app's rate limit; retry after the given number of seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// The server could not complete the request (the event log is unreachable, say).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

impl ProblemResponse {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(Json(Problem::new(StatusCode::BAD_REQUEST, detail)))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized(Json(Problem::new(StatusCode::UNAUTHORIZED, detail)))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(Json(Problem::new(StatusCode::FORBIDDEN, detail)))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(Json(Problem::new(StatusCode::NOT_FOUND, detail)))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(Json(Problem::new(StatusCode::CONFLICT, detail)))
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::PayloadTooLarge(Json(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail)))
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Unprocessable(Json(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)))
    }

    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::TooManyRequests(
            Json(Problem::new(StatusCode::TOO_MANY_REQUESTS, detail)),
            retry_after,
        )
    }

    /// Logs the cause and answers 503 without exposing internals.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "api request failed");
        Self::Unavailable(Json(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event log is unavailable; retry later",
        )))
    }
}

/// Turns any other error response under `/api` (a missing credential, a bad query
/// parameter, an unsupported content type) into a problem document with the same status.
/// Responses that already are problem documents pass through unchanged.
pub fn problem_from_error(error: poem::Error) -> poem::Response {
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let detail = if error.is::<poem_openapi::error::AuthorizationError>() {
        "missing or wrong credentials: authenticate with HTTP Basic (the app key as user, its secret as password) or a Pusher request signature".to_owned()
    } else {
        error.to_string()
    };
    let problem = Problem::new(status, detail);
    let body = serde_json::json!({
        "type": problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    });
    let mut response = poem::Response::builder()
        .status(status)
        .content_type("application/problem+json");
    if status == StatusCode::UNAUTHORIZED {
        response = response.header("WWW-Authenticate", "Basic realm=\"comnestor\"");
    }
    response.body(body.to_string())
}

/// Middleware: a 405 under `/api` names the methods its path takes in `Allow`, as RFC 9110
/// requires of a 405; poem's router leaves the header out.
pub async fn allow_methods<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    match next.call(req).await {
        Err(error) if error.status() == StatusCode::METHOD_NOT_ALLOWED => {
            let mut response = problem_from_error(error);
            if let Some(allow) = allowed_methods(&path) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            Ok(response)
        }
        other => other.map(IntoResponse::into_response),
    }
}

/// The methods the spec gives `path` (relative to `/api`), as an `Allow` value.
fn allowed_methods(path: &str) -> Option<HeaderValue> {
    static PATHS: LazyLock<Vec<(Vec<String>, String)>> = LazyLock::new(|| {
        let mut paths: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for meta in IntakeApi::meta().into_iter().flat_map(|api| api.paths) {
            let segments: Vec<String> = meta.path.split('/').map(str::to_owned).collect();
            let methods = meta.operations.iter().map(|op| op.method.to_string());
            match paths.iter_mut().find(|(s, _)| *s == segments) {
                Some((_, known)) => known.extend(methods),
                None => paths.push((segments, methods.collect())),
            }
        }
        paths
            .into_iter()
            .map(|(segments, mut methods)| {
                methods.sort();
                methods.dedup();
                (segments, methods.join(", "))
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    PATHS
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t.starts_with(':') || t == s)
        })
        .and_then(|(_, methods)| HeaderValue::from_str(methods).ok())
}
