//! Reader threads: subscribers that only listen, polled by a few threads instead of a task
//! each.
//!
//! A task per subscriber costs the generator, for every frame, a wake of the task and a poll
//! through the runtime's queues, and, whenever a worker ran out of work, a sleep in
//! `epoll_wait` and a wake-up out of it. In a fan-out that is much of what the generator spends
//! outside the kernel, and on two shared cores it is CPU the server does not get. A reader
//! thread asks for ready sockets without blocking, reads each and hands its messages to the
//! listener in place; when nothing was ready it sleeps for a fixed interval and then takes
//! whatever became ready since with one `epoll_wait`. The price is that a message can be read up
//! to that interval (plus the timer's slack) after it arrived. A reader that finds nothing for a
//! few turns in a row blocks in `epoll_wait` like a task would, so a quiet run, or one whose
//! messages come one at a time, does not pay for the polling.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::client::{Frames, Outgoing, Status};

/// Turns with nothing ready after which a reader blocks in `epoll_wait` (for at most
/// [`BLOCK`]) instead of sleeping: between bursts, and when messages come one at a time, it
/// then wakes for each as a task would, instead of every `idle`.
const QUIET_TURNS: u32 = 3;
const BLOCK: Duration = Duration::from_millis(5);

/// What a reader thread does with a connection's messages.
pub trait Listener: Send + 'static {
    /// One complete text message; replies go to `out`.
    fn on_text(&mut self, text: &[u8], out: &mut Outgoing);
    /// Called once after the messages of each read.
    fn after_read(&mut self);
}

/// A connection given back when the readers stop.
pub struct Parked<L> {
    pub stream: TcpStream,
    pub frames: Frames,
    pub listener: L,
    /// Closed by the server, with its close code if it sent one.
    pub closed: Option<Option<u16>>,
    pub error: Option<String>,
}

/// A connection on its way to a reader thread.
type Given<L> = Box<Parked<L>>;

/// Hands connections to the reader threads, in turn. Cheap to clone.
pub struct Handoff<L> {
    /// Emptied when the readers stop: a thread ends once its channel is empty and closed, so
    /// every connection given before the stop is in what the threads give back.
    senders: Arc<Mutex<Vec<Sender<Given<L>>>>>,
    next: Arc<AtomicUsize>,
    /// Connections taken, to check that every one comes back.
    given: Arc<AtomicUsize>,
}

impl<L> Clone for Handoff<L> {
    fn clone(&self) -> Self {
        Self {
            senders: self.senders.clone(),
            next: self.next.clone(),
            given: self.given.clone(),
        }
    }
}

