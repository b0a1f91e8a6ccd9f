//! [`parse_request`]: one bounded line in, one typed [`Request`] out.
//!
//! Shape: tokenize (bounded by [`MAX_TOKENS`]), read version and command number, check the
//! token count the command needs, then read the fields in order with a [`Fields`] cursor.
//! Counts are checked before any field is read, so a short or long line is always `-21`.

use super::*;
use crate::proto::capability::{is_valid_rid, is_valid_typekey};
use crate::proto::frame::{tokens, MAX_LINE_BYTES};

const fn bad(reason: &'static str) -> ParseError {
    ParseError::new(ErrorCode::BadFormat, reason)
}

const WRONG_COUNT: ParseError = bad("wrong number of tokens for this command");

/// Parses one command line (with or without its `\n`).
pub fn parse_request(line: &[u8]) -> Result<Request, ParseError> {
    let toks = collect_tokens(line)?;
    let version = parse_version(toks.first().copied())?;
    let number = parse_command_number(toks.get(1).copied())?;
    let f = Fields { toks: &toks, pos: 2 };
    match number {
        cmd::ALLOCATE => allocate(version, f, false),
        cmd::ALLOCATE_CHKSUM => allocate(version, f, true),
        cmd::STORE => store(version, f, false),
        cmd::STORE_CHKSUM => store(version, f, true),
        cmd::WRITE => range_io(version, f, false).map(Request::Write),
        cmd::WRITE_CHKSUM => range_io(version, f, true).map(Request::Write),
        cmd::LOAD => range_io(version, f, false).map(Request::Load),
        cmd::LOAD_CHKSUM => range_io(version, f, true).map(Request::Load),
        cmd::MANAGE => manage(version, f),
        cmd::STATUS => status(version, f),
        cmd::SEND => depot_copy(version, f, false).map(Request::Send),
        cmd::SEND_CHKSUM => depot_copy(version, f, true).map(Request::Send),
        cmd::PHOEBUS_SEND => depot_copy(version, f, false).map(Request::PhoebusSend),
        cmd::PHOEBUS_SEND_CHKSUM => depot_copy(version, f, true).map(Request::PhoebusSend),
        cmd::PUSH => transfer(version, f, false).map(Request::Push),
        cmd::PUSH_CHKSUM => transfer(version, f, true).map(Request::Push),
        cmd::PULL => transfer(version, f, false).map(Request::Pull),
        cmd::PULL_CHKSUM => transfer(version, f, true).map(Request::Pull),
        cmd::ALIAS_ALLOCATE => alias_allocate(version, f),
        cmd::ALIAS_MANAGE => alias_manage(version, f),
        cmd::RENAME => rename(version, f),
        cmd::SPLIT_ALLOCATE => split_allocate(version, f, false),
        cmd::SPLIT_ALLOCATE_CHKSUM => split_allocate(version, f, true),
        cmd::MERGE_ALLOCATE => merge_allocate(version, f),
        cmd::GET_CHKSUM => chksum_query(version, f).map(Request::GetChksum),
        cmd::VALIDATE_CHKSUM => chksum_query(version, f).map(Request::ValidateChksum),
        cmd::VEC_WRITE => vec_io(version, f, false).map(Request::VecWrite),
        cmd::VEC_WRITE_CHKSUM => vec_io(version, f, true).map(Request::VecWrite),
        cmd::VEC_READ => vec_io(version, f, false).map(Request::VecRead),
        cmd::VEC_READ_CHKSUM => vec_io(version, f, true).map(Request::VecRead),
        cmd::MCOPY => mcopy_first_line(version, f),
        _ => Err(ParseError::new(ErrorCode::UnknownFunction, "unknown command number")),
    }
}

/// Parses LoCI's ST_CHANGE follow-up line `<hard MB> <soft MB> <duration>`.
pub fn parse_status_change_values(line: &[u8]) -> Result<(i64, i64, i64), ParseError> {
    let toks = collect_tokens(line)?;
    let mut f = Fields { toks: &toks, pos: 0 };
    f.expect_count(3)?;
    let hard_mb = f.int("hard size is not an integer")?;
    let soft_mb = f.int("soft size is not an integer")?;
    let duration_s = f.int("duration is not an integer")?;
    Ok((hard_mb, soft_mb, duration_s))
}

pub(super) fn collect_tokens(line: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(bad("line too long"));
    }
    let mut toks = Vec::new();
    for tok in tokens(line) {
        if toks.len() == MAX_TOKENS {
            return Err(bad("too many tokens"));
        }
        toks.push(tok);
    }
    Ok(toks)
}

