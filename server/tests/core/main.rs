//! Integration tests of the server core: the Pusher protocol 7 WebSocket server and HTTP API,
//! each against a real server on `127.0.0.1:0` and over real sockets.
//!
//! One binary with a module per area, because every test binary links the whole server.
//!
//! Run with `cargo test -p comnestor-server --test core`.

mod channels;
mod client_events;
mod descriptors;
mod fanout;
mod http_api;
mod lifecycle;
mod presence;
mod support;
mod users;
mod ws_connection;
