//! Calls on one capability: store, write, load (in memory or streaming), and the MANAGE
//! subcommands. Each call encodes its request with the codec, runs it through the depot's
//! retry loop, and checks the reply's shape (a LOAD must announce exactly the bytes asked
//! for before any buffer is sized from it).

use std::io::{Read, Write};

use crate::conn::Conn;
use crate::depot::{encode, Depot};
use crate::error::{Error, Result};
use crate::proto::capability::{CapKind, Capability};
use crate::proto::reply::{self, ProbeReply, ReplyError};
use crate::proto::request::{Manage, ManageOp, RangeIo, Reliability, Request, Store};

/// Most requests [`CapHandle::load_many`] keeps in flight on one connection.
pub const PIPELINE_WINDOW: usize = 16;

/// Piece size for streaming variants: what is held in memory at once.
pub const STREAM_PIECE_BYTES: usize = 1024 * 1024;

/// A capability bound to the depot that serves it.
#[derive(Debug, Clone, Copy)]
pub struct CapHandle<'a> {
    depot: &'a Depot,
    cap: &'a Capability,
}

pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidArgument(format!("{what} too large")))
}

pub(crate) fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl<'a> CapHandle<'a> {
    pub(crate) fn new(depot: &'a Depot, cap: &'a Capability) -> Self {
        CapHandle { depot, cap }
    }

    /// The capability.
    pub fn capability(&self) -> &'a Capability {
        self.cap
    }

    /// The depot the calls go to.
    pub fn depot(&self) -> &'a Depot {
        self.depot
    }

    pub(crate) fn need(&self, kind: CapKind) -> Result<()> {
        if self.cap.kind == kind {
            Ok(())
        } else {
            Err(Error::WrongCapKind { expected: kind, actual: self.cap.kind })
        }
    }

    /// The STORE header (append `len` bytes).
    pub fn store_request(&self, len: u64) -> Result<Vec<u8>> {
        let config = self.depot.config();
        Ok(encode(&Request::Store(Store {
            version: 1,
            chksum: None,
            key: self.cap.key_ref(),
            typekey: self.cap.typekey.clone(),
            len: to_i64(len, "length")?,
            timeout_s: config.server_timeout_for(len),
        })))
    }

    /// The WRITE (or LOAD) header for `len` bytes at `offset`.
    pub fn range_request(&self, load: bool, offset: u64, len: u64) -> Result<Vec<u8>> {
        let config = self.depot.config();
        let io = RangeIo {
            version: 1,
            chksum: None,
            key: self.cap.key_ref(),
            typekey: self.cap.typekey.clone(),
            offset: to_i64(offset, "offset")?,
            len: to_i64(len, "length")?,
            timeout_s: config.server_timeout_for(len),
        };
        Ok(encode(&if load { Request::Load(io) } else { Request::Write(io) }))
    }

    /// STORE: appends `data`; returns the bytes the depot confirmed.
    pub fn store(&self, data: &[u8]) -> Result<u64> {
        self.need(CapKind::Write)?;
        let header = self.store_request(len_u64(data.len()))?;
        self.send_with_data(&header, data)
    }

    /// WRITE: writes `data` at `offset`; returns the bytes the depot confirmed.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<u64> {
        self.need(CapKind::Write)?;
        let header = self.range_request(false, offset, len_u64(data.len()))?;
        self.send_with_data(&header, data)
    }

    /// Pipelined like LStore: header and data go out together, then both replies are read.
    fn send_with_data(&self, header: &[u8], data: &[u8]) -> Result<u64> {
        let len = len_u64(data.len());
        self.depot.call(self.depot.config().op_budget(len), false, |conn| {
            let sent = conn.send(header).and_then(|()| conn.send(data));
            if let Err(e) = sent {
                return Err(conn.explain_send_failure(e));
            }
            finish_write(conn, len)
        })
    }

    /// Streaming STORE of exactly `len` bytes from `source`. Waits for the depot's `1 \n`
    /// before sending data (LoCI style) so a back-off retry never loses consumed input.
    pub fn store_from(&self, source: &mut dyn Read, len: u64) -> Result<u64> {
        self.need(CapKind::Write)?;
        let header = self.store_request(len)?;
        self.stream_from(&header, source, len)
    }

    /// Streaming WRITE of exactly `len` bytes from `source` at `offset`.
    pub fn write_from(&self, offset: u64, source: &mut dyn Read, len: u64) -> Result<u64> {
        self.need(CapKind::Write)?;
        let header = self.range_request(false, offset, len)?;
        self.stream_from(&header, source, len)
    }

    fn stream_from(&self, header: &[u8], source: &mut dyn Read, len: u64) -> Result<u64> {
        let mut source_started = false;
        self.depot.call(self.depot.config().op_budget(len), false, |conn| {
            if source_started {
                return Err(Error::protocol("cannot retry a streaming write once data was sent"));
            }
            conn.send(header)?;
            conn.read_reply(reply::parse_ok)?;
            source_started = true;
            let mut piece =
                vec![0; STREAM_PIECE_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX))];
            let mut left = len;
            while left > 0 {
                let want = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                source.read_exact(&mut piece[..want]).map_err(Error::Io)?;
                if let Err(e) = conn.send(&piece[..want]) {
                    return Err(conn.explain_send_failure(e));
                }
                left -= len_u64(want);
            }
            let n = conn.read_reply(reply::parse_count)?;
            check_count(n, len)
        })
    }

    /// LOAD: `len` bytes at `offset`.
    pub fn load(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let size =
            usize::try_from(len).map_err(|_| Error::InvalidArgument("length too large".into()))?;
        let mut out = vec![0; size];
        self.load_into(offset, &mut out)?;
        Ok(out)
    }

    /// LOAD into a caller's buffer (its length is the length loaded).
    pub fn load_into(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        self.need(CapKind::Read)?;
        let len = len_u64(out.len());
        let header = self.range_request(true, offset, len)?;
        self.depot.call(self.depot.config().op_budget(len), true, |conn| {
            conn.send(&header)?;
            read_load_header(conn, len)?;
            conn.read_exact(out)
        })
    }

    /// Several LOADs pipelined on one connection: up to [`PIPELINE_WINDOW`] requests are
    /// written before their replies are read (replies come back strictly in order, PROTOCOL.md
    /// §1). Returns one buffer per range, in order.
    pub fn load_many(&self, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        self.need(CapKind::Read)?;
        let total = ranges.iter().try_fold(0u64, |acc, (_, len)| acc.checked_add(*len));
        let total = total.ok_or_else(|| Error::InvalidArgument("lengths overflow".into()))?;
        let headers = ranges
            .iter()
            .map(|&(offset, len)| self.range_request(true, offset, len))
            .collect::<Result<Vec<_>>>()?;
        self.depot.call(self.depot.config().op_budget(total), true, |conn| {
            let mut out = Vec::with_capacity(ranges.len());
            let mut sent = 0;
            while out.len() < ranges.len() {
                while sent < headers.len() && sent - out.len() < PIPELINE_WINDOW {
                    conn.send(&headers[sent])?;
                    sent += 1;
                }
                let len = ranges[out.len()].1;
                read_load_header(conn, len)?;
                let size = usize::try_from(len)
                    .map_err(|_| Error::InvalidArgument("length too large".into()))?;
                let mut data = vec![0; size];
                conn.read_exact(&mut data)?;
                out.push(data);
            }
            Ok(out)
        })
    }

    /// Streaming LOAD of `len` bytes at `offset` into `sink`, one piece at a time (each piece
    /// its own LOAD on the same pooled connection), so memory stays at one piece.
    pub fn load_to(&self, offset: u64, len: u64, sink: &mut dyn Write) -> Result<u64> {
        self.need(CapKind::Read)?;
        let mut piece = vec![0; STREAM_PIECE_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX))];
        let mut done = 0u64;
        while done < len {
            let want = piece.len().min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let at = offset
                .checked_add(done)
                .ok_or_else(|| Error::InvalidArgument("offset overflow".into()))?;
            self.load_into(at, &mut piece[..want])?;
            sink.write_all(&piece[..want]).map_err(Error::Io)?;
            done += len_u64(want);
        }
        Ok(done)
    }

    fn manage<T>(
        &self,
        op: ManageOp,
        idempotent: bool,
        parse: fn(&[u8]) -> Result<T, ReplyError>,
    ) -> Result<T> {
        let req = Request::Manage(Manage {
            version: 1,
            key: self.cap.key_ref(),
            typekey: self.cap.typekey.clone(),
            op,
            timeout_s: self.depot.config().server_timeout_s,
        });
        let line = encode(&req);
        self.depot.call(self.depot.config().op_timeout, idempotent, |conn| {
            conn.send(&line)?;
            conn.read_reply(parse)
        })
    }

    /// MANAGE PROBE: sizes, reference counts, lease left. ACCRE needs the manage cap; LoCI
    /// (and our depot) also accept the read or write cap.
    pub fn probe(&self) -> Result<ProbeReply> {
        self.manage(ManageOp::Probe { captype: self.cap.kind.captype() }, true, reply::parse_probe)
    }

    /// MANAGE INCR of the `which` reference count (read or write).
    pub fn incr(&self, which: CapKind) -> Result<()> {
        self.need(CapKind::Manage)?;
        self.manage(ManageOp::Incr { captype: which.captype() }, false, reply::parse_ok)
    }

    /// MANAGE DECR of the `which` count; LStore's "remove" is `decr(CapKind::Read)`.
    pub fn decr(&self, which: CapKind) -> Result<()> {
        self.need(CapKind::Manage)?;
        self.manage(ManageOp::Decr { captype: which.captype() }, false, reply::parse_ok)
    }

    /// MANAGE CHNG: new max size, lease (relative seconds; `None` = unchanged) and
    /// reliability (`None` = unchanged).
    pub fn change(
        &self,
        max_size: u64,
        duration_s: Option<i64>,
        reliability: Option<Reliability>,
    ) -> Result<()> {
        self.need(CapKind::Manage)?;
        let op = ManageOp::Change {
            captype: CapKind::Manage.captype(),
            max_size: to_i64(max_size, "max size")?,
            duration_s: duration_s.unwrap_or(-1),
            reliability: reliability.map_or(-1, Reliability::code),
        };
        self.manage(op, true, reply::parse_ok)
    }

    /// MANAGE TRUNCATE: sets max size (and size, if larger).
    pub fn truncate(&self, max_size: u64) -> Result<()> {
        self.need(CapKind::Manage)?;
        let op = ManageOp::Truncate { max_size: to_i64(max_size, "max size")? };
        self.manage(op, true, reply::parse_ok)
    }
}

/// Reads the two replies of a STORE/WRITE: `1 \n` then `1 <n> \n`, checking `n`.
pub(crate) fn finish_write(conn: &mut Conn, len: u64) -> Result<u64> {
    conn.read_reply(reply::parse_ok)?;
    let n = conn.read_reply(reply::parse_count)?;
    check_count(n, len)
}

/// Reads `1 <n> \n` of a LOAD and checks that `n` is what was asked.
pub(crate) fn read_load_header(conn: &mut Conn, len: u64) -> Result<()> {
    let n = conn.read_reply(reply::parse_count)?;
    check_count(n, len).map(|_| ())
}

pub(crate) fn check_count(n: i64, len: u64) -> Result<u64> {
    match u64::try_from(n) {
        Ok(n) if n == len => Ok(n),
        _ => Err(Error::protocol(format!("depot confirmed {n} bytes, expected {len}"))),
    }
}
