//! Our documented extensions to the command set, on command numbers no existing IBP client or
//! depot uses (ACCRE stops at 36 and uses 90–100; LoCI stops at 12), so old clients never
//! trip over them and old depots answer them with −43, which our client takes as "fall back
//! to plain SENDs".
//!
//! * `V 60 K TK offset len strategy streams T dest_T dest_client_T n CAP1 … CAPn` —
//!   MCOPY_EXT: copy `[offset, +len)` of the allocation behind read key K, appended, to every
//!   target write capability. `strategy` is `fanout` (the source reads each byte once and
//!   streams it to all targets at the same time) or `chain` (source → CAP1 → CAP2 → …, each
//!   hop forwarding while it stores); `streams` (1–64) splits a fan-out over parallel streams
//!   per target. Reply: `1 n st1 nbytes1 … stN nbytesN \n`, one status (1 or an IBP error)
//!   and byte count per target, in order.
//! * `V 61 K TK len T dest_T dest_client_T m NEXT1 … NEXTm` + `len` bytes after the `1 \n`
//!   ack — CHAIN_STORE: append the payload to the allocation behind write key K and forward
//!   it, while storing, to NEXT1 as a CHAIN_STORE carrying NEXT2…NEXTm. Reply after the data:
//!   `1 (m+1) st_self nbytes_self st_1 nbytes_1 … \n`.

use super::parse::{collect_tokens, parse_version, Fields};
use super::*;

/// Command number of MCOPY_EXT.
pub const MCOPY_EXT: i32 = 60;
/// Command number of CHAIN_STORE.
pub const CHAIN_STORE: i32 = 61;
/// Most parallel streams per target.
pub const MAX_STREAMS: i64 = 64;

/// How MCOPY_EXT moves the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Fanout,
    Chain,
}

impl Strategy {
    pub fn word(self) -> &'static str {
        match self {
            Strategy::Fanout => "fanout",
            Strategy::Chain => "chain",
        }
    }
}

/// MCOPY_EXT (60).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McopyExt {
    pub version: u8,
    /// Read key of the source.
    pub key: KeyRef,
    pub typekey: String,
    pub offset: i64,
    pub len: i64,
    pub strategy: Strategy,
    pub streams: i64,
    pub timeout_s: i64,
    pub dest_timeout_s: i64,
    pub dest_client_timeout_s: i64,
    /// Target write capabilities, 1..=[`MCOPY_MAX_TARGETS`].
    pub targets: Vec<Capability>,
}

/// CHAIN_STORE (61).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStore {
    pub version: u8,
    /// Write key of this hop's allocation.
    pub key: KeyRef,
    pub typekey: String,
    pub len: i64,
    pub timeout_s: i64,
    pub dest_timeout_s: i64,
    pub dest_client_timeout_s: i64,
    /// The rest of the chain, 0..[`MCOPY_MAX_TARGETS`].
    pub next: Vec<Capability>,
}

/// An extension request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtRequest {
    McopyExt(McopyExt),
    ChainStore(ChainStore),
}

/// The command number of a line, if it is one of the extensions (cheap pre-check).
pub fn ext_command(line: &[u8]) -> Option<i32> {
    let mut t = crate::proto::frame::tokens(line);
    let _version = t.next()?;
    let n: i32 = std::str::from_utf8(t.next()?).ok()?.parse().ok()?;
    (n == MCOPY_EXT || n == CHAIN_STORE).then_some(n)
}

fn bad(reason: &'static str) -> ParseError {
    ParseError::new(ErrorCode::BadFormat, reason)
}

fn target_list(f: &mut Fields<'_, '_>, min: usize) -> Result<Vec<Capability>, ParseError> {
    let n = f.int("target count is not an integer")?;
    if n < min as i64 || n > MCOPY_MAX_TARGETS as i64 {
        return Err(bad("target count out of range"));
    }
    // The count is bounded above; check the tokens are really there before building the list.
    f.expect_count(f.pos + n as usize)?;
    (0..n).map(|_| f.capability()).collect()
}

/// Parses an extension line.
pub fn parse_ext(line: &[u8]) -> Result<ExtRequest, ParseError> {
    let toks = collect_tokens(line)?;
    let version = parse_version(toks.first().copied())?;
    let mut f = Fields { toks: &toks, pos: 2 };
    match ext_command(line) {
        Some(MCOPY_EXT) => {
            let key = f.key()?;
            let typekey = f.typekey()?;
            let offset = f.int("offset is not an integer")?;
            let len = f.int("length is not an integer")?;
            let strategy = match f.next()? {
                b"fanout" => Strategy::Fanout,
                b"chain" => Strategy::Chain,
                _ => return Err(bad("strategy must be fanout or chain")),
            };
            let streams = f.int("streams is not an integer")?;
            if !(1..=MAX_STREAMS).contains(&streams) {
                return Err(ParseError::new(ErrorCode::InvalidParameter, "streams out of range"));
            }
            let timeout_s = f.timeout()?;
            let dest_timeout_s = f.timeout()?;
            let dest_client_timeout_s = f.timeout()?;
            let targets = target_list(&mut f, 1)?;
            Ok(ExtRequest::McopyExt(McopyExt {
                version,
                key,
                typekey,
                offset,
                len,
                strategy,
                streams,
                timeout_s,
                dest_timeout_s,
                dest_client_timeout_s,
                targets,
            }))
        }
        Some(CHAIN_STORE) => {
            let key = f.key()?;
            let typekey = f.typekey()?;
            let len = f.int("length is not an integer")?;
            let timeout_s = f.timeout()?;
            let dest_timeout_s = f.timeout()?;
            let dest_client_timeout_s = f.timeout()?;
            let next = target_list(&mut f, 0)?;
            Ok(ExtRequest::ChainStore(ChainStore {
                version,
                key,
                typekey,
                len,
                timeout_s,
                dest_timeout_s,
                dest_client_timeout_s,
                next,
            }))
        }
        _ => Err(ParseError::new(ErrorCode::UnknownFunction, "not an extension command")),
    }
}

