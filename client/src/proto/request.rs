//! Requests: every command line of PROTOCOL.md §9 as a typed value, parsed from and encoded
//! to the wire.
//!
//! Numbers stay raw (`i64` offsets, lengths, sizes and durations; `i32` reliability, type,
//! captype, cstype) because their meaning is the depot's business: `-1` is "append" in one
//! place and "infinite" in another, and the depot must answer a bad value with the right IBP
//! code. Helper enums ([`Reliability`], [`AllocType`], [`ChksumType`]) convert the raw values
//! when a caller wants them. Every list is bounded before it is allocated ([`IOVEC_MAX`],
//! [`MCOPY_MAX_TARGETS`], [`MAX_TOKENS`]).
//!
//! # Layout
//! * this file: the types, [`ParseError`], the small accessors;
//! * `parse`: [`parse_request`], one function per command;
//! * `encode`: [`Request::encode`], the canonical ACCRE-form line;
//! * `mcopy`: the LoCI MCOPY second line.

mod encode;
pub mod ext;
mod mcopy;
mod parse;

use std::fmt;

pub use mcopy::{parse_mcopy_line, McopyLine};
pub use parse::{parse_request, parse_status_change_values};

use super::capability::{Capability, KeyRef};
use super::error::ErrorCode;

/// Most entries in a VEC_READ/VEC_WRITE list (ACCRE `IOVEC_MAX`, DLS `ibp_task.h`).
pub const IOVEC_MAX: usize = 4096;
/// Most targets in a LoCI MCOPY; LoRS augments to a handful of depots.
pub const MCOPY_MAX_TARGETS: usize = 64;
/// Longest status password token.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Longest SEND/PUSH/PULL path token (a Phoebus gateway list).
pub const MAX_PATH_BYTES: usize = 1024;
/// Most tokens one command line may have: the largest vector command plus slack. Checked
/// while tokenizing, before any list is built.
pub const MAX_TOKENS: usize = 2 * IOVEC_MAX + 16;

/// Command numbers (PROTOCOL.md §8).
pub mod cmd {
    #![allow(missing_docs)]
    pub const ALLOCATE: i32 = 1;
    pub const STORE: i32 = 2;
    pub const STATUS: i32 = 4;
    pub const SEND: i32 = 5;
    pub const MCOPY: i32 = 6;
    pub const LOAD: i32 = 8;
    pub const MANAGE: i32 = 9;
    pub const WRITE: i32 = 13;
    pub const ALIAS_ALLOCATE: i32 = 14;
    pub const ALIAS_MANAGE: i32 = 15;
    pub const RENAME: i32 = 16;
    pub const PHOEBUS_SEND: i32 = 17;
    pub const SPLIT_ALLOCATE: i32 = 18;
    pub const MERGE_ALLOCATE: i32 = 19;
    pub const PUSH: i32 = 20;
    pub const PULL: i32 = 21;
    pub const PUSH_CHKSUM: i32 = 22;
    pub const PULL_CHKSUM: i32 = 23;
    pub const LOAD_CHKSUM: i32 = 24;
    pub const SEND_CHKSUM: i32 = 25;
    pub const PHOEBUS_SEND_CHKSUM: i32 = 26;
    pub const WRITE_CHKSUM: i32 = 27;
    pub const STORE_CHKSUM: i32 = 28;
    pub const ALLOCATE_CHKSUM: i32 = 29;
    pub const SPLIT_ALLOCATE_CHKSUM: i32 = 30;
    pub const GET_CHKSUM: i32 = 31;
    pub const VALIDATE_CHKSUM: i32 = 32;
    pub const VEC_WRITE: i32 = 33;
    pub const VEC_WRITE_CHKSUM: i32 = 34;
    pub const VEC_READ: i32 = 35;
    pub const VEC_READ_CHKSUM: i32 = 36;

    /// MANAGE / ALIAS_MANAGE subcommands.
    pub const PROBE: i32 = 40;
    pub const INCR: i32 = 41;
    pub const DECR: i32 = 42;
    pub const CHNG: i32 = 43;
    pub const TRUNCATE: i32 = 45;

