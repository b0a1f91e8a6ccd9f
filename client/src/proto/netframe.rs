//! Network checksum framing (PROTOCOL.md §10), sans-IO: an encoder that interleaves a payload
//! with the hex digest of every `blocksize` payload bytes and of the final partial block, and
//! a decoder that takes the wire bytes in any chunking, hands the payload back and checks
//! every digest.
//!
//! Design: the digest restarts for every block, so both sides hash while the bytes stream
//! through (never a second pass) and hold nothing but one hash state and, on the receive side,
//! the at most [`MAX_HEX_BYTES`] of the digest being read. A block can be any size up to
//! ACCRE's limit: its payload is never buffered here. The framing runs over the whole payload
//! of one command (all spans of a vector command, in list order), so the caller gives the
//! payload length up front and both sides know where the last, partial block ends. The
//! decoder stops exactly at the end of the transfer: bytes after it belong to the next reply.
//!
//! A bad digest is [`FrameError::DigestMismatch`] with the payload offset of the block's first
//! byte, counted from the start of this transfer's payload; no error carries input bytes.

use std::fmt;

use super::digest::{DigestKind, Hasher, MAX_DIGEST_BYTES};
use super::request::ChksumSpec;

/// Largest network block ACCRE accepts (0 < blocksize ≤ 2^31, PROTOCOL.md §9).
pub const MAX_NET_BLOCK_BYTES: u64 = 1 << 31;
/// Longest hex digest on the wire (SHA-512).
pub const MAX_HEX_BYTES: usize = 2 * MAX_DIGEST_BYTES;

/// Why a framing could not be set up or a framed stream is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The checksum type is none of DLS `chksum.h`'s codes.
    UnknownType(i32),
    /// The checksum type is NONE: there is nothing to frame with.
    NoDigest,
    /// The block size is outside `1..=MAX_NET_BLOCK_BYTES`.
    BadBlockSize(i64),
    /// More payload (encoder) than the length announced at the start.
    Overrun,
    /// The digest after the block that starts at this payload offset does not match.
    DigestMismatch {
        /// Payload offset of the bad block's first byte.
        offset: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownType(t) => write!(f, "unknown checksum type {t}"),
            FrameError::NoDigest => f.write_str("checksum type NONE has no network framing"),
            FrameError::BadBlockSize(n) => {
                write!(f, "checksum block size {n} is outside 1..={MAX_NET_BLOCK_BYTES}")
            }
            FrameError::Overrun => f.write_str("more payload than the transfer announced"),
            FrameError::DigestMismatch { offset } => {
                write!(f, "network digest mismatch in the block at payload offset {offset}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// A validated digest kind and block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Framing {
    /// Which digest follows each block.
    kind: DigestKind,
    /// Payload bytes per digest, `1..=MAX_NET_BLOCK_BYTES`.
    block_bytes: u64,
}

impl Framing {
    /// A framing of `kind` every `block_bytes` payload bytes.
    pub fn new(kind: DigestKind, block_bytes: u64) -> Result<Framing, FrameError> {
        if block_bytes == 0 || block_bytes > MAX_NET_BLOCK_BYTES {
            return Err(FrameError::BadBlockSize(i64::try_from(block_bytes).unwrap_or(i64::MAX)));
        }
        Ok(Framing { kind, block_bytes })
    }

    /// The framing a `cstype blocksize` pair asks for.
    pub fn from_spec(spec: ChksumSpec) -> Result<Framing, FrameError> {
        let kind = DigestKind::from_wire(spec.cstype)
            .map_err(|_| FrameError::UnknownType(spec.cstype))?
            .ok_or(FrameError::NoDigest)?;
        let block =
            u64::try_from(spec.blocksize).map_err(|_| FrameError::BadBlockSize(spec.blocksize))?;
        Framing::new(kind, block)
    }

    /// The `cstype blocksize` pair for a request.
    pub fn spec(&self) -> ChksumSpec {
        // block_bytes ≤ 2^31 (checked in `new`), so it fits.
        ChksumSpec { cstype: self.kind.code(), blocksize: self.block_bytes as i64 }
    }

    /// The digest kind.
    pub fn kind(&self) -> DigestKind {
        self.kind
    }

    /// Payload bytes per digest.
    pub fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    /// Digests in a payload of `payload` bytes (none for an empty one).
    pub fn blocks(&self, payload: u64) -> u64 {
        payload.div_ceil(self.block_bytes)
    }

    /// Wire bytes of a framed payload of `payload` bytes, `None` past `u64`.
    pub fn wire_len(&self, payload: u64) -> Option<u64> {
        let digests = self.blocks(payload).checked_mul(self.kind.hex_len() as u64)?;
        payload.checked_add(digests)
    }
}

/// Frames a payload for sending.
#[derive(Clone)]
pub struct FrameEncoder {
    framing: Framing,
    /// Digest of the current block so far; restarts at every block (§10).
    hasher: Hasher,
    /// Payload bytes still to come in the current block.
    left_in_block: u64,
    /// Payload bytes of the transfer not yet framed.
    payload_left: u64,
}

impl FrameEncoder {
    /// An encoder for a payload of exactly `total` bytes.
    pub fn new(framing: Framing, total: u64) -> FrameEncoder {
        FrameEncoder {
            framing,
            hasher: framing.kind.hasher(),
            left_in_block: framing.block_bytes,
            payload_left: total,
        }
    }

    /// How many of the next `want` payload bytes reach at most the end of the current block:
    /// feeding [`push`](Self::push) that many appends at most one digest, which keeps a
    /// caller's send buffer bounded whatever the block size.
    pub fn next_take(&self, want: usize) -> usize {
        want.min(usize::try_from(self.left_in_block.min(self.payload_left)).unwrap_or(usize::MAX))
    }

    /// Appends the next payload bytes `data` to `out`, each completed block followed by its
    /// hex digest. Refuses (appending nothing) more than the payload announced.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if data.len() as u64 > self.payload_left {
            return Err(FrameError::Overrun);
        }
        while !data.is_empty() {
            let (block, rest) = data.split_at(self.next_take(data.len()));
            self.hasher.update(block);
            out.extend_from_slice(block);
            self.left_in_block -= block.len() as u64;
            self.payload_left -= block.len() as u64;
            if self.left_in_block == 0 || self.payload_left == 0 {
                out.extend_from_slice(&self.hasher.finish().to_hex());
                self.left_in_block = self.framing.block_bytes;
            }
            data = rest;
        }
        Ok(())
    }

    /// True once the whole payload was pushed (its last digest included).
    pub fn is_done(&self) -> bool {
        self.payload_left == 0
    }
}

