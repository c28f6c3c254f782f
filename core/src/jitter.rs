//! Seeded randomness for retry jitter and slot order. The core never reads a random source: the
//! caller gives a seed, so a run (and a failing simulation) is reproducible.

use crate::timing::{JITTER_FACTOR_PERMILLE, mul_div};
use embassy_time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg32;

/// A small seeded generator (PCG-32: 16 bytes of state).
#[derive(Clone, Debug)]
pub struct Jitter(Pcg32);

impl Jitter {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Pcg32::seed_from_u64(seed))
    }

    /// `base × (1 + U[0,1) × extra_permille / 1000)`: within `[base, base × (1 + extra))`,
    /// never above `Duration::MAX`.
    pub fn stretch(&mut self, base: Duration, extra_permille: u64) -> Duration {
        let extra = mul_div(base.as_ticks(), extra_permille, 1000);
        let step = (u128::from(extra) * u128::from(self.0.next_u32())) >> 32;
        Duration::from_ticks(base.as_ticks().saturating_add(step as u64))
    }

    /// client-go's `wait.Jitter(retry, 1.2)`: within `[retry, 2.2 × retry)`.
    pub fn retry(&mut self, retry_period: Duration) -> Duration {
        self.stretch(retry_period, JITTER_FACTOR_PERMILLE)
    }

    /// A uniform index in `0..n`; `0` when `n` is 0.
    pub fn index(&mut self, n: usize) -> usize {
        ((u64::from(self.0.next_u32()) * n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_jitter_stays_in_client_go_range() {
        let mut j = Jitter::new(7);
        let retry = Duration::from_secs(2);
        for _ in 0..10_000 {
            let d = j.retry(retry);
            assert!(d >= retry && d < Duration::from_millis(4_400), "{d:?}");
        }
    }

    #[test]
    fn same_seed_gives_same_sequence() {
        let (mut a, mut b) = (Jitter::new(42), Jitter::new(42));
        for _ in 0..100 {
            assert_eq!(
                a.retry(Duration::from_secs(2)),
                b.retry(Duration::from_secs(2))
            );
        }
        let mut c = Jitter::new(43);
        let differs = (0..100).any(|_| a.index(1000) != c.index(1000));
        assert!(differs, "different seeds must give different sequences");
    }

    #[test]
    fn index_covers_the_whole_range() {
        let mut j = Jitter::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[j.index(10)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(j.index(0), 0);
    }
}
