//! The server under test: where it listens, the app's credentials, and the two ways of
//! publishing to it (the Pusher HTTP API, and Comnestor's own `/api/events`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use base64::Engine;
use comnestor_protocol::signing::sign_request;
use serde_json::Value;

/// Everything needed to reach the server.
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub http: String,
    /// Where WebSocket connections go.
    pub ws_addr: SocketAddr,
    /// The `Host` header of the upgrade request.
    pub ws_host: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Local addresses clients bind to, round robin; each has its own ephemeral port range.
    pub sources: Vec<IpAddr>,
    http_client: reqwest::Client,
}

/// How one publish went.
#[derive(Debug)]
pub enum Published {
    /// Accepted; for `/api/events`, with the event id.
    Ok(Option<String>),
    /// Answered with another status.
    Refused(u16),
    /// No answer.
    Failed(String),
}

impl Target {
    pub fn new(
        http: &str,
        ws: Option<&str>,
        app_id: String,
        key: String,
        secret: String,
        source_ips: usize,
        inflight: usize,
    ) -> anyhow::Result<Self> {
        let http = http.trim_end_matches('/').to_owned();
        let ws = ws.map_or_else(|| http.clone(), |w| w.trim_end_matches('/').to_owned());
        let host_port = ws
            .split_once("://")
            .map_or(ws.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let ws_addr = host_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {host_port}"))?
            .find(SocketAddr::is_ipv4)
            .with_context(|| format!("{host_port} has no IPv4 address"))?;
        if !ws_addr.ip().is_loopback() {
            bail!("the generator only drives servers on loopback (127.0.0.0/8), not {ws_addr}");
        }
        let sources = (1..=source_ips.clamp(1, 250))
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last as u8)))
            .collect();
        let http_client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(inflight.max(1))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            ws_addr,
            ws_host: host_port,
            app_id,
            key,
            secret,
            sources,
            http_client,
        })
    }

    /// The source address for client number `i`.
    pub fn source(&self, i: usize) -> IpAddr {
        self.sources[i % self.sources.len()]
    }

    /// The WebSocket path, with the query pusher-js sends.
    pub fn ws_path(&self) -> String {
        format!(
            "/app/{}?protocol=7&client=comnestor-bench&version=0.1.0&flash=false",
            self.key
        )
    }

    /// `POST /apps/{id}/events` (one item) or `/batch_events` (several), signed.
    pub async fn trigger(&self, event: &str, items: &[(&str, String)]) -> Published {
        let (path, body) = if let [(channel, data)] = items {
            let body = serde_json::json!({ "name": event, "channels": [channel], "data": data });
            (format!("/apps/{}/events", self.app_id), body)
        } else {
            let batch: Vec<Value> = items
                .iter()
                .map(|(channel, data)| {
                    serde_json::json!({ "name": event, "channel": channel, "data": data })
                })
                .collect();
            let body = serde_json::json!({ "batch": batch });
            (format!("/apps/{}/batch_events", self.app_id), body)
        };
        let body = body.to_string();
        let query = sign_request(
            &self.key,
            &self.secret,
            "POST",
            &path,
            &[],
            Some(body.as_bytes()),
            unix_secs(),
        );
        let request = self
            .http_client
            .post(format!("{}{path}?{query}", self.http))
            .header("content-type", "application/json")
            .body(body);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
                Published::Ok(None)
            }
            Ok(response) => Published::Refused(response.status().as_u16()),
            Err(error) => Published::Failed(error.without_url().to_string()),
        }
    }

    /// `POST /api/events`, Comnestor's intake, with HTTP Basic credentials.
    pub async fn intake(&self, event: &str, channel: &str, data: String) -> Published {
        let body = serde_json::json!({ "channel": channel, "event": event, "data": data });
        let request = self
            .http_client
            .post(format!("{}/api/events", self.http))
            .header("authorization", self.basic_auth())
            .json(&body);
        match request.send().await {
            Ok(response) if response.status().as_u16() == 202 => {
                let id = response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
                Published::Ok(id)
            }
            Ok(response) => Published::Refused(response.status().as_u16()),
            Err(error) => Published::Failed(error.without_url().to_string()),
        }
    }

    /// `GET /api/events/{id}`: the logged event with the time of each stage.
    pub async fn logged_event(&self, id: &str) -> anyhow::Result<Value> {
        let response = self
            .http_client
            .get(format!("{}/api/events/{id}", self.http))
            .header("authorization", self.basic_auth())
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    fn basic_auth(&self) -> String {
        let raw = format!("{}:{}", self.key, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
