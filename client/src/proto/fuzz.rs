//! Fuzz entry points. Each takes arbitrary bytes, runs them through the codec and panics if
//! an invariant breaks: parsing never panics, and whatever parses re-encodes to something
//! that parses back equal (and re-encodes to the same bytes); the §10 frame decoder gives the
//! same answer whatever the chunking and accounts for every wire byte. The cargo-fuzz targets in
//! `client/fuzz/` call these, and `tests/fuzz_corpus.rs` replays the seed corpus through
//! them on stable Rust.

use super::capability::{Capability, KeyRef};
use super::digest::DigestKind;
use super::frame::{find_line, tokens, MAX_LINE_BYTES};
use super::netframe::{FrameDecoder, FrameEncoder, FrameError, Framing};
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

/// Bytes of the `netframe` input header: kind, block size (u16 LE), payload length (u16 LE),
/// chunking seed; the wire bytes follow.
pub const NETFRAME_HEADER_BYTES: usize = 6;

/// §10 frame decoding of arbitrary wire bytes: never panics; fed in pieces (sizes from the
/// seed byte) it answers exactly as fed at once; consumed plus `wire_left` is always the
/// framed length; a mismatch names a block start inside the payload; a completed stream
/// re-encodes to the bytes consumed (digest case aside); and the payload framed by the
/// encoder always decodes. Returns the decoded payload or the error (`None`: input too short).
pub fn netframe(data: &[u8]) -> Option<Result<Vec<u8>, FrameError>> {
    let header: [u8; NETFRAME_HEADER_BYTES] = data.get(..NETFRAME_HEADER_BYTES)?.try_into().ok()?;
    let kinds = [DigestKind::Md5, DigestKind::Sha1, DigestKind::Sha256, DigestKind::Sha512];
    let kind = kinds[usize::from(header[0] % 4)];
    let block = 1 + u64::from(u16::from_le_bytes([header[1], header[2]])) % 8192;
    let total = u64::from(u16::from_le_bytes([header[3], header[4]]));
    let framing = Framing::new(kind, block).expect("block size 1..=8192 is valid");
    let wire = &data[NETFRAME_HEADER_BYTES..];
    let whole = decode_in_pieces(framing, total, wire, &[usize::MAX]);
    let step = usize::from(header[5]) + 1;
    let pieces: Vec<usize> = (1..=4).map(|i| (step * i) % 97 + 1).collect();
    assert_eq!(
        decode_in_pieces(framing, total, wire, &pieces),
        whole,
        "chunking changed the answer"
    );
    match &whole {
        Ok((out, used, true)) => {
            let mut enc = FrameEncoder::new(framing, total);
            let mut again = Vec::new();
            enc.push(out, &mut again).expect("the decoded payload has the announced length");
            assert!(again.eq_ignore_ascii_case(&wire[..*used]), "re-encoding differs");
        }
        Err(FrameError::DigestMismatch { offset }) => {
            assert!(offset % block == 0 && *offset < total, "mismatch outside any block");
        }
        Ok((_, _, false)) => {} // a truncated stream: the accounting above is all there is
        Err(e) => panic!("decoder error other than a mismatch: {e}"),
    }
    // The valid framing of whatever payload the input offers always decodes.
    let payload = &wire[..wire.len().min(usize::from(u16::MAX))];
    let mut framed = Vec::new();
    FrameEncoder::new(framing, payload.len() as u64)
        .push(payload, &mut framed)
        .expect("exactly the payload");
    let back = decode_in_pieces(framing, payload.len() as u64, &framed, &pieces);
    let back = back.as_ref().map(|(p, _, done)| (p.as_slice(), *done));
    assert_eq!(back, Ok((payload, true)), "valid framing refused");
    Some(whole.map(|(out, _, _)| out))
}

/// Decodes `wire` fed in pieces (cycled); returns the payload, the bytes consumed, and
/// whether the transfer completed.
fn decode_in_pieces(
    framing: Framing,
    total: u64,
    wire: &[u8],
    pieces: &[usize],
) -> Result<(Vec<u8>, usize, bool), FrameError> {
    let mut dec = FrameDecoder::new(framing, total);
    let framed = framing.wire_len(total).expect("u16 payloads fit");
    let (mut out, mut at) = (Vec::new(), 0usize);
    for piece in pieces.iter().cycle() {
        let chunk = &wire[at..wire.len().min(at.saturating_add(*piece))];
        let used = dec.feed(chunk, &mut out)?;
        assert!(used <= chunk.len());
        at += used;
        assert_eq!(at as u64 + dec.wire_left(), framed, "wire accounting");
        assert!(dec.verified() <= out.len() as u64 && out.len() as u64 <= total);
        if used < chunk.len() || at == wire.len() {
            break;
        }
    }
    assert_eq!(dec.is_done(), at as u64 == framed);
    Ok((out, at, dec.is_done()))
}