fn is_integer_syntax(tok: &[u8]) -> bool {
    let digits = tok.strip_prefix(b"-").or_else(|| tok.strip_prefix(b"+")).unwrap_or(tok);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

pub(super) fn parse_version(tok: Option<&[u8]>) -> Result<u8, ParseError> {
    let tok = tok.ok_or(bad("empty command line"))?;
    match tok {
        b"0" => Ok(0),
        b"1" => Ok(1),
        _ if is_integer_syntax(tok) => match strict_i64(tok) {
            Some(0) => Ok(0),
            Some(1) => Ok(1),
            _ => Err(ParseError::new(ErrorCode::ProtVers, "unsupported protocol version")),
        },
        _ => Err(bad("version is not an integer")),
    }
}

fn parse_command_number(tok: Option<&[u8]>) -> Result<i32, ParseError> {
    let tok = tok.ok_or(bad("missing command number"))?;
    if !is_integer_syntax(tok) {
        return Err(bad("command number is not an integer"));
    }
    // An integer too large for i32 is just another unknown command.
    Ok(strict_i64(tok).and_then(|n| i32::try_from(n).ok()).unwrap_or(-1))
}

fn strict_i64(tok: &[u8]) -> Option<i64> {
    std::str::from_utf8(tok).ok()?.parse().ok()
}

/// `%ld`-style: an optional sign and at least one digit, anything after ignored, saturating
/// (PROTOCOL.md §6: libdlt sends `0.5`).
pub fn parse_leading_int(tok: &[u8]) -> Option<i64> {
    let (negative, digits) = match tok.first() {
        Some(b'-') => (true, &tok[1..]),
        Some(b'+') => (false, &tok[1..]),
        _ => (false, tok),
    };
    let run = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if run == 0 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in &digits[..run] {
        let d = i64::from(d - b'0');
        value = value.saturating_mul(10);
        value = if negative { value.saturating_sub(d) } else { value.saturating_add(d) };
    }
    Some(value)
}

/// A cursor over the tokens of one line.
pub(super) struct Fields<'t, 'a> {
    pub(super) toks: &'t [&'a [u8]],
    pub(super) pos: usize,
}

impl<'t, 'a> Fields<'t, 'a> {
    pub(super) fn total(&self) -> usize {
        self.toks.len()
    }

    pub(super) fn expect_count(&self, n: usize) -> Result<(), ParseError> {
        if self.toks.len() == n {
            Ok(())
        } else {
            Err(WRONG_COUNT)
        }
    }

    pub(super) fn next(&mut self) -> Result<&'a [u8], ParseError> {
        let tok = self.toks.get(self.pos).copied().ok_or(WRONG_COUNT)?;
        self.pos += 1;
        Ok(tok)
    }

    pub(super) fn peek(&self) -> Option<&'a [u8]> {
        self.toks.get(self.pos).copied()
    }

    pub(super) fn int(&mut self, reason: &'static str) -> Result<i64, ParseError> {
        strict_i64(self.next()?).ok_or(bad(reason))
    }

    pub(super) fn int32(&mut self, reason: &'static str) -> Result<i32, ParseError> {
        let tok = self.next()?;
        std::str::from_utf8(tok).ok().and_then(|s| s.parse().ok()).ok_or(bad(reason))
    }

    pub(super) fn timeout(&mut self) -> Result<i64, ParseError> {
        parse_leading_int(self.next()?).ok_or(bad("timeout is not an integer"))
    }

    /// The last token, as a timeout, regardless of the cursor (PROBE ignores extras).
    pub(super) fn last_timeout(&self) -> Result<i64, ParseError> {
        let tok = self.toks.last().copied().ok_or(WRONG_COUNT)?;
        parse_leading_int(tok).ok_or(bad("timeout is not an integer"))
    }

    pub(super) fn key(&mut self) -> Result<KeyRef, ParseError> {
        let tok = self.next()?;
        let text = std::str::from_utf8(tok).map_err(|_| bad_key())?;
        KeyRef::parse(text).map_err(|_| bad_key())
    }

    pub(super) fn typekey(&mut self) -> Result<String, ParseError> {
        let tok = self.next()?;
        match std::str::from_utf8(tok) {
            Ok(s) if is_valid_typekey(s) => Ok(s.to_owned()),
            _ => Err(ParseError::new(ErrorCode::WrongCapFormat, "malformed typekey")),
        }
    }

    pub(super) fn capability(&mut self) -> Result<Capability, ParseError> {
        let tok = self.next()?;
        let text = std::str::from_utf8(tok).map_err(|_| bad_cap())?;
        Capability::parse(text).map_err(|_| bad_cap())
    }

    pub(super) fn rid(&mut self) -> Result<String, ParseError> {
        let tok = self.next()?;
        match std::str::from_utf8(tok) {
            Ok(s) if is_valid_rid(s) => Ok(s.to_owned()),
            _ => Err(ParseError::new(ErrorCode::InvalidRid, "malformed resource id")),
        }
    }

    /// A printable ASCII token of at most `max` bytes (passwords, paths).
    pub(super) fn text(&mut self, max: usize, reason: &'static str) -> Result<String, ParseError> {
        let tok = self.next()?;
        if tok.len() > max || !tok.iter().all(u8::is_ascii_graphic) {
            return Err(bad(reason));
        }
        Ok(String::from_utf8_lossy(tok).into_owned())
    }

    pub(super) fn chksum(&mut self, present: bool) -> Result<Option<ChksumSpec>, ParseError> {
        if !present {
            return Ok(None);
        }
        let cstype = self.int32("checksum type is not an integer")?;
        let blocksize = self.int("checksum block size is not an integer")?;
        Ok(Some(ChksumSpec { cstype, blocksize }))
    }
}

