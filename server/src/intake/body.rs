//! The body of `POST /api/events`: its documented schema and a parser whose errors name the
//! field that is wrong.
//!
//! poem-openapi's own JSON parsing reports a wrong field as "Expected input type …" without
//! saying which field, so the body is read here instead, with the same schema in the spec.

use poem::{IntoResponse, Request, RequestBody};
use poem_openapi::error::ContentTypeError;
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, Object};
use serde_json::{Map, Value};

use super::problem::ProblemResponse;

/// Largest body read, whatever the app's `max_event_size`: the data limit is checked once the
/// app is known, this one only bounds what is buffered.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The body of `POST /api/events`.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(deny_unknown_fields)]
pub struct PublishRequest {
    /// One channel. Give this or `channels`.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^(#server-to-user-)?[-a-zA-Z0-9_=@,.;]+$"
    ))]
    pub channel: Option<String>,
    /// Up to 100 channels. Give this or `channel`.
    #[oai(validator(
        min_items = 1,
        max_items = 100,
        min_length = 1,
        max_length = 200,
        pattern = r"^(#server-to-user-)?[-a-zA-Z0-9_=@,.;]+$"
    ))]
    pub channels: Option<Vec<String>>,
    /// The event name, such as `order.created` or `App\Events\OrderShipped`.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub event: String,
    /// Any JSON value. A string is relayed to subscribers as is; anything else is serialized.
    pub data: Value,
    /// A connection to leave out (the sender's own), as `123.456`.
    #[oai(validator(pattern = r"^[0-9]{1,20}\.[0-9]{1,20}$"))]
    pub socket_id: Option<String>,
    /// The app key; when given, it must match the credentials.
    pub app_key: Option<String>,
}

const FIELDS: &[&str] = &[
    "channel",
    "channels",
    "event",
    "data",
    "socket_id",
    "app_key",
];

/// [`PublishRequest`] as a request payload, parsed by [`parse`].
#[derive(Debug)]
pub struct PublishBody(pub PublishRequest);

impl Payload for PublishBody {
    const CONTENT_TYPE: &'static str = Json::<PublishRequest>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        Json::<PublishRequest>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        PublishRequest::schema_ref()
    }

    fn register(registry: &mut Registry) {
        PublishRequest::register(registry);
        // `parse` takes `null` for an optional field as absent: the spec says so.
        if let Some(schema) = registry.schemas.get_mut(PublishRequest::name().as_ref()) {
            for (name, field) in &mut schema.properties {
                if let MetaSchemaRef::Inline(field) = field
                    && !schema.required.contains(name)
                {
                    field.nullable = true;
                }
            }
        }
    }
}

impl ParsePayload for PublishBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body
            .take()?
            .into_bytes_limit(MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                problem(ProblemResponse::too_large(format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes"
                )))
            })?;
        parse(&bytes).map(Self).map_err(problem)
    }
}

// What poem-openapi's `impl_apirequest_for_payload!` generates; the macro itself cannot be
// invoked from another crate.
impl<'a> ApiExtractor<'a> for PublishBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: Self::CONTENT_TYPE,
                schema: Self::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if Self::check_content_type(content_type) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(content_type) => Err(ContentTypeError::NotSupported {
                content_type: content_type.to_owned(),
            }
            .into()),
            None => Err(ContentTypeError::ExpectContentType.into()),
        }
    }
}

fn problem(response: ProblemResponse) -> poem::Error {
    poem::Error::from_response(response.into_response())
}

/// Parses a publish body, naming the first wrong field.
pub fn parse(bytes: &[u8]) -> Result<PublishRequest, ProblemResponse> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ProblemResponse::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(unprocessable("the body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(unprocessable(format!(
            "unknown field `{unknown}`; the fields are {}",
            FIELDS.join(", ")
        )));
    }
    let event = optional_string(&mut fields, "event")?
        .ok_or_else(|| unprocessable("`event` is required"))?;
    let data = fields
        .remove("data")
        .ok_or_else(|| unprocessable("`data` is required (any JSON value)"))?;
    Ok(PublishRequest {
        channel: optional_string(&mut fields, "channel")?,
        channels: optional_strings(&mut fields, "channels")?,
        event,
        data,
        socket_id: optional_string(&mut fields, "socket_id")?,
        app_key: optional_string(&mut fields, "app_key")?,
    })
}

fn unprocessable(detail: impl Into<String>) -> ProblemResponse {
    ProblemResponse::unprocessable(detail)
}

/// A string field; `null` counts as absent.
fn optional_string(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, ProblemResponse> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(unprocessable(format!(
            "`{name}` must be a string, not {}",
            kind(&other)
        ))),
    }
}

/// An array-of-strings field; `null` counts as absent.
fn optional_strings(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, ProblemResponse> {
    let items = match fields.remove(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(unprocessable(format!(
                "`{name}` must be an array of strings, not {}",
                kind(&other)
            )));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(text),
            other => Err(unprocessable(format!(
                "`{name}[{i}]` must be a string, not {}",
                kind(&other)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
