//! The fence: the rule that stops a leader's work by its deadline, whatever happens to the
//! process that holds the lease.
//!
//! The machines decide who leads; the work (a child command, a cache build) runs beside them and
//! must stop by the leader's deadline even when the process running the machine is paused,
//! crashed or killed. A [`Fence`] is the sans-IO decision of *when* to stop it. The agent runs
//! one in a separate small process that owns the work's process group; the simulation runs the
//! same code beside each simulated agent, so what it proves is what the binary does.
//!
//! # Contract
//!
//! - Inputs, each with the fence's own `now` (the same monotonic clock as the machine's; on Linux
//!   `CLOCK_BOOTTIME`, which counts pauses and suspends):
//!   - [`handle_valid_until`](Fence::handle_valid_until) at every successful renew: the leader's
//!     deadline (send of the renew + renew deadline). It only ever extends.
//!   - [`handle_stop`](Fence::handle_stop): the holder stepped down or is shutting down.
//!   - [`handle_holder_gone`](Fence::handle_holder_gone): the channel from the holder closed,
//!     because it died. Nothing more will extend the validity.
//!   - [`handle_work_exited`](Fence::handle_work_exited): the work's main process exited; what is
//!     left of its group is stopped too.
//!   - [`handle_work_gone`](Fence::handle_work_gone): nothing of the work is left.
//! - Outputs: [`may_start`](Fence::may_start) before starting the work, then
//!   [`poll_signal`](Fence::poll_signal) after every input and at
//!   [`poll_timeout`](Fence::poll_timeout).
//!
//! # The schedule
//!
//! With `valid_until` the leader's deadline and `grace` the stop grace period, the work gets
//! [`Signal::Terminate`] at `valid_until − grace` and [`Signal::Kill`] at `valid_until`, so it
//! is gone when the leader's term ends and the margin `lease − renew deadline` is left whole
//! for clock drift. A stop asked for earlier terminates at once and kills at
//! `min(now + grace, valid_until)`. A holder that is gone terminates at once and kills at
//! `min(now + ORPHAN_GRACE, valid_until)`.

use embassy_time::{Duration, Instant};

/// How long the work of a holder that died may take to stop after SIGTERM: short, because
/// nothing renews its validity any more and a crash is not a hand-over.
pub const ORPHAN_GRACE: Duration = Duration::from_millis(500);

/// A signal the fence wants delivered to the whole of the work (its process group, and anything
/// that left it).
///
/// Exhaustive on purpose: whatever delivers signals must deliver each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ask the work to stop (SIGTERM).
    Terminate,
    /// Stop it now (SIGKILL).
    Kill,
}

/// Why the work was stopped, for the holder's logs and its decision to start it again.
///
/// Exhaustive on purpose: the fence's wire protocol encodes every cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// Its validity ran out: no renew extended it in time.
    Expired,
    /// The holder asked (it stepped down, or is shutting down).
    Stopped,
    /// The holder died (its channel closed).
    HolderGone,
    /// The work's main process exited on its own; the rest of its group was stopped.
    Exited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Running; terminated at `valid_until − grace` unless extended.
    Running,
    /// Terminate sent (or due at once); kill at `kill_at`.
    Stopping {
        cause: StopCause,
        terminated: bool,
        kill_at: Instant,
    },
    /// Kill sent; waiting for the work to be gone.
    Killed { cause: StopCause },
    /// Nothing of the work is left.
    Gone { cause: Option<StopCause> },
}

/// When a leader's work must stop. See the [module documentation](self) for the contract.
#[derive(Clone, Copy, Debug)]
pub struct Fence {
    grace: Duration,
    valid_until: Instant,
    phase: Phase,
}

impl Fence {
    /// A fence for work valid until `valid_until`, given `grace` between SIGTERM and SIGKILL.
    pub fn new(valid_until: Instant, grace: Duration) -> Self {
        Self {
            grace,
            valid_until,
            phase: Phase::Running,
        }
    }

    /// Whether the work may start at `now`: it is not yet due to be terminated. The holder checks
    /// its own leadership first; this is the fence's independent check of the same instant.
    pub fn may_start(&self, now: Instant) -> bool {
        self.phase == Phase::Running && now < self.terminate_at()
    }

    /// A renew succeeded: the work may run until `valid_until`. An earlier instant than the one
    /// in force, or one arriving after the stop began, changes nothing: a stop is never undone.
    pub fn handle_valid_until(&mut self, valid_until: Instant) {
        if self.phase == Phase::Running {
            self.valid_until = self.valid_until.max(valid_until);
        }
    }