/// Unframes a received stream, checking every digest.
#[derive(Clone)]
pub struct FrameDecoder {
    framing: Framing,
    /// Digest of the current block's payload so far; restarts at every block.
    hasher: Hasher,
    /// Payload bytes still to come in the current block (0 while its digest is read).
    left_in_block: u64,
    /// Payload bytes received so far.
    received: u64,
    /// The payload length announced at the start.
    total: u64,
    /// Payload offset of the current block's first byte: everything before it is verified,
    /// and a mismatch names it.
    block_start: u64,
    /// The digest being received; only the first `hex_have` bytes are valid.
    hex: [u8; MAX_HEX_BYTES],
    hex_have: usize,
    /// The first error, returned again by every later call (the stream is out of step).
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder for a payload of exactly `total` bytes.
    pub fn new(framing: Framing, total: u64) -> FrameDecoder {
        FrameDecoder {
            framing,
            hasher: framing.kind.hasher(),
            left_in_block: framing.block_bytes.min(total),
            received: 0,
            total,
            block_start: 0,
            hex: [0; MAX_HEX_BYTES],
            hex_have: 0,
            failed: None,
        }
    }

    /// Consumes wire bytes from `input`, appending the payload bytes among them to `out`.
    /// Returns how many input bytes it took: all of them, or fewer once the transfer is
    /// complete (the rest belong to what follows on the connection). Bytes appended to `out`
    /// are verified only up to [`verified`](Self::verified); after an error, discard what this
    /// transfer appended.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let hex_len = self.framing.kind.hex_len();
        let mut used = 0;
        while used < input.len() && !self.is_done() {
            let rest = &input[used..];
            if self.left_in_block > 0 {
                let n = rest.len().min(usize::try_from(self.left_in_block).unwrap_or(usize::MAX));
                self.hasher.update(&rest[..n]);
                out.extend_from_slice(&rest[..n]);
                self.left_in_block -= n as u64;
                self.received += n as u64;
                used += n;
                continue;
            }
            let n = rest.len().min(hex_len - self.hex_have);
            self.hex[self.hex_have..self.hex_have + n].copy_from_slice(&rest[..n]);
            self.hex_have += n;
            used += n;
            if self.hex_have == hex_len {
                self.end_block(hex_len)?;
            }
        }
        Ok(used)
    }

    /// Checks the digest just received and starts the next block.
    fn end_block(&mut self, hex_len: usize) -> Result<(), FrameError> {
        if !self.hasher.finish().matches_hex(&self.hex[..hex_len]) {
            let e = FrameError::DigestMismatch { offset: self.block_start };
            self.failed = Some(e);
            return Err(e);
        }
        self.block_start = self.received;
        self.hex_have = 0;
        self.left_in_block = self.framing.block_bytes.min(self.total - self.received);
        Ok(())
    }

    /// True once the whole payload and its last digest were consumed and checked.
    pub fn is_done(&self) -> bool {
        self.block_start == self.total
    }

    /// Payload bytes whose digests were checked (a prefix of what was appended).
    pub fn verified(&self) -> u64 {
        self.block_start
    }

    /// Wire bytes still expected: reading exactly this many never takes bytes of the next
    /// reply.
    pub fn wire_left(&self) -> u64 {
        if self.is_done() {
            return 0;
        }
        let hex_len = self.framing.kind.hex_len() as u64;
        // The open block: its missing payload and its whole or partly received digest.
        let open = self.left_in_block + hex_len - self.hex_have as u64;
        let in_block = self.framing.block_bytes.min(self.total - self.block_start);
        let after = self.total - self.block_start - in_block;
        open.saturating_add(self.framing.wire_len(after).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KINDS: [DigestKind; 4] =
        [DigestKind::Md5, DigestKind::Sha1, DigestKind::Sha256, DigestKind::Sha512];

    fn frame(framing: Framing, payload: &[u8]) -> Vec<u8> {
        let mut enc = FrameEncoder::new(framing, payload.len() as u64);
        let mut out = Vec::new();
        enc.push(payload, &mut out).expect("exactly the payload");
        assert!(enc.is_done());
        out
    }

    /// Feeds `wire` in pieces of the given sizes (cycled), checking the wire accounting.
    fn unframe(
        framing: Framing,
        wire: &[u8],
        total: u64,
        pieces: &[usize],
    ) -> Result<Vec<u8>, FrameError> {
        let mut dec = FrameDecoder::new(framing, total);
        let wire_len = framing.wire_len(total).expect("small");
        let (mut out, mut at, mut i) = (Vec::new(), 0usize, 0usize);
        while at < wire.len() {
            let n = pieces.get(i % pieces.len().max(1)).copied().unwrap_or(1).max(1);
            let chunk = &wire[at..(at + n).min(wire.len())];
            let used = dec.feed(chunk, &mut out)?;
            at += used;
            i += 1;
            assert_eq!(at as u64 + dec.wire_left(), wire_len, "wire accounting");
            assert!(dec.verified() <= out.len() as u64);
            if used < chunk.len() {
                break; // done: the rest is not ours
            }
        }
        assert!(dec.is_done());
        assert_eq!(at as u64, wire_len, "stops exactly at the end");
        Ok(out)
    }

    #[test]
    fn digest_after_every_block_and_the_final_partial_one() {
        let payload: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let md5 = Framing::new(DigestKind::Md5, 1024).expect("valid");
        let wire = frame(md5, &payload);
        assert_eq!(wire.len(), 4096 + 4 * 32, "PROTOCOL.md §10: 4096 + 4×32");
        assert_eq!(&wire[1024..1056], &DigestKind::Md5.block(&payload[..1024], 1024).to_hex()[..]);
        let sha1 = Framing::new(DigestKind::Sha1, 1000).expect("valid");
        let wire = frame(sha1, &payload);
        assert_eq!(wire.len() as u64, sha1.wire_len(4096).expect("fits"));
        assert_eq!(wire.len(), 4096 + 5 * 40);
        let last = DigestKind::Sha1.block(&payload[4000..], 96).to_hex();
        assert_eq!(&wire[wire.len() - 40..], &last[..]);
        // Trailing bytes (the next reply) are left alone.
        let mut with_next = wire.clone();
        with_next.extend_from_slice(b"1 \n");
        let mut dec = FrameDecoder::new(sha1, 4096);
        let mut out = Vec::new();
        assert_eq!(dec.feed(&with_next, &mut out), Ok(wire.len()));
        assert_eq!((out, dec.is_done(), dec.wire_left()), (payload, true, 0));
        assert_eq!(dec.feed(b"more", &mut Vec::new()), Ok(0));
        // An empty payload has no digest at all.
        assert!(frame(md5, &[]).is_empty());
        assert!(FrameDecoder::new(md5, 0).is_done());
    }

    #[test]
    fn specs_and_overruns_are_checked() {
        let spec = |cstype, blocksize| ChksumSpec { cstype, blocksize };
        assert_eq!(Framing::from_spec(spec(9, 1024)), Err(FrameError::UnknownType(9)));
        assert_eq!(Framing::from_spec(spec(0, 1024)), Err(FrameError::NoDigest));
        for bad in [0, -1, (1i64 << 31) + 1] {
            assert_eq!(Framing::from_spec(spec(4, bad)), Err(FrameError::BadBlockSize(bad)));
        }
        let f = Framing::from_spec(spec(2, 1 << 31)).expect("the largest block");
        assert_eq!(
            (f.kind(), f.block_bytes(), f.spec()),
            (DigestKind::Sha512, 1 << 31, spec(2, 1 << 31))
        );
        assert_eq!(f.wire_len(u64::MAX), None);
        let mut enc = FrameEncoder::new(f, 3);
        let mut out = Vec::new();
        assert_eq!(enc.push(b"abcd", &mut out), Err(FrameError::Overrun));
        assert!(out.is_empty());
        let msg = FrameError::DigestMismatch { offset: 8192 }.to_string();
        assert!(msg.contains("8192"), "{msg}");
    }

    #[test]
    fn a_bad_digest_names_its_block_and_sticks() {
        let f = Framing::new(DigestKind::Sha256, 100).expect("valid");
        let payload = vec![7u8; 350];
        let mut wire = frame(f, &payload);
        wire[2 * (100 + 64) + 3] ^= 1; // payload of the third block
        let mut dec = FrameDecoder::new(f, 350);
        let mut out = Vec::new();
        let err = Err(FrameError::DigestMismatch { offset: 200 });
        assert_eq!(dec.feed(&wire, &mut out), err);
        assert_eq!(dec.verified(), 200);
        assert_eq!(dec.feed(&wire, &mut out), err, "the stream stays out of step");
        // Upper-case hex from another sender is fine.
        let upper = frame(f, &payload).to_ascii_uppercase();
        let mut dec = FrameDecoder::new(f, 350);
        let mut out = Vec::new();
        assert_eq!(dec.feed(&upper, &mut out), Ok(upper.len()));
        assert_eq!(out, payload);
    }

    /// Payload offset of the block that wire byte `at` belongs to (its payload or its digest).
    fn block_of(f: Framing, total: u64, at: usize) -> u64 {
        let (mut wire, mut payload) = (0u64, 0u64);
        loop {
            let len = f.block_bytes().min(total - payload);
            wire += len + f.kind().hex_len() as u64;
            if (at as u64) < wire {
                return payload;
            }
            payload += len;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_chunking_round_trips(
            kind in 0usize..4,
            block in 1u64..600,
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
            pieces in proptest::collection::vec(1usize..700, 1..8),
        ) {
            let f = Framing::new(KINDS[kind], block).expect("valid");
            let wire = frame(f, &payload);
            prop_assert_eq!(wire.len() as u64, f.wire_len(payload.len() as u64).expect("fits"));
            // Encoding in pieces gives the same bytes.
            let mut enc = FrameEncoder::new(f, payload.len() as u64);
            let mut again = Vec::new();
            let mut at = 0;
            for n in pieces.iter().cycle() {
                if at == payload.len() { break; }
                let end = (at + n).min(payload.len());
                let take = enc.next_take(end - at);
                enc.push(&payload[at..at + take], &mut again).expect("within the payload");
                at += take;
            }
            prop_assert_eq!(&again, &wire);
            let out = unframe(f, &wire, payload.len() as u64, &pieces).expect("clean stream");
            prop_assert_eq!(out, payload);
        }

        #[test]
        fn a_flipped_bit_is_caught_in_its_block(
            kind in 0usize..4,
            block in 1u64..400,
            len in 1usize..2000,
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
            pieces in proptest::collection::vec(1usize..500, 1..6),
        ) {
            let f = Framing::new(KINDS[kind], block).expect("valid");
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut wire = frame(f, &payload);
            let at = flip.index(wire.len());
            // A digest byte flipped in bit 5 only changes its case, which is still the digest.
            let bit = if bit == 5 { 0 } else { bit };
            wire[at] ^= 1 << bit;
            let got = unframe(f, &wire, len as u64, &pieces);
            prop_assert_eq!(got, Err(FrameError::DigestMismatch { offset: block_of(f, len as u64, at) }));
        }
    }
}
