//! A renew-only lease, as the kubelet keeps its node lease in `kube-node-lease`: a watcher can
//! tell the node is gone when the lease stops being renewed.

use crate::api::{ApiError, Operation, Request, Response, Verb, WatchEvent};
use crate::jitter::Jitter;
use crate::machine::{Machine, Stats};
use crate::record::{Holder, Identity, Lease, LeaseName, LeaseRecord, MicroTime};
use crate::slot::{EventQueue, Overflow, server_wait};
use crate::timing::{TimingError, TimingField, request_timeout_within};
use embassy_time::{Duration, Instant, TICK_HZ};

/// First wait after a failure (kubelet: 200 ms), doubled on each further failure...
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// ...up to this (kubelet: 7 s).
pub const BACKOFF_MAX: Duration = Duration::from_secs(7);
/// Failed updates in a row before the lease is read again (kubelet: 5).
pub const MAX_UPDATE_TRIES: u32 = 5;
/// Renew-interval jitter: `interval × (1 + U[0, 0.04))`, as the kubelet's `JitterUntil(…, 0.04)`.
const RENEW_JITTER_PERMILLE: u64 = 40;

/// What a [`Heartbeat`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeartbeatEvent {
    /// The lease was created or renewed.
    Renewed,
    /// An API call failed; the heartbeat backs off and retries.
    RequestFailed {
        /// The verb that failed.
        verb: Verb,
        /// How.
        error: ApiError,
    },
    /// The second and every further failure in a row (the kubelet's "failed to update lease"
    /// warnings): watchers may soon see this lease as stale.
    RepeatedFailure {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// `count` events before the ones that follow were dropped: the driver did not drain them
    /// as the [`Machine`] contract asks.
    EventsDropped {
        /// How many.
        count: u32,
    },
}

impl Overflow for HeartbeatEvent {
    fn dropped(count: u32, _newest: &Self) -> Self {
        Self::EventsDropped { count }
    }
}

/// What a [`Heartbeat`] needs to know before it starts.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// The lease to keep renewed (kubelet: the node name).
    pub lease: LeaseName,
    /// The `holderIdentity` to write (kubelet: the node name).
    pub identity: Identity,
    /// `leaseDurationSeconds` (kubelet: 40 s).
    pub lease_duration: Duration,
    /// How often to renew; `None`: a quarter of the duration, as the kubelet does. API server
    /// identity leases renew every 10 s with a 3600 s duration.
    pub renew_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Read,
    Create,
    Update,
}

/// Keeps one lease renewed every `renew_interval` (default `lease_duration / 4`); no election, no
/// step-down.
///
/// Created if missing; renewed with the resourceVersion last written. On failure it backs off
/// from 200 ms, doubling up to 7 s; after a conflict or five failed updates in a row it reads the
/// lease again. It writes only `holderIdentity`, `leaseDurationSeconds` and `renewTime`, keeping
/// any other field. Driven through [`Machine`], on the same event queue and counters as the
/// other machines; it never watches. [`Machine::close`] stops renewing and leaves the lease to
/// expire (a heartbeat that stops means "gone"); [`Machine::rejoin`] starts over at once.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    lease_name: LeaseName,
    identity: Identity,
    lease_duration: Duration,
    renew_interval: Duration,
    jitter: Jitter,
    events: EventQueue<HeartbeatEvent>,
    stats: Stats,
    known: Option<Lease>,
    must_read: bool,
    in_flight: Option<Pending>,
    not_before: Instant,
    failures: u32,
    update_tries: u32,
    last_renewed: Option<Instant>,
    stopped: bool,
}

