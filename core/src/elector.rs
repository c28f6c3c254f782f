//! Leader election over one Lease.

use crate::api::{Request, Response, WatchEvent};
use crate::event::{Event, SlotEvent};
use crate::jitter::Jitter;
use crate::machine::{Machine, Stats};
use crate::record::{Holder, Identity, Lease, LeaseName, MicroTime};
use crate::slot::{Env, EventQueue, Intent, LeaseSlot};
use crate::timing::Timing;
use embassy_time::Instant;

/// What an [`Elector`] needs to know before it starts.
#[derive(Clone, Debug)]
pub struct ElectorConfig {
    /// The Lease to contend for.
    pub lease: LeaseName,
    /// This candidate's `holderIdentity`; unique among candidates.
    pub identity: Identity,
    /// Lease duration, renew deadline, retry period (already validated).
    pub timing: Timing,
    /// Whether the driver can watch the lease. With a watch, a follower sends no periodic reads:
    /// it learns of changes from the stream and wakes at the computed expiry. Without one, or
    /// while the stream is down, it polls every `retry × (1 + U[0,1) × 1.2)` as client-go does.
    pub watch: bool,
}

/// Leader election for one Lease, compatible with client-go candidates on the same Lease.
///
/// Driven through [`Machine`], whose documentation is the whole contract; the getters here say
/// what it decided. [`Machine::close`] steps down at once, then releases the lease if the server
/// still names this candidate (re-read first, so a newer holder is never blanked), and ends with
/// [`Event::Released`]. [`Machine::rejoin`] campaigns again a retry period later.
///
/// # Safety argument
///
/// A leader counts its term from the instant it *sent* its last successful renew and stops at
/// `sent + renew_deadline`. A follower may take over only `leaseDurationSeconds` after it *saw*
/// the record last change, which is after the server stored that renew, which is after it was
/// sent. With `renew_deadline < lease_duration`, the leader has stopped before any follower can
/// start, provided clock rates differ by less than
/// `(lease − renew) / (lease + renew)` (20 % for 15 s / 10 s).
#[derive(Clone, Debug)]
pub struct Elector {
    identity: Identity,
    timing: Timing,
    jitter: Jitter,
    events: EventQueue<SlotEvent>,
    stats: Stats,
    slot: LeaseSlot,
}

impl Elector {
    /// A candidate that starts campaigning at once. `seed` fixes its jitter, making runs
    /// reproducible; give each candidate a different one.
    pub fn new(config: ElectorConfig, seed: u64) -> Self {
        Self {
            slot: LeaseSlot::new(0, config.lease, Intent::Campaign, config.watch),
            identity: config.identity,
            timing: config.timing,
            jitter: Jitter::new(seed),
            events: EventQueue::new(),
            stats: Stats::default(),
        }
    }

    fn step<T>(&mut self, f: impl FnOnce(&mut LeaseSlot, &mut Env<'_>) -> T) -> T {
        let mut env = Env {
            identity: &self.identity,
            timing: &self.timing,
            jitter: &mut self.jitter,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        f(&mut self.slot, &mut env)
    }

    /// Whether this candidate leads at `now`: it won the lease and `now` is before its deadline.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.slot.is_leader(now)
    }

    /// The holder the record named when last seen; `None` before the first read or when the
    /// lease does not exist.
    pub fn holder(&self) -> Option<&Holder> {
        self.slot.holder()
    }

    /// The lease as last seen.
    pub fn lease(&self) -> Option<&Lease> {
        self.slot.lease()
    }

    /// While leading: the fencing epoch (`leaseTransitions` of the record this candidate wrote).
    pub fn epoch(&self) -> Option<u32> {
        self.slot.leadership().map(|l| l.epoch)
    }

    /// While leading: the instant at which leadership ends without a successful renew.
    pub fn deadline(&self) -> Option<Instant> {
        self.slot.leadership().map(|l| l.deadline)
    }

    /// While leading: when this term began.
    pub fn leading_since(&self) -> Option<Instant> {
        self.slot.leadership().map(|l| l.since)
    }

    /// The candidate's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The lease's name.
    pub fn lease_name(&self) -> &LeaseName {
        self.slot.name()
    }

    /// The timing in force.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }
}

/// Slot 0 is the elector's one lease; inputs for any other slot are ignored.
impl Machine for Elector {
    type Event = Event;

    fn is_closed(&self) -> bool {
        self.slot.is_released()
    }

    fn stats(&self) -> Stats {
        Stats {
            events_dropped: self.events.dropped_total(),
            ..self.stats
        }
    }

    fn handle_answer(&mut self, slot: u16, answer: Response, now: Instant) {
        if slot != 0 {
            return;
        }
        if self.slot.has_request_in_flight() {
            self.stats.answered(&answer);
        }
        self.step(|s, env| s.handle_answer(answer, now, env));
    }

