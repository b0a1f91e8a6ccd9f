//! An in-memory fake depot for the client library's tests: it speaks the wire protocol
//! through the crate's own codec (parse_request / reply encoders), keeps allocations in a
//! map, and injects faults on demand: `-66` back-off on new connections, a connection cut
//! mid-load or mid-write, a depot that never answers. The real depot's end-to-end tests live
//! in `tests/`; this model lets the retry and resume logic be tested without it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ibp_client::proto::capability::{CapKind, Capability};
use ibp_client::proto::frame::{find_line, MAX_LINE_BYTES};
use ibp_client::proto::reply::{self, InqBody, ProbeReply};
use ibp_client::proto::request::{parse_request, ManageOp, Request, StatusOp};
use ibp_client::proto::ErrorCode;

#[derive(Debug, Default)]
pub struct Alloc {
    pub data: Vec<u8>,
    pub max_size: u64,
    pub read_refs: i64,
    pub reliability: i32,
    pub duration_s: i64,
}

#[derive(Debug, Default)]
pub struct State {
    pub allocs: HashMap<u64, Alloc>,
    /// key → (allocation id, kind)
    pub keys: HashMap<String, (u64, CapKind)>,
    next_id: u64,
}

/// Fault switches; each fires while its counter is non-zero and counts down.
#[derive(Debug, Default)]
pub struct Faults {
    /// New connections answered with `-66 0.01` and closed.
    pub backoff_connections: AtomicU32,
    /// Loads that send half their data and then close.
    pub cut_loads: AtomicU32,
    /// Writes that read half their data and then close without replying.
    pub cut_writes: AtomicU32,
    /// Only cut transfers at least this long.
    pub cut_min_len: AtomicU64,
    /// Accept connections but never answer.
    pub silent: AtomicBool,
    /// Close every connection after one command (like an idle-closing depot).
    pub one_command_per_connection: AtomicBool,
}

pub struct FakeDepot {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    pub faults: Arc<Faults>,
    pub connections: Arc<AtomicU32>,
}

fn take(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

impl FakeDepot {
    pub fn start() -> FakeDepot {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let faults = Arc::new(Faults::default());
        let connections = Arc::new(AtomicU32::new(0));
        let (s, f, c) = (state.clone(), faults.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let (s, f) = (s.clone(), f.clone());
                thread::spawn(move || serve(stream, &s, &f));
            }
        });
        FakeDepot { addr, state, faults, connections }
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Flips one byte of an allocation (by any of its keys).
    pub fn corrupt(&self, cap: &Capability, offset: usize) {
        let mut st = self.state.lock().expect("state");
        let id = st.keys[&cap.key].0;
        st.allocs.get_mut(&id).expect("alloc").data[offset] ^= 0xff;
    }

    pub fn data(&self, cap: &Capability) -> Vec<u8> {
        let st = self.state.lock().expect("state");
        let id = st.keys[&cap.key].0;
        st.allocs[&id].data.clone()
    }
}

