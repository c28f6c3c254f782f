//! One lease under client-go's rules: the engine shared by [`crate::Elector`] (one slot) and
//! [`crate::Pool`] (n slots).
//!
//! A slot caches what it last saw of its lease, remembers on the local monotonic clock when that
//! changed (`observed_at`), and decides the next request from its owner's [`Intent`]. Both
//! `poll_request` and `poll_timeout` derive from one function, [`LeaseSlot::due`], so the wake-up
//! the driver arms is exactly the instant the next request becomes due.

use crate::api::{ApiError, Operation, Request, Response, Verb, WatchEvent};
use crate::event::{Event, LossReason, SlotEvent};
use crate::expiry::{earliest, leader_deadline, lease_expiry};
use crate::jitter::Jitter;
use crate::machine::Stats;
use crate::record::{Holder, Identity, Lease, LeaseName, LeaseRecord, MicroTime, ResourceVersion};
use crate::timing::Timing;
use embassy_time::{Duration, Instant};
use heapless::Deque;

/// Events a machine holds before it drops the oldest. Every `handle_*`, command or
/// `poll_request` call adds at most four, so a driver that drains after each call never loses
/// one; what happens to one that does not is part of the contract ([`crate::Machine`]).
pub const EVENT_CAPACITY: usize = 8;

/// An event that can stand for events dropped before it.
pub(crate) trait Overflow: Sized {
    /// The report of `count` events dropped, the newest of which was `newest`.
    fn dropped(count: u32, newest: &Self) -> Self;
}

/// A machine's bounded event queue. Past [`EVENT_CAPACITY`] the oldest event is dropped and
/// counted; the next event polled is then the report of how many were lost (they were older
/// than everything still queued), so a driver that fell behind learns of it in order.
#[derive(Clone, Debug)]
pub(crate) struct EventQueue<E> {
    queue: Deque<E, EVENT_CAPACITY>,
    /// The report owed for the events dropped since the last one was polled.
    report: Option<(u32, E)>,
    /// Every event dropped so far, for [`crate::Stats::events_dropped`].
    dropped_total: u64,
}

impl<E: Overflow> EventQueue<E> {
    pub(crate) fn new() -> Self {
        Self {
            queue: Deque::new(),
            report: None,
            dropped_total: 0,
        }
    }

    pub(crate) fn push(&mut self, event: E) {
        if self.queue.is_full() {
            if let Some(oldest) = self.queue.pop_front() {
                let count = self
                    .report
                    .as_ref()
                    .map_or(0, |(n, _)| *n)
                    .saturating_add(1);
                self.report = Some((count, E::dropped(count, &oldest)));
                self.dropped_total = self.dropped_total.saturating_add(1);
            }
        }
        // Cannot fail: a place was just made free.
        let _ = self.queue.push_back(event);
    }

    pub(crate) fn pop(&mut self) -> Option<E> {
        match self.report.take() {
            Some((_, report)) => Some(report),
            None => self.queue.pop_front(),
        }
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

impl Overflow for SlotEvent {
    fn dropped(count: u32, newest: &Self) -> Self {
        Self {
            slot: newest.slot,
            event: Event::EventsDropped { count },
        }
    }
}

pub(crate) fn push_event(events: &mut EventQueue<SlotEvent>, slot: u16, event: Event) {
    events.push(SlotEvent { slot, event });
}

/// How long the server asked to be left alone: its `Retry-After` on a 429, else nothing.
pub(crate) fn server_wait(error: ApiError) -> Duration {
    match error {
        ApiError::TooManyRequests {
            retry_after: Some(after),
        } => after,
        _ => Duration::from_ticks(0),
    }
}

/// What the owner wants from a lease right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Take it when free or expired; renew it while held.
    Campaign,
    /// Track it (read or watch) without taking it.
    Observe,
    /// Neither request nor watch.
    Idle,
    /// Give it up: step down, then write it free if the server still names us.
    Release,
}

/// The shared, per-owner context a slot needs for a step.
pub(crate) struct Env<'a> {
    pub identity: &'a Identity,
    pub timing: &'a Timing,
    pub jitter: &'a mut Jitter,
    pub events: &'a mut EventQueue<SlotEvent>,
    pub stats: &'a mut Stats,
}

#[derive(Clone, Debug)]
enum Known {
    Unknown,
    /// Missing at the first read: nobody can be acting on it, so it may be created at once.
    Absent,
    /// Seen, then deleted. Deletion is not a release: its last holder may still be acting until
    /// its own deadline, so it is re-created only a lease duration after the deletion was seen.
    Deleted {
        /// The deleted record's `leaseDurationSeconds`.
        lease_duration: Option<Duration>,
        /// Its `leaseTransitions`, so the next term's epoch is still new.
        transitions: Option<u32>,
    },
    Present(Lease),
    /// Existing, or maybe re-created, since it was last seen missing, its record not read yet (a
    /// create refused with AlreadyExists, or a pause that outlasted the wake-up it asked for): a
    /// 404 now is a deletion seen now, whose last holder
    /// may still be acting, not a lease that never existed.
    Unread {
        /// The `leaseTransitions` last known, so the next term's epoch is still new.
        transitions: Option<u32>,
    },
}

/// The leadership this slot currently claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leadership {
    pub since: Instant,
    pub deadline: Instant,
    pub epoch: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Read,
    Create,
    /// Take over, or renew: the same write, `holderIdentity` = us, with the read resourceVersion.
    Claim,
    ReleaseRead,
    ReleaseWrite,
    /// Name us as the next holder of a lease another member holds (a pool's reservation).
    Reserve,
}

impl Action {
    /// The verb of the request this action sends, to report its failure by.
    fn verb(self) -> Verb {
        match self {
            Self::Read | Self::ReleaseRead => Verb::Get,
            Self::Create => Verb::Create,
            Self::Claim | Self::ReleaseWrite | Self::Reserve => Verb::Update,
        }
    }
}

/// What is due next on a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Send(Action),
    /// No request: end the release without writing (the lease is not ours).
    Finish,
}

#[derive(Clone, Debug)]
struct InFlight {
    action: Action,
    sent_at: Instant,
    /// For a claim: the resourceVersion and `renewTime` of the record it replaces, to tell a
    /// write the server applied from one it did not.
    replaced: Option<(ResourceVersion, Option<MicroTime>)>,
    /// For a claim: the record it replaces names another holder, so a new term is a takeover.
    over_other: bool,
    /// For a claim: sent as a renew of a running term. Its record keeps that term's epoch, so if
    /// the term has ended by the time it is answered, it cannot begin another.
    renew: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    Disabled,
    Closed {
        reopen_at: Instant,
    },
    Open,
    /// The owner's stream (a pool's one watch of all its slots) delivers this lease's events
    /// and its first state: the slot neither reads it first, nor polls, nor watches it.
    Shared,
}

/// Where a release stands between requests; while one of its requests is in flight, its answer
/// decides the next stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReleaseStage {
    /// The read that checks the lease is still ours is due (or, with nothing of ours to free,
    /// the end).
    NotStarted,
    /// The read found our version: the write that frees it is due.
    WriteDue,
    Done,
}

#[derive(Clone, Debug)]
pub(crate) struct LeaseSlot {
    index: u16,
    name: LeaseName,
    intent: Intent,
    known: Known,
    observed_at: Instant,
    leading: Option<Leadership>,
    in_flight: Option<InFlight>,
    /// Backoff after a failure: no request before this.
    not_before: Instant,
    /// While leading: when the next renew is due.
    renew_at: Instant,
    /// When the next poll is due while no watch is open.
    next_poll_at: Instant,
    /// A 409 or a 410 asked for a fresh read before anything else.
    must_read: bool,
    watch: Watch,
    watch_rv: Option<ResourceVersion>,
    /// While leading: the resourceVersion of the last record this term wrote. A record naming our
    /// identity at any other version was written by someone else (a duplicate identity).
    written: Option<ResourceVersion>,
    release: ReleaseStage,
    /// During a release: the version our term last wrote (the release writes only over it) and
    /// the deadline until which transient failures are retried.
    release_rv: Option<ResourceVersion>,
    release_until: Instant,
    /// While not leading: when this candidate first tried to take the lease since it last saw
    /// another holder's term (the start of the contention [`Event::BecameLeader`] reports).
    contending_since: Option<Instant>,
    /// The instant of the last input (answer, watch event, timer, poll), to tell a pause.
    last_input: Instant,
    /// The end of the server's last `Retry-After`: no request before it, whatever the owner
    /// wants meanwhile (a release, a rejoin).
    server_quiet_until: Instant,
    /// The owner asked to reserve this lease's next term; cleared when the write is sent.
    reserve: bool,
    /// The version a release write was refused over (409), until the read that follows.
    release_refused: Option<ResourceVersion>,
    /// The newest version a stream showed: a deletion it shows follows that version. (A
    /// stream reopened from an older version replays in order too: a record older than a
    /// known deletion is never adopted, so a resume starts after it.)
    streamed: Option<ResourceVersion>,
    /// The newest version known to precede the lease's deletion, as the stream (in version
    /// order) or a list showed it: an answer no newer tells of a lease that no longer exists.
    /// (A 404 answer sets nothing: it may be older than what the stream showed since.)
    deleted_after: Option<ResourceVersion>,
}

impl LeaseSlot {
    pub(crate) fn new(index: u16, name: LeaseName, intent: Intent, watch: bool) -> Self {
        Self {
            index,
            name,
            intent,
            known: Known::Unknown,
            observed_at: Instant::MIN,
            leading: None,
            in_flight: None,
            not_before: Instant::MIN,
            renew_at: Instant::MIN,
            next_poll_at: Instant::MIN,
            must_read: false,
            watch: if watch {
                Watch::Closed {
                    reopen_at: Instant::MIN,
                }
            } else {
                Watch::Disabled
            },
            watch_rv: None,
            written: None,
            release: ReleaseStage::NotStarted,
            release_rv: None,
            release_until: Instant::MIN,
            contending_since: None,
            last_input: Instant::MIN,
            server_quiet_until: Instant::MIN,
            reserve: false,
            release_refused: None,
            streamed: None,
            deleted_after: None,
        }
    }

