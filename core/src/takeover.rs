//! When a waiting pool member takes a freed slot: after a random delay within a contention
//! window sized from what the member observes, so that of the hundreds watching one release,
//! one or two write and the rest see the slot taken before their turn comes.
//!
//! Every waiting member sees a slot free (a release, an expiry) at about the same instant. Were
//! they all to write at once, one would win and every other would get 409 Conflict and read
//! again: O(N) requests per hand-over, the herd a cold-start pool exists to prevent. Instead
//! each draws its delay uniformly in `[0, window)` and writes only if, when it comes, the slot
//! is still free: the first writer's change reaches the others within a round trip, so only
//! those whose delays fall that close to the first also write.
//!
//! The window is sized by feedback, not configured: with `W` members waiting, the first delay
//! is about `window / (W + 1)`. A member measures, for every hand-over it watches, how long the
//! slot stayed free, and scales the window so that this time nears [`TARGET_ROUND_TRIPS`] of
//! its own request round trips: long enough that the first writer's change is usually seen
//! before the next delay runs out, short enough that a hand-over costs milliseconds. A write
//! that meets a conflict doubles the window. Members that watch the same hand-overs converge
//! to about the same window, and it shrinks as the waiters are served.

use crate::jitter::Jitter;
use crate::timing::Timing;
use embassy_time::{Duration, Instant};
use heapless::Vec;

/// How many request round trips a freed slot should stay free: about one is the time the
/// first writer's change needs to reach the others; the rest spaces the next writer after it.
pub(crate) const TARGET_ROUND_TRIPS: u64 = 3;

/// The round trip assumed until one is measured.
const FIRST_ROUND_TRIP: Duration = Duration::from_millis(5);

/// The smallest window: below it, the delay is lost in the driver's own latency.
const MIN_WINDOW: Duration = Duration::from_millis(1);

/// A contention window and the measurements that size it, for a pool of up to `N` slots.
#[derive(Clone, Debug)]
pub(crate) struct Takeover<const N: usize> {
    window: Duration,
    max_window: Duration,
    /// The instant drawn for the next take, while a slot is free.
    at: Option<Instant>,
    /// Per slot: when this member, waiting, first saw it free; and whether it saw it held
    /// before (a slot already free when first seen tells nothing of how fast it is taken).
    free_since: Vec<(Option<Instant>, bool), N>,
    /// Smoothed round trip of this member's requests; `None` until one is measured.
    round_trip: Option<Duration>,
}

impl<const N: usize> Takeover<N> {
    /// Starts at an eighth of the retry period: a boot storm of a thousand members spreads its
    /// first takes over 250 ms at client-go's timing, and a pool of a few members takes its
    /// slots within a fraction of a retry period. The window never exceeds a lease duration.
    pub(crate) fn new(slots: usize, timing: &Timing) -> Self {
        let mut free_since = Vec::new();
        for _ in 0..slots.min(N) {
            // Cannot fail: at most N pushed.
            let _ = free_since.push((None, false));
        }
        let max_window = timing.lease_duration().max(MIN_WINDOW);
        Self {
            window: (timing.retry_period() / 8).clamp(MIN_WINDOW, max_window),
            max_window,
            at: None,
            free_since,
            round_trip: None,
        }
    }

    /// A member that takes a free slot at once, whatever it observes: for tests of the other
    /// rules.
    #[cfg(test)]
    pub(crate) fn immediate(slots: usize) -> Self {
        Self {
            window: Duration::from_ticks(0),
            max_window: Duration::from_ticks(0),
            ..Self::new(slots, &Timing::DEFAULT)
        }
    }

    /// The current contention window.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// A request was answered `sample` after it was sent.
    /// A waiting member sends few requests (its list, a take), so the first sample stands
    /// alone rather than being smoothed from a guess.
    pub(crate) fn round_trip(&mut self, sample: Duration) {
        self.round_trip = Some(match self.round_trip {
            None => sample,
            Some(old) => {
                let (old, new) = (old.as_ticks(), sample.as_ticks());
                Duration::from_ticks(old - old / 8 + new / 8)
            }
        });
    }

