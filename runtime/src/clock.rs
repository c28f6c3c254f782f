//! The driver's clock: the core's monotonic instants, and the wall clock written to records.

use leasehold_core::{Instant, MicroTime};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock the core reads, and the wall clock written to records.
///
/// By default ([`Clock::default`]) it is `CLOCK_BOOTTIME` on Linux, which keeps counting while
/// the process is stopped (SIGSTOP, a long GC) *and* while the machine or VM is suspended, so
/// that a leader that wakes from any pause sees that its deadline passed and steps down first.
/// Elsewhere it is the monotonic clock.
///
/// [`Clock::tokio`] reads tokio's clock instead, which `tokio::time::pause()` stops and
/// `tokio::time::advance` moves: tests then run a machine through lease durations without
/// waiting for them. It does not count a suspend of the machine, so production code uses the
/// default.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The `CLOCK_BOOTTIME` reading (µs) when the clock was made: the core's instant 0.
    origin: u64,
    source: Source,
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Boottime,
    /// tokio's clock, from this instant (the core's instant 0).
    Tokio(tokio::time::Instant),
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            origin: boot_micros(),
            source: Source::Boottime,
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn boot_micros() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(t.tv_nsec as u64 / 1_000)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boot_micros() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

impl Clock {
    /// A clock on tokio's time, starting now: paused, advanced and auto-advanced with it. Its
    /// boottime conversions assume tokio's clock runs with the machine's (as it does unpaused);
    /// on paused time they are only self-consistent.
    pub fn tokio() -> Self {
        Self {
            origin: boot_micros(),
            source: Source::Tokio(tokio::time::Instant::now()),
        }
    }

    /// Now, in the core's time (µs since this clock was made).
    pub fn now(&self) -> Instant {
        let micros = match self.source {
            Source::Boottime => boot_micros().saturating_sub(self.origin),
            Source::Tokio(origin) => origin.elapsed().as_micros() as u64,
        };
        Instant::from_micros(micros)
    }

    /// The tokio instant at which the core's `at` comes, computed from now (tokio sleeps on the
    /// monotonic clock, which stops during a suspend; the distance to `at` does not).
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        match self.source {
            Source::Boottime => {
                let ahead = at.as_micros().saturating_sub(self.now().as_micros());
                tokio::time::Instant::now() + Duration::from_micros(ahead)
            }
            // The same clock: the instant itself, without a second reading to drift between.
            Source::Tokio(origin) => origin + Duration::from_micros(at.as_micros()),
        }
    }

    /// The absolute `CLOCK_BOOTTIME` reading, in µs, at which the core's `at` comes. Another
    /// process on this machine (the agent's fence) reads the same clock, so this is how an instant
    /// crosses a process boundary; the core's own instants count from this clock's origin.
    /// Off Linux the reading is private to this process.
    pub fn to_boottime_micros(&self, at: Instant) -> u64 {
        self.origin.saturating_add(at.as_micros())
    }

    /// The core instant of an absolute `CLOCK_BOOTTIME` reading in µs, as another process sent
    /// it ([`to_boottime_micros`](Self::to_boottime_micros)); a reading from before this clock
    /// was made maps to its origin.
    pub fn from_boottime_micros(&self, micros: u64) -> Instant {
        Instant::from_micros(micros.saturating_sub(self.origin))
    }

    /// Wall-clock time, for `acquireTime`/`renewTime`.
    pub fn wall() -> MicroTime {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        MicroTime::from_unix_micros(micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_advances_with_real_time_and_maps_deadlines_from_now() {
        let clock = Clock::default();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = clock.now();
        assert!(b.as_micros() >= a.as_micros() + 20_000, "{a:?} {b:?}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let due = clock.deadline(Instant::from_micros(clock.now().as_micros() + 50_000));
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                left <= Duration::from_millis(50) && left >= Duration::from_millis(40),
                "{left:?}"
            );
            assert!(
                clock.deadline(Instant::from_micros(0)) <= tokio::time::Instant::now(),
                "a past instant is due now"
            );
        });
    }

    #[test]
    fn a_tokio_clock_follows_paused_time_exactly() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = Clock::tokio();
            assert_eq!(clock.now(), Instant::from_micros(0));
            tokio::time::advance(Duration::from_secs(15)).await;
            assert_eq!(clock.now(), Instant::from_secs(15), "no real time passed");
            let at = Instant::from_secs(20);
            let started = std::time::Instant::now();
            tokio::time::sleep_until(clock.deadline(at)).await;
            assert_eq!(clock.now(), at, "woken at the core's instant");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "slept on paused time"
            );
            let absolute = clock.to_boottime_micros(at);
            assert_eq!(clock.from_boottime_micros(absolute), at);
        });
    }

    #[test]
    fn boottime_readings_cross_between_clocks_made_at_different_times() {
        let early = Clock::default();
        std::thread::sleep(Duration::from_millis(5));
        let late = Clock::default();
        let at = early.now();
        let absolute = early.to_boottime_micros(at);
        assert_eq!(early.from_boottime_micros(absolute), at);
        // The same instant seen by a clock made later is earlier on that clock's own scale.
        let seen = late.from_boottime_micros(absolute + 10_000_000);
        assert_eq!(late.to_boottime_micros(seen), absolute + 10_000_000);
        assert_eq!(late.from_boottime_micros(0), Instant::from_micros(0));
        assert_eq!(late.to_boottime_micros(Instant::MAX), u64::MAX);
    }
}
