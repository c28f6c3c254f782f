//! When a waiting pool member takes a freed slot: after a random delay within a contention
//! window sized from what the member observes, so that of the hundreds watching one release,
//! one or two write and the rest see the slot taken before their turn comes.
//!
//! Every waiting member sees a slot free (a release, an expiry) at about the same instant. Were
//! they all to write at once, one would win and every other would get 409 Conflict: O(N)
//! requests per hand-over, the herd a cold-start pool exists to prevent. Instead each draws its
//! delay uniformly in `[0, window)` and writes only if, when it comes, the slot is still free:
//! the first writer's change reaches the others within a round trip, so only those whose
//! delays fall that close to the first also write.
//!
//! The window is sized by feedback, not configured: with `W` members waiting, the first delay
//! is about `window / (W + 1)`. A member measures, for every hand-over it watches, how long the
//! slot stayed free, and scales the window so that this time nears [`TARGET_FASTEST`] times the
//! fastest hand-over seen (the latency floor: a winner that drew no delay at all), or times the
//! lag of its stream behind the server when that is longer. Long enough
//! that the first writer's change is usually seen before the next delay runs out; short enough
//! that a hand-over costs milliseconds. The window shrinks as the waiters are served.
//!
//! The feedback is what all waiting members see alike: they watch the same hand-overs, so their
//! windows move together (nothing per member such as its own round trips: members whose
//! windows drifted apart would sort themselves, the narrowest winning every race). The one
//! exception is a lost race, which doubles the loser's window: a stream that lags the server
//! makes every hand-over look fast (both its free and its take arrive late alike) while the
//! members, seeing the winner late, keep writing; only the 409s tell. A loser also takes
//! nothing more until it has seen the winner.

use crate::jitter::Jitter;
use crate::timing::Timing;
use embassy_time::{Duration, Instant};
use heapless::Vec;

/// How many times the fastest hand-over a freed slot should stay free.
pub(crate) const TARGET_FASTEST: u64 = 2;

/// How many times the fastest reservation (or the lag) a held slot should stay unreserved.
const RESERVE_FLOORS: u32 = 16;

/// The widest reservation window, in lease durations: a crowd of `M` members spaced `t` apart
/// needs `M × t`, and five thousand members spaced by a hundred milliseconds need eight
/// minutes.
const RESERVE_MAX_LEASES: u32 = 32;

/// How many targets a freed slot may stay free before the window is taken for too wide.
const OVERDUE_TARGETS: u32 = 16;

/// The smallest window: below it, the delay is lost in the driver's own latency.
const MIN_WINDOW: Duration = Duration::from_millis(1);

/// A contention window and the measurements that size it, for a pool of up to `N` slots.
#[derive(Clone, Debug)]
pub(crate) struct Takeover<const N: usize> {
    window: Duration,
    /// The window as what every waiting member sees alike moved it (the hand-overs, the
    /// misses, the least), without this member's lost races: a measure of the crowd, where a
    /// loser's doubled window is a measure of its bad luck.
    crowd: Duration,
    max_window: Duration,
    /// The largest [`Takeover::set_least`] may ask: a lease duration.
    max_least: Duration,
    /// The instant drawn for the next take, while a slot is free.
    at: Option<Instant>,
    /// Per slot: when this member, waiting, first saw it free; and whether it saw it held
    /// before (a slot already free when first seen tells nothing of how fast it is taken).
    free_since: Vec<(Option<Instant>, bool), N>,
    /// The fastest hand-over seen, slowly forgotten; `None` before the first.
    fastest: Option<Duration>,
    /// After a lost race: the slot lost, when, and until when at most this member waits to see
    /// its winner before it may take again.
    lost: Option<(usize, Instant, Instant)>,
    /// How far this member's stream runs behind the server: from a lost race's 409 to the
    /// winner's write on the stream, the largest lately seen, slowly forgotten.
    lag: Option<Duration>,
    /// How long at most to wait for a lost race's winner: a retry period.
    wait_for_winner: Duration,
    /// How many floors (the fastest hand-over, or the lag) a free slot should stay free.
    factor: u32,
    /// A reservation window ([`Takeover::reserving`]): its delay is not divided among the slots
    /// open at once, and each sample moves it gently.
    reserving: bool,
    /// The latency floor measured elsewhere (the hand-overs), used instead of `fastest`:
    /// a reservation's own quickest is a draw from this window, not the network's latency.
    floor_hint: Option<Duration>,
    /// At most this target, whatever the floor: a reservation must land while the holder
    /// still works.
    target_cap: Option<Duration>,
    /// Per slot: since when it is held, as far as this member saw.
    held_since: Vec<Option<Instant>, N>,
    /// Per slot: since when this member has seen it held without a break, whether or not it
    /// saw the term begin (a term already running when the member booted).
    held_seen: Vec<Option<Instant>, N>,
    /// The window never narrows below this (see [`Takeover::set_least`]).
    least: Duration,
    /// How long a term lasts, from its take seen to its release seen: each moves it by an
    /// eighth.
    hold: Option<Duration>,
    /// The width the crowd the reservations measured asks of this take window
    /// ([`Takeover::crowd_from`]); the window is the wider of it and its own.
    crowd_least: Duration,
    /// When this window last measured a hand-over (for a reservation window: a reservation
    /// seen made), which is what tells of the crowd.
    sampled_at: Option<Instant>,
    /// How long what it learnt holds: a mean term (a retry period before one is seen).
    fresh_for: Duration,
}

