//! The pieces of `run` that sit on `ibp_client`: connections for pipelined streams, and the
//! one call the client library does not offer yet.
//!
//! Everything goes through `ibp_client` (`Depot::allocate`, `CapHandle::decr`, the request
//! encoders of `CapHandle`, and its `Conn` for framing and deadlines). The benchmark drives
//! each stream's connection itself, rather than through `CapHandle::write`/`load_into`,
//! because it needs a controlled number of commands in flight per stream and a latency per
//! command. The only private helper is [`copy`]: SEND (depot-to-depot copy) encoded with
//! `ibp_client::proto`, because `CapHandle` has no SEND yet.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ibp_client::conn::Conn;
use ibp_client::proto::reply;
use ibp_client::proto::request::{DepotCopy, Request};
use ibp_client::{Capability, Config, Depot};

pub use ibp_client::Error as WireError;
pub type WireResult<T> = ibp_client::Result<T>;

/// Resolves `host:port` to its first address.
pub fn resolve(authority: &str) -> io::Result<SocketAddr> {
    authority.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{authority} has no address"))
    })
}

/// Client settings for benchmark traffic: the library's defaults, with a slowest tolerated
/// rate low enough that a loaded 2-core machine is not mistaken for a stalled depot.
pub fn config() -> Config {
    Config { min_rate_bytes_per_s: 256 * 1024, ..Config::default() }
}

/// The depot at `addr`.
pub fn depot(addr: SocketAddr) -> Depot {
    Depot::new(addr.ip().to_string(), addr.port(), config())
}

/// A fresh connection to the port `cap` names (its shard's own port on our depot), with
/// `budget` as the deadline of everything the stream does on it.
pub fn stream_conn(cap: &Capability, budget: Duration) -> WireResult<(Depot, Conn)> {
    let depot = Depot::for_capability(cap, config());
    let mut conn = depot.connect()?;
    conn.arm(budget);
    Ok((depot, conn))
}

/// SEND `len` bytes at `offset` of the allocation `read` names, appended to `target` (a
/// write capability on another depot); returns the bytes the target acknowledged.
pub fn copy(
    conn: &mut Conn,
    read: &Capability,
    target: &Capability,
    offset: u64,
    len: u64,
) -> WireResult<i64> {
    let timeout_s = config().server_timeout_for(len);
    let req = Request::Send(DepotCopy {
        version: 1,
        chksum: None,
        path: None,
        key: read.key_ref(),
        target: target.clone(),
        typekey: read.typekey.clone(),
        src_offset: offset as i64,
        len: len as i64,
        timeout_s,
        dest_timeout_s: timeout_s,
        dest_client_timeout_s: timeout_s,
    });
    let mut line = Vec::with_capacity(512);
    req.encode(&mut line);
    conn.send(&line)?;
    conn.read_reply(reply::parse_count)
}
