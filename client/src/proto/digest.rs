//! Cryptographic digests for the `_CHKSUM` commands: the per-block hash of network framing
//! (PROTOCOL.md §10, [`super::netframe`]) and of the depot's per-allocation disk digests
//! chosen at ALLOCATE_CHKSUM (§5, §9). The client and the depot share this one
//! implementation.
//!
//! Design: one enum over the four algorithms ACCRE offers (MD5, SHA-1, SHA-256, SHA-512), fed
//! incrementally so every digest is computed while the bytes stream through the transfer
//! buffers, never in a second pass. [`DigestKind::block`] is the disk form: it covers a
//! block's full length with the bytes past the end of the data counted as zeros, so it is a
//! pure function of the block's contents and a block never written has the digest of a zero
//! block.

use md5::Digest as _;

use super::request::ChksumType;

/// Largest binary digest (SHA-512).
pub const MAX_DIGEST_BYTES: usize = 64;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A checksum type code that is none of DLS `chksum.h`'s (answered −64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownDigest;

/// A digest algorithm (never `None`: "no digest" is `Option<DigestKind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestKind {
    /// SHA-256 (wire code 1).
    Sha256,
    /// SHA-512 (wire code 2).
    Sha512,
    /// SHA-1 (wire code 3).
    Sha1,
    /// MD5 (wire code 4, ACCRE's resource default).
    Md5,
}

impl DigestKind {
    /// The kind for a wire checksum type: `Ok(None)` for NONE, an error for an unknown code.
    pub fn from_wire(cstype: i32) -> Result<Option<DigestKind>, UnknownDigest> {
        match ChksumType::from_i32(cstype).ok_or(UnknownDigest)? {
            ChksumType::None => Ok(None),
            ChksumType::Sha256 => Ok(Some(DigestKind::Sha256)),
            ChksumType::Sha512 => Ok(Some(DigestKind::Sha512)),
            ChksumType::Sha1 => Ok(Some(DigestKind::Sha1)),
            ChksumType::Md5 => Ok(Some(DigestKind::Md5)),
        }
    }

    /// The wire code (DLS `chksum.h`).
    pub fn code(self) -> i32 {
        match self {
            DigestKind::Sha256 => ChksumType::Sha256.code(),
            DigestKind::Sha512 => ChksumType::Sha512.code(),
            DigestKind::Sha1 => ChksumType::Sha1.code(),
            DigestKind::Md5 => ChksumType::Md5.code(),
        }
    }

    /// Bytes of one binary digest.
    pub fn digest_bytes(self) -> usize {
        match self {
            DigestKind::Sha256 => 32,
            DigestKind::Sha512 => 64,
            DigestKind::Sha1 => 20,
            DigestKind::Md5 => 16,
        }
    }

    /// Characters of one hex digest on the wire.
    pub fn hex_len(self) -> usize {
        self.digest_bytes() * 2
    }

    /// A fresh incremental hasher of this kind.
    pub fn hasher(self) -> Hasher {
        match self {
            DigestKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestKind::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            DigestKind::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            DigestKind::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }

    /// Digest of one disk block: `data` followed by zeros up to `block_bytes`.
    pub fn block(self, data: &[u8], block_bytes: u64) -> Sum {
        let mut h = self.hasher();
        h.update(data);
        h.update_zeros(block_bytes.saturating_sub(data.len() as u64));
        h.finish()
    }
}

/// A binary digest (the first `len` bytes are used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    bytes: [u8; MAX_DIGEST_BYTES],
    len: usize,
}

impl Sum {
    /// The binary digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Lower-case hex, as ACCRE writes it between network blocks.
    pub fn to_hex(&self) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = Vec::with_capacity(self.len * 2);
        for b in self.as_bytes() {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
        out
    }

    /// Whether `hex` (either case) spells this digest.
    pub fn matches_hex(&self, hex: &[u8]) -> bool {
        hex.len() == self.len * 2 && hex.eq_ignore_ascii_case(&self.to_hex())
    }
}

/// An incremental digest.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
    /// SHA-1 state.
    Sha1(sha1::Sha1),
    /// MD5 state.
    Md5(md5::Md5),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// Feeds `n` zero bytes (a disk block's tail past the data).
    pub fn update_zeros(&mut self, mut n: u64) {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.update(&ZEROS[..k]);
            n -= k as u64;
        }
    }

    /// The digest so far; the hasher starts over (network blocks restart it, §10).
    pub fn finish(&mut self) -> Sum {
        let mut bytes = [0u8; MAX_DIGEST_BYTES];
        let len = match self {
            Hasher::Sha256(h) => copy(&mut bytes, &h.finalize_reset()),
            Hasher::Sha512(h) => copy(&mut bytes, &h.finalize_reset()),
            Hasher::Sha1(h) => copy(&mut bytes, &h.finalize_reset()),
            Hasher::Md5(h) => copy(&mut bytes, &h.finalize_reset()),
        };
        Sum { bytes, len }
    }
}

fn copy(out: &mut [u8; MAX_DIGEST_BYTES], d: &[u8]) -> usize {
    out[..d.len()].copy_from_slice(d);
    d.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let abc = |k: DigestKind| {
            let mut h = k.hasher();
            h.update(b"ab");
            h.update(b"c");
            String::from_utf8(h.finish().to_hex()).expect("hex is ASCII")
        };
        assert_eq!(abc(DigestKind::Md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(abc(DigestKind::Sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            abc(DigestKind::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(abc(DigestKind::Sha512).starts_with("ddaf35a193617aba"));
        assert_eq!(abc(DigestKind::Sha512).len(), 128);
    }

    #[test]
    fn finish_restarts_and_hex_compares_any_case() {
        let mut h = DigestKind::Md5.hasher();
        h.update(b"abc");
        let first = h.finish();
        h.update(b"abc");
        assert_eq!(h.finish(), first);
        assert!(first.matches_hex(b"900150983CD24FB0D6963F7D28E17F72"));
        assert!(!first.matches_hex(b"900150983cd24fb0d6963f7d28e17f7"));
    }

    #[test]
    fn block_digest_zero_extends_and_wire_codes_map() {
        let k = DigestKind::Sha1;
        let mut padded = b"xyz".to_vec();
        padded.resize(4096, 0);
        let mut h = k.hasher();
        h.update(&padded);
        assert_eq!(k.block(b"xyz", 4096), h.finish());
        assert_eq!(DigestKind::from_wire(9), Err(UnknownDigest));
        assert_eq!(DigestKind::from_wire(0), Ok(None));
        for k in [DigestKind::Sha256, DigestKind::Sha512, DigestKind::Sha1, DigestKind::Md5] {
            assert_eq!(DigestKind::from_wire(k.code()), Ok(Some(k)));
            let t = ChksumType::from_i32(k.code()).expect("a known type");
            assert_eq!((t.digest_bytes(), t.hex_len()), (k.digest_bytes(), k.hex_len()));
            assert_eq!(k.block(b"", 0).as_bytes().len(), k.digest_bytes());
        }
    }
}
