//! Fuzz entry points. Each takes arbitrary bytes, runs them through the codec and panics if
//! an invariant breaks: parsing never panics, and whatever parses re-encodes to something
//! that parses back equal (and re-encodes to the same bytes). The cargo-fuzz targets in
//! `client/fuzz/` call these, and `tests/fuzz_corpus.rs` replays the seed corpus through
//! them on stable Rust.

use super::capability::{Capability, KeyRef};
use super::frame::{find_line, tokens, MAX_LINE_BYTES};
use super::reply;
use super::request::{self, parse_mcopy_line, Request};

fn first_line(data: &[u8]) -> &[u8] {
    match find_line(data, MAX_LINE_BYTES) {
        Ok(Some(len)) => &data[..len],
        _ => data,
    }
}

/// Request parsing: never panics; parse → encode → parse is stable.
pub fn parse_request(data: &[u8]) {
    let _ = tokens(data).count();
    let line = first_line(data);
    for input in [data, line] {
        match request::parse_request(input) {
            Ok(req) => check_request_round_trip(&req),
            Err(e) => assert!(e.code.code() < 0 && !e.reason.is_empty()),
        }
        if let Ok(mcopy) = parse_mcopy_line(input) {
            let mut out = Vec::new();
            mcopy.encode(&mut out);
            let again = parse_mcopy_line(&out).expect("encoded MCOPY line parses");
            assert_eq!(again, mcopy, "MCOPY line round trip");
        }
        let _ = request::parse_status_change_values(input);
    }
}

/// Asserts one request survives encode → parse → encode unchanged.
pub fn check_request_round_trip(req: &Request) {
    let mut out = Vec::new();
    req.encode(&mut out);
    assert!(out.ends_with(b"\n"));
    let again = match request::parse_request(&out) {
        Ok(again) => again,
        Err(e) => panic!("encoded {} does not parse: {e}", req.name()),
    };
    assert_eq!(&again, req, "request round trip");
    let mut out2 = Vec::new();
    again.encode(&mut out2);
    assert_eq!(out, out2, "encoding is canonical");
}

/// Capability and key-token parsing: never panics; print → parse is stable; `Debug` of a
/// parsed capability never shows its key field.
pub fn parse_capability(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for input in [text, text.trim()] {
        if let Ok(cap) = Capability::parse(input) {
            let url = cap.to_url();
            assert_eq!(Capability::parse(&url).as_ref(), Ok(&cap), "capability round trip");
            let dbg = format!("{cap:?}");
            assert!(dbg.contains("<redacted>") && !dbg.contains(&format!("#{}/", cap.key)));
        }
        if let Ok(kr) = KeyRef::parse(input) {
            assert_eq!(KeyRef::parse(&kr.to_token()).as_ref(), Ok(&kr), "key round trip");
        }
    }
}

/// Reply parsing: never panics; whatever parses re-encodes to something that parses equal.
pub fn parse_reply(data: &[u8]) {
    let line = first_line(data);
    let _ = reply::parse_status_line(line);
    let _ = reply::is_version_end(line);
    if let Ok(n) = reply::parse_count(line) {
        let mut out = Vec::new();
        reply::count(&mut out, n);
        assert_eq!(reply::parse_count(&out), Ok(n));
        if let Ok(n) = usize::try_from(n) {
            let body = &data[line.len()..];
            if n <= reply::MAX_INQ_BODY_BYTES && n <= body.len() {
                check_inq_body(&body[..n]);
            }
        }
    }
    if let Ok(caps) = reply::parse_caps(line) {
        let mut out = Vec::new();
        reply::caps(&mut out, &caps);
        assert_eq!(reply::parse_caps(&out).as_ref(), Ok(&caps));
    }
    if let Ok(p) = reply::parse_probe(line) {
        let mut out = Vec::new();
        reply::probe(&mut out, &p);
        assert_eq!(reply::parse_probe(&out), Ok(p));
    }
    if let Ok(p) = reply::parse_alias_probe(line) {
        let mut out = Vec::new();
        reply::alias_probe(&mut out, &p);
        assert_eq!(reply::parse_alias_probe(&out), Ok(p));
    }
    if let Ok(c) = reply::parse_chksum_info(line) {
        let mut out = Vec::new();
        reply::chksum_info(&mut out, &c);
        assert_eq!(reply::parse_chksum_info(&out), Ok(c));
    }
    if let Ok(rids) = reply::parse_res(line) {
        let mut out = Vec::new();
        reply::status_res(&mut out, &rids);
        assert_eq!(reply::parse_res(&out).as_ref(), Ok(&rids));
    }
    if let Ok(v) = reply::parse_v0_inq(line) {
        let mut out = Vec::new();
        reply::v0_inq(&mut out, &v);
        assert_eq!(reply::parse_v0_inq(&out), Ok(v));
    }
    check_inq_body(data);
}

fn check_inq_body(body: &[u8]) {
    if let Ok(inq) = reply::parse_inq_body(body) {
        let mut out = Vec::new();
        inq.encode(&mut out);
        assert_eq!(reply::parse_inq_body(&out).as_ref(), Ok(&inq), "INQ body round trip");
    }
}