    /// STATUS subcommands.
    pub const ST_INQ: i32 = 1;
    pub const ST_CHANGE: i32 = 2;
    pub const ST_RES: i32 = 3;
    pub const ST_STATS: i32 = 4;
    pub const ST_VERSION: i32 = 5;

    /// Copy connection types.
    pub const CTYPE_TCP: i32 = 1;
    pub const CTYPE_PHOEBUS: i32 = 2;
}

/// Why a command line was refused: the IBP code to answer with and a fixed reason for logs.
/// The reason never contains input bytes (they may be keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// What the depot sends back.
    pub code: ErrorCode,
    /// A fixed explanation for logs and tests.
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(code: ErrorCode, reason: &'static str) -> ParseError {
        ParseError { code, reason }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Allocation reliability (`IBP_SOFT=1`, `IBP_HARD=2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// Volatile: may be revoked at any time.
    Soft = 1,
    /// Stable: survives power loss.
    Hard = 2,
}

impl Reliability {
    /// The enum for a wire value.
    pub const fn from_i32(v: i32) -> Option<Reliability> {
        match v {
            1 => Some(Reliability::Soft),
            2 => Some(Reliability::Hard),
            _ => None,
        }
    }
    /// The wire value.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

/// Allocation type (`IBP_BYTEARRAY=1` … `IBP_CIRQ=4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocType {
    /// The only type ACCRE (and our depot) implements.
    ByteArray = 1,
    /// LoCI only.
    Buffer = 2,
    /// LoCI only.
    Fifo = 3,
    /// LoCI only.
    Cirq = 4,
}

impl AllocType {
    /// The enum for a wire value.
    pub const fn from_i32(v: i32) -> Option<AllocType> {
        match v {
            1 => Some(AllocType::ByteArray),
            2 => Some(AllocType::Buffer),
            3 => Some(AllocType::Fifo),
            4 => Some(AllocType::Cirq),
            _ => None,
        }
    }
    /// The wire value.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

/// Checksum type codes (DLS `chksum.h`); `DEFAULT=-1` is a depot-side notion, not a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChksumType {
    /// No checksum.
    None = 0,
    /// SHA-256, 64 hex chars in network framing.
    Sha256 = 1,
    /// SHA-512, 128 hex chars.
    Sha512 = 2,
    /// SHA-1, 40 hex chars.
    Sha1 = 3,
    /// MD5, 32 hex chars (ACCRE's resource default).
    Md5 = 4,
}

impl ChksumType {
    /// The enum for a wire value.
    pub const fn from_i32(v: i32) -> Option<ChksumType> {
        match v {
            0 => Some(ChksumType::None),
            1 => Some(ChksumType::Sha256),
            2 => Some(ChksumType::Sha512),
            3 => Some(ChksumType::Sha1),
            4 => Some(ChksumType::Md5),
            _ => None,
        }
    }
    /// The wire value.
    pub const fn code(self) -> i32 {
        self as i32
    }
    /// Bytes of a binary digest (0 for `None`).
    pub const fn digest_bytes(self) -> usize {
        match self {
            ChksumType::None => 0,
            ChksumType::Sha256 => 32,
            ChksumType::Sha512 => 64,
            ChksumType::Sha1 => 20,
            ChksumType::Md5 => 16,
        }
    }
    /// Length of the hex digest inserted between blocks in network framing (§10).
    pub const fn hex_len(self) -> usize {
        self.digest_bytes() * 2
    }
}

/// The `cstype blocksize` pair the `_CHKSUM` variants insert after the command number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChksumSpec {
    /// Raw checksum type ([`ChksumType::from_i32`]).
    pub cstype: i32,
    /// Block size in bytes.
    pub blocksize: i64,
}

/// A status password. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// ALLOCATE (1) / ALLOCATE_CHKSUM (29).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocate {
    /// Wire version (0 or 1).
    pub version: u8,
    /// Per-allocation disk checksum override (command 29).
    pub chksum: Option<ChksumSpec>,
    /// Resource id; absent in the v0 form (detected by token count).
    pub rid: Option<String>,
    /// Raw reliability ([`Reliability`]).
    pub reliability: i32,
    /// Raw allocation type ([`AllocType`]).
    pub atype: i32,
    /// Relative lease in seconds (−1 infinite in ACCRE, 0 in LoCI).
    pub duration_s: i64,
    /// Maximum size in bytes.
    pub size: i64,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// STORE (2) / STORE_CHKSUM (28): append `len` bytes that follow the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Wire version.
    pub version: u8,
    /// Network checksum framing (command 28).
    pub chksum: Option<ChksumSpec>,
    /// Write key.
    pub key: KeyRef,
    /// Ignored by ACCRE, kept verbatim.
    pub typekey: String,
    /// Payload bytes that follow.
    pub len: i64,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// WRITE (13) / WRITE_CHKSUM (27) and LOAD (8) / LOAD_CHKSUM (24): a range of an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeIo {
    /// Wire version.
    pub version: u8,
    /// Network checksum framing.
    pub chksum: Option<ChksumSpec>,
    /// Write key (WRITE) or read key (LOAD).
    pub key: KeyRef,
    /// Ignored by ACCRE, kept verbatim.
    pub typekey: String,
    /// Offset in the allocation.
    pub offset: i64,
    /// Bytes to move.
    pub len: i64,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// MANAGE (9) subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageOp {
    /// 40: allocation attributes; extra tokens before T are ignored (LoCI sends `0 0 0`).
    Probe {
        /// Raw captype of the key presented.
        captype: i32,
    },
    /// 41: increment a reference count.
    Incr {
        /// Which count: 1 read, 2 write.
        captype: i32,
    },
    /// 42: decrement a reference count (LStore "remove" is DECR READ).
    Decr {
        /// Which count: 1 read, 2 write.
        captype: i32,
    },
    /// 43: change max size, duration, reliability.
    Change {
        /// Raw captype.
        captype: i32,
        /// New maximum size; 0 is refused by the depot.
        max_size: i64,
        /// Relative seconds; negative = unchanged.
        duration_s: i64,
        /// Raw reliability; −1 = unchanged.
        reliability: i32,
    },
    /// 45: set max size (and size if smaller).
    Truncate {
        /// New maximum size.
        max_size: i64,
    },
}

