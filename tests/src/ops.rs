//! One helper per IBP command, in two forms: `try_x` returns the depot's answer (an error code
//! is a value, not a panic) and `x` panics with the reply when it is not the success the test
//! expects. All requests are version 1 with timeout 30 unless the name says otherwise.

use crate::cap::{Cap, Caps};
use crate::raw::{status_of, tokens, Raw, ReadEnd};
use crate::Depot;

/// Server-side timeout sent with every helper command.
pub const T: u32 = 30;

/// How a data command failed.
#[derive(Debug)]
pub enum Fail {
    /// The depot answered this IBP error code.
    Code(i64),
    /// The reply line was not what the protocol allows.
    Garbled(String),
    /// The connection ended (or stalled) before a complete answer; `got` bytes of data came.
    Cut { got: Vec<u8>, why: String },
}

impl Fail {
    pub fn code(&self) -> Option<i64> {
        match self {
            Fail::Code(c) => Some(*c),
            _ => None,
        }
    }
}

fn cut(why: ReadEnd) -> Fail {
    Fail::Cut { got: Vec::new(), why: format!("{why:?}") }
}

/// `ALLOCATE` on RID 1: `1 1 1 <rel> 1 <duration> <size> 30`.
pub fn try_allocate(raw: &mut Raw, size: u64, duration_s: i64, hard: bool) -> Result<Caps, Fail> {
    let rel = if hard { 2 } else { 1 };
    try_allocate_line(raw, &format!("1 1 1 {rel} 1 {duration_s} {size} {T}"))
}

/// Sends an ALLOCATE line as given and parses the three caps.
pub fn try_allocate_line(raw: &mut Raw, line: &str) -> Result<Caps, Fail> {
    raw.try_send(format!("{line}\n").as_bytes()).map_err(|e| cut(ReadEnd::Io(e)))?;
    let reply = raw.try_line().map_err(cut)?;
    match status_of(&reply) {
        1 => Caps::parse_reply(&reply).map_err(Fail::Garbled),
        c if c < 0 => Err(Fail::Code(c)),
        _ => Err(Fail::Garbled(reply)),
    }
}

pub fn allocate(raw: &mut Raw, size: u64, duration_s: i64, hard: bool) -> Caps {
    try_allocate(raw, size, duration_s, hard)
        .unwrap_or_else(|e| panic!("ALLOCATE size {size} duration {duration_s} hard {hard}: {e:?}"))
}

/// STORE in lock-step (LoCI style): header, wait for `1 \n`, data, wait for `1 <len>`.
/// Returns the length the depot acknowledged.
pub fn try_store(raw: &mut Raw, cap: &Cap, data: &[u8]) -> Result<u64, Fail> {
    try_store_v(raw, 1, cap, data)
}

pub fn try_store_v(raw: &mut Raw, version: u8, cap: &Cap, data: &[u8]) -> Result<u64, Fail> {
    let header = format!("{version} 2 {} {} {T}\n", cap.wire(), data.len());
    data_command(raw, header.as_bytes(), data, false)
}

/// STORE with the data in the same write as the header (LStore style, before the ack).
pub fn try_store_pipelined(raw: &mut Raw, cap: &Cap, data: &[u8]) -> Result<u64, Fail> {
    let header = format!("1 2 {} {} {T}\n", cap.wire(), data.len());
    data_command(raw, header.as_bytes(), data, true)
}

pub fn store(raw: &mut Raw, cap: &Cap, data: &[u8]) {
    let n =
        try_store(raw, cap, data).unwrap_or_else(|e| panic!("STORE {} bytes: {e:?}", data.len()));
    assert_eq!(n, data.len() as u64, "STORE acknowledged {n} of {} bytes", data.len());
}

/// WRITE (13) at `offset`, lock-step.
pub fn try_write(raw: &mut Raw, cap: &Cap, offset: u64, data: &[u8]) -> Result<u64, Fail> {
    let header = format!("1 13 {} {offset} {} {T}\n", cap.wire(), data.len());
    data_command(raw, header.as_bytes(), data, false)
}

/// WRITE (13) with the data in the same write as the header (before the ack).
pub fn try_write_pipelined(
    raw: &mut Raw,
    cap: &Cap,
    offset: u64,
    data: &[u8],
) -> Result<u64, Fail> {
    let header = format!("1 13 {} {offset} {} {T}\n", cap.wire(), data.len());
    data_command(raw, header.as_bytes(), data, true)
}

pub fn write(raw: &mut Raw, cap: &Cap, offset: u64, data: &[u8]) {
    let n = try_write(raw, cap, offset, data)
        .unwrap_or_else(|e| panic!("WRITE {} bytes at {offset}: {e:?}", data.len()));
    assert_eq!(n, data.len() as u64, "WRITE acknowledged {n} of {} bytes", data.len());
}

