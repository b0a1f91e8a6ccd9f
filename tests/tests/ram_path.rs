//! The RAM resource's direct data path against the disk path: on RAM, STORE/WRITE bytes go
//! from the socket straight into the region and LOAD bytes from the region to the socket (no
//! bounce buffer), while disk goes through pool buffers and O_DIRECT. Both must give the same
//! answers byte for byte: a seeded random workload runs on one allocation of each and checks
//! every LOAD against a model; an aborted overwrite must leave both in the same verified
//! state.
//!
//! `RAM_PATH_SEED=n` replays a run (the seed is printed).

use ibp_tests::*;

fn depot() -> Depot {
    Depot::start(DepotOpts { ram_resource: true, ..Default::default() })
}

/// RIDs of the test depot: "1" is the disk resource, "2" the RAM one.
const RIDS: [&str; 2] = ["1", "2"];

/// Max size of the allocation each workload runs on.
const MAX: u64 = 3 << 20;

fn allocate_on(raw: &mut Raw, rid: &str, size: u64) -> Caps {
    let line = format!("1 1 {rid} 2 1 600 {size} 30");
    try_allocate_line(raw, &line).unwrap_or_else(|e| panic!("ALLOCATE on RID {rid}: {e:?}"))
}

fn vec_list(spans: &[(u64, usize)]) -> String {
    let mut s = spans.len().to_string();
    for (o, l) in spans {
        s.push_str(&format!(" {o} {l}"));
    }
    s
}

/// One allocation and what it must hold.
struct Subject {
    rid: &'static str,
    caps: Caps,
    model: Vec<u8>,
}

impl Subject {
    fn check(&self, raw: &mut Raw, offset: u64, len: u64, step: usize) {
        let got = load(raw, &self.caps.read, offset, len);
        let want = &self.model[offset as usize..(offset + len) as usize];
        assert!(got == want, "RID {} step {step}: LOAD {offset}+{len} differs", self.rid);
    }
}

