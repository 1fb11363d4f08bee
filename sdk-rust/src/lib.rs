//! The Rust SDK for Comnestor Realtime, and for any Pusher-compatible server where the feature
//! exists there.
//!
//! Add it with one line, `comnestor = "0.1"`, and talk to the server from a tokio backend:
//!
//! - [`Client`] publishes: [`Client::send_event`] through Comnestor's durable `/api/events`,
//!   or [`Client::trigger`] and the rest of the Pusher HTTP API, signed as the Pusher server
//!   SDKs sign it. It also reads Comnestor's event log ([`Client::events`],
//!   [`Client::event`], [`Client::replay`], [`Client::channel_history`]).
//! - [`Credentials`] signs without a network call: channel authorizations for your auth
//!   endpoint ([`Credentials::authorize_channel`], [`Credentials::authorize_presence_channel`]),
//!   user sign-in ([`Credentials::authenticate_user`]) and webhook checks
//!   ([`Credentials::verify_webhook`]).
//! - [`Subscriber`] connects over WebSocket, subscribes to public, private, presence and
//!   encrypted channels and yields their events as a [`futures_util::Stream`], tracks
//!   presence members, sends client events, signs in as a user for server-to-user events,
//!   and reconnects as the close codes advise.
//! - [`encryption`] holds the end-to-end encryption of `private-encrypted-` channels, which
//!   the client applies by itself when it has a master key.
//!
//! The wire types and the signing rules come from `comnestor-protocol`, the crate the server
//! uses, so the two cannot drift apart. Every failure is an [`Error`] naming the call that
//! failed, with the cause kept as its [`source`](std::error::Error::source).
//!
//! # TLS
//!
//! reqwest and tokio-tungstenite are built with rustls and no crypto provider of their own.
//! Before its first `https://` or `wss://` connection, the SDK installs rustls' ring provider
//! as the process default unless one is already installed ([`ensure_crypto_provider`]). An
//! application that wants another provider installs it before building a client.
//!
//! # Publish
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), comnestor::Error> {
//! # comnestor::ensure_crypto_provider();
//! # let server = comnestor_server::testing::TestServer::start().await;
//! # let url = server.http_url();
//! use comnestor::{Client, Credentials, Event, Trigger};
//! use serde_json::json;
//!
//! let credentials = Credentials::new("100", "test-key", "test-secret");
//! let client = Client::new(credentials, url)?; // or Client::from_env()
//!
//! // Through the event log: the answer carries the event id.
//! let event = Event::new("orders", "order.created", json!({"id": 42})).idempotency_key("order-42");
//! let accepted = client.send_event(&event).await?;
//! let record = client.event(&accepted.id).await?;
//! assert_eq!(record.data, r#"{"id":42}"#);
//!
//! // Through the Pusher HTTP API, which every Pusher-compatible server has.
//! client.trigger(&Trigger::new(["orders", "audit"], "order.created", json!({"id": 42}))).await?;
//! # server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Authorize
//!
//! An auth endpoint answers pusher-js with the JSON of a [`ChannelAuth`]:
//!
//! ```
//! use comnestor::{Credentials, PresenceUser};
//! use serde_json::json;
//!
//! let credentials = Credentials::new("100", "test-key", "test-secret")
//!     .with_master_key_base64("zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=")?;
//!
//! let private = credentials.authorize_channel("123.456", "private-orders")?;
//! assert!(private.auth.starts_with("test-key:"));
//!
//! let member = PresenceUser::new("7").with_info(json!({"name": "Ann"}));
//! let presence = credentials.authorize_presence_channel("123.456", "presence-room", &member)?;
//! assert_eq!(presence.channel_data.as_deref(), Some(r#"{"user_id":"7","user_info":{"name":"Ann"}}"#));
//!
//! let encrypted = credentials.authorize_channel("123.456", "private-encrypted-orders")?;
//! assert!(encrypted.shared_secret.is_some());
//! let body = serde_json::to_string(&encrypted).unwrap();
//! # Ok::<(), comnestor::Error>(())
//! ```
//!
//! # Verify a webhook
//!
//! ```
//! use comnestor::Credentials;
//!
//! let credentials = Credentials::new("100", "123456789", "tofu");
//! let body = br#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#;
//! let signature = "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5";
//! // Pass the X-Pusher-Key and X-Pusher-Signature headers and the body exactly as received.
//! let webhook = credentials.verify_webhook(Some("123456789"), Some(signature), body)?;
//! assert_eq!(webhook.events[0].name, "channel_vacated");
//! assert!(credentials.verify_webhook(Some("123456789"), Some(signature), b"{}").is_err());
//! # Ok::<(), comnestor::Error>(())
//! ```
//!
//! # Subscribe
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), comnestor::Error> {
//! # comnestor::ensure_crypto_provider();
//! # let server = comnestor_server::testing::TestServer::start().await;
//! # let url = server.http_url();
//! use comnestor::{Client, Credentials, LocalAuthorizer, Subscriber, Trigger};
//! use futures_util::StreamExt;
//! use serde_json::json;
//!
//! let credentials = Credentials::new("100", "test-key", "test-secret");
//! // A browser app would use HttpAuthorizer::new("https://app.example/pusher/auth").
//! let subscriber = Subscriber::builder(&url, "test-key")
//!     .authorizer(LocalAuthorizer::new(credentials.clone()))
//!     .connect()
//!     .await?;
//! let mut orders = subscriber.subscribe("private-orders").await?;
//!
//! let client = Client::new(credentials, &url)?;
//! client.trigger(&Trigger::new("private-orders", "order.created", json!({"id": 42}))).await?;
//!
//! while let Some(event) = orders.next().await {
//!     if event.event == "order.created" {
//!         assert_eq!(event.data, json!({"id": 42}));
//!         break;
//!     }
//! }
//! # server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod credentials;
pub mod encryption;
mod error;
pub mod pusher;
pub mod subscriber;
mod tls;

pub use api::{
    Accepted, ChannelHistory, Event, EventPage, EventQuery, EventRecord, EventStatus, HistoryQuery,
};
pub use client::{ApiAuth, Client, ClientBuilder};
pub use credentials::{
    ChannelAuth, Credentials, PresenceUser, UserAuth, UserData, Webhook, WebhookEvent,
};
pub use encryption::{ChannelKey, MasterKey};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use pusher::{BatchItem, Channels, ChannelsQuery, Trigger};
pub use subscriber::{
    AuthRequest, Authorizer, Backoff, ChannelEvent, ConnectionState, HttpAuthorizer,
    LocalAuthorizer, Members, SignIn, Subscriber, SubscriberBuilder, Subscription,
    UserAuthenticator,
};
pub use tls::ensure_crypto_provider;

/// The Pusher protocol crate this SDK is built on: wire types, channel names, close codes and
/// response bodies such as [`protocol::api::TriggerResponse`].
pub use comnestor_protocol as protocol;
