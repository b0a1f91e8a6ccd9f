//! Checksums: the per-allocation disk digests of an ALLOCATE_CHKSUM allocation (GET_CHKSUM 31,
//! VALIDATE_CHKSUM 32) and the network-checksummed transfers STORE_CHKSUM (28), WRITE_CHKSUM
//! (27) and LOAD_CHKSUM (24), whose data carries the §10 framing.
//!
//! Design: the framing is the codec's ([`crate::proto::netframe`]). A send frames the payload
//! piece by piece into one bounded buffer while it goes out; a receive reads exactly the wire
//! bytes the framing says are left (never a byte of the next reply) and checks each digest as
//! it completes, so every digest is computed while the bytes stream, never in a second pass.
//! A bad digest on a receive is [`Error::DigestMismatch`] and nothing of the transfer is
//! returned; the connection is dropped, not pooled.

use crate::conn::Conn;
use crate::depot::encode;
use crate::error::{Error, Result};
use crate::handle::{finish_write, len_u64, read_load_header, to_i64, CapHandle};
use crate::proto::capability::CapKind;
use crate::proto::netframe::{FrameDecoder, FrameEncoder, Framing, MAX_HEX_BYTES};
use crate::proto::reply::{self, ChksumInfo};
use crate::proto::request::{ChksumQuery, ChksumSpec, RangeIo, Request, Store};

/// Largest GET_CHKSUM digest body we read: a million SHA-512 digests, 64 GiB of data in
/// 64 KiB blocks. A larger announcement is refused before anything is allocated.
pub const MAX_CHKSUM_BODY_BYTES: u64 = 64 << 20;
/// Payload bytes framed per send, and wire bytes read per receive: what a checksummed
/// transfer holds in memory besides the caller's data.
pub const FRAME_PIECE_BYTES: usize = 256 * 1024;

/// Checks the GET_CHKSUM header fields agree: nothing negative and `nbytes = nblocks ×
/// digest bytes`.
fn check_info(info: &ChksumInfo) -> Result<()> {
    let fields = [i64::from(info.cstype), info.digest_bytes, info.blocksize, info.nblocks];
    let consistent = info.nblocks.checked_mul(info.digest_bytes) == Some(info.nbytes);
    if fields.iter().any(|n| *n < 0) || !consistent {
        return Err(Error::protocol("checksum reply fields are inconsistent"));
    }
    Ok(())
}

