//! A small poem auth endpoint for pusher-js, with a webhook receiver.
//!
//! - `POST /pusher/auth`: private, presence and encrypted channels. The "session" is an
//!   `X-User-Id` header, to keep the example short; a real app checks its own session and
//!   whether that user may join the channel.
//! - `POST /pusher/user-auth`: user sign-in.
//! - `POST /webhooks`: verifies `X-Pusher-Key` / `X-Pusher-Signature` over the raw body.
//!
//! ```sh
//! COMNESTOR_URL=http://127.0.0.1:6001 COMNESTOR_APP_ID=100 COMNESTOR_APP_KEY=app-key \
//! COMNESTOR_APP_SECRET=app-secret \
//! COMNESTOR_ENCRYPTION_MASTER_KEY=zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU= \
//! cargo run -p comnestor --example authorize
//! ```

use comnestor::{ChannelAuth, Client, Credentials, PresenceUser, UserAuth, UserData};
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::{Data, Form, Json};
use poem::{Body, EndpointExt, Request, Route, Server, handler, post};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct ChannelForm {
    socket_id: String,
    channel_name: String,
}

#[derive(Deserialize)]
struct UserForm {
    socket_id: String,
}

fn forbidden(error: comnestor::Error) -> poem::Error {
    poem::Error::from_string(error.to_string(), StatusCode::FORBIDDEN)
}

fn session_user(request: &Request) -> poem::Result<String> {
    request
        .header("X-User-Id")
        .map(str::to_owned)
        .ok_or_else(|| poem::Error::from_string("not signed in", StatusCode::FORBIDDEN))
}

#[handler]
fn channel_auth(
    request: &Request,
    form: Form<ChannelForm>,
    credentials: Data<&Credentials>,
) -> poem::Result<Json<ChannelAuth>> {
    let (socket_id, channel) = (&form.socket_id, &form.channel_name);
    let auth = if channel.starts_with("presence-") {
        let user = PresenceUser::new(session_user(request)?).with_info(json!({"via": "example"}));
        credentials.authorize_presence_channel(socket_id, channel, &user)
    } else {
        credentials.authorize_channel(socket_id, channel)
    };
    auth.map(Json).map_err(forbidden)
}

#[handler]
fn user_auth(
    request: &Request,
    form: Form<UserForm>,
    credentials: Data<&Credentials>,
) -> poem::Result<Json<UserAuth>> {
    let user = UserData::new(session_user(request)?);
    credentials
        .authenticate_user(&form.socket_id, &user)
        .map(Json)
        .map_err(forbidden)
}

#[handler]
async fn webhook(request: &Request, body: Body, credentials: Data<&Credentials>) -> StatusCode {
    let Ok(body) = body.into_bytes().await else {
        return StatusCode::BAD_REQUEST;
    };
    let key = request.header("X-Pusher-Key");
    let signature = request.header("X-Pusher-Signature");
    match credentials.verify_webhook(key, signature, &body) {
        Ok(webhook) => {
            for event in webhook.events {
                println!("webhook: {} on {:?}", event.name, event.channel);
            }
            StatusCode::OK
        }
        Err(error) => {
            eprintln!("{error}");
            StatusCode::UNAUTHORIZED
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let credentials = Client::from_env()?.credentials().clone();
    let app = Route::new()
        .at("/pusher/auth", post(channel_auth))
        .at("/pusher/user-auth", post(user_auth))
        .at("/webhooks", post(webhook))
        .data(credentials);
    let addr = std::env::var("AUTH_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    println!("auth endpoint on http://{addr}/pusher/auth");
    Server::new(TcpListener::bind(addr)).run(app).await?;
    Ok(())
}