    /// Forgets everything known of the lease, as a slot newly made with `intent`, and sends
    /// nothing before `not_before` (a rejoin after a close).
    pub(crate) fn restart(&mut self, intent: Intent, not_before: Instant) {
        let watch = self.watch != Watch::Disabled;
        let shared = self.watch == Watch::Shared;
        let server_quiet_until = self.server_quiet_until;
        *self = Self::new(self.index, self.name.clone(), intent, watch);
        if shared {
            self.watch = Watch::Shared;
        }
        self.server_quiet_until = server_quiet_until;
        self.not_before = not_before;
        self.next_poll_at = not_before;
        if let Watch::Closed { reopen_at } = &mut self.watch {
            *reopen_at = not_before;
        }
    }

    pub(crate) fn name(&self) -> &LeaseName {
        &self.name
    }

    /// Hands this lease's watching to the owner's stream (`true`), or takes it back (`false`:
    /// the slot reads and watches the lease itself, as after a refused pool watch).
    pub(crate) fn share_watch(&mut self, shared: bool) {
        self.watch = match (shared, self.watch) {
            (true, Watch::Disabled) | (false, Watch::Disabled) => Watch::Disabled,
            (true, _) => Watch::Shared,
            (false, Watch::Shared) => Watch::Closed {
                reopen_at: Instant::MIN,
            },
            (false, open_or_closed) => open_or_closed,
        };
    }

    /// The owner's stream listed the slots and this lease was not among them: it has none.
    pub(crate) fn not_listed(&mut self, listed: &ResourceVersion, now: Instant, env: &mut Env<'_>) {
        self.expire(now, env);
        self.observe(None, now, env);
        self.deleted_after = Some(listed.clone());
    }

    pub(crate) fn leadership(&self) -> Option<Leadership> {
        self.leading
    }

    pub(crate) fn is_leader(&self, now: Instant) -> bool {
        self.leading.is_some_and(|l| now < l.deadline)
    }

    pub(crate) fn lease(&self) -> Option<&Lease> {
        match &self.known {
            Known::Present(lease) => Some(lease),
            Known::Unknown | Known::Absent | Known::Deleted { .. } | Known::Unread { .. } => None,
        }
    }

    pub(crate) fn holder(&self) -> Option<&Holder> {
        self.lease().map(|l| &l.record.holder)
    }

    pub(crate) fn has_request_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the first read of this lease has been sent and not answered yet.
    pub(crate) fn is_reading_first_time(&self) -> bool {
        matches!(self.known, Known::Unknown) && self.in_flight.is_some()
    }

    /// Whether nothing is known of the lease yet (neither read nor listed).
    pub(crate) fn is_unknown(&self) -> bool {
        matches!(self.known, Known::Unknown)
    }

    /// Whether a release has finished, its watch closed too: nothing more will be asked.
    pub(crate) fn is_released(&self) -> bool {
        self.release == ReleaseStage::Done && self.watch != Watch::Open
    }

    /// Asks for one write naming us as the next holder of the lease as now known (another
    /// member's term, unreserved): sent with the next poll, unless a request is in flight or
    /// the lease must be read first.
    pub(crate) fn reserve(&mut self) {
        self.reserve = true;
    }