/// MANAGE (9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manage {
    /// Wire version.
    pub version: u8,
    /// Manage key (LoCI also accepts read/write for PROBE).
    pub key: KeyRef,
    /// Kept verbatim (libdlt sends `MANAGE`).
    pub typekey: String,
    /// The subcommand and its fields.
    pub op: ManageOp,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// STATUS (4) forms, told apart by token count (PROTOCOL.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOp {
    /// ST_INQ (1): capacity report; `rid` absent in the 5-token v0 form.
    Inq {
        /// Resource id (`*` = all in LoCI, `0` = any in ACCRE).
        rid: Option<String>,
        /// Checked by the depot.
        password: Password,
    },
    /// ST_CHANGE (2): LoCI only; a second line with the new values follows.
    Change {
        /// Resource id, as for `Inq`.
        rid: Option<String>,
        /// Checked by the depot.
        password: Password,
    },
    /// ST_RES (3): list resource ids.
    Res,
    /// ST_STATS (4): transfer statistics since `start_time`.
    Stats {
        /// Epoch seconds.
        start_time: i64,
    },
    /// ST_VERSION (5): free-text version report.
    Version,
}

/// STATUS (4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Wire version.
    pub version: u8,
    /// The form and its fields.
    pub op: StatusOp,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// SEND (5/25) and PHOEBUS_SEND (17/26): depot-to-depot copy, appended at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepotCopy {
    /// Wire version.
    pub version: u8,
    /// Network checksum framing.
    pub chksum: Option<ChksumSpec>,
    /// Optional path token (Phoebus gateway list or `auto`); LStore's empty one collapses.
    pub path: Option<String>,
    /// Read key of the source.
    pub key: KeyRef,
    /// Full write capability of the target.
    pub target: Capability,
    /// Kept verbatim.
    pub typekey: String,
    /// Offset in the source.
    pub src_offset: i64,
    /// Bytes to copy.
    pub len: i64,
    /// This depot's deadline.
    pub timeout_s: i64,
    /// ServerSync for the nested command at the target.
    pub dest_timeout_s: i64,
    /// How long this depot waits on the target.
    pub dest_client_timeout_s: i64,
}