impl<const N: usize> Takeover<N> {
    /// Starts at an eighth of the retry period: a boot storm of a thousand members spreads its
    /// first takes over 250 ms at client-go's timing, and a pool of a few members takes its
    /// slots within a fraction of a retry period. The window never exceeds a lease duration.
    ///
    /// Only a watching member delays: a polling one learns of a freed slot at its own jittered
    /// poll, which already spreads the members as client-go's do, so it takes at once.
    pub(crate) fn new(slots: usize, timing: &Timing, watching: bool) -> Self {
        let mut free_since = Vec::new();
        for _ in 0..slots.min(N) {
            // Cannot fail: at most N pushed.
            let _ = free_since.push((None, false));
        }
        let held_since: Vec<_, N> = free_since.iter().map(|_| None).collect();
        let max_window = if watching {
            timing.lease_duration().max(MIN_WINDOW)
        } else {
            Duration::from_ticks(0)
        };
        let window = (timing.retry_period() / 8).max(MIN_WINDOW).min(max_window);
        Self {
            window,
            crowd: window,
            max_window,
            max_least: max_window,
            at: None,
            free_since,
            fastest: None,
            lost: None,
            lag: None,
            wait_for_winner: timing.retry_period(),
            factor: TARGET_FASTEST as u32,
            reserving: false,
            floor_hint: None,
            target_cap: None,
            held_seen: held_since.clone(),
            held_since,
            least: Duration::from_ticks(0),
            hold: None,
            crowd_least: Duration::from_ticks(0),
            sampled_at: None,
            fresh_for: timing.retry_period(),
        }
    }

    /// The window for reserving held slots' next terms (see `pool.rs`). A reservation is off
    /// the hand-over's path (made while the holder still works), so it can afford a window
    /// wide enough that about one member in a boot storm or a hand-over writes: it starts at a
    /// retry period, whatever the number of slots to reserve, and aims at [`RESERVE_FLOORS`]
    /// floors rather than [`TARGET_FASTEST`].
    pub(crate) fn reserving(slots: usize, timing: &Timing) -> Self {
        let mut t = Self::new(slots, timing, true);
        t.max_window = timing.lease_duration().max(MIN_WINDOW) * RESERVE_MAX_LEASES;
        t.window = timing.retry_period().max(MIN_WINDOW).min(t.max_window);
        t.crowd = t.window;
        t.factor = RESERVE_FLOORS;
        t.reserving = true;
        t
    }

    /// A member that takes a free slot at once, whatever it observes: for tests of the other
    /// rules.
    #[cfg(test)]
    pub(crate) fn immediate(slots: usize) -> Self {
        Self {
            window: Duration::from_ticks(0),
            max_window: Duration::from_ticks(0),
            ..Self::new(slots, &Timing::DEFAULT, true)
        }
    }

    /// A member whose window is `window`, as if it had watched hand-overs: for tests of the
    /// rules that depend on it.
    #[cfg(test)]
    pub(crate) fn with_window(slots: usize, window: Duration) -> Self {
        Self {
            window,
            ..Self::new(slots, &Timing::DEFAULT, true)
        }
    }

    /// Sizes this reservation window from `handovers`, the hand-overs every waiting member
    /// watches alike (reserved or not): its latency floor is their fastest, since a
    /// reservation's own quickest is a draw from this window, not the network's latency; its
    /// target is at most an eighth of the mean term, as a reservation must land while the
    /// holder still works (its first comes about exponentially around the target, so past a
    /// term about once in three thousand; until a term is seen from take to release, it aims
    /// as a take does); and it
    /// is never narrower than a quarter of a term: the mean term, or, before any was seen to
    /// end, the longest any slot has been seen held (a delegate that held for minutes is not
    /// about to end). Off the hand-over's path, a wide window is cheap, and it is what keeps
    /// a crowd of a thousand from racing for each term a take begins.
    pub(crate) fn follow(&mut self, handovers: &Self, now: Instant) {
        self.floor_hint = handovers.fastest;
        self.target_cap = Some(
            handovers
                .hold
                .map_or(Duration::from_ticks(0), |hold| hold / 8),
        );
        let term = handovers.hold.or_else(|| handovers.longest_held(now));
        self.set_least(term.map_or(Duration::from_ticks(0), |t| t / 4), now);
        if let Some(hold) = handovers.hold {
            self.fresh_for = hold;
        }
    }

    /// Keeps this take window at least as wide as the crowd `reserving` measured: a reservation
    /// window settles where its first reservation comes a target after a slot opens, so its
    /// width over its target counts the members waiting. A take needs the same crowd spread
    /// over its own target. Most hand-overs are reserved, so this window sees few of its own
    /// samples in a cold start; without this, the rare release nobody reserved is raced by a
    /// crowd sized from the boot.
    ///
    /// Only a reservation seen made measures the crowd (a miss narrows it, but a miss alone,
    /// with nobody reserving, counts nobody), and only above the least the terms ask of the
    /// reservation window (there, it counts the terms). What it measured holds for a term:
    /// after that without one (the end of a cold start, when fewer wait than there are slots
    /// and nobody reserves), the crowd is gone, and this window is left to its own rules (a
    /// slot left free long halves it). A member that waits again after holding starts
    /// without it ([`Takeover::forget`]).
    pub(crate) fn crowd_from(&mut self, reserving: &Self, now: Instant) {
        let before = self.window();
        let reserve = reserving.target().as_ticks();
        let fresh = reserving
            .sampled_at
            .is_some_and(|at| now <= at.saturating_add(reserving.fresh_for));
        // A crowd held up by the terms' least counts the terms, not the members.
        let measured = fresh && reserving.crowd > reserving.least;
        self.crowd_least = if !measured || reserve == 0 || self.max_window.as_ticks() == 0 {
            Duration::from_ticks(0)
        } else {
            // Both targets on the same floor: this window's own fastest comes from the few
            // hand-overs nobody reserved, and its lag from its own lost races (the largest
            // lately seen: a boot's), which say less of the crowd than all hand-overs do.
            let take = reserving.floor() * TARGET_FASTEST as u32;
            let least = u128::from(reserving.crowd.as_ticks()) * u128::from(take.as_ticks())
                / u128::from(reserve);
            Duration::from_ticks(u64::try_from(least).unwrap_or(u64::MAX)).min(self.max_least)
        };
        self.rescale_draw(before, now);
    }

