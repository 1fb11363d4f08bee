//! The HTTP side: routes, the Pusher HTTP API and health checks.

mod pusher_api;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler, post};

use crate::{Context, intake, ws};

/// Every route the server answers.
pub fn routes(ctx: Arc<Context>) -> impl Endpoint {
    let api = intake::openapi_service();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let api = api
        .around(intake::verify_signatures)
        .around(intake::allow_methods)
        .catch_all_error(|error| async move { intake::problem_from_error(error) });
    Route::new()
        .at("/app/:key", get(ws::app_socket))
        .at("/up", get(up))
        .nest("/api", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .nest("/apps", pusher_api::routes())
        .at(
            "/users/:user_id/terminate_connections",
            post(pusher_api::terminate_without_app),
        )
        .at("/*path", not_found)
        .around(upgrades_elsewhere)
        .data(ctx)
}

/// A WebSocket upgrade to any path but `/app/{key}` is accepted and closed with 4005, even
/// where an HTTP route with other methods lives (`/apps/{id}/events`, `/api/...`), so a
/// misconfigured client learns the reason instead of getting a 405.
async fn upgrades_elsewhere<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    if ws::is_upgrade(&req) && !req.uri().path().starts_with("/app/") {
        let ctx = req.data::<Arc<Context>>().cloned();
        if let Some(ctx) = ctx {
            return Ok(ws::path_not_found(&req, ctx));
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// A JSON error body, `{"error": "..."}`, with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// `GET /up`: 200 while the server accepts connections, 503 once it is shutting down.
#[handler]
async fn up(ctx: Data<&Arc<Context>>) -> Response {
    if ctx.hub.is_shutting_down() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let body = serde_json::json!({ "health": "OK", "connections": ctx.hub.live_connections() });
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
        .into_response()
}

/// Anything else: a WebSocket upgrade gets close code 4005, a plain request 404.
#[handler]
async fn not_found(req: &Request, ctx: Data<&Arc<Context>>) -> Response {
    if ws::is_upgrade(req) {
        return ws::path_not_found(req, ctx.0.clone());
    }
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no route for {} {}",
            req.method(),
            req.original_uri().path()
        ),
    )
}
