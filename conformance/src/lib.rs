//! A black-box conformance suite for Pusher-compatible servers.
//!
//! The suite talks to a server only over its public surfaces: the WebSocket protocol and the
//! signed HTTP API, plus a webhook receiver of its own. Its cases are written from the
//! protocol reference (`pusher-protocol.md`), so they hold for Comnestor, soketi, Reverb,
//! sockudo or any other server.
//!
//! - [`config`]: what to run against and which cases to run.
//! - [`cases`]: the registry; one module per area.
//! - `client` and `http`: a small WebSocket client and signed HTTP calls.
//! - `webhook`: the receiver that checks webhook headers and signatures.
//! - [`report`]: text, JSON and JUnit output.
//! - [`cli`]: the command line of the `comnestor-conformance` binary.

pub mod cases;
pub mod cli;
mod client;
pub mod config;
mod http;
pub mod report;
mod runner;
mod webhook;

pub use config::{Config, Node};
pub use report::{Report, Status};
pub use runner::run;