    /// The holder stepped down or is shutting down: stop the work within the grace period.
    pub fn handle_stop(&mut self, now: Instant) {
        self.begin_stop(StopCause::Stopped, now, self.grace);
    }

    /// The holder's channel closed: it died, so nothing extends the validity any more.
    pub fn handle_holder_gone(&mut self, now: Instant) {
        self.begin_stop(StopCause::HolderGone, now, ORPHAN_GRACE);
    }

    /// The work's main process exited; the rest of its group is stopped as after a stop.
    pub fn handle_work_exited(&mut self, now: Instant) {
        self.begin_stop(StopCause::Exited, now, self.grace);
    }

    /// Nothing of the work is left (every process of it has been reaped).
    pub fn handle_work_gone(&mut self) {
        let cause = match self.phase {
            Phase::Running => None,
            Phase::Stopping { cause, .. } | Phase::Killed { cause } => Some(cause),
            Phase::Gone { cause } => cause,
        };
        self.phase = Phase::Gone { cause };
    }

    fn begin_stop(&mut self, cause: StopCause, now: Instant, grace: Duration) {
        let kill_at = now.saturating_add(grace).min(self.valid_until);
        match &mut self.phase {
            Phase::Running => {
                self.phase = Phase::Stopping {
                    cause,
                    terminated: false,
                    kill_at,
                }
            }
            // A later, more urgent reason may bring the kill forward, never push it back.
            Phase::Stopping { kill_at: at, .. } => *at = (*at).min(kill_at),
            Phase::Killed { .. } | Phase::Gone { .. } => {}
        }
    }

    fn terminate_at(&self) -> Instant {
        Instant::from_ticks(
            self.valid_until
                .as_ticks()
                .saturating_sub(self.grace.as_ticks()),
        )
    }

    /// The signal to deliver at `now`, if one is due. Call it until it returns `None`.
    #[must_use]
    pub fn poll_signal(&mut self, now: Instant) -> Option<Signal> {
        if self.phase == Phase::Running && now >= self.terminate_at() {
            self.phase = Phase::Stopping {
                cause: StopCause::Expired,
                terminated: false,
                kill_at: self.valid_until,
            };
        }
        match &mut self.phase {
            Phase::Stopping { cause, kill_at, .. } if now >= *kill_at => {
                let cause = *cause;
                self.phase = Phase::Killed { cause };
                Some(Signal::Kill)
            }
            Phase::Stopping { terminated, .. } if !*terminated => {
                *terminated = true;
                Some(Signal::Terminate)
            }
            _ => None,
        }
    }