impl<L: Listener> Handoff<L> {
    /// Gives a connection (non-blocking, as [`crate::client::Ws::into_parts`] leaves it) to
    /// the next thread; hands it back if the readers have stopped.
    pub fn give(&self, stream: TcpStream, frames: Frames, listener: L) -> Result<(), Given<L>> {
        let parked = Box::new(Parked {
            stream,
            frames,
            listener,
            closed: None,
            error: None,
        });
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if senders.is_empty() {
            return Err(parked);
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % senders.len();
        senders[turn].send(parked).map_err(|e| e.0)?;
        self.given.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The reader threads of one run.
pub struct Readers<L> {
    handoff: Handoff<L>,
    threads: Vec<JoinHandle<Vec<Parked<L>>>>,
}

impl<L: Listener> Readers<L> {
    /// Starts `threads` readers (at least one) that sleep `idle` whenever nothing is ready.
    pub fn spawn(threads: usize, idle: Duration) -> io::Result<Self> {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let poll = Poll::new()?;
            let (tx, rx) = channel();
            let handle = std::thread::Builder::new()
                .name(format!("bench-reader-{i}"))
                .spawn(move || run(poll, rx, idle))?;
            senders.push(tx);
            handles.push(handle);
        }
        Ok(Self {
            handoff: Handoff {
                senders: Arc::new(Mutex::new(senders)),
                next: Arc::new(AtomicUsize::new(0)),
                given: Arc::new(AtomicUsize::new(0)),
            },
            threads: handles,
        })
    }

    pub fn handoff(&self) -> Handoff<L> {
        self.handoff.clone()
    }

    /// Stops the threads and returns every connection they were given, or fails if a thread
    /// lost some (it panicked, or `epoll_wait` failed): their messages could not be counted.
    /// Blocks until each thread has finished its current turn.
    pub fn stop(self) -> anyhow::Result<Vec<Parked<L>>> {
        self.handoff
            .senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut parked = Vec::new();
        for thread in self.threads {
            if let Ok(connections) = thread.join() {
                parked.extend(connections);
            }
        }
        let given = self.handoff.given.load(Ordering::Relaxed);
        if parked.len() != given {
            anyhow::bail!(
                "reader threads lost {} of the {given} subscribers given to them",
                given - parked.len()
            );
        }
        Ok(parked)
    }
}

/// One thread's turns: take new connections, read every ready socket, sleep when none was.
fn run<L: Listener>(
    mut poll: Poll,
    incoming: Receiver<Given<L>>,
    idle: Duration,
) -> Vec<Parked<L>> {
    let mut conns: Vec<Conn<L>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    // Connections with replies the socket did not take at once.
    let mut unsent: Vec<usize> = Vec::new();
    let mut stopping = false;
    // Turns in a row that found nothing ready.
    let mut quiet = 0;
    while !stopping {
        let mut busy = false;
        loop {
            let parked = match incoming.try_recv() {
                Ok(parked) => parked,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    stopping = true;
                    break;
                }
            };
            let index = conns.len();
            let mut conn = Conn::new(*parked);
            if let Err(e) =
                poll.registry()
                    .register(&mut conn.stream, Token(index), Interest::READABLE)
            {
                conn.error = Some(format!("registering with the reader: {e}"));
            }
            // Frames read during setup, and whatever arrived before the registration.
            conn.handle();
            conn.service();
            if conn.has_unsent() {
                unsent.push(index);
            }
            conns.push(conn);
            busy = true;
        }
        let wait = if quiet >= QUIET_TURNS {
            BLOCK
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            // What the thread still holds is given back; anything given to it later is lost,
            // and `Readers::stop` says so.
            eprintln!("reader: epoll_wait failed: {e}");
            break;
        }
        for event in &events {
            let index = event.token().0;
            if let Some(conn) = conns.get_mut(index) {
                let waiting = conn.has_unsent();
                conn.service();
                if conn.has_unsent() && !waiting {
                    unsent.push(index);
                }
                busy = true;
            }
        }
        unsent.retain(|&index| {
            let conn = &mut conns[index];
            conn.write();
            conn.has_unsent()
        });
        if busy {
            quiet = 0;
        } else {
            quiet += 1;
            if quiet < QUIET_TURNS {
                std::thread::sleep(idle);
            }
        }
    }
    conns
        .into_iter()
        .map(|mut conn| {
            let _ = poll.registry().deregister(&mut conn.stream);
            Parked {
                stream: TcpStream::from(OwnedFd::from(conn.stream)),
                frames: conn.frames,
                listener: conn.listener,
                closed: conn.closed,
                error: conn.error,
            }
        })
        .collect()
}

/// A connection as a reader holds it.
struct Conn<L> {
    stream: mio::net::TcpStream,
    frames: Frames,
    listener: L,
    closed: Option<Option<u16>>,
    error: Option<String>,
}

impl<L: Listener> Conn<L> {
    fn new(parked: Parked<L>) -> Self {
        Self {
            stream: mio::net::TcpStream::from_std(parked.stream),
            frames: parked.frames,
            listener: parked.listener,
            closed: parked.closed,
            error: parked.error,
        }
    }

    /// Whether replies wait in `frames.out` for the socket to take them (the connection is
    /// then in its thread's list of those).
    fn has_unsent(&self) -> bool {
        !self.frames.out.is_empty()
    }

    fn is_open(&self) -> bool {
        self.closed.is_none() && self.error.is_none()
    }