/// The two-phase data exchange shared by STORE and WRITE.
fn data_command(raw: &mut Raw, header: &[u8], data: &[u8], pipelined: bool) -> Result<u64, Fail> {
    if pipelined {
        let mut all = header.to_vec();
        all.extend_from_slice(data);
        raw.try_send(&all).map_err(|e| cut(ReadEnd::Io(e)))?;
    } else {
        raw.try_send(header).map_err(|e| cut(ReadEnd::Io(e)))?;
    }
    let ack = raw.try_line().map_err(cut)?;
    let t = tokens(&ack);
    match status_of(&ack) {
        1 if t.len() == 1 => {}
        c if c < 0 => return Err(Fail::Code(c)),
        _ => return Err(Fail::Garbled(ack)),
    }
    if !pipelined {
        raw.try_send(data).map_err(|e| cut(ReadEnd::Io(e)))?;
    }
    let done = raw.try_line().map_err(cut)?;
    let t = tokens(&done);
    match status_of(&done) {
        1 if t.len() == 2 => t[1].parse().map_err(|_| Fail::Garbled(done.clone())),
        c if c < 0 => Err(Fail::Code(c)),
        _ => Err(Fail::Garbled(done)),
    }
}

/// LOAD (8): `1 8 <read cap> <offset> <len> 30`; the data, or why not.
pub fn try_load(raw: &mut Raw, cap: &Cap, offset: u64, len: u64) -> Result<Vec<u8>, Fail> {
    try_load_v(raw, 1, cap, offset, len)
}

pub fn try_load_v(
    raw: &mut Raw,
    version: u8,
    cap: &Cap,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Fail> {
    let line = format!("{version} 8 {} {offset} {len} {T}\n", cap.wire());
    raw.try_send(line.as_bytes()).map_err(|e| cut(ReadEnd::Io(e)))?;
    read_load_reply(raw, len)
}

/// Reads a LOAD reply: `1 <len>` then exactly `len` bytes.
pub fn read_load_reply(raw: &mut Raw, len: u64) -> Result<Vec<u8>, Fail> {
    let head = raw.try_line().map_err(cut)?;
    let t = tokens(&head);
    match status_of(&head) {
        1 if t.len() == 2 && t[1] == len.to_string() => {}
        c if c < 0 => return Err(Fail::Code(c)),
        _ => return Err(Fail::Garbled(head)),
    }
    let n = usize::try_from(len).expect("a test load fits in memory");
    raw.try_read_exact(n).map_err(|(got, why)| Fail::Cut { got, why: format!("{why:?}") })
}

pub fn load(raw: &mut Raw, cap: &Cap, offset: u64, len: u64) -> Vec<u8> {
    try_load(raw, cap, offset, len)
        .unwrap_or_else(|e| panic!("LOAD {len} bytes at {offset}: {e:?}"))
}

/// A PROBE reply: `1 <readref> <writeref> <size> <maxsize> <secs left> <reliability> <type>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub read_refs: i64,
    pub write_refs: i64,
    pub size: u64,
    pub max_size: u64,
    pub secs_left: i64,
    /// 1 soft, 2 hard.
    pub reliability: i64,
    pub alloc_type: i64,
}

impl Probe {
    pub fn parse(line: &str) -> Result<Probe, String> {
        let t = tokens(line);
        let bad = || format!("PROBE reply {line:?}: want `1 r w size max secs rel type`");
        if t.len() != 8 || t[0] != "1" {
            return Err(bad());
        }
        let n = |i: usize| t[i].parse::<i64>().map_err(|_| bad());
        let u = |i: usize| t[i].parse::<u64>().map_err(|_| bad());
        Ok(Probe {
            read_refs: n(1)?,
            write_refs: n(2)?,
            size: u(3)?,
            max_size: u(4)?,
            secs_left: n(5)?,
            reliability: n(6)?,
            alloc_type: n(7)?,
        })
    }
}

/// PROBE through `cap` (any of the three): `1 9 <cap> 40 3 0 0 0 30`.
pub fn try_probe(raw: &mut Raw, cap: &Cap) -> Result<Probe, Fail> {
    let reply = manage(raw, cap, "40 3 0 0 0");
    match status_of(&reply) {
        1 => Probe::parse(&reply).map_err(Fail::Garbled),
        c if c < 0 => Err(Fail::Code(c)),
        _ => Err(Fail::Garbled(reply)),
    }
}

pub fn probe(raw: &mut Raw, cap: &Cap) -> Probe {
    try_probe(raw, cap).unwrap_or_else(|e| panic!("PROBE {cap}: {e:?}"))
}

/// MANAGE (9) with the given subcommand tokens; returns the reply line.
pub fn manage(raw: &mut Raw, cap: &Cap, sub: &str) -> String {
    raw.cmd(&format!("1 9 {} {sub} {T}", cap.wire()))
}

/// The status line of a MANAGE, or a panic if the connection ended.
pub fn manage_status(raw: &mut Raw, cap: &Cap, sub: &str) -> i64 {
    status_of(&manage(raw, cap, sub))
}

/// A fresh client allocates, stores, loads and compares: the depot still serves correctly.
pub fn sanity(depot: &Depot, seed: u64) {
    let mut raw = Raw::connect(depot.addr());
    let data = crate::pattern(seed, 100_000);
    let caps = allocate(&mut raw, data.len() as u64, 600, true);
    store(&mut raw, &caps.write, &data);
    let back = load(&mut raw, &caps.read, 0, data.len() as u64);
    assert!(back == data, "sanity: LOAD returned different bytes than STORE wrote");
    assert_eq!(manage_status(&mut raw, &caps.manage, "42 1"), 1, "sanity: DECR to delete");
}
