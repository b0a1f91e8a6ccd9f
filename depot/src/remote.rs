//! The depot as a client of another depot (SEND, PUSH, PULL, MCOPY): connect with a deadline,
//! send one command, and move its payload through the transfer paths — on this core's own
//! io_uring, never blocking it.
//!
//! Design: a [`RemoteSink`] is a [`Sink`] that turns "begin" into a STORE or WRITE at the
//! target and waits for its `1 \n`; a [`RemoteSource`] is a [`Source`] reading a LOAD's
//! payload. An IBP error from the other depot is kept (`refused`) so the command can answer
//! its client with the target's own code.

use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};

use ibp_client::proto::request::{RangeIo, Store};
use ibp_client::proto::{reply, Capability, ErrorCode, ReplyError, Request};
use ibp_io::net::TcpStream;
use ibp_io::FixedBuf;

use crate::conn::{Conn, LineError};
use crate::transfer::read::Sink;
use crate::transfer::write::Source;

/// Longest a depot waits to connect to another (ACCRE: min(remaining − 5 s, 20 s)).
const MAX_CONNECT: Duration = Duration::from_secs(20);

/// Resolves and connects to the depot a capability names, within `deadline`.
pub async fn connect(cap: &Capability, deadline: Instant) -> Result<Conn, ErrorCode> {
    let host = cap.host.as_str();
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, cap.port)],
        // Name resolution is a blocking call; names are rare in capabilities (depots put the
        // address the client reached), and it is bounded by the resolver's own timeout.
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, cap.port))
            .map_err(|_| ErrorCode::InvalidHost)?
            .collect(),
    };
    let limit = deadline.saturating_duration_since(Instant::now()).min(MAX_CONNECT);
    for a in addrs {
        if let Ok(Ok(s)) = ibp_io::time::timeout(limit, TcpStream::connect(a)).await {
            return Conn::new(s, Vec::new()).map_err(|_| ErrorCode::CantConnect);
        }
    }
    Err(ErrorCode::CantConnect)
}

/// Reads one reply line within `wait`.
pub async fn read_reply(conn: &mut Conn, wait: Duration) -> Result<Vec<u8>, ErrorCode> {
    match conn.read_line(wait).await {
        Ok(l) => Ok(l),
        Err(LineError::Idle) => Err(ErrorCode::ServerTimeout),
        Err(_) => Err(ErrorCode::Connection),
    }
}

/// The IBP code a failed reply stands for.
pub fn code_of(e: ReplyError) -> ErrorCode {
    match e {
        ReplyError::Ibp(c) => c,
        ReplyError::Backoff(_) => ErrorCode::OutOfSockets,
        ReplyError::UnknownCode(_) | ReplyError::Malformed(_) => ErrorCode::Connection,
    }
}

/// The command that appends (`offset` None) or writes at `offset` of `cap`.
pub fn write_request(cap: &Capability, offset: Option<u64>, len: u64, timeout_s: i64) -> Vec<u8> {
    let req = match offset {
        None => Request::Store(Store {
            version: 1,
            chksum: None,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            len: len as i64,
            timeout_s,
        }),
        Some(o) => Request::Write(RangeIo {
            version: 1,
            chksum: None,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            offset: o as i64,
            len: len as i64,
            timeout_s,
        }),
    };
    let mut out = Vec::with_capacity(128);
    req.encode(&mut out);
    out
}

/// A STORE/WRITE at another depot, fed by the read path.
pub struct RemoteSink {
    pub conn: Conn,
    /// The command line to send at `begin`.
    pub header: Vec<u8>,
    /// How long to wait on the other depot for each step.
    pub wait: Duration,
    /// The other depot's error, if it refused.
    pub refused: Option<ErrorCode>,
    /// The command was already sent and acknowledged (`begin` has nothing left to do).
    pub acked: bool,
}

impl RemoteSink {
    /// Reads the target's final `1 <n>` and returns n.
    pub async fn finish(&mut self) -> Result<u64, ErrorCode> {
        let line = read_reply(&mut self.conn, self.wait).await?;
        reply::parse_count(&line).map(|n| n.max(0) as u64).map_err(code_of)
    }
}

impl Sink for RemoteSink {
    async fn begin(&mut self, _len: u64) -> io::Result<()> {
        if self.acked {
            return Ok(());
        }
        self.conn.send(std::mem::take(&mut self.header)).await?;
        let line = read_reply(&mut self.conn, self.wait).await.map_err(|c| {
            self.refused = Some(c);
            io::Error::other("target did not answer")
        })?;
        reply::parse_ok(&line).map_err(|e| {
            self.refused = Some(code_of(e));
            io::Error::other("target refused the write")
        })
    }

    async fn chunk(&mut self, buf: FixedBuf, range: Range<usize>) -> io::Result<()> {
        self.conn.send_buf(buf, range, self.wait).await.map(drop)
    }
}

/// The payload of a LOAD from another depot, feeding the write path.
pub struct RemoteSource {
    pub conn: Conn,
    pub wait: Duration,
}

impl Source for RemoteSource {
    async fn fill(&mut self, buf: FixedBuf, at: usize, n: usize) -> io::Result<FixedBuf> {
        self.conn.recv_exact(buf, at, n, self.wait).await
    }
}

/// Sends a LOAD of `[offset, offset + len)` through `cap` and reads its `1 <len>` header.
pub async fn start_load(
    conn: &mut Conn,
    cap: &Capability,
    offset: u64,
    len: u64,
    timeout_s: i64,
    wait: Duration,
) -> Result<(), ErrorCode> {
    let req = Request::Load(RangeIo {
        version: 1,
        chksum: None,
        key: cap.key_ref(),
        typekey: cap.typekey.clone(),
        offset: offset as i64,
        len: len as i64,
        timeout_s,
    });
    let mut out = Vec::with_capacity(128);
    req.encode(&mut out);
    conn.send(out).await.map_err(|_| ErrorCode::Connection)?;
    let line = read_reply(conn, wait).await?;
    let n = reply::parse_count(&line).map_err(code_of)?;
    if n as u64 != len {
        return Err(ErrorCode::Connection);
    }
    Ok(())
}

/// The current size of the allocation behind `cap`, by PROBE through that capability. Our
/// depots accept PROBE through any of the three capabilities; ACCRE depots want the manage
/// capability and answer an error, which the caller reports.
pub async fn probe_size(
    cap: &Capability,
    timeout_s: i64,
    wait: Duration,
) -> Result<u64, ErrorCode> {
    use ibp_client::proto::request::{Manage, ManageOp};
    let mut conn = connect(cap, Instant::now() + wait).await?;
    let req = Request::Manage(Manage {
        version: 1,
        key: cap.key_ref(),
        typekey: cap.typekey.clone(),
        op: ManageOp::Probe { captype: 2 },
        timeout_s,
    });
    let mut out = Vec::with_capacity(128);
    req.encode(&mut out);
    conn.send(out).await.map_err(|_| ErrorCode::Connection)?;
    let line = read_reply(&mut conn, wait).await?;
    let p = reply::parse_probe(&line).map_err(code_of)?;
    Ok(p.size.max(0) as u64)
}
