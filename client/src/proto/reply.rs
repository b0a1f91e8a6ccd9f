//! Replies: depot-side encoders and client-side parsers for every reply line of
//! PROTOCOL.md §7 and §9.
//!
//! Encoders write ACCRE's form (`"%d \n"`: status, a space, newline) into a caller's buffer.
//! Parsers go by tokens, never exact bytes, because LoCI omits the trailing space. A negative
//! first token is an IBP error; `-66 <secs>` is ACCRE's close notice and becomes
//! [`ReplyError::Backoff`] so the client can wait and retry.
//!
//! # Layout
//! * this file: [`ReplyError`], status-line parsing, the simple encoders and parsers;
//! * `inq`: the ST_INQ body ([`InqBody`]) and the v0 one-line INQ ([`V0Inq`]).

mod inq;

use std::fmt;

pub use inq::{
    parse_inq_body, parse_v0_inq, status_inq, v0_inq, InqBody, V0Inq, MAX_INQ_BODY_BYTES,
};

use super::capability::{CapKind, Capability};
use super::error::{ErrorCode, IBP_OK};
use super::frame::{push_int, tokens, MAX_LINE_BYTES};

/// Longest back-off a depot encoder will announce, in seconds (ACCRE's `backoff_max` is 30).
pub const MAX_ANNOUNCED_BACKOFF_S: f64 = 3600.0;

/// Why a reply line is not the success the caller expected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplyError {
    /// The depot answered with a known IBP error code.
    Ibp(ErrorCode),
    /// A negative status outside §7.1, preserved raw.
    UnknownCode(i32),
    /// `-66 <secs>`: the depot is closing the connection; retry after that many seconds.
    Backoff(f64),
    /// Not a reply we understand (wrong token count, not a number, bad capability…).
    Malformed(&'static str),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Ibp(code) => write!(f, "depot refused: {code}"),
            ReplyError::UnknownCode(code) => write!(f, "depot refused with unknown code {code}"),
            ReplyError::Backoff(secs) => write!(f, "depot asked to back off for {secs:.3} s"),
            ReplyError::Malformed(why) => write!(f, "malformed reply: {why}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Maps a negative wire status to its error.
pub fn error_from_status(status: i32, rest: &[&str]) -> ReplyError {
    if status == ErrorCode::OutOfSockets.code() {
        let secs = rest.first().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        return ReplyError::Backoff(if secs.is_finite() && secs > 0.0 { secs } else { 0.0 });
    }
    match ErrorCode::from_code(status) {
        Some(code) => ReplyError::Ibp(code),
        None => ReplyError::UnknownCode(status),
    }
}

/// Splits a status line: `Ok(tokens after the leading 1)` or the error it reports.
pub fn parse_status_line(line: &[u8]) -> Result<Vec<&str>, ReplyError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ReplyError::Malformed("reply line too long"));
    }
    let text = std::str::from_utf8(line).map_err(|_| ReplyError::Malformed("reply not ASCII"))?;
    let mut toks = tokens(text.as_bytes()).map(|t| {
        // Tokens are slices of valid UTF-8 split at ASCII separators.
        std::str::from_utf8(t).unwrap_or_default()
    });
    let status = toks.next().ok_or(ReplyError::Malformed("empty reply"))?;
    let rest: Vec<&str> = toks.collect();
    match status.parse::<i32>() {
        Ok(IBP_OK) => Ok(rest),
        Ok(n) if n < 0 => Err(error_from_status(n, &rest)),
        Ok(_) => Err(ReplyError::Malformed("status is neither 1 nor negative")),
        Err(_) if is_negative_integer(status) => Err(ReplyError::UnknownCode(i32::MIN)),
        Err(_) => Err(ReplyError::Malformed("status is not an integer")),
    }
}

fn is_negative_integer(s: &str) -> bool {
    s.strip_prefix('-').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn int<T: std::str::FromStr>(tok: &str, why: &'static str) -> Result<T, ReplyError> {
    tok.parse().map_err(|_| ReplyError::Malformed(why))
}

fn exactly<'a, const N: usize>(
    rest: &[&'a str],
    why: &'static str,
) -> Result<[&'a str; N], ReplyError> {
    <[&str; N]>::try_from(rest).map_err(|_| ReplyError::Malformed(why))
}

/// `1 \n`: the generic success (and the first ack of STORE/WRITE).
pub fn ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"1 \n");
}