impl Heartbeat {
    /// A heartbeat that reads its lease first. The duration must be whole seconds, at least 1 s.
    pub fn new(config: HeartbeatConfig, seed: u64) -> Result<Self, TimingError> {
        let ticks = config.lease_duration.as_ticks();
        if ticks == 0 {
            return Err(TimingError::NotPositive {
                field: TimingField::LeaseDuration,
            });
        }
        if ticks % TICK_HZ != 0 || ticks / TICK_HZ > i32::MAX as u64 {
            return Err(TimingError::LeaseNotWholeSeconds {
                lease_duration: config.lease_duration,
            });
        }
        let renew_interval = config
            .renew_interval
            .unwrap_or(Duration::from_ticks(ticks / 4));
        if renew_interval.as_ticks() == 0 {
            return Err(TimingError::NotPositive {
                field: TimingField::RenewInterval,
            });
        }
        if renew_interval >= config.lease_duration {
            return Err(TimingError::RenewNotBelowLease {
                renew_interval,
                lease_duration: config.lease_duration,
            });
        }
        Ok(Self {
            lease_name: config.lease,
            identity: config.identity,
            lease_duration: config.lease_duration,
            renew_interval,
            jitter: Jitter::new(seed),
            events: EventQueue::new(),
            stats: Stats::default(),
            known: None,
            must_read: true,
            in_flight: None,
            not_before: Instant::MIN,
            failures: 0,
            update_tries: 0,
            last_renewed: None,
            stopped: false,
        })
    }

    /// The renew interval: as configured, else a quarter of the lease duration (kubelet: 10 s
    /// for 40 s).
    pub fn renew_interval(&self) -> Duration {
        self.renew_interval
    }

    /// How long a transport waits for one answer: half the renew interval, at least 1 s (the
    /// rule of [`crate::timing::request_timeout_within`]; a heartbeat has no renew deadline, and
    /// a renewal must answer well before the next one is due).
    pub fn request_timeout(&self) -> Duration {
        request_timeout_within(self.renew_interval)
    }

    fn push(&mut self, event: HeartbeatEvent) {
        self.events.push(event);
    }

    /// The record a renew writes. Its `renewTime` moves forward from the one stored even when
    /// the wall clock did not (a coarse clock, or one stepped back): an unchanged spec is not a
    /// write on the API server, so the lease would look unrenewed to every watcher.
    fn record(&self, wall: MicroTime) -> LeaseRecord {
        let base = self
            .known
            .as_ref()
            .map_or(LeaseRecord::EMPTY, |l| l.record.clone());
        let renew_time = match base.renew_time {
            Some(stored) if stored >= wall => {
                MicroTime::from_unix_micros(stored.as_unix_micros().saturating_add(1))
            }
            _ => wall,
        };
        LeaseRecord {
            holder: Holder::Named(self.identity.clone()),
            lease_duration: Some(self.lease_duration),
            renew_time: Some(renew_time),
            ..base
        }
    }