    /// Whether the request in flight is a reservation.
    pub(crate) fn is_reservation_in_flight(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.action == Action::Reserve)
    }

    /// Whether a reservation is asked for or in flight.
    pub(crate) fn is_reserving(&self) -> bool {
        self.reserve
            || self
                .in_flight
                .as_ref()
                .is_some_and(|f| f.action == Action::Reserve)
    }

    /// Whether this slot's watch stream is open.
    pub(crate) fn is_watching(&self) -> bool {
        self.watch == Watch::Open
    }

    /// Whether a take could be sent at `now` from what is known (free, ours, or expired).
    pub(crate) fn is_takeable(&self, now: Instant, timing: &Timing) -> bool {
        !self.must_read && self.take_at(timing).is_some_and(|at| at <= now)
    }

    /// When a take could next be sent from what is known: `None` while a request is in flight
    /// or a fresh read is needed, since their answers decide first.
    pub(crate) fn next_take_at(&self, timing: &Timing) -> Option<Instant> {
        if self.must_read || self.in_flight.is_some() {
            return None;
        }
        self.take_at(timing)
    }

    /// When this lease becomes takeable from what is known; `None` when nothing is known.
    ///
    /// A record that names our identity is waited out like anyone else's unless this term wrote
    /// it (then the owner renews instead of taking): it may come from an earlier process with the
    /// same identity (a restarted StatefulSet Pod, a node name shared by two agents) whose work
    /// may still run. Unlike client-go, which takes such a record at once.
    pub(crate) fn take_at(&self, timing: &Timing) -> Option<Instant> {
        match &self.known {
            Known::Unknown | Known::Unread { .. } => None,
            Known::Absent => Some(self.observed_at),
            Known::Deleted { lease_duration, .. } => Some(
                self.observed_at
                    .saturating_add(lease_duration.unwrap_or(timing.lease_duration())),
            ),
            Known::Present(lease) => Some(match &lease.record.holder {
                Holder::None => self.observed_at,
                _ => lease_expiry(self.observed_at, &lease.record, timing.lease_duration()),
            }),
        }
    }

    /// The `leaseTransitions` of the last record known, present or gone.
    fn known_transitions(&self) -> Option<u32> {
        match &self.known {
            Known::Present(lease) => lease.record.lease_transitions,
            Known::Deleted { transitions, .. } | Known::Unread { transitions } => *transitions,
            Known::Unknown | Known::Absent => None,
        }
    }

    /// Changes what the owner wants. Stepping down for a release happens here, before any
    /// request, so no one is told to stop after another could have started.
    pub(crate) fn set_intent(&mut self, intent: Intent, now: Instant, env: &mut Env<'_>) {
        if self.intent == intent {
            return;
        }
        self.reserve = false;
        // Judged on what the slot asked for before the change.
        self.notice_pause(now, env.timing);
        if self.intent == Intent::Idle {
            // An idle slot neither read nor watched its lease: it may have been created and
            // deleted meanwhile, with its holder's work still stopping. What was missing is
            // then no longer "missing at the first read": it is waited out as a deletion seen
            // now.
            match &mut self.known {
                Known::Absent => {
                    self.known = Known::Deleted {
                        lease_duration: None,
                        transitions: None,
                    };
                    self.observed_at = now;
                }
                Known::Deleted { .. } => self.observed_at = now,
                Known::Unknown | Known::Present(_) | Known::Unread { .. } => {}
            }
        }
        if intent == Intent::Release {
            self.not_before = now;
            self.release_until = self.leading.map_or(now, |l| l.deadline);
            self.release_rv = self.written.clone().filter(|_| self.leading.is_some());
            self.release = self.release_start();
            self.step_down(LossReason::Released, env);
        }
        self.intent = intent;
        self.expire(now, env);
    }

    /// Steps down if the renew deadline has passed: called first on every input, so a process
    /// that was paused past its deadline stops leading before it does anything else. A pause
    /// also makes a missing lease's absence stale (see [`LeaseSlot::notice_pause`]).
    pub(crate) fn expire(&mut self, now: Instant, env: &mut Env<'_>) {
        self.notice_pause(now, env.timing);
        if self.leading.is_some_and(|l| now >= l.deadline) {
            self.step_down(LossReason::RenewDeadlineExceeded, env);
        }
    }

    /// An input later than the wake-up this slot asked for (or than its request's timeout) by
    /// more than a retry period means the process was paused or starved. A create carries no
    /// resourceVersion, so a lease known missing could have been re-created and deleted again
    /// meanwhile, unseen, with its holder still acting: it is read again, and a 404 then counts
    /// as a deletion seen now.
    fn notice_pause(&mut self, now: Instant, timing: &Timing) {
        // Only a lease known missing is at stake; the wake-up is worked out for nothing else
        // (this runs on every input of every slot).
        if matches!(self.known, Known::Absent | Known::Deleted { .. }) {
            let answer_by = self
                .in_flight
                .as_ref()
                .map(|f| f.sent_at.saturating_add(timing.request_timeout()));
            // A pool waiting for a slot wakes when an observed one can be taken.
            let takeable = (self.intent == Intent::Observe)
                .then(|| self.next_take_at(timing))
                .flatten();
            let expected = earliest([self.poll_timeout(timing), answer_by, takeable])
                .map(|at| at.max(self.last_input));
            if expected.is_some_and(|at| now > at.saturating_add(timing.retry_period())) {
                self.known = Known::Unread {
                    transitions: self.known_transitions(),
                };
            }
        }
        self.last_input = self.last_input.max(now);
    }

    /// Where a release starts: with the write when the last version known is the one our term
    /// wrote (the write carries that resourceVersion, so the server applies it only if nobody
    /// wrote since: the same check as a read, made atomically), else with a read.
    fn release_start(&self) -> ReleaseStage {
        let ours = self
            .lease()
            .is_some_and(|l| self.release_rv.as_ref() == Some(&l.resource_version));
        if ours {
            ReleaseStage::WriteDue
        } else {
            ReleaseStage::NotStarted
        }
    }

    fn step_down(&mut self, reason: LossReason, env: &mut Env<'_>) {
        if self.leading.take().is_some() {
            self.written = None;
            push_event(env.events, self.index, Event::LostLeadership { reason });
        }
    }

    /// Takes in a read, a write's answer or a watch event showing the lease as `seen`.
    fn observe(&mut self, seen: Option<Lease>, now: Instant, env: &mut Env<'_>) {
        if seen.as_ref().is_some_and(|new| self.deleted_since(new)) {
            return;
        }
        // An answer older than what the stream already showed, which is the same record but
        // reserved since (our write's answer overtaken by a reservation over it): the newer
        // is kept, and a version of ours it replaced stays ours.
        if let (Some(new), Known::Present(old)) = (&seen, &self.known) {
            let older = new.resource_version != old.resource_version
                && new
                    .resource_version
                    .is_not_newer_than(&old.resource_version);
            if older && new.record.same_spec(&old.record) {
                if self.written.as_ref() == Some(&new.resource_version) {
                    self.written = Some(old.resource_version.clone());
                }
                return;
            }
        }
        let holder_before = self.holder().cloned();
        let changed = match (&self.known, &seen) {
            (Known::Present(old), Some(new)) => old != new,
            (Known::Absent | Known::Deleted { .. }, None) => false,
            _ => true,
        };
        // A write that only reserved the next term: another member's, over the version we
        // knew. It renews nothing (the expiry still counts from the last change of the spec),
        // and a version of ours it replaced stays ours to renew and to release.
        let reserved_over = match (&self.known, &seen) {
            (Known::Present(old), Some(new))
                if old.record.same_spec(&new.record)
                    && old.record.next_holder != new.record.next_holder =>
            {
                Some((old.resource_version.clone(), new.resource_version.clone()))
            }
            _ => None,
        };
        if let Some((old, new)) = &reserved_over {
            if self.written.as_ref() == Some(old) {
                self.written = Some(new.clone());
            }
            if self.release_rv.as_ref() == Some(old) {
                self.release_rv = Some(new.clone());
            }
        }
        if changed {
            // A reservation was asked for what was known before: decided again on this.
            self.reserve = false;
            self.known = match (seen, &self.known) {
                (Some(lease), _) => Known::Present(lease),
                (None, Known::Present(old)) => Known::Deleted {
                    lease_duration: old.record.lease_duration,
                    transitions: old.record.lease_transitions,
                },
                (None, Known::Unread { transitions }) => Known::Deleted {
                    lease_duration: None,
                    transitions: *transitions,
                },
                (None, Known::Deleted { .. } | Known::Absent | Known::Unknown) => Known::Absent,
            };
            if reserved_over.is_none() {
                self.observed_at = now;
            }
        }
        if let Some(lease) = self.lease() {
            self.watch_rv = Some(lease.resource_version.clone());
        }
        let holder_now = self.holder().cloned();
        // Our identity at a version this term did not write: a duplicate identity wrote it. While
        // a claim is in flight its answer decides (the watch may show our write first).
        let foreign = self.in_flight.is_none()
            && self
                .lease()
                .is_some_and(|l| self.written.as_ref() != Some(&l.resource_version));
        match &holder_now {
            None => self.step_down(LossReason::Deleted, env),
            Some(h) if !h.is(env.identity) => self.step_down(LossReason::HeldByOther, env),
            Some(_) if foreign => self.step_down(LossReason::HeldByOther, env),
            Some(_) => {}
        }
        if holder_now != holder_before {
            if let Some(holder) = holder_now {
                if !holder.is(env.identity) {
                    // Someone else's term began: a contention of ours, if any, was lost.
                    self.contending_since = None;
                }
                push_event(env.events, self.index, Event::LeaderChanged { holder });
            }
        }
    }

    /// The next request and when it is due, from the state alone: never inside the server's
    /// `Retry-After`.
    fn due(&self, timing: &Timing) -> Option<(Instant, Next)> {
        self.due_unthrottled(timing)
            .map(|(at, next)| (at.max(self.server_quiet_until), next))
    }

    fn due_unthrottled(&self, timing: &Timing) -> Option<(Instant, Next)> {
        if self.in_flight.is_some() {
            return None;
        }
        let next = match self.intent {
            Intent::Idle => return None,
            // The write is sent only while the version known is still the one our term wrote:
            // anything seen since (a deletion, another writer) sends the read, which decides.
            Intent::Release => match self.release {
                ReleaseStage::Done => return None,
                _ if self.release_rv.is_none() => Next::Finish,
                ReleaseStage::WriteDue if self.release_start() == ReleaseStage::WriteDue => {
                    Next::Send(Action::ReleaseWrite)
                }
                ReleaseStage::NotStarted | ReleaseStage::WriteDue => {
                    Next::Send(Action::ReleaseRead)
                }
            },
            Intent::Campaign | Intent::Observe => {
                // A shared slot's first state comes from its owner's stream.
                let unknown = match self.known {
                    Known::Unknown => self.watch != Watch::Shared,
                    Known::Unread { .. } => true,
                    Known::Absent | Known::Deleted { .. } | Known::Present(_) => false,
                };
                if self.must_read || unknown {
                    Next::Send(Action::Read)
                } else if self.reserve
                    && self.intent == Intent::Observe
                    && matches!(self.known, Known::Present(_))
                {
                    Next::Send(Action::Reserve)
                } else if self.leading.is_some() {
                    return Some((
                        self.renew_at.max(self.not_before),
                        Next::Send(Action::Claim),
                    ));
                } else {
                    let take = match (self.intent, &self.known) {
                        (Intent::Campaign, Known::Absent | Known::Deleted { .. }) => {
                            self.take_at(timing).map(|at| (at, Action::Create))
                        }
                        (Intent::Campaign, Known::Present(_)) => {
                            self.take_at(timing).map(|at| (at, Action::Claim))
                        }
                        _ => None,
                    };
                    let watched = matches!(self.watch, Watch::Open | Watch::Shared);
                    let poll = (!watched).then_some((self.next_poll_at, Action::Read));
                    // Backoff applies to both; a take due no later than the poll goes first.
                    let paced = |(at, action): (Instant, Action)| {
                        (at.max(self.not_before), Next::Send(action))
                    };
                    return match (take.map(paced), poll.map(paced)) {
                        (Some(t), Some(p)) if p.0 < t.0 => Some(p),
                        (Some(t), _) => Some(t),
                        (None, p) => p,
                    };
                }
            }
        };
        Some((self.not_before, next))
    }

    /// Whether the watch stream should be opened (`true`) or closed (`false`), and from when.
    fn watch_due(&self) -> Option<(Instant, bool)> {
        let wanted = match self.intent {
            Intent::Campaign | Intent::Observe => true,
            Intent::Release => self.release != ReleaseStage::Done,
            Intent::Idle => false,
        };
        match self.watch {
            Watch::Open if !wanted => Some((Instant::MIN, false)),
            Watch::Closed { reopen_at }
                if wanted && !self.must_read && !matches!(self.known, Known::Unknown) =>
            {
                Some((reopen_at, true))
            }
            _ => None,
        }
    }

    pub(crate) fn poll_timeout(&self, timing: &Timing) -> Option<Instant> {
        let deadline = self.leading.map(|l| l.deadline);
        let watch = self.watch_due().map(|(at, _)| at);
        let due = self.due(timing).map(|(at, _)| at);
        earliest([deadline, watch, due])
    }

    pub(crate) fn poll_request(
        &mut self,
        now: Instant,
        wall: MicroTime,
        env: &mut Env<'_>,
    ) -> Option<Request> {
        self.expire(now, env);
        if let Some((at, open)) = self.watch_due() {
            if now >= at {
                let op = if open {
                    self.watch = Watch::Open;
                    Operation::Watch {
                        resource_version: self.watch_rv.clone(),
                    }
                } else {
                    self.watch = Watch::Closed {
                        reopen_at: Instant::MIN,
                    };
                    Operation::Unwatch
                };
                return Some(self.request(op));
            }
        }
        let (at, next) = self.due(env.timing)?;
        if now < at {
            return None;
        }
        let action = match next {
            Next::Send(action) => action,
            Next::Finish => {
                // Nothing to write; the watch, if open, is still to be closed.
                self.finish_release(false, env);
                return self.poll_request(now, wall, env);
            }
        };
        let renewing = self.leading.is_some();
        if !renewing && matches!(action, Action::Create | Action::Claim) {
            self.contending_since.get_or_insert(now);
        }
        let mut replaced = None;
        let mut over_other = false;
        let op = match action {
            Action::Read | Action::ReleaseRead => Operation::Get,
            Action::Create => {
                let transitions = self.known_transitions().map_or(0, |t| t.saturating_add(1));
                Operation::Create(claim_record(Claim::Create { transitions }, env, wall))
            }
            Action::Claim => {
                let lease = self.lease()?;
                replaced = Some((lease.resource_version.clone(), lease.record.renew_time));
                over_other = !matches!(&lease.record.holder, Holder::None)
                    && !lease.record.holder.is(env.identity);
                let claim = if renewing {
                    Claim::Renew(&lease.record)
                } else {
                    Claim::Take(&lease.record)
                };
                Operation::Update {
                    resource_version: lease.resource_version.clone(),
                    record: claim_record(claim, env, wall),
                }
            }
            Action::ReleaseWrite => {
                // Over the version the release read found ours, whatever came in since: a
                // newer version is someone else's and gets 409.
                let lease = self.lease()?;
                replaced = Some((self.release_rv.clone()?, lease.record.renew_time));
                Operation::Update {
                    resource_version: self.release_rv.clone()?,
                    record: release_record(&lease.record, wall),
                }
            }
            Action::Reserve => {
                self.reserve = false;
                let lease = self.lease()?;
                // Only over a record this process can write back as it is: a holder too long
                // to have been kept would be blanked by the write.
                let open = matches!(lease.record.next_holder, Holder::None)
                    && matches!(&lease.record.holder, Holder::Named(h) if h != env.identity)
                    && lease.record.lease_duration.is_some()
                    && self.intent == Intent::Observe;
                if !open {
                    return None;
                }
                replaced = Some((lease.resource_version.clone(), lease.record.renew_time));
                Operation::Update {
                    resource_version: lease.resource_version.clone(),
                    record: reserve_record(&lease.record, env),
                }
            }
        };
        if action == Action::Read && renewing {
            // client-go's slow path: the cached copy cannot be renewed over, read it first.
            env.stats.slow_path_reads = env.stats.slow_path_reads.saturating_add(1);
        }
        self.in_flight = Some(InFlight {
            action,
            sent_at: now,
            replaced,
            over_other,
            renew: renewing && matches!(action, Action::Claim),
        });
        Some(self.request(op))
    }

    fn request(&self, op: Operation) -> Request {
        Request {
            slot: self.index,
            lease: self.name.clone(),
            op,
        }
    }

    fn finish_release(&mut self, written: bool, env: &mut Env<'_>) {
        self.release = ReleaseStage::Done;
        push_event(env.events, self.index, Event::Released { written });
    }

    pub(crate) fn handle_answer(&mut self, response: Response, now: Instant, env: &mut Env<'_>) {
        self.expire(now, env);
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        match (flight.action, response) {
            (Action::Read, Ok(lease)) if self.deleted_since(&lease) || self.overtaken(&lease) => {
                // Served before what the stream showed since (a newer record, or a deletion):
                // what is known stands, and a record still to be read is that deletion, seen
                // now.
                self.must_read = false;
                if self.lease().is_none() {
                    self.observe(None, now, env);
                }
                self.next_poll_at = now.saturating_add(env.jitter.retry(env.timing.retry_period()));
            }
            (Action::Read, Ok(lease)) => {
                self.must_read = false;
                self.observe(Some(lease), now, env);
                self.next_poll_at = now.saturating_add(env.jitter.retry(env.timing.retry_period()));
            }
            (Action::Read, Err(ApiError::NotFound)) => {
                self.must_read = false;
                self.observe(None, now, env);
                self.next_poll_at = now.saturating_add(env.jitter.retry(env.timing.retry_period()));
            }
            (Action::ReleaseRead, Ok(lease)) => {
                // Only over the version our term wrote last (or a reservation made over it,
                // which `observe` adopts): a record naming our identity at any other version
                // is someone else's (a duplicate identity), not ours to free.
                // A read the stream has overtaken (a reservation shown meanwhile) tells nothing
                // newer: the release is decided on what is known.
                if !self.overtaken(&lease) {
                    self.observe(Some(lease), now, env);
                }
                let (mine, version) = self.lease().map_or((false, None), |l| {
                    (
                        l.record.holder.is(env.identity),
                        Some(l.resource_version.clone()),
                    )
                });
                // A server that refused a write over the very version it still shows is not
                // written to again: that would loop at network speed until the deadline.
                let refused = self
                    .release_refused
                    .take()
                    .is_some_and(|r| Some(r) == version);
                if mine && !refused && self.release_rv.is_some() && self.release_rv == version {
                    self.release = ReleaseStage::WriteDue;
                } else {
                    self.finish_release(false, env);
                }
            }
            (Action::ReleaseRead, Err(error)) => {
                if error == ApiError::NotFound {
                    self.observe(None, now, env);
                }
                self.report(flight.action, error, env);
                self.retry_release(error, now, env);
            }
            (Action::ReleaseWrite, Ok(lease)) => {
                self.observe(Some(lease), now, env);
                self.finish_release(true, env);
            }
            (Action::ReleaseWrite, Err(ApiError::Conflict)) if now < self.release_until => {
                // Written over since it was read: by a reservation (still ours to free) or by
                // another's take (not ours). The read decides.
                self.release = ReleaseStage::NotStarted;
                self.not_before = now;
                self.release_refused = flight.replaced.as_ref().map(|(rv, _)| rv.clone());
            }
            (Action::ReleaseWrite, Err(error)) => {
                if error == ApiError::NotFound {
                    self.observe(None, now, env);
                }
                self.report(flight.action, error, env);
                // A write that timed out may have been applied: read again before writing.
                self.retry_release(error, now, env);
            }
            (Action::Create | Action::Claim, Ok(lease)) if self.superseded(&lease) => {
                // Written, then deleted or written over by another before this answer came
                // (the stream or a list showed it): as if the write had found the lease so.
                self.not_before = now;
            }
            (Action::Create | Action::Claim, Ok(lease)) => {
                let ours = lease.record.holder.is(env.identity);
                let applied = match &flight.replaced {
                    Some((rv, renew_time)) => {
                        lease.resource_version != *rv
                            && (self.leading.is_none()
                                || renews_forward(*renew_time, lease.record.renew_time))
                    }
                    None => true,
                };
                let epoch = lease.record.lease_transitions.unwrap_or(0);
                let rv = lease.resource_version.clone();
                if ours && applied {
                    // Ours before `observe` sees it, so it is not taken for a duplicate's write.
                    self.written = Some(rv.clone());
                }
                self.observe(Some(lease), now, env);
                if ours && applied {
                    if self.intent == Intent::Release {
                        // Written after the release began (a claim was in flight): free it too,
                        // at the version ours is known at (a reservation over it, if the stream
                        // showed one first).
                        self.release_rv = self.written.clone();
                        if self.release == ReleaseStage::NotStarted {
                            self.release = self.release_start();
                        }
                        self.release_until = self
                            .release_until
                            .max(leader_deadline(flight.sent_at, env.timing.renew_deadline()));
                    }
                    self.claimed(&flight, epoch, now, env);
                    self.not_before = now;
                    self.renew_at = now.saturating_add(env.timing.retry_period());
                } else {
                    // A successful write returns what was written and a new resourceVersion;
                    // anything else is a broken answer, or a write the server did not apply (an
                    // unchanged spec, say from a wall clock that stood still), which extends
                    // nothing. Backing off keeps a misbehaving server from driving a claim loop.
                    self.report(flight.action, ApiError::Malformed, env);
                    self.back_off(ApiError::Malformed, now, env);
                }
            }
            (Action::Create, Err(ApiError::AlreadyExists | ApiError::Conflict)) => {
                // Someone else created it: read before deciding anything, and take a 404 from
                // that read for its deletion.
                if !self.conflict_seen(&flight) {
                    self.known = Known::Unread {
                        transitions: self.known_transitions(),
                    };
                }
                self.after_conflict(&flight, now, env.timing);
            }
            (Action::Claim, Err(ApiError::Conflict)) => {
                // Someone else wrote first: read before deciding anything.
                self.after_conflict(&flight, now, env.timing);
            }
            (Action::Claim, Err(ApiError::NotFound)) => {
                self.observe(None, now, env);
                self.not_before = now;
            }
            (Action::Create | Action::Claim, Err(error)) => {
                self.report(flight.action, error, env);
                self.back_off(error, now, env);
            }
            (Action::Read, Err(error)) => {
                self.report(flight.action, error, env);
                self.back_off(error, now, env);
            }
            // Unless the stream has already shown what followed it (a release carrying it).
            (Action::Reserve, Ok(lease)) if !self.overtaken(&lease) => {
                self.observe(Some(lease), now, env);
            }
            (Action::Reserve, Ok(_)) => {}
            (Action::Reserve, Err(ApiError::Conflict)) => {
                // The lease changed first (a take, a release, another's reservation).
                self.after_conflict(&flight, now, env.timing);
            }
            (Action::Reserve, Err(ApiError::NotFound)) => {
                self.observe(None, now, env);
                self.not_before = now;
            }
            (Action::Reserve, Err(error)) => {
                self.report(flight.action, error, env);
                self.back_off(error, now, env);
            }
        }
    }

    /// Whether `seen` is older than a deletion the slot already knows of: an answer the
    /// stream overtook (it showed the version, then the lease deleted), or a list taken after.
    /// Whatever the slot knows now (missing, or re-created since), that record is gone.
    fn deleted_since(&self, seen: &Lease) -> bool {
        self.deleted_after
            .as_ref()
            .is_some_and(|gone| seen.resource_version.is_not_newer_than(gone))
    }

    /// Whether our write's answer `seen` is older than a deletion known, or than a record
    /// known with another spec: someone else wrote since (one request of ours is in flight at
    /// a time, so a newer record that is not a reservation over ours is not ours).
    fn superseded(&self, seen: &Lease) -> bool {
        self.deleted_since(seen)
            || (self.overtaken(seen)
                && self
                    .lease()
                    .is_some_and(|known| !known.record.same_spec(&seen.record)))
    }

    /// Whether `seen` is older than the version already known (a numerically smaller
    /// resourceVersion): an answer the stream has overtaken.
    fn overtaken(&self, seen: &Lease) -> bool {
        self.lease().is_some_and(|known| {
            seen.resource_version != known.resource_version
                && seen
                    .resource_version
                    .is_not_newer_than(&known.resource_version)
        })
    }

    /// Whether the version that beat our write is already known: the owner's stream delivered
    /// it while the write was in flight.
    fn conflict_seen(&self, flight: &InFlight) -> bool {
        let shared = self.watch == Watch::Shared;
        match (self.lease(), &flight.replaced) {
            (Some(lease), Some((sent_over, _))) => shared && lease.resource_version != *sent_over,
            (Some(_), None) => shared,
            (None, _) => false,
        }
    }

    /// Our write met another's: read the lease before deciding anything. A shared slot need
    /// not: the owner's stream delivers the write that won (or already has), so the read is
    /// put off a retry period and sent only if that write has not arrived by then (the stream
    /// was down). Of a hundred members that lose one race, none reads.
    fn after_conflict(&mut self, flight: &InFlight, now: Instant, timing: &Timing) {
        if self.conflict_seen(flight) {
            self.not_before = now;
            return;
        }
        self.must_read = true;
        self.not_before = if self.watch == Watch::Shared {
            now.saturating_add(timing.retry_period())
        } else {
            now
        };
    }

    /// A write naming us succeeded: lead until `renew_deadline` after it was sent, unless that
    /// has already passed (a slow answer, or a pause while it was in flight), or it renewed a
    /// term that has ended since (its epoch belongs to that term; a new one must take the lease
    /// anew, with a new epoch, once the record is waited out).
    fn claimed(&mut self, flight: &InFlight, epoch: u32, now: Instant, env: &mut Env<'_>) {
        let deadline = leader_deadline(flight.sent_at, env.timing.renew_deadline());
        let term_ended = flight.renew && self.leading.is_none();
        if self.intent != Intent::Campaign || now >= deadline || term_ended {
            if self.leading.is_none() {
                self.written = None;
            }
            return;
        }
        match &mut self.leading {
            Some(l) => l.deadline = deadline,
            None => {
                self.leading = Some(Leadership {
                    since: now,
                    deadline,
                    epoch,
                });
                env.stats.acquisitions = env.stats.acquisitions.saturating_add(1);
                if flight.over_other {
                    env.stats.takeovers = env.stats.takeovers.saturating_add(1);
                }
                let contended = self
                    .contending_since
                    .take()
                    .map_or(Duration::from_ticks(0), |started| {
                        now.saturating_duration_since(started)
                    });
                push_event(
                    env.events,
                    self.index,
                    Event::BecameLeader { epoch, contended },
                );
            }
        }
        push_event(env.events, self.index, Event::Renewed { deadline });
    }

    /// A release read or write failed: a transient failure is retried (from the read) until
    /// the released term's deadline, after which the lease expires on its own anyway; anything
    /// else ends the release unwritten.
    fn retry_release(&mut self, error: ApiError, now: Instant, env: &mut Env<'_>) {
        let transient = matches!(
            error,
            ApiError::Timeout
                | ApiError::Transport
                | ApiError::Server { .. }
                | ApiError::TooManyRequests { .. }
                | ApiError::Malformed
        );
        self.server_quiet_until = now.saturating_add(server_wait(error));
        if transient && now < self.release_until {
            self.release = ReleaseStage::NotStarted;
            let wait = env.timing.retry_period().max(server_wait(error));
            self.not_before = now.saturating_add(wait);
        } else {
            self.finish_release(false, env);
        }
    }

    fn report(&self, action: Action, error: ApiError, env: &mut Env<'_>) {
        let verb = action.verb();
        push_event(env.events, self.index, Event::RequestFailed { verb, error });
    }

    /// After a failure: a leader retries on the plain retry period (it has a deadline to meet);
    /// everyone else with jitter, and never sooner than the server's `Retry-After`.
    fn back_off(&mut self, error: ApiError, now: Instant, env: &mut Env<'_>) {
        let retry = env.timing.retry_period();
        let wait = if self.leading.is_some() {
            retry
        } else {
            env.jitter.retry(retry)
        };
        self.server_quiet_until = now.saturating_add(server_wait(error));
        self.not_before = now.saturating_add(wait.max(server_wait(error)));
    }

    pub(crate) fn handle_watch_event(
        &mut self,
        event: WatchEvent,
        now: Instant,
        env: &mut Env<'_>,
    ) {
        self.expire(now, env);
        // A shared slot waiting to read after a conflict: the stream's event is what the read
        // would have told.
        let answers_read = self.watch == Watch::Shared && self.must_read;
        match event {
            WatchEvent::Changed(lease) => {
                if !self
                    .streamed
                    .as_ref()
                    .is_some_and(|rv| lease.resource_version.is_not_newer_than(rv))
                {
                    self.streamed = Some(lease.resource_version.clone());
                }
                let stale = self.lease().is_some_and(|old| {
                    lease
                        .resource_version
                        .is_not_newer_than(&old.resource_version)
                });
                if !stale {
                    self.observe(Some(lease), now, env);
                    if answers_read {
                        self.must_read = false;
                        self.not_before = now;
                    }
                }
            }
            WatchEvent::Deleted => {
                // After every version the stream showed, in order.
                self.deleted_after = self.streamed.clone();
                self.observe(None, now, env);
                if answers_read {
                    self.must_read = false;
                    self.not_before = now;
                }
            }
            WatchEvent::Bookmark(rv) | WatchEvent::Synced(rv) => self.watch_rv = Some(rv),
            // Every reopen waits a jittered retry period: a server that ends or expires each
            // watch at once (a quiet lease whose version left its history answers 410 to every
            // resume) must not drive a loop at network speed. Reads cover the gap.
            WatchEvent::Ended | WatchEvent::Failed | WatchEvent::Forbidden => {
                let wait = env.jitter.retry(env.timing.retry_period());
                self.close_watch(now.saturating_add(wait));
            }
            WatchEvent::Expired => {
                let wait = env.jitter.retry(env.timing.retry_period());
                self.close_watch(now.saturating_add(wait));
                self.must_read = true;
                self.watch_rv = None;
            }
        }
    }

    fn close_watch(&mut self, reopen_at: Instant) {
        if !matches!(self.watch, Watch::Disabled | Watch::Shared) {
            self.watch = Watch::Closed { reopen_at };
        }
    }
}

