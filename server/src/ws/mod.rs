//! The WebSocket endpoint, `/app/{key}`: the upgrade, admission, and one task per connection.
//!
//! Admission errors (unknown key, disabled app, bad protocol version, refused origin) are
//! reported after the upgrade, as a `pusher:error` followed by a close frame with the same
//! code, because that is the only way a browser client learns the reason.

mod connection;
mod reads;

use std::sync::Arc;

use comnestor_protocol::CloseCode;
use comnestor_protocol::message;
use futures_util::SinkExt;
use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::Context;
use crate::apps::App;
use crate::http::json_error;

/// Hard ceiling on one incoming message, whatever an app allows. Larger messages break the
/// connection with close code 1009.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Frames written before tungstenite hands them to the socket. The connection task feeds a
/// batch of queued frames and then flushes, so a busy connection sends one batch per `send`
/// call instead of one call per frame; an idle one never grows this buffer.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// Bytes tungstenite reads at a time. Every connection holds this buffer for its whole life,
/// idle or not; Pusher client frames (subscribe, ping, a client event) are a few hundred bytes,
/// and a larger frame grows the buffer to its size.
const READ_BUFFER_BYTES: usize = 1024;

/// Small buffers: most Pusher frames are a few hundred bytes, and idle connections should cost
/// little memory.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// `GET /app/{key}`: upgrades to a Pusher WebSocket connection.
#[handler]
pub async fn app_socket(req: &Request, ctx: Data<&Arc<Context>>) -> Response {
    let key = req.path_params::<String>().unwrap_or_default();
    upgrade(req, ctx.0.clone(), |ctx| admit(ctx, req, &key))
}

/// Any other path asked for a WebSocket: accepted, then closed with 4005.
pub fn path_not_found(req: &Request, ctx: Arc<Context>) -> Response {
    upgrade(req, ctx, |_| Err(CloseCode::PathNotFound))
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn upgrade(
    req: &Request,
    ctx: Arc<Context>,
    admit: impl FnOnce(&Arc<Context>) -> Result<Arc<App>, CloseCode>,
) -> Response {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY);
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let (Some(key), true, true) = (key, version_ok, is_upgrade(req)) else {
        return json_error(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint only accepts WebSocket upgrades (version 13)",
        );
    };
    let Ok(on_upgrade) = req.take_upgrade() else {
        return json_error(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    let accept = derive_accept_key(key.as_bytes());
    let admission = if ctx.hub.is_shutting_down() {
        Err(CloseCode::Reconnect)
    } else {
        admit(&ctx)
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let wire = req
        .local_addr()
        .as_socket_addr()
        .zip(req.remote_addr().as_socket_addr())
        .and_then(|(local, peer)| crate::listener::claim(*local, *peer));

    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut socket =
            WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(socket_config())).await;
        let app = match admission.and_then(|app| check_origin(app, origin.as_deref())) {
            Ok(app) => app,
            Err(code) => {
                tracing::debug!(code = code.code(), "refusing connection");
                refuse(&mut socket, code).await;
                return;
            }
        };
        connection::run(ctx, app, socket, wire).await;
    });

    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .finish()
}

/// Resolves the app and checks the protocol version the client announced.
fn admit(ctx: &Context, req: &Request, key: &str) -> Result<Arc<App>, CloseCode> {
    let params = comnestor_protocol::signing::query_params(req.uri().query().unwrap_or_default());
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    check_protocol(get("protocol"), get("version"))?;
    let app = ctx.apps.by_key(key).ok_or(CloseCode::AppNotFound)?;
    if !app.enabled {
        return Err(CloseCode::AppDisabled);
    }
    Ok(app)
}

/// Protocols 5 to 7 are accepted: pusher-js sends 7, the Java client 5.
fn check_protocol(protocol: Option<&str>, version: Option<&str>) -> Result<(), CloseCode> {
    if let Some(version) = version
        && !version.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(CloseCode::InvalidVersionFormat);
    }
    match protocol.map(str::parse::<u8>) {
        None => Err(CloseCode::NoProtocol),
        Some(Ok(5..=7)) => Ok(()),
        Some(_) => Err(CloseCode::UnsupportedProtocol),
    }
}

fn check_origin(app: Arc<App>, origin: Option<&str>) -> Result<Arc<App>, CloseCode> {
    if app.settings.origin_allowed(origin) {
        Ok(app)
    } else {
        Err(CloseCode::Unauthorized)
    }
}

/// Sends `pusher:error` with `code`, then a close frame with the same code.
pub(crate) async fn refuse<S>(socket: &mut WebSocketStream<S>, code: CloseCode)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let error = message::error(Some(code.code()), code.message());
    let _ = socket.feed(Message::Text(error.into())).await;
    let _ = socket
        .close(Some(close_frame(code.code(), code.message())))
        .await;
}

pub(crate) fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: WsCloseCode::from(code),
        reason: Utf8Bytes::from(reason.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(check_protocol(Some("7"), Some("8.6.0")), Ok(()));
        assert_eq!(check_protocol(Some("5"), None), Ok(()));
        assert_eq!(
            check_protocol(None, Some("8.6.0")),
            Err(CloseCode::NoProtocol)
        );
        assert_eq!(
            check_protocol(Some("4"), None),
            Err(CloseCode::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("x"), None),
            Err(CloseCode::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("7"), Some("v8")),
            Err(CloseCode::InvalidVersionFormat)
        );
    }
}