    fn next_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        if self.stopped || self.in_flight.is_some() || now < self.not_before {
            return None;
        }
        let (pending, op) = match &self.known {
            _ if self.must_read => (Pending::Read, Operation::Get),
            None => (Pending::Create, Operation::Create(self.record(wall))),
            Some(lease) => (
                Pending::Update,
                Operation::Update {
                    resource_version: lease.resource_version.clone(),
                    record: self.record(wall),
                },
            ),
        };
        self.in_flight = Some(pending);
        Some(Request {
            slot: 0,
            lease: self.lease_name.clone(),
            op,
        })
    }

    fn answered(&mut self, response: Response, now: Instant) {
        let Some(pending) = self.in_flight.take() else {
            return;
        };
        self.stats.answered(&response);
        match (pending, response) {
            (Pending::Read, Ok(lease)) => {
                self.known = Some(lease);
                self.must_read = false;
                self.not_before = now;
            }
            (Pending::Read, Err(ApiError::NotFound)) => {
                self.known = None;
                self.must_read = false;
                self.not_before = now;
            }
            (Pending::Update, Ok(lease))
                if self
                    .known
                    .as_ref()
                    .is_some_and(|l| l.resource_version == lease.resource_version) =>
            {
                // The same version back: the server applied nothing, so nothing was renewed
                // (a renew counts only with a new resourceVersion).
                self.failed(Pending::Update, ApiError::Malformed, now);
            }
            (Pending::Create | Pending::Update, Ok(lease)) => {
                self.known = Some(lease);
                self.failures = 0;
                self.update_tries = 0;
                self.last_renewed = Some(now);
                let interval = self
                    .jitter
                    .stretch(self.renew_interval(), RENEW_JITTER_PERMILLE);
                self.not_before = now.saturating_add(interval);
                self.push(HeartbeatEvent::Renewed);
            }
            (pending, Err(error)) => self.failed(pending, error, now),
        }
    }

    fn failed(&mut self, pending: Pending, error: ApiError, now: Instant) {
        let verb = match pending {
            Pending::Read => Verb::Get,
            Pending::Create => Verb::Create,
            Pending::Update => Verb::Update,
        };
        self.push(HeartbeatEvent::RequestFailed { verb, error });
        self.failures = self.failures.saturating_add(1);
        if self.failures >= 2 {
            self.push(HeartbeatEvent::RepeatedFailure {
                failures: self.failures,
            });
        }
        let reread = match (pending, error) {
            (Pending::Create, ApiError::AlreadyExists | ApiError::Conflict) => true,
            (Pending::Update, ApiError::Conflict | ApiError::NotFound) => true,
            (Pending::Update, _) => {
                self.update_tries += 1;
                self.update_tries >= MAX_UPDATE_TRIES
            }
            _ => false,
        };
        if reread {
            self.must_read = true;
            self.update_tries = 0;
        }
        let shift = (self.failures - 1).min(16);
        let backoff = BACKOFF_START
            .checked_mul(1 << shift)
            .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX));
        self.not_before = now.saturating_add(backoff.max(server_wait(error)));
    }

    /// When the last renew succeeded (local monotonic time).
    pub fn last_renewed(&self) -> Option<Instant> {
        self.last_renewed
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The lease as last written or read.
    pub fn lease(&self) -> Option<&Lease> {
        self.known.as_ref()
    }
}

/// One lease at slot 0; a heartbeat never asks for a watch, so watch events are ignored, and so
/// is the timeout: requests become due by themselves, `poll_request` tells.
impl Machine for Heartbeat {
    type Event = HeartbeatEvent;

    fn is_closed(&self) -> bool {
        self.stopped
    }

    fn stats(&self) -> Stats {
        Stats {
            events_dropped: self.events.dropped_total(),
            ..self.stats
        }
    }

    fn handle_answer(&mut self, slot: u16, answer: Response, now: Instant) {
        if slot == 0 {
            self.answered(answer, now);
        }
    }

    fn handle_watch_event(&mut self, _slot: u16, _event: WatchEvent, _now: Instant) {}

    fn handle_timeout(&mut self, _now: Instant) {}

    fn close(&mut self, _now: Instant) {
        self.stopped = true;
    }

