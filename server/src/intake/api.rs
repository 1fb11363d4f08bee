//! The `/api` endpoints.

use std::sync::Arc;

use comnestor_protocol::api::MAX_CHANNELS_PER_EVENT;
use comnestor_protocol::channel::validate_event_name;
use comnestor_protocol::{ChannelName, is_valid_socket_id};
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, Tags};
use serde_json::Value;

use super::auth::AppAuth;
use super::body::{PublishBody, PublishRequest};
use super::problem::ProblemResponse;
use super::{AcceptError, Intake, Publish};
use crate::Context;
use crate::apps::App;
use crate::eventlog::{AttemptRecord, EventFilter, EventStatus, LoggedEvent};
use crate::pubsub::EventMetadata;

/// Most events one list or history page returns.
const MAX_PAGE: u64 = 500;
const DEFAULT_PAGE: u64 = 50;

#[derive(Tags)]
enum Tag {
    /// Publishing events and reading the event log.
    Events,
    /// What a channel received, for clients that reconnect.
    History,
    /// Watching accepted events live.
    Stream,
}

/// Answer to an accepted event.
#[derive(Debug, Object)]
pub struct Accepted {
    /// The event id, to look it up later.
    pub id: String,
    pub status: EventStatus,
    /// Where to read the event's stages.
    pub status_url: String,
}

#[derive(ApiResponse)]
enum PublishResponse {
    /// Logged and queued for delivery.
    #[oai(status = 202)]
    Accepted(Json<Accepted>, #[oai(header = "Location")] String),
}

/// When each stage happened, in Unix milliseconds.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Stages {
    pub received_at: i64,
    pub logged_at: i64,
    pub queued_at: Option<i64>,
    /// When the last delivery attempt was sent.
    pub sent_at: Option<i64>,
    /// When the WebSocket server acknowledged the event.
    pub acknowledged_at: Option<i64>,
}

/// One delivery attempt.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at: i64,
    pub duration_ms: i64,
    /// The target's HTTP status, when it answered.
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// A logged event.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventRecord {
    pub id: String,
    pub app_id: String,
    pub channels: Vec<String>,
    pub event: String,
    /// The data as subscribers receive it.
    pub data: String,
    pub socket_id: Option<String>,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The event this one replays.
    pub replay_of: Option<String>,
    pub stages: Stages,
    /// Every delivery attempt; only filled in by `GET /api/events/{id}`.
    pub attempt_log: Option<Vec<Attempt>>,
}

/// A page of events.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of a channel's history.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ChannelHistory {
    pub channel: String,
    pub events: Vec<EventRecord>,
    /// Pass as `since_id` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum EventResponse {
    #[oai(status = 200)]
    Ok(Json<EventRecord>),
}

#[derive(ApiResponse)]
enum PageResponse {
    #[oai(status = 200)]
    Ok(Json<EventPage>),
}

#[derive(ApiResponse)]
enum HistoryResponse {
    #[oai(status = 200)]
    Ok(Json<ChannelHistory>),
}

type ApiResult<T> = Result<T, ProblemResponse>;

/// The `/api` endpoints. They hold no state: each request finds the pipeline in the
/// [`Context`] the routes carry, so the spec can be generated without a running server.
pub struct IntakeApi;

/// The OpenAPI service for `/api`, with its spec and docs.
pub fn openapi_service() -> OpenApiService<IntakeApi, ()> {
    OpenApiService::new(
        IntakeApi,
        "Comnestor Realtime API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Publish events to Pusher channels through a durable log, and read that log. \
             Authenticate with the app key and secret (HTTP Basic), or sign requests the way \
             Pusher server SDKs do.",
    )
    .server("/api")
}

/// The OpenAPI document of `/api`, as `comnestor openapi` prints it and `openapi/openapi.json`
/// holds it.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