/// Whether a renew's answer moved `renewTime` forward from the record it replaced: a wall clock
/// that stood still (or stepped back) writes nothing new, and the server stores nothing.
fn renews_forward(before: Option<MicroTime>, after: Option<MicroTime>) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => after > before,
        (None, after) => after.is_some(),
        (Some(_), None) => false,
    }
}

/// Which write naming us a claim is.
enum Claim<'a> {
    /// A new Lease object, with this `leaseTransitions`.
    Create { transitions: u32 },
    /// A new term over this record: even when it names our identity (a duplicate, or a term of
    /// ours that lapsed), so that every term has its own epoch.
    Take(&'a LeaseRecord),
    /// The current term's renew over the record it wrote last.
    Renew(&'a LeaseRecord),
}

/// The record a claim writes: us as holder with our duration and a fresh `renewTime`; a new
/// term sets `acquireTime` and `leaseTransitions + 1`, a renew keeps both, as client-go does.
fn claim_record(claim: Claim<'_>, env: &Env<'_>, wall: MicroTime) -> LeaseRecord {
    let (acquire_time, transitions, next_holder) = match claim {
        Claim::Create { transitions } => (wall, transitions, Holder::None),
        // A take consumes the reservation (ours, or one waited out).
        Claim::Take(r) => (
            wall,
            r.lease_transitions.unwrap_or(0).saturating_add(1),
            Holder::None,
        ),
        Claim::Renew(r) => (
            r.acquire_time.unwrap_or(wall),
            r.lease_transitions.unwrap_or(0),
            r.next_holder.clone(),
        ),
    };
    LeaseRecord {
        holder: Holder::Named(env.identity.clone()),
        lease_duration: Some(env.timing.lease_duration()),
        acquire_time: Some(acquire_time),
        renew_time: Some(wall),
        lease_transitions: Some(transitions),
        next_holder,
    }
}

/// client-go's release: empty holder, `leaseDurationSeconds: 1`, transitions kept; and the
/// reservation kept, so that the member that reserved the next term takes it and no other.
fn release_record(current: &LeaseRecord, wall: MicroTime) -> LeaseRecord {
    LeaseRecord {
        holder: Holder::None,
        lease_duration: Some(Duration::from_secs(1)),
        acquire_time: Some(wall),
        renew_time: Some(wall),
        lease_transitions: current.lease_transitions,
        next_holder: current.next_holder.clone(),
    }
}

/// The record a reservation writes: the current one, naming us as its next holder.
fn reserve_record(current: &LeaseRecord, env: &Env<'_>) -> LeaseRecord {
    LeaseRecord {
        next_holder: Holder::Named(env.identity.clone()),
        ..current.clone()
    }
}

/// The client-go rules above, each driven through the thinnest owner of one slot, an
/// [`crate::Elector`].
#[cfg(test)]
mod tests {
    use crate::testkit::*;
    use crate::{
        ApiError, Duration, Event, Holder, Lease, LossReason, Machine, Operation, SlotEvent,
        WatchEvent,
    };

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

    /// A renew answered after its term's deadline must not start a term on the epoch the ended
    /// term wrote: the epoch is the fencing token, and that one was already handed out.
    #[test]
    fn a_renew_answered_after_the_deadline_begins_no_term_on_the_old_epoch() {
        let mut e = leader("a", false);
        let renew = poll(&mut e, ms(2_000)).unwrap();
        // The term's deadline (10 s after the create) passes with the renew in flight.
        assert_eq!(poll(&mut e, ms(10_000)), None);
        let renewed = stored(&renew, 2);
        e.handle_answer(0, Ok(renewed.clone()), ms(10_500));
        assert!(!e.is_leader(ms(10_500)));
        assert!(
            !events(&mut e)
                .iter()
                .any(|ev| matches!(ev, Event::BecameLeader { .. })),
            "a new term on epoch 0"
        );
        let (at, op) = next_write(&mut e, 10_500, &renewed);
        assert_eq!(
            at, 25_500,
            "the record it renewed is waited out like any other"
        );
        let Operation::Update { record, .. } = op else {
            panic!("{op:?}")
        };
        assert_eq!(record.lease_transitions, Some(1), "a new term, a new epoch");
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

    /// Its renew in flight does not make another holder's record less decisive: whatever that
    /// answer says, another process took the lease, and the leader stops now.
    #[test]
    fn a_leader_that_sees_another_holder_while_renewing_steps_down_at_once() {
        let mut e = leader("a", true);
        let renew = poll(&mut e, ms(2_000)).unwrap();
        assert!(matches!(renew, Operation::Update { .. }));
        e.handle_watch_event(0, WatchEvent::Changed(lease(2, Some("b"), 1)), ms(2_001));
        assert!(!e.is_leader(ms(2_001)));
        assert!(events(&mut e).contains(&Event::LostLeadership {
            reason: LossReason::HeldByOther
        }));
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

    /// A wall clock that stood still writes the renewTime already stored: the spec is
    /// unchanged, so the server stores nothing. A new version carrying that same renewTime was
    /// not written by this renew, and this term did not write it.
    #[test]
    fn a_new_version_with_the_renew_time_already_stored_is_not_our_renew() {
        let mut e = leader("a", false);
        let stood_still = e.lease().unwrap().record.renew_time.unwrap();
        let renew = e.poll_request(ms(2_000), stood_still).unwrap();
        e.handle_answer(0, Ok(stored(&renew.op, 2)), ms(2_001));
        assert!(!e.is_leader(ms(2_001)));
        assert_eq!(e.deadline(), None);
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
                Event::BecameLeader {
                    epoch: 0,
                    contended: Duration::from_millis(3)
                },
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

    /// A leader (watching or not) that closed at 500 ms and sent its release write then.
    fn releasing(watch: bool) -> crate::Elector {
        let mut e = leader("a", watch);
        e.close(ms(500));
        assert!(matches!(
            poll(&mut e, ms(500)),
            Some(Operation::Update { .. })
        ));
        e
    }

    /// `lease` as a pool member's reservation leaves it: the spec unchanged, `who` named as
    /// the next holder, at `version`.
    fn reserved(lease: &crate::Lease, version: u64, who: &str) -> crate::Lease {
        let mut l = lease.clone();
        l.resource_version = rv(version);
        l.record.next_holder = Holder::Named(id(who));
        l
    }

    /// A reservation is nobody's renew: the expiry still counts from the last change of the
    /// spec, as client-go's (which compares the spec alone).
    #[test]
    fn a_write_that_only_reserves_the_next_term_restarts_no_expiry_clock() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        let held = lease(5, Some("b"), 2);
        e.handle_answer(0, Ok(held.clone()), ms(0));
        assert_eq!(poll(&mut e, ms(0)), None);
        assert_eq!(e.poll_timeout(), Some(ms(15_000)));
        e.handle_watch_event(0, WatchEvent::Changed(reserved(&held, 6, "c")), ms(10_000));
        assert_eq!(e.poll_timeout(), Some(ms(15_000)));
        let (at, op) = next_write(&mut e, 10_000, &reserved(&held, 6, "c"));
        assert_eq!(at, 15_000);
        let Operation::Update {
            resource_version,
            record,
        } = &op
        else {
            panic!("{op:?}")
        };
        assert_eq!(resource_version, &rv(6));
        assert_eq!(
            record.next_holder,
            Holder::None,
            "a take ends the reservation"
        );
    }

    /// A reservation made over the version the leader wrote keeps it leading: its renew and
    /// its release write over the reservation's version and carry it on.
    #[test]
    fn a_leader_renews_and_releases_over_a_reservation_of_its_term() {
        let mut e = leader("a", true);
        let current = reserved(e.lease().unwrap(), 2, "c");
        e.handle_watch_event(0, WatchEvent::Changed(current.clone()), ms(500));
        assert!(e.is_leader(ms(500)), "{:?}", events(&mut e));
        let Some(Operation::Update {
            resource_version,
            record,
        }) = poll(&mut e, ms(2_000))
        else {
            panic!()
        };
        assert_eq!(resource_version, rv(2));
        assert_eq!(record.next_holder, Holder::Named(id("c")));
        let renewed = Lease {
            resource_version: rv(3),
            record,
        };
        e.handle_answer(0, Ok(renewed.clone()), ms(2_001));
        assert!(e.is_leader(ms(2_001)));
        e.close(ms(2_500));
        let Some(Operation::Update {
            resource_version,
            record,
        }) = poll(&mut e, ms(2_500))
        else {
            panic!()
        };
        assert_eq!(resource_version, rv(3));
        assert_eq!(record.holder, Holder::None);
        assert_eq!(
            record.next_holder,
            Holder::Named(id("c")),
            "the reserved member takes next"
        );
    }

    /// A release whose write meets a conflict once the term's deadline has come reads
    /// nothing: whoever wrote, the term is over, and the release ends unwritten.
    #[test]
    fn a_release_conflict_at_the_deadline_ends_it_unwritten() {
        let mut e = leader("a", false);
        let deadline = e.deadline().expect("leading");
        e.close(ms(500));
        assert!(matches!(
            poll(&mut e, ms(500)),
            Some(Operation::Update { .. })
        ));
        e.handle_answer(0, Err(ApiError::Conflict), deadline);
        assert_eq!(poll(&mut e, deadline), None);
        assert!(events(&mut e).contains(&Event::Released { written: false }));
    }

    /// A release that meets a reservation written while it was in flight reads the lease and
    /// writes over the reservation's version; one that meets another's take frees nothing.
    #[test]
    fn a_release_that_meets_a_conflict_reads_and_frees_only_its_own_term() {
        for (theirs, freed) in [(true, false), (false, true)] {
            let mut e = leader("a", false);
            e.close(ms(500));
            assert!(matches!(
                poll(&mut e, ms(500)),
                Some(Operation::Update { .. })
            ));
            e.handle_answer(0, Err(ApiError::Conflict), ms(501));
            assert_eq!(poll(&mut e, ms(501)), Some(Operation::Get));
            let mine = e.lease().cloned().unwrap();
            let now = if theirs {
                lease(2, Some("b"), 1)
            } else {
                reserved(&mine, 2, "c")
            };
            e.handle_answer(0, Ok(now), ms(502));
            let write = poll(&mut e, ms(502));
            if freed {
                let Some(Operation::Update {
                    resource_version, ..
                }) = write
                else {
                    panic!("{write:?}")
                };
                assert_eq!(resource_version, rv(2));
            } else {
                assert_eq!(write, None);
                assert!(events(&mut e).contains(&Event::Released { written: false }));
            }
        }
    }

    /// A reservation the stream shows before the 409 of the release it beat: the read that
    /// follows finds it over our version, and the release is written over it.
    #[test]
    fn a_release_beaten_by_a_reservation_seen_first_is_written_over_it() {
        let mut e = releasing(true);
        let now = reserved(e.lease().unwrap(), 2, "c");
        e.handle_watch_event(0, WatchEvent::Changed(now.clone()), ms(501));
        e.handle_answer(0, Err(ApiError::Conflict), ms(502));
        let mut write = poll(&mut e, ms(502));
        if write == Some(Operation::Get) {
            e.handle_answer(0, Ok(now), ms(503));
            write = poll(&mut e, ms(503));
        }
        let Some(Operation::Update {
            resource_version,
            record,
        }) = write
        else {
            panic!("{write:?}: {:?}", events(&mut e))
        };
        assert_eq!(resource_version, rv(2));
        assert_eq!(record.next_holder, Holder::Named(id("c")));
    }

    /// A release's read answered with a version the stream has already overtaken (our own,
    /// then a reservation over it): decided on the newer, the release is written.
    #[test]
    fn a_release_read_overtaken_by_the_stream_is_decided_on_the_newer() {
        let mut e = releasing(true);
        e.handle_answer(0, Err(ApiError::Timeout), ms(600));
        let mine = e.lease().cloned().unwrap();
        let (at, op) = next_write_or_read(&mut e, 600);
        assert_eq!(op, Operation::Get);
        e.handle_watch_event(0, WatchEvent::Changed(reserved(&mine, 2, "c")), ms(at));
        e.handle_answer(0, Ok(mine), ms(at + 1));
        let write = poll(&mut e, ms(at + 1));
        assert!(
            matches!(&write, Some(Operation::Update { resource_version, .. }) if *resource_version == rv(2)),
            "{write:?}: {:?}",
            events(&mut e)
        );
    }

    /// A renew answered after the stream already showed a reservation over it: the answer is
    /// the older record with the same spec, so the newer (reserved) one is kept, and it is
    /// still ours: the next renew is written over it, carrying the reservation, and the
    /// leader does not take it for a duplicate identity's write.
    #[test]
    fn a_renew_answered_after_a_reservation_over_it_keeps_the_reserved_record_as_ours() {
        let mut e = leader("a", true);
        let Some(renew) = poll(&mut e, ms(2_000)) else {
            panic!("no renew")
        };
        let renewed = stored(&renew, 2);
        let over = reserved(&renewed, 3, "c");
        e.handle_watch_event(0, WatchEvent::Changed(over.clone()), ms(2_001));
        e.handle_answer(0, Ok(renewed), ms(2_002));
        assert!(e.is_leader(ms(2_002)));
        assert_eq!(e.lease(), Some(&over));
        // The stream shows it again (a relist after a reconnect): still ours.
        e.handle_watch_event(0, WatchEvent::Changed(over.clone()), ms(2_003));
        assert!(e.is_leader(ms(2_003)));
        let Some(next) = poll(&mut e, ms(4_002)) else {
            panic!("no second renew")
        };
        let Operation::Update {
            resource_version,
            record,
        } = &next
        else {
            panic!("{next:?}")
        };
        assert_eq!(resource_version, &rv(3));
        assert_eq!(record.next_holder, Holder::Named(id("c")));
        e.handle_answer(0, Ok(stored(&next, 4)), ms(4_003));
        assert!(e.is_leader(ms(4_003)));
        assert!(
            !events(&mut e)
                .iter()
                .any(|ev| matches!(ev, Event::LostLeadership { .. })),
            "kept the lead"
        );
    }

    /// A close while a renew is in flight frees that renew's term too. When the stream showed
    /// a reservation over the renew before its answer came, the release is written over the
    /// reservation's version at once, not over the renew's (a 409 and a read later).
    #[test]
    fn a_release_behind_a_renew_overtaken_by_a_reservation_is_written_over_the_reservation() {
        let mut e = leader("a", true);
        let Some(renew) = poll(&mut e, ms(2_000)) else {
            panic!("no renew")
        };
        e.close(ms(2_001));
        let renewed = stored(&renew, 2);
        let over = reserved(&renewed, 3, "c");
        e.handle_watch_event(0, WatchEvent::Changed(over), ms(2_002));
        e.handle_answer(0, Ok(renewed), ms(2_003));
        let write = poll(&mut e, ms(2_003));
        let Some(Operation::Update {
            resource_version,
            record,
        }) = &write
        else {
            panic!("{write:?}")
        };
        assert_eq!(resource_version, &rv(3));
        assert_eq!(record.holder, Holder::None);
        assert_eq!(record.next_holder, Holder::Named(id("c")));
    }

    /// The first request the elector sends from `from_ms` on, in steps of 10 ms.
    fn next_write_or_read(e: &mut crate::Elector, from_ms: u64) -> (u64, Operation) {
        (from_ms..from_ms + 60_000)
            .step_by(10)
            .find_map(|t| poll(e, ms(t)).map(|op| (t, op)))
            .expect("a request within a minute")
    }

    /// Our identity at a version this term did not write stays someone else's, reservation
    /// or not, when its spec is not the one this term wrote.
    #[test]
    fn a_reservation_over_a_record_we_did_not_write_is_still_a_duplicates() {
        let mut e = leader("a", true);
        let mut theirs = lease(7, Some("a"), 4);
        theirs.record.next_holder = Holder::Named(id("c"));
        e.handle_watch_event(0, WatchEvent::Changed(theirs), ms(500));
        assert!(!e.is_leader(ms(500)));
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
    fn contention_counts_from_the_first_take_attempt_across_conflicts() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(0));
        assert!(matches!(
            poll(&mut e, ms(0)),
            Some(Operation::Update { .. })
        ));
        e.handle_answer(0, Err(ApiError::Conflict), ms(1));
        assert_eq!(poll(&mut e, ms(1)), Some(Operation::Get));
        // Still free (the conflicting writer released at once): take again.
        e.handle_answer(0, Ok(lease(6, None, 1)), ms(2));
        let take = poll(&mut e, ms(2)).unwrap();
        e.handle_answer(0, Ok(stored(&take, 7)), ms(40));
        let became = events(&mut e)
            .into_iter()
            .find(|ev| matches!(ev, Event::BecameLeader { .. }));
        assert_eq!(
            became,
            Some(Event::BecameLeader {
                epoch: 2,
                contended: Duration::from_millis(40)
            }),
            "from the first attempt at 0 ms, not the winning one at 2 ms"
        );
    }

    #[test]
    fn another_holders_term_ends_a_contention() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 0)), ms(0));
        poll(&mut e, ms(0)).unwrap();
        e.handle_answer(0, Err(ApiError::Conflict), ms(1));
        poll(&mut e, ms(1));
        // b won: its term is seen, and a's attempt is over.
        e.handle_answer(0, Ok(lease(6, Some("b"), 1)), ms(2));
        // b's lease expires unrenewed; a takes it 15 s after it last saw it change.
        let (at, take) = next_write(&mut e, 2, &lease(6, Some("b"), 1));
        assert_eq!(at, 15_002);
        e.handle_answer(0, Ok(stored(&take, 8)), ms(15_012));
        assert!(events(&mut e).contains(&Event::BecameLeader {
            epoch: 2,
            contended: Duration::from_millis(10)
        }));
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

    /// The release writes over the version its term wrote last, with no read first: the write
    /// carries that resourceVersion, so the server applies it only if nobody wrote since.
    #[test]
    fn release_writes_empty_holder_and_duration_one_over_the_version_it_wrote() {
        let mut e = leader("a", false);
        e.close(ms(500));
        assert!(
            !e.is_leader(ms(500)),
            "steps down before the release is written"
        );
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
        // (The write over our version that meets a newer one: see
        // `a_release_that_meets_a_conflict_reads_and_frees_only_its_own_term`.)
        // A newer holder seen before the release: nothing of ours is left to free.
        let mut e = leader("a", false);
        e.handle_watch_event(0, WatchEvent::Changed(lease(4, Some("b"), 1)), ms(400));
        e.close(ms(500));
        assert_eq!(poll(&mut e, ms(500)), None);
        assert!(e.is_closed());
    }

    #[test]
    fn a_release_that_meets_a_transient_error_retries_until_the_deadline() {
        let mut e = releasing(false);
        e.handle_answer(0, Err(ApiError::Timeout), ms(3_000));
        assert!(!e.is_closed());
        assert_eq!(poll(&mut e, ms(4_999)), None);
        // The write that timed out may have been applied: read before writing again.
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

    /// A lease deleted under a release has nothing left to free; what it knew is forgotten, as
    /// on any read, and the release ends unwritten. Other failures keep what was known.
    #[test]
    fn a_release_that_finds_the_lease_deleted_ends_and_forgets_it() {
        let mut e = releasing(false);
        e.handle_answer(0, Err(ApiError::NotFound), ms(501));
        assert_eq!(e.lease(), None);
        assert!(e.is_closed());
        assert!(events(&mut e).contains(&Event::Released { written: false }));

        let mut e = leader("a", false);
        e.close(ms(500));
        poll(&mut e, ms(500)).unwrap();
        e.handle_answer(0, Err(ApiError::Timeout), ms(501));
        assert_eq!(poll(&mut e, ms(2_501)), Some(Operation::Get));
        e.handle_answer(0, Err(ApiError::NotFound), ms(2_502));
        assert_eq!(e.lease(), None);
        assert!(e.is_closed());
    }

    #[test]
    fn a_release_that_fails_for_a_while_keeps_what_it_knew() {
        let mut e = releasing(false);
        e.handle_answer(0, Err(ApiError::Timeout), ms(501));
        assert_eq!(e.lease().map(|l| &l.resource_version), Some(&rv(1)));
        assert_eq!(poll(&mut e, ms(2_501)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(1, Some("a"), 0)), ms(2_502));
        assert!(matches!(
            poll(&mut e, ms(2_502)),
            Some(Operation::Update { .. })
        ));
        e.handle_answer(0, Err(ApiError::Timeout), ms(2_503));
        assert_eq!(e.lease().map(|l| &l.resource_version), Some(&rv(1)));
        assert!(!e.is_closed(), "retried until the deadline");
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
        poll(&mut e, ms(500)).unwrap();
        e.handle_answer(0, Err(ApiError::Timeout), ms(501));
        assert_eq!(poll(&mut e, ms(2_501)), Some(Operation::Get));
        e.handle_answer(0, Ok(lease(2, Some("a"), 1)), ms(2_502));
        assert_eq!(poll(&mut e, ms(2_502)), None, "no release write");
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
        let Some(Operation::Update {
            record,
            resource_version,
        }) = poll(&mut e, ms(2))
        else {
            panic!("the take it wrote is freed")
        };
        assert_eq!(record.holder, Holder::None);
        assert_eq!(resource_version, rv(6), "over the version the take wrote");
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
            assert!(now < 50 * 4_400, "{reads} reads in {now} ms");
        }
    }

    #[test]
    fn with_a_watch_a_follower_sends_no_polls_and_wakes_at_expiry() {
        let mut e = elector("a", true);
        assert_eq!(
            e.poll_request(ms(0), WALL).map(|r| r.op),
            Some(Operation::Get),
            "read first: the watch starts from the version read"
        );
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
            let (mut watches, mut reads) = (0, 0);
            let mut now = 0;
            while now < 60_000 {
                match e.poll_request(ms(now), wall_at(ms(now))).map(|r| r.op) {
                    Some(Operation::Watch { .. }) => {
                        watches += 1;
                        e.handle_watch_event(0, ending.clone(), ms(now));
                    }
                    Some(Operation::Get) => {
                        // The holder keeps renewing, so the follower never takes over.
                        reads += 1;
                        assert!(reads < 100, "{reads} reads in {now} ms");
                        e.handle_answer(0, Ok(lease(5 + now, Some("b"), 2)), ms(now))
                    }
                    Some(other) => panic!("{other:?}"),
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
    fn a_watch_resumes_from_the_last_bookmark() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        poll(&mut e, ms(0));
        e.handle_watch_event(0, WatchEvent::Bookmark(rv(9)), ms(1_000));
        e.handle_watch_event(0, WatchEvent::Ended, ms(2_000));
        // Polls fill the gap until the watch reopens; these fail, so nothing newer is read.
        let reopen = (2_000..10_000)
            .find_map(|t| match e.poll_request(ms(t), WALL).map(|r| r.op) {
                Some(Operation::Get) => {
                    e.handle_answer(0, Err(ApiError::Timeout), ms(t));
                    None
                }
                other => other,
            })
            .unwrap();
        assert_eq!(
            reopen,
            Operation::Watch {
                resource_version: Some(rv(9))
            }
        );
    }

    #[test]
    fn only_a_later_renew_time_is_a_renew() {
        use super::renews_forward;
        let t = crate::MicroTime::from_unix_micros;
        assert!(renews_forward(Some(t(1)), Some(t(2))));
        assert!(!renews_forward(Some(t(2)), Some(t(2))));
        assert!(!renews_forward(Some(t(2)), Some(t(1))));
        assert!(renews_forward(None, Some(t(1))));
        assert!(!renews_forward(Some(t(1)), None));
        assert!(!renews_forward(None, None));
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
            assert!(now < 60_000, "no take within a minute");
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

    /// Backoff holds back the take and the poll alike; when it ends, the take goes first: it is
    /// due and carries the version read, so a stale one only gets a 409.
    #[test]
    fn a_backoff_that_outlasts_the_expiry_ends_with_the_take() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 2)), ms(0));
        let at = e.poll_timeout().unwrap();
        assert_eq!(poll(&mut e, at), Some(Operation::Get));
        let error = ApiError::TooManyRequests {
            retry_after: Some(Duration::from_secs(30)),
        };
        e.handle_answer(0, Err(error), at);
        let end = at + Duration::from_secs(30);
        assert_eq!(e.poll_timeout(), Some(end));
        let Some(Operation::Update { record, .. }) = poll(&mut e, end) else {
            panic!("the take is due first")
        };
        assert!(record.holder.is(&id("a")));
    }

    /// A release, or a rejoin after it, starts at once only if the server has not asked for
    /// quiet: its Retry-After binds every request, whatever the owner wants meanwhile.
    #[test]
    fn a_release_or_a_rejoin_waits_out_the_retry_after() {
        let mut e = leader("a", false);
        poll(&mut e, ms(2_000)).unwrap();
        let error = ApiError::TooManyRequests {
            retry_after: Some(Duration::from_secs(5)),
        };
        e.handle_answer(0, Err(error), ms(2_000));
        e.close(ms(2_100));
        assert_eq!(
            poll(&mut e, ms(6_999)),
            None,
            "a release write inside the wait"
        );
        assert!(matches!(
            poll(&mut e, ms(7_000)),
            Some(Operation::Update { .. })
        ));
        e.handle_answer(0, Err(error), ms(7_000));
        assert_eq!(poll(&mut e, ms(12_000)), Some(Operation::Get));
        // Past the term's deadline the release gives up.
        e.handle_answer(0, Err(error), ms(12_000));
        assert!(e.is_closed());
        e.rejoin(ms(12_000));
        assert_eq!(poll(&mut e, ms(16_999)), None, "a read inside the wait");
        assert_eq!(poll(&mut e, ms(17_000)), Some(Operation::Get));
    }

    /// A release waiting out a Retry-After, its write due, that sees the lease change meanwhile
    /// reads before writing: the version it would write over is no longer the one it knows.
    #[test]
    fn a_release_that_sees_the_lease_change_while_it_waits_reads_first() {
        let mut e = leader("a", false);
        poll(&mut e, ms(2_000)).unwrap();
        let error = ApiError::TooManyRequests {
            retry_after: Some(Duration::from_secs(5)),
        };
        e.handle_answer(0, Err(error), ms(2_000));
        e.close(ms(2_100));
        e.handle_watch_event(0, WatchEvent::Changed(lease(9, None, 0)), ms(3_000));
        assert_eq!(poll(&mut e, ms(7_000)), Some(Operation::Get));
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

    /// A watching elector whose take (of a free lease at version 5, written as 6) the stream
    /// shows and then shows deleted, at 3 ms, the take's answer still to come: the elector and
    /// that answer.
    fn take_shown_then_deleted() -> (crate::Elector, Lease) {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, None, 2)), ms(0));
        let take = poll(&mut e, ms(1)).expect("a take");
        let taken = stored(&take, 6);
        e.handle_watch_event(0, WatchEvent::Changed(taken.clone()), ms(2));
        e.handle_watch_event(0, WatchEvent::Deleted, ms(3));
        (e, taken)
    }

    /// A watching elector that read `current` at 0 ms and opened its watch from it.
    fn watching_from(current: &Lease) -> crate::Elector {
        let mut e = elector("a", true);
        assert_eq!(poll(&mut e, ms(0)), Some(Operation::Get));
        e.handle_answer(0, Ok(current.clone()), ms(0));
        let watch = e.poll_request(ms(0), wall_at(ms(0))).map(|r| r.op);
        assert!(matches!(watch, Some(Operation::Watch { .. })), "{watch:?}");
        e
    }

    /// The stream is faster than the answer: it shows our take and then the lease deleted
    /// (`kubectl delete`) before the take's answer arrives. (A stream delivers in version
    /// order, so a take committed while it was open shows before its deletion.) That answer is
    /// older than the deletion: acting on it would lead a lease that no longer exists, while
    /// another member, having seen it missing, may create it and lead too.
    #[test]
    fn a_take_answer_overtaken_by_the_deletion_leads_nothing() {
        let (mut e, taken) = take_shown_then_deleted();
        e.handle_answer(0, Ok(taken), ms(4));
        assert!(!e.is_leader(ms(4)));
        assert!(
            !events(&mut e)
                .iter()
                .any(|ev| matches!(ev, Event::BecameLeader { .. }))
        );
        assert_eq!(e.lease(), None, "still known deleted");
    }

    /// As above, and another member, which saw the lease only missing, created it at once:
    /// the stream shows that too before our answer comes. The answer is still older than
    /// the deletion.
    #[test]
    fn a_take_answer_overtaken_by_a_deletion_and_a_re_creation_leads_nothing() {
        let (mut e, taken) = take_shown_then_deleted();
        let b = lease(8, Some("b"), 0);
        e.handle_watch_event(0, WatchEvent::Changed(b.clone()), ms(4));
        e.handle_answer(0, Ok(taken), ms(5));
        assert!(!e.is_leader(ms(5)));
        assert_eq!(e.lease(), Some(&b), "b's term stands");
    }

    /// A stream that ends between a deletion and the re-creation reopens from the version
    /// before the deletion: the server replays both, and the re-created lease is seen.
    #[test]
    fn a_stream_reopened_before_a_deletion_sees_the_lease_re_created_after_it() {
        let mut e = watching_from(&lease(5, Some("b"), 1));
        e.handle_watch_event(0, WatchEvent::Changed(lease(6, Some("c"), 2)), ms(10));
        e.handle_watch_event(0, WatchEvent::Deleted, ms(20));
        e.handle_watch_event(0, WatchEvent::Ended, ms(30));
        let mut now = 30;
        let resume = loop {
            match e.poll_request(ms(now), wall_at(ms(now))).map(|r| r.op) {
                Some(Operation::Watch { resource_version }) => break resource_version,
                Some(Operation::Get) => e.handle_answer(0, Err(ApiError::NotFound), ms(now)),
                Some(other) => panic!("{other:?}"),
                None => now += 10,
            }
        };
        assert_eq!(resume, Some(rv(6)));
        e.handle_watch_event(0, WatchEvent::Deleted, ms(now));
        let d = lease(8, Some("d"), 0);
        e.handle_watch_event(0, WatchEvent::Changed(d.clone()), ms(now));
        assert_eq!(e.lease(), Some(&d));
    }

    /// A read older than a deletion the stream showed, answering a create refused as
    /// AlreadyExists: the record it was to read is that deletion, seen now, and waited out.
    /// It is not read again at once, over and over.
    #[test]
    fn a_read_older_than_a_deletion_shown_is_that_deletion_not_a_reason_to_read_again() {
        let mut e = watching_from(&lease(5, Some("b"), 1));
        let c = lease(6, Some("c"), 2);
        e.handle_watch_event(0, WatchEvent::Changed(c.clone()), ms(10));
        e.handle_watch_event(0, WatchEvent::Deleted, ms(20));
        let mut now = 20;
        loop {
            match poll(&mut e, ms(now)) {
                Some(Operation::Create(_)) => break,
                Some(other) => panic!("{other:?}"),
                None => now += 100,
            }
        }
        e.handle_answer(0, Err(ApiError::AlreadyExists), ms(now));
        assert_eq!(poll(&mut e, ms(now)), Some(Operation::Get));
        e.handle_answer(0, Ok(c), ms(now));
        assert_eq!(poll(&mut e, ms(now)), None);
        assert_eq!(
            e.poll_timeout(),
            Some(ms(now + 15_000)),
            "a deletion seen now is waited out"
        );
    }

    /// A renew in flight when the release begins, answered after the stream showed it and
    /// then the lease deleted: the answer brings back no lease and no term, and the release
    /// ends on the first read's 404 instead of writing over a lease that is gone.
    #[test]
    fn a_renew_answered_after_the_deletion_during_a_release_brings_nothing_back() {
        let mut e = leader("a", true);
        let held = lease(1, Some("a"), 0);
        e.handle_watch_event(0, WatchEvent::Changed(held.clone()), ms(1));
        let (at, renew) = next_write(&mut e, 1, &held);
        let renewed = stored(&renew, 2);
        e.close(ms(at + 1));
        e.handle_watch_event(0, WatchEvent::Changed(renewed.clone()), ms(at + 2));
        e.handle_watch_event(0, WatchEvent::Deleted, ms(at + 3));
        e.handle_answer(0, Ok(renewed), ms(at + 4));
        assert!(!e.is_leader(ms(at + 4)));
        assert_eq!(e.lease(), None);
        let mut now = at + 4;
        let mut reads = 0;
        while !e.is_closed() {
            match poll(&mut e, ms(now)) {
                Some(Operation::Get) => {
                    reads += 1;
                    e.handle_answer(0, Err(ApiError::NotFound), ms(now));
                }
                Some(op) => panic!("{op:?}"),
                None => now += 10,
            }
            assert!(now < at + 20_000, "the release never ends");
        }
        assert!(
            reads <= 1 && now < at + 100,
            "{reads} reads, ended at {now} ms"
        );
    }

    /// A poll answered after the stream showed a newer record: the older one replaces nothing
    /// (else the follower would wait the newer holder's term out again from the next change).
    #[test]
    fn a_read_older_than_the_record_the_stream_showed_replaces_nothing() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 1)), ms(0));
        let (t, _) = next_write(&mut e, 10, &lease(5, Some("b"), 1));
        e.handle_answer(0, Err(ApiError::Conflict), ms(t));
        assert_eq!(poll(&mut e, ms(t)), Some(Operation::Get));
        let newer = lease(7, Some("e"), 3);
        e.handle_watch_event(0, WatchEvent::Changed(newer.clone()), ms(t + 1));
        e.handle_answer(0, Ok(lease(6, Some("c"), 2)), ms(t + 2));
        assert_eq!(e.lease(), Some(&newer));
        assert_eq!(
            e.poll_timeout(),
            Some(ms(t + 1 + 15_000)),
            "the newer term is waited out from when it was seen"
        );
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
            assert!(now < 60_000, "no create within a minute");
        }
    }

    /// A refused create proves the lease existed after the first read; a later 404 is then its
    /// deletion, whose last holder may still be acting, not a lease that never existed.
    #[test]
    fn a_lease_missing_after_a_refused_create_is_waited_out_as_deleted() {
        let mut e = elector("a", false);
        poll(&mut e, ms(0));
        e.handle_answer(0, Err(ApiError::NotFound), ms(0));
        assert!(matches!(poll(&mut e, ms(0)), Some(Operation::Create(_))));
        e.handle_answer(0, Err(ApiError::AlreadyExists), ms(1));
        assert_eq!(poll(&mut e, ms(1)), Some(Operation::Get));
        e.handle_answer(0, Err(ApiError::Timeout), ms(5_001));
        let mut now = 5_001;
        let mut missing_at = None;
        let created_at = loop {
            match poll(&mut e, ms(now)) {
                Some(Operation::Get) => {
                    missing_at.get_or_insert(now);
                    e.handle_answer(0, Err(ApiError::NotFound), ms(now));
                }
                Some(Operation::Create(_)) => break now,
                Some(other) => panic!("{other:?}"),
                None => now += 1,
            }
            assert!(now < 60_000, "no create within a minute");
        };
        let missing_at = missing_at.unwrap();
        assert_eq!(
            created_at,
            missing_at + 15_000,
            "missing at {missing_at} ms"
        );
    }

    /// A process paused past the instant it was to create a deleted lease may have missed its
    /// re-creation and a second delete, whose holder may still be acting: it reads again and
    /// waits out a 404 as a deletion seen on waking.
    #[test]
    fn a_pause_past_the_create_reads_and_waits_out_the_lease_again() {
        let mut e = elector("a", true);
        poll(&mut e, ms(0));
        e.handle_answer(0, Ok(lease(5, Some("b"), 3)), ms(0));
        poll(&mut e, ms(0));
        e.handle_watch_event(0, WatchEvent::Deleted, ms(1_000));
        assert_eq!(e.poll_timeout(), Some(ms(16_000)));
        // Paused from before 16 s to 40 s.
        assert_eq!(poll(&mut e, ms(40_000)), Some(Operation::Get));
        e.handle_answer(0, Err(ApiError::NotFound), ms(40_010));
        assert_eq!(poll(&mut e, ms(40_010)), None);
        assert_eq!(e.poll_timeout(), Some(ms(55_010)));
        let Some(Operation::Create(record)) = poll(&mut e, ms(55_010)) else {
            panic!("no create a lease duration after the 404")
        };
        assert_eq!(record.lease_transitions, Some(4), "the epoch stays new");
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
    fn events_past_the_capacity_are_reported_dropped_with_the_newest_dropped_slot() {
        let mut queue: super::EventQueue<SlotEvent> = super::EventQueue::new();
        for slot in 0..11u16 {
            super::push_event(&mut queue, slot, Event::Released { written: false });
        }
        assert_eq!(queue.dropped_total(), 3);
        assert_eq!(
            queue.pop(),
            Some(SlotEvent {
                slot: 2,
                event: Event::EventsDropped { count: 3 }
            })
        );
        assert_eq!(
            queue.pop().map(|e| e.slot),
            Some(3),
            "the oldest kept follows"
        );
        let rest = core::iter::from_fn(|| queue.pop()).count();
        assert_eq!(rest, 7);
    }
}