#[test]
fn ram_and_disk_paths_agree_with_a_model() {
    let seed = Rng::seed_from_env("RAM_PATH_SEED");
    println!("RAM_PATH_SEED={seed}");
    let d = depot();
    let mut raw = Raw::connect(d.addr());
    let mut subjects: Vec<Subject> = RIDS
        .iter()
        .map(|rid| Subject { rid, caps: allocate_on(&mut raw, rid, MAX), model: Vec::new() })
        .collect();
    assert_eq!(subjects[1].caps.read.rid, "2", "the second allocation is on RAM");
    let mut rng = Rng::new(seed);
    let (mut loads, mut bytes) = (0usize, 0u64);
    for step in 0..120 {
        let op = rng.range(0, 6);
        // Lengths from one byte to several transfer buffers (256 KiB), offsets unaligned.
        let len = match rng.range(0, 3) {
            0 => rng.range(1, 5000),
            1 => rng.range(5000, 70_000),
            _ => rng.range(70_000, 700_000),
        } as usize;
        let data = pattern(seed ^ step, len);
        for s in &mut subjects {
            let size = s.model.len() as u64;
            match op {
                // STORE (append), lock-step or pipelined ahead of the ack.
                0 | 1 if size + len as u64 <= MAX => {
                    let n = if op == 0 {
                        try_store(&mut raw, &s.caps.write, &data)
                    } else {
                        try_store_pipelined(&mut raw, &s.caps.write, &data)
                    };
                    assert_eq!(n.ok(), Some(len as u64), "RID {} step {step}: STORE", s.rid);
                    s.model.extend_from_slice(&data);
                }
                // WRITE somewhere at or below the size (overwrites, and grows past it).
                2 => {
                    let at = rng_at(seed, step, size, len);
                    write(&mut raw, &s.caps.write, at, &data);
                    put(&mut s.model, at, &data);
                }
                // VEC_WRITE of three spans, the last one overlapping the first.
                3 if size > 0 => {
                    let a = rng_at(seed, step, size, len / 2 + 1);
                    let b = rng_at(seed ^ 7, step, size, len / 3 + 1);
                    let spans = [(a, len / 2 + 1), (b, len / 3 + 1), (a, 7)];
                    let total: usize = spans.iter().map(|s| s.1).sum();
                    let payload = pattern(seed ^ step ^ 0x55, total);
                    let line = format!("1 33 {} {} 30\n", s.caps.write.wire(), vec_list(&spans));
                    raw.send(line.as_bytes());
                    assert_eq!(tokens(&raw.line()), ["1"], "RID {} VEC_WRITE ack", s.rid);
                    raw.send(&payload);
                    let done = raw.line();
                    assert_eq!(tokens(&done), ["1", &total.to_string()], "RID {}", s.rid);
                    let mut at = 0;
                    for (o, l) in spans {
                        put(&mut s.model, o, &payload[at..at + l]);
                        at += l;
                    }
                }
                // VEC_READ of three spans in reverse order.
                4 if size > 0 => {
                    let spans: Vec<(u64, usize)> = (0..3)
                        .map(|i| {
                            let l = (len as u64).min(size) as usize;
                            let o = rng_at(seed ^ i, step, size - l as u64, l);
                            (o, l)
                        })
                        .collect();
                    let total: usize = spans.iter().map(|s| s.1).sum();
                    let line = format!("1 35 {} {} 30\n", s.caps.read.wire(), vec_list(&spans));
                    raw.send(line.as_bytes());
                    let reply = raw.line();
                    let want = [String::from("1"), total.to_string()];
                    assert_eq!(tokens(&reply), want, "RID {} step {step}: {spans:?}", s.rid);
                    let got = raw.read_exact(total);
                    let mut at = 0;
                    for (o, l) in spans {
                        let want = &s.model[o as usize..o as usize + l];
                        assert!(&got[at..at + l] == want, "RID {} step {step}: VEC_READ", s.rid);
                        at += l;
                    }
                    bytes += total as u64;
                }
                _ => {}
            }
            // After every step, one LOAD of a random range and one of the whole data.
            let size = s.model.len() as u64;
            if size > 0 {
                let l = rng_at(seed ^ 3, step, size, 1).max(1).min(size);
                let o = rng_at(seed ^ 5, step, size - l, 0);
                s.check(&mut raw, o, l, step as usize);
                loads += 1;
                bytes += l;
            }
        }
        assert_eq!(subjects[0].model, subjects[1].model, "models diverged at step {step}");
    }
    for s in &subjects {
        let size = s.model.len() as u64;
        s.check(&mut raw, 0, size, 999);
        assert_eq!(probe(&mut raw, &s.caps.manage).size, size, "RID {} size", s.rid);
        // Past the size: refused, never stale bytes.
        let past = try_load(&mut raw, &s.caps.read, size, 1).err().and_then(|f| f.code());
        assert_eq!(past, Some(-19), "RID {} LOAD past the size", s.rid);
    }
    println!(
        "ram_path: 120 steps on RIDs 1 and 2, {loads} loads, {bytes} bytes checked, final size {}",
        subjects[0].model.len()
    );
}

/// A deterministic offset in `[0, size]` that leaves room for `len` bytes below `MAX`.
fn rng_at(seed: u64, step: u64, size: u64, len: usize) -> u64 {
    let mut r = Rng::new(seed.wrapping_mul(31).wrapping_add(step));
    r.range(0, size.min(MAX - len as u64))
}

fn put(model: &mut Vec<u8>, at: u64, data: &[u8]) {
    let (at, end) = (at as usize, at as usize + data.len());
    if model.len() < end {
        model.resize(end, 0);
    }
    model[at..end].copy_from_slice(data);
}

