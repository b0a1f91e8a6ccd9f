//! The smallest private helper over `ibp_client::proto` that `run` needs: one blocking
//! connection that sends encoded requests and reads reply lines and payloads, with requests
//! pipelined up to the caller's queue depth.
//!
//! This is deliberately not a client library (that is `ibp_client`'s job, on another branch):
//! no retries, no back-off, no parallel engine. It exists so `ibp-bench` can drive exactly the
//! standard commands (ALLOCATE, STORE, WRITE, LOAD, MANAGE DECR, SEND) with exact timing and
//! a controlled number of commands in flight, against any IBP depot.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use ibp_client::proto::capability::{Capability, KeyRef};
use ibp_client::proto::reply::{self, ReplyError};
use ibp_client::proto::request::{
    cmd, Allocate, DepotCopy, Manage, ManageOp, RangeIo, Reliability, Request, Store,
};
use ibp_client::proto::{find_line, MAX_LINE_BYTES};

/// Server-side deadline sent with every command, in seconds.
pub const SERVER_TIMEOUT_S: i64 = 60;
/// Socket read/write timeout: a stalled depot fails the run instead of hanging it.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(90);
/// Receive buffer for reply lines (payload bytes are read straight into the caller's buffer
/// once the line is parsed).
const READ_BUF_BYTES: usize = 64 * 1024;

/// Why a call failed: the socket, or the depot's answer.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    Reply(ReplyError),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "socket: {e}"),
            WireError::Reply(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

impl From<ReplyError> for WireError {
    fn from(e: ReplyError) -> Self {
        WireError::Reply(e)
    }
}

pub type WireResult<T> = Result<T, WireError>;

/// Resolves `host:port` to its first address.
pub fn resolve(authority: &str) -> io::Result<SocketAddr> {
    authority.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{authority} has no address"))
    })
}

/// One connection to a depot.
pub struct Conn {
    stream: TcpStream,
    /// Bytes received but not consumed yet (`buf[start..end]`).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Scratch for encoding request lines.
    line: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: vec![0; READ_BUF_BYTES],
            start: 0,
            end: 0,
            line: Vec::with_capacity(512),
        })
    }

    /// Connects to the host and port a capability names (its shard's port on our depot).
    pub fn to_cap(cap: &Capability) -> io::Result<Conn> {
        Conn::connect(resolve(&cap.authority())?)
    }

    /// Sends a request line (and nothing else).
    pub fn send(&mut self, req: &Request) -> io::Result<()> {
        self.line.clear();
        req.encode(&mut self.line);
        self.stream.write_all(&self.line)
    }

    /// Sends a request line followed by its payload.
    pub fn send_with(&mut self, req: &Request, payload: &[u8]) -> io::Result<()> {
        self.send(req)?;
        self.stream.write_all(payload)
    }

    /// Reads one reply line (without the `\n`), bounded by `MAX_LINE_BYTES`.
    pub fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            match find_line(pending, MAX_LINE_BYTES) {
                Ok(Some(n)) => {
                    let line = pending[..n].to_vec();
                    self.start += n;
                    return Ok(line);
                }
                Ok(None) => self.fill()?,
                Err(_) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "reply line too long"))
                }
            }
        }
    }

    /// Reads exactly `out.len()` payload bytes, first from what is buffered.
    pub fn read_payload(&mut self, out: &mut [u8]) -> io::Result<()> {
        let have = (self.end - self.start).min(out.len());
        out[..have].copy_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        self.stream.read_exact(&mut out[have..])
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "depot closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// ALLOCATE: returns the read, write and manage capabilities.
    pub fn allocate(
        &mut self,
        rid: &str,
        hard: bool,
        duration_s: i64,
        size: u64,
    ) -> WireResult<[Capability; 3]> {
        let reliability = if hard { Reliability::Hard } else { Reliability::Soft };
        self.send(&allocate_request(rid, reliability, duration_s, size))?;
        Ok(reply::parse_caps(&self.read_line()?)?)
    }

    /// MANAGE DECR of the read count: LStore's "remove".
    pub fn remove(&mut self, manage: &Capability) -> WireResult<()> {
        self.send(&decr_request(manage))?;
        Ok(reply::parse_ok(&self.read_line()?)?)
    }

    /// Reads the two replies of a STORE or WRITE already sent; returns the bytes acknowledged.
    pub fn finish_write(&mut self) -> WireResult<i64> {
        reply::parse_ok(&self.read_line()?)?;
        Ok(reply::parse_count(&self.read_line()?)?)
    }

    /// Reads a LOAD reply already asked for into `out` (which must be the length asked).
    pub fn finish_load(&mut self, out: &mut [u8]) -> WireResult<()> {
        let n = reply::parse_count(&self.read_line()?)?;
        if n != out.len() as i64 {
            return Err(WireError::Reply(ReplyError::Malformed("LOAD returned another length")));
        }
        Ok(self.read_payload(out)?)
    }

    /// SEND (depot-to-depot copy): returns the bytes the target acknowledged.
    pub fn copy(
        &mut self,
        read: &Capability,
        target: &Capability,
        offset: u64,
        len: u64,
    ) -> WireResult<i64> {
        let req = Request::Send(DepotCopy {
            version: 1,
            chksum: None,
            path: None,
            key: read.key_ref(),
            target: target.clone(),
            typekey: read.typekey.clone(),
            src_offset: offset as i64,
            len: len as i64,
            timeout_s: SERVER_TIMEOUT_S,
            dest_timeout_s: SERVER_TIMEOUT_S,
            dest_client_timeout_s: SERVER_TIMEOUT_S,
        });
        self.send(&req)?;
        Ok(reply::parse_count(&self.read_line()?)?)
    }
}

pub fn allocate_request(
    rid: &str,
    reliability: Reliability,
    duration_s: i64,
    size: u64,
) -> Request {
    Request::Allocate(Allocate {
        version: 1,
        chksum: None,
        rid: Some(rid.to_owned()),
        reliability: reliability.code(),
        atype: 1,
        duration_s,
        size: size as i64,
        timeout_s: SERVER_TIMEOUT_S,
    })
}

pub fn decr_request(manage: &Capability) -> Request {
    Request::Manage(Manage {
        version: 1,
        key: manage.key_ref(),
        typekey: manage.typekey.clone(),
        op: ManageOp::Decr { captype: 1 },
        timeout_s: SERVER_TIMEOUT_S,
    })
}

/// STORE (append) of `len` bytes.
pub fn store_request(write: &Capability, len: u64) -> Request {
    Request::Store(Store {
        version: 1,
        chksum: None,
        key: key(write),
        typekey: write.typekey.clone(),
        len: len as i64,
        timeout_s: SERVER_TIMEOUT_S,
    })
}

/// WRITE (13) or LOAD (8) of `len` bytes at `offset`.
pub fn range_request(command: i32, cap: &Capability, offset: u64, len: u64) -> Request {
    let r = RangeIo {
        version: 1,
        chksum: None,
        key: key(cap),
        typekey: cap.typekey.clone(),
        offset: offset as i64,
        len: len as i64,
        timeout_s: SERVER_TIMEOUT_S,
    };
    if command == cmd::WRITE {
        Request::Write(r)
    } else {
        Request::Load(r)
    }
}

fn key(cap: &Capability) -> KeyRef {
    cap.key_ref()
}