impl CapHandle<'_> {
    fn chksum_query(&self, flag: i32) -> ChksumQuery {
        let cap = self.capability();
        ChksumQuery {
            version: 1,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            flag,
            timeout_s: self.server_timeout_s(),
        }
    }

    /// GET_CHKSUM on the manage capability: the allocation's disk-digest header and, unless
    /// `info_only`, its digests (`nbytes`, block 0 first; at most
    /// [`MAX_CHKSUM_BODY_BYTES`]). A plain allocation answers `-63` (`Error::Ibp`).
    pub fn get_chksum(&self, info_only: bool) -> Result<(ChksumInfo, Option<Vec<u8>>)> {
        self.need(CapKind::Manage)?;
        let line = encode(&Request::GetChksum(self.chksum_query(i32::from(info_only))));
        let depot = self.depot();
        depot.call(depot.config().op_timeout, true, |conn| {
            conn.send(&line)?;
            let info = conn.read_reply(reply::parse_chksum_info)?;
            check_info(&info)?;
            if info_only {
                return Ok((info, None));
            }
            let n = u64::try_from(info.nbytes)
                .ok()
                .filter(|n| *n <= MAX_CHKSUM_BODY_BYTES)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Error::protocol("checksum body length out of range"))?;
            let mut body = vec![0; n];
            conn.read_exact(&mut body)?;
            Ok((info, Some(body)))
        })
    }

    /// VALIDATE_CHKSUM on the manage capability: the depot re-reads the allocation and counts
    /// the blocks whose disk digest no longer matches (`correct`: and rewrites the digests).
    pub fn validate_chksum(&self, correct: bool) -> Result<u64> {
        self.need(CapKind::Manage)?;
        let req = Request::ValidateChksum(self.chksum_query(i32::from(correct)));
        let bad = self.line_call(&req, true, reply::parse_count)?;
        u64::try_from(bad).map_err(|_| Error::protocol("negative bad-block count"))
    }

    /// STORE_CHKSUM: appends `data`, framed with `spec`'s digests; returns the bytes the depot
    /// confirmed. A digest the depot finds bad comes back as `-63` (`Error::Ibp`).
    pub fn store_chksum(&self, data: &[u8], spec: ChksumSpec) -> Result<u64> {
        self.need(CapKind::Write)?;
        let framing = Framing::from_spec(spec)?;
        let len = len_u64(data.len());
        let cap = self.capability();
        let header = encode(&Request::Store(Store {
            version: 1,
            chksum: Some(spec),
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            len: to_i64(len, "length")?,
            timeout_s: self.depot().config().server_timeout_for(len),
        }));
        self.send_framed(&header, &[data], framing)
    }

    fn chksum_range(&self, load: bool, offset: u64, len: u64, spec: ChksumSpec) -> Result<Vec<u8>> {
        let cap = self.capability();
        let io = RangeIo {
            version: 1,
            chksum: Some(spec),
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            offset: to_i64(offset, "offset")?,
            len: to_i64(len, "length")?,
            timeout_s: self.depot().config().server_timeout_for(len),
        };
        Ok(encode(&if load { Request::Load(io) } else { Request::Write(io) }))
    }

    /// WRITE_CHKSUM: writes `data` at `offset`, framed with `spec`'s digests.
    pub fn write_chksum(&self, offset: u64, data: &[u8], spec: ChksumSpec) -> Result<u64> {
        self.need(CapKind::Write)?;
        let framing = Framing::from_spec(spec)?;
        let header = self.chksum_range(false, offset, len_u64(data.len()), spec)?;
        self.send_framed(&header, &[data], framing)
    }

    /// LOAD_CHKSUM: `len` bytes at `offset`, each `spec.blocksize` block checked against the
    /// digest the depot sends after it. A bad one is [`Error::DigestMismatch`].
    pub fn load_chksum(&self, offset: u64, len: u64, spec: ChksumSpec) -> Result<Vec<u8>> {
        self.need(CapKind::Read)?;
        let framing = Framing::from_spec(spec)?;
        let size =
            usize::try_from(len).map_err(|_| Error::InvalidArgument("length too large".into()))?;
        let wire = wire_len(framing, len)?;
        let header = self.chksum_range(true, offset, len, spec)?;
        let depot = self.depot();
        depot.call(depot.config().op_budget(wire), true, |conn| {
            conn.send(&header)?;
            read_load_header(conn, len)?;
            let mut out = Vec::with_capacity(size);
            recv_framed(conn, framing, len, &mut out)?;
            Ok(out)
        })
    }

    /// Sends `header` and the framed concatenation of `parts` without waiting for the ack
    /// (like [`CapHandle::store`]), then reads both replies.
    pub(super) fn send_framed(
        &self,
        header: &[u8],
        parts: &[&[u8]],
        framing: Framing,
    ) -> Result<u64> {
        let total = parts.iter().try_fold(0u64, |acc, p| acc.checked_add(len_u64(p.len())));
        let total = total.ok_or_else(|| Error::InvalidArgument("lengths overflow".into()))?;
        let wire = wire_len(framing, total)?;
        let depot = self.depot();
        depot.call(depot.config().op_budget(wire), false, |conn| {
            let sent = conn.send(header).and_then(|()| send_frames(conn, parts, framing, total));
            if let Err(e) = sent {
                return Err(conn.explain_send_failure(e));
            }
            finish_write(conn, total)
        })
    }
}

/// Wire bytes of a framed payload of `len` bytes, refused past `u64`.
fn wire_len(framing: Framing, len: u64) -> Result<u64> {
    framing
        .wire_len(len)
        .ok_or_else(|| Error::InvalidArgument("length too large for checksum framing".into()))
}

/// Frames `parts` (in order, `total` bytes together) into a bounded buffer and sends it.
fn send_frames(conn: &mut Conn, parts: &[&[u8]], framing: Framing, total: u64) -> Result<()> {
    let mut enc = FrameEncoder::new(framing, total);
    let bound = 2 * FRAME_PIECE_BYTES + MAX_HEX_BYTES;
    let mut buf =
        Vec::with_capacity(usize::try_from(wire_len(framing, total)?).unwrap_or(bound).min(bound));
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            // At most one digest per push, so `buf` stays under `bound`.
            let n = enc.next_take(rest.len().min(FRAME_PIECE_BYTES));
            if n == 0 {
                return Err(Error::protocol("more payload than announced"));
            }
            enc.push(&rest[..n], &mut buf)?;
            rest = &rest[n..];
            if buf.len() >= FRAME_PIECE_BYTES {
                conn.send(&buf)?;
                buf.clear();
            }
        }
    }
    if !buf.is_empty() {
        conn.send(&buf)?;
    }
    Ok(())
}

/// Reads a framed payload of `total` bytes into `out`, checking every digest. Reads exactly
/// the framed length, in pieces of at most [`FRAME_PIECE_BYTES`].
pub(super) fn recv_framed(
    conn: &mut Conn,
    framing: Framing,
    total: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut dec = FrameDecoder::new(framing, total);
    let first = usize::try_from(dec.wire_left()).unwrap_or(FRAME_PIECE_BYTES);
    let mut piece = vec![0; first.min(FRAME_PIECE_BYTES)];
    while !dec.is_done() {
        let want = piece.len().min(usize::try_from(dec.wire_left()).unwrap_or(usize::MAX));
        conn.read_exact(&mut piece[..want])?;
        dec.feed(&piece[..want], out)?;
    }
    Ok(())
}
