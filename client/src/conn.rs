//! One TCP connection to a depot: a bounded receive buffer, line framing with the codec's
//! [`find_line`], raw data reads, and a deadline that every blocking call honours.
//!
//! Leftover bytes stay buffered between replies, so requests can be pipelined: replies are
//! consumed strictly in order (PROTOCOL.md §1).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::proto::frame::{find_line, LineTooLong, MAX_LINE_BYTES};
use crate::proto::reply::{self, ReplyError};

/// Initial receive buffer; it grows only while a reply line is longer (up to the line limit).
const RECV_BUFFER_BYTES: usize = 64 * 1024;

/// An open connection with its receive buffer and current deadline.
#[derive(Debug)]
pub struct Conn {
    /// The socket; always has read and write timeouts set.
    stream: TcpStream,
    /// Received bytes not yet consumed live in `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Per-syscall limit: the longest the depot may stay silent.
    io_timeout: Duration,
    /// End of the current operation, if one is armed.
    deadline: Option<Instant>,
}

impl Conn {
    /// Connects to `host:port`, trying each resolved address within `connect_timeout`.
    pub fn connect(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Conn> {
        let addrs = (host, port).to_socket_addrs().map_err(Error::Io)?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(stream) => return Conn::from_stream(stream, io_timeout),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                Error::Timeout { what: "connecting to the depot" }
            }
            Some(e) => Error::Io(e),
            None => Error::Io(io::Error::new(io::ErrorKind::NotFound, "host has no address")),
        })
    }

    /// Wraps a connected stream, setting its timeouts.
    pub fn from_stream(stream: TcpStream, io_timeout: Duration) -> Result<Conn> {
        let io_timeout = io_timeout.max(Duration::from_millis(1));
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        Ok(Conn {
            stream,
            buf: vec![0; RECV_BUFFER_BYTES],
            start: 0,
            end: 0,
            io_timeout,
            deadline: None,
        })
    }

    /// Sets the deadline for the operation about to run.
    pub fn arm(&mut self, budget: Duration) {
        self.deadline = Some(Instant::now() + budget);
    }

    /// Sets how long the depot may stay silent per call (at least 1 ms) and returns the old
    /// limit. Copies wait for one reply that comes only when the copy is over, so they raise
    /// it to their deadline and put it back afterwards.
    pub fn set_io_timeout(&mut self, limit: Duration) -> Duration {
        std::mem::replace(&mut self.io_timeout, limit.max(Duration::from_millis(1)))
    }

    /// Clears the operation deadline (idle in the pool).
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// True when nothing received is left unconsumed.
    pub fn is_drained(&self) -> bool {
        self.start == self.end
    }

    /// Checks an idle pooled connection: alive, and the depot has not written anything
    /// (an unsolicited line is a close notice such as `-66`, so the connection is stale).
    pub fn is_reusable(&self) -> bool {
        if !self.is_drained() || self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = [0u8; 1];
        let verdict =
            matches!(self.stream.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        verdict && self.stream.set_nonblocking(false).is_ok()
    }

    /// Sets the socket timeouts to what is left of the deadline, or fails if it passed.
    fn before_blocking(&mut self, what: &'static str) -> Result<()> {
        let mut limit = self.io_timeout;
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { what });
            }
            limit = limit.min(left);
        }
        self.stream.set_read_timeout(Some(limit))?;
        self.stream.set_write_timeout(Some(limit))?;
        Ok(())
    }

    /// Writes all of `data` within the deadline.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            self.before_blocking("sending to the depot")?;
            match self.stream.write(rest) {
                Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_or_io(e, "sending to the depot")),
            }
        }
        Ok(())
    }

    fn fill(&mut self, what: &'static str) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_LINE_BYTES {
                self.buf.resize((self.buf.len() * 2).min(MAX_LINE_BYTES), 0);
            }
        }
        loop {
            self.before_blocking(what)?;
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "depot closed the connection",
                    )))
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_or_io(e, what)),
            }
        }
    }

    /// Reads one reply line (with its `\n`), bounded by the protocol line limit.
    pub fn read_line(&mut self) -> Result<Vec<u8>> {
        loop {
            match find_line(&self.buf[self.start..self.end], MAX_LINE_BYTES) {
                Ok(Some(len)) => {
                    let line = self.buf[self.start..self.start + len].to_vec();
                    self.start += len;
                    return Ok(line);
                }
                Ok(None) => self.fill("waiting for the depot's reply")?,
                Err(LineTooLong { .. }) => return Err(Error::protocol("reply line too long")),
            }
        }
    }

    /// Reads one status line and returns its tokens after the leading `1`; a negative status
    /// becomes the matching [`Error`] (including [`Error::Backoff`]).
    pub fn read_status(&mut self) -> Result<Vec<String>> {
        let line = self.read_line()?;
        match reply::parse_status_line(&line) {
            Ok(tokens) => Ok(tokens.into_iter().map(str::to_owned).collect()),
            Err(e) => Err(Error::from(e)),
        }
    }

    /// Reads a line with a parser from [`reply`], mapping its error.
    pub fn read_reply<T>(
        &mut self,
        parse: impl FnOnce(&[u8]) -> Result<T, ReplyError>,
    ) -> Result<T> {
        let line = self.read_line()?;
        parse(&line).map_err(Error::from)
    }

    /// Fills `out` exactly from the buffer, then the socket.
    pub fn read_exact(&mut self, out: &mut [u8]) -> Result<()> {
        let buffered = (self.end - self.start).min(out.len());
        out[..buffered].copy_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        let mut filled = buffered;
        while filled < out.len() {
            self.before_blocking("receiving data from the depot")?;
            match self.stream.read(&mut out[filled..]) {
                Ok(0) => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "depot closed the connection mid-transfer",
                    )))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_or_io(e, "receiving data from the depot")),
            }
        }
        Ok(())
    }

    /// After a failed send, the depot may have refused the header and written why before
    /// closing; read that reply if it is there, otherwise keep the send error.
    pub fn explain_send_failure(&mut self, send_error: Error) -> Error {
        self.io_timeout = self.io_timeout.min(Duration::from_secs(1));
        match self.read_status() {
            Err(e @ (Error::Ibp(_) | Error::UnknownCode(_) | Error::Backoff { .. })) => e,
            _ => send_error,
        }
    }

    /// Closes both directions (used when abandoning a transfer).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn timeout_or_io(e: io::Error, what: &'static str) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout { what },
        _ => Error::Io(e),
    }
}
