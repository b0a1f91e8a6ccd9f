//! VEC_WRITE (33/34) and VEC_READ (35/36): scatter write and gather read of up to
//! [`IOVEC_MAX`] spans in one command (PROTOCOL.md §9).
//!
//! The data travels in list order, whatever the offsets: a read of `(100, 10), (0, 10)` gets
//! the bytes at 100 first. The list is checked here before anything is built or sent: 1 to
//! [`IOVEC_MAX`] spans, every offset and length a wire integer, the total free of overflow; a
//! read's reply must announce exactly that total. The `_CHKSUM` forms run the §10 framing
//! over the whole payload in list order.

use super::chksum::recv_framed;
use crate::depot::encode;
use crate::error::{Error, Result};
use crate::handle::{len_u64, read_load_header, to_i64, CapHandle};
use crate::proto::capability::CapKind;
use crate::proto::netframe::Framing;
use crate::proto::request::{ChksumSpec, IoSpan, Request, VecIo, IOVEC_MAX};

/// The wire list for `spans` and their total length, refused before anything is allocated
/// when the count is out of range or a number does not fit.
fn iovec(spans: impl ExactSizeIterator<Item = (u64, u64)>) -> Result<(Vec<IoSpan>, u64)> {
    if spans.len() == 0 || spans.len() > IOVEC_MAX {
        return Err(Error::InvalidArgument(format!(
            "a vector needs 1 to {IOVEC_MAX} spans, not {}",
            spans.len()
        )));
    }
    let mut list = Vec::with_capacity(spans.len());
    let mut total = 0u64;
    for (offset, len) in spans {
        total = total
            .checked_add(len)
            .filter(|t| i64::try_from(*t).is_ok())
            .ok_or_else(|| Error::InvalidArgument("span lengths overflow".into()))?;
        list.push(IoSpan { offset: to_i64(offset, "offset")?, len: to_i64(len, "length")? });
    }
    Ok((list, total))
}

impl CapHandle<'_> {
    fn vec_request(
        &self,
        read: bool,
        iovec: Vec<IoSpan>,
        chksum: Option<ChksumSpec>,
        total: u64,
    ) -> Vec<u8> {
        let cap = self.capability();
        let io = VecIo {
            version: 1,
            chksum,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            iovec,
            timeout_s: self.depot().config().server_timeout_for(total),
        };
        encode(&if read { Request::VecRead(io) } else { Request::VecWrite(io) })
    }

    /// VEC_WRITE: writes each `(offset, data)` span, in list order (a later span wins where
    /// spans overlap); returns the bytes the depot confirmed (their sum).
    pub fn vec_write(&self, spans: &[(u64, &[u8])]) -> Result<u64> {
        self.vec_write_with(spans, None)
    }

    /// VEC_WRITE_CHKSUM: [`vec_write`](Self::vec_write) with the spans' bytes framed, in list
    /// order, with `spec`'s digests.
    pub fn vec_write_chksum(&self, spans: &[(u64, &[u8])], spec: ChksumSpec) -> Result<u64> {
        self.vec_write_with(spans, Some(spec))
    }

    fn vec_write_with(&self, spans: &[(u64, &[u8])], chksum: Option<ChksumSpec>) -> Result<u64> {
        self.need(CapKind::Write)?;
        let framing = chksum.map(Framing::from_spec).transpose()?;
        let (list, total) = iovec(spans.iter().map(|(o, d)| (*o, len_u64(d.len()))))?;
        let header = self.vec_request(false, list, chksum, total);
        let parts: Vec<&[u8]> = spans.iter().map(|(_, d)| *d).collect();
        if let Some(framing) = framing {
            return self.send_framed(&header, &parts, framing);
        }
        let depot = self.depot();
        depot.call(depot.config().op_budget(total), false, |conn| {
            let mut sent = conn.send(&header);
            for part in &parts {
                sent = sent.and_then(|()| conn.send(part));
            }
            if let Err(e) = sent {
                return Err(conn.explain_send_failure(e));
            }
            crate::handle::finish_write(conn, total)
        })
    }

    /// VEC_READ: the bytes of each `(offset, len)` span, one buffer per span, in list order.
    pub fn vec_read(&self, spans: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        self.vec_read_with(spans, None)
    }

    /// VEC_READ_CHKSUM: [`vec_read`](Self::vec_read) with every `spec.blocksize` block of the
    /// spans' bytes (in list order) checked against the depot's digest; a bad one is
    /// [`Error::DigestMismatch`] with its offset in those bytes.
    pub fn vec_read_chksum(&self, spans: &[(u64, u64)], spec: ChksumSpec) -> Result<Vec<Vec<u8>>> {
        self.vec_read_with(spans, Some(spec))
    }

    fn vec_read_with(
        &self,
        spans: &[(u64, u64)],
        chksum: Option<ChksumSpec>,
    ) -> Result<Vec<Vec<u8>>> {
        self.need(CapKind::Read)?;
        let framing = chksum.map(Framing::from_spec).transpose()?;
        let (list, total) = iovec(spans.iter().copied())?;
        let sizes = spans
            .iter()
            .map(|(_, len)| usize::try_from(*len))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| Error::InvalidArgument("length too large".into()))?;
        let all_size = usize::try_from(total)
            .map_err(|_| Error::InvalidArgument("length too large".into()))?;
        let wire = match framing {
            Some(f) => f
                .wire_len(total)
                .ok_or_else(|| Error::InvalidArgument("length too large".into()))?,
            None => total,
        };
        let header = self.vec_request(true, list, chksum, total);
        let depot = self.depot();
        depot.call(depot.config().op_budget(wire), true, |conn| {
            conn.send(&header)?;
            read_load_header(conn, total)?;
            let Some(framing) = framing else {
                let mut out = Vec::with_capacity(sizes.len());
                for size in &sizes {
                    let mut data = vec![0; *size];
                    conn.read_exact(&mut data)?;
                    out.push(data);
                }
                return Ok(out);
            };
            let mut all = Vec::with_capacity(all_size);
            recv_framed(conn, framing, total, &mut all)?;
            let mut rest = all.as_slice();
            Ok(sizes
                .iter()
                .map(|size| {
                    let (span, after) = rest.split_at(*size);
                    rest = after;
                    span.to_vec()
                })
                .collect())
        })
    }
}