/// PUSH (20/22) and PULL (21/23): copies with explicit offsets on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Wire version.
    pub version: u8,
    /// Network checksum framing.
    pub chksum: Option<ChksumSpec>,
    /// Connection type: 1 TCP, 2 Phoebus.
    pub ctype: i32,
    /// Path token, only with ctype 2.
    pub path: Option<String>,
    /// Local key: read (PUSH) or write (PULL).
    pub key: KeyRef,
    /// Remote capability: write (PUSH) or read (PULL).
    pub remote: Capability,
    /// Kept verbatim.
    pub typekey: String,
    /// Offset in the local allocation (−1 = append for PULL).
    pub local_offset: i64,
    /// Offset in the remote allocation (−1 = append for PUSH).
    pub remote_offset: i64,
    /// Bytes to move.
    pub len: i64,
    /// This depot's deadline.
    pub timeout_s: i64,
    /// ServerSync for the nested command.
    pub dest_timeout_s: i64,
    /// How long this depot waits on the other one.
    pub dest_client_timeout_s: i64,
}

/// ALIAS_ALLOCATE (14): a window onto an allocation with its own caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasAllocate {
    /// Wire version.
    pub version: u8,
    /// Manage key of the master.
    pub key: KeyRef,
    /// Kept verbatim.
    pub typekey: String,
    /// Window start (`offset=len=0` = whole allocation).
    pub offset: i64,
    /// Window length.
    pub len: i64,
    /// Lease; 0 = inherit.
    pub duration_s: i64,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// ALIAS_MANAGE (15) subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasManageOp {
    /// 40: `V 15 K TK 40 T`.
    Probe,
    /// 41: increment the alias's count, authorised by the master.
    Incr {
        /// Which count.
        captype: i32,
        /// Master manage key.
        master_key: KeyRef,
        /// Master typekey.
        master_typekey: String,
    },
    /// 42: decrement.
    Decr {
        /// Which count.
        captype: i32,
        /// Master manage key.
        master_key: KeyRef,
        /// Master typekey.
        master_typekey: String,
    },
    /// 43: move or resize the window.
    Change {
        /// New window start.
        offset: i64,
        /// New window length.
        len: i64,
        /// New lease.
        duration_s: i64,
        /// Master manage key.
        master_key: KeyRef,
        /// Master typekey.
        master_typekey: String,
    },
}

/// ALIAS_MANAGE (15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasManage {
    /// Wire version.
    pub version: u8,
    /// Alias manage key.
    pub key: KeyRef,
    /// Kept verbatim.
    pub typekey: String,
    /// The subcommand.
    pub op: AliasManageOp,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// Commands that carry only a key: RENAME (16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// Wire version.
    pub version: u8,
    /// Manage key.
    pub key: KeyRef,
    /// Kept verbatim.
    pub typekey: String,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// SPLIT_ALLOCATE (18) / SPLIT_ALLOCATE_CHKSUM (30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAllocate {
    /// Wire version.
    pub version: u8,
    /// Disk checksum override.
    pub chksum: Option<ChksumSpec>,
    /// Master manage key.
    pub key: KeyRef,
    /// Kept verbatim.
    pub typekey: String,
    /// Raw reliability.
    pub reliability: i32,
    /// Raw type.
    pub atype: i32,
    /// Lease.
    pub duration_s: i64,
    /// Size carved from the master.
    pub size: i64,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// MERGE_ALLOCATE (19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeAllocate {
    /// Wire version.
    pub version: u8,
    /// Master manage key.
    pub master_key: KeyRef,
    /// Master typekey.
    pub master_typekey: String,
    /// Child manage key.
    pub child_key: KeyRef,
    /// Child typekey.
    pub child_typekey: String,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// GET_CHKSUM (31) and VALIDATE_CHKSUM (32): a key and one integer flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChksumQuery {
    /// Wire version.
    pub version: u8,
    /// Manage key.
    pub key: KeyRef,
    /// Kept verbatim.
    pub typekey: String,
    /// GET: `info_only` (1 = header only). VALIDATE: `correct_errors`.
    pub flag: i32,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// One entry of a vector list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoSpan {
    /// Offset in the allocation.
    pub offset: i64,
    /// Bytes.
    pub len: i64,
}

