//! Signed-in users and the watchlists that follow them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use comnestor_protocol::{CloseCode, message};
use dashmap::DashMap;

use super::outbox::{ConnId, Frame, Outbox};

/// Signed-in connections by user id, and watchers by watched user id.
#[derive(Default)]
pub struct Users {
    signed_in: DashMap<String, HashMap<ConnId, Outbox>>,
    watchers: DashMap<String, Watched>,
    watching: DashMap<ConnId, Vec<String>>,
}

/// The connections watching one user.
#[derive(Default)]
struct Watched {
    /// In a cluster, the sequence number of the last online/offline change applied, so that
    /// changes announced by two nodes are applied in Redis's order.
    last_seq: u64,
    by_conn: HashMap<ConnId, Watcher>,
}

struct Watcher {
    outbox: Outbox,
    /// `None` on a single node. In a cluster, shared by every user one connection watches.
    gate: Option<Arc<Mutex<WatchGate>>>,
}

/// Holds a cluster watcher's frames until its initial watchlist frame is sent.
#[derive(Default)]
pub struct WatchGate {
    /// The sequence number of the sign-in's snapshot; `None` while Redis has not answered.
    snapshot: Option<u64>,
    held: Vec<(Frame, u64)>,
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
        if self.add(outbox, user_id) {
            self.notify_watchers(user_id, true, None);
        }
        let watchlist_frame = (!watchlist.is_empty()).then(|| {
            self.watch(outbox, watchlist, None);
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
        if self.remove(conn, user_id) {
            self.notify_watchers(user_id, false, None);
        }
    }

    /// Records a signed-in connection on this node; returns whether it is the user's first
    /// one here.
    pub fn add(&self, outbox: &Outbox, user_id: &str) -> bool {
        let mut conns = self.signed_in.entry(user_id.to_owned()).or_default();
        let first = conns.is_empty();
        conns.insert(outbox.id(), outbox.clone());
        first
    }

    /// Forgets a signed-in connection on this node; returns whether it was the user's last
    /// one here.
    pub fn remove(&self, conn: ConnId, user_id: &str) -> bool {
        self.signed_in
            .remove_if_mut(user_id, |_, conns| {
                conns.remove(&conn);
                conns.is_empty()
            })
            .is_some()
    }

    /// Makes a connection a watcher of `watchlist`. With a gate (in a cluster) its frames
    /// are held until [`Users::open_gate`].
    pub fn watch(
        &self,
        outbox: &Outbox,
        watchlist: &[String],
        gate: Option<Arc<Mutex<WatchGate>>>,
    ) {
        for watched in watchlist {
            let watcher = Watcher {
                outbox: outbox.clone(),
                gate: gate.clone(),
            };
            let mut entry = self.watchers.entry(watched.clone()).or_default();
            entry.by_conn.insert(outbox.id(), watcher);
        }
        self.watching.insert(outbox.id(), watchlist.to_vec());
    }

    /// Sends a cluster watcher `first`, then the frames held for it that are newer than
    /// `snapshot`; later frames then flow directly.
    pub fn open_gate(gate: &Mutex<WatchGate>, outbox: &Outbox, first: Vec<Frame>, snapshot: u64) {
        let mut gate = gate.lock().unwrap_or_else(|e| e.into_inner());
        for frame in first {
            outbox.send(frame);
        }
        for (frame, seq) in gate.held.drain(..) {
            if seq > snapshot {
                outbox.send(frame);
            }
        }
        gate.snapshot = Some(snapshot);
    }

    /// Stops a connection's watching.
    pub fn unwatch(&self, conn: ConnId) {
        let Some((_, watched)) = self.watching.remove(&conn) else {
            return;
        };
        for user_id in watched {
            self.watchers.remove_if_mut(&user_id, |_, watched| {
                watched.by_conn.remove(&conn);
                watched.by_conn.is_empty()
            });
        }
    }

    fn is_online(&self, user_id: &str) -> bool {
        self.signed_in
            .get(user_id)
            .is_some_and(|conns| !conns.is_empty())
    }

    /// Tells the watchers of `user_id` it went online or offline. In a cluster, `seq` is the
    /// change's sequence number and a change older than one already applied is dropped.
    pub fn notify_watchers(&self, user_id: &str, online: bool, seq: Option<u64>) {
        let Some(mut watched) = self.watchers.get_mut(user_id) else {
            return;
        };
        if let Some(seq) = seq {
            if seq <= watched.last_seq {
                return;
            }
            watched.last_seq = seq;
        }
        let ids = [user_id];
        let frame: Frame = if online {
            message::watchlist_events(&ids, &[])
        } else {
            message::watchlist_events(&[], &ids)
        }
        .into();
        for watcher in watched.by_conn.values() {
            watcher.offer(&frame, seq);
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

impl Watcher {
    fn offer(&self, frame: &Frame, seq: Option<u64>) {
        let Some(gate) = &self.gate else {
            return self.outbox.send(frame.clone());
        };
        let mut gate = gate.lock().unwrap_or_else(|e| e.into_inner());
        let seq = seq.unwrap_or(u64::MAX);
        match gate.snapshot {
            None => gate.held.push((frame.clone(), seq)),
            Some(snapshot) if seq > snapshot => self.outbox.send(frame.clone()),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_watcher_gets_its_initial_frame_before_changes_held_for_it() {
        let users = Users::default();
        let (outbox, mut rx) = Outbox::new(ConnId(1), "1.1".to_owned());
        let gate = Arc::new(Mutex::new(WatchGate::default()));
        users.watch(&outbox, &["friend".to_owned()], Some(gate.clone()));
        users.notify_watchers("friend", true, Some(4));
        users.notify_watchers("friend", false, Some(7));
        assert!(rx.try_recv().is_none(), "held until the sign-in completes");

        Users::open_gate(&gate, &outbox, vec![Frame::from("initial")], 5);
        assert_eq!(rx.try_recv().unwrap().as_str(), "initial");
        let held = rx.try_recv().unwrap();
        assert!(held.contains("offline"), "{held}");
        assert!(
            rx.try_recv().is_none(),
            "the change at 4 was in the snapshot"
        );

        users.notify_watchers("friend", true, Some(6));
        assert!(rx.try_recv().is_none(), "older than the change at 7");
        users.notify_watchers("friend", true, Some(8));
        assert!(rx.try_recv().unwrap().contains("online"));
    }
}
