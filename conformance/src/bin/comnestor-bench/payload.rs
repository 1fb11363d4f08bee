//! The event data the generator publishes, and finding it again in a received frame without
//! parsing the frame's JSON.
//!
//! The data is a plain string, `cnb[<channel seq>,<event seq>,<sent µs>]` padded with `x` to
//! the payload size. It needs no escaping, so it appears byte for byte in the frame whatever
//! envelope the server wraps around it, and every Pusher server relays a string untouched.

use std::sync::LazyLock;
use std::time::Instant;

const MARKER: &[u8] = b"cnb[";

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since this process first asked; the clock of every latency.
pub fn now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// What a bench event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Position of the event among those published to its channel, from 0.
    pub channel_seq: u64,
    /// Position among every event of the run, from 0.
    pub event_seq: u64,
    /// [`now_us`] when it was published.
    pub sent_us: u64,
}

/// The data string for `stamp`, padded to `size` bytes (longer when `size` is too small for the
/// stamp itself).
pub fn encode(stamp: Stamp, size: usize) -> String {
    let mut data = format!(
        "cnb[{},{},{}]",
        stamp.channel_seq, stamp.event_seq, stamp.sent_us
    );
    if data.len() < size {
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

/// Finds the stamp in a received frame, `None` for frames that are not bench events.
#[inline]
pub fn decode(frame: &[u8]) -> Option<Stamp> {
    let mut from = 0;
    while let Some(offset) = frame[from..].iter().position(|&b| b == b'c') {
        let at = from + offset;
        if frame[at..].starts_with(MARKER) {
            let rest = &frame[at + MARKER.len()..];
            let (channel_seq, rest) = number(rest, b',')?;
            let (event_seq, rest) = number(rest, b',')?;
            let (sent_us, _) = number(rest, b']')?;
            return Some(Stamp {
                channel_seq,
                event_seq,
                sent_us,
            });
        }
        from = at + 1;
    }
    None
}

fn number(bytes: &[u8], end: u8) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'0'..=b'9' => value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b if b == end && i > 0 => return Some((value, &bytes[i + 1..])),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_an_envelope() {
        let stamp = Stamp {
            channel_seq: 7,
            event_seq: 1234,
            sent_us: 99_000_001,
        };
        let data = encode(stamp, 100);
        assert_eq!(data.len(), 100);
        let frame = format!(r#"{{"event":"bench","channel":"bench-c","data":"{data}"}}"#);
        assert_eq!(decode(frame.as_bytes()), Some(stamp));
        let reordered = format!(r#"{{"channel":"c","data":"{data}","event":"bench"}}"#);
        assert_eq!(decode(reordered.as_bytes()), Some(stamp));
    }

    #[test]
    fn other_frames_have_no_stamp() {
        assert_eq!(decode(br#"{"event":"pusher:pong","data":"{}"}"#), None);
        assert_eq!(decode(b"cnb[1,2"), None);
        assert_eq!(decode(b"cnb[,1,2]"), None);
    }
}
