//! The Lua scripts that change shared state, each atomic on the Redis server.
//!
//! `redis::Script` sends `EVALSHA` and falls back to `EVAL` (which loads the script) the
//! first time a server does not know it. Each file documents its keys, arguments and reply.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("scripts/", $file))));
    };
}

script!(REGISTER, "register.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(REAP, "reap.lua");
script!(SUBSCRIBE, "subscribe.lua");
script!(UNSUBSCRIBE, "unsubscribe.lua");
script!(SIGNIN, "signin.lua");
script!(SIGNOUT, "signout.lua");
script!(CACHE, "cache.lua");
