//! One client connection: bounded line framing with leftover bytes kept for pipelining, exact
//! payload reads into pool buffers, replies, and the `-66` close notice.
//!
//! Design (STYLE.md 4): a command line is first found whole in the receive buffer, within
//! `MAX_LINE_BYTES`, then parsed. Whatever follows it — the next pipelined command, or the
//! payload of a STORE that the client sent before our `1 \n` — stays in `rbuf` and is consumed
//! before the socket is read again.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ibp_client::proto::{find_line, reply, ErrorCode, MAX_LINE_BYTES};
use ibp_io::net::TcpStream;
use ibp_io::time::timeout;
use ibp_io::{FixedBuf, IoBuf, IoBufMut};

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
}

/// A connection being served.
pub struct Conn {
    pub stream: TcpStream,
    /// Received bytes; `rbuf[rpos..]` is not yet consumed.
    rbuf: Vec<u8>,
    rpos: usize,
    /// The address the client connected to (capabilities name this host).
    pub local: SocketAddr,
}

impl Conn {
    pub fn new(stream: TcpStream, leftover: Vec<u8>) -> io::Result<Conn> {
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, rbuf: leftover, rpos: 0, local })
    }

    /// Unconsumed received bytes, handed over with the socket when a connection moves to
    /// another core.
    pub fn into_parts(mut self) -> (TcpStream, Vec<u8>) {
        self.rbuf.drain(..self.rpos);
        (self.stream, self.rbuf)
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

    fn consume(&mut self, n: usize) {
        self.rpos += n;
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Reads more bytes from the socket into `rbuf`. Ok(0) = peer closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.reserve(READ_CHUNK);
        let (r, buf) = self.stream.read(buf).await;
        self.rbuf = buf;
        r
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
            match ibp_io::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return Err(LineError::Idle),
                Ok(Ok(0)) if had_partial => {
                    return Err(LineError::Io(io::ErrorKind::UnexpectedEof.into()))
                }
                Ok(Ok(0)) => return Err(LineError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(LineError::Io(e)),
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
        self.stream.write_all_vec(bytes).await
    }

    /// Sends `buf[range]`, waiting at most `limit` for it to drain.
    pub async fn send_buf<B: IoBuf>(
        &self,
        buf: B,
        range: std::ops::Range<usize>,
        limit: Duration,
    ) -> io::Result<B> {
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
