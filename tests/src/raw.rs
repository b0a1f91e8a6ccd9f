//! A raw TCP client: bytes out, bounded lines and byte counts in.
//!
//! Unconsumed bytes stay buffered between calls, the same rule the depot follows, so a test can
//! pipeline several commands in one write and read the replies one by one. Every read has a
//! deadline (`timeout`) and every line a length bound, so a depot that stalls or floods fails
//! the test with a message instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest reply line accepted (three caps fit in well under 1 KiB).
pub const MAX_REPLY_LINE_BYTES: usize = 64 * 1024;
/// Default deadline for one reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connect may take on loopback.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a read ended without what was asked for.
#[derive(Debug)]
pub enum ReadEnd {
    /// The peer closed the connection (orderly FIN).
    Eof,
    /// The deadline passed with no complete answer.
    Timeout,
    /// The line grew past the bound without a newline.
    TooLong,
    /// A socket error, usually a reset from a killed or closing depot.
    Io(io::Error),
}

/// A raw connection to a depot.
#[derive(Debug)]
pub struct Raw {
    stream: TcpStream,
    /// Received but not yet consumed bytes.
    buf: Vec<u8>,
    /// Deadline for each `line`/`read_exact` call.
    pub timeout: Duration,
    /// Where we connected, for messages.
    pub peer: SocketAddr,
}

/// The whitespace-separated tokens of a reply line.
pub fn tokens(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The status (first token) of a reply line, or `i64::MIN` when it has none.
pub fn status_of(line: &str) -> i64 {
    line.split_whitespace().next().and_then(|t| t.parse().ok()).unwrap_or(i64::MIN)
}

impl Raw {
    /// Connects, or panics naming the address.
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Raw> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(Raw { stream, buf: Vec::new(), timeout: DEFAULT_TIMEOUT, peer: addr })
    }

    /// Writes all of `bytes` or panics.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes) {
            panic!("send {} bytes to {}: {e}", bytes.len(), self.peer);
        }
    }

    /// Writes all of `bytes`; an error is returned (the depot may have closed on purpose).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a command line (a `\n` is appended) and returns the reply line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.line()
    }

    /// The next reply line (without its `\n`), or a panic saying what happened instead.
    pub fn line(&mut self) -> String {
        match self.try_line() {
            Ok(l) => l,
            Err(e) => panic!(
                "reading a reply line from {}: {e:?} (buffered {:?})",
                self.peer,
                self.buffered()
            ),
        }
    }

    /// The next reply line, bounded by `MAX_REPLY_LINE_BYTES` and `timeout`.
    pub fn try_line(&mut self) -> Result<String, ReadEnd> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.buf.len() > MAX_REPLY_LINE_BYTES {
                return Err(ReadEnd::TooLong);
            }
            self.fill(deadline)?;
        }
    }

    /// Exactly `n` bytes, or a panic.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        match self.try_read_exact(n) {
            Ok(v) => v,
            Err((got, e)) => {
                panic!("reading {n} bytes from {}: {e:?} after {} bytes", self.peer, got.len())
            }
        }
    }

    /// Exactly `n` bytes; on failure, the bytes that did arrive and why the rest did not.
    pub fn try_read_exact(&mut self, n: usize) -> Result<Vec<u8>, (Vec<u8>, ReadEnd)> {
        let deadline = Instant::now() + self.timeout;
        while self.buf.len() < n {
            if let Err(e) = self.fill(deadline) {
                return Err((std::mem::take(&mut self.buf), e));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Waits for the depot to close the connection; returns the bytes it sent before closing
    /// (buffered ones included). A reset counts as closed. Panics if it stays open past the
    /// deadline or sends more than 64 KiB.
    pub fn expect_closed(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.fill(deadline) {
                Ok(()) if self.buf.len() > MAX_REPLY_LINE_BYTES => {
                    panic!("expected {} to close; it sent {} more bytes", self.peer, self.buf.len())
                }
                Ok(()) => {}
                Err(ReadEnd::Eof) | Err(ReadEnd::Io(_)) => return std::mem::take(&mut self.buf),
                Err(e) => panic!(
                    "expected {} to close within {:?}: {e:?} (buffered {:?})",
                    self.peer,
                    self.timeout,
                    self.buffered()
                ),
            }
        }
    }

    /// Expects the close notice `-66 <secs>` as the next line and then the close itself.
    pub fn expect_close_notice(&mut self) {
        let line = self.line();
        assert!(is_close_notice(&line), "expected `-66 <secs>` from {}, got {line:?}", self.peer);
        let rest = self.expect_closed();
        assert!(
            rest.is_empty(),
            "bytes after the close notice: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// True if the depot has already closed: waits at most `wait` for data or EOF.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            match self.fill(deadline) {
                Ok(()) => continue,
                Err(ReadEnd::Eof) | Err(ReadEnd::Io(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Half-closes our sending side (the depot sees EOF).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Bytes received and not yet consumed, as text (for messages).
    pub fn buffered(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).into_owned()
    }

    /// One read into the buffer, bounded by `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadEnd> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadEnd::Timeout);
        }
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .map_err(ReadEnd::Io)?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ReadEnd::Eof),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(ReadEnd::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(ReadEnd::Io(e)),
        }
    }
}

/// True for the depot's close notice, `-66 <secs>` (secs may be fractional).
pub fn is_close_notice(line: &str) -> bool {
    let t = tokens(line);
    t.len() == 2 && t[0] == "-66" && t[1].parse::<f64>().is_ok_and(|s| s >= 0.0)
}
