//! The case registry and the helpers cases share.
//!
//! A case is an async function of a [`Ctx`] that returns `Ok(())` when the server follows the
//! rule the case names. Every case opens its own connections and uses channel names no other
//! case uses, so cases can run at the same time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::client::{Client, Frame};
use crate::config::{Config, Node};
use crate::http::Api;
use crate::webhook::Receiver;

macro_rules! case {
    ($area:expr, $name:ident, $needs:expr, $rule:expr) => {
        $crate::cases::Case {
            area: $area,
            name: stringify!($name),
            rule: $rule,
            needs: $needs,
            run: |ctx| Box::pin($name(ctx)),
        }
    };
}

mod cache;
mod client_events;
mod connection;
mod encrypted;
mod errors;
mod http_api;
mod limits;
mod multinode;
mod ping;
mod presence;
mod private;
mod public;
mod self_check;
mod signin;
mod subscription_count;
mod watchlist;
mod webhooks;

/// A group of cases, reported together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    SelfCheck,
    Connection,
    Ping,
    Errors,
    Public,
    Private,
    Presence,
    Encrypted,
    Cache,
    ClientEvents,
    Signin,
    Watchlist,
    SubscriptionCount,
    HttpApi,
    Limits,
    Webhooks,
    Multinode,
}

impl Area {
    /// The name used by `--only` and `--skip` and in case ids.
    pub fn id(self) -> &'static str {
        match self {
            Self::SelfCheck => "self_check",
            Self::Connection => "connection",
            Self::Ping => "ping",
            Self::Errors => "errors",
            Self::Public => "public",
            Self::Private => "private",
            Self::Presence => "presence",
            Self::Encrypted => "encrypted",
            Self::Cache => "cache",
            Self::ClientEvents => "client_events",
            Self::Signin => "signin",
            Self::Watchlist => "watchlist",
            Self::SubscriptionCount => "subscription_count",
            Self::HttpApi => "http_api",
            Self::Limits => "limits",
            Self::Webhooks => "webhooks",
            Self::Multinode => "multinode",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::SelfCheck => "Suite self-check (signing vectors, no server)",
            Self::Connection => "Connection and handshake",
            Self::Ping => "Ping and activity timeout",
            Self::Errors => "Error codes",
            Self::Public => "Public channels",
            Self::Private => "Private channels",
            Self::Presence => "Presence channels",
            Self::Encrypted => "Encrypted channels",
            Self::Cache => "Cache channels",
            Self::ClientEvents => "Client events",
            Self::Signin => "User sign-in and server-to-user",
            Self::Watchlist => "Watchlist",
            Self::SubscriptionCount => "subscription_count",
            Self::HttpApi => "HTTP API and request signing",
            Self::Limits => "Limits",
            Self::Webhooks => "Webhooks",
            Self::Multinode => "Multi-node",
        }
    }
}

/// What a case needs beyond a reachable server, so it is skipped with a reason otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Nothing,
    /// `--expect-subscription-count`.
    SubscriptionCount,
    /// `--webhooks`.
    Webhooks,
    /// At least two nodes.
    Nodes,
    /// `--activity-timeout-wait`.
    ActivityWait,
}

impl Need {
    /// Why a case with this need is skipped under `cfg`, or `None` to run it.
    pub fn unmet(self, cfg: &Config) -> Option<&'static str> {
        match self {
            Self::Nothing => None,
            Self::SubscriptionCount if !cfg.expect_subscription_count => Some(
                "needs the app's subscription counting; pass --expect-subscription-count to run it",
            ),
            Self::Webhooks if !cfg.webhooks => {
                Some("the webhooks area is off; pass --webhooks and configure the printed URL")
            }
            Self::Nodes if cfg.others.is_empty() => {
                Some("needs two or more nodes of one cluster; pass --node for each")
            }
            Self::ActivityWait if cfg.activity_timeout_wait.is_none() => Some(
                "waits for the server's activity timeout; pass --activity-timeout-wait SECS to run it",
            ),
            _ => None,
        }
    }
}

pub type CaseFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One registered case.
pub struct Case {
    pub area: Area,
    pub name: &'static str,
    /// The protocol rule, with its section in `pusher-protocol.md`.
    pub rule: &'static str,
    pub needs: Need,
    pub run: fn(Arc<Ctx>) -> CaseFuture,
}

impl Case {
    pub fn id(&self) -> String {
        format!("{}.{}", self.area.id(), self.name)
    }
}