    fn handle_watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        if slot == 0 {
            self.step(|s, env| s.handle_watch_event(event, now, env));
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.step(|slot, env| slot.expire(now, env));
    }

    fn close(&mut self, now: Instant) {
        self.step(|slot, env| slot.set_intent(Intent::Release, now, env));
    }

    fn rejoin(&mut self, now: Instant) {
        if self.is_closed() {
            let at = now.saturating_add(self.timing.retry_period());
            self.slot.restart(Intent::Campaign, at);
        }
    }

    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        let request = self.step(|slot, env| slot.poll_request(now, wall, env))?;
        self.stats.sent(&request);
        Some(request)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.slot.poll_timeout(&self.timing)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop().map(|e| e.event)
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::*;
    use crate::{ApiError, Event, Machine, Operation};

    #[test]
    fn successful_create_becomes_leader_with_epoch_zero() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let op = poll(&mut e, ms(0)).unwrap();
        e.handle_answer(0, Ok(stored(&op, 1)), ms(10));
        assert!(e.is_leader(ms(10)));
        assert_eq!(e.epoch(), Some(0));
        let evs = events(&mut e);
        assert!(
            evs.contains(&Event::BecameLeader {
                epoch: 0,
                contended: crate::Duration::from_millis(10)
            }),
            "{evs:?}"
        );
    }

    /// The fencing token: downstream systems reject work stamped with an older epoch, so each
    /// term must report its own `leaseTransitions`, keep it across renews, and report nothing
    /// once the term is over.
    #[test]
    fn the_epoch_is_the_terms_lease_transitions_and_none_out_of_a_term() {
        let mut e = elector("a", false);
        assert_eq!((e.epoch(), e.leading_since()), (None, None));
        poll(&mut e, ms(0));
        let held = lease(5, Some("b"), 6);
        e.handle_answer(0, Ok(held.clone()), ms(0));
        let (at, take) = next_write(&mut e, 0, &held);
        e.handle_answer(0, Ok(stored(&take, 6)), ms(at + 1));
        assert_eq!(e.epoch(), Some(7), "a takeover is a new term");
        assert_eq!(e.leading_since(), Some(ms(at + 1)));
        let renew = poll(&mut e, ms(at + 2_001)).unwrap();
        e.handle_answer(0, Ok(stored(&renew, 7)), ms(at + 2_002));
        assert_eq!(e.epoch(), Some(7), "a renew keeps the term's epoch");
        assert_eq!(e.leading_since(), Some(ms(at + 1)), "and its start");
        let lost = poll(&mut e, ms(at + 4_002)).unwrap();
        assert!(matches!(lost, Operation::Update { .. }));
        e.handle_answer(0, Ok(lease(9, Some("c"), 8)), ms(at + 4_003));
        assert_eq!((e.epoch(), e.deadline()), (None, None));
    }

    #[test]
    fn the_getters_tell_what_the_elector_was_built_with_and_last_saw() {
        let mut e = elector("a", false);
        assert_eq!(e.identity().as_str(), "a");
        assert_eq!(e.lease_name().as_str(), "demo");
        assert_eq!(e.timing(), &crate::Timing::DEFAULT);
        assert_eq!(e.lease(), None);
        poll(&mut e, ms(0));
        let seen = lease(5, Some("b"), 2);
        e.handle_answer(0, Ok(seen.clone()), ms(0));
        assert_eq!(e.lease(), Some(&seen));
        assert_eq!(e.holder(), Some(&crate::Holder::Named(id("b"))));
    }

    /// A driver that falls behind is told how many events it lost, before the ones it still
    /// gets, and the count adds up in the stats.
    #[test]
    fn events_not_drained_are_reported_dropped_first_and_counted() {
        let mut e = leader("a", false);
        for i in 1..=10 {
            let renew = poll(&mut e, ms(i * 2_000)).unwrap();
            e.handle_answer(0, Ok(stored(&renew, i + 1)), ms(i * 2_000));
        }
        assert_eq!(e.stats().events_dropped, 2, "ten renews for eight places");
        assert_eq!(e.poll_event(), Some(Event::EventsDropped { count: 2 }));
        assert_eq!(
            e.poll_event(),
            Some(Event::Renewed {
                deadline: ms(16_000)
            }),
            "the third renew is the oldest kept"
        );
        assert_eq!(events(&mut e).len(), 7);
        assert_eq!(e.stats().events_dropped, 2);
    }

