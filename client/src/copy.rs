//! Depot-to-depot copies: the client sends one command and the depots move the bytes between
//! themselves, so the data never detours through the client (PROTOCOL.md §9 SEND, PUSH/PULL;
//! our MCOPY_EXT in [`crate::proto::request::ext`]).
//!
//! * [`CapHandle::send`] — SEND (5): `[src_offset, +len)` of the source (read capability)
//!   appended at the target (write capability).
//! * [`CapHandle::push`] / [`CapHandle::pull`] — PUSH (20) / PULL (21): explicit offsets on
//!   both sides, `-1` = append at the writing side.
//! * [`CapHandle::copy_streams`] — N parallel PUSHes of consecutive ranges at explicit
//!   offsets: the target's current size is probed first **through its write capability**
//!   (our depots and LoCI accept PROBE through any key; ACCRE needs the manage key, so use
//!   one stream there), and part *i* lands at `size + part offset`. A writer appending to the
//!   target at the same time would interleave; a copy with streams assumes it has the target
//!   to itself.
//! * [`CapHandle::mcopy`] — MCOPY_EXT (60): one source, many targets, fan-out or chain, one
//!   result per target. A depot that answers `-43` (an ACCRE or LoCI depot without our
//!   extension) gets sequential SENDs instead, one per target, with the same per-target
//!   results; [`McopyReport::method`] says which path ran.
//!
//! # Timeouts
//! A depot answers a copy only when it is over, so every timeout scales with the length
//! (a 1 GiB copy must not hit a 30 s server sync). With `B = len / min_rate_bytes_per_s`
//! (1 s per MiB at the default 1 MiB/s), see [`CopyTimeouts::for_len`]:
//! * `T` (the source depot's own deadline), `dest_T` (the server sync of the nested
//!   STORE/WRITE/LOAD at the other depot) and `dest_client_T` (how long the depot waits on
//!   the other depot) are all `server_timeout_s + B` seconds. ACCRE reads `dest_client_T` as
//!   a bound on the whole nested operation, so it must scale too; our depot applies it per
//!   step, so a dead target (connection reset) is reported at once and a silent one after
//!   `dest_client_T`.
//! * The client's own deadline is `op_timeout + B` for SEND/PUSH/PULL (later than the depot's,
//!   so the depot's error code arrives before our timeout) and, for MCOPY_EXT, that plus one
//!   `dest_client_T` per target (a chain waits on each hop in turn). While it waits for the
//!   single reply the socket may stay silent for the whole deadline.

use std::thread;
use std::time::Duration;

use crate::conn::Conn;
use crate::depot::{encode, Depot};
use crate::error::{Error, Result};
use crate::handle::CapHandle;
use crate::proto::capability::{CapKind, Capability};
use crate::proto::request::ext::{self, ExtRequest, McopyExt, Strategy, MAX_STREAMS};
use crate::proto::request::{DepotCopy, Request, Transfer, MCOPY_MAX_TARGETS};
use crate::proto::{reply, ErrorCode};

pub use crate::proto::request::ext::Strategy as McopyStrategy;

/// Connection type TCP for PUSH/PULL (PROTOCOL.md §8, `ctype`).
const CTYPE_TCP: i32 = 1;
/// Copies with streams split on multiples of this (the depot's default checksum block), so no
/// two streams write into the same block of the target.
pub const STREAM_ALIGN_BYTES: u64 = 64 * 1024;
/// Most parallel PUSHes one [`CapHandle::copy_streams`] runs.
pub const MAX_COPY_STREAMS: usize = 64;

/// The three timeouts a copy command carries, and the client's own deadline for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyTimeouts {
    /// `T`: the depot's deadline for its own side (seconds).
    pub own_s: i64,
    /// `dest_T`: server sync put into the nested command at the other depot (seconds).
    pub dest_s: i64,
    /// `dest_client_T`: how long the depot waits on the other depot (seconds, ≥ 1).
    pub dest_client_s: i64,
    /// How long the client waits for the reply.
    pub client_deadline: Duration,
}

impl CopyTimeouts {
    /// The rule in the module docs: every depot-side value is `server_timeout_s + len /
    /// min_rate` seconds, the client deadline `op_timeout + len / min_rate`.
    pub fn for_len(depot: &Depot, len: u64) -> CopyTimeouts {
        let config = depot.config();
        let depot_s = config.server_timeout_for(len).max(1);
        CopyTimeouts {
            own_s: depot_s,
            dest_s: depot_s,
            dest_client_s: depot_s,
            client_deadline: config.op_budget(len),
        }
    }

