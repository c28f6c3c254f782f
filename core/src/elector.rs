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
        self.step(|s, env| s.handle_response(answer, now, env));
    }

    fn handle_watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        if slot == 0 {
            self.step(|s, env| s.handle_watch(event, now, env));
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
    use crate::{ApiError, Duration, Event, Holder, LossReason, Machine, Operation, WatchEvent};

    fn holder_of(op: &Operation) -> &Holder {
        match op {
            Operation::Create(r) | Operation::Update { record: r, .. } => &r.holder,
            other => panic!("not a write: {other:?}"),
        }
    }

    #[test]
    fn reads_first_then_creates_on_not_found() {
        let mut e = elector("a", false);
        assert_eq!(poll(&mut e, ms(0)), Some(Operation::Get));
        e.handle_answer(0, Err(ApiError::NotFound), ms(5));
        let op = poll(&mut e, ms(5)).unwrap();
        let Operation::Create(record) = &op else {
            panic!("{op:?}")
        };
        assert!(record.holder.is(&id("a")));
        assert_eq!(record.lease_transitions, Some(0));
        assert_eq!(record.lease_duration, Some(Duration::from_secs(15)));
        assert_eq!(record.acquire_time, Some(wall_at(ms(5))));
    }

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
        assert!(evs.contains(&Event::BecameLeader { epoch: 0 }), "{evs:?}");
    }

    #[test]
    fn leader_renews_with_cached_resource_version_every_retry_period() {
        let mut e = leader("a", false);
        assert_eq!(poll(&mut e, ms(1_999)), None);
        assert_eq!(e.poll_timeout(), Some(ms(2_000)));
        let op = poll(&mut e, ms(2_000)).unwrap();
        let Operation::Update {
            resource_version,
            record,
        } = &op
        else {
            panic!("{op:?}")
        };
        assert_eq!(resource_version, &rv(1));
        assert!(record.holder.is(&id("a")));
    }

    #[test]
    fn renew_keeps_acquire_time_and_transitions() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(3, None, 4)), ms(0));
        let take = poll(&mut e, ms(0)).unwrap();
        let mut stored_take = stored(&take, 4);
        stored_take.record.acquire_time = Some(crate::MicroTime::from_unix_micros(42));
        e.handle_answer(0, Ok(stored_take), ms(0));
        let Some(Operation::Update { record, .. }) = poll(&mut e, ms(2_000)) else {
            panic!()
        };
        assert_eq!(record.lease_transitions, Some(5));
        assert_eq!(
            record.acquire_time,
            Some(crate::MicroTime::from_unix_micros(42))
        );
        assert_eq!(record.renew_time, Some(wall_at(ms(2_000))));
    }

    #[test]
    fn a_record_naming_our_identity_from_another_process_is_waited_out_as_a_new_term() {
        // A restarted Pod with the same name, or a second agent with the same node name: the
        // earlier holder's work may still run, so this process waits like anyone else.
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        let mut earlier = lease(3, Some("a"), 4);
        earlier.record.acquire_time = Some(crate::MicroTime::from_unix_micros(42));
        e.handle_answer(0, Ok(earlier.clone()), ms(0));
        let (at, op) = next_write(&mut e, 0, &earlier);
        assert_eq!(at, 15_000, "taken only once the record's lease has run out");
        let Operation::Update { record, .. } = op else {
            panic!("{op:?}")
        };
        assert_eq!(record.lease_transitions, Some(5), "a new term, a new epoch");
        assert_eq!(record.acquire_time, Some(wall_at(ms(15_000))));
    }

    #[test]
    fn a_leader_that_sees_its_identity_written_by_another_process_steps_down() {
        let mut e = leader("a", true);
        // Version 2 names "a" but this process wrote version 1: a duplicate identity wrote it.
        e.handle_watch_event(0, WatchEvent::Changed(lease(2, Some("a"), 1)), ms(500));
        assert!(!e.is_leader(ms(500)));
        assert!(events(&mut e).contains(&Event::LostLeadership {
            reason: LossReason::HeldByOther
        }));
    }

    #[test]
    fn the_watch_event_of_our_own_renew_before_its_answer_keeps_the_lead() {
        let mut e = leader("a", true);
        let op = poll(&mut e, ms(2_000)).unwrap();
        let ours = stored(&op, 2);
        e.handle_watch_event(0, WatchEvent::Changed(ours.clone()), ms(2_001));
        assert!(e.is_leader(ms(2_001)));
        e.handle_answer(0, Ok(ours.clone()), ms(2_002));
        e.handle_watch_event(0, WatchEvent::Changed(ours), ms(2_003));
        assert!(e.is_leader(ms(2_003)));
        assert_eq!(e.deadline(), Some(ms(12_000)));
    }

    #[test]
    fn a_renew_the_server_did_not_apply_extends_nothing() {
        // An unchanged spec is not a write: the server answers with the same resourceVersion.
        let mut e = leader("a", false);
        let op = poll(&mut e, ms(2_000)).unwrap();
        let mut unchanged = stored(&op, 1);
        e.handle_answer(0, Ok(unchanged.clone()), ms(2_001));
        assert_eq!(
            e.deadline(),
            Some(ms(10_000)),
            "still the first term's deadline"
        );
        let op = poll(&mut e, ms(4_001)).unwrap();
        e.handle_answer(0, Ok(stored(&op, 2)), ms(4_002));
        assert_eq!(e.deadline(), Some(ms(14_001)), "an applied renew extends");
        // A new version whose renewTime went back (a wall clock stepped back) is not this
        // renew applied: the version is not ours, so it is someone else's and the leader stops.
        let op = poll(&mut e, ms(6_002)).unwrap();
        assert!(matches!(op, Operation::Update { .. }));
        unchanged.resource_version = rv(3);
        e.handle_answer(0, Ok(unchanged), ms(6_003));
        assert!(!e.is_leader(ms(6_003)));
    }

    #[test]
    fn every_renew_reports_the_new_deadline() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let op = poll(&mut e, ms(0)).unwrap();
        e.handle_answer(0, Ok(stored(&op, 1)), ms(3));
        assert_eq!(
            events(&mut e).as_slice(),
            &[
                Event::LeaderChanged {
                    holder: Holder::Named(id("a"))
                },
                Event::BecameLeader { epoch: 0 },
                Event::Renewed {
                    deadline: ms(10_000)
                }
            ]
        );
        let op = poll(&mut e, ms(2_003)).unwrap();
        e.handle_answer(0, Ok(stored(&op, 2)), ms(2_010));
        assert_eq!(
            events(&mut e).as_slice(),
            &[Event::Renewed {
                deadline: ms(12_003)
            }]
        );
    }

    #[test]
    fn empty_holder_is_taken_at_once() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 2)), ms(0));
        let op = poll(&mut e, ms(0)).unwrap();
        assert!(holder_of(&op).is(&id("a")));
    }

    #[test]
    fn follower_waits_lease_duration_from_observed_change_before_taking_over() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(1_000));
        // Polls do not take over before 1 s + 15 s; the same record re-read changes nothing.
        let mut now = 1_000;
        while now < 16_000 {
            if let Some(op) = poll(&mut e, ms(now)) {
                assert_eq!(op, Operation::Get, "took over early at {now} ms");
                e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(now));
            }
            now += 100;
        }
        let op = poll(&mut e, ms(16_000)).unwrap();
        assert!(holder_of(&op).is(&id("a")));
    }

    #[test]
    fn a_changed_record_restarts_the_expiry_clock() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        assert_eq!(poll(&mut e, ms(0)), None);
        assert_eq!(e.poll_timeout(), Some(ms(15_000)));
        e.handle_watch_event(0, WatchEvent::Changed(lease(6, Some("b"), 2)), ms(10_000));
        assert_eq!(e.poll_timeout(), Some(ms(25_000)));
    }

    #[test]
    fn takeover_increments_transitions_and_sets_acquire_time() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        let mut old = lease(5, Some("b"), 7);
        old.record.acquire_time = Some(crate::MicroTime::from_unix_micros(1));
        e.handle_answer(0, Ok(old.clone()), ms(0));
        let (at, op) = next_write(&mut e, 0, &old);
        assert_eq!(at, 15_000);
        let Operation::Update {
            record,
            resource_version,
        } = op
        else {
            panic!()
        };
        assert_eq!(resource_version, rv(5));
        assert_eq!(record.lease_transitions, Some(8));
        assert_eq!(record.acquire_time, Some(wall_at(ms(15_000))));
    }

    #[test]
    fn conflict_on_write_rereads_before_anything_else() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(0));
        poll(&mut e, ms(0)).unwrap();
        e.handle_answer(0, Err(ApiError::Conflict), ms(1));
        assert_eq!(poll(&mut e, ms(1)), Some(Operation::Get));
        assert!(!e.is_leader(ms(1)));
    }

    #[test]
    fn already_exists_on_create_rereads() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::NotFound), ms(0));
        poll(&mut e, ms(0)).unwrap();
        e.handle_answer(0, Err(ApiError::AlreadyExists), ms(1));
        assert_eq!(poll(&mut e, ms(1)), Some(Operation::Get));
    }

    #[test]
    fn deadline_counts_from_the_send_not_the_answer() {
        let mut e = leader("a", false);
        let op = poll(&mut e, ms(2_000)).unwrap();
        // The answer takes 3 s; the term still runs from the send.
        e.handle_answer(0, Ok(stored(&op, 2)), ms(5_000));
        assert_eq!(e.deadline(), Some(ms(12_000)));
    }

    #[test]
    fn leadership_ends_at_renew_deadline_without_a_successful_renew() {
        let mut e = leader("a", false);
        let mut now = 2_000;
        while now < 10_000 {
            if poll(&mut e, ms(now)).is_some() {
                e.handle_answer(0, Err(ApiError::Server { status: 503 }), ms(now));
            }
            assert!(e.is_leader(ms(now)), "lost early at {now}");
            now += 50;
        }
        assert!(!e.is_leader(ms(10_000)));
        e.handle_timeout(ms(10_000));
        let evs = events(&mut e);
        assert!(evs.contains(&Event::LostLeadership {
            reason: LossReason::RenewDeadlineExceeded
        }));
    }

    #[test]
    fn a_read_showing_another_holder_steps_down_at_once() {
        let mut e = leader("a", false);
        poll(&mut e, ms(2_000)).unwrap();
        e.handle_answer(0, Err(ApiError::Conflict), ms(2_001));
        assert!(e.is_leader(ms(2_001)));
        assert_eq!(poll(&mut e, ms(2_001)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(9, Some("b"), 1)), ms(2_002));
        assert!(!e.is_leader(ms(2_002)));
        let evs = events(&mut e);
        assert_eq!(
            evs[0],
            Event::LostLeadership {
                reason: LossReason::HeldByOther
            }
        );
        assert!(matches!(&evs[1], Event::LeaderChanged { holder } if holder.is(&id("b"))));
    }

    #[test]
    fn a_watch_event_showing_another_holder_steps_down_at_once() {
        let mut e = leader("a", true);
        e.handle_watch_event(0, WatchEvent::Changed(lease(9, Some("b"), 1)), ms(100));
        assert!(!e.is_leader(ms(100)));
    }

    #[test]
    fn a_paused_leader_steps_down_before_anything_else() {
        let mut e = leader("a", false);
        let op = poll(&mut e, ms(2_000)).unwrap();
        // Paused for 25 s with the renew in flight; its success arrives after the deadline.
        e.handle_answer(0, Ok(stored(&op, 2)), ms(27_000));
        let evs = events(&mut e);
        assert_eq!(
            evs.first(),
            Some(&Event::LostLeadership {
                reason: LossReason::RenewDeadlineExceeded
            })
        );
        assert!(
            !evs.iter()
                .any(|ev| matches!(ev, Event::BecameLeader { .. }))
        );
        assert!(!e.is_leader(ms(27_000)));
    }

    #[test]
    fn a_claim_answered_after_its_deadline_does_not_lead() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(0));
        let op = poll(&mut e, ms(0)).unwrap();
        e.handle_answer(0, Ok(stored(&op, 6)), ms(10_000));
        assert!(!e.is_leader(ms(10_000)));
        assert!(
            !events(&mut e)
                .iter()
                .any(|ev| matches!(ev, Event::BecameLeader { .. }))
        );
        // The record names it, but no term of this process wrote it: the next claim waits out
        // the lease from when the record was seen, then starts a new term.
        let (at, op) = next_write(&mut e, 10_000, &stored(&op, 6));
        assert_eq!(at, 25_000);
        e.handle_answer(0, Ok(stored(&op, 7)), ms(25_001));
        assert!(e.is_leader(ms(25_001)));
        assert_eq!(e.epoch(), Some(2));
    }

    #[test]
    fn release_rereads_then_writes_empty_holder_and_duration_one() {
        let mut e = leader("a", false);
        e.close(ms(500));
        assert!(
            !e.is_leader(ms(500)),
            "steps down before the release is written"
        );
        assert_eq!(poll(&mut e, ms(500)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(1, Some("a"), 0)), ms(501));
        let Some(Operation::Update {
            record,
            resource_version,
        }) = poll(&mut e, ms(501))
        else {
            panic!()
        };
        assert_eq!(resource_version, rv(1));
        assert_eq!(record.holder, Holder::None);
        assert_eq!(record.lease_duration, Some(Duration::from_secs(1)));
        assert_eq!(record.lease_transitions, Some(0));
        e.handle_answer(0, Ok(lease(2, None, 0)), ms(502));
        assert!(e.is_closed());
        assert!(events(&mut e).contains(&Event::Released { written: true }));
        assert_eq!(poll(&mut e, ms(10_000)), None);
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn release_does_not_blank_a_newer_holder() {
        let mut e = leader("a", false);
        e.close(ms(500));
        poll(&mut e, ms(500));
        e.handle_answer(0, Ok(lease(4, Some("b"), 1)), ms(501));
        assert_eq!(poll(&mut e, ms(501)), None);
        assert!(e.is_closed());
        assert!(events(&mut e).contains(&Event::Released { written: false }));
    }

    #[test]
    fn a_release_that_meets_a_transient_error_retries_until_the_deadline() {
        let mut e = leader("a", false);
        e.close(ms(500));
        assert_eq!(poll(&mut e, ms(500)), Some(Operation::Get));
        e.handle_answer(0, Err(ApiError::Timeout), ms(3_000));
        assert!(!e.is_closed());
        assert_eq!(poll(&mut e, ms(4_999)), None);
        assert_eq!(poll(&mut e, ms(5_000)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(1, Some("a"), 0)), ms(5_001));
        assert!(matches!(
            poll(&mut e, ms(5_001)),
            Some(Operation::Update { .. })
        ));
        e.handle_answer(0, Err(ApiError::Server { status: 503 }), ms(5_002));
        assert_eq!(poll(&mut e, ms(7_002)), Some(Operation::Get));
        // Past the released term's deadline the lease expires on its own: stop trying.
        e.handle_answer(0, Err(ApiError::Transport), ms(10_000));
        assert!(e.is_closed());
        assert!(events(&mut e).contains(&Event::Released { written: false }));
    }

    #[test]
    fn a_release_gives_up_at_once_on_a_refusal() {
        let mut e = leader("a", false);
        e.close(ms(500));
        poll(&mut e, ms(500));
        e.handle_answer(0, Err(ApiError::Forbidden), ms(501));
        assert!(e.is_closed());
    }

    #[test]
    fn a_release_never_frees_a_version_another_process_with_our_identity_wrote() {
        let mut e = leader("a", false);
        e.close(ms(500));
        poll(&mut e, ms(500));
        e.handle_answer(0, Ok(lease(2, Some("a"), 1)), ms(501));
        assert_eq!(poll(&mut e, ms(501)), None, "no release write");
        assert!(e.is_closed());
        // And a follower that never led writes nothing at all.
        let mut f = elector("a", false);
        poll(&mut f, ms(0));
        f.handle_answer(0, Ok(lease(2, Some("a"), 1)), ms(0));
        f.close(ms(1));
        assert_eq!(poll(&mut f, ms(1)), None);
        assert!(f.is_closed());
    }

    #[test]
    fn a_take_answered_after_shutdown_began_is_released_too() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(0));
        let take = poll(&mut e, ms(0)).unwrap();
        e.close(ms(1));
        e.handle_answer(0, Ok(stored(&take, 6)), ms(2));
        assert!(!e.is_leader(ms(2)), "a take after shutdown does not lead");
        assert_eq!(poll(&mut e, ms(2)), Some(Operation::Get));
        e.handle_answer(0, Ok(stored(&take, 6)), ms(3));
        let Some(Operation::Update { record, .. }) = poll(&mut e, ms(3)) else {
            panic!("the take it wrote is freed")
        };
        assert_eq!(record.holder, Holder::None);
    }

    #[test]
    fn shutdown_of_a_follower_finishes_without_a_request() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(4, Some("b"), 1)), ms(0));
        e.close(ms(1));
        assert_eq!(poll(&mut e, ms(1)), None);
        assert!(e.is_closed());
    }

    #[test]
    fn only_one_request_is_in_flight() {
        let mut e = elector("a", false);
        assert!(poll(&mut e, ms(0)).is_some());
        for t in [0, 1_000, 60_000] {
            assert_eq!(poll(&mut e, ms(t)), None);
        }
    }

    #[test]
    fn without_a_watch_a_follower_polls_with_client_go_jitter() {
        let mut e = elector("a", false);
        let mut now = 0;
        let mut reads = 0;
        while reads < 50 {
            if poll(&mut e, ms(now)).is_some() {
                e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(now));
                e.handle_watch_event(
                    0,
                    WatchEvent::Changed(lease(5 + reads, Some("b"), 2)),
                    ms(now),
                );
                reads += 1;
                let gap = e.poll_timeout().unwrap().as_millis() - now;
                assert!((2_000..4_400).contains(&gap), "poll gap {gap} ms");
            }
            now += 10;
        }
    }

    #[test]
    fn with_a_watch_a_follower_sends_no_polls_and_wakes_at_expiry() {
        let mut e = elector("a", true);
        assert_eq!(poll(&mut e, ms(0)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        assert_eq!(
            e.poll_request(ms(0), WALL).map(|r| r.op),
            Some(Operation::Watch {
                resource_version: Some(rv(5))
            })
        );
        assert_eq!(e.poll_timeout(), Some(ms(15_000)));
        for t in (1..15_000).step_by(500) {
            assert_eq!(poll(&mut e, ms(t)), None, "request at {t} ms");
        }
        let op = poll(&mut e, ms(15_000)).unwrap();
        assert!(holder_of(&op).is(&id("a")));
    }

    #[test]
    fn a_release_seen_on_the_watch_is_taken_at_once() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        poll(&mut e, ms(0));
        let mut released = lease(6, None, 2);
        released.record.lease_duration = Some(Duration::from_secs(1));
        e.handle_watch_event(0, WatchEvent::Changed(released), ms(3_000));
        assert_eq!(e.poll_timeout(), Some(ms(3_000)));
        let op = poll(&mut e, ms(3_000)).unwrap();
        assert!(holder_of(&op).is(&id("a")));
    }

    #[test]
    fn watch_gone_410_rereads_then_watches_from_the_new_version() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        poll(&mut e, ms(0));
        e.handle_watch_event(0, WatchEvent::Expired, ms(100));
        assert_eq!(poll(&mut e, ms(100)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(9, Some("b"), 2)), ms(101));
        assert_eq!(
            e.poll_request(ms(101), WALL).map(|r| r.op),
            None,
            "no re-watch at network speed"
        );
        let (at, op) = (101..5_000)
            .find_map(|t| e.poll_request(ms(t), WALL).map(|r| (t, r.op)))
            .unwrap();
        assert!((2_100..=4_501).contains(&at), "re-watched after {at} ms");
        assert_eq!(
            op,
            Operation::Watch {
                resource_version: Some(rv(9))
            }
        );
    }

    #[test]
    fn a_watch_that_keeps_expiring_or_ending_cannot_loop() {
        // A quiet lease whose version has left the server's history answers 410 to every
        // resume; a server may also end every watch at once.
        for ending in [WatchEvent::Expired, WatchEvent::Ended] {
            let mut e = elector("a", true);
            poll(&mut e, ms(0));
            e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
            let mut watches = 0;
            let mut now = 0;
            while now < 60_000 {
                match e.poll_request(ms(now), wall_at(ms(now))).map(|r| r.op) {
                    Some(Operation::Watch { .. }) => {
                        watches += 1;
                        e.handle_watch_event(0, ending.clone(), ms(now));
                    }
                    Some(Operation::Get) => {
                        // The holder keeps renewing, so the follower never takes over.
                        e.handle_answer(0, Ok(lease(5 + now, Some("b"), 2)), ms(now))
                    }
                    Some(_) => {}
                    None => now += 1,
                }
            }
            assert!(
                (13..=31).contains(&watches),
                "{ending:?}: {watches} watches in 60 s"
            );
        }
    }

    #[test]
    fn a_failed_watch_falls_back_to_polling_until_reopened() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        poll(&mut e, ms(0));
        e.handle_watch_event(0, WatchEvent::Failed, ms(3_000));
        assert_eq!(poll(&mut e, ms(4_500)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(4_500));
        let reopen = (4_500..9_000)
            .step_by(10)
            .find_map(|t| e.poll_request(ms(t), WALL).map(|r| (t, r.op)))
            .unwrap();
        assert!(matches!(reopen.1, Operation::Watch { .. }), "{reopen:?}");
    }

    #[test]
    fn a_stale_watch_event_is_ignored() {
        let mut e = leader("a", true);
        poll(&mut e, ms(0));
        let op = poll(&mut e, ms(2_000)).unwrap();
        e.handle_answer(0, Ok(stored(&op, 10)), ms(2_000));
        e.handle_watch_event(0, WatchEvent::Changed(lease(8, Some("b"), 0)), ms(2_100));
        assert!(e.is_leader(ms(2_100)));
    }

    #[test]
    fn after_losing_it_campaigns_again() {
        let mut e = leader("a", false);
        poll(&mut e, ms(2_000)).unwrap();
        e.handle_answer(0, Ok(lease(3, Some("b"), 1)), ms(2_000));
        assert!(!e.is_leader(ms(2_000)));
        let mut now = 2_000;
        let op = loop {
            let op = poll(&mut e, ms(now));
            match op {
                Some(Operation::Get) => e.handle_answer(0, Ok(lease(3, Some("b"), 1)), ms(now)),
                Some(op) => break op,
                None => {}
            }
            now += 100;
        };
        assert!(holder_of(&op).is(&id("a")));
        assert!(now >= 17_000, "took over at {now}");
    }

    #[test]
    fn an_oversized_holder_is_someone_else() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        let long = [b'x'; 300];
        let long = core::str::from_utf8(&long).unwrap();
        let held = lease(5, Some(long), 2);
        e.handle_answer(0, Ok(held.clone()), ms(0));
        let evs = events(&mut e);
        assert_eq!(
            evs[0],
            Event::LeaderChanged {
                holder: Holder::Oversized { len: 300 }
            }
        );
        let (at, op) = next_write(&mut e, 0, &held);
        assert_eq!(at, 15_000);
        let Operation::Update { record, .. } = op else {
            panic!()
        };
        assert_eq!(record.lease_transitions, Some(3));
    }

    #[test]
    fn too_many_requests_waits_for_retry_after() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        let error = ApiError::TooManyRequests {
            retry_after: Some(Duration::from_secs(30)),
        };
        e.handle_answer(0, Err(error), ms(0));
        assert_eq!(e.poll_timeout(), Some(ms(30_000)));
        assert_eq!(poll(&mut e, ms(29_999)), None);
    }

    #[test]
    fn forbidden_is_reported_with_its_verb() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::NotFound), ms(0));
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::Forbidden), ms(0));
        let evs = events(&mut e);
        assert!(evs.contains(&Event::RequestFailed {
            verb: crate::Verb::Create,
            error: ApiError::Forbidden
        }));
    }

    #[test]
    fn a_deleted_lease_ends_leadership() {
        let mut e = leader("a", true);
        e.handle_watch_event(0, WatchEvent::Deleted, ms(100));
        assert!(!e.is_leader(ms(100)));
        assert!(events(&mut e).contains(&Event::LostLeadership {
            reason: LossReason::Deleted
        }));
        // Deletion is not a release: re-created only a lease duration after it was seen.
        assert_eq!(poll(&mut e, ms(100)), None);
        assert_eq!(e.poll_timeout(), Some(ms(15_100)));
        let Some(Operation::Create(record)) = poll(&mut e, ms(15_100)) else {
            panic!("no create when the deleted lease's duration ran out")
        };
        assert_eq!(record.lease_transitions, Some(1), "the epoch stays new");
    }

    #[test]
    fn a_follower_that_sees_a_delete_waits_a_lease_duration_before_creating() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 3)), ms(0));
        let op = next_write(&mut e, 0, &lease(5, Some("b"), 3));
        assert_eq!(op.0, 15_000);
        // That take found the lease deleted meanwhile.
        e.handle_answer(0, Err(ApiError::NotFound), ms(15_001));
        let mut now = 15_001;
        loop {
            match poll(&mut e, ms(now)) {
                Some(Operation::Get) => e.handle_answer(0, Err(ApiError::NotFound), ms(now)),
                Some(Operation::Create(record)) => {
                    assert_eq!(now, 30_001, "created {now} ms in");
                    assert_eq!(record.lease_transitions, Some(4));
                    break;
                }
                Some(other) => panic!("{other:?}"),
                None => now += 1,
            }
        }
    }

    #[test]
    fn a_lease_missing_at_the_first_read_is_created_at_once() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::NotFound), ms(0));
        assert!(matches!(poll(&mut e, ms(0)), Some(Operation::Create(_))));
    }

    #[test]
    fn a_write_answered_with_someone_elses_record_backs_off() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(0));
        assert!(poll(&mut e, ms(0)).is_some());
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(1));
        assert!(!e.is_leader(ms(1)));
        assert_eq!(poll(&mut e, ms(1)), None, "no immediate second claim");
        assert!(e.poll_timeout().is_some_and(|t| t >= ms(2_001)));
    }

    #[test]
    fn the_records_own_duration_decides_expiry() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        let mut node = lease(5, Some("b"), 2);
        node.record.lease_duration = Some(Duration::from_secs(40));
        e.handle_answer(0, Ok(node), ms(0));
        assert_eq!(e.poll_timeout(), Some(ms(0)), "watch to open first");
        assert_eq!(poll(&mut e, ms(0)), None);
        assert_eq!(e.poll_timeout(), Some(ms(40_000)));
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
        assert_eq!(poll(&mut e, ms(100)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(1, Some("a"), 0)), ms(101));
        poll(&mut e, ms(101)).unwrap();
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
    fn stats_count_requests_conflicts_acquisitions_takeovers_and_slow_path_reads() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        let held = lease(5, Some("b"), 2);
        e.handle_answer(0, Ok(held.clone()), ms(0));
        let (at, take) = next_write(&mut e, 0, &held);
        e.handle_answer(0, Ok(stored(&take, 6)), ms(at));
        assert!(e.is_leader(ms(at)));
        // A renew meets a conflict: the leader must read before it can renew again.
        let renew = poll(&mut e, ms(at + 2_000)).unwrap();
        assert!(matches!(renew, Operation::Update { .. }));
        e.handle_answer(0, Err(ApiError::Conflict), ms(at + 2_001));
        assert_eq!(poll(&mut e, ms(at + 2_001)), Some(Operation::Get));
        let s = e.stats();
        assert_eq!((s.gets, s.creates, s.updates, s.watches), (2, 0, 2, 1));
        assert_eq!(s.requests(crate::Verb::Update), 2);
        assert_eq!((s.conflicts, s.acquisitions, s.takeovers), (1, 1, 1));
        assert_eq!(s.slow_path_reads, 1);
        assert_eq!(s.events_dropped, 0);
    }

    #[test]
    fn a_lease_created_or_taken_free_is_no_takeover() {
        let mut e = leader("a", false);
        let s = e.stats();
        assert_eq!((s.acquisitions, s.takeovers, s.slow_path_reads), (1, 0, 0));
        // A stray answer (nothing outstanding) counts nothing.
        e.handle_answer(0, Err(ApiError::Conflict), ms(1));
        assert_eq!(e.stats().conflicts, 0);
    }
}
