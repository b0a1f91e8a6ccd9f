//! The ST_INQ capacity report (PROTOCOL.md §9, §11): `1 <n> \n` then an n-byte body of
//! `KEY:value` pairs ending with `RE`, and the v0 one-line form in MB without a status.

use super::{error_from_status, int, ReplyError};
use crate::proto::frame::{push_int, tokens};

/// Largest INQ body a client will read; the header's `n` is checked against it first.
pub const MAX_INQ_BODY_BYTES: usize = 64 * 1024;

/// One resource's capacity report. Sizes in bytes, durations in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InqBody {
    /// `VS`: protocol and depot version, `1.4:1.0` for ACCRE.
    pub version: String,
    /// `DT`: supported data movers (`1`; LoCI `1:2:3`).
    pub data_movers: String,
    /// `RID`.
    pub rid: String,
    /// `RT`: resource type (1 = disk).
    pub resource_type: i64,
    /// `CT`: configured total.
    pub configured_total: i64,
    /// `ST`: served total.
    pub served_total: i64,
    /// `UT`: used total (hard + soft).
    pub used_total: i64,
    /// `UH`: used hard.
    pub used_hard: i64,
    /// `SH`: served hard.
    pub served_hard: i64,
    /// `CH`: configured hard.
    pub configured_hard: i64,
    /// `AT`: allocatable total (free after `minfree`).
    pub allocatable_total: i64,
    /// `AH`: allocatable hard, capped by AT.
    pub allocatable_hard: i64,
    /// `DR`: maximum duration.
    pub max_duration_s: i64,
}

impl InqBody {
    /// Appends the body in ACCRE's layout (including its double space after `DT`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"VS:");
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(b" DT:");
        out.extend_from_slice(self.data_movers.as_bytes());
        out.extend_from_slice(b"  RID:");
        out.extend_from_slice(self.rid.as_bytes());
        let fields = [
            ("RT", self.resource_type),
            ("CT", self.configured_total),
            ("ST", self.served_total),
            ("UT", self.used_total),
            ("UH", self.used_hard),
            ("SH", self.served_hard),
            ("CH", self.configured_hard),
            ("AT", self.allocatable_total),
            ("AH", self.allocatable_hard),
            ("DR", self.max_duration_s),
        ];
        for (name, value) in fields {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            push_int(out, value);
        }
        out.extend_from_slice(b" RE \n");
    }
}

/// `1 <n> \n` followed by the n-byte body.
pub fn status_inq(out: &mut Vec<u8>, body: &InqBody) {
    let mut text = Vec::with_capacity(256);
    body.encode(&mut text);
    super::count(out, i64::try_from(text.len()).unwrap_or(i64::MAX));
    out.extend_from_slice(&text);
}

/// Reads `KEY:value` pairs until `RE` (LStore `process_inq`). Unknown keys are ignored and
/// missing ones stay at their defaults; the first occurrence of a key wins (LoCI may list
/// several resources).
pub fn parse_inq_body(body: &[u8]) -> Result<InqBody, ReplyError> {
    if body.len() > MAX_INQ_BODY_BYTES {
        return Err(ReplyError::Malformed("INQ body too long"));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ReplyError::Malformed("INQ body not ASCII"))?;
    let mut inq = InqBody::default();
    let mut seen: u16 = 0;
    for tok in text.split_ascii_whitespace() {
        if tok == "RE" {
            return Ok(inq);
        }
        let Some((key, value)) = tok.split_once(':') else {
            return Err(ReplyError::Malformed("INQ field without ':'"));
        };
        let Some(slot) = FIELDS.iter().position(|f| *f == key) else { continue };
        if seen & (1 << slot) != 0 {
            continue;
        }
        seen |= 1 << slot;
        set_field(&mut inq, slot, value)?;
    }
    Err(ReplyError::Malformed("INQ body has no RE terminator"))
}

const FIELDS: [&str; 13] =
    ["VS", "DT", "RID", "RT", "CT", "ST", "UT", "UH", "SH", "CH", "AT", "AH", "DR"];

fn set_field(inq: &mut InqBody, slot: usize, value: &str) -> Result<(), ReplyError> {
    let why = "INQ value is not an integer";
    match slot {
        0 => inq.version = value.to_owned(),
        1 => inq.data_movers = value.to_owned(),
        2 => inq.rid = value.to_owned(),
        3 => inq.resource_type = int(value, why)?,
        4 => inq.configured_total = int(value, why)?,
        5 => inq.served_total = int(value, why)?,
        6 => inq.used_total = int(value, why)?,
        7 => inq.used_hard = int(value, why)?,
        8 => inq.served_hard = int(value, why)?,
        9 => inq.configured_hard = int(value, why)?,
        10 => inq.allocatable_total = int(value, why)?,
        11 => inq.allocatable_hard = int(value, why)?,
        _ => inq.max_duration_s = int(value, why)?,
    }
    Ok(())
}

/// The v0 ST_INQ reply: one line, no status, sizes in MB (values shifted right by 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V0Inq {
    /// Hard storage served, MB.
    pub hard_mb: i64,
    /// Hard storage used, MB.
    pub hard_used_mb: i64,
    /// Soft storage served, MB.
    pub soft_mb: i64,
    /// Soft storage used, MB.
    pub soft_used_mb: i64,
    /// Maximum duration, seconds.
    pub max_duration_s: i64,
}

/// `<hard MB> <hard used MB> <soft MB> <soft used MB> <max duration> \n`
/// (observed `4096 0 4096 0 86400`).
pub fn v0_inq(out: &mut Vec<u8>, v: &V0Inq) {
    let values = [v.hard_mb, v.hard_used_mb, v.soft_mb, v.soft_used_mb, v.max_duration_s];
    for (i, n) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_int(out, n);
    }
    out.extend_from_slice(b" \n");
}

/// Reads the v0 INQ line. A single negative token is an error reply; LoCI may append two
/// version tokens, which are ignored.
pub fn parse_v0_inq(line: &[u8]) -> Result<V0Inq, ReplyError> {
    let toks: Vec<&[u8]> = tokens(line).take(8).collect();
    let text = |t: &[u8]| std::str::from_utf8(t).map(str::to_owned).unwrap_or_default();
    if toks.len() <= 2 {
        if let Some(Ok(code)) = toks.first().map(|t| text(t).parse::<i32>()) {
            if code < 0 {
                let rest: Vec<String> = toks[1..].iter().map(|t| text(t)).collect();
                let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                return Err(error_from_status(code, &rest));
            }
        }
    }
    if !(5..=7).contains(&toks.len()) {
        return Err(ReplyError::Malformed("expected five v0 status fields"));
    }
    let why = "v0 status field is not an integer";
    let n = |i: usize| int::<i64>(&text(toks[i]), why);
    Ok(V0Inq {
        hard_mb: n(0)?,
        hard_used_mb: n(1)?,
        soft_mb: n(2)?,
        soft_used_mb: n(3)?,
        max_duration_s: n(4)?,
    })
}