const fn bad_key() -> ParseError {
    ParseError::new(ErrorCode::WrongCapFormat, "malformed key")
}

const fn bad_cap() -> ParseError {
    ParseError::new(ErrorCode::WrongCapFormat, "malformed capability URL")
}

const fn cs_len(chksum: bool) -> usize {
    if chksum {
        2
    } else {
        0
    }
}

fn allocate(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<Request, ParseError> {
    // V 1 [cs bs] [RID] reliability type duration size T
    let base = 2 + cs_len(chksum) + 5;
    let with_rid = match f.total() {
        n if n == base => false,
        n if n == base + 1 => true,
        _ => return Err(WRONG_COUNT),
    };
    let chksum = f.chksum(chksum)?;
    let rid = if with_rid { Some(f.rid()?) } else { None };
    Ok(Request::Allocate(Allocate {
        version,
        chksum,
        rid,
        reliability: f.int32("reliability is not an integer")?,
        atype: f.int32("allocation type is not an integer")?,
        duration_s: f.int("duration is not an integer")?,
        size: f.int("size is not an integer")?,
        timeout_s: f.timeout()?,
    }))
}

fn store(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<Request, ParseError> {
    // V 2 [cs bs] K TK len T
    f.expect_count(2 + cs_len(chksum) + 4)?;
    Ok(Request::Store(Store {
        version,
        chksum: f.chksum(chksum)?,
        key: f.key()?,
        typekey: f.typekey()?,
        len: f.int("length is not an integer")?,
        timeout_s: f.timeout()?,
    }))
}

fn range_io(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<RangeIo, ParseError> {
    // V 13|8 [cs bs] K TK offset len T
    f.expect_count(2 + cs_len(chksum) + 5)?;
    Ok(RangeIo {
        version,
        chksum: f.chksum(chksum)?,
        key: f.key()?,
        typekey: f.typekey()?,
        offset: f.int("offset is not an integer")?,
        len: f.int("length is not an integer")?,
        timeout_s: f.timeout()?,
    })
}

fn manage(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    // V 9 K TK sub ...
    if f.total() < 6 {
        return Err(WRONG_COUNT);
    }
    let key = f.key()?;
    let typekey = f.typekey()?;
    let sub = f.int32("manage subcommand is not an integer")?;
    let op = match sub {
        cmd::PROBE | cmd::INCR | cmd::DECR => {
            // LoCI and ACCRE send `captype 0 0 0 T` for every subcommand: ignore the extras.
            if f.total() < 7 {
                return Err(WRONG_COUNT);
            }
            let captype = f.int32("captype is not an integer")?;
            match sub {
                cmd::PROBE => ManageOp::Probe { captype },
                cmd::INCR => ManageOp::Incr { captype },
                _ => ManageOp::Decr { captype },
            }
        }
        cmd::CHNG => {
            f.expect_count(10)?;
            ManageOp::Change {
                captype: f.int32("captype is not an integer")?,
                max_size: f.int("max size is not an integer")?,
                duration_s: f.int("duration is not an integer")?,
                reliability: f.int32("reliability is not an integer")?,
            }
        }
        cmd::TRUNCATE => {
            f.expect_count(7)?;
            ManageOp::Truncate { max_size: f.int("max size is not an integer")? }
        }
        _ => return Err(ParseError::new(ErrorCode::InvalidCmd, "unknown manage subcommand")),
    };
    Ok(Request::Manage(Manage { version, key, typekey, op, timeout_s: f.last_timeout()? }))
}

fn status(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    let unknown = ParseError::new(ErrorCode::InvalidCmd, "unknown status subcommand");
    let op = match f.total() {
        // V 4 RID sub password T
        6 => {
            let rid = Some(f.rid()?);
            status_inq_or_change(&mut f, rid, unknown)?
        }
        // V 4 4 start_time T (ST_STATS) or V 4 sub password T (v0 INQ/CHANGE)
        5 if f.peek().and_then(strict_i64) == Some(i64::from(cmd::ST_STATS)) => {
            f.next()?;
            StatusOp::Stats { start_time: f.int("start time is not an integer")? }
        }
        5 => status_inq_or_change(&mut f, None, unknown)?,
        // V 4 3|5 T
        4 => match f.int32("status subcommand is not an integer")? {
            cmd::ST_RES => StatusOp::Res,
            cmd::ST_VERSION => StatusOp::Version,
            _ => return Err(unknown),
        },
        _ => return Err(WRONG_COUNT),
    };
    Ok(Request::Status(Status { version, op, timeout_s: f.timeout()? }))
}

fn status_inq_or_change(
    f: &mut Fields<'_, '_>,
    rid: Option<String>,
    unknown: ParseError,
) -> Result<StatusOp, ParseError> {
    let sub = f.int32("status subcommand is not an integer")?;
    let password = Password(f.text(MAX_PASSWORD_BYTES, "malformed password")?);
    match sub {
        cmd::ST_INQ => Ok(StatusOp::Inq { rid, password }),
        cmd::ST_CHANGE => Ok(StatusOp::Change { rid, password }),
        _ => Err(unknown),
    }
}

fn depot_copy(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<DepotCopy, ParseError> {
    // V 5 [cs bs] [path] K target TK srcoff len T dest_T dest_client_T
    let base = 2 + cs_len(chksum) + 8;
    let with_path = match f.total() {
        n if n == base => false,
        n if n == base + 1 => true,
        _ => return Err(WRONG_COUNT),
    };
    let chksum = f.chksum(chksum)?;
    let path = if with_path { Some(f.text(MAX_PATH_BYTES, "malformed path token")?) } else { None };
    Ok(DepotCopy {
        version,
        chksum,
        path,
        key: f.key()?,
        target: f.capability()?,
        typekey: f.typekey()?,
        src_offset: f.int("offset is not an integer")?,
        len: f.int("length is not an integer")?,
        timeout_s: f.timeout()?,
        dest_timeout_s: f.timeout()?,
        dest_client_timeout_s: f.timeout()?,
    })
}

fn transfer(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<Transfer, ParseError> {
    // V 20|21 [cs bs] ctype [path if ctype=2] K remote TK local_off remote_off len T dT dcT
    let base = 2 + cs_len(chksum) + 1 + 9;
    let chksum = f.chksum(chksum)?;
    let ctype = f.int32("connection type is not an integer")?;
    let path = match f.total() {
        n if n == base => None,
        n if n == base + 1 && ctype == cmd::CTYPE_PHOEBUS => {
            Some(f.text(MAX_PATH_BYTES, "malformed path token")?)
        }
        _ => return Err(WRONG_COUNT),
    };
    Ok(Transfer {
        version,
        chksum,
        ctype,
        path,
        key: f.key()?,
        remote: f.capability()?,
        typekey: f.typekey()?,
        local_offset: f.int("local offset is not an integer")?,
        remote_offset: f.int("remote offset is not an integer")?,
        len: f.int("length is not an integer")?,
        timeout_s: f.timeout()?,
        dest_timeout_s: f.timeout()?,
        dest_client_timeout_s: f.timeout()?,
    })
}

fn alias_allocate(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    // V 14 K TK offset len duration T
    f.expect_count(8)?;
    Ok(Request::AliasAllocate(AliasAllocate {
        version,
        key: f.key()?,
        typekey: f.typekey()?,
        offset: f.int("offset is not an integer")?,
        len: f.int("length is not an integer")?,
        duration_s: f.int("duration is not an integer")?,
        timeout_s: f.timeout()?,
    }))
}

fn alias_manage(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    if f.total() < 6 {
        return Err(WRONG_COUNT);
    }
    let key = f.key()?;
    let typekey = f.typekey()?;
    let op = match f.int32("manage subcommand is not an integer")? {
        // V 15 K TK 40 T
        cmd::PROBE => {
            f.expect_count(6)?;
            AliasManageOp::Probe
        }
        // V 15 K TK 41|42 captype Km TKm T
        sub @ (cmd::INCR | cmd::DECR) => {
            f.expect_count(9)?;
            let captype = f.int32("captype is not an integer")?;
            let master_key = f.key()?;
            let master_typekey = f.typekey()?;
            if sub == cmd::INCR {
                AliasManageOp::Incr { captype, master_key, master_typekey }
            } else {
                AliasManageOp::Decr { captype, master_key, master_typekey }
            }
        }
        // V 15 K TK 43 offset len duration Km TKm T
        cmd::CHNG => {
            f.expect_count(11)?;
            AliasManageOp::Change {
                offset: f.int("offset is not an integer")?,
                len: f.int("length is not an integer")?,
                duration_s: f.int("duration is not an integer")?,
                master_key: f.key()?,
                master_typekey: f.typekey()?,
            }
        }
        _ => return Err(ParseError::new(ErrorCode::InvalidCmd, "unknown manage subcommand")),
    };
    Ok(Request::AliasManage(AliasManage { version, key, typekey, op, timeout_s: f.timeout()? }))
}

fn rename(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    // V 16 K TK T
    f.expect_count(5)?;
    Ok(Request::Rename(Rename {
        version,
        key: f.key()?,
        typekey: f.typekey()?,
        timeout_s: f.timeout()?,
    }))
}

fn split_allocate(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<Request, ParseError> {
    // V 18 [cs bs] K TK reliability type duration size T
    f.expect_count(2 + cs_len(chksum) + 7)?;
    Ok(Request::SplitAllocate(SplitAllocate {
        version,
        chksum: f.chksum(chksum)?,
        key: f.key()?,
        typekey: f.typekey()?,
        reliability: f.int32("reliability is not an integer")?,
        atype: f.int32("allocation type is not an integer")?,
        duration_s: f.int("duration is not an integer")?,
        size: f.int("size is not an integer")?,
        timeout_s: f.timeout()?,
    }))
}

fn merge_allocate(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    // V 19 Km TKm Kc TKc T
    f.expect_count(7)?;
    Ok(Request::MergeAllocate(MergeAllocate {
        version,
        master_key: f.key()?,
        master_typekey: f.typekey()?,
        child_key: f.key()?,
        child_typekey: f.typekey()?,
        timeout_s: f.timeout()?,
    }))
}

fn chksum_query(version: u8, mut f: Fields<'_, '_>) -> Result<ChksumQuery, ParseError> {
    // V 31|32 K TK flag T
    f.expect_count(6)?;
    Ok(ChksumQuery {
        version,
        key: f.key()?,
        typekey: f.typekey()?,
        flag: f.int32("flag is not an integer")?,
        timeout_s: f.timeout()?,
    })
}

fn vec_io(version: u8, mut f: Fields<'_, '_>, chksum: bool) -> Result<VecIo, ParseError> {
    // V 33|35 [cs bs] K TK n (off len)×n T
    let head = 2 + cs_len(chksum) + 3;
    if f.total() < head + 1 {
        return Err(WRONG_COUNT);
    }
    let chksum = f.chksum(chksum)?;
    let key = f.key()?;
    let typekey = f.typekey()?;
    let n = f.int("vector count is not an integer")?;
    let n = match usize::try_from(n) {
        Ok(n) if (1..=IOVEC_MAX).contains(&n) => n,
        _ => return Err(ParseError::new(ErrorCode::InvalidParameter, "vector count out of range")),
    };
    // n is bounded, so this cannot overflow; the count must match before we allocate.
    f.expect_count(head + 2 * n + 1)?;
    let mut iovec = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = f.int("vector offset is not an integer")?;
        let len = f.int("vector length is not an integer")?;
        iovec.push(IoSpan { offset, len });
    }
    Ok(VecIo { version, chksum, key, typekey, iovec, timeout_s: f.timeout()? })
}

fn mcopy_first_line(version: u8, mut f: Fields<'_, '_>) -> Result<Request, ParseError> {
    // V 6 buflen
    f.expect_count(3)?;
    Ok(Request::Mcopy(Mcopy { version, buflen: f.int("buffer length is not an integer")? }))
}