#[OpenApi]
impl IntakeApi {
    /// Publish an event.
    ///
    /// The event is written to the event log and queued for delivery before the answer; it is
    /// never lost once accepted. An `Idempotency-Key` makes a retried request return the
    /// first answer instead of creating a second event.
    #[oai(
        path = "/events",
        method = "post",
        tag = "Tag::Events",
        operation_id = "publishEvent"
    )]
    async fn publish(
        &self,
        ctx: Data<&Arc<Context>>,
        auth: AppAuth,
        body: PublishBody,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> ApiResult<PublishResponse> {
        let app = auth.app();
        let publish = validate(app, body.0)?;
        let key = idempotency_key.0.filter(|k| !k.is_empty());
        if key.as_ref().is_some_and(|k| k.len() > 255) {
            return Err(ProblemResponse::unprocessable(
                "Idempotency-Key is longer than 255 characters",
            ));
        }
        let event = ctx
            .intake
            .accept(app, publish, key)
            .await
            .map_err(accept_error)?;
        Ok(accepted(&event))
    }

    /// List events.
    ///
    /// Oldest first, filtered by channel, event name, status and time range (Unix ms).
    #[oai(
        path = "/events",
        method = "get",
        tag = "Tag::Events",
        operation_id = "listEvents"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        ctx: Data<&Arc<Context>>,
        auth: AppAuth,
        channel: Query<Option<String>>,
        event: Query<Option<String>>,
        status: Query<Option<EventStatus>>,
        from: Query<Option<i64>>,
        to: Query<Option<i64>>,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
    ) -> ApiResult<PageResponse> {
        let filter = EventFilter {
            channel: channel.0,
            event: event.0,
            status: status.0,
            from: from.0,
            to: to.0,
            after: cursor.0,
            limit: limit.0.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE),
        };
        let (events, next_cursor) = page(&ctx.intake, auth.app(), &filter).await?;
        Ok(PageResponse::Ok(Json(EventPage {
            events,
            next_cursor,
        })))
    }

    /// Get one event with its stages and delivery attempts.
    #[oai(
        path = "/events/:id",
        method = "get",
        tag = "Tag::Events",
        operation_id = "getEvent"
    )]
    async fn get(
        &self,
        ctx: Data<&Arc<Context>>,
        auth: AppAuth,
        id: Path<String>,
    ) -> ApiResult<EventResponse> {
        let event = owned_event(&ctx.intake, auth.app(), &id.0).await?;
        let attempts = ctx
            .intake
            .log
            .attempts(&event.id)
            .await
            .map_err(|e| ProblemResponse::unavailable(&e))?;
        Ok(EventResponse::Ok(Json(record(&event, Some(&attempts)))))
    }

    /// Replay an event.
    ///
    /// Delivers the event's channels, name and data again as a new event whose `replay_of`
    /// names the original.
    #[oai(
        path = "/events/:id/replay",
        method = "post",
        tag = "Tag::Events",
        operation_id = "replayEvent"
    )]
    async fn replay(
        &self,
        ctx: Data<&Arc<Context>>,
        auth: AppAuth,
        id: Path<String>,
    ) -> ApiResult<PublishResponse> {
        let original = owned_event(&ctx.intake, auth.app(), &id.0).await?;
        let event = ctx.intake.replay(&original).await.map_err(accept_error)?;
        Ok(accepted(&event))
    }

    /// A channel's history.
    ///
    /// The events published to a channel after `since_id` (an event id) or `since` (Unix ms),
    /// oldest first, so a backend can give a reconnecting client what it missed.
    #[oai(
        path = "/channels/:channel/history",
        method = "get",
        tag = "Tag::History",
        operation_id = "channelHistory"
    )]
    async fn history(
        &self,
        ctx: Data<&Arc<Context>>,
        auth: AppAuth,
        channel: Path<String>,
        since_id: Query<Option<String>>,
        since: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
    ) -> ApiResult<HistoryResponse> {
        ChannelName::parse(&channel.0)
            .map_err(|e| ProblemResponse::unprocessable(format!("invalid channel name: {e}")))?;
        let filter = EventFilter {
            channel: Some(channel.0.clone()),
            from: since.0,
            after: since_id.0,
            limit: limit.0.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE),
            ..EventFilter::default()
        };
        let (events, next_cursor) = page(&ctx.intake, auth.app(), &filter).await?;
        Ok(HistoryResponse::Ok(Json(ChannelHistory {
            channel: channel.0,
            events,
            next_cursor,
        })))
    }

    /// Watch accepted events live.
    ///
    /// Server-Sent Events carrying each accepted event's metadata (no data), optionally only
    /// for one channel or event name.
    #[oai(
        path = "/stream",
        method = "get",
        tag = "Tag::Stream",
        operation_id = "streamEvents"
    )]
    async fn stream(
        &self,
        ctx: Data<&Arc<Context>>,
        auth: AppAuth,
        channel: Query<Option<String>>,
        event: Query<Option<String>>,
    ) -> ApiResult<EventStream<BoxStream<'static, EventMetadata>>> {
        let app_id = auth.app().id.clone();
        let receiver = ctx.intake.bus.subscribe();
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(metadata) => return Some(((*metadata).clone(), receiver)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::debug!(skipped, "event stream reader fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |m| {
            let keep = m.app_id == app_id
                && channel.0.as_ref().is_none_or(|c| m.channels.contains(c))
                && event.0.as_ref().is_none_or(|e| &m.event == e);
            futures::future::ready(keep)
        });
        Ok(EventStream::new(stream.boxed()).keep_alive(std::time::Duration::from_secs(15)))
    }
}

