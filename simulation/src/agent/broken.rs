//! Machines broken on purpose, one rule each, and the tests that show the simulation's checks
//! catch every one: a check that cannot fail proves nothing.

use super::Driven;
use crate::outcome::Failure;
use crate::scenario::{Fault, FaultKind, LeaseId, SECOND, Scenario};
use crate::world::World;
use leasehold_core::{
    ApiError, Event, Holder, Instant, LossReason, MicroTime, Operation, Request, Response,
    WatchEvent,
};
use std::collections::VecDeque;

/// How a machine is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Its epoch getter says 0 whatever the term (or none).
    EpochAlwaysZero,
    /// It reports one more than the epoch it wrote.
    EpochOffByOne,
    /// It writes and reports epoch 0 for every term.
    EpochNeverAdvances,
    /// It steps down on the answer to its own renew.
    StepsDownOnOwnRenew,
    /// It steps down on the watch echo of its own write.
    StepsDownOnOwnEcho,
    /// It reports every renew twice.
    RenewsTwice,
    /// Its deadline getter says none.
    NoDeadline,
    /// Its slot-holder getter says none.
    ForgetsHolder,
    /// It never closes a watch.
    KeepsIdleWatches,
    /// It is told 429s without their Retry-After.
    IgnoresRetryAfter,
    /// It is told a create conflict as a timeout, as a machine that never re-reads after one.
    ForgetsCreateConflict,
}

/// A machine with a [`Flaw`].
pub struct Broken {
    pub inner: Box<dyn Driven>,
    pub flaw: Flaw,
    injected: VecDeque<(u16, Event)>,
}

impl Broken {
    pub fn new(inner: Box<dyn Driven>, flaw: Flaw) -> Self {
        Self {
            inner,
            flaw,
            injected: VecDeque::new(),
        }
    }

    fn step_down(&mut self, slot: u16, now: Instant) {
        if self.inner.leading(now) == Some(slot) {
            let reason = LossReason::HeldByOther;
            self.injected
                .push_back((slot, Event::LostLeadership { reason }));
        }
    }
}

impl Driven for Broken {
    fn answer(&mut self, slot: u16, response: Response, now: Instant) {
        let response = match (self.flaw, response) {
            (Flaw::IgnoresRetryAfter, Err(ApiError::TooManyRequests { .. })) => {
                Err(ApiError::TooManyRequests { retry_after: None })
            }
            (Flaw::ForgetsCreateConflict, Err(ApiError::AlreadyExists)) => Err(ApiError::Timeout),
            (_, response) => response,
        };
        let renewed = response.is_ok();
        self.inner.answer(slot, response, now);
        if self.flaw == Flaw::StepsDownOnOwnRenew && renewed {
            self.step_down(slot, now);
        }
    }
    fn watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        let echo = matches!(&event, WatchEvent::Changed(lease)
            if self.inner.slot_holder(slot) == Some(&lease.record.holder));
        self.inner.watch_event(slot, event, now);
        if self.flaw == Flaw::StepsDownOnOwnEcho && echo {
            self.step_down(slot, now);
        }
    }
    fn timeout(&mut self, now: Instant) {
        self.inner.timeout(now);
    }
    fn close(&mut self, now: Instant) {
        self.inner.close(now);
    }
    fn request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        loop {
            let mut request = self.inner.request(now, wall)?;
            match (self.flaw, &mut request.op) {
                (Flaw::KeepsIdleWatches, Operation::Unwatch) => continue,
                (
                    Flaw::EpochNeverAdvances,
                    Operation::Create(record) | Operation::Update { record, .. },
                ) => record.lease_transitions = Some(0),
                _ => {}
            }
            return Some(request);
        }
    }
    fn wake_at(&self) -> Option<Instant> {
        self.inner.wake_at()
    }
    fn event(&mut self) -> Option<Option<(u16, Event)>> {
        // The machine's own events first: what is injected follows the input's real ones.
        let Some(event) = self.inner.event() else {
            return self.injected.pop_front().map(Some);
        };
        Some(event.map(|(slot, event)| match (self.flaw, event) {
            (Flaw::EpochOffByOne, Event::BecameLeader { epoch, contended }) => {
                let epoch = epoch + 1;
                (slot, Event::BecameLeader { epoch, contended })
            }
            (Flaw::EpochNeverAdvances, Event::BecameLeader { contended, .. }) => {
                let epoch = 0;
                (slot, Event::BecameLeader { epoch, contended })
            }
            (Flaw::RenewsTwice, renewed @ Event::Renewed { .. }) => {
                self.injected.push_back((slot, renewed.clone()));
                (slot, renewed)
            }
            (_, event) => (slot, event),
        }))
    }
    fn leading(&self, now: Instant) -> Option<u16> {
        self.inner.leading(now)
    }
    fn closed(&self) -> bool {
        self.inner.closed()
    }
    fn epoch(&self) -> Option<u32> {
        match self.flaw {
            Flaw::EpochAlwaysZero => Some(0),
            Flaw::EpochOffByOne => self.inner.epoch().map(|e| e + 1),
            Flaw::EpochNeverAdvances => self.inner.epoch().map(|_| 0),
            _ => self.inner.epoch(),
        }
    }
    fn deadline(&self) -> Option<Instant> {
        match self.flaw {
            Flaw::NoDeadline => None,
            _ => self.inner.deadline(),
        }
    }
    fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        match self.flaw {
            Flaw::ForgetsHolder => None,
            _ => self.inner.slot_holder(slot),
        }
    }
}

