//! The Pusher HTTP API under `/apps/{app_id}`, signed as the Pusher server SDKs sign it.
//!
//! Every answer is JSON: `200 {}` (or the requested attributes) on success, and
//! `{"error": "..."}` with 400, 401, 403, 404 or 413 otherwise, as the SDKs expect.

use std::collections::BTreeMap;
use std::sync::Arc;

use comnestor_protocol::api::{
    BatchRequest, BatchResponse, CacheInfo, ChannelAttributes, ChannelInfo, ChannelsResponse,
    MAX_BATCH_EVENTS, MAX_CHANNELS_PER_EVENT, TriggerRequest, TriggerResponse, UserId,
    UsersResponse,
};
use comnestor_protocol::channel::validate_event_name;
use comnestor_protocol::signing::{SignedRequest, decode_path, query_params, verify_request};
use comnestor_protocol::{ChannelKind, ChannelName, is_valid_socket_id};
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Body, Endpoint, Request, Response, Route, get, handler, post};
use serde::Serialize;

use super::json_error;
use crate::Context;
use crate::apps::App;
use crate::hub::{AppHub, ChannelStats, ClusterError};

/// Largest request body read, whatever an app allows for one event.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn routes() -> impl Endpoint {
    Route::new()
        .at("/:app_id/events", post(trigger))
        .at("/:app_id/batch_events", post(trigger_batch))
        .at("/:app_id/channels", get(list_channels))
        .at("/:app_id/channels/:channel_name", get(show_channel))
        .at("/:app_id/channels/:channel_name/users", get(list_users))
        .at(
            "/:app_id/users/:user_id/terminate_connections",
            post(terminate),
        )
}

/// A refused API request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The cluster's shared state (Redis) could not be reached; the cause is logged here.
    fn cluster(error: ClusterError) -> Self {
        tracing::error!(error = %error, source = ?std::error::Error::source(&error), "cluster state unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The cluster's shared state is unavailable; events may have reached this server's subscribers only",
        )
    }

    fn into_response(self) -> Response {
        tracing::debug!(status = self.status.as_u16(), error = %self.message, "api request refused");
        json_error(self.status, &self.message)
    }
}

type ApiResult = Result<Response, ApiError>;

fn respond(result: ApiResult) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

fn ok_json(value: &impl Serialize) -> ApiResult {
    let body = serde_json::to_string(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Response::builder()
        .content_type("application/json")
        .body(body))
}

/// A request whose signature checked out, with its app and raw body.
struct Authenticated {
    app: Arc<App>,
    hub: Arc<AppHub>,
    body: Vec<u8>,
    params: Vec<(String, String)>,
}

impl Authenticated {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn authenticate(
    ctx: &Context,
    req: &Request,
    body: Body,
    app: Option<Arc<App>>,
) -> Result<Authenticated, ApiError> {
    let query = req.uri().query().unwrap_or_default();
    let params = query_params(query);
    let app = match app {
        Some(app) => app,
        None => {
            let key = params
                .iter()
                .find(|(k, _)| k == "auth_key")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            ctx.apps
                .by_key(key)
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Unknown auth_key"))?
        }
    };
    let body = read_body(body).await?;
    let path = req.original_uri().path();
    let signed = SignedRequest {
        method: req.method().as_str(),
        path,
        query,
        body: &body,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Err(error) = verify_request(&signed, &app.key, &app.secret, now) {
        // Clients differ in whether they sign the path before or after percent-encoding it.
        let decoded = decode_path(path);
        let retry = SignedRequest {
            path: &decoded,
            ..signed
        };
        if decoded == path || verify_request(&retry, &app.key, &app.secret, now).is_err() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, error.to_string()));
        }
    }
    if !app.enabled {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Application disabled"));
    }
    let hub = ctx.hub.app(&app);
    Ok(Authenticated {
        app,
        hub,
        body,
        params,
    })
}

fn find_app(ctx: &Context, app_id: &str) -> Result<Arc<App>, ApiError> {
    ctx.apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app_id {app_id}")))
}

async fn read_body(body: Body) -> Result<Vec<u8>, ApiError> {
    let bytes = body.into_bytes_limit(MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {MAX_BODY_BYTES} bytes or unreadable"),
        )
    })?;
    Ok(bytes.to_vec())
}

fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// Attributes asked for with `info`, checked against what the endpoint supports.
fn parse_info(info: Option<&str>, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let mut attributes = Vec::new();
    for attribute in info
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        if !allowed.contains(&attribute) {
            return Err(ApiError::bad_request(format!(
                "Unsupported info attribute `{attribute}`; supported: {}",
                allowed.join(", ")
            )));
        }
        attributes.push(attribute.to_owned());
    }
    Ok(attributes)
}

fn parse_channel(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name)
        .map_err(|e| ApiError::bad_request(format!("Invalid channel name `{name}`: {e}")))
}