    /// The deadline for an MCOPY_EXT to `targets` targets: one more `dest_client_T` per target.
    fn for_mcopy(self, targets: usize) -> Duration {
        let per_target = Duration::from_secs(self.dest_client_s.unsigned_abs());
        self.client_deadline + per_target * u32::try_from(targets).unwrap_or(u32::MAX)
    }
}

/// Which wire path an [`CapHandle::mcopy`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McopyMethod {
    /// MCOPY_EXT (60) with the asked strategy.
    Ext(Strategy),
    /// The depot answered `-43`: one SEND per target, in order.
    SequentialSends,
}

/// The outcome of an mcopy: one result per target, in the order given.
#[derive(Debug)]
pub struct McopyReport {
    /// Bytes each target confirmed, or why it failed.
    pub results: Vec<Result<u64>>,
    /// The path that ran.
    pub method: McopyMethod,
}

/// How an mcopy should move the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McopyPlan {
    /// Fan-out or chain.
    pub strategy: Strategy,
    /// Parallel streams per target (fan-out only), 1..=[`MAX_STREAMS`].
    pub streams: u32,
}

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidArgument(format!("{what} too large")))
}

/// `-1` (append) or a non-negative offset.
fn check_offset(offset: i64, what: &str) -> Result<i64> {
    if offset >= -1 {
        Ok(offset)
    } else {
        Err(Error::InvalidArgument(format!("{what} must be -1 (append) or an offset")))
    }
}

fn need(cap: &Capability, kind: CapKind) -> Result<()> {
    if cap.kind == kind {
        Ok(())
    } else {
        Err(Error::WrongCapKind { expected: kind, actual: cap.kind })
    }
}

/// Sends `line` and reads the single reply line, letting the depot stay silent for the whole
/// `deadline` (it answers only when the copy is over); restores the socket limit afterwards.
fn one_reply<T>(
    conn: &mut Conn,
    line: &[u8],
    deadline: Duration,
    parse: impl FnOnce(&[u8]) -> std::result::Result<T, reply::ReplyError>,
) -> Result<T> {
    let silence = conn.set_io_timeout(deadline);
    conn.send(line)?;
    let value = conn.read_reply(parse)?;
    conn.set_io_timeout(silence);
    Ok(value)
}

/// `1 <n>`: the bytes a copy confirmed, which must be all of them.
fn confirmed(n: i64, len: u64) -> Result<u64> {
    match u64::try_from(n) {
        Ok(n) if n == len => Ok(n),
        _ => Err(Error::protocol(format!("depot confirmed {n} bytes of a {len}-byte copy"))),
    }
}