/// `<code> \n`.
pub fn error(out: &mut Vec<u8>, code: ErrorCode) {
    push_int(out, i64::from(code.code()));
    out.extend_from_slice(b" \n");
}

/// `-66 <secs>\n`: ACCRE's notice before it closes a connection (six decimals like `%f`).
pub fn close_notice(out: &mut Vec<u8>, backoff_s: f64) {
    let secs =
        if backoff_s.is_finite() { backoff_s.clamp(0.0, MAX_ANNOUNCED_BACKOFF_S) } else { 0.0 };
    out.extend_from_slice(format!("{} {secs:.6}\n", ErrorCode::OutOfSockets.code()).as_bytes());
}

/// `1 <read> <write> <manage> \n`: ALLOCATE, SPLIT, ALIAS, RENAME.
pub fn caps(out: &mut Vec<u8>, caps: &[Capability; 3]) {
    out.push(b'1');
    for cap in caps {
        out.push(b' ');
        out.extend_from_slice(cap.to_url().as_bytes());
    }
    out.extend_from_slice(b" \n");
}

/// `1 <n> \n`: STORE/WRITE final reply, LOAD header, copies, VALIDATE.
pub fn count(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(b"1 ");
    push_int(out, n);
    out.extend_from_slice(b" \n");
}

/// Accepts a bare success (`1 \n`); extra tokens are tolerated.
pub fn parse_ok(line: &[u8]) -> Result<(), ReplyError> {
    parse_status_line(line).map(|_| ())
}

/// Reads `1 <n>`.
pub fn parse_count(line: &[u8]) -> Result<i64, ReplyError> {
    let [n] = exactly(&parse_status_line(line)?, "expected `1 <count>`")?;
    int(n, "count is not an integer")
}

/// Reads `1 <read> <write> <manage>`, checking the three kinds are in that order.
pub fn parse_caps(line: &[u8]) -> Result<[Capability; 3], ReplyError> {
    let toks = exactly::<3>(&parse_status_line(line)?, "expected three capabilities")?;
    let mut caps = Vec::with_capacity(3);
    for (tok, kind) in toks.iter().zip([CapKind::Read, CapKind::Write, CapKind::Manage]) {
        let cap = Capability::parse(tok)
            .map_err(|_| ReplyError::Malformed("invalid capability in reply"))?;
        if cap.kind != kind {
            return Err(ReplyError::Malformed("capabilities not in READ WRITE MANAGE order"));
        }
        caps.push(cap);
    }
    caps.try_into().map_err(|_| ReplyError::Malformed("expected three capabilities"))
}

/// MANAGE PROBE reply fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    /// Read reference count.
    pub read_refs: i64,
    /// Write reference count.
    pub write_refs: i64,
    /// Current size (highest byte written).
    pub size: i64,
    /// Maximum size.
    pub max_size: i64,
    /// Lease left.
    pub seconds_left: i64,
    /// Raw reliability.
    pub reliability: i32,
    /// Raw allocation type.
    pub atype: i32,
}

/// `1 <r> <w> <size> <max> <secs> <rel> <type> \n`.
pub fn probe(out: &mut Vec<u8>, p: &ProbeReply) {
    out.push(b'1');
    for n in [p.read_refs, p.write_refs, p.size, p.max_size, p.seconds_left] {
        out.push(b' ');
        push_int(out, n);
    }
    for n in [p.reliability, p.atype] {
        out.push(b' ');
        push_int(out, i64::from(n));
    }
    out.extend_from_slice(b" \n");
}

/// Reads a PROBE reply.
pub fn parse_probe(line: &[u8]) -> Result<ProbeReply, ReplyError> {
    let [r, w, size, max, secs, rel, atype] =
        exactly(&parse_status_line(line)?, "expected seven probe fields")?;
    let why = "probe field is not an integer";
    Ok(ProbeReply {
        read_refs: int(r, why)?,
        write_refs: int(w, why)?,
        size: int(size, why)?,
        max_size: int(max, why)?,
        seconds_left: int(secs, why)?,
        reliability: int(rel, why)?,
        atype: int(atype, why)?,
    })
}

