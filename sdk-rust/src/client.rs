//! The HTTP client: construction, configuration from the environment, and the request plumbing
//! the endpoint modules ([`crate::api`], [`crate::pusher`]) share.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comnestor_protocol::signing::sign_request;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::credentials::Credentials;
use crate::error::{Context, Error, ErrorKind, Result, excerpt};

/// Environment variables [`Client::from_env`] reads.
pub const ENV_URL: &str = "COMNESTOR_URL";
pub const ENV_APP_ID: &str = "COMNESTOR_APP_ID";
pub const ENV_APP_KEY: &str = "COMNESTOR_APP_KEY";
pub const ENV_APP_SECRET: &str = "COMNESTOR_APP_SECRET";
/// Optional: the base64 encryption master key.
pub const ENV_MASTER_KEY: &str = "COMNESTOR_ENCRYPTION_MASTER_KEY";

/// How `/api` requests prove they come from the app's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiAuth {
    /// HTTP Basic with the key as user name and the secret as password. Send it over TLS.
    #[default]
    Basic,
    /// A Pusher-style HMAC signature in the query string; the secret never travels.
    Signature,
}

/// A client for one app on one server. Cheap to clone: clones share one connection pool.
///
/// Every method is an independent HTTP request; dropping its future before it completes
/// cancels the request, but the server may already have acted on it (use an idempotency key
/// on [`crate::Event`] to retry [`Client::send_event`] safely).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    credentials: Credentials,
    /// Scheme, host and port, without a trailing slash.
    origin: String,
    /// Path prefix of the base URL (empty, or `/prefix` without a trailing slash).
    prefix: String,
    http: reqwest::Client,
    api_auth: ApiAuth,
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    credentials: Credentials,
    base_url: String,
    timeout: Duration,
    http: Option<reqwest::Client>,
    api_auth: ApiAuth,
}

impl ClientBuilder {
    /// Timeout of each HTTP request (default 30 s). Ignored with [`ClientBuilder::http_client`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this reqwest client, and its pool, instead of building one.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// How `/api` requests authenticate (default [`ApiAuth::Basic`]).
    pub fn api_auth(mut self, api_auth: ApiAuth) -> Self {
        self.api_auth = api_auth;
        self
    }

