//! How a subscriber gets the `auth` for private, presence and encrypted channels.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::client::form_encode;
use crate::credentials::{ChannelAuth, Credentials, PresenceUser, UserAuth, UserData};
use crate::error::BoxError;

/// What the subscriber asks an [`Authorizer`] to sign: this connection may join this channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub socket_id: String,
    pub channel: String,
}

/// The future an [`Authorizer`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<ChannelAuth, BoxError>> + Send + 'a>>;

/// Authorizes subscriptions to channels that need it.
///
/// It is called again after every reconnect, since each connection has a new socket id. Any
/// `async` closure `Fn(AuthRequest) -> Result<ChannelAuth, BoxError>` is an authorizer; so are
/// [`HttpAuthorizer`] (an auth endpoint, as pusher-js uses) and [`LocalAuthorizer`] (signing
/// with the app secret, for backends).
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, request: AuthRequest) -> AuthFuture<'_>;
}

impl<F, Fut> Authorizer for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ChannelAuth, BoxError>> + Send + 'static,
{
    fn authorize(&self, request: AuthRequest) -> AuthFuture<'_> {
        Box::pin(self(request))
    }
}

/// The future a [`UserAuthenticator`] returns.
pub type UserAuthFuture<'a> = Pin<Box<dyn Future<Output = Result<UserAuth, BoxError>> + Send + 'a>>;

/// Signs a connection in as a user (`pusher:signin`), given its socket id.
///
/// It is called again after every reconnect. Any `async` closure
/// `Fn(String) -> Result<UserAuth, BoxError>` is one; so are [`HttpAuthorizer`] (pointed at a
/// user-auth endpoint) and [`LocalAuthorizer`] with a [`LocalAuthorizer::user`].
pub trait UserAuthenticator: Send + Sync + 'static {
    fn authenticate(&self, socket_id: String) -> UserAuthFuture<'_>;
}

impl<F, Fut> UserAuthenticator for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<UserAuth, BoxError>> + Send + 'static,
{
    fn authenticate(&self, socket_id: String) -> UserAuthFuture<'_> {
        Box::pin(self(socket_id))
    }
}

/// Signs subscriptions with the app's own credentials: for backends that subscribe.
///
/// Presence channels are joined as the configured [`PresenceUser`]; without one, presence
/// subscriptions are refused.
#[derive(Debug, Clone)]
pub struct LocalAuthorizer {
    credentials: Credentials,
    presence_user: Option<PresenceUser>,
    user: Option<UserData>,
}

impl LocalAuthorizer {
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            presence_user: None,
            user: None,
        }
    }

    /// The user this subscriber signs in as, when used as a [`UserAuthenticator`].
    pub fn user(mut self, user: UserData) -> Self {
        self.user = Some(user);
        self
    }

    /// The member this subscriber appears as in presence channels.
    pub fn presence_user(mut self, user: PresenceUser) -> Self {
        self.presence_user = Some(user);
        self
    }

    fn sign(&self, request: &AuthRequest) -> Result<ChannelAuth, BoxError> {
        let (kind, _) = comnestor_protocol::channel::classify(&request.channel);
        let auth = match (kind, &self.presence_user) {
            (comnestor_protocol::ChannelKind::Presence, Some(user)) => self
                .credentials
                .authorize_presence_channel(&request.socket_id, &request.channel, user),
            (comnestor_protocol::ChannelKind::Presence, None) => {
                return Err("LocalAuthorizer has no presence user".into());
            }
            _ => self
                .credentials
                .authorize_channel(&request.socket_id, &request.channel),
        };
        Ok(auth?)
    }
}

impl Authorizer for LocalAuthorizer {
    fn authorize(&self, request: AuthRequest) -> AuthFuture<'_> {
        let result = self.sign(&request);
        Box::pin(async move { result })
    }
}

impl UserAuthenticator for LocalAuthorizer {
    fn authenticate(&self, socket_id: String) -> UserAuthFuture<'_> {
        let result = match &self.user {
            Some(user) => self
                .credentials
                .authenticate_user(&socket_id, user)
                .map_err(BoxError::from),
            None => Err("LocalAuthorizer has no user to sign in as".into()),
        };
        Box::pin(async move { result })
    }
}

/// Calls an auth endpoint the way pusher-js does: `POST` of the form
/// `socket_id=…&channel_name=…`, answered by `200` with the [`ChannelAuth`] JSON. It also
/// serves as a [`UserAuthenticator`] for a user-auth endpoint.
#[derive(Debug, Clone)]
pub struct HttpAuthorizer {
    endpoint: String,
    headers: Vec<(String, String)>,
    http: reqwest::Client,
}

impl HttpAuthorizer {
    /// An authorizer for the absolute URL `endpoint`, with a 30 s timeout.
    pub fn new(endpoint: impl Into<String>) -> Result<Self, crate::Error> {
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| crate::Error::new("HttpAuthorizer::new", e.into()))?;
        Ok(Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            http,
        })
    }

    /// Adds a header to every auth request, such as a session cookie or a bearer token.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        form: &[(&str, &str)],
    ) -> Result<T, BoxError> {
        let body = form_encode(form);
        let mut builder = self
            .http
            .post(&self.endpoint)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the auth endpoint answered {status}").into());
        }
        let body = response.bytes().await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

impl Authorizer for HttpAuthorizer {
    fn authorize(&self, request: AuthRequest) -> AuthFuture<'_> {
        Box::pin(async move {
            let form = [
                ("socket_id", request.socket_id.as_str()),
                ("channel_name", request.channel.as_str()),
            ];
            self.call(&form).await
        })
    }
}

/// As a user authenticator, the endpoint is a user-auth endpoint (`/pusher/user-auth` in
/// pusher-js), which gets `socket_id=…` and answers with the [`UserAuth`] JSON.
impl UserAuthenticator for HttpAuthorizer {
    fn authenticate(&self, socket_id: String) -> UserAuthFuture<'_> {
        Box::pin(async move { self.call(&[("socket_id", socket_id.as_str())]).await })
    }
}