    /// Our take met a conflict: more members write than the window spaces out.
    pub(crate) fn conflict(&mut self) {
        self.scale(2, 1);
    }

    /// Slot `slot` is free at `now` (takeable): remember since when, for the measurement.
    pub(crate) fn free(&mut self, slot: usize, now: Instant) {
        if let Some((since @ None, true)) = self.free_since.get_mut(slot) {
            *since = Some(now);
        }
    }

    /// Slot `slot` is no longer free at `now`. `taken` says whether a holder (ours or another's)
    /// now has it: then how long it stayed free resizes the window.
    pub(crate) fn not_free(&mut self, slot: usize, taken: bool, now: Instant) {
        let Some((since, seen_held)) = self.free_since.get_mut(slot) else {
            return;
        };
        *seen_held = true;
        let Some(since) = since.take() else {
            return;
        };
        if taken {
            let stayed = now.saturating_duration_since(since).as_ticks().max(1);
            let target = self
                .round_trip
                .unwrap_or(FIRST_ROUND_TRIP)
                .as_ticks()
                .saturating_mul(TARGET_ROUND_TRIPS);
            // The first take of N uniform delays is a noisy sample (it spreads over a factor
            // of ten and more), so each moves the window by the fourth root of what it asks,
            // and never more than halves or doubles it.
            let ratio = (u128::from(target) << 32) / u128::from(stayed);
            let ratio = u64::try_from(ratio)
                .unwrap_or(u64::MAX)
                .clamp(1 << 28, 1 << 36);
            self.scale(ratio.isqrt().isqrt(), 1 << 8);
        }
    }

    fn scale(&mut self, num: u64, den: u64) {
        let ticks = u128::from(self.window.as_ticks()) * u128::from(num) / u128::from(den.max(1));
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        self.window = Duration::from_ticks(ticks)
            .max(MIN_WINDOW)
            .min(self.max_window);
    }

    /// Whether one of the `free` slots may be taken at `now`: the first call after a slot freed
    /// draws the delay; `false` until it has passed. With several free at once (the end of a
    /// cold start, when fewer wait than there are slots), the delay shrinks with their number:
    /// fewer members can be contending for each.
    pub(crate) fn ready(&mut self, now: Instant, free: usize, jitter: &mut Jitter) -> bool {
        let window = self.window / u32::try_from(free.max(1)).unwrap_or(u32::MAX);
        let at = *self
            .at
            .get_or_insert_with(|| now.saturating_add(jitter.uniform(window)));
        now >= at
    }

    /// Nothing is free, or a take was just chosen: the next free slot draws a new delay.
    pub(crate) fn settle(&mut self) {
        self.at = None;
    }