/// Checks an event's name, size and socket id, as trigger and batch items share them.
fn check_event(app: &App, name: &str, data: &str, socket_id: Option<&str>) -> Result<(), ApiError> {
    validate_event_name(name).map_err(ApiError::bad_request)?;
    let limit = app.settings.max_event_size as usize;
    if data.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Event data is {} bytes, the limit is {limit}", data.len()),
        ));
    }
    if let Some(socket_id) = socket_id
        && !is_valid_socket_id(socket_id)
    {
        return Err(ApiError::bad_request(format!(
            "Invalid socket_id `{socket_id}`"
        )));
    }
    Ok(())
}

/// The requested attributes of a channel, from its cluster-wide counts.
async fn attributes(
    hub: &AppHub,
    channel: &ChannelName,
    info: &[String],
) -> Result<ChannelAttributes, ApiError> {
    if info.is_empty() {
        return Ok(ChannelAttributes::default());
    }
    let stats = hub
        .channel_stats(channel.as_str())
        .await
        .map_err(ApiError::cluster)?;
    Ok(attributes_of(channel, stats, info))
}

fn attributes_of(channel: &ChannelName, stats: ChannelStats, info: &[String]) -> ChannelAttributes {
    let subscribers = stats.subscription_count as u64;
    let users = stats.user_count as u64;
    let presence = channel.kind() == ChannelKind::Presence;
    ChannelAttributes {
        user_count: (presence && info.iter().any(|a| a == "user_count")).then_some(users),
        subscription_count: info
            .iter()
            .any(|a| a == "subscription_count")
            .then_some(subscribers),
    }
}

/// `POST /apps/{app_id}/events`.
#[handler]
async fn trigger(
    req: &Request,
    body: Body,
    Path(app_id): Path<String>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    respond(trigger_inner(req, body, &app_id, &ctx).await)
}

async fn trigger_inner(req: &Request, body: Body, app_id: &str, ctx: &Context) -> ApiResult {
    let request = authenticate(ctx, req, body, Some(find_app(ctx, app_id)?)).await?;
    let event: TriggerRequest = parse_json(&request.body)?;
    let names = event.all_channels();
    if names.is_empty() {
        return Err(ApiError::bad_request("Missing `channels` or `channel`"));
    }
    if names.len() > MAX_CHANNELS_PER_EVENT {
        return Err(ApiError::bad_request(format!(
            "An event may name at most {MAX_CHANNELS_PER_EVENT} channels"
        )));
    }
    let channels = names
        .into_iter()
        .map(parse_channel)
        .collect::<Result<Vec<_>, _>>()?;
    check_event(
        &request.app,
        &event.name,
        &event.data,
        event.socket_id.as_deref(),
    )?;
    let info = parse_info(event.info.as_deref(), &["user_count", "subscription_count"])?;

    for channel in &channels {
        request
            .hub
            .publish(
                channel,
                &event.name,
                &event.data,
                event.socket_id.as_deref(),
            )
            .await
            .map_err(ApiError::cluster)?;
    }
    if info.is_empty() {
        return ok_json(&TriggerResponse::default());
    }
    let mut attributes = BTreeMap::new();
    for channel in &channels {
        let found = self::attributes(&request.hub, channel, &info).await?;
        attributes.insert(channel.to_string(), found);
    }
    ok_json(&TriggerResponse {
        channels: Some(attributes),
    })
}

/// `POST /apps/{app_id}/batch_events`.
#[handler]
async fn trigger_batch(
    req: &Request,
    body: Body,
    Path(app_id): Path<String>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    respond(trigger_batch_inner(req, body, &app_id, &ctx).await)
}

async fn trigger_batch_inner(req: &Request, body: Body, app_id: &str, ctx: &Context) -> ApiResult {
    let request = authenticate(ctx, req, body, Some(find_app(ctx, app_id)?)).await?;
    let batch: BatchRequest = parse_json(&request.body)?;
    if batch.batch.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::bad_request(format!(
            "Cannot batch-send more than {MAX_BATCH_EVENTS} events at once"
        )));
    }
    let mut checked = Vec::with_capacity(batch.batch.len());
    for event in &batch.batch {
        let channel = parse_channel(&event.channel)?;
        check_event(
            &request.app,
            &event.name,
            &event.data,
            event.socket_id.as_deref(),
        )?;
        let info = parse_info(event.info.as_deref(), &["user_count", "subscription_count"])?;
        checked.push((channel, info));
    }
    for (event, (channel, _)) in batch.batch.iter().zip(&checked) {
        request
            .hub
            .publish(
                channel,
                &event.name,
                &event.data,
                event.socket_id.as_deref(),
            )
            .await
            .map_err(ApiError::cluster)?;
    }
    if checked.iter().all(|(_, info)| info.is_empty()) {
        return ok_json(&BatchResponse::default());
    }
    let mut results = Vec::with_capacity(checked.len());
    for (channel, info) in &checked {
        results.push(attributes(&request.hub, channel, info).await?);
    }
    ok_json(&BatchResponse {
        batch: Some(results),
    })
}