    fn rejoin(&mut self, now: Instant) {
        if self.stopped {
            self.known = None;
            self.must_read = true;
            self.in_flight = None;
            self.not_before = now;
            self.failures = 0;
            self.update_tries = 0;
            self.stopped = false;
        }
    }

    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        let request = self.next_request(now, wall)?;
        self.stats.sent(&request);
        Some(request)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.stopped && self.in_flight.is_none()).then_some(self.not_before)
    }

    fn poll_event(&mut self) -> Option<HeartbeatEvent> {
        self.events.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{WALL, id, lease, ms, stored};

    fn heartbeat() -> Heartbeat {
        Heartbeat::new(
            HeartbeatConfig {
                lease: LeaseName::new("node-1").unwrap(),
                identity: id("node-1"),
                lease_duration: Duration::from_secs(40),
                renew_interval: None,
            },
            3,
        )
        .unwrap()
    }

    fn op(h: &mut Heartbeat, now: Instant) -> Option<Operation> {
        h.poll_request(now, WALL).map(|r| r.op)
    }

    fn running() -> Heartbeat {
        let mut h = heartbeat();
        op(&mut h, ms(0));
        h.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let create = op(&mut h, ms(0)).unwrap();
        h.handle_answer(0, Ok(stored(&create, 1)), ms(0));
        h
    }

    #[test]
    fn a_missing_lease_is_created_with_holder_duration_and_renew_time_only() {
        let mut h = heartbeat();
        assert_eq!(op(&mut h, ms(0)), Some(Operation::Get));
        h.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let Some(Operation::Create(record)) = op(&mut h, ms(0)) else {
            panic!()
        };
        assert!(record.holder.is(&id("node-1")));
        assert_eq!(record.lease_duration, Some(Duration::from_secs(40)));
        assert_eq!(record.renew_time, Some(WALL));
        assert_eq!(
            (record.acquire_time, record.lease_transitions),
            (None, None)
        );
    }

    #[test]
    fn renews_every_quarter_of_the_duration_with_small_jitter() {
        let mut h = running();
        assert_eq!(h.renew_interval(), Duration::from_secs(10));
        let next = h.poll_timeout().unwrap();
        assert!(next >= ms(10_000) && next < ms(10_400), "{next:?}");
        assert_eq!(op(&mut h, ms(9_999)), None);
        assert!(matches!(op(&mut h, next), Some(Operation::Update { .. })));
    }

    #[test]
    fn a_request_must_answer_within_half_the_renew_interval() {
        assert_eq!(heartbeat().request_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn a_renew_the_server_did_not_apply_is_no_renew_and_renew_time_always_moves_forward() {
        let mut h = running();
        let before = h.lease().unwrap().clone();
        // The wall clock stood still since the create: the renew still writes a later time.
        let Some(Operation::Update { record, .. }) = op(&mut h, ms(10_400)) else {
            panic!()
        };
        let stored = before.record.renew_time.unwrap().as_unix_micros();
        assert_eq!(record.renew_time.unwrap().as_unix_micros(), stored + 1);
        while h.poll_event().is_some() {}
        h.handle_answer(0, Ok(before), ms(10_401));
        assert_eq!(
            h.last_renewed(),
            Some(ms(0)),
            "the same version back renews nothing"
        );
        assert_eq!(
            h.poll_event(),
            Some(HeartbeatEvent::RequestFailed {
                verb: Verb::Update,
                error: ApiError::Malformed
            })
        );
        assert_eq!(
            h.poll_timeout(),
            Some(ms(10_601)),
            "retried after the first backoff"
        );
    }

    #[test]
    fn a_renew_writes_the_wall_clock_time_when_it_moved_on() {
        let mut h = running();
        let wall = crate::testkit::wall_at(ms(10_400));
        let Some(Request {
            op: Operation::Update { record, .. },
            ..
        }) = h.poll_request(ms(10_400), wall)
        else {
            panic!()
        };
        assert_eq!(record.renew_time, Some(wall));
    }

    #[test]
    fn a_renew_keeps_fields_it_does_not_own() {
        let mut h = heartbeat();
        op(&mut h, ms(0));
        h.handle_answer(0, Ok(lease(3, Some("node-1"), 6)), ms(0));
        let Some(Operation::Update { record, .. }) = op(&mut h, ms(0)) else {
            panic!()
        };
        assert_eq!(record.lease_transitions, Some(6));
        assert_eq!(record.acquire_time, Some(WALL));
        assert_eq!(record.lease_duration, Some(Duration::from_secs(40)));
    }

    #[test]
    fn failures_back_off_from_200ms_doubling_to_7s() {
        let mut h = running();
        let mut now = 10_400;
        let mut waits: heapless::Vec<u64, 8> = heapless::Vec::new();
        for _ in 0..8 {
            op(&mut h, ms(now)).unwrap();
            h.handle_answer(0, Err(ApiError::Server { status: 500 }), ms(now));
            let next = h.poll_timeout().unwrap().as_millis();
            waits.push(next - now).unwrap();
            now = next;
        }
        assert_eq!(
            waits.as_slice(),
            &[200, 400, 800, 1_600, 3_200, 6_400, 7_000, 7_000]
        );
    }

    #[test]
    fn five_failed_updates_in_a_row_lead_to_a_read() {
        let mut h = running();
        let mut now = 10_400;
        for _ in 0..5 {
            assert!(matches!(
                op(&mut h, ms(now)),
                Some(Operation::Update { .. })
            ));
            h.handle_answer(0, Err(ApiError::Timeout), ms(now));
            now = h.poll_timeout().unwrap().as_millis();
        }
        assert_eq!(op(&mut h, ms(now)), Some(Operation::Get));
    }

    #[test]
    fn a_conflict_leads_to_a_read() {
        let mut h = running();
        op(&mut h, ms(10_400)).unwrap();
        h.handle_answer(0, Err(ApiError::Conflict), ms(10_400));
        assert_eq!(op(&mut h, ms(10_600)), Some(Operation::Get));
    }

    /// Two writers created the lease at once (a restarted node, say): the loser must read what
    /// won and renew over it, or it would retry its create for ever and look dead to watchers.
    #[test]
    fn a_create_that_lost_a_race_reads_the_lease_then_renews_it() {
        for lost in [ApiError::AlreadyExists, ApiError::Conflict] {
            let mut h = heartbeat();
            op(&mut h, ms(0));
            h.handle_answer(0, Err(ApiError::NotFound), ms(0));
            assert!(matches!(op(&mut h, ms(0)), Some(Operation::Create(_))));
            h.handle_answer(0, Err(lost), ms(1));
            assert_eq!(h.poll_timeout(), Some(ms(201)), "{lost:?}");
            assert_eq!(op(&mut h, ms(201)), Some(Operation::Get), "{lost:?}");
            h.handle_answer(0, Ok(lease(8, Some("node-1"), 0)), ms(202));
            let Some(Operation::Update {
                resource_version, ..
            }) = op(&mut h, ms(202))
            else {
                panic!("{lost:?}: no renew over the winner's lease")
            };
            assert_eq!(resource_version, crate::testkit::rv(8));
        }
    }

    #[test]
    fn a_429_waits_for_its_retry_after_when_longer_than_the_backoff() {
        let mut h = running();
        op(&mut h, ms(10_400)).unwrap();
        let throttled = |retry_after| ApiError::TooManyRequests { retry_after };
        h.handle_answer(0, Err(throttled(Some(Duration::from_secs(30)))), ms(10_400));
        assert_eq!(h.poll_timeout(), Some(ms(40_400)));
        assert_eq!(op(&mut h, ms(40_399)), None);
        op(&mut h, ms(40_400)).unwrap();
        h.handle_answer(0, Err(throttled(None)), ms(40_400));
        assert_eq!(h.poll_timeout(), Some(ms(40_800)), "the backoff alone");
    }

    #[test]
    fn a_deleted_lease_is_read_then_created_again() {
        let mut h = running();
        op(&mut h, ms(10_400)).unwrap();
        h.handle_answer(0, Err(ApiError::NotFound), ms(10_400));
        assert_eq!(op(&mut h, ms(10_600)), Some(Operation::Get));
        h.handle_answer(0, Err(ApiError::NotFound), ms(10_600));
        assert!(matches!(op(&mut h, ms(10_600)), Some(Operation::Create(_))));
    }

    #[test]
    fn stray_answers_watch_events_and_timeouts_change_nothing() {
        let mut h = running();
        let before = (h.lease().cloned(), h.poll_timeout(), h.stats());
        h.handle_answer(0, Err(ApiError::Conflict), ms(1));
        h.handle_answer(1, Ok(lease(9, Some("x"), 0)), ms(1));
        h.handle_watch_event(0, crate::WatchEvent::Deleted, ms(1));
        h.handle_timeout(ms(1));
        assert_eq!((h.lease().cloned(), h.poll_timeout(), h.stats()), before);
    }

    #[test]
    fn repeated_failure_is_reported_from_the_second_failure() {
        let mut h = running();
        while h.poll_event().is_some() {}
        let mut now = 10_400;
        let mut repeated: heapless::Vec<u32, 4> = heapless::Vec::new();
        for _ in 0..3 {
            op(&mut h, ms(now)).unwrap();
            h.handle_answer(0, Err(ApiError::Transport), ms(now));
            while let Some(e) = h.poll_event() {
                if let HeartbeatEvent::RepeatedFailure { failures } = e {
                    repeated.push(failures).unwrap();
                }
            }
            now = h.poll_timeout().unwrap().as_millis();
        }
        assert_eq!(repeated.as_slice(), &[2, 3]);
        assert_eq!(h.consecutive_failures(), 3);
        op(&mut h, ms(now)).unwrap();
        h.handle_answer(0, Ok(lease(9, Some("node-1"), 0)), ms(now));
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[test]
    fn a_zero_or_fractional_duration_is_refused() {
        let config = |d| HeartbeatConfig {
            lease: LeaseName::new("n").unwrap(),
            identity: id("n"),
            lease_duration: d,
            renew_interval: None,
        };
        assert!(Heartbeat::new(config(Duration::from_ticks(0)), 0).is_err());
        assert!(Heartbeat::new(config(Duration::from_millis(1_500)), 0).is_err());
    }

    #[test]
    fn an_explicit_renew_interval_must_be_positive_and_below_the_duration() {
        let config = |renew| HeartbeatConfig {
            lease: LeaseName::new("n").unwrap(),
            identity: id("n"),
            lease_duration: Duration::from_secs(3600),
            renew_interval: Some(renew),
        };
        let h = Heartbeat::new(config(Duration::from_secs(10)), 0).unwrap();
        assert_eq!(h.renew_interval(), Duration::from_secs(10));
        assert_eq!(
            Heartbeat::new(config(Duration::from_ticks(0)), 0).unwrap_err(),
            TimingError::NotPositive {
                field: TimingField::RenewInterval
            }
        );
        let e = Heartbeat::new(config(Duration::from_secs(3600)), 0).unwrap_err();
        assert!(matches!(e, TimingError::RenewNotBelowLease { .. }), "{e:?}");
    }

    #[test]
    fn close_ends_all_requests() {
        let mut h = running();
        h.close(ms(0));
        assert!(h.is_closed());
        assert_eq!(op(&mut h, ms(60_000)), None);
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn rejoin_after_a_close_reads_and_renews_at_once() {
        let mut h = running();
        h.close(ms(1_000));
        h.rejoin(ms(2_000));
        assert!(!h.is_closed());
        assert_eq!(h.poll_timeout(), Some(ms(2_000)));
        assert_eq!(op(&mut h, ms(2_000)), Some(Operation::Get));
        h.handle_answer(0, Ok(lease(4, Some("node-1"), 0)), ms(2_001));
        assert!(matches!(
            op(&mut h, ms(2_001)),
            Some(Operation::Update { .. })
        ));
        let s = h.stats();
        assert_eq!((s.gets, s.creates, s.updates), (2, 1, 1));
    }

    #[test]
    fn events_not_drained_are_reported_dropped_not_lost_silently() {
        let mut h = running();
        let mut now = 10_400;
        // The first failure adds one event, each further one two; none is drained.
        for _ in 0..6 {
            op(&mut h, ms(now)).unwrap();
            h.handle_answer(0, Err(ApiError::Transport), ms(now));
            now = h.poll_timeout().unwrap().as_millis();
        }
        // Renewed + 1 + 2 × 5 = 12 events for 8 places: the 4 oldest were dropped.
        assert_eq!(h.stats().events_dropped, 4);
        assert_eq!(
            h.poll_event(),
            Some(HeartbeatEvent::EventsDropped { count: 4 })
        );
        let mut rest = 0;
        while h.poll_event().is_some() {
            rest += 1;
        }
        assert_eq!(rest, 8, "the newest events are kept");
    }
}
