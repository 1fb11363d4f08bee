//! Signed calls to the Pusher HTTP API (§3), with the knobs the signing cases need to break a
//! request in one precise way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use comnestor_protocol::{auth, signing};
use serde_json::Value;

/// The answer to an HTTP call.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON; fails with the status and body when it is not JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("HTTP {} body is not JSON: {:?}", self.status, self.body))
    }

    /// Requires a 200 whose body is a JSON object, and returns it.
    pub fn ok_object(&self) -> Result<Value> {
        if self.status != 200 {
            bail!("expected HTTP 200, got {}: {}", self.status, self.body);
        }
        let value = self.json()?;
        if !value.is_object() {
            bail!("expected a JSON object body, got {}", self.body);
        }
        Ok(value)
    }

    /// Requires exactly `status`.
    pub fn expect_status(&self, status: u16) -> Result<()> {
        if self.status != status {
            bail!("expected HTTP {status}, got {}: {}", self.status, self.body);
        }
        Ok(())
    }
}

/// How the query string is written on the wire. The signature is always over decoded values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryEncoding {
    /// Form encoding, as Guzzle (PHP) writes it: `,` becomes `%2C`.
    Form,
    /// Values written raw except for characters that cannot appear in a URL, as pusher-http-node
    /// writes `info=user_count,subscription_count`.
    Raw,
}

/// A request to sign, with every part open to tampering.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    /// The path that is requested and signed, such as `/apps/3/events`.
    pub path: String,
    /// Query parameters besides the `auth_*` ones, decoded.
    pub params: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub key: String,
    pub secret: String,
    pub timestamp: u64,
    pub auth_version: Option<String>,
    /// `None` computes `body_md5` from the body when there is one; `Some("")` omits it.
    pub body_md5: Option<String>,
    pub encoding: QueryEncoding,
    /// Replaces the computed signature.
    pub signature: Option<String>,
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Request {
    /// The full query string, `auth_signature` last.
    pub fn query(&self) -> String {
        let timestamp = self.timestamp.to_string();
        let mut all: Vec<(String, String)> = vec![
            ("auth_key".into(), self.key.clone()),
            ("auth_timestamp".into(), timestamp),
        ];
        if let Some(version) = &self.auth_version {
            all.push(("auth_version".into(), version.clone()));
        }
        let md5 = match (&self.body_md5, &self.body) {
            (Some(given), _) if given.is_empty() => None,
            (Some(given), _) => Some(given.clone()),
            (None, Some(body)) => Some(signing::body_md5(body)),
            (None, None) => None,
        };
        if let Some(md5) = md5 {
            all.push(("body_md5".into(), md5));
        }
        all.extend(self.params.iter().cloned());
        let to_sign = signing::string_to_sign(
            self.method,
            &self.path,
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let signature = self
            .signature
            .clone()
            .unwrap_or_else(|| auth::sign(&self.secret, &to_sign));
        all.push(("auth_signature".into(), signature));
        let pairs: Vec<String> = all
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k, self.encoding), encode(v, self.encoding)))
            .collect();
        pairs.join("&")
    }
}

fn encode(text: &str, encoding: QueryEncoding) -> String {
    let keep = |c: char| {
        c.is_ascii_alphanumeric()
            || "-_.~".contains(c)
            || (encoding == QueryEncoding::Raw && ",:;@".contains(c))
    };
    let mut out = String::new();
    for c in text.chars() {
        if keep(c) {
            out.push(c);
        } else {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// A client for one app on one server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl Api {
    pub fn new(base: &str, app_id: &str, key: &str, secret: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("an HTTP client with default TLS settings");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// `/apps/{app_id}{rest}`.
    pub fn path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.app_id)
    }

    /// A correctly signed request, ready to be tampered with.
    pub fn request(&self, method: &'static str, rest: &str) -> Request {
        Request {
            method,
            path: self.path(rest),
            params: Vec::new(),
            body: None,
            key: self.key.clone(),
            secret: self.secret.clone(),
            timestamp: now(),
            auth_version: Some("1.0".into()),
            body_md5: None,
            encoding: QueryEncoding::Form,
            signature: None,
        }
    }

    pub async fn send(&self, request: &Request) -> Result<Reply> {
        let url = format!("{}{}?{}", self.base, request.path, request.query());
        let builder = match request.method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            other => bail!("unsupported method {other}"),
        };
        let builder = match &request.body {
            Some(body) => builder
                .header("Content-Type", "application/json")
                .body(body.clone()),
            None => builder,
        };
        let response = builder
            .send()
            .await
            .with_context(|| format!("{} {} failed", request.method, request.path))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok(Reply { status, body })
    }

    /// A signed GET of `/apps/{id}{rest}` with `params`.
    pub async fn get(&self, rest: &str, params: &[(&str, &str)]) -> Result<Reply> {
        let mut request = self.request("GET", rest);
        request.params = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.send(&request).await
    }

    /// A signed POST of a JSON body to `/apps/{id}{rest}`.
    pub async fn post(&self, rest: &str, body: &Value) -> Result<Reply> {
        let mut request = self.request("POST", rest);
        request.body = Some(body.to_string().into_bytes());
        self.send(&request).await
    }

    /// `POST /events`; requires a 200 with a JSON object.
    pub async fn trigger(&self, body: Value) -> Result<Value> {
        self.post("/events", &body)
            .await?
            .ok_object()
            .context("triggering an event")
    }
}