/// `GET /apps/{app_id}/channels`.
#[handler]
async fn list_channels(
    req: &Request,
    body: Body,
    Path(app_id): Path<String>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    respond(channels_inner(req, body, &app_id, &ctx).await)
}

async fn channels_inner(req: &Request, body: Body, app_id: &str, ctx: &Context) -> ApiResult {
    let request = authenticate(ctx, req, body, Some(find_app(ctx, app_id)?)).await?;
    let prefix = request.param("filter_by_prefix").unwrap_or_default();
    let info = parse_info(request.param("info"), &["user_count", "subscription_count"])?;
    if info.iter().any(|a| a == "user_count") && !prefix.starts_with("presence-") {
        return Err(ApiError::bad_request(
            "user_count is only available with filter_by_prefix=presence-",
        ));
    }
    let occupied = request
        .hub
        .occupied(prefix)
        .await
        .map_err(ApiError::cluster)?;
    let mut channels = BTreeMap::new();
    for (name, stats) in occupied {
        let attributes = match ChannelName::parse(&name) {
            Ok(channel) => attributes_of(&channel, stats, &info),
            Err(_) => continue,
        };
        channels.insert(name, attributes);
    }
    ok_json(&ChannelsResponse { channels })
}

/// `GET /apps/{app_id}/channels/{channel_name}`.
#[handler]
async fn show_channel(
    req: &Request,
    body: Body,
    Path((app_id, name)): Path<(String, String)>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    respond(channel_inner(req, body, &app_id, &name, &ctx).await)
}

async fn channel_inner(
    req: &Request,
    body: Body,
    app_id: &str,
    name: &str,
    ctx: &Context,
) -> ApiResult {
    let request = authenticate(ctx, req, body, Some(find_app(ctx, app_id)?)).await?;
    let channel = parse_channel(name)?;
    let info = parse_info(
        request.param("info"),
        &["user_count", "subscription_count", "cache"],
    )?;
    if info.iter().any(|a| a == "user_count") && channel.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request(
            "user_count is only available for presence channels",
        ));
    }
    if info.iter().any(|a| a == "cache") && !channel.is_cache() {
        return Err(ApiError::bad_request(
            "cache is only available for cache channels",
        ));
    }
    let stats = request
        .hub
        .channel_stats(channel.as_str())
        .await
        .map_err(ApiError::cluster)?;
    let occupied = stats.subscription_count > 0;
    let attributes = attributes_of(&channel, stats, &info);
    let cache = match info.iter().any(|a| a == "cache") {
        true => Some(
            request
                .hub
                .cache_info(channel.as_str())
                .await
                .map_err(ApiError::cluster)?
                .map(|(data, ttl)| CacheInfo { ttl, data }),
        ),
        false => None,
    };
    ok_json(&ChannelInfo {
        occupied,
        user_count: attributes.user_count,
        subscription_count: attributes.subscription_count,
        cache,
    })
}

/// `GET /apps/{app_id}/channels/{channel_name}/users`.
#[handler]
async fn list_users(
    req: &Request,
    body: Body,
    Path((app_id, name)): Path<(String, String)>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    respond(users_inner(req, body, &app_id, &name, &ctx).await)
}

async fn users_inner(
    req: &Request,
    body: Body,
    app_id: &str,
    name: &str,
    ctx: &Context,
) -> ApiResult {
    let request = authenticate(ctx, req, body, Some(find_app(ctx, app_id)?)).await?;
    let channel = parse_channel(name)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request(
            "users are only available for presence channels",
        ));
    }
    let ids = request
        .hub
        .member_ids(channel.as_str())
        .await
        .map_err(ApiError::cluster)?;
    ok_json(&UsersResponse {
        users: ids.into_iter().map(|id| UserId { id }).collect(),
    })
}

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`.
#[handler]
async fn terminate(
    req: &Request,
    body: Body,
    Path((app_id, user_id)): Path<(String, String)>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    let app = find_app(&ctx, &app_id);
    respond(match app {
        Ok(app) => terminate_inner(req, body, Some(app), &user_id, &ctx).await,
        Err(error) => Err(error),
    })
}

/// `POST /users/{user_id}/terminate_connections`: the path the Python SDK uses, without the
/// `/apps/{app_id}` prefix; the app is found from `auth_key`.
#[handler]
pub async fn terminate_without_app(
    req: &Request,
    body: Body,
    Path(user_id): Path<String>,
    ctx: Data<&Arc<Context>>,
) -> Response {
    respond(terminate_inner(req, body, None, &user_id, &ctx).await)
}

async fn terminate_inner(
    req: &Request,
    body: Body,
    app: Option<Arc<App>>,
    user_id: &str,
    ctx: &Context,
) -> ApiResult {
    let request = authenticate(ctx, req, body, app).await?;
    let closed = request
        .hub
        .terminate_user(user_id)
        .await
        .map_err(ApiError::cluster)?;
    tracing::debug!(user_id, closed, "terminated user connections");
    ok_json(&serde_json::json!({}))
}
