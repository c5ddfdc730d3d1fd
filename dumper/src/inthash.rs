//! Hash maps and sets keyed by addresses, with a one-multiply hasher: std's SipHash was 40%
//! of the helper's instructions at 1000 threads (the page cache and the range recorder hash
//! an address per field read). The keys are addresses read from the process, not chosen by
//! an attacker who could profit from collisions: at worst a corrupt process makes its own
//! dump slower, and every walk is capped.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Odd, with bits spread over the whole word (2^64 / golden ratio).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Folds each integer in with a multiply; `finish` moves the well-mixed high bits down,
/// since the table indexes by the low bits and page addresses have twelve zero low bits.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(MULTIPLIER);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
pub type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn page_addresses_spread_over_the_low_bits() {
        let build = BuildHasherDefault::<IntHasher>::default();
        let buckets: IntSet<u64> =
            (0..1024u64).map(|i| build.hash_one(0x7f00_0000_0000 + i * 4096) & 1023).collect();
        // A hasher that kept the address's zero low bits would put every page in one bucket.
        assert!(buckets.len() > 512, "{} buckets of 1024", buckets.len());
    }

    #[test]
    fn pairs_are_told_apart() {
        let set: IntSet<(u64, u64)> = [(1, 2), (2, 1), (1, 2)].into_iter().collect();
        assert_eq!(set.len(), 2);
    }
}