/// VEC_WRITE (33/34) and VEC_READ (35/36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecIo {
    /// Wire version.
    pub version: u8,
    /// Network checksum framing.
    pub chksum: Option<ChksumSpec>,
    /// Write or read key.
    pub key: KeyRef,
    /// Kept verbatim.
    pub typekey: String,
    /// 1..=[`IOVEC_MAX`] spans; data travels in list order.
    pub iovec: Vec<IoSpan>,
    /// Server-side deadline.
    pub timeout_s: i64,
}

/// LoCI MCOPY (6) first line `0 6 <buflen>`: the depot replies, then reads a second line of
/// at most `buflen` bytes ([`parse_mcopy_line`]). It carries no deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mcopy {
    /// Wire version.
    pub version: u8,
    /// Announced length of the second line; the depot bounds it.
    pub buflen: i64,
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// 1 / 29.
    Allocate(Allocate),
    /// 2 / 28.
    Store(Store),
    /// 13 / 27.
    Write(RangeIo),
    /// 8 / 24.
    Load(RangeIo),
    /// 9.
    Manage(Manage),
    /// 4.
    Status(Status),
    /// 5 / 25.
    Send(DepotCopy),
    /// 17 / 26.
    PhoebusSend(DepotCopy),
    /// 20 / 22.
    Push(Transfer),
    /// 21 / 23.
    Pull(Transfer),
    /// 14.
    AliasAllocate(AliasAllocate),
    /// 15.
    AliasManage(AliasManage),
    /// 16.
    Rename(Rename),
    /// 18 / 30.
    SplitAllocate(SplitAllocate),
    /// 19.
    MergeAllocate(MergeAllocate),
    /// 31.
    GetChksum(ChksumQuery),
    /// 32.
    ValidateChksum(ChksumQuery),
    /// 33 / 34.
    VecWrite(VecIo),
    /// 35 / 36.
    VecRead(VecIo),
    /// 6 (LoCI), first line only.
    Mcopy(Mcopy),
}

fn pick(chksum: &Option<ChksumSpec>, plain: i32, with: i32) -> i32 {
    if chksum.is_some() {
        with
    } else {
        plain
    }
}

impl Request {
    /// The wire command number (the `_CHKSUM` number when a checksum spec is present).
    pub fn command_number(&self) -> i32 {
        use Request::*;
        match self {
            Allocate(r) => pick(&r.chksum, cmd::ALLOCATE, cmd::ALLOCATE_CHKSUM),
            Store(r) => pick(&r.chksum, cmd::STORE, cmd::STORE_CHKSUM),
            Write(r) => pick(&r.chksum, cmd::WRITE, cmd::WRITE_CHKSUM),
            Load(r) => pick(&r.chksum, cmd::LOAD, cmd::LOAD_CHKSUM),
            Manage(_) => cmd::MANAGE,
            Status(_) => cmd::STATUS,
            Send(r) => pick(&r.chksum, cmd::SEND, cmd::SEND_CHKSUM),
            PhoebusSend(r) => pick(&r.chksum, cmd::PHOEBUS_SEND, cmd::PHOEBUS_SEND_CHKSUM),
            Push(r) => pick(&r.chksum, cmd::PUSH, cmd::PUSH_CHKSUM),
            Pull(r) => pick(&r.chksum, cmd::PULL, cmd::PULL_CHKSUM),
            AliasAllocate(_) => cmd::ALIAS_ALLOCATE,
            AliasManage(_) => cmd::ALIAS_MANAGE,
            Rename(_) => cmd::RENAME,
            SplitAllocate(r) => pick(&r.chksum, cmd::SPLIT_ALLOCATE, cmd::SPLIT_ALLOCATE_CHKSUM),
            MergeAllocate(_) => cmd::MERGE_ALLOCATE,
            GetChksum(_) => cmd::GET_CHKSUM,
            ValidateChksum(_) => cmd::VALIDATE_CHKSUM,
            VecWrite(r) => pick(&r.chksum, cmd::VEC_WRITE, cmd::VEC_WRITE_CHKSUM),
            VecRead(r) => pick(&r.chksum, cmd::VEC_READ, cmd::VEC_READ_CHKSUM),
            Mcopy(_) => cmd::MCOPY,
        }
    }

