//! ALIAS_ALLOCATE (14) and ALIAS_MANAGE (15): a window onto an allocation with capabilities of
//! its own (PROTOCOL.md §9).
//!
//! An alias reads and writes only inside its window, at the master's offsets, and appends
//! only when the window is the whole allocation. Its reference counts, window and lease are
//! changed through the alias's manage capability together with the master's, which is what
//! proves the caller owns the data; PROBE needs the alias's alone.

use super::need_other;
use crate::depot::AllocCaps;
use crate::error::Result;
use crate::handle::{to_i64, CapHandle};
use crate::proto::capability::{CapKind, Capability};
use crate::proto::reply::{self, AliasProbeReply};
use crate::proto::request::{AliasAllocate, AliasManage, AliasManageOp, Request};

impl CapHandle<'_> {
    /// ALIAS_ALLOCATE on the master's manage capability: capabilities for `[offset, offset +
    /// len)` only (`offset = len = 0`: the whole allocation, appends included), with a lease
    /// of `duration_s` seconds (0 = the master's).
    pub fn alias_allocate(&self, offset: u64, len: u64, duration_s: i64) -> Result<AllocCaps> {
        self.need(CapKind::Manage)?;
        let cap = self.capability();
        self.caps_call(&Request::AliasAllocate(AliasAllocate {
            version: 1,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            offset: to_i64(offset, "offset")?,
            len: to_i64(len, "length")?,
            duration_s,
            timeout_s: self.server_timeout_s(),
        }))
    }

    fn alias_manage<T>(
        &self,
        op: AliasManageOp,
        idempotent: bool,
        parse: fn(&[u8]) -> Result<T, reply::ReplyError>,
    ) -> Result<T> {
        self.need(CapKind::Manage)?;
        let cap = self.capability();
        let req = Request::AliasManage(AliasManage {
            version: 1,
            key: cap.key_ref(),
            typekey: cap.typekey.clone(),
            op,
            timeout_s: self.server_timeout_s(),
        });
        self.line_call(&req, idempotent, parse)
    }

    /// ALIAS_MANAGE PROBE on the alias's manage capability: its reference counts, window and
    /// lease left.
    pub fn alias_probe(&self) -> Result<AliasProbeReply> {
        self.alias_manage(AliasManageOp::Probe, true, reply::parse_alias_probe)
    }

    /// ALIAS_MANAGE INCR of the alias's `which` count (read or write), on the alias's manage
    /// capability, authorised by the master's manage capability.
    pub fn alias_incr(&self, which: CapKind, master: &Capability) -> Result<()> {
        need_other(master, CapKind::Manage)?;
        let op = AliasManageOp::Incr {
            captype: which.captype(),
            master_key: master.key_ref(),
            master_typekey: master.typekey.clone(),
        };
        self.alias_manage(op, false, reply::parse_ok)
    }

    /// ALIAS_MANAGE DECR of the alias's `which` count; the alias goes away when its read
    /// count reaches 0.
    pub fn alias_decr(&self, which: CapKind, master: &Capability) -> Result<()> {
        need_other(master, CapKind::Manage)?;
        let op = AliasManageOp::Decr {
            captype: which.captype(),
            master_key: master.key_ref(),
            master_typekey: master.typekey.clone(),
        };
        self.alias_manage(op, false, reply::parse_ok)
    }

    /// ALIAS_MANAGE CHNG: moves the window to `[offset, offset + len)` and sets the lease to
    /// `duration_s` seconds from now, authorised by the master's manage capability.
    pub fn alias_change(
        &self,
        offset: u64,
        len: u64,
        duration_s: i64,
        master: &Capability,
    ) -> Result<()> {
        need_other(master, CapKind::Manage)?;
        let op = AliasManageOp::Change {
            offset: to_i64(offset, "offset")?,
            len: to_i64(len, "length")?,
            duration_s,
            master_key: master.key_ref(),
            master_typekey: master.typekey.clone(),
        };
        self.alias_manage(op, true, reply::parse_ok)
    }
}