/// A WRITE cut off mid-payload (the client disconnects): the size does not move, bytes the
/// depot received below the size stay (their CRCs recomputed), nothing past the size is
/// kept, and every block still verifies. RAM (direct) and disk (buffered) end in the same
/// state.
#[test]
fn an_aborted_overwrite_leaves_ram_and_disk_in_the_same_verified_state() {
    let d = depot();
    let old = pattern(40, 200 * 1024);
    let new = pattern(41, 1 << 20);
    let mut ends = Vec::new();
    for rid in RIDS {
        let mut raw = Raw::connect(d.addr());
        let caps = allocate_on(&mut raw, rid, MAX);
        store(&mut raw, &caps.write, &old);
        // WRITE 1 MiB at 100 KiB, send only its first 300 KiB, then vanish. The first
        // 256 KiB transfer chunk ([64 KiB, 320 KiB)) is complete, the second is not.
        let mut cut = Raw::connect(d.addr());
        let header = format!("1 13 {} {} {} 30\n", caps.write.wire(), 100 * 1024, new.len());
        cut.send(header.as_bytes());
        assert_eq!(tokens(&cut.line()), ["1"], "RID {rid}: WRITE ack");
        cut.send(&new[..300 * 1024]);
        drop(cut);
        // The depot notices the close and settles; wait for the size to be readable.
        let mut raw = Raw::connect(d.addr());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let now = loop {
            if let Ok(b) = try_load(&mut raw, &caps.read, 0, old.len() as u64) {
                break b;
            }
            assert!(std::time::Instant::now() < deadline, "RID {rid}: no LOAD after the abort");
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(probe(&mut raw, &caps.manage).size, old.len() as u64, "RID {rid}: size");
        assert_eq!(&now[..100 * 1024], &old[..100 * 1024], "RID {rid}: bytes before the write");
        assert_eq!(&now[100 * 1024..], &new[..100 * 1024], "RID {rid}: received overwrite");
        // Past the size the region reads as zeros again: grow the allocation with a WRITE
        // further out and read the gap.
        write(&mut raw, &caps.write, 600 * 1024, b"tail");
        let gap = load(&mut raw, &caps.read, 190 * 1024, 410 * 1024 + 4);
        assert_eq!(&gap[..10 * 1024], &now[190 * 1024..], "RID {rid}: edge block kept");
        assert!(gap[10 * 1024..410 * 1024].iter().all(|&b| b == 0), "RID {rid}: gap not zero");
        assert_eq!(&gap[410 * 1024..], b"tail");
        ends.push(load(&mut raw, &caps.read, 0, 600 * 1024 + 4));
    }
    assert_eq!(ends[0], ends[1], "RAM and disk differ after the same aborted write");
}

/// LOAD_CHKSUM from RAM (digests computed on the region's bytes as they are sent) gives the
/// same wire bytes as from disk, for every digest and for network blocks that do and do not
/// line up with the transfer chunks; STORE_CHKSUM into RAM (verified before it lands, so it
/// takes the buffered path) is read back exactly.
#[test]
fn checksummed_loads_from_ram_match_disk_byte_for_byte() {
    use md5::Digest as _;
    let d = depot();
    let mut raw = Raw::connect(d.addr());
    let data = pattern(50, 700_001);
    let caps: Vec<Caps> = RIDS.iter().map(|rid| allocate_on(&mut raw, rid, MAX)).collect();
    for c in &caps {
        store(&mut raw, &c.write, &data);
    }
    for (cs, bs, hex) in [(4, 1000usize, 32usize), (3, 65536, 40), (1, 100_000, 64), (2, 4096, 128)]
    {
        let (off, len) = (3usize, 650_000usize);
        let mut wires = Vec::new();
        for c in &caps {
            raw.send(format!("1 24 {cs} {bs} {} {off} {len} 30\n", c.read.wire()).as_bytes());
            assert_eq!(tokens(&raw.line()), ["1", &len.to_string()], "LOAD_CHKSUM header");
            wires.push(raw.read_exact(len + len.div_ceil(bs) * hex));
        }
        assert!(wires[0] == wires[1], "digest type {cs}: RAM and disk wires differ");
        // Strip the framing and check the payload (and, for MD5, every digest).
        let mut payload = Vec::with_capacity(len);
        let mut pos = 0;
        while payload.len() < len {
            let n = bs.min(len - payload.len());
            let block = &wires[1][pos..pos + n];
            if cs == 4 {
                let want: String =
                    md5::Md5::digest(block).iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(&wires[1][pos + n..pos + n + hex], want.as_bytes(), "MD5 digest");
            }
            payload.extend_from_slice(block);
            pos += n + hex;
        }
        assert!(payload == data[off..off + len], "digest type {cs}: payload differs");
    }
    // STORE_CHKSUM into RAM with MD5 framing, then a plain LOAD of it.
    let tail = pattern(51, 5000);
    let mut wire = Vec::new();
    for block in tail.chunks(1024) {
        wire.extend_from_slice(block);
        let h: String = md5::Md5::digest(block).iter().map(|b| format!("{b:02x}")).collect();
        wire.extend_from_slice(h.as_bytes());
    }
    raw.send(format!("1 28 4 1024 {} {} 30\n", caps[1].write.wire(), tail.len()).as_bytes());
    assert_eq!(tokens(&raw.line()), ["1"]);
    raw.send(&wire);
    assert_eq!(tokens(&raw.line()), ["1", "5000"], "STORE_CHKSUM into RAM");
    assert_eq!(load(&mut raw, &caps[1].read, 700_001, 5000), tail);
}
