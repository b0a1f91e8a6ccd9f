//! A small seeded generator (splitmix64). The suites print their seed; replaying it replays
//! the sizes, delays and choices (not the kernel's scheduling).

/// splitmix64: tiny, fast, and good enough to pick sizes and delays.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The seed from environment variable `var` if set (decimal), else a fresh random one.
    pub fn seed_from_env(var: &str) -> u64 {
        if let Ok(text) = std::env::var(var) {
            return text.trim().parse().unwrap_or_else(|e| panic!("{var}={text:?}: {e}"));
        }
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random source works");
        u64::from_le_bytes(b)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