    /// Reads until the socket has nothing more, handing each message to the listener, then
    /// writes the replies.
    fn service(&mut self) {
        while self.is_open() {
            let space = self.frames.space();
            let room = space.len();
            match (&self.stream).read(space) {
                Ok(0) => self.closed = Some(None),
                Ok(n) => {
                    self.frames.filled(n);
                    self.handle();
                    // A read that did not fill the buffer emptied the socket: with epoll
                    // edge-triggered, data arriving later is a new event.
                    if n < room {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.error = Some(e.to_string()),
            }
        }
        self.listener.after_read();
        self.write();
    }

    /// Hands every complete message in the buffer to the listener.
    fn handle(&mut self) {
        if !self.is_open() {
            return;
        }
        let listener = &mut self.listener;
        match self
            .frames
            .parse(&mut |text: &[u8], out: &mut Outgoing| listener.on_text(text, out))
        {
            Ok((Status::Open, _)) => {}
            Ok((Status::Closed(code), _)) => self.closed = Some(code),
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    /// Writes queued replies (pongs, the close frame answering the server's) as far as the
    /// socket takes them.
    fn write(&mut self) {
        let out = self.frames.out.bytes_mut();
        while !out.is_empty() {
            match (&self.stream).write(out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.error.is_none() && self.closed.is_none() {
                        self.error = Some(e.to_string());
                    }
                    out.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// Keeps what it was given.
    struct Collect {
        texts: Arc<Mutex<Vec<Vec<u8>>>>,
        reads: usize,
    }

    impl Listener for Collect {
        fn on_text(&mut self, text: &[u8], _: &mut Outgoing) {
            self.texts.lock().unwrap().push(text.to_vec());
        }

        fn after_read(&mut self) {
            self.reads += 1;
        }
    }

    /// Reads one masked frame the client sent: its opcode and unmasked payload.
    fn client_frame(server: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        server.read_exact(&mut head).unwrap();
        assert_eq!(head[1] & 0x80, 0x80, "client frames are masked");
        let mut mask = [0u8; 4];
        server.read_exact(&mut mask).unwrap();
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        server.read_exact(&mut payload).unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (head[0] & 0x0f, payload)
    }

    #[test]
    fn a_reader_hands_over_messages_answers_pings_and_the_servers_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.set_nonblocking(true).unwrap();

        let readers = Readers::spawn(1, Duration::from_micros(200)).unwrap();
        let texts = Arc::new(Mutex::new(Vec::new()));
        let collect = Collect {
            texts: texts.clone(),
            reads: 0,
        };
        // Written before the hand-over, as a message can arrive while a subscriber changes
        // hands; and one larger than the read buffer, which takes several reads.
        server.write_all(&[0x81, 5]).unwrap();
        server.write_all(b"early").unwrap();
        readers
            .handoff()
            .give(client, Frames::new(512), collect)
            .map_err(|_| "the reader took it")
            .unwrap();
        let large = vec![b'x'; 2000];
        server.write_all(&[0x81, 126, 0x07, 0xd0]).unwrap();
        server.write_all(&large).unwrap();
        server.write_all(&[0x89, 2, b'h', b'i']).unwrap();
        assert_eq!(client_frame(&mut server), (0xA, b"hi".to_vec()));
        server.write_all(&[0x88, 2, 0x03, 0xe8]).unwrap();
        assert_eq!(client_frame(&mut server), (0x8, vec![0x03, 0xe8]));

        let parked = readers.stop().unwrap();
        assert_eq!(parked.len(), 1);
        let parked = &parked[0];
        assert_eq!(parked.closed, Some(Some(1000)));
        assert_eq!(parked.error, None);
        assert!(parked.listener.reads >= 2);
        assert_eq!(*texts.lock().unwrap(), vec![b"early".to_vec(), large]);
    }

    #[test]
    fn stopped_readers_give_back_open_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let readers = Readers::spawn(2, Duration::from_micros(200)).unwrap();
        let handoff = readers.handoff();
        let collect = Collect {
            texts: Arc::default(),
            reads: 0,
        };
        handoff
            .give(client, Frames::new(512), collect)
            .map_err(|_| "the reader took it")
            .unwrap();
        let parked = readers.stop().unwrap();
        assert_eq!(parked.len(), 1);
        assert!(parked[0].closed.is_none() && parked[0].error.is_none());
        // A connection given after the stop comes straight back.
        let late = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let collect = Collect {
            texts: Arc::default(),
            reads: 0,
        };
        assert!(handoff.give(late, Frames::new(512), collect).is_err());
    }
}