    /// Forgets what was seen of each slot, when this member waits again after a time it did
    /// not (it held, or had finished) and so watched no hand-over: a slot seen free or held
    /// before it looked away must not be measured as if it had stayed so all along. What was learnt (the window, the
    /// floor, the mean term, the lag) is kept.
    pub(crate) fn forget(&mut self) {
        for (since, seen_held) in self.free_since.iter_mut() {
            *since = None;
            *seen_held = false;
        }
        for since in self.held_since.iter_mut().chain(self.held_seen.iter_mut()) {
            *since = None;
        }
        self.at = None;
        self.lost = None;
        self.crowd_least = Duration::from_ticks(0);
        self.sampled_at = None;
    }

    /// How long a term lasts, as seen from its take to its release; `None` before the first.
    #[cfg(test)]
    pub(crate) fn hold(&self) -> Option<Duration> {
        self.hold
    }

    /// Sizes against `floor` rather than the fastest this one measured, with a target at most
    /// `cap`: for tests of the target alone.
    #[cfg(test)]
    pub(crate) fn set_floor(&mut self, floor: Option<Duration>, cap: Option<Duration>) {
        self.floor_hint = floor;
        self.target_cap = cap;
    }

    /// Keeps the window at least `least` (at most its largest): a reservation window sized
    /// from how long terms last, whatever the crowd's feedback says.
    fn set_least(&mut self, least: Duration, now: Instant) {
        self.least = least.min(self.max_least);
        self.crowd = self.crowd.max(self.least);
        if self.window < self.least {
            let before = self.window();
            self.window = self.least;
            self.rescale_draw(before, now);
        }
    }

    /// The longest any slot has been seen held without a break, at `now`; `None` if none is.
    fn longest_held(&self, now: Instant) -> Option<Duration> {
        self.held_seen
            .iter()
            .filter_map(|since| *since)
            .min()
            .map(|since| now.saturating_duration_since(since))
    }

    /// The current contention window.
    pub(crate) fn window(&self) -> Duration {
        self.window.max(self.crowd_least)
    }

    /// Slot `slot` is free at `now` (takeable): remember since when, for the measurement.
    pub(crate) fn free(&mut self, slot: usize, now: Instant) {
        if let Some(seen) = self.held_seen.get_mut(slot) {
            *seen = None;
        }
        if let Some((since @ None, true)) = self.free_since.get_mut(slot) {
            *since = Some(now);
        }
        if let Some(held) = self.held_since.get_mut(slot).and_then(Option::take) {
            let hold = now.saturating_duration_since(held);
            self.hold = Some(match self.hold {
                Some(mean) if hold >= mean => mean + (hold - mean) / 8,
                Some(mean) => mean - (mean - hold) / 8,
                None => hold,
            });
        }
    }

    /// Slot `slot` is no longer free at `now`. `taken` says whether a holder (ours or another's)
    /// now has it: then how long it stayed free resizes the window.
    pub(crate) fn not_free(&mut self, slot: usize, taken: bool, now: Instant) {
        if let Some((_, at, _)) = self.lost.filter(|(lost, ..)| taken && *lost == slot) {
            let sample = now.saturating_duration_since(at);
            self.lag = Some(match self.lag {
                Some(lag) if lag > sample => lag - (lag - sample) / 8,
                _ => sample,
            });
            self.lost = None;
        }
        // A slot neither free nor held (deleted, not yet known) is no running term.
        if let Some(seen) = self.held_seen.get_mut(slot) {
            if !taken {
                *seen = None;
            } else if seen.is_none() {
                *seen = Some(now);
            }
        }
        let Some((since, seen_held)) = self.free_since.get_mut(slot) else {
            return;
        };
        *seen_held = true;
        let Some(since) = since.take() else {
            return;
        };
        if !taken {
            return;
        }
        // A term seen to begin: its length is measured at its release.
        if let Some(held) = self.held_since.get_mut(slot) {
            *held = Some(now);
        }
        self.sampled_at = Some(now);
        let stayed = now
            .saturating_duration_since(since)
            .max(Duration::from_ticks(1));
        // The floor follows a faster hand-over at once and a slower one by a 32nd of the gap:
        // it tracks the latency of the day without being pulled up by every slow hand-over.
        let fastest = match self.fastest {
            Some(fastest) if stayed >= fastest => fastest + (stayed - fastest) / 32,
            _ => stayed,
        };
        self.fastest = Some(fastest);
        let target = self.target().as_ticks();
        // The first take of W uniform delays is a noisy sample, so each moves the window by
        // the square root of what it asks, and never more than halves or doubles it.
        let ratio = (u128::from(target) << 32) / u128::from(stayed.as_ticks());
        let ratio = u64::try_from(ratio).unwrap_or(u64::MAX);
        let before = self.window();
        if self.reserving {
            // Many slots are reserved about together (a boot), so each sample moves the
            // window by a sixteenth at most, and a crowd of samples cannot throw it far.
            self.scale(ratio.clamp(15 << 28, 17 << 28), 1 << 32);
        } else {
            self.scale(ratio.clamp(1 << 30, 1 << 34).isqrt(), 1 << 16);
        }
        self.rescale_draw(before, now);
    }