impl CapHandle<'_> {
    fn copy_call(&self, req: Request, len: u64, t: CopyTimeouts) -> Result<u64> {
        let line = encode(&req);
        // Not idempotent (an append must not run twice); -66 notices are still retried
        // because the depot sends them before it starts anything.
        let n = self.depot().call(t.client_deadline, false, |conn| {
            one_reply(conn, &line, t.client_deadline, reply::parse_count)
        })?;
        confirmed(n, len)
    }

    /// SEND: appends `[src_offset, +len)` of this allocation (read capability) to `target`
    /// (write capability, any depot), with the timeouts of [`CopyTimeouts::for_len`].
    /// Returns the bytes the target confirmed.
    pub fn send(&self, target: &Capability, src_offset: u64, len: u64) -> Result<u64> {
        self.send_with(target, src_offset, len, CopyTimeouts::for_len(self.depot(), len))
    }

    /// SEND with explicit timeouts.
    pub fn send_with(
        &self,
        target: &Capability,
        src_offset: u64,
        len: u64,
        t: CopyTimeouts,
    ) -> Result<u64> {
        need(self.capability(), CapKind::Read)?;
        need(target, CapKind::Write)?;
        let req = Request::Send(DepotCopy {
            version: 1,
            chksum: None,
            path: None,
            key: self.capability().key_ref(),
            target: target.clone(),
            typekey: self.capability().typekey.clone(),
            src_offset: to_i64(src_offset, "source offset")?,
            len: to_i64(len, "length")?,
            timeout_s: t.own_s,
            dest_timeout_s: t.dest_s,
            dest_client_timeout_s: t.dest_client_s,
        });
        self.copy_call(req, len, t)
    }

    /// PUSH: copies `[local_offset, +len)` of this allocation (read capability) into `remote`
    /// (write capability) at `remote_offset` (`-1` = append).
    pub fn push(
        &self,
        local_offset: u64,
        remote: &Capability,
        remote_offset: i64,
        len: u64,
    ) -> Result<u64> {
        need(self.capability(), CapKind::Read)?;
        need(remote, CapKind::Write)?;
        let local_offset = to_i64(local_offset, "local offset")?;
        let remote_offset = check_offset(remote_offset, "remote offset")?;
        self.transfer(true, local_offset, remote, remote_offset, len)
    }

    /// PULL: loads `[remote_offset, +len)` of `remote` (read capability) into this allocation
    /// (write capability) at `local_offset` (`-1` = append).
    pub fn pull(
        &self,
        local_offset: i64,
        remote: &Capability,
        remote_offset: u64,
        len: u64,
    ) -> Result<u64> {
        need(self.capability(), CapKind::Write)?;
        need(remote, CapKind::Read)?;
        let local_offset = check_offset(local_offset, "local offset")?;
        let remote_offset = to_i64(remote_offset, "remote offset")?;
        self.transfer(false, local_offset, remote, remote_offset, len)
    }

    fn transfer(
        &self,
        push: bool,
        local_offset: i64,
        remote: &Capability,
        remote_offset: i64,
        len: u64,
    ) -> Result<u64> {
        let t = CopyTimeouts::for_len(self.depot(), len);
        let tr = Transfer {
            version: 1,
            chksum: None,
            ctype: CTYPE_TCP,
            path: None,
            key: self.capability().key_ref(),
            remote: remote.clone(),
            typekey: self.capability().typekey.clone(),
            local_offset,
            remote_offset,
            len: to_i64(len, "length")?,
            timeout_s: t.own_s,
            dest_timeout_s: t.dest_s,
            dest_client_timeout_s: t.dest_client_s,
        };
        self.copy_call(if push { Request::Push(tr) } else { Request::Pull(tr) }, len, t)
    }

    /// Copies `[src_offset, +len)` of this allocation (read capability) to the end of `target`
    /// with `streams` parallel PUSHes of consecutive ranges (see the module docs: the target's
    /// size is probed through its write capability). One stream is a plain SEND. Returns the
    /// bytes confirmed; the first failing part's error otherwise.
    pub fn copy_streams(
        &self,
        target: &Capability,
        src_offset: u64,
        len: u64,
        streams: usize,
    ) -> Result<u64> {
        if streams == 0 || streams > MAX_COPY_STREAMS {
            return Err(Error::InvalidArgument(format!("streams must be 1..={MAX_COPY_STREAMS}")));
        }
        need(self.capability(), CapKind::Read)?;
        need(target, CapKind::Write)?;
        if streams == 1 {
            return self.send(target, src_offset, len);
        }
        let target_depot = Depot::for_capability(target, self.depot().config().clone());
        let base = u64::try_from(target_depot.handle(target).probe()?.size)
            .map_err(|_| Error::protocol("negative size in probe reply"))?;
        let parts = crate::parallel::split_ranges(len, streams, STREAM_ALIGN_BYTES);
        let results: Vec<Result<u64>> = thread::scope(|s| {
            let workers: Vec<_> = parts
                .iter()
                .map(|part| {
                    let part = part.clone();
                    s.spawn(move || {
                        let at = to_i64(base + part.start, "target offset")?;
                        self.push(src_offset + part.start, target, at, part.end - part.start)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(Error::protocol("copy stream panicked"))))
                .collect()
        });
        results.into_iter().try_fold(0u64, |sum, r| r.map(|n| sum + n))
    }

    /// MCOPY_EXT: copies `[src_offset, +len)` of this allocation (read capability) to the end
    /// of every target (write capabilities) by `plan`; falls back to sequential SENDs when
    /// the depot answers `-43`. An `Err` means nothing was copied (bad source, no depot);
    /// otherwise each target has its own result.
    pub fn mcopy(
        &self,
        targets: &[Capability],
        src_offset: u64,
        len: u64,
        plan: McopyPlan,
    ) -> Result<McopyReport> {
        need(self.capability(), CapKind::Read)?;
        if targets.is_empty() || targets.len() > MCOPY_MAX_TARGETS {
            return Err(Error::InvalidArgument(format!(
                "an mcopy needs 1..={MCOPY_MAX_TARGETS} targets"
            )));
        }
        if plan.streams == 0 || i64::from(plan.streams) > MAX_STREAMS {
            return Err(Error::InvalidArgument(format!("streams must be 1..={MAX_STREAMS}")));
        }
        for t in targets {
            need(t, CapKind::Write)?;
        }
        let t = CopyTimeouts::for_len(self.depot(), len);
        match self.mcopy_ext(targets, src_offset, len, plan, t) {
            Err(Error::Ibp(ErrorCode::UnknownFunction)) => {
                let results = targets
                    .iter()
                    .map(|target| self.send_with(target, src_offset, len, t))
                    .collect();
                Ok(McopyReport { results, method: McopyMethod::SequentialSends })
            }
            other => other,
        }
    }

    fn mcopy_ext(
        &self,
        targets: &[Capability],
        src_offset: u64,
        len: u64,
        plan: McopyPlan,
        t: CopyTimeouts,
    ) -> Result<McopyReport> {
        let req = ExtRequest::McopyExt(McopyExt {
            version: 1,
            key: self.capability().key_ref(),
            typekey: self.capability().typekey.clone(),
            offset: to_i64(src_offset, "source offset")?,
            len: to_i64(len, "length")?,
            strategy: plan.strategy,
            streams: i64::from(plan.streams),
            timeout_s: t.own_s,
            dest_timeout_s: t.dest_s,
            dest_client_timeout_s: t.dest_client_s,
            targets: targets.to_vec(),
        });
        let mut line = Vec::with_capacity(256 * (targets.len() + 1));
        req.encode(&mut line);
        let deadline = t.for_mcopy(targets.len());
        let pairs = self
            .depot()
            .call(deadline, false, |conn| one_reply(conn, &line, deadline, ext::parse_results))?;
        if pairs.len() != targets.len() {
            return Err(Error::protocol(format!(
                "mcopy reply has {} results for {} targets",
                pairs.len(),
                targets.len()
            )));
        }
        let results = pairs.into_iter().map(|(status, n)| target_result(status, n, len)).collect();
        Ok(McopyReport { results, method: McopyMethod::Ext(plan.strategy) })
    }
}

/// One `status nbytes` pair of an MCOPY_EXT reply.
fn target_result(status: i32, n: i64, len: u64) -> Result<u64> {
    if status == crate::proto::IBP_OK {
        return confirmed(n, len);
    }
    match ErrorCode::from_code(status) {
        Some(code) => Err(Error::Ibp(code)),
        None => Err(Error::UnknownCode(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn timeouts_scale_with_length() {
        let depot = Depot::new("127.0.0.1", 1, Config::default());
        let small = CopyTimeouts::for_len(&depot, 1);
        assert_eq!((small.own_s, small.dest_s, small.dest_client_s), (30, 30, 30));
        let gib = CopyTimeouts::for_len(&depot, 1 << 30);
        assert_eq!(gib.own_s, 30 + 1024, "1 s per MiB on top of the base");
        assert_eq!(gib.client_deadline, Duration::from_secs(60 + 1024));
        assert!(gib.client_deadline > Duration::from_secs(gib.own_s.unsigned_abs()));
        assert_eq!(gib.for_mcopy(3), Duration::from_secs(60 + 1024 + 3 * 1054));
    }

    #[test]
    fn target_results_map_codes() {
        assert_eq!(target_result(1, 10, 10).ok(), Some(10));
        assert!(matches!(target_result(1, 9, 10), Err(Error::Protocol(_))));
        assert!(matches!(target_result(-4, 0, 10), Err(Error::Ibp(ErrorCode::CapNotFound))));
        assert!(matches!(target_result(-999, 0, 10), Err(Error::UnknownCode(-999))));
    }

    #[test]
    fn arguments_are_checked_before_sending() {
        let depot = Depot::new("127.0.0.1", 1, Config::default());
        let read = Capability::new("127.0.0.1", 1, "1", "k", "1", CapKind::Read).expect("cap");
        let write = Capability::new("127.0.0.1", 1, "1", "k", "1", CapKind::Write).expect("cap");
        let h = depot.handle(&read);
        assert!(matches!(h.send(&read, 0, 1), Err(Error::WrongCapKind { .. })));
        assert!(matches!(h.push(0, &write, -2, 1), Err(Error::InvalidArgument(_))));
        assert!(matches!(h.copy_streams(&write, 0, 1, 0), Err(Error::InvalidArgument(_))));
        let plan = McopyPlan { strategy: Strategy::Fanout, streams: 1 };
        assert!(matches!(h.mcopy(&[], 0, 1, plan), Err(Error::InvalidArgument(_))));
        let plan = McopyPlan { strategy: Strategy::Chain, streams: 65 };
        assert!(matches!(h.mcopy(&[write], 0, 1, plan), Err(Error::InvalidArgument(_))));
    }
}
