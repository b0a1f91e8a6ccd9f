//! Network checksum framing (PROTOCOL.md §10) as a pure state machine: which payload bytes
//! belong to which network block, and when a hex digest is due on the wire.
//!
//! Design: the `_CHKSUM` data commands interleave the payload with the hex digest of every
//! `block` payload bytes and of the final partial block; the digest restarts for each block.
//! This type does no I/O: the receive and send paths ask it how many bytes they may move
//! before the next digest (`next_take`), feed it those bytes (`absorb`), and verify or emit
//! the digest when it says one is due. The framing runs over the whole payload of a command
//! (all spans of a vector command, in list order), independent of disk chunks.
//!
//! `preverified` supports the writer's rule that no byte reaches disk before its network block
//! is verified: when a disk chunk ends inside a network block, the writer reads the rest of
//! that block ahead, verifies it, and puts those bytes back in front of the connection buffer;
//! they are then taken again without being hashed a second time.

use crate::digest::{DigestKind, Hasher, Sum};

/// Framing state of one transfer.
pub struct NetSum {
    kind: DigestKind,
    /// Network block size in payload bytes (validated by the command: 0 < block ≤ a buffer).
    block: u64,
    hasher: Hasher,
    /// Payload bytes still to come in the current network block.
    left_in_block: u64,
    /// Payload bytes of the transfer not yet absorbed.
    payload_left: u64,
    /// Bytes at the front of the stream already verified (put back by `read_ahead`).
    preverified: u64,
}

impl NetSum {
    pub fn new(kind: DigestKind, block: u64, total: u64) -> NetSum {
        NetSum {
            kind,
            block,
            hasher: kind.hasher(),
            left_in_block: block,
            payload_left: total,
            preverified: 0,
        }
    }

    pub fn kind(&self) -> DigestKind {
        self.kind
    }

    /// How many of the next `want` payload bytes may be moved before the framing needs
    /// attention (a digest, or the end of the preverified run).
    pub fn next_take(&self, want: usize) -> usize {
        let limit = if self.preverified > 0 { self.preverified } else { self.left_in_block };
        want.min(limit.min(usize::MAX as u64) as usize)
    }

    /// Feeds payload bytes (at most `next_take` of them). Returns true when a digest is due
    /// right after them.
    pub fn absorb(&mut self, data: &[u8]) -> bool {
        let n = data.len() as u64;
        self.payload_left = self.payload_left.saturating_sub(n);
        if self.preverified > 0 {
            self.preverified = self.preverified.saturating_sub(n);
            return false;
        }
        self.hasher.update(data);
        self.left_in_block = self.left_in_block.saturating_sub(n);
        self.left_in_block == 0 || self.payload_left == 0
    }

    /// The digest of the block just completed; starts the next block.
    pub fn finish(&mut self) -> Sum {
        self.left_in_block = self.block;
        self.hasher.finish()
    }

    /// Whether `hex` is the digest of the block just completed; starts the next block.
    pub fn verify(&mut self, hex: &[u8]) -> bool {
        self.finish().matches_hex(hex)
    }

    /// Bytes of the current block hashed but not yet verified (0 on a block boundary), and how
    /// many more payload bytes complete it.
    pub fn open_block_rest(&self) -> u64 {
        if self.preverified > 0 || self.left_in_block == self.block || self.payload_left == 0 {
            0
        } else {
            self.left_in_block.min(self.payload_left)
        }
    }

    /// Marks the next `n` payload bytes as already verified (they were read ahead).
    pub fn mark_preverified(&mut self, n: u64) {
        self.preverified = n;
        self.payload_left += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames a payload the way a sender does, using only the state machine.
    fn frame(kind: DigestKind, block: u64, payload: &[u8], pieces: usize) -> Vec<u8> {
        let mut f = NetSum::new(kind, block, payload.len() as u64);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < payload.len() {
            let n = f.next_take(pieces.min(payload.len() - pos));
            out.extend_from_slice(&payload[pos..pos + n]);
            if f.absorb(&payload[pos..pos + n]) {
                out.extend_from_slice(&f.finish().to_hex());
            }
            pos += n;
        }
        out
    }

    #[test]
    fn digest_after_every_block_and_the_final_partial_one() {
        let payload: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let framed = frame(DigestKind::Md5, 1024, &payload, 300);
        assert_eq!(framed.len(), 4096 + 4 * 32);
        let framed = frame(DigestKind::Sha1, 1000, &payload, 4096);
        assert_eq!(framed.len(), 4096 + 5 * 40);
        let first = DigestKind::Sha1.block(&payload[..1000], 1000).to_hex();
        assert_eq!(&framed[1000..1040], &first[..]);
        let last = DigestKind::Sha1.block(&payload[4000..], 96).to_hex();
        assert_eq!(&framed[framed.len() - 40..], &last[..]);
    }

    #[test]
    fn read_ahead_bytes_are_not_hashed_twice() {
        let payload = vec![7u8; 300];
        let mut f = NetSum::new(DigestKind::Md5, 200, 300);
        assert!(!f.absorb(&payload[..150]));
        assert_eq!(f.open_block_rest(), 50);
        assert!(f.absorb(&payload[150..200]));
        assert!(f.verify(&DigestKind::Md5.block(&payload[..200], 200).to_hex()));
        f.mark_preverified(50);
        assert_eq!(f.next_take(1000), 50);
        assert!(!f.absorb(&payload[150..200]));
        assert_eq!(f.next_take(1000), 200, "bounded by the block, not the payload");
        assert!(f.absorb(&payload[200..]));
        assert!(!f.verify(b"00"));
    }
}