    /// The wire version (0 or 1).
    pub fn version(&self) -> u8 {
        use Request::*;
        match self {
            Allocate(r) => r.version,
            Store(r) => r.version,
            Write(r) | Load(r) => r.version,
            Manage(r) => r.version,
            Status(r) => r.version,
            Send(r) | PhoebusSend(r) => r.version,
            Push(r) | Pull(r) => r.version,
            AliasAllocate(r) => r.version,
            AliasManage(r) => r.version,
            Rename(r) => r.version,
            SplitAllocate(r) => r.version,
            MergeAllocate(r) => r.version,
            GetChksum(r) | ValidateChksum(r) => r.version,
            VecWrite(r) | VecRead(r) => r.version,
            Mcopy(r) => r.version,
        }
    }

    /// The server-side deadline in seconds as sent (ACCRE turns 0 into 2 s; that policy is
    /// the depot's). MCOPY's first line has none and reports 0.
    pub fn timeout_s(&self) -> i64 {
        use Request::*;
        match self {
            Allocate(r) => r.timeout_s,
            Store(r) => r.timeout_s,
            Write(r) | Load(r) => r.timeout_s,
            Manage(r) => r.timeout_s,
            Status(r) => r.timeout_s,
            Send(r) | PhoebusSend(r) => r.timeout_s,
            Push(r) | Pull(r) => r.timeout_s,
            AliasAllocate(r) => r.timeout_s,
            AliasManage(r) => r.timeout_s,
            Rename(r) => r.timeout_s,
            SplitAllocate(r) => r.timeout_s,
            MergeAllocate(r) => r.timeout_s,
            GetChksum(r) | ValidateChksum(r) => r.timeout_s,
            VecWrite(r) | VecRead(r) => r.timeout_s,
            Mcopy(_) => 0,
        }
    }

    /// A stable upper-case name for statistics and logs (by command number).
    pub fn name(&self) -> &'static str {
        command_name(self.command_number()).unwrap_or("UNKNOWN")
    }
}

/// The name of a command number, for statistics (`None` for numbers we do not parse).
pub fn command_name(number: i32) -> Option<&'static str> {
    Some(match number {
        cmd::ALLOCATE => "ALLOCATE",
        cmd::STORE => "STORE",
        cmd::STATUS => "STATUS",
        cmd::SEND => "SEND",
        cmd::MCOPY => "MCOPY",
        cmd::LOAD => "LOAD",
        cmd::MANAGE => "MANAGE",
        cmd::WRITE => "WRITE",
        cmd::ALIAS_ALLOCATE => "ALIAS_ALLOCATE",
        cmd::ALIAS_MANAGE => "ALIAS_MANAGE",
        cmd::RENAME => "RENAME",
        cmd::PHOEBUS_SEND => "PHOEBUS_SEND",
        cmd::SPLIT_ALLOCATE => "SPLIT_ALLOCATE",
        cmd::MERGE_ALLOCATE => "MERGE_ALLOCATE",
        cmd::PUSH => "PUSH",
        cmd::PULL => "PULL",
        cmd::PUSH_CHKSUM => "PUSH_CHKSUM",
        cmd::PULL_CHKSUM => "PULL_CHKSUM",
        cmd::LOAD_CHKSUM => "LOAD_CHKSUM",
        cmd::SEND_CHKSUM => "SEND_CHKSUM",
        cmd::PHOEBUS_SEND_CHKSUM => "PHOEBUS_SEND_CHKSUM",
        cmd::WRITE_CHKSUM => "WRITE_CHKSUM",
        cmd::STORE_CHKSUM => "STORE_CHKSUM",
        cmd::ALLOCATE_CHKSUM => "ALLOCATE_CHKSUM",
        cmd::SPLIT_ALLOCATE_CHKSUM => "SPLIT_ALLOCATE_CHKSUM",
        cmd::GET_CHKSUM => "GET_CHKSUM",
        cmd::VALIDATE_CHKSUM => "VALIDATE_CHKSUM",
        cmd::VEC_WRITE => "VEC_WRITE",
        cmd::VEC_WRITE_CHKSUM => "VEC_WRITE_CHKSUM",
        cmd::VEC_READ => "VEC_READ",
        cmd::VEC_READ_CHKSUM => "VEC_READ_CHKSUM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