fn push(out: &mut Vec<u8>, tok: &str) {
    out.push(b' ');
    out.extend_from_slice(tok.as_bytes());
}

impl ExtRequest {
    /// The canonical wire line, `\n` terminated.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ExtRequest::McopyExt(r) => {
                out.extend_from_slice(format!("{} {MCOPY_EXT}", r.version).as_bytes());
                push(out, &r.key.to_token());
                push(out, &r.typekey);
                for n in [r.offset, r.len] {
                    push(out, &n.to_string());
                }
                push(out, r.strategy.word());
                for n in [r.streams, r.timeout_s, r.dest_timeout_s, r.dest_client_timeout_s] {
                    push(out, &n.to_string());
                }
                push(out, &r.targets.len().to_string());
                for c in &r.targets {
                    push(out, &c.to_url());
                }
            }
            ExtRequest::ChainStore(r) => {
                out.extend_from_slice(format!("{} {CHAIN_STORE}", r.version).as_bytes());
                push(out, &r.key.to_token());
                push(out, &r.typekey);
                for n in [r.len, r.timeout_s, r.dest_timeout_s, r.dest_client_timeout_s] {
                    push(out, &n.to_string());
                }
                push(out, &r.next.len().to_string());
                for c in &r.next {
                    push(out, &c.to_url());
                }
            }
        }
        out.extend_from_slice(b" \n");
    }
}

/// Per-target results of an MCOPY_EXT or CHAIN_STORE reply: `1 n (status nbytes)×n`.
pub fn encode_results(out: &mut Vec<u8>, results: &[(i32, i64)]) {
    out.extend_from_slice(format!("1 {}", results.len()).as_bytes());
    for (st, n) in results {
        out.extend_from_slice(format!(" {st} {n}").as_bytes());
    }
    out.extend_from_slice(b" \n");
}

/// Reads an MCOPY_EXT/CHAIN_STORE reply into (status, bytes) per target.
pub fn parse_results(line: &[u8]) -> Result<Vec<(i32, i64)>, crate::proto::ReplyError> {
    use crate::proto::ReplyError;
    let toks = crate::proto::reply::parse_status_line(line)?;
    let n: usize =
        toks.first().and_then(|t| t.parse().ok()).ok_or(ReplyError::Malformed("result count"))?;
    if n > MCOPY_MAX_TARGETS + 1 || toks.len() != 1 + 2 * n {
        return Err(ReplyError::Malformed("result list length"));
    }
    (0..n)
        .map(|i| {
            let st = toks[1 + 2 * i].parse().map_err(|_| ReplyError::Malformed("result status"))?;
            let nb = toks[2 + 2 * i].parse().map_err(|_| ReplyError::Malformed("result bytes"))?;
            Ok((st, nb))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CapKind;

    fn cap(port: u16, key: &str) -> Capability {
        Capability::new("127.0.0.1", port, "1", key, "7", CapKind::Write).expect("valid cap")
    }

    #[test]
    fn round_trips() {
        let m = ExtRequest::McopyExt(McopyExt {
            version: 1,
            key: KeyRef::new(Some("1".into()), "abc-_").expect("key"),
            typekey: "9".into(),
            offset: 0,
            len: 1 << 30,
            strategy: Strategy::Chain,
            streams: 4,
            timeout_s: 30,
            dest_timeout_s: 30,
            dest_client_timeout_s: 60,
            targets: vec![cap(7001, "k1"), cap(7002, "k2")],
        });
        let c = ExtRequest::ChainStore(ChainStore {
            version: 1,
            key: KeyRef::new(Some("1".into()), "xyz").expect("key"),
            typekey: "9".into(),
            len: 5,
            timeout_s: 3,
            dest_timeout_s: 4,
            dest_client_timeout_s: 5,
            next: vec![],
        });
        for r in [m, c] {
            let mut line = Vec::new();
            r.encode(&mut line);
            assert!(ext_command(&line).is_some());
            assert_eq!(parse_ext(&line).expect("parses"), r);
        }
    }

    #[test]
    fn bounds_and_errors() {
        assert_eq!(
            parse_ext(b"1 60 1#k tk 0 10 fanout 1 30 30 30 0\n").map_err(|e| e.code),
            Err(ErrorCode::BadFormat)
        );
        assert_eq!(
            parse_ext(b"1 60 1#k tk 0 10 fanout 99 30 30 30 1 x\n").map_err(|e| e.code),
            Err(ErrorCode::InvalidParameter)
        );
        assert!(parse_ext(b"1 60 1#k tk 0 10 star 1 30 30 30 1 ibp://h:1/1#k/1/WRITE\n").is_err());
        assert!(parse_ext(b"1 61 1#k tk 10 30 30 30 99999999999\n").is_err());
        assert!(
            parse_ext(b"1 61 1#k tk 10 30 30 30 2 ibp://h:1/1#k/1/WRITE\n").is_err(),
            "count past tokens"
        );
        let mut out = Vec::new();
        encode_results(&mut out, &[(1, 10), (-4, 0)]);
        assert_eq!(parse_results(&out).expect("parses"), vec![(1, 10), (-4, 0)]);
        assert!(parse_results(b"1 3 1 10\n").is_err());
    }
}