/// Two electors, watching; node 1 is down for the first 5 s so node 0 leads, then node 0
/// crashes from 20 s to 100 s and node 1 takes over: two terms of two holders.
fn hand_over() -> Scenario {
    let mut s = Scenario::fault_on_the_leader(3, FaultKind::Crash(0), 200 * SECOND);
    s.children = vec![crate::Child::ExitsAfter(0); 2];
    s
}

/// Two pool members on two slots, watching.
fn pool() -> Scenario {
    Scenario::calm(5, 0, 2, 2, 120 * SECOND)
}

/// One elector and a heartbeat node (node 1) under `kind` from `from` to `until`.
fn heartbeat(kind: fn(usize) -> FaultKind, from: u64, until: u64) -> Scenario {
    let mut s = Scenario::calm(11, 1, 0, 1, 120 * SECOND);
    let node = s.add_heartbeat(1_000_000);
    s.faults = vec![Fault {
        kind: kind(node),
        start: from,
        end: until,
    }];
    s
}

/// The failure `scenario` ends with when node `node` runs with `flaw`.
fn caught(scenario: &Scenario, node: usize, flaw: Flaw) -> Failure {
    let world = World::new(scenario, false).expect("a valid scenario");
    match world.with_flaw(node, flaw).run() {
        Ok(report) => panic!("{flaw:?} on node-{node} went unnoticed: {report:?}"),
        Err(violation) => violation.failure,
    }
}

#[test]
fn the_sound_machines_pass_every_scenario_the_broken_ones_fail() {
    for s in [hand_over(), pool()] {
        let report = crate::run(&s).unwrap_or_else(|v| panic!("{v}"));
        assert!(
            report.elections + report.slot_acquisitions >= 2,
            "{report:?}"
        );
    }
}

#[test]
fn an_epoch_getter_that_answers_while_not_leading_is_caught() {
    assert_eq!(
        caught(&hand_over(), 1, Flaw::EpochAlwaysZero),
        Failure::GetterDisagrees { node: 1 }
    );
}

#[test]
fn an_epoch_other_than_the_one_written_is_caught() {
    assert_eq!(
        caught(&hand_over(), 0, Flaw::EpochOffByOne),
        Failure::EpochNotWritten {
            node: 0,
            lease: LeaseId::Leader
        }
    );
}

#[test]
fn an_epoch_that_does_not_advance_from_one_holder_to_the_next_is_caught() {
    assert_eq!(
        caught(&hand_over(), 1, Flaw::EpochNeverAdvances),
        Failure::EpochNotIncreasing {
            lease: LeaseId::Leader
        }
    );
}

#[test]
fn a_leader_stepping_down_on_its_own_renew_or_echo_is_caught() {
    for flaw in [Flaw::StepsDownOnOwnRenew, Flaw::StepsDownOnOwnEcho] {
        assert_eq!(
            caught(&hand_over(), 0, flaw),
            Failure::FalseStepDown {
                node: 0,
                lease: LeaseId::Leader
            },
            "{flaw:?}"
        );
    }
}

#[test]
fn a_renew_reported_without_a_write_is_caught() {
    assert_eq!(
        caught(&hand_over(), 0, Flaw::RenewsTwice),
        Failure::RenewNotWritten {
            node: 0,
            lease: LeaseId::Leader
        }
    );
}

#[test]
fn a_pool_whose_getters_disagree_with_the_server_is_caught() {
    for flaw in [
        Flaw::EpochAlwaysZero,
        Flaw::EpochOffByOne,
        Flaw::NoDeadline,
        Flaw::ForgetsHolder,
    ] {
        let failure = caught(&pool(), 0, flaw);
        assert!(
            matches!(
                failure,
                Failure::GetterDisagrees { node: 0 } | Failure::EpochNotWritten { node: 0, .. }
            ),
            "{flaw:?}: {failure:?}"
        );
    }
}

#[test]
fn a_pool_member_watching_a_slot_it_does_not_need_is_caught() {
    // Per-slot watches (the pool's stream refused): a holder's other slots must be let go.
    let s = Scenario {
        names_only: true,
        ..pool()
    };
    let failure = caught(&s, 0, Flaw::KeepsIdleWatches);
    assert!(
        matches!(failure, Failure::IdleWatch { node: 0, .. }),
        "{failure:?}"
    );
}

#[test]
fn a_throttled_heartbeat_waits_out_the_retry_after_and_recovers() {
    let s = heartbeat(FaultKind::Throttle, 20 * SECOND, 40 * SECOND);
    let report = crate::run(&s).unwrap_or_else(|v| panic!("{v}"));
    assert!(report.throttled >= 5, "{report:?}");
    assert_eq!(
        caught(&s, 1, Flaw::IgnoresRetryAfter),
        Failure::IgnoredRetryAfter { node: 1 }
    );
}

#[test]
fn a_heartbeat_whose_create_landed_unanswered_reads_and_renews() {
    // The first create lands but its answer is lost; the retry conflicts with it.
    let s = heartbeat(FaultKind::LoseWriteAnswers, 0, SECOND);
    let report = crate::run(&s).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(report.already_exists, 1, "{report:?}");
    assert_eq!(
        caught(&s, 1, Flaw::ForgetsCreateConflict),
        Failure::HeartbeatLate { node: 1 }
    );
}
