//! Signed-in users and the watchlists that follow them.

use std::collections::HashMap;

use comnestor_protocol::{CloseCode, message};
use dashmap::DashMap;

use super::outbox::{ConnId, Frame, Outbox};

/// Signed-in connections by user id, and watchers by watched user id.
#[derive(Default)]
pub struct Users {
    signed_in: DashMap<String, HashMap<ConnId, Outbox>>,
    watchers: DashMap<String, HashMap<ConnId, Outbox>>,
    watching: DashMap<ConnId, Vec<String>>,
}

/// What a sign-in produced for the signing-in connection.
#[derive(Debug)]
pub struct SigninOutcome {
    /// The watchlist's initial `pusher_internal:watchlist_events` frame, when it has one.
    pub watchlist_frame: Option<Frame>,
}

impl Users {
    /// Registers the sign-in. When it is the user's first connection, its watchers learn it
    /// is online.
    pub fn signin(&self, outbox: &Outbox, user_id: &str, watchlist: &[String]) -> SigninOutcome {
        let first = {
            let mut conns = self.signed_in.entry(user_id.to_owned()).or_default();
            let first = conns.is_empty();
            conns.insert(outbox.id(), outbox.clone());
            first
        };
        if first {
            self.notify_watchers(user_id, true);
        }
        let watchlist_frame = (!watchlist.is_empty()).then(|| {
            for watched in watchlist {
                self.watchers
                    .entry(watched.clone())
                    .or_default()
                    .insert(outbox.id(), outbox.clone());
            }
            self.watching.insert(outbox.id(), watchlist.to_vec());
            let (online, offline): (Vec<&str>, Vec<&str>) = watchlist
                .iter()
                .map(String::as_str)
                .partition(|id| self.is_online(id));
            message::watchlist_events(&online, &offline).into()
        });
        SigninOutcome { watchlist_frame }
    }

    /// Forgets a connection's sign-in. When it was the user's last connection, its watchers
    /// learn it is offline.
    pub fn signout(&self, conn: ConnId, user_id: &str) {
        let last = self
            .signed_in
            .remove_if_mut(user_id, |_, conns| {
                conns.remove(&conn);
                conns.is_empty()
            })
            .is_some();
        if last {
            self.notify_watchers(user_id, false);
        }
    }

    /// Stops a connection's watching.
    pub fn unwatch(&self, conn: ConnId) {
        let Some((_, watched)) = self.watching.remove(&conn) else {
            return;
        };
        for user_id in watched {
            self.watchers.remove_if_mut(&user_id, |_, conns| {
                conns.remove(&conn);
                conns.is_empty()
            });
        }
    }

    fn is_online(&self, user_id: &str) -> bool {
        self.signed_in
            .get(user_id)
            .is_some_and(|conns| !conns.is_empty())
    }

    fn notify_watchers(&self, user_id: &str, online: bool) {
        let Some(watchers) = self.watchers.get(user_id) else {
            return;
        };
        let ids = [user_id];
        let frame: Frame = if online {
            message::watchlist_events(&ids, &[])
        } else {
            message::watchlist_events(&[], &ids)
        }
        .into();
        for outbox in watchers.values() {
            outbox.send(frame.clone());
        }
    }

    /// Asks every connection signed in as `user_id` to close with 4009.
    pub fn terminate(&self, user_id: &str) -> usize {
        let Some(conns) = self.signed_in.get(user_id) else {
            return 0;
        };
        for outbox in conns.values() {
            outbox.close(CloseCode::Unauthorized);
        }
        conns.len()
    }
}
