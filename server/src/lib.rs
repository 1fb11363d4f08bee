//! Comnestor Realtime: a Pusher-compatible realtime server.
//!
//! How the crate is laid out:
//!
//! - [`config`]: settings from a TOML file and `COMNESTOR_*` variables.
//! - [`apps`]: apps and their settings, stored with sea-orm and cached in memory.
//! - [`hub`]: live state — connections, channels, presence members, signed-in users.
//! - [`ws`]: the `/app/{key}` WebSocket endpoint, one task per connection.
//! - [`http`]: routes, the signed Pusher HTTP API under `/apps/{id}`, and `/up`.
//! - [`server`]: wiring it together, the app refresher, and graceful shutdown.
//! - [`cli`]: the `comnestor` command line.
//! - [`testing`]: a server on port 0 for tests.
//!
//! The wire format and signing rules live in the `comnestor-protocol` crate, shared with the
//! SDK and the conformance suite.

pub mod apps;
pub mod cli;
pub mod config;
pub mod http;
pub mod hub;
pub mod server;
pub mod testing;
pub mod ws;

use std::sync::Arc;

use apps::AppRegistry;
use hub::Hub;

/// What every request handler and connection shares.
pub struct Context {
    pub apps: AppRegistry,
    pub hub: Arc<Hub>,
}
