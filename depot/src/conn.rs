//! One client connection: bounded line framing with leftover bytes kept for pipelining, exact
//! payload reads into pool buffers, replies, and the `-66` close notice.
//!
//! Design (STYLE.md 4): a command line is first found whole in the receive buffer, within
//! `MAX_LINE_BYTES`, then parsed. Whatever follows it — the next pipelined command, or the
//! payload of a STORE that the client sent before our `1 \n` — stays in `rbuf` and is consumed
//! before the socket is read again.
//!
//! Replies go out in command order. A pipelined STORE/WRITE may leave its final reply to a
//! task (the *reply lane*, [`Conn::defer`]) that waits for its last disk writes and its commit
//! while the connection already receives the next write's payload; every later send waits for
//! the lane first, so the wire order never changes.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ibp_client::proto::{find_line, reply, ErrorCode, MAX_LINE_BYTES};
use ibp_io::net::TcpStream;
use ibp_io::sync::Notify;
use ibp_io::time::timeout;
use ibp_io::{FixedBuf, IoBuf, IoBufMut, JoinHandle};

use crate::cmd::Next;

/// Lingering close: how long, and how many bytes, a closing connection keeps draining.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_MAX_BYTES: usize = 64 << 20;
const LINGER_CHUNK: usize = 64 * 1024;

/// Bytes read from the socket at a time while looking for a command line.
const READ_CHUNK: usize = 16 * 1024;

/// Why no command line came.
#[derive(Debug)]
pub enum LineError {
    /// The peer closed cleanly between commands.
    Closed,
    /// Nothing (or no whole line) arrived within the idle timeout.
    Idle,
    /// The line is longer than the limit.
    TooLong,
    Io(io::Error),
    /// A deferred reply ended the connection ([`Conn::lane_ended`] says how) while it
    /// waited for the next line.
    LaneEnded,
}

/// A connection being served.
pub struct Conn {
    /// Shared with the reply lane's task.
    stream: Rc<TcpStream>,
    /// Received bytes; `rbuf[rpos..]` is not yet consumed.
    rbuf: Vec<u8>,
    rpos: usize,
    /// The address the client connected to (capabilities name this host).
    pub local: SocketAddr,
    /// Replies of earlier commands still being produced; they go out before anything else.
    lane: RefCell<Option<Lane>>,
    /// How the lane ended when it did not end in step ([`Next::Close`] or [`Next::Drop`]):
    /// the connection must end too.
    lane_end: Cell<Next>,
}

/// The task sending the last deferred reply (it waits for the lanes before it first).
struct Lane {
    task: JoinHandle,
    end: Rc<Cell<Next>>,
    /// Passed once its reply's side effects are ordered (see [`Turn`]).
    step: Rc<Step>,
}

#[derive(Default)]
struct Step {
    ordered: Cell<bool>,
    notify: Notify,
}

/// Given to a deferred reply: keeps the order of side effects between consecutive deferred
/// replies of one connection while letting them overlap otherwise. A pipelined STORE
/// appends its commit record only after the previous one appended its own (the journal then
/// never holds a later size without the earlier write's CRCs), yet both wait for the same
/// group-committed sync.
pub struct Turn {
    prev: Option<Rc<Step>>,
    mine: Rc<Step>,
}

impl Turn {
    /// Waits until the previous deferred reply has passed its ordering point.
    pub async fn after_previous(&self) {
        let Some(p) = &self.prev else { return };
        while !p.ordered.get() {
            let wait = p.notify.notified();
            if p.ordered.get() {
                break;
            }
            wait.await;
        }
    }

    /// This reply's ordering point: the next deferred reply may go on.
    pub fn ordered(&self) {
        if !self.mine.ordered.replace(true) {
            self.mine.notify.notify_waiters();
        }
    }
}

impl Drop for Turn {
    /// A reply that ends (or fails) without saying so never holds up the next one.
    fn drop(&mut self) {
        self.ordered();
    }
}

/// The error a send answers once an earlier deferred reply ended the connection.
fn lane_ended() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "an earlier reply ended the connection")
}

