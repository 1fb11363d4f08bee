//! Comnestor Realtime: a Pusher-compatible realtime server.
//!
//! How the crate is laid out:
//!
//! - [`config`]: settings from a TOML file and `COMNESTOR_*` variables.
//! - [`apps`]: apps and their settings, stored with sea-orm and cached in memory.
//! - [`hub`]: live state — connections, channels, presence members, signed-in users.
//! - [`ws`]: the `/app/{key}` WebSocket endpoint, one task per connection.
//! - [`listener`]: the TCP listener, with Nagle's algorithm off.
//! - [`http`]: routes, the signed Pusher HTTP API under `/apps/{id}`, and `/up`.
//!
//! The intake pipeline, one module per stage:
//!
//! 1. [`intake`]: `POST /api/events` and the event-log endpoints, with OpenAPI docs.
//! 2. [`eventlog`]: every accepted event, with the time of each stage and each attempt.
//! 3. [`pubsub`]: event metadata for operators, in-process or on Redis.
//! 4. [`queue`]: delivery jobs on apalis (SQLite, Postgres or Redis).
//! 5. [`delivery`]: the worker that signs and POSTs events to `/apps/{id}/events`.
//! 6. [`hub`] again: the WebSocket server fans the event out to subscribers.
//!
//! Also:
//! - [`webhooks`]: Pusher webhooks — batched, filtered, signed, queued, retried, recorded.
//! - [`transaction`]: the event log's transactions, which also hold an event's delivery job when
//!   the queue is in the same database (on SQLite, one command each).
//! - [`memory`]: returning freed memory to the system after many connections leave.
//! - [`server`]: wiring it together, the app refresher, and graceful shutdown.
//! - [`cli`]: the `comnestor` command line.
//! - [`testing`]: a server on port 0 for tests.
//!
//! The wire format and signing rules live in the `comnestor-protocol` crate, shared with the
//! SDK and the conformance suite.

pub mod apps;
pub mod batch;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod eventlog;
pub mod http;
pub mod hub;
pub mod intake;
pub mod listener;
pub mod memory;
pub mod periodic;
pub mod pubsub;
pub mod queue;
pub mod rate;
pub mod server;
pub mod sqlite;
pub mod testing;
pub mod transaction;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use apps::AppRegistry;
use hub::Hub;

/// What every request handler and connection shares.
pub struct Context {
    pub apps: AppRegistry,
    pub hub: Arc<Hub>,
    pub intake: Arc<intake::Intake>,
    pub webhooks: webhooks::Webhooks,
}
