//! Test-only helpers shared by the pure crates' stable-toolchain fuzz targets: a seeded
//! generator whose seed is printed for replay (`FUZZ_SEED`) and the time budget per target
//! (`FUZZ_SECONDS`, default 2). No dependencies, so `spec` and `protocol` stay independent leaves.

use std::time::{Duration, SystemTime};

/// xorshift64*: tiny and deterministic for a given seed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `FUZZ_SEED`, or from the clock; the seed is printed on stderr.
    pub fn from_env() -> Rng {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        eprintln!("fuzz seed {seed} (replay with FUZZ_SEED={seed})");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Up to `max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// How long each fuzz target runs: `FUZZ_SECONDS`, default 2.
pub fn budget() -> Duration {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}