    /// The drawn instant, to be woken at.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn takeover() -> Takeover<4> {
        let mut t = Takeover::new(4, &Timing::DEFAULT);
        t.round_trip(Duration::from_millis(5));
        t
    }

    /// Slot `slot` is seen held, then free at `from`, then taken `after` ms later.
    fn hand_over(t: &mut Takeover<4>, slot: usize, from: u64, after: u64) {
        t.not_free(slot, true, ms(from));
        t.free(slot, ms(from));
        t.not_free(slot, true, ms(from + after));
    }

    #[test]
    fn the_first_window_is_an_eighth_of_the_retry_period() {
        assert_eq!(takeover().window(), Duration::from_millis(250));
    }

    #[test]
    fn a_slot_taken_sooner_than_the_target_widens_the_window_by_the_fourth_root() {
        // The target is 3 round trips: 15 ms. Taken after 15 ms: no change.
        let mut t = takeover();
        hand_over(&mut t, 1, 100, 15);
        assert_eq!(t.window().as_millis(), 250);
        // Taken 16 × sooner: twice the window, the most one step moves it.
        hand_over(&mut t, 1, 200, 0);
        assert_eq!(t.window().as_millis(), 500);
    }

    #[test]
    fn a_slot_that_stays_free_long_narrows_the_window_down_to_its_floor() {
        let mut t = takeover();
        hand_over(&mut t, 0, 0, 240);
        assert_eq!(t.window().as_millis(), 125, "16 × the target: halved");
        for i in 1..20 {
            hand_over(&mut t, 0, 2_000 * i, 1_000);
        }
        assert_eq!(t.window(), MIN_WINDOW, "never below the floor");
    }

    #[test]
    fn only_a_slot_seen_held_then_free_then_taken_measures() {
        let mut t = takeover();
        // Free when first seen (a boot): how long it stays free says nothing.
        t.free(2, ms(0));
        t.not_free(2, true, ms(1));
        assert_eq!(t.window().as_millis(), 250);
        // Freed, then gone without a holder (deleted): nothing either.
        t.free(2, ms(10));
        t.not_free(2, false, ms(11));
        t.not_free(2, true, ms(12));
        assert_eq!(t.window().as_millis(), 250);
    }

    #[test]
    fn the_free_instant_is_the_first_seen() {
        let mut t = takeover();
        t.not_free(3, true, ms(0));
        t.free(3, ms(0));
        t.free(3, ms(200));
        t.not_free(3, true, ms(240));
        assert_eq!(t.window().as_millis(), 125, "240 ms, not 40");
    }

    #[test]
    fn conflicts_double_the_window_up_to_a_lease_duration() {
        let mut t = takeover();
        t.conflict();
        assert_eq!(t.window(), Duration::from_millis(500));
        for _ in 0..10 {
            t.conflict();
        }
        assert_eq!(t.window(), Timing::DEFAULT.lease_duration());
    }

    #[test]
    fn the_first_round_trip_stands_alone_and_later_ones_are_smoothed() {
        let mut t = Takeover::<1>::new(1, &Timing::DEFAULT);
        assert_eq!(t.round_trip, None);
        t.round_trip(Duration::from_millis(2));
        assert_eq!(t.round_trip, Some(Duration::from_millis(2)));
        t.round_trip(Duration::from_millis(10));
        assert_eq!(t.round_trip, Some(Duration::from_millis(3)));
    }

    #[test]
    fn the_delay_is_drawn_once_per_free_slot_and_spread_over_the_window() {
        let mut jitter = Jitter::new(9);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let mut t = takeover();
            let now = ms(1_000);
            let ready_now = t.ready(now, 1, &mut jitter);
            let at = t.wake_at().unwrap();
            assert_eq!(ready_now, at == now);
            assert!(!t.ready(now, 1, &mut jitter) || at == now);
            assert_eq!(t.wake_at(), Some(at), "not redrawn");
            assert!(t.ready(at, 1, &mut jitter));
            let delay = at.duration_since(now).as_micros();
            assert!(delay < 250_000, "{delay}");
            buckets[(delay / 25_000) as usize] += 1;
            t.settle();
            assert_eq!(t.wake_at(), None);
        }
        // 1 000 expected per tenth of the window; a chi-squared bound at 9 degrees of freedom
        // (p = 0.001: 27.9) fails a constant or a skewed delay.
        let chi_times_1000: i64 = buckets.iter().map(|&b| (i64::from(b) - 1_000).pow(2)).sum();
        assert!(chi_times_1000 < 27_900, "{buckets:?}");
    }

    #[test]
    fn with_several_slots_free_the_delay_shrinks_with_their_number() {
        let mut jitter = Jitter::new(3);
        for _ in 0..1_000 {
            let mut t = takeover();
            t.ready(ms(0), 10, &mut jitter);
            assert!(
                t.wake_at().unwrap() < ms(25),
                "within a tenth of the window"
            );
        }
    }
}
