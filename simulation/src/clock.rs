//! Per-node clocks: each node's monotonic clock runs at its own rate from its own origin, and
//! its wall clock is skewed and may be coarse. Simulated real time is in microseconds. A node's
//! agent, fence and work all read the same clock, as processes of one machine do.

use leasehold_core::{Instant, MicroTime};

/// One node's view of time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Local monotonic reading at real time 0, in µs.
    pub origin: u64,
    /// Rate in parts per million of real time (1_000_000 = exact).
    pub rate_ppm: u64,
    /// Wall-clock skew in µs, written to records only.
    pub wall_skew: i64,
    /// Wall-clock resolution in µs (1: exact): a coarse clock writes the same `renewTime` twice.
    pub wall_resolution: u64,
}

/// Wall time at real time 0 (2026-11-22T00:00:00Z).
const WALL_EPOCH: i64 = 1_795_305_600_000_000;

impl Clock {
    /// The node's monotonic instant at real time `t`.
    pub fn local(&self, t: u64) -> Instant {
        Instant::from_micros(
            self.origin + (u128::from(t) * u128::from(self.rate_ppm) / 1_000_000) as u64,
        )
    }

    /// The node's wall time at real time `t`.
    pub fn wall(&self, t: u64) -> MicroTime {
        let exact = WALL_EPOCH + self.wall_skew + t as i64;
        let resolution = i64::try_from(self.wall_resolution.max(1)).unwrap_or(i64::MAX);
        MicroTime::from_unix_micros(exact - exact.rem_euclid(resolution))
    }

    /// The earliest real time at which the local clock reads at least `at`.
    pub fn real(&self, at: Instant) -> u64 {
        let local = at.as_micros().saturating_sub(self.origin);
        let real = (u128::from(local) * 1_000_000).div_ceil(u128::from(self.rate_ppm));
        u64::try_from(real).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_inverts_local_rounding_up() {
        let c = Clock {
            origin: 5_000,
            rate_ppm: 900_000,
            wall_skew: 0,
            wall_resolution: 1,
        };
        for t in [0u64, 1, 999, 123_456_789] {
            let back = c.real(c.local(t));
            assert!(back <= t && c.local(back) == c.local(t), "{t} -> {back}");
        }
    }

    #[test]
    fn a_coarse_wall_clock_stands_still_within_its_resolution() {
        let c = Clock {
            origin: 0,
            rate_ppm: 1_000_000,
            wall_skew: 0,
            wall_resolution: 1_000_000,
        };
        assert_eq!(c.wall(1), c.wall(999_999));
        assert!(c.wall(1_000_000) > c.wall(999_999));
    }
}