    /// When to call [`poll_signal`](Self::poll_signal) next; `None` once the kill was sent.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => Some(self.terminate_at()),
            Phase::Stopping { kill_at, .. } => Some(kill_at),
            Phase::Killed { .. } | Phase::Gone { .. } => None,
        }
    }

    /// The instant the work must be gone by, as it now stands.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Why the work is being (or was) stopped; `None` while it runs.
    pub fn stop_cause(&self) -> Option<StopCause> {
        match self.phase {
            Phase::Running => None,
            Phase::Stopping { cause, .. } | Phase::Killed { cause } => Some(cause),
            Phase::Gone { cause } => cause,
        }
    }

    /// Whether nothing of the work is left.
    pub fn is_gone(&self) -> bool {
        matches!(self.phase, Phase::Gone { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn drain(f: &mut Fence, now: Instant) -> heapless::Vec<Signal, 4> {
        let mut out = heapless::Vec::new();
        while let Some(sig) = f.poll_signal(now) {
            out.push(sig).unwrap();
        }
        out
    }

    #[test]
    fn terminates_grace_before_the_deadline_and_kills_at_it() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        assert!(f.may_start(s(0)));
        assert!(drain(&mut f, s(6)).is_empty());
        assert_eq!(f.poll_timeout(), Some(s(7)));
        assert_eq!(drain(&mut f, s(7)).as_slice(), &[Signal::Terminate]);
        assert_eq!(f.poll_timeout(), Some(s(10)));
        assert!(drain(&mut f, s(9)).is_empty());
        assert_eq!(drain(&mut f, s(10)).as_slice(), &[Signal::Kill]);
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(f.stop_cause(), Some(StopCause::Expired));
    }

    #[test]
    fn a_renew_moves_the_schedule_and_never_shortens_it() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        f.handle_valid_until(s(12));
        f.handle_valid_until(s(11));
        assert_eq!(f.valid_until(), s(12));
        assert!(drain(&mut f, s(8)).is_empty());
        assert_eq!(f.poll_timeout(), Some(s(9)));
    }

    #[test]
    fn a_renew_after_the_stop_began_does_not_undo_it() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        assert_eq!(drain(&mut f, s(7)).as_slice(), &[Signal::Terminate]);
        f.handle_valid_until(s(20));
        assert_eq!(drain(&mut f, s(10)).as_slice(), &[Signal::Kill]);
    }

    #[test]
    fn a_paused_fence_sends_both_signals_at_once_when_it_wakes_late() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        assert_eq!(
            drain(&mut f, s(30)).as_slice(),
            &[Signal::Kill],
            "past the deadline there is no grace left: kill"
        );
    }

    #[test]
    fn a_stop_terminates_now_and_kills_within_grace_or_validity() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        f.handle_stop(s(1));
        assert_eq!(drain(&mut f, s(1)).as_slice(), &[Signal::Terminate]);
        assert_eq!(f.poll_timeout(), Some(s(4)));
        let mut late = Fence::new(s(10), Duration::from_secs(3));
        late.handle_stop(s(8));
        assert_eq!(drain(&mut late, s(8)).as_slice(), &[Signal::Terminate]);
        assert_eq!(late.poll_timeout(), Some(s(10)));
    }

    #[test]
    fn a_dead_holder_gets_the_short_orphan_grace() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        f.handle_holder_gone(s(1));
        assert_eq!(drain(&mut f, s(1)).as_slice(), &[Signal::Terminate]);
        assert_eq!(f.poll_timeout(), Some(s(1).saturating_add(ORPHAN_GRACE)));
        assert_eq!(f.stop_cause(), Some(StopCause::HolderGone));
    }

    #[test]
    fn a_more_urgent_stop_brings_the_kill_forward() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        f.handle_stop(s(1));
        f.handle_holder_gone(s(2));
        assert_eq!(f.poll_timeout(), Some(s(2).saturating_add(ORPHAN_GRACE)));
        f.handle_stop(s(2));
        assert_eq!(f.poll_timeout(), Some(s(2).saturating_add(ORPHAN_GRACE)));
    }

    #[test]
    fn the_work_may_not_start_inside_the_stop_window() {
        let f = Fence::new(s(10), Duration::from_secs(3));
        assert!(f.may_start(s(6)));
        assert!(!f.may_start(s(7)));
        let mut stopped = Fence::new(s(10), Duration::from_secs(3));
        stopped.handle_stop(s(0));
        assert!(!stopped.may_start(s(0)));
    }

    #[test]
    fn an_exited_main_process_gets_the_rest_of_its_group_stopped() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        f.handle_work_exited(s(2));
        assert_eq!(drain(&mut f, s(2)).as_slice(), &[Signal::Terminate]);
        assert!(!f.is_gone(), "the group is still being stopped");
        f.handle_work_gone();
        assert!(f.is_gone());
        assert_eq!(f.stop_cause(), Some(StopCause::Exited));
        assert!(drain(&mut f, s(20)).is_empty());
    }

    #[test]
    fn work_that_ends_on_its_own_is_gone_without_a_stop_cause() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        assert!(!f.is_gone());
        assert_eq!(f.stop_cause(), None, "running");
        f.handle_work_gone();
        assert!(f.is_gone());
        assert_eq!(f.stop_cause(), None);
        assert_eq!(f.poll_timeout(), None);
        assert!(drain(&mut f, s(20)).is_empty(), "nothing left to signal");
    }

    #[test]
    fn nothing_stops_work_that_is_gone() {
        let mut f = Fence::new(s(10), Duration::from_secs(3));
        f.handle_stop(s(1));
        f.handle_work_gone();
        f.handle_work_gone();
        f.handle_holder_gone(s(2));
        assert!(f.is_gone());
        assert_eq!(f.stop_cause(), Some(StopCause::Stopped));
        assert_eq!(f.poll_timeout(), None);
    }

    #[test]
    fn a_grace_longer_than_the_validity_saturates_at_time_zero() {
        let mut f = Fence::new(s(1), Duration::from_secs(3));
        assert!(!f.may_start(Instant::from_ticks(0)));
        assert_eq!(
            drain(&mut f, Instant::from_ticks(0)).as_slice(),
            &[Signal::Terminate]
        );
    }
}