impl Conn {
    pub fn new(stream: TcpStream, leftover: Vec<u8>) -> io::Result<Conn> {
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: Rc::new(stream),
            rbuf: leftover,
            rpos: 0,
            local,
            lane: RefCell::new(None),
            lane_end: Cell::new(Next::Continue),
        })
    }

    /// Unconsumed received bytes, handed over with the socket when a connection moves to
    /// another core. The reply lane must be flushed first ([`Conn::flush_lane`]).
    pub fn into_parts(mut self) -> io::Result<(TcpStream, Vec<u8>)> {
        self.rbuf.drain(..self.rpos);
        debug_assert!(self.lane.borrow().is_none(), "hand-off with replies still deferred");
        match Rc::try_unwrap(self.stream) {
            Ok(stream) => Ok((stream, self.rbuf)),
            Err(_) => Err(io::Error::other("the socket is still shared with a reply")),
        }
    }

    /// Leaves a command's final reply to `reply`, which runs at once as its own task (in
    /// step with the previous deferred reply through its [`Turn`]); its bytes (if any) go out
    /// after every reply deferred before it, and its [`Next`] says whether the connection
    /// goes on. Anything sent later waits for it.
    pub fn defer<F, Fut>(&self, reply: F)
    where
        F: FnOnce(Turn) -> Fut,
        Fut: Future<Output = (Vec<u8>, Next)> + 'static,
    {
        let prev = self.lane.borrow_mut().take();
        let step = Rc::new(Step::default());
        let turn = Turn { prev: prev.as_ref().map(|l| l.step.clone()), mine: step.clone() };
        self.queue(prev, reply(turn), step);
    }

    /// Queues `reply` after `prev`; `step` is what the next deferred reply's [`Turn`] waits on.
    fn queue(
        &self,
        prev: Option<Lane>,
        reply: impl Future<Output = (Vec<u8>, Next)> + 'static,
        step: Rc<Step>,
    ) {
        let stream = self.stream.clone();
        let end = Rc::new(Cell::new(Next::Continue));
        let out = end.clone();
        let task = ibp_io::spawn(async move {
            // The reply's own work runs first, even after an earlier reply ended the
            // connection: what it received must be committed (or settled) either way.
            let (bytes, next) = reply.await;
            let before = match prev {
                Some(l) => {
                    l.task.await;
                    l.end.get()
                }
                None => Next::Continue,
            };
            let next = if before != Next::Continue {
                before
            } else if bytes.is_empty() {
                next
            } else if stream.write_all_vec(bytes).await.is_err() {
                Next::Drop
            } else {
                next
            };
            out.set(next);
        });
        *self.lane.borrow_mut() = Some(Lane { task, end, step });
    }

    /// Sends `bytes` after every deferred reply, without waiting for it here when replies
    /// are still deferred (a STORE's `1 \n` while the previous STORE commits).
    pub async fn send_ordered(&self, bytes: Vec<u8>) -> io::Result<()> {
        let prev = self.lane.borrow_mut().take();
        if let Some(prev) = prev {
            // Not a step of its own: the next deferred reply keeps in step with `prev`.
            let step = prev.step.clone();
            self.queue(Some(prev), std::future::ready((bytes, Next::Continue)), step);
            Ok(())
        } else {
            self.send(bytes).await
        }
    }

    /// Waits until every deferred reply has gone out; returns how the connection goes on.
    pub async fn flush_lane(&self) -> Next {
        let lane = self.lane.borrow_mut().take();
        if let Some(l) = lane {
            l.task.await;
            if l.end.get() != Next::Continue {
                self.lane_end.set(l.end.get());
            }
        }
        self.lane_end.get()
    }

    /// How a deferred reply that already finished ended the connection, without waiting.
    pub fn lane_ended(&self) -> Next {
        let done = self.lane.borrow().as_ref().is_some_and(|l| l.task.is_finished());
        if done {
            let l = self.lane.borrow_mut().take();
            if let Some(l) = l.filter(|l| l.end.get() != Next::Continue) {
                self.lane_end.set(l.end.get());
            }
        }
        self.lane_end.get()
    }

    /// Before a send: flushes the lane, and refuses if it ended the connection.
    async fn in_order(&self) -> io::Result<()> {
        match self.flush_lane().await {
            Next::Continue => Ok(()),
            _ => Err(lane_ended()),
        }
    }

    /// Puts a line back in front of the unconsumed bytes (before a hand-off, so the owning
    /// core parses it again).
    pub fn unread(&mut self, line: &[u8]) {
        let mut v = Vec::with_capacity(line.len() + self.rbuf.len() - self.rpos);
        v.extend_from_slice(line);
        v.extend_from_slice(&self.rbuf[self.rpos..]);
        self.rbuf = v;
        self.rpos = 0;
    }

    fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Received bytes not consumed yet (a pipelined payload already here, for instance).
    pub fn buffered_len(&self) -> usize {
        self.rbuf.len() - self.rpos
    }

    fn consume(&mut self, n: usize) {
        self.rpos += n;
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// `rbuf` without its consumed bytes and with room for one more read, taken out for a
    /// socket read (which puts it back).
    fn take_for_read(&mut self) -> Vec<u8> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.reserve(READ_CHUNK);
        buf
    }

    /// Reads more bytes from the socket into `rbuf`. Ok(0) = peer closed.
    async fn fill(&mut self) -> io::Result<usize> {
        let buf = self.take_for_read();
        let (r, buf) = self.stream.read(buf).await;
        self.rbuf = buf;
        r
    }

    /// As [`Conn::fill`], but gives up (`None`) as soon as a deferred reply ends the
    /// connection, so a failed commit closes it at once instead of at the idle timeout.
    async fn fill_or_lane_end(&mut self) -> Option<io::Result<usize>> {
        let lane = std::mem::take(&mut *self.lane.borrow_mut());
        let Some(mut lane) = lane else { return Some(self.fill().await) };
        // `fill` needs `&mut self` while the lane is polled: move the buffer out and read
        // into it directly, as `fill` does.
        let buf = self.take_for_read();
        let lane_end = &self.lane_end;
        let mut lane_done = false;
        let mut ended = std::future::poll_fn(|cx| {
            if lane_done {
                return std::task::Poll::Pending;
            }
            match std::pin::Pin::new(&mut lane.task).poll(cx) {
                std::task::Poll::Ready(()) => {
                    lane_done = true;
                    if lane.end.get() == Next::Continue {
                        std::task::Poll::Pending
                    } else {
                        lane_end.set(lane.end.get());
                        std::task::Poll::Ready(())
                    }
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        });
        let stream = self.stream.clone();
        let mut read = std::pin::pin!(stream.read(buf));
        let out = std::future::poll_fn(|cx| {
            if std::pin::Pin::new(&mut ended).poll(cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            read.as_mut().poll(cx).map(Some)
        })
        .await;
        let result = match out {
            Some((r, buf)) => {
                self.rbuf = buf;
                Some(r)
            }
            // The read stays in flight (its buffer with the kernel until it completes); the
            // connection is ending, so its bytes are not needed.
            None => None,
        };
        if !lane_done {
            *self.lane.borrow_mut() = Some(lane);
        }
        result
    }

    /// The next command line (without its `\n`), waiting at most `idle` for all of it: a
    /// client that trickles a line byte by byte (slowloris) is cut off at the same deadline.
    pub async fn read_line(&mut self, idle: Duration) -> Result<Vec<u8>, LineError> {
        let deadline = std::time::Instant::now() + idle;
        loop {
            match find_line(self.buffered(), MAX_LINE_BYTES) {
                Ok(Some(n)) => {
                    let line = self.buffered()[..n].to_vec();
                    self.consume(n);
                    return Ok(line);
                }
                Ok(None) => {}
                Err(_) => return Err(LineError::TooLong),
            }
            let had_partial = !self.buffered().is_empty();
            match ibp_io::time::timeout_at(deadline, self.fill_or_lane_end()).await {
                Err(_) => return Err(LineError::Idle),
                Ok(None) => return Err(LineError::LaneEnded),
                Ok(Some(Ok(0))) if had_partial => {
                    return Err(LineError::Io(io::ErrorKind::UnexpectedEof.into()))
                }
                Ok(Some(Ok(0))) => return Err(LineError::Closed),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(LineError::Io(e)),
            }
        }
    }

    /// Reads one more line of a two-line command (ST_CHANGE), with the same bounds.
    pub async fn read_second_line(&mut self, wait: Duration) -> Result<Vec<u8>, LineError> {
        self.read_line(wait).await
    }

    /// Receives exactly `n` payload bytes into `buf[at..at + n]`, taking pipelined bytes
    /// first. Each socket read waits at most `inactivity`. On error the buffer is dropped (a
    /// timed-out read's buffer stays with the kernel until its completion) and the caller
    /// closes the connection.
    pub async fn recv_exact(
        &mut self,
        mut buf: FixedBuf,
        at: usize,
        n: usize,
        inactivity: Duration,
    ) -> io::Result<FixedBuf> {
        debug_assert!(at + n <= buf.capacity());
        let from_buffer = n.min(self.buffered().len());
        buf.as_full_mut()[at..at + from_buffer].copy_from_slice(&self.buffered()[..from_buffer]);
        self.consume(from_buffer);
        let mut window = Window { buf, init: at + from_buffer, end: at + n };
        while window.init < window.end {
            match timeout(inactivity, self.stream.read(window)).await {
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                Ok((Ok(0), _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok((Ok(_), w)) => window = w,
                Ok((Err(e), _)) => return Err(e),
            }
        }
        Ok(window.buf)
    }

    /// Receives exactly `dst.len()` payload bytes straight into `dst` (a RAM region), taking
    /// pipelined bytes first. Each socket read waits at most `inactivity`; after an error
    /// nothing writes into `dst` any more (see `TcpStream::recv_slice`).
    pub async fn recv_exact_slice(
        &mut self,
        dst: &mut [u8],
        inactivity: Duration,
    ) -> io::Result<()> {
        let from_buffer = dst.len().min(self.buffered().len());
        dst[..from_buffer].copy_from_slice(&self.buffered()[..from_buffer]);
        self.consume(from_buffer);
        let mut at = from_buffer;
        while at < dst.len() {
            match timeout(inactivity, self.stream.recv_slice(&mut dst[at..])).await {
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(n)) => at += n,
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends `data` (a RAM region's bytes), waiting at most `limit` for it to drain.
    pub async fn send_slice(&self, data: &[u8], limit: Duration) -> io::Result<()> {
        self.in_order().await?;
        match timeout(limit, self.stream.send_slice(data)).await {
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
            Ok(r) => r,
        }
    }

    /// Receives exactly `n` bytes into a fresh vector (a hex digest between network blocks,
    /// or the rest of a network block read ahead). `n` is bounded by the caller (at most one
    /// transfer buffer); each socket read waits at most `inactivity`.
    pub async fn recv_vec(&mut self, n: usize, inactivity: Duration) -> io::Result<Vec<u8>> {
        loop {
            if self.buffered().len() >= n {
                let v = self.buffered()[..n].to_vec();
                self.consume(n);
                return Ok(v);
            }
            match timeout(inactivity, self.fill()).await {
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Sends a small reply.
    pub async fn send(&self, bytes: Vec<u8>) -> io::Result<()> {
        self.in_order().await?;
        self.stream.write_all_vec(bytes).await
    }

    /// Sends `buf[range]`, waiting at most `limit` for it to drain.
    pub async fn send_buf<B: IoBuf>(
        &self,
        buf: B,
        range: std::ops::Range<usize>,
        limit: Duration,
    ) -> io::Result<B> {
        self.in_order().await?;
        match timeout(limit, self.stream.write_all(buf, range)).await {
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
            Ok((r, b)) => r.map(|()| b),
        }
    }

    /// Sends an error reply.
    pub async fn send_error(&self, code: ErrorCode) -> io::Result<()> {
        let mut out = Vec::with_capacity(8);
        reply::error(&mut out, code);
        self.send(out).await
    }

    /// ACCRE's goodbye: `-66 <backoff seconds>\n`, then the socket closes (on drop).
    ///
    /// Then a bounded lingering close: bytes the client already pipelined (the payload of a
    /// refused STORE) are read and dropped for a moment, so the close is a FIN after our
    /// replies rather than a reset, which would let the client's kernel discard the error
    /// reply before the client reads it.
    pub async fn close_with_notice(self, backoff_s: f64) {
        if self.flush_lane().await == Next::Drop {
            return;
        }
        let mut out = Vec::with_capacity(16);
        reply::close_notice(&mut out, backoff_s);
        let _ = timeout(Duration::from_secs(2), self.stream.write_all_vec(out)).await;
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let drain = async {
            let mut drained = 0usize;
            let mut buf = Vec::with_capacity(LINGER_CHUNK);
            while drained < LINGER_MAX_BYTES {
                buf.clear();
                let (r, b) = self.stream.read(buf).await;
                buf = b;
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = timeout(LINGER, drain).await;
    }
}

/// A view of `buf[..end]` for socket reads: the kernel fills `[init, end)` and nothing
/// past `end`, so bytes of the next pipelined command never land in a data buffer.
struct Window {
    buf: FixedBuf,
    init: usize,
    end: usize,
}

// SAFETY: the memory is the FixedBuf's, which stays put while it is owned by the operation;
// bytes_total (end) ≤ the buffer's capacity, and init ≤ end.
unsafe impl IoBuf for Window {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        self.end
    }
    fn fixed_index(&self) -> Option<u16> {
        self.buf.index()
    }
}

// SAFETY: as above; the pointer is the same memory.
unsafe impl IoBufMut for Window {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.init = n;
    }
}

#[cfg(test)]
mod tests {
    //! The reply lane on a real loopback socket: order on the wire, and a deferred reply
    //! that ends the connection wakes a connection waiting for its next line.

    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::time::Duration;

    use ibp_io::{Runtime, RuntimeConfig};

    use super::*;

    /// A served connection and the client's end of it.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (served, _) = l.accept().expect("accept");
        (served, client)
    }

    fn runtime() -> Runtime {
        Runtime::new(RuntimeConfig { buffer_count: 4, ..Default::default() }).expect("runtime")
    }

    #[test]
    fn deferred_replies_go_out_in_order_even_when_a_later_one_is_ready_first() {
        let (served, client) = pair();
        let (order_tx, order_rx) = std::sync::mpsc::channel();
        runtime().block_on(async move {
            let conn = Conn::new(TcpStream::from_std(served), Vec::new()).expect("conn");
            let tx = order_tx.clone();
            conn.defer(move |turn| async move {
                // Slow: the next reply is ready long before this one.
                ibp_io::time::sleep(Duration::from_millis(50)).await;
                turn.ordered();
                tx.send("first done").expect("channel");
                (b"1 first\n".to_vec(), Next::Continue)
            });
            conn.send_ordered(b"1 ack\n".to_vec()).await.expect("queued");
            let tx = order_tx.clone();
            conn.defer(move |turn| async move {
                turn.after_previous().await;
                tx.send("second after first").expect("channel");
                (b"1 second\n".to_vec(), Next::Continue)
            });
            conn.send(b"1 last\n".to_vec()).await.expect("after the lane");
        });
        let lines: Vec<String> =
            BufReader::new(client).lines().take(4).map(Result::unwrap).collect();
        assert_eq!(lines, ["1 first", "1 ack", "1 second", "1 last"]);
        let seen: Vec<_> = order_rx.try_iter().collect();
        assert_eq!(seen, ["first done", "second after first"], "the turn kept their order");
    }

    #[test]
    fn a_deferred_reply_that_ends_the_connection_wakes_the_line_reader() {
        let (served, mut client) = pair();
        let ended = runtime().block_on(async move {
            let mut conn = Conn::new(TcpStream::from_std(served), Vec::new()).expect("conn");
            conn.defer(|_turn| async {
                ibp_io::time::sleep(Duration::from_millis(20)).await;
                (b"-16\n".to_vec(), Next::Close)
            });
            // The client sends nothing more: only the lane can end this wait.
            let r = conn.read_line(Duration::from_secs(30)).await;
            assert!(matches!(r, Err(LineError::LaneEnded)), "{r:?}");
            let ended = conn.lane_ended();
            assert!(conn.send(b"1 never\n".to_vec()).await.is_err(), "nothing goes out after it");
            ended
        });
        assert_eq!(ended, Next::Close);
        client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut line = String::new();
        BufReader::new(&mut client).read_line(&mut line).expect("reply");
        assert_eq!(line, "-16\n");
    }
}