    #[test]
    fn inputs_for_another_slot_are_ignored() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(1, Err(ApiError::NotFound), ms(0));
        assert_eq!(poll(&mut e, ms(0)), None, "the read is still outstanding");
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        assert_eq!(poll(&mut e, ms(0)), None, "watch opened");
        e.handle_watch_event(1, crate::WatchEvent::Deleted, ms(1));
        assert!(e.lease().is_some(), "a deletion of slot 1 is not ours");
    }

    #[test]
    fn rejoin_campaigns_again_a_retry_period_after_the_close_as_a_new_candidate() {
        let mut e = leader("a", false);
        e.rejoin(ms(100));
        assert!(
            !e.is_closed(),
            "rejoin is ignored before the close finished"
        );
        e.close(ms(100));
        assert!(matches!(
            poll(&mut e, ms(100)),
            Some(Operation::Update { .. })
        ));
        e.handle_answer(0, Ok(lease(2, None, 0)), ms(102));
        assert!(e.is_closed());
        e.rejoin(ms(1_000));
        assert!(!e.is_closed());
        assert_eq!(
            e.poll_timeout(),
            Some(ms(3_000)),
            "one retry period from the rejoin"
        );
        assert_eq!(poll(&mut e, ms(2_999)), None);
        assert_eq!(
            poll(&mut e, ms(3_000)),
            Some(Operation::Get),
            "a fresh read first"
        );
        e.handle_answer(0, Ok(lease(3, None, 0)), ms(3_001));
        let Some(Operation::Update { record, .. }) = poll(&mut e, ms(3_001)) else {
            panic!("a free lease is taken again")
        };
        assert!(record.holder.is(&id("a")));
    }

    #[test]
    fn rejoin_keeps_watching_if_and_only_if_the_elector_watched() {
        for watch in [true, false] {
            let mut e = elector("a", watch);
            e.close(ms(0));
            assert_eq!(e.poll_request(ms(0), WALL), None, "nothing to release");
            assert!(e.is_closed());
            e.rejoin(ms(0));
            let ops = |e: &mut crate::Elector, now| {
                core::iter::from_fn(|| e.poll_request(ms(now), WALL).map(|r| r.op))
                    .collect::<heapless::Vec<Operation, 4>>()
            };
            assert_eq!(ops(&mut e, 2_000).as_slice(), &[Operation::Get]);
            e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(2_000));
            let watched = ops(&mut e, 2_000)
                .iter()
                .any(|op| matches!(op, Operation::Watch { .. }));
            assert_eq!(watched, watch);
        }
    }

    #[test]
    fn stats_count_requests_conflicts_acquisitions_takeovers_and_slow_path_reads() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        let held = lease(5, Some("b"), 2);
        e.handle_answer(0, Ok(held.clone()), ms(0));
        let (at, take) = next_write(&mut e, 0, &held);
        e.handle_answer(0, Ok(stored(&take, 6)), ms(at));
        assert!(e.is_leader(ms(at)));
        // A renew meets a conflict: the leader must read before it can renew again.
        // One renew goes through; the next meets a conflict: the leader must read before it
        // can renew again.
        let renew = poll(&mut e, ms(at + 2_000)).unwrap();
        e.handle_answer(0, Ok(stored(&renew, 7)), ms(at + 2_000));
        let renew = poll(&mut e, ms(at + 4_000)).unwrap();
        assert!(matches!(renew, Operation::Update { .. }));
        e.handle_answer(0, Err(ApiError::Conflict), ms(at + 4_001));
        assert_eq!(poll(&mut e, ms(at + 4_001)), Some(Operation::Get));
        let s = e.stats();
        assert_eq!((s.gets, s.creates, s.updates, s.watches), (2, 0, 3, 1));
        assert_eq!(s.requests(crate::Verb::Update), 3);
        assert_eq!((s.conflicts, s.acquisitions, s.takeovers), (1, 1, 1));
        assert_eq!(s.slow_path_reads, 1);
        assert_eq!(s.events_dropped, 0);
    }

    #[test]
    fn a_lease_created_or_taken_free_is_no_takeover() {
        let mut free = elector("a", false);
        poll(&mut free, ms(0));
        free.handle_answer(0, Ok(lease(5, None, 2)), ms(0));
        let take = poll(&mut free, ms(0)).unwrap();
        free.handle_answer(0, Ok(stored(&take, 6)), ms(0));
        assert!(free.is_leader(ms(0)));
        assert_eq!((free.stats().acquisitions, free.stats().takeovers), (1, 0));
        let mut e = leader("a", false);
        let s = e.stats();
        assert_eq!((s.acquisitions, s.takeovers, s.slow_path_reads), (1, 0, 0));
        // A stray answer (nothing outstanding) counts nothing.
        e.handle_answer(0, Err(ApiError::Conflict), ms(1));
        assert_eq!(e.stats().conflicts, 0);
    }
}