    /// Slot `slot`, watched since it could be taken (here: reserved), was freed before it
    /// was: the window was too wide for the members left, and halves.
    pub(crate) fn missed(&mut self, slot: usize, now: Instant) {
        if self
            .free_since
            .get(slot)
            .is_some_and(|(since, _)| since.is_some())
        {
            let before = self.window();
            self.scale(1, 2);
            self.rescale_draw(before, now);
        }
    }

    /// A delay drawn from the window before it changed is rescaled with it: one drawn long ago
    /// from a wide window must not keep a member waiting once few are left to contend.
    fn rescale_draw(&mut self, before: Duration, now: Instant) {
        if let Some(at) = self.at.filter(|at| *at > now) {
            let left = u128::from(at.duration_since(now).as_ticks());
            let left =
                left * u128::from(self.window().as_ticks()) / u128::from(before.as_ticks().max(1));
            let left = Duration::from_ticks(u64::try_from(left).unwrap_or(u64::MAX));
            self.at = Some(now.saturating_add(left));
        }
    }

    /// How long a freed slot should stay free: [`TARGET_FASTEST`] times the fastest hand-over
    /// seen, or the stream's lag if that is longer: a stream that lags the server hides each
    /// take from the others for that long, so a hand-over faster than the lag is a race,
    /// however fast it looks.
    fn target(&self) -> Duration {
        let floor = self.floor();
        let target = floor * self.factor;
        // Never below a hand-over's own target: under that, the members race on what their
        // streams have not shown yet.
        self.target_cap.map_or(target, |cap| {
            target.min(cap).max(floor * TARGET_FASTEST as u32)
        })
    }

    /// The latency floor: the fastest hand-over seen (or the one measured elsewhere), or the
    /// stream's lag if that is longer.
    fn floor(&self) -> Duration {
        let fastest = self
            .floor_hint
            .or(self.fastest)
            .unwrap_or(Duration::from_ticks(0));
        fastest.max(self.lag.unwrap_or(Duration::from_ticks(0)))
    }

    /// The instant by which a freed slot should have been taken: [`OVERDUE_TARGETS`] targets
    /// after the slot seen free longest. A slot still free then says that far fewer members
    /// wait than the window is sized for (the end of a cold start): the window halves. A crowd
    /// the window fits leaves a slot free that long about once in nine million hand-overs
    /// (the first of its uniform delays falls that late: about `e^-16`).
    fn overdue_at(&self) -> Option<Instant> {
        // A window already at its least halves no further: no reason to wake.
        // Nor one the crowd holds wide: that is the reservations' to narrow.
        if self.window() <= self.least.max(MIN_WINDOW) || self.crowd_least >= self.window {
            return None;
        }
        let oldest = self
            .free_since
            .iter()
            .filter_map(|(since, _)| *since)
            .min()?;
        let target = self.target();
        (target.as_ticks() > 0).then(|| oldest.saturating_add(target * OVERDUE_TARGETS))
    }

    /// Our take of `slot` met a conflict: another member wrote first, and this member's view
    /// (its stream) is behind the server's by at least that write. It takes nothing until it
    /// has seen the winner, or a retry period has passed: firing again on a view that old would
    /// race the same crowd again at network speed, one 409 after another. And more members
    /// write in one hand-over than the window spaces out: it doubles.
    pub(crate) fn lost(&mut self, slot: usize, now: Instant) {
        self.lost = Some((slot, now, now.saturating_add(self.wait_for_winner)));
        self.at = None;
        self.window = self.scaled(self.window, 2, 1);
    }

    /// Scales the window and the crowd's alike.
    fn scale(&mut self, num: u64, den: u64) {
        self.window = self.scaled(self.window, num, den);
        self.crowd = self.scaled(self.crowd, num, den);
    }

    fn scaled(&self, window: Duration, num: u64, den: u64) -> Duration {
        let ticks = u128::from(window.as_ticks()) * u128::from(num) / u128::from(den.max(1));
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        Duration::from_ticks(ticks)
            .max(MIN_WINDOW)
            .max(self.least)
            .min(self.max_window)
    }

    /// Whether one of the `free` slots may be taken at `now`: the first call after a slot freed
    /// draws the delay; `false` until it has passed. With several free at once (the end of a
    /// cold start, when fewer wait than there are slots), the delay shrinks with their number:
    /// fewer members can be contending for each.
    pub(crate) fn ready(&mut self, now: Instant, free: usize, jitter: &mut Jitter) -> bool {
        match self.lost {
            Some((_, _, until)) if now < until => return false,
            Some(_) => self.lost = None,
            None => {}
        }
        if self.overdue_at().is_some_and(|overdue| now >= overdue) {
            let before = self.window();
            self.scale(1, 2);
            self.rescale_draw(before, now);
            for (since, _) in self.free_since.iter_mut() {
                if since.is_some() {
                    *since = Some(now);
                }
            }
        }
        // Before any hand-over was seen (a boot), the free slots say nothing of how few
        // contend: everyone may be starting at once.
        let share = if !self.reserving && self.fastest.is_some() {
            free.max(1)
        } else {
            1
        };
        let window = self.window() / u32::try_from(share).unwrap_or(u32::MAX);
        let at = *self
            .at
            .get_or_insert_with(|| now.saturating_add(jitter.uniform(window)));
        now >= at
    }

    /// Nothing is free, or a take was just chosen: the next free slot draws a new delay (and
    /// a lost race's wait has nothing left to guard).
    pub(crate) fn settle(&mut self) {
        self.at = None;
        self.lost = None;
    }

