//! [`Request::encode`]: the canonical ACCRE-form line, which [`parse_request`] reads back
//! equal. Values are written as given; a request built by hand must respect the same bounds
//! the parser enforces (valid keys, 1..=[`IOVEC_MAX`] spans, a path only with ctype 2 for
//! PUSH/PULL) or the line will not parse back.

use super::*;
use crate::proto::frame::push_int;

/// Writes space-separated tokens and the final `\n`.
pub(super) struct LineWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> LineWriter<'o> {
    pub(super) fn new(out: &'o mut Vec<u8>) -> Self {
        LineWriter { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
    }

    pub(super) fn str(&mut self, s: &str) -> &mut Self {
        self.sep();
        self.out.extend_from_slice(s.as_bytes());
        self
    }

    pub(super) fn int(&mut self, n: impl Into<i64>) -> &mut Self {
        self.sep();
        push_int(self.out, n.into());
        self
    }

    pub(super) fn key(&mut self, key: &KeyRef) -> &mut Self {
        self.sep();
        key.encode(self.out);
        self
    }

    pub(super) fn cap(&mut self, cap: &Capability) -> &mut Self {
        self.sep();
        self.out.extend_from_slice(cap.to_url().as_bytes());
        self
    }

    pub(super) fn chksum(&mut self, chksum: &Option<ChksumSpec>) -> &mut Self {
        if let Some(spec) = chksum {
            self.int(spec.cstype).int(spec.blocksize);
        }
        self
    }

    pub(super) fn opt_str(&mut self, s: &Option<String>) -> &mut Self {
        if let Some(s) = s {
            self.str(s);
        }
        self
    }

    pub(super) fn end(&mut self) {
        self.out.push(b'\n');
    }
}

impl Request {
    /// Appends the canonical wire line (ending in `\n`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = LineWriter::new(out);
        w.int(self.version()).int(self.command_number());
        match self {
            Request::Allocate(r) => {
                w.chksum(&r.chksum).opt_str(&r.rid);
                w.int(r.reliability).int(r.atype).int(r.duration_s).int(r.size).int(r.timeout_s);
            }
            Request::Store(r) => {
                w.chksum(&r.chksum).key(&r.key).str(&r.typekey).int(r.len).int(r.timeout_s);
            }
            Request::Write(r) | Request::Load(r) => {
                w.chksum(&r.chksum).key(&r.key).str(&r.typekey);
                w.int(r.offset).int(r.len).int(r.timeout_s);
            }
            Request::Manage(r) => encode_manage(&mut w, r),
            Request::Status(r) => encode_status(&mut w, r),
            Request::Send(r) | Request::PhoebusSend(r) => {
                w.chksum(&r.chksum).opt_str(&r.path).key(&r.key).cap(&r.target).str(&r.typekey);
                w.int(r.src_offset).int(r.len);
                w.int(r.timeout_s).int(r.dest_timeout_s).int(r.dest_client_timeout_s);
            }
            Request::Push(r) | Request::Pull(r) => {
                w.chksum(&r.chksum).int(r.ctype).opt_str(&r.path);
                w.key(&r.key).cap(&r.remote).str(&r.typekey);
                w.int(r.local_offset).int(r.remote_offset).int(r.len);
                w.int(r.timeout_s).int(r.dest_timeout_s).int(r.dest_client_timeout_s);
            }
            Request::AliasAllocate(r) => {
                w.key(&r.key).str(&r.typekey).int(r.offset).int(r.len).int(r.duration_s);
                w.int(r.timeout_s);
            }
            Request::AliasManage(r) => encode_alias_manage(&mut w, r),
            Request::Rename(r) => {
                w.key(&r.key).str(&r.typekey).int(r.timeout_s);
            }
            Request::SplitAllocate(r) => {
                w.chksum(&r.chksum).key(&r.key).str(&r.typekey);
                w.int(r.reliability).int(r.atype).int(r.duration_s).int(r.size).int(r.timeout_s);
            }
            Request::MergeAllocate(r) => {
                w.key(&r.master_key).str(&r.master_typekey);
                w.key(&r.child_key).str(&r.child_typekey).int(r.timeout_s);
            }
            Request::GetChksum(r) | Request::ValidateChksum(r) => {
                w.key(&r.key).str(&r.typekey).int(r.flag).int(r.timeout_s);
            }
            Request::VecWrite(r) | Request::VecRead(r) => {
                w.chksum(&r.chksum).key(&r.key).str(&r.typekey);
                w.int(i64::try_from(r.iovec.len()).unwrap_or(i64::MAX));
                for span in &r.iovec {
                    w.int(span.offset).int(span.len);
                }
                w.int(r.timeout_s);
            }
            Request::Mcopy(r) => {
                w.int(r.buflen);
            }
        }
        w.end();
    }
}

fn encode_manage(w: &mut LineWriter<'_>, r: &Manage) {
    w.key(&r.key).str(&r.typekey);
    match &r.op {
        // The placeholders LStore and LoCI send; parsers skip them.
        ManageOp::Probe { captype } => w.int(cmd::PROBE).int(*captype).int(0).int(0).int(0),
        ManageOp::Incr { captype } => w.int(cmd::INCR).int(*captype),
        ManageOp::Decr { captype } => w.int(cmd::DECR).int(*captype),
        ManageOp::Change { captype, max_size, duration_s, reliability } => {
            w.int(cmd::CHNG).int(*captype).int(*max_size).int(*duration_s).int(*reliability)
        }
        ManageOp::Truncate { max_size } => w.int(cmd::TRUNCATE).int(*max_size),
    };
    w.int(r.timeout_s);
}

fn encode_status(w: &mut LineWriter<'_>, r: &Status) {
    match &r.op {
        StatusOp::Inq { rid, password } => {
            w.opt_str(rid).int(cmd::ST_INQ).str(&password.0);
        }
        StatusOp::Change { rid, password } => {
            w.opt_str(rid).int(cmd::ST_CHANGE).str(&password.0);
        }
        StatusOp::Res => {
            w.int(cmd::ST_RES);
        }
        StatusOp::Stats { start_time } => {
            w.int(cmd::ST_STATS).int(*start_time);
        }
        StatusOp::Version => {
            w.int(cmd::ST_VERSION);
        }
    }
    w.int(r.timeout_s);
}

fn encode_alias_manage(w: &mut LineWriter<'_>, r: &AliasManage) {
    w.key(&r.key).str(&r.typekey);
    match &r.op {
        AliasManageOp::Probe => {
            w.int(cmd::PROBE);
        }
        AliasManageOp::Incr { captype, master_key, master_typekey } => {
            w.int(cmd::INCR).int(*captype).key(master_key).str(master_typekey);
        }
        AliasManageOp::Decr { captype, master_key, master_typekey } => {
            w.int(cmd::DECR).int(*captype).key(master_key).str(master_typekey);
        }
        AliasManageOp::Change { offset, len, duration_s, master_key, master_typekey } => {
            w.int(cmd::CHNG).int(*offset).int(*len).int(*duration_s);
            w.key(master_key).str(master_typekey);
        }
    }
    w.int(r.timeout_s);
}