/// ALIAS_MANAGE PROBE reply fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasProbeReply {
    /// Read reference count.
    pub read_refs: i64,
    /// Write reference count.
    pub write_refs: i64,
    /// Window start in the master.
    pub offset: i64,
    /// Window length.
    pub len: i64,
    /// Lease left.
    pub seconds_left: i64,
}

/// `1 <r> <w> <offset> <len> <secs> \n`.
pub fn alias_probe(out: &mut Vec<u8>, p: &AliasProbeReply) {
    out.push(b'1');
    for n in [p.read_refs, p.write_refs, p.offset, p.len, p.seconds_left] {
        out.push(b' ');
        push_int(out, n);
    }
    out.extend_from_slice(b" \n");
}

/// Reads an ALIAS_MANAGE PROBE reply.
pub fn parse_alias_probe(line: &[u8]) -> Result<AliasProbeReply, ReplyError> {
    let [r, w, offset, len, secs] =
        exactly(&parse_status_line(line)?, "expected five alias probe fields")?;
    let why = "alias probe field is not an integer";
    Ok(AliasProbeReply {
        read_refs: int(r, why)?,
        write_refs: int(w, why)?,
        offset: int(offset, why)?,
        len: int(len, why)?,
        seconds_left: int(secs, why)?,
    })
}

/// GET_CHKSUM reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChksumInfo {
    /// Raw checksum type.
    pub cstype: i32,
    /// Bytes per binary digest.
    pub digest_bytes: i64,
    /// Block size in bytes.
    pub blocksize: i64,
    /// Number of blocks.
    pub nblocks: i64,
    /// Digest bytes that follow (unless info_only).
    pub nbytes: i64,
}

/// `1 <cstype> <digest bytes> <blocksize> <nblocks> <nbytes>\n` (observed `1 4 16 65536 1 16`).
pub fn chksum_info(out: &mut Vec<u8>, c: &ChksumInfo) {
    out.push(b'1');
    for n in [i64::from(c.cstype), c.digest_bytes, c.blocksize, c.nblocks, c.nbytes] {
        out.push(b' ');
        push_int(out, n);
    }
    out.push(b'\n');
}

/// Reads a GET_CHKSUM header.
pub fn parse_chksum_info(line: &[u8]) -> Result<ChksumInfo, ReplyError> {
    let [cs, db, bs, nb, nbytes] =
        exactly(&parse_status_line(line)?, "expected five checksum fields")?;
    let why = "checksum field is not an integer";
    Ok(ChksumInfo {
        cstype: int(cs, why)?,
        digest_bytes: int(db, why)?,
        blocksize: int(bs, why)?,
        nblocks: int(nb, why)?,
        nbytes: int(nbytes, why)?,
    })
}

/// `1 RID1 RID2 … \n` (ST_RES).
pub fn status_res<S: AsRef<str>>(out: &mut Vec<u8>, rids: &[S]) {
    out.push(b'1');
    for rid in rids {
        out.push(b' ');
        out.extend_from_slice(rid.as_ref().as_bytes());
    }
    out.extend_from_slice(b" \n");
}

/// Reads an ST_RES reply.
pub fn parse_res(line: &[u8]) -> Result<Vec<String>, ReplyError> {
    Ok(parse_status_line(line)?.into_iter().map(str::to_owned).collect())
}

/// `1\n`, the text lines, `END\n` (ST_VERSION). A text line equal to `END` is dropped so the
/// terminator stays unambiguous.
pub fn status_version(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"1\n");
    for line in text.lines().filter(|l| l.trim() != "END") {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"END\n");
}

/// True for the line that ends an ST_VERSION reply.
pub fn is_version_end(line: &[u8]) -> bool {
    let trimmed: Vec<&[u8]> = tokens(line).collect();
    trimmed == [b"END"]
}

#[cfg(test)]
mod tests;
