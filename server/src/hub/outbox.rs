//! The sending half of a connection, shared with every channel it joins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use comnestor_protocol::CloseCode;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded frame. Cloning shares the bytes, so a broadcast is serialized once for every
/// recipient.
pub type Frame = Utf8Bytes;

/// How many frames may wait for one connection. A client that falls this far behind is
/// disconnected with 4100 rather than allowed to grow the server's memory.
pub const OUTBOX_CAPACITY: usize = 1024;

/// Identifies a connection inside this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A handle that queues frames for one connection and can ask it to close.
#[derive(Clone)]
pub struct Outbox {
    id: ConnId,
    socket_id: Arc<str>,
    tx: mpsc::Sender<Frame>,
    control: Arc<Control>,
}

/// What the connection task watches besides its frames: a requested close.
pub struct Control {
    close: AtomicU16,
    notify: Notify,
}

impl Control {
    /// The close code requested, if any.
    pub fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.close.load(Ordering::Acquire))
    }

    /// Waits until a close is requested. Cancel safe.
    pub async fn wait(&self) -> CloseCode {
        loop {
            let notified = self.notify.notified();
            if let Some(code) = self.requested() {
                return code;
            }
            notified.await;
        }
    }
}

impl Outbox {
    /// Creates the handle and the receiving end the connection task drains.
    pub fn new(id: ConnId, socket_id: String) -> (Self, mpsc::Receiver<Frame>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let control = Arc::new(Control {
            close: AtomicU16::new(0),
            notify: Notify::new(),
        });
        let outbox = Self {
            id,
            socket_id: socket_id.into(),
            tx,
            control: control.clone(),
        };
        (outbox, rx, control)
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    pub fn socket_id(&self) -> &str {
        &self.socket_id
    }

    /// Queues a frame without waiting. A full outbox closes the connection with 4100.
    pub fn send(&self, frame: Frame) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            tracing::debug!(socket_id = %self.socket_id, "outbox full, disconnecting slow client");
            self.close(CloseCode::OverCapacity);
        }
    }

    /// Asks the connection to send `code` and close. The first request wins.
    pub fn close(&self, code: CloseCode) {
        let first = self.control.close.compare_exchange(
            0,
            code.code(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if first.is_ok() {
            self.control.notify.notify_one();
        }
    }
}
