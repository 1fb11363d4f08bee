//! The SDK against a real Comnestor server started by each test, on loopback.
//!
//! One test binary: the server is linked once. Tests wait for conditions with generous
//! timeouts, never for fixed delays.

mod encrypted;
mod errors;
mod presence;
mod protocol;
mod publish;
mod reconnect;
mod subscribe;
mod support;
mod users;