struct Io {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Io {
    /// A refused write whose payload the client already pipelined: stop sending, then read
    /// and drop what still arrives (bounded) before closing, as a real depot should, so the
    /// close is a FIN after the error reply and not a reset that could destroy the reply.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.stream.set_read_timeout(Some(std::time::Duration::from_millis(500)));
        let mut sink = [0u8; 64 * 1024];
        let mut total = 0usize;
        while total < 64 << 20 {
            match std::io::Read::read(&mut self.stream, &mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Ok(Some(n)) = find_line(&self.buf, MAX_LINE_BYTES) {
                return Some(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }
}

fn error(io: &mut Io, code: ErrorCode) {
    let mut out = Vec::new();
    reply::error(&mut out, code);
    io.send(&out);
}

fn serve(stream: TcpStream, state: &Mutex<State>, faults: &Faults) {
    let mut io = Io { stream, buf: Vec::new() };
    if take(&faults.backoff_connections) {
        let mut out = Vec::new();
        reply::close_notice(&mut out, 0.01);
        io.send(&out);
        return;
    }
    while let Some(line) = io.line() {
        if faults.silent.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_secs(5));
            return;
        }
        let req = match parse_request(&line) {
            Ok(req) => req,
            Err(e) => return error(&mut io, e.code),
        };
        if !handle(&mut io, req, state, faults) {
            return;
        }
        if faults.one_command_per_connection.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn lookup(state: &Mutex<State>, key: &str, kind: CapKind) -> Result<u64, ErrorCode> {
    let st = state.lock().map_err(|_| ErrorCode::Internal)?;
    match st.keys.get(key) {
        Some((id, k)) if *k == kind => Ok(*id),
        _ => Err(ErrorCode::CapNotFound),
    }
}

/// Returns false when the connection must close.
fn handle(io: &mut Io, req: Request, state: &Mutex<State>, faults: &Faults) -> bool {
    let mut out = Vec::new();
    match req {
        Request::Allocate(a) => {
            let mut st = state.lock().expect("state");
            st.next_id += 1;
            let id = st.next_id;
            st.allocs.insert(
                id,
                Alloc {
                    max_size: a.size as u64,
                    read_refs: 1,
                    reliability: a.reliability,
                    duration_s: a.duration_s,
                    ..Alloc::default()
                },
            );
            let host = io.stream.local_addr().expect("addr");
            let caps = [CapKind::Read, CapKind::Write, CapKind::Manage].map(|kind| {
                let key = format!("k{id}{}", kind.word().to_lowercase());
                st.keys.insert(key.clone(), (id, kind));
                Capability::new(host.ip().to_string(), host.port(), "0", key, "3862277", kind)
                    .expect("valid cap")
            });
            reply::caps(&mut out, &caps);
        }
        Request::Store(s) => return write(io, state, faults, &s.key.key, None, s.len as u64),
        Request::Write(w) => {
            return write(io, state, faults, &w.key.key, Some(w.offset as u64), w.len as u64)
        }
        Request::Load(l) => {
            return load(io, state, faults, &l.key.key, l.offset as u64, l.len as u64)
        }
        // An old depot's SEND (no MCOPY_EXT here, which answers -43): targets are looked up
        // in this fake's own map, whatever host they name.
        Request::Send(c) => match send(state, &c.key.key, &c.target.key, c.src_offset, c.len) {
            Ok(n) => reply::count(&mut out, n),
            Err(code) => reply::error(&mut out, code),
        },
        Request::Manage(m) => {
            let id = match lookup(state, &m.key.key, CapKind::Manage)
                .or_else(|_| lookup(state, &m.key.key, CapKind::Read))
            {
                Ok(id) => id,
                Err(code) => {
                    error(io, code);
                    return false;
                }
            };
            let mut st = state.lock().expect("state");
            let alloc = st.allocs.get_mut(&id).expect("alloc");
            match m.op {
                ManageOp::Probe { .. } => reply::probe(
                    &mut out,
                    &ProbeReply {
                        read_refs: alloc.read_refs,
                        write_refs: 0,
                        size: alloc.data.len() as i64,
                        max_size: alloc.max_size as i64,
                        seconds_left: alloc.duration_s,
                        reliability: alloc.reliability,
                        atype: 1,
                    },
                ),
                ManageOp::Incr { .. } => {
                    alloc.read_refs += 1;
                    reply::ok(&mut out);
                }
                ManageOp::Decr { .. } => {
                    alloc.read_refs -= 1;
                    if alloc.read_refs <= 0 {
                        st.allocs.remove(&id);
                        st.keys.retain(|_, (i, _)| *i != id);
                    }
                    reply::ok(&mut out);
                }
                ManageOp::Change { max_size, duration_s, reliability, .. } => {
                    if (max_size as usize) < alloc.data.len() {
                        reply::error(&mut out, ErrorCode::WouldDamageData);
                    } else {
                        alloc.max_size = max_size as u64;
                        if duration_s >= 0 {
                            alloc.duration_s = duration_s;
                        }
                        if reliability >= 0 {
                            alloc.reliability = reliability;
                        }
                        reply::ok(&mut out);
                    }
                }
                ManageOp::Truncate { max_size } => {
                    alloc.max_size = max_size as u64;
                    alloc.data.truncate(max_size as usize);
                    reply::ok(&mut out);
                }
            }
        }
        Request::Status(s) => match s.op {
            StatusOp::Inq { .. } => reply::status_inq(
                &mut out,
                &InqBody {
                    version: "1.4:1.0".into(),
                    data_movers: "1".into(),
                    rid: "0".into(),
                    resource_type: 1,
                    configured_total: 1 << 30,
                    served_total: 1 << 30,
                    max_duration_s: 86400,
                    ..InqBody::default()
                },
            ),
            StatusOp::Res => reply::status_res(&mut out, &["0", "1"]),
            StatusOp::Version => reply::status_version(&mut out, "fake depot\nuptime 1s\n"),
            _ => reply::error(&mut out, ErrorCode::InvalidCmd),
        },
        _ => reply::error(&mut out, ErrorCode::UnknownFunction),
    }
    io.send(&out)
}

fn write(
    io: &mut Io,
    state: &Mutex<State>,
    faults: &Faults,
    key: &str,
    offset: Option<u64>,
    len: u64,
) -> bool {
    let id = match lookup(state, key, CapKind::Write) {
        Ok(id) => id,
        Err(code) => {
            error(io, code);
            io.linger();
            return false;
        }
    };
    let at = {
        let st = state.lock().expect("state");
        let alloc = &st.allocs[&id];
        let at = offset.unwrap_or(alloc.data.len() as u64);
        if at + len > alloc.max_size {
            drop(st);
            error(io, ErrorCode::WouldExceedLimit);
            io.linger();
            return false;
        }
        at
    };
    let mut out = Vec::new();
    reply::ok(&mut out);
    if !io.send(&out) {
        return false;
    }
    if len >= faults.cut_min_len.load(Ordering::SeqCst) && take(&faults.cut_writes) {
        let _ = io.exact(len as usize / 2);
        return false;
    }
    let Some(data) = io.exact(len as usize) else { return false };
    {
        let mut st = state.lock().expect("state");
        let alloc = st.allocs.get_mut(&id).expect("alloc");
        let end = (at + len) as usize;
        if alloc.data.len() < end {
            alloc.data.resize(end, 0);
        }
        alloc.data[at as usize..end].copy_from_slice(&data);
    }
    out.clear();
    reply::count(&mut out, len as i64);
    io.send(&out)
}

fn send(
    state: &Mutex<State>,
    src_key: &str,
    dst_key: &str,
    offset: i64,
    len: i64,
) -> Result<i64, ErrorCode> {
    let src = lookup(state, src_key, CapKind::Read)?;
    let dst = lookup(state, dst_key, CapKind::Write)?;
    let mut st = state.lock().expect("state");
    let (off, end) = (offset as usize, (offset + len) as usize);
    let bytes = st.allocs[&src].data.get(off..end).ok_or(ErrorCode::WouldExceedLimit)?.to_vec();
    let target = st.allocs.get_mut(&dst).expect("alloc");
    if (target.data.len() + bytes.len()) as u64 > target.max_size {
        return Err(ErrorCode::WouldExceedLimit);
    }
    target.data.extend_from_slice(&bytes);
    Ok(len)
}

fn load(
    io: &mut Io,
    state: &Mutex<State>,
    faults: &Faults,
    key: &str,
    offset: u64,
    len: u64,
) -> bool {
    let id = match lookup(state, key, CapKind::Read) {
        Ok(id) => id,
        Err(code) => {
            error(io, code);
            return false;
        }
    };
    let data = {
        let st = state.lock().expect("state");
        let alloc = &st.allocs[&id];
        if offset + len > alloc.data.len() as u64 {
            drop(st);
            error(io, ErrorCode::WouldExceedLimit);
            return true; // ACCRE keeps the connection for -19 on load
        }
        alloc.data[offset as usize..(offset + len) as usize].to_vec()
    };
    let mut out = Vec::new();
    reply::count(&mut out, len as i64);
    if len >= faults.cut_min_len.load(Ordering::SeqCst) && take(&faults.cut_loads) {
        out.extend_from_slice(&data[..data.len() / 2]);
        io.send(&out);
        return false;
    }
    out.extend_from_slice(&data);
    io.send(&out)
}