/// The event `id`, if it belongs to `app`; another app's event is not found either.
async fn owned_event(intake: &Intake, app: &App, id: &str) -> ApiResult<LoggedEvent> {
    let event = intake
        .log
        .find(id)
        .await
        .map_err(|e| ProblemResponse::unavailable(&e))?;
    event
        .filter(|e| e.app_id == app.id)
        .ok_or_else(|| ProblemResponse::not_found(format!("no event {id}")))
}

/// Checks every field of a publish request.
fn validate(app: &App, request: PublishRequest) -> ApiResult<Publish> {
    if let Some(key) = &request.app_key
        && key != &app.key
    {
        return Err(ProblemResponse::forbidden(
            "`app_key` does not match the credentials",
        ));
    }
    validate_event_name(&request.event)
        .map_err(|e| ProblemResponse::unprocessable(format!("`event`: {e}")))?;
    if request.channels.as_ref().is_some_and(Vec::is_empty) {
        return Err(ProblemResponse::unprocessable(
            "`channels` must name at least one channel",
        ));
    }
    let mut named: Vec<(&str, String)> = Vec::new();
    named.extend(request.channel.map(|c| ("channel", c)));
    named.extend(
        request
            .channels
            .into_iter()
            .flatten()
            .map(|c| ("channels", c)),
    );
    if named.is_empty() {
        return Err(ProblemResponse::unprocessable(
            "`channel` or `channels` is required",
        ));
    }
    if named.len() > MAX_CHANNELS_PER_EVENT {
        return Err(ProblemResponse::unprocessable(format!(
            "`channels` names {} channels; an event may name at most {MAX_CHANNELS_PER_EVENT}",
            named.len()
        )));
    }
    for (field, channel) in &named {
        ChannelName::parse(channel).map_err(|e| {
            ProblemResponse::unprocessable(format!("`{field}`: invalid channel `{channel}`: {e}"))
        })?;
    }
    let mut channels: Vec<String> = named.into_iter().map(|(_, c)| c).collect();
    channels.sort();
    channels.dedup();
    if let Some(socket_id) = &request.socket_id
        && !is_valid_socket_id(socket_id)
    {
        return Err(ProblemResponse::unprocessable(format!(
            "`socket_id` `{socket_id}` is not of the form 123.456"
        )));
    }
    let data = match request.data {
        Value::String(text) => text,
        other => other.to_string(),
    };
    let limit = app.settings.max_event_size as usize;
    if data.len() > limit {
        return Err(ProblemResponse::too_large(format!(
            "`data` is {} bytes; this app accepts at most {limit}",
            data.len()
        )));
    }
    Ok(Publish {
        channels,
        event: request.event,
        data,
        socket_id: request.socket_id,
    })
}

fn accept_error(error: AcceptError) -> ProblemResponse {
    match error {
        AcceptError::RateLimited(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            ProblemResponse::too_many("this app is over its intake rate limit", seconds)
        }
        AcceptError::IdempotencyConflict => ProblemResponse::conflict(
            "this Idempotency-Key was already used with a different request",
        ),
        AcceptError::Log(error) => ProblemResponse::unavailable(&error),
    }
}

fn accepted(event: &LoggedEvent) -> PublishResponse {
    let status_url = format!("/api/events/{}", event.id);
    let body = Accepted {
        id: event.id.clone(),
        status: event.status,
        status_url: status_url.clone(),
    };
    PublishResponse::Accepted(Json(body), status_url)
}

/// One page of `app`'s events matching `filter`, with the cursor of the next page when this one
/// is full.
async fn page(
    intake: &Intake,
    app: &App,
    filter: &EventFilter,
) -> ApiResult<(Vec<EventRecord>, Option<String>)> {
    let events = intake
        .log
        .list(&app.id, filter)
        .await
        .map_err(|e| ProblemResponse::unavailable(&e))?;
    let next_cursor = (events.len() as u64 == filter.limit)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    Ok((
        events.iter().map(|e| record(e, None)).collect(),
        next_cursor,
    ))
}

fn record(event: &LoggedEvent, attempts: Option<&[AttemptRecord]>) -> EventRecord {
    EventRecord {
        id: event.id.clone(),
        app_id: event.app_id.clone(),
        channels: event.channels.clone(),
        event: event.event.clone(),
        data: event.data.clone(),
        socket_id: event.socket_id.clone(),
        status: event.status,
        attempts: event.attempts,
        last_error: event.last_error.clone(),
        replay_of: event.replay_of.clone(),
        stages: Stages {
            received_at: event.received_at,
            logged_at: event.logged_at,
            queued_at: event.queued_at,
            sent_at: event.sent_at,
            acknowledged_at: event.acknowledged_at,
        },
        attempt_log: attempts.map(|attempts| {
            attempts
                .iter()
                .map(|a| Attempt {
                    attempt: a.attempt,
                    started_at: a.started_at,
                    duration_ms: a.duration_ms,
                    status_code: a.status_code,
                    error: a.error.clone(),
                })
                .collect()
        }),
    }
}
