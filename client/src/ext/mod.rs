//! The rest of the IBP 1.4 command set (PROTOCOL.md §8–10) as library calls: ALLOCATE_CHKSUM,
//! RENAME, SPLIT/MERGE_ALLOCATE, aliases, vector I/O, the per-allocation disk digests
//! (GET/VALIDATE_CHKSUM) and the network-checksummed STORE/WRITE/LOAD.
//!
//! Same shape as [`crate::handle`]: each call checks the capability kinds it needs before
//! anything is sent, encodes its request with the codec, runs it through the depot's `-66`
//! retry loop, and checks the reply's shape before any buffer is sized from it. Calls that
//! create or retire capabilities (RENAME, SPLIT, MERGE, ALIAS_ALLOCATE, INCR/DECR) are not
//! retried after an I/O error: the depot may have acted on the first attempt.
//!
//! # Layout
//! * this file: ALLOCATE_CHKSUM, RENAME, SPLIT_ALLOCATE(_CHKSUM), MERGE_ALLOCATE and the
//!   request helpers the others share;
//! * `alias`: ALIAS_ALLOCATE and ALIAS_MANAGE;
//! * `vector`: VEC_WRITE / VEC_READ and their `_CHKSUM` forms;
//! * `chksum`: GET/VALIDATE_CHKSUM, STORE/WRITE/LOAD_CHKSUM, and the framed send and receive
//!   (§10) the checksummed calls share.

mod alias;
mod chksum;
mod vector;

pub use chksum::{FRAME_PIECE_BYTES, MAX_CHKSUM_BODY_BYTES};

use crate::depot::{encode, AllocCaps, Depot};
use crate::error::{Error, Result};
use crate::handle::{to_i64, CapHandle};
use crate::proto::capability::{CapKind, Capability};
use crate::proto::reply::{self, ReplyError};
use crate::proto::request::{
    AllocType, ChksumSpec, MergeAllocate, Reliability, Rename, Request, SplitAllocate,
};

impl Depot {
    /// ALLOCATE_CHKSUM (29): like [`Depot::allocate`], and the depot keeps a `spec.cstype`
    /// digest of every `spec.blocksize` bytes on disk, which [`CapHandle::get_chksum`] and
    /// [`CapHandle::validate_chksum`] read. Type NONE (0) makes a plain allocation; the depot
    /// refuses an unknown type (`-64`) or a block size it cannot keep (`-65`).
    pub fn allocate_chksum(
        &self,
        size: u64,
        duration_s: i64,
        reliability: Reliability,
        rid: Option<&str>,
        spec: ChksumSpec,
    ) -> Result<AllocCaps> {
        self.allocate_with(size, duration_s, reliability, rid, Some(spec))
    }
}

/// Fails unless `cap` (a second capability a call takes) is of `kind`.
fn need_other(cap: &Capability, kind: CapKind) -> Result<()> {
    if cap.kind == kind {
        Ok(())
    } else {
        Err(Error::WrongCapKind { expected: kind, actual: cap.kind })
    }
}

impl CapHandle<'_> {
    /// Sends one request line and reads a one-line reply with `parse`.
    fn line_call<T>(
        &self,
        req: &Request,
        idempotent: bool,
        parse: fn(&[u8]) -> Result<T, ReplyError>,
    ) -> Result<T> {
        let line = encode(req);
        let depot = self.depot();
        depot.call(depot.config().op_timeout, idempotent, |conn| {
            conn.send(&line)?;
            conn.read_reply(parse)
        })
    }

    /// A request answered by three new capabilities (RENAME, SPLIT, ALIAS_ALLOCATE).
    fn caps_call(&self, req: &Request) -> Result<AllocCaps> {
        let [read, write, manage] = self.line_call(req, false, reply::parse_caps)?;
        Ok(AllocCaps { read, write, manage })
    }

    fn server_timeout_s(&self) -> i64 {
        self.depot().config().server_timeout_s
    }

    /// RENAME (16) on the manage capability: new capabilities for the same data; the old
    /// ones stop working.
    pub fn rename(&self) -> Result<AllocCaps> {
        self.need(CapKind::Manage)?;
        let cap = self.capability();
        self.caps_call(&Request::Rename(Rename {
            version: 1,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            timeout_s: self.server_timeout_s(),
        }))
    }

    /// SPLIT_ALLOCATE (18), or SPLIT_ALLOCATE_CHKSUM (30) with `chksum`, on the master's
    /// manage capability: a new allocation of `size` bytes carved from the master's unused
    /// space (the master's max size shrinks by what the child takes), with its own lease and
    /// capabilities.
    pub fn split(
        &self,
        size: u64,
        duration_s: i64,
        reliability: Reliability,
        chksum: Option<ChksumSpec>,
    ) -> Result<AllocCaps> {
        self.need(CapKind::Manage)?;
        let cap = self.capability();
        self.caps_call(&Request::SplitAllocate(SplitAllocate {
            version: 1,
            chksum,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            reliability: reliability.code(),
            atype: AllocType::ByteArray.code(),
            duration_s,
            size: to_i64(size, "size")?,
            timeout_s: self.server_timeout_s(),
        }))
    }

    /// MERGE_ALLOCATE (19) on the master's manage capability: gives `child`'s space (a split
    /// of this master; its manage capability, reference counts read 1 / write 0) back to the
    /// master and removes the child.
    pub fn merge(&self, child: &Capability) -> Result<()> {
        self.need(CapKind::Manage)?;
        need_other(child, CapKind::Manage)?;
        let cap = self.capability();
        let req = Request::MergeAllocate(MergeAllocate {
            version: 1,
            master_key: cap.key_ref(),
            master_typekey: cap.typekey.clone(),
            child_key: child.key_ref(),
            child_typekey: child.typekey.clone(),
            timeout_s: self.server_timeout_s(),
        });
        self.line_call(&req, false, reply::parse_ok)
    }
}