/// Every case, grouped by area in report order.
pub fn all() -> Vec<Case> {
    [
        self_check::cases(),
        connection::cases(),
        ping::cases(),
        errors::cases(),
        public::cases(),
        private::cases(),
        presence::cases(),
        encrypted::cases(),
        cache::cases(),
        client_events::cases(),
        signin::cases(),
        watchlist::cases(),
        subscription_count::cases(),
        http_api::cases(),
        limits::cases(),
        webhooks::cases(),
        multinode::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What every case gets: the configuration, HTTP clients and unique names.
pub struct Ctx {
    pub cfg: Config,
    /// The HTTP API of the primary node.
    pub api: Api,
    /// The HTTP API of every node, the primary first.
    pub apis: Vec<Api>,
    pub webhooks: Option<Receiver>,
    run: String,
    counter: AtomicU64,
}

impl Ctx {
    pub fn new(cfg: Config, webhooks: Option<Receiver>) -> Self {
        let apis: Vec<Api> = cfg
            .nodes()
            .iter()
            .map(|node| Api::new(&node.http, &cfg.app_id, &cfg.key, &cfg.secret, cfg.wait))
            .collect();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            api: apis[0].clone(),
            apis,
            cfg,
            webhooks,
            run: format!("{:x}", (nanos ^ u128::from(std::process::id())) % 0xff_ffff),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A channel name nobody else uses, starting with `prefix`.
    pub fn channel(&self, prefix: &str) -> String {
        format!("{prefix}cf-{}-{}", self.run, self.next())
    }

    /// A user id nobody else uses.
    pub fn user(&self) -> String {
        format!("u-{}-{}", self.run, self.next())
    }

    /// The WebSocket URL of `node` with the query pusher-js sends.
    pub fn ws_url(&self, node: &Node, protocol: u8) -> String {
        format!(
            "{}/app/{}?protocol={protocol}&client=js&version=8.6.0&flash=false",
            node.ws, self.cfg.key
        )
    }

    /// Connects to the primary node and waits for `connection_established`.
    pub async fn connect(&self) -> Result<Client> {
        Client::connect(&self.ws_url(&self.cfg.primary, 7), self.cfg.wait).await
    }

    /// Connects to node `index` (0 is the primary).
    pub async fn connect_node(&self, index: usize) -> Result<Client> {
        let node = self.cfg.nodes()[index].clone();
        Client::connect(&self.ws_url(&node, 7), self.cfg.wait).await
    }

    /// `key:signature` for a private, encrypted or presence subscription.
    pub fn auth(&self, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
        comnestor_protocol::auth::authorize_channel(
            &self.cfg.key,
            &self.cfg.secret,
            socket_id,
            channel,
            channel_data,
        )
    }

    pub async fn subscribe_public(&self, client: &mut Client, channel: &str) -> Result<Frame> {
        client.subscribe(channel, Some(""), None);
        subscribed(client, channel).await
    }

    /// Subscribes to a private or encrypted channel with a valid signature.
    pub async fn subscribe_private(&self, client: &mut Client, channel: &str) -> Result<Frame> {
        let auth = self.auth(&client.socket_id, channel, None);
        client.subscribe(channel, Some(&auth), None);
        subscribed(client, channel).await
    }

    /// Joins a presence channel as `user_id` and returns the decoded `presence` object.
    pub async fn subscribe_presence(
        &self,
        client: &mut Client,
        channel: &str,
        user_id: &str,
        info: Value,
    ) -> Result<Value> {
        let data = json!({"user_id": user_id, "user_info": info}).to_string();
        let auth = self.auth(&client.socket_id, channel, Some(&data));
        client.subscribe(channel, Some(&auth), Some(&data));
        let frame = subscribed(client, channel).await?;
        let presence = frame.data_value()["presence"].clone();
        if !presence.is_object() {
            bail!(
                "presence subscription_succeeded without a presence object: {}",
                frame.raw
            );
        }
        Ok(presence)
    }

    /// Sends a correctly signed `pusher:signin`.
    pub fn send_signin(&self, client: &Client, user_data: &str) {
        let auth = comnestor_protocol::auth::authenticate_user(
            &self.cfg.key,
            &self.cfg.secret,
            &client.socket_id,
            user_data,
        );
        client.send(json!({
            "event": "pusher:signin",
            "data": {"auth": auth, "user_data": user_data}
        }));
    }

    /// Signs in and waits for `pusher:signin_success`.
    pub async fn signin(&self, client: &mut Client, user_data: &str) -> Result<Frame> {
        self.send_signin(client, user_data);
        let frame = client
            .expect("pusher:signin_success or pusher:error", |f| {
                f.event == "pusher:signin_success" || f.event == "pusher:error"
            })
            .await?;
        if frame.event != "pusher:signin_success" {
            bail!("signin was refused: {}", frame.raw);
        }
        Ok(frame)
    }

    /// The webhook receiver; the Need gate guarantees it for webhook cases.
    pub fn receiver(&self) -> Result<&Receiver> {
        match &self.webhooks {
            Some(receiver) => Ok(receiver),
            None => bail!("the webhook receiver is not running"),
        }
    }
}

fn subscription_outcome(frame: &Frame, channel: &str) -> bool {
    frame.is("pusher_internal:subscription_succeeded", Some(channel))
        || frame.event == "pusher:error"
        || frame.is("pusher:subscription_error", Some(channel))
}

/// Waits for `subscription_succeeded` on `channel`; a `pusher:error` or
/// `pusher:subscription_error` first fails.
pub async fn subscribed(client: &mut Client, channel: &str) -> Result<Frame> {
    let what = format!("the outcome of subscribing to {channel}");
    let frame = client
        .expect(&what, |f| subscription_outcome(f, channel))
        .await?;
    if frame.event != "pusher_internal:subscription_succeeded" {
        bail!("subscribing to {channel} was refused: {}", frame.raw);
    }
    Ok(frame)
}

/// Waits for the refusal of a subscription to `channel` (§2.5: a `pusher:error`, or a
/// `pusher:subscription_error` for the channel) and checks the socket stays open.
pub async fn refused(client: &mut Client, channel: &str) -> Result<Frame> {
    let what = format!("a refusal of the subscription to {channel}");
    let frame = client
        .expect(&what, |f| subscription_outcome(f, channel))
        .await?;
    if frame.event == "pusher_internal:subscription_succeeded" {
        bail!("the subscription to {channel} should have been refused but succeeded");
    }
    client.assert_open().await?;
    Ok(frame)
}

/// A shorter name for the quiet period of a config.
pub fn quiet(ctx: &Ctx) -> Duration {
    ctx.cfg.quiet
}

/// Fails unless `frame` carries `data` as a JSON string (the double encoding of §1.2).
pub fn double_encoded(frame: &Frame) -> Result<&str> {
    match frame.data_str() {
        Some(text) => Ok(text),
        None => bail!("data should be a JSON-encoded string (§1.2): {}", frame.raw),
    }
}