    /// The drawn instant, or the end of the wait for a lost race's winner, to be woken at.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        if let Some((_, _, until)) = self.lost {
            return Some(until);
        }
        let at = self.at?;
        Some(self.overdue_at().map_or(at, |overdue| overdue.min(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn takeover() -> Takeover<4> {
        Takeover::new(4, &Timing::DEFAULT, true)
    }

    /// A reservation window sized against a 10 ms floor, its target capped at 75 ms.
    fn reserving_at_10ms() -> Takeover<4> {
        let mut t = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        t.set_floor(
            Some(Duration::from_millis(10)),
            Some(Duration::from_millis(75)),
        );
        t
    }

    /// Slot `slot` is seen held, then free at `from`, then taken `after` ms later.
    fn hand_over(t: &mut Takeover<4>, slot: usize, from: u64, after: u64) {
        t.not_free(slot, true, ms(from));
        t.free(slot, ms(from));
        t.not_free(slot, true, ms(from + after));
    }

    /// The stream's lag is sampled from a lost race's 409 to its winner on the stream: a
    /// longer sample is taken at once, a shorter one moves it down by an eighth of the gap.
    #[test]
    fn the_lag_follows_a_longer_sample_at_once_and_a_shorter_by_an_eighth() {
        let mut t = takeover();
        assert_eq!(t.lag, None);
        t.lost(0, ms(100));
        t.not_free(0, true, ms(180));
        assert_eq!(t.lag, Some(Duration::from_millis(80)));
        t.lost(1, ms(1_000));
        t.not_free(1, true, ms(1_016));
        assert_eq!(t.lag, Some(Duration::from_millis(72)), "80 − (80 − 16) ⁄ 8");
        t.lost(1, ms(2_000));
        t.not_free(1, true, ms(2_100));
        assert_eq!(t.lag, Some(Duration::from_millis(100)));
        // Only the slot lost, once taken, samples.
        t.lost(2, ms(3_000));
        t.not_free(3, true, ms(3_500));
        t.not_free(2, false, ms(3_600));
        assert_eq!(t.lag, Some(Duration::from_millis(100)));
    }

    #[test]
    fn a_polling_member_takes_a_free_slot_at_once() {
        let mut t = Takeover::<1>::new(1, &Timing::DEFAULT, false);
        assert!(t.ready(ms(5), 1, &mut Jitter::new(1)));
        t.lost(0, ms(6));
        assert_eq!(
            t.window(),
            Duration::from_ticks(0),
            "a conflict widens nothing"
        );
    }

    #[test]
    fn the_first_window_is_an_eighth_of_the_retry_period() {
        assert_eq!(takeover().window(), Duration::from_millis(250));
    }

    #[test]
    fn a_hand_over_as_fast_as_the_fastest_widens_the_window_by_the_square_root() {
        let mut t = takeover();
        // The first is the fastest yet: the target is twice it, so the window grows by √2.
        hand_over(&mut t, 1, 100, 4);
        assert_eq!(t.window().as_millis(), 353);
        // Taken after twice the fastest: about on target. The floor rose by a 32nd of the gap
        // (4.125 ms), so the window grows by √(8.25 / 8) only.
        hand_over(&mut t, 1, 200, 8);
        assert_eq!(t.window().as_millis(), 359);
    }

    #[test]
    fn a_slot_that_stays_free_long_narrows_the_window_at_most_by_half_down_to_its_floor() {
        let mut t = takeover();
        hand_over(&mut t, 0, 0, 2);
        let wide = t.window();
        hand_over(&mut t, 0, 100, 500);
        let halved = wide / 2;
        assert!(
            t.window().as_micros().abs_diff(halved.as_micros()) <= 1,
            "far slower than the target: halved, {:?}",
            t.window()
        );
        t.scale(1, 1_000_000);
        assert_eq!(t.window(), MIN_WINDOW, "never below the floor");
    }

    /// A slot seen free for sixteen targets (twice the fastest hand-over, sixteen times) says
    /// far fewer wait than the window is sized for: the window halves then, not before, and
    /// the wait starts over for the next halving.
    #[test]
    fn a_slot_free_for_sixteen_targets_halves_the_window() {
        let mut t = takeover();
        let mut jitter = Jitter::new(3);
        hand_over(&mut t, 0, 0, 5);
        // The target is now 2 × 5 ms, so a slot is overdue 160 ms after it freed.
        let window = t.window();
        t.not_free(1, true, ms(100));
        t.free(1, ms(1_000));
        assert_eq!(t.wake_at(), None, "nothing drawn yet");
        let _ = t.ready(ms(1_159), 1, &mut jitter);
        assert_eq!(t.window(), window, "not yet overdue");
        assert!(
            t.wake_at().is_some_and(|at| at <= ms(1_160)),
            "woken when overdue"
        );
        let _ = t.ready(ms(1_160), 1, &mut jitter);
        assert_eq!(t.window(), window / 2, "overdue: halved");
        let _ = t.ready(ms(1_319), 1, &mut jitter);
        assert_eq!(
            t.window(),
            window / 2,
            "the next halving waits another 160 ms"
        );
        let _ = t.ready(ms(1_320), 1, &mut jitter);
        assert_eq!(t.window(), window / 4);
    }

    #[test]
    fn the_fastest_follows_a_faster_hand_over_at_once_and_a_slower_by_a_32nd() {
        let mut t = takeover();
        hand_over(&mut t, 0, 0, 10);
        assert_eq!(t.fastest, Some(Duration::from_millis(10)));
        hand_over(&mut t, 0, 100, 42);
        assert_eq!(t.fastest, Some(Duration::from_millis(11)));
        hand_over(&mut t, 0, 200, 3);
        assert_eq!(t.fastest, Some(Duration::from_millis(3)));
    }

    #[test]
    fn hand_overs_at_the_latency_floor_widen_the_window_up_to_a_lease_duration() {
        // A herd: every slot is taken as fast as it can be. Each such hand-over widens the
        // window by √2, so twelve reach sixty times the first window.
        let mut t = takeover();
        for i in 0..11 {
            hand_over(&mut t, 0, 1_000 * i, 2);
        }
        assert!(t.window() > Duration::from_secs(10), "{:?}", t.window());
        hand_over(&mut t, 0, 20_000, 2);
        assert_eq!(
            t.window(),
            Timing::DEFAULT.lease_duration(),
            "at most a lease duration"
        );
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
        assert_eq!(t.fastest, None);
    }

    #[test]
    fn the_free_instant_is_the_first_seen() {
        let mut t = takeover();
        t.not_free(3, true, ms(0));
        t.free(3, ms(0));
        t.free(3, ms(200));
        t.not_free(3, true, ms(240));
        assert_eq!(
            t.fastest,
            Some(Duration::from_millis(240)),
            "240 ms, not 40"
        );
    }

    #[test]
    fn a_drawn_delay_is_rescaled_with_the_window() {
        let mut jitter = Jitter::new(1);
        let mut t = takeover();
        hand_over(&mut t, 0, 0, 10);
        let now = ms(1_000);
        t.ready(now, 1, &mut jitter);
        let drawn = t.wake_at().unwrap().duration_since(now);
        // A hand-over five times slower than the target halves the window, and what is left
        // of the delay with it.
        let before = t.window().as_micros();
        hand_over(&mut t, 1, 900, 100);
        let after = t.window().as_micros();
        assert!(after < before * 2 / 3, "{before} µs → {after} µs");
        let left = t.wake_at().unwrap().duration_since(now).as_micros();
        let expected = drawn.as_micros() * after / before;
        assert!(
            left.abs_diff(expected) <= 1,
            "{drawn:?}: {left} µs left, not {expected}"
        );
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
    fn with_several_slots_free_the_delay_shrinks_with_their_number_once_hand_overs_are_seen() {
        let mut jitter = Jitter::new(3);
        // A boot: nothing measured, everyone may be starting at once; the whole window.
        let mut late = 0;
        for _ in 0..1_000 {
            let mut t = takeover();
            t.ready(ms(0), 10, &mut jitter);
            let at = t.wake_at().unwrap();
            assert!(at < ms(250), "within the window: {at:?}");
            late += usize::from(at >= ms(25));
        }
        assert!(late > 800, "not divided among the free slots: {late}");
        for _ in 0..1_000 {
            let mut t = takeover();
            hand_over(&mut t, 0, 0, 10);
            let window = t.window();
            t.ready(ms(100), 10, &mut jitter);
            assert!(
                t.wake_at().unwrap() <= ms(100).saturating_add(window / 10),
                "within a tenth of the window"
            );
        }
    }

    /// A reservation aims at sixteen latency floors, at most its cap (half the hold, in a
    /// pool), and never below a take's own target (twice the floor).
    #[test]
    fn a_reservation_aims_between_twice_the_floor_and_its_cap() {
        let mut t = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        let d = Duration::from_millis;
        t.set_floor(Some(d(10)), None);
        assert_eq!(t.target(), d(160));
        t.set_floor(Some(d(10)), Some(d(75)));
        assert_eq!(t.target(), d(75));
        t.set_floor(Some(d(10)), Some(d(5)));
        assert_eq!(t.target(), d(20));
        assert_eq!(
            t.window(),
            Timing::DEFAULT.retry_period(),
            "starts at a retry period"
        );
    }

    /// Slots are reserved about together (a boot): one sample moves the reservation window by
    /// a sixteenth at most, and a slot released before anyone reserved it halves it.
    #[test]
    fn a_reservation_window_moves_gently_and_halves_on_a_miss() {
        let mut t = reserving_at_10ms();
        let start = t.window();
        hand_over(&mut t, 0, 0, 1);
        assert_eq!(t.window(), start * 17 / 16, "reserved fast: wider");
        hand_over(&mut t, 1, 100, 10_000);
        assert_eq!(
            t.window(),
            start * 17 / 16 * 15 / 16,
            "reserved late: narrower"
        );
        t.not_free(2, false, ms(20_000));
        t.free(2, ms(20_000));
        let before = t.window();
        t.missed(2, ms(20_100));
        assert_eq!(t.window(), before / 2);
        t.missed(3, ms(20_100));
        assert_eq!(
            t.window(),
            before / 2,
            "a slot not watched free tells nothing"
        );
    }

    /// A reservation may land any time before its term ends: a window kept at least a
    /// quarter of a term widens at once when the terms seen grow long, and neither a miss nor
    /// a fast sample narrows it below that; it never exceeds a lease duration.
    #[test]
    fn a_least_window_widens_it_at_once_and_bounds_every_narrowing() {
        let mut t = reserving_at_10ms();
        assert_eq!(t.window(), Timing::DEFAULT.retry_period());
        t.set_least(Duration::from_secs(10), ms(0));
        assert_eq!(t.window(), Duration::from_secs(10));
        t.not_free(2, false, ms(1_000));
        t.free(2, ms(1_000));
        t.missed(2, ms(1_100));
        assert_eq!(
            t.window(),
            Duration::from_secs(10),
            "a miss halves no lower"
        );
        hand_over(&mut t, 0, 2_000, 60_000);
        assert_eq!(t.window(), Duration::from_secs(10), "a slow sample neither");
        t.set_least(Duration::from_secs(60), ms(70_000));
        assert_eq!(t.window(), Timing::DEFAULT.lease_duration());
        t.set_least(Duration::from_secs(1), ms(70_000));
        assert_eq!(
            t.window(),
            Timing::DEFAULT.lease_duration(),
            "a lower least narrows nothing by itself"
        );
        t.missed(2, ms(70_100));
        assert_eq!(t.window(), Timing::DEFAULT.lease_duration() / 2);
    }

    /// A window at its least halves no further, so a slot left free sixteen targets asks for
    /// no wake-up of its own: only the drawn delay's (which would otherwise wake the member
    /// every sixteen targets, with nothing to do, for as long as the delay runs).
    #[test]
    fn a_window_at_its_least_asks_for_no_overdue_wake_up() {
        let mut t = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        t.set_floor(Some(Duration::from_millis(1)), None);
        t.set_least(Duration::from_secs(10), ms(0));
        t.not_free(0, true, ms(0));
        t.free(0, ms(0));
        t.ready(ms(0), 1, &mut Jitter::new(3));
        let at = t.at.expect("drawn");
        assert!(at > ms(1_000), "{at:?}");
        assert_eq!(t.wake_at(), Some(at));
        t.set_least(Duration::from_ticks(0), ms(0));
        assert!(t.wake_at() < Some(at), "above its least, it may halve");
    }

    /// A delay drawn before the window widened is stretched with it: a member that drew from
    /// a narrow window must not race the crowd that the wide one now spreads.
    #[test]
    fn a_delay_drawn_before_a_least_widened_the_window_is_stretched_with_it() {
        let mut t = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        let mut jitter = Jitter::new(7);
        t.ready(ms(0), 1, &mut jitter);
        let drawn = t.at.expect("drawn").duration_since(ms(0));
        t.set_least(Timing::DEFAULT.retry_period() * 4, ms(0));
        assert_eq!(t.at, Some(ms(0) + drawn * 4));
    }

    /// A reservation window follows the hand-overs every member watches: their fastest is
    /// its floor, half their mean term caps its target, and a quarter of the mean term (or,
    /// before any ended, of the longest running) is the least it may be.
    #[test]
    fn a_reservation_window_follows_the_hand_overs_floor_and_terms() {
        let d = Duration::from_millis;
        let mut handovers = takeover();
        let mut t = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        t.follow(&handovers, ms(0));
        assert_eq!(t.target(), d(0), "nothing seen: no floor");
        assert_eq!(t.window(), Timing::DEFAULT.retry_period());
        // Slot 0 seen held for 20 s, no term seen to end: at least 5 s.
        handovers.not_free(0, true, ms(0));
        t.follow(&handovers, ms(20_000));
        assert_eq!(t.window(), Duration::from_secs(5));
        // A hand-over in 10 ms, then that term ended after 300 ms: the floor is 10 ms, the
        // target 16 floors capped at an eighth of the term, and the least a quarter of it.
        hand_over(&mut handovers, 1, 20_000, 10);
        handovers.free(1, ms(20_310));
        t.follow(&handovers, ms(20_310));
        assert_eq!(t.target(), Duration::from_micros(37_500));
        assert_eq!(t.least, d(75));
    }

    /// A reservation window may grow past a lease duration (a crowd of thousands, each a
    /// target apart), up to 32; the least the terms ask for stops at one.
    #[test]
    fn a_reservation_window_grows_past_a_lease_duration_and_its_least_does_not() {
        let lease = Timing::DEFAULT.lease_duration();
        let mut t = reserving_at_10ms();
        for _ in 0..8 {
            t.lost(0, ms(0));
        }
        assert_eq!(t.window(), lease * 32, "doubled up to 32 lease durations");
        let mut handovers = takeover();
        handovers.not_free(0, true, ms(0));
        let mut t = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        t.follow(&handovers, ms(3_600_000));
        assert_eq!(
            t.least, lease,
            "held an hour: a lease duration, not 15 minutes"
        );
    }

    /// A lost reservation doubles the loser's window, not the crowd's: the crowd is what every
    /// waiting member measures alike, and what the take window is sized from.
    #[test]
    fn a_lost_race_widens_the_window_and_not_the_crowd() {
        let mut t = reserving_at_10ms();
        let start = t.window();
        t.lost(0, ms(0));
        assert_eq!((t.window(), t.crowd), (start * 2, start));
        hand_over(&mut t, 1, 100, 1);
        assert_eq!(
            (t.window(), t.crowd),
            (start * 2 * 17 / 16, start * 17 / 16),
            "a sample moves both"
        );
    }

    /// Most hand-overs of a cold start are reserved, so the take window hardly samples its
    /// own. It is at least as wide as the crowd the reservations measured: their crowd over
    /// their target is the members waiting, which a take spreads over its own target (on the
    /// same floor). That holds for a term (here a retry period, none seen to end); then the
    /// window is its own again.
    #[test]
    fn a_take_window_is_as_wide_as_the_crowd_the_reservations_measured() {
        let mut reserving = reserving_at_10ms();
        let mut t = takeover();
        let own = t.window();
        t.crowd_from(&reserving, ms(0));
        assert_eq!(
            t.window(),
            own,
            "no reservation measured yet: nothing known"
        );
        // One reservation seen 1 ms after its slot opened: a crowd of a retry period × 17/16
        // over a 75 ms target; a take aims at twice the 10 ms floor.
        hand_over(&mut reserving, 0, 0, 1);
        let crowd = Timing::DEFAULT.retry_period() * 17 / 16;
        t.crowd_from(&reserving, ms(1));
        assert_eq!(t.window(), crowd * 20 / 75);
        t.lost(1, ms(2));
        assert_eq!(
            t.window(),
            crowd * 20 / 75,
            "its own lost race doubles its own window, still the narrower"
        );
        // The crowd halves (a miss): so does what it asks.
        reserving.not_free(2, true, ms(10));
        reserving.free(2, ms(10));
        reserving.missed(2, ms(20));
        t.crowd_from(&reserving, ms(20));
        assert_eq!(t.window(), (crowd / 2 * 20 / 75).max(own * 2));
        // A retry period without a reservation measured: the window is its own again.
        t.crowd_from(&reserving, ms(2_021));
        assert_eq!(t.window(), own * 2);
    }

    /// A member that waits again after holding starts without the crowd it measured before:
    /// it watched no reservation meanwhile.
    #[test]
    fn forgetting_drops_the_crowd_measured() {
        let mut reserving = reserving_at_10ms();
        hand_over(&mut reserving, 0, 0, 1);
        let mut t = takeover();
        let own = t.window();
        t.crowd_from(&reserving, ms(1));
        assert!(t.window() > own);
        t.forget();
        assert_eq!(t.window(), own);
        reserving.forget();
        t.crowd_from(&reserving, ms(2));
        assert_eq!(t.window(), own, "nor does the reservation window count it");
    }

    /// A miss alone counts nobody: a lone member that saw a slot released before anyone
    /// reserved it keeps its own take window.
    #[test]
    fn a_miss_alone_measures_no_crowd() {
        let mut handovers = takeover();
        hand_over(&mut handovers, 0, 0, 10);
        handovers.free(0, ms(60_010));
        let mut reserving = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        reserving.follow(&handovers, ms(60_010));
        reserving.not_free(1, false, ms(60_000));
        reserving.free(1, ms(60_000));
        reserving.missed(1, ms(60_010));
        reserving.not_free(1, false, ms(60_010));
        assert_sizes_no_take_window(&reserving, ms(60_020));
    }

    /// A reservation window held up by the least its terms ask (an hour-long term: a lease
    /// duration) counts the terms, not the members: it sizes no take window.
    #[test]
    fn a_crowd_at_the_terms_least_sizes_no_take_window() {
        let mut handovers = takeover();
        hand_over(&mut handovers, 0, 0, 10);
        let mut reserving = Takeover::<4>::reserving(4, &Timing::DEFAULT);
        reserving.follow(&handovers, ms(3_600_000));
        hand_over(&mut reserving, 1, 3_600_000, 40);
        assert_eq!(reserving.crowd, Timing::DEFAULT.lease_duration());
        assert_sizes_no_take_window(&reserving, ms(3_600_040));
    }

    /// A fresh take window, told of `reserving`'s crowd at `now`, keeps its own width.
    fn assert_sizes_no_take_window(reserving: &Takeover<4>, now: Instant) {
        let mut t = takeover();
        let own = t.window();
        t.crowd_from(reserving, now);
        assert_eq!(t.window(), own);
    }

    /// Forgetting drops what was seen of each slot, not what was learnt from it.
    #[test]
    fn forgetting_drops_the_slots_seen_and_keeps_what_was_learnt() {
        let mut t = takeover();
        hand_over(&mut t, 0, 0, 10);
        t.free(0, ms(310));
        t.not_free(1, true, ms(0));
        t.free(2, ms(0));
        let (window, fastest, hold) = (t.window(), t.fastest, t.hold);
        t.forget();
        assert_eq!(t.longest_held(ms(1_000)), None);
        assert_eq!((t.window(), t.fastest, t.hold), (window, fastest, hold));
        // Slot 1, seen held before, taken now: no hand-over measured; slot 2, seen free
        // before, taken now: none either.
        t.free(1, ms(1_000));
        t.not_free(1, true, ms(1_001));
        t.not_free(2, true, ms(1_001));
        assert_eq!((t.window(), t.fastest, t.hold), (window, fastest, hold));
    }

    /// A slot that is neither free nor held (deleted, or not yet known again) runs no term.
    #[test]
    fn a_slot_neither_free_nor_held_runs_no_term() {
        let mut t = takeover();
        t.not_free(0, true, ms(0));
        t.not_free(0, false, ms(5_000));
        assert_eq!(t.longest_held(ms(9_000)), None);
        t.not_free(0, true, ms(9_000));
        assert_eq!(t.longest_held(ms(9_500)), Some(Duration::from_millis(500)));
    }

    /// The longest term running is counted from when this member first saw its slot held,
    /// whether or not it saw the term begin, until it sees the slot free.
    #[test]
    fn the_longest_held_counts_from_a_slot_first_seen_held_until_it_is_free() {
        let mut t = takeover();
        assert_eq!(t.longest_held(ms(0)), None);
        t.not_free(0, true, ms(1_000));
        t.not_free(0, true, ms(5_000));
        t.not_free(1, true, ms(3_000));
        t.not_free(2, false, ms(500));
        assert_eq!(t.longest_held(ms(9_000)), Some(Duration::from_secs(8)));
        t.free(0, ms(9_000));
        assert_eq!(t.longest_held(ms(9_000)), Some(Duration::from_secs(6)));
        t.not_free(0, true, ms(9_500));
        t.free(1, ms(10_000));
        assert_eq!(t.longest_held(ms(10_000)), Some(Duration::from_millis(500)));
    }

    /// The hold measured is a term from its take seen to its release seen, averaged: the cap
    /// of the reservations' target.
    #[test]
    fn the_hold_follows_each_term_by_an_eighth() {
        let mut t = takeover();
        assert_eq!(t.hold, None);
        hand_over(&mut t, 0, 0, 10);
        t.free(0, ms(310));
        assert_eq!(t.hold, Some(Duration::from_millis(300)));
        t.not_free(0, true, ms(320));
        t.free(0, ms(420));
        assert_eq!(t.hold, Some(Duration::from_millis(275)));
        t.not_free(0, true, ms(430));
        t.free(0, ms(1_230));
        assert_eq!(
            t.hold,
            Some(Duration::from_micros(340_625)),
            "275 + (800 − 275) ⁄ 8"
        );
    }
}
