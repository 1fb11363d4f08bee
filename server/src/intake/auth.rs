//! How `/api` callers prove they are the app's backend: with the app secret, never the key
//! alone. Either HTTP Basic (key as user, secret as password) or a Pusher-style HMAC request
//! signature in the query string, both compared in constant time.

use std::sync::Arc;

use comnestor_protocol::auth::constant_time_eq;
use comnestor_protocol::signing::{SignedRequest, query_params, verify_request};
use poem::http::StatusCode;
use poem::web::headers::authorization::Basic as HeaderBasic;
use poem::web::headers::{Authorization, HeaderMapExt};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Basic};

use super::problem::ProblemResponse;
use crate::Context;
use crate::apps::App;

/// Largest `/api` body read while checking a signature.
const MAX_SIGNED_BODY: usize = 1024 * 1024;

/// The result of checking a request's HMAC signature, left in its extensions by
/// [`verify_signatures`] because the check needs the raw body.
#[derive(Clone)]
enum SignatureCheck {
    Valid(Arc<App>),
    Invalid(String),
}

/// HTTP Basic: the app key as user name, the app secret as password.
#[derive(SecurityScheme)]
#[oai(rename = "basicAuth", ty = "basic", checker = "check_basic")]
pub struct BasicAuth(Arc<App>);

/// A Pusher-style signature: `auth_key`, `auth_timestamp`, `auth_version=1.0`, `body_md5` and
/// `auth_signature` in the query, signed over `METHOD\npath\nsorted query` with the secret.
#[derive(SecurityScheme)]
#[oai(
    rename = "pusherSignature",
    ty = "api_key",
    key_name = "auth_signature",
    key_in = "query",
    checker = "check_signature"
)]
pub struct SignatureAuth(Arc<App>);

/// Either way of authenticating.
#[derive(SecurityScheme)]
pub enum AppAuth {
    Basic(BasicAuth),
    Signature(SignatureAuth),
}

impl AppAuth {
    /// The authenticated app.
    pub fn app(&self) -> &Arc<App> {
        match self {
            Self::Basic(BasicAuth(app)) | Self::Signature(SignatureAuth(app)) => app,
        }
    }
}

fn unauthorized(message: &str) -> poem::Error {
    poem::Error::from_string(message, StatusCode::UNAUTHORIZED)
}

fn enabled(app: Arc<App>) -> poem::Result<Arc<App>> {
    if app.enabled {
        Ok(app)
    } else {
        Err(poem::Error::from_string(
            "Application disabled",
            StatusCode::FORBIDDEN,
        ))
    }
}

async fn check_basic(req: &Request, basic: Basic) -> poem::Result<Arc<App>> {
    let ctx = req
        .data::<Arc<Context>>()
        .ok_or_else(|| unauthorized("no context"))?;
    let app = ctx
        .apps
        .by_key(&basic.username)
        .ok_or_else(|| unauthorized("unknown app key or wrong secret"))?;
    if !constant_time_eq(app.secret.as_bytes(), basic.password.as_bytes()) {
        return Err(unauthorized("unknown app key or wrong secret"));
    }
    enabled(app)
}

async fn check_signature(req: &Request, _signature: ApiKey) -> poem::Result<Arc<App>> {
    match req.extensions().get::<SignatureCheck>() {
        Some(SignatureCheck::Valid(app)) => enabled(app.clone()),
        Some(SignatureCheck::Invalid(reason)) => Err(unauthorized(reason)),
        None => Err(unauthorized("missing request signature")),
    }
}

/// Middleware: when the query carries `auth_signature`, reads the body, checks the signature
/// against the app named by `auth_key`, records the result, and puts the body back.
///
/// It also answers 403 at once for valid credentials (either kind) of a disabled app: the
/// security schemes are tried in turn and the last failure wins, so a disabled app's 403
/// from the Basic checker would otherwise come out as the signature scheme's 401.
pub async fn verify_signatures<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if basic_app(&req).is_some_and(|app| !app.enabled) {
        return Ok(disabled());
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    if !query.contains("auth_signature=") {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let body = req.take_body().into_bytes_limit(MAX_SIGNED_BODY).await;
    let body = match body {
        Ok(body) => body,
        Err(_) => {
            return Err(poem::Error::from_string(
                "request body too large or unreadable",
                StatusCode::PAYLOAD_TOO_LARGE,
            ));
        }
    };
    let check = check(&req, &query, &body);
    match &check {
        SignatureCheck::Invalid(reason) if req.header("authorization").is_none() => {
            // Say why the signature failed; the generic 401 would hide it.
            return Ok(ProblemResponse::unauthorized(reason.clone()).into_response());
        }
        SignatureCheck::Valid(app) if !app.enabled => return Ok(disabled()),
        _ => {}
    }
    req.extensions_mut().insert(check);
    req.set_body(body);
    next.call(req).await.map(IntoResponse::into_response)
}

fn disabled() -> Response {
    ProblemResponse::forbidden("Application disabled").into_response()
}

/// The app whose key and secret the request's HTTP Basic credentials carry, if they match.
fn basic_app(req: &Request) -> Option<Arc<App>> {
    let Authorization(basic) = req.headers().typed_get::<Authorization<HeaderBasic>>()?;
    let ctx = req.data::<Arc<Context>>()?;
    let app = ctx.apps.by_key(basic.username())?;
    constant_time_eq(app.secret.as_bytes(), basic.password().as_bytes()).then_some(app)
}

fn check(req: &Request, query: &str, body: &[u8]) -> SignatureCheck {
    let Some(ctx) = req.data::<Arc<Context>>() else {
        return SignatureCheck::Invalid("no context".to_owned());
    };
    let params = query_params(query);
    let key = params
        .iter()
        .find(|(k, _)| k == "auth_key")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let Some(app) = ctx.apps.by_key(key) else {
        return SignatureCheck::Invalid("Unknown auth_key".to_owned());
    };
    let signed = SignedRequest {
        method: req.method().as_str(),
        path: req.original_uri().path(),
        query,
        body,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match verify_request(&signed, &app.key, &app.secret, now) {
        Ok(()) => SignatureCheck::Valid(app),
        Err(error) => SignatureCheck::Invalid(error.to_string()),
    }
}