    pub fn build(self) -> Result<Client> {
        let call = "Client::build";
        let url = Url::parse(&self.base_url)
            .map_err(|e| config(call, format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config(call, "the base URL must be http(s)://host".into()));
        }
        let origin = url.origin().ascii_serialization();
        let prefix = url.path().trim_end_matches('/').to_owned();
        let http = match self.http {
            Some(http) => http,
            None => build_http(self.timeout).call(call)?,
        };
        let inner = Inner {
            credentials: self.credentials,
            origin,
            prefix,
            http,
            api_auth: self.api_auth,
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }
}

fn build_http(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    crate::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("comnestor-rust/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn config(call: &'static str, message: String) -> Error {
    Error::new(call, ErrorKind::Config(message))
}

impl Client {
    /// Starts building a client for the server at `base_url`, such as `http://127.0.0.1:6001`.
    pub fn builder(credentials: Credentials, base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            credentials,
            base_url: base_url.into(),
            timeout: Duration::from_secs(30),
            http: None,
            api_auth: ApiAuth::default(),
        }
    }

    pub fn new(credentials: Credentials, base_url: impl Into<String>) -> Result<Self> {
        Self::builder(credentials, base_url).build()
    }

    /// A client from `COMNESTOR_URL`, `COMNESTOR_APP_ID`, `COMNESTOR_APP_KEY`,
    /// `COMNESTOR_APP_SECRET` and, optionally, `COMNESTOR_ENCRYPTION_MASTER_KEY`.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Client::from_env`], reading the variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let call = "Client::from_env";
        let get = |name: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| config(call, format!("{name} is not set")))
        };
        let mut credentials =
            Credentials::new(get(ENV_APP_ID)?, get(ENV_APP_KEY)?, get(ENV_APP_SECRET)?);
        if let Some(master) = lookup(ENV_MASTER_KEY).filter(|v| !v.is_empty()) {
            credentials = credentials.with_master_key_base64(&master)?;
        }
        Self::new(credentials, get(ENV_URL)?)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.inner.origin, self.inner.prefix)
    }

    /// A request to `path` (under the base URL), authenticated as `/api` requests are.
    pub(crate) fn api_request(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> RequestBuilder {
        match self.inner.api_auth {
            ApiAuth::Signature => self.signed_request(method, path, params, body),
            ApiAuth::Basic => {
                let credentials = &self.inner.credentials;
                let mut url = format!("{}{}{path}", self.inner.origin, self.inner.prefix);
                if !params.is_empty() {
                    url.push('?');
                    url.push_str(&form_encode(params));
                }
                let request = self
                    .inner
                    .http
                    .request(method, url)
                    .basic_auth(credentials.key(), Some(credentials.secret()));
                with_json_body(request, body)
            }
        }
    }

    /// A request to `path` (under the base URL) signed as the Pusher server SDKs sign them.
    pub(crate) fn signed_request(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> RequestBuilder {
        let credentials = &self.inner.credentials;
        let path = format!("{}{path}", self.inner.prefix);
        let query = sign_request(
            credentials.key(),
            credentials.secret(),
            method.as_str(),
            &path,
            params,
            body.as_deref(),
            unix_now(),
        );
        let url = format!("{}{path}?{query}", self.inner.origin);
        with_json_body(self.inner.http.request(method, url), body)
    }

    /// Sends `request` and decodes a successful JSON answer.
    pub(crate) async fn execute<T: DeserializeOwned>(
        &self,
        call: &'static str,
        request: RequestBuilder,
    ) -> Result<T> {
        let response = request.send().await.call(call)?;
        let status = response.status();
        let body = response.bytes().await.call(call)?;
        if !status.is_success() {
            let message = error_message(&body, status.canonical_reason());
            let kind = ErrorKind::Status {
                status: status.as_u16(),
                message,
            };
            return Err(Error::new(call, kind));
        }
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &body[..]
        };
        serde_json::from_slice(body).map_err(|source| {
            let body = excerpt(&String::from_utf8_lossy(body));
            Error::new(call, ErrorKind::Decode { body, source })
        })
    }
}

fn with_json_body(request: RequestBuilder, body: Option<Vec<u8>>) -> RequestBuilder {
    match body {
        Some(body) => request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body),
        None => request,
    }
}

/// `k=v&...`, form-encoded, as query strings and auth endpoint bodies are.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    serializer.extend_pairs(pairs);
    serializer.finish()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The explanation in an error body: a problem's `detail`, an `error` field, or the text.
fn error_message(body: &[u8], reason: Option<&str>) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        for field in ["detail", "error", "message"] {
            if let Some(Value::String(text)) = value.get(field) {
                return text.clone();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        reason.unwrap_or("no explanation").to_owned()
    } else {
        excerpt(text.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_configuration() {
        let vars = [
            (ENV_URL, "http://127.0.0.1:1/prefix/"),
            (ENV_APP_ID, "1"),
            (ENV_APP_KEY, "k"),
            (ENV_APP_SECRET, "s"),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        let client = Client::from_lookup(lookup).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:1/prefix");
        assert_eq!(client.credentials().app_id(), "1");

        let missing = Client::from_lookup(|_| None).unwrap_err();
        assert!(missing.to_string().contains(ENV_APP_ID), "{missing}");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        let credentials = Credentials::new("1", "k", "s");
        assert!(Client::new(credentials.clone(), "not a url").is_err());
        assert!(Client::new(credentials, "ftp://host").is_err());
    }

    #[test]
    fn error_messages_prefer_structured_fields() {
        assert_eq!(error_message(br#"{"detail":"d"}"#, None), "d");
        assert_eq!(error_message(br#"{"error":"e"}"#, None), "e");
        assert_eq!(error_message(b"plain", None), "plain");
        assert_eq!(error_message(b"", Some("Not Found")), "Not Found");
    }
}
