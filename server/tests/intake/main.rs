//! The intake pipeline through its real surface: `POST /api/events` on a server listening on
//! a port, through the event log and the delivery queue, to a WebSocket subscriber.
//!
//! One test binary, since every binary links the whole server. The Postgres, Redis and MySQL
//! tests need `COMNESTOR_TEST_POSTGRES_URL`, `COMNESTOR_TEST_REDIS_URL` and
//! `COMNESTOR_TEST_MYSQL_URL` (`.ci/services.sh` starts all three) and fail, rather than
//! skip, when they are missing.

mod crash;
mod delivery;
mod eventlog;
mod openapi;
mod publish;
mod services;
mod support;
