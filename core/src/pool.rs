//! k-of-n leases: at most n holders through slots `prefix-0 … prefix-(n−1)`.

use crate::api::{ApiError, Operation, Request, Response, SlotNames, WatchEvent};
use crate::event::SlotEvent;
use crate::expiry::earliest;
use crate::jitter::Jitter;
use crate::machine::{Machine, Stats};
use crate::record::{
    Holder, Identity, LeaseName, MicroTime, NAME_CAPACITY, ResourceVersion, TextError,
};
use crate::slot::{Env, EventQueue, Intent, LeaseSlot};
use crate::takeover::Takeover;
use crate::timing::Timing;
use core::fmt::{self, Write};
use embassy_time::{Duration, Instant};
use heapless::{String, Vec};

/// Why a pool could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// The size is 0 or above the capacity `N` chosen at compile time.
    Size {
        /// The size asked for.
        size: usize,
        /// The pool type's capacity.
        capacity: usize,
    },
    /// A slot name `prefix-i` is not a valid lease name.
    Name(TextError),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size { size, capacity } => {
                write!(f, "pool size {size} must be between 1 and {capacity}")
            }
            Self::Name(e) => write!(f, "pool prefix gives an invalid lease name: {e}"),
        }
    }
}

impl core::error::Error for PoolError {}

/// What a [`Pool`] needs to know before it starts.
#[derive(Clone, Debug)]
pub struct PoolConfig<'a> {
    /// Slots are named `{prefix}-0` … `{prefix}-{size−1}` (Sysdig: `cold-start`, `delegation`).
    pub prefix: &'a str,
    /// How many slots, so at most this many holders at once.
    pub size: usize,
    /// This member's `holderIdentity`.
    pub identity: Identity,
    /// Timing for every slot.
    pub timing: Timing,
    /// Whether the driver can watch the slot leases (see [`crate::ElectorConfig::watch`]). A
    /// watching pool asks for one stream of all its slots ([`Operation::WatchSlots`]), and
    /// falls back to one watch per slot if the server refuses it.
    pub watch: bool,
}

/// The pool's one watch of all its slots.
#[derive(Clone, Debug)]
struct Stream {
    names: SlotNames,
    /// The prefix, as the request's lease (what a transport names in its errors).
    lease: LeaseName,
    state: StreamState,
    /// The version to resume from; `None` lists the slots again.
    resume: Option<ResourceVersion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Closed {
        reopen_at: Instant,
    },
    /// Opened without a version: the slots' state is coming, up to `Synced`.
    Listing,
    Open,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Wants a slot; `attempt` is the one being taken, if any. Only one at a time, so a member
    /// never holds two.
    Wanting {
        attempt: Option<u16>,
    },
    Holding(u16),
    Releasing(u16),
    Finished,
}

/// What a member makes of one slot at one instant (see [`Pool::judge`]).
#[derive(Clone, Copy)]
struct Judged {
    /// Takeable by the slot's own rules (free, ours, or expired).
    free: bool,
    /// Takeable by this member now: free, and not left to another member's reservation.
    takeable: bool,
    /// Its next term may be reserved by this member.
    reservable: bool,
    /// Someone holds it.
    held: bool,
    /// Someone reserved its next term.
    reserved: bool,
}

/// A pool member: wants one of n slots, holds it under the elector's rules, gives it back.
///
/// Two uses: **cold start** (acquire, do the throttled work, then [`Machine::close`]) and
/// **delegation** (hold until the process ends, then close). Slots are tried in a random order
/// drawn from the seed, so a boot storm spreads over all slots instead of herding on slot 0.
/// When every slot is held, the member waits for the earliest computed expiry or a watch event.
/// When a slot frees, it takes it only after a delay drawn from a contention window sized from
/// the hand-overs it watched (`takeover.rs`): of hundreds of members watching one release, one
/// or two write, not all of them. A watching member that finds every slot held reserves the
/// next term of one (`next_holder`), and takes it the moment it is released.
///
/// A watching pool asks for one stream of all its slots; its requests and its own events carry
/// the slot number [`Pool::stream_slot`] (one past the last slot). Lease events on it are
/// delivered to their own slot.
///
/// `N` is the most slots this type can track (the caller owns the storage, smoltcp-style); the
/// runtime size may be smaller. Driven through [`Machine`]; requests carry their slot, to be
/// passed back with the answer. Closing steps down from a held slot at once and releases it as
/// an elector releases its lease; [`Machine::rejoin`] wants a slot again a retry period later.
#[derive(Clone, Debug)]
pub struct Pool<const N: usize> {
    identity: Identity,
    timing: Timing,
    jitter: Jitter,
    events: EventQueue<SlotEvent>,
    stats: Stats,
    slots: Vec<LeaseSlot, N>,
    state: State,
    /// `None` without watches, or after the server refused the pool's stream.
    stream: Option<Stream>,
    /// While the stream lists the slots: which of them it has sent.
    listed: Vec<bool, N>,
    takeover: Takeover<N>,
    /// When to reserve a held slot's next term: a watching member, with every slot held,
    /// names itself on one (`next_holder`), and takes it the moment it is released.
    reservation: Takeover<N>,
    /// Every hand-over watched, reserved or not: measures the latency floor only.
    handovers: Takeover<N>,
    /// The latest instant of an input or poll.
    last_input: Instant,
}

impl<const N: usize> Pool<N> {
    /// A member that starts wanting a slot at once.
    pub fn new(config: PoolConfig<'_>, seed: u64) -> Result<Self, PoolError> {
        if config.size == 0 || config.size > N || config.size > usize::from(u16::MAX) {
            return Err(PoolError::Size {
                size: config.size,
                capacity: N,
            });
        }
        let mut slots = Vec::new();
        let mut listed = Vec::new();
        for i in 0..config.size {
            let mut name: String<NAME_CAPACITY> = String::new();
            write!(name, "{}-{i}", config.prefix).map_err(|_| {
                PoolError::Name(TextError::TooLong {
                    what: "lease name",
                    len: config.prefix.len() + 6,
                    max: NAME_CAPACITY,
                })
            })?;
            let name = LeaseName::new(&name).map_err(PoolError::Name)?;
            // Cannot fail: size <= N was checked above.
            let _ = slots.push(LeaseSlot::new(
                i as u16,
                name,
                Intent::Observe,
                config.watch,
            ));
            let _ = listed.push(false);
        }
        let stream = config
            .watch
            .then(|| {
                Some(Stream {
                    names: SlotNames::new(config.prefix, config.size as u16)?,
                    lease: LeaseName::new(config.prefix).ok()?,
                    state: StreamState::Closed {
                        reopen_at: Instant::MIN,
                    },
                    resume: None,
                })
            })
            .flatten();
        if stream.is_some() {
            for slot in slots.iter_mut() {
                slot.share_watch(true);
            }
        }
        Ok(Self {
            identity: config.identity,
            takeover: Takeover::new(config.size, &config.timing, config.watch),
            reservation: Takeover::reserving(config.size, &config.timing),
            handovers: Takeover::new(config.size, &config.timing, config.watch),
            timing: config.timing,
            jitter: Jitter::new(seed),
            events: EventQueue::new(),
            stats: Stats::default(),
            slots,
            state: State::Wanting { attempt: None },
            stream,
            listed,
            last_input: Instant::MIN,
        })
    }

    /// The slot number of the pool's own stream: its requests carry it, and its own events
    /// (bookmarks, `Synced`, its end) are handed back with it.
    pub fn stream_slot(&self) -> u16 {
        self.slots.len() as u16
    }

    /// Whether the stream is wanted: until the member has finished. A holder keeps it to see
    /// its slot reserved, so that its renew and its release write over the reservation
    /// rather than meet it as a 409.
    fn stream_wanted(&self) -> bool {
        self.state != State::Finished
    }

    /// The stream's open or close, when one is due at `now`.
    fn poll_stream(&mut self, now: Instant) -> Option<Request> {
        let wanted = self.stream_wanted();
        let slot = self.stream_slot();
        let stream = self.stream.as_mut()?;
        let op = match stream.state {
            StreamState::Closed { reopen_at } if wanted && now >= reopen_at => {
                if stream.resume.is_none() {
                    stream.state = StreamState::Listing;
                    self.listed.iter_mut().for_each(|l| *l = false);
                } else {
                    stream.state = StreamState::Open;
                }
                Operation::WatchSlots {
                    slots: stream.names.clone(),
                    resource_version: stream.resume.clone(),
                }
            }
            StreamState::Listing | StreamState::Open if !wanted => {
                stream.state = StreamState::Closed {
                    reopen_at: Instant::MIN,
                };
                Operation::Unwatch
            }
            _ => return None,
        };
        Some(Request {
            slot,
            lease: stream.lease.clone(),
            op,
        })
    }

    /// An event of the stream itself.
    fn stream_event(&mut self, event: WatchEvent, now: Instant) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        match event {
            WatchEvent::Bookmark(rv) => stream.resume = Some(rv),
            WatchEvent::Synced(rv) => {
                stream.resume = Some(rv.clone());
                if stream.state == StreamState::Listing {
                    stream.state = StreamState::Open;
                    for i in 0..self.slots.len() as u16 {
                        if !self.listed[usize::from(i)] {
                            self.with_slot(i, |slot, env| slot.not_listed(&rv, now, env));
                        }
                    }
                }
            }
            // Every reopen waits a jittered retry period, as a single lease's watch does: a
            // server that ends each stream at once must not drive a loop at network speed.
            WatchEvent::Ended | WatchEvent::Failed | WatchEvent::Expired => {
                if event == WatchEvent::Expired || stream.state == StreamState::Listing {
                    stream.resume = None;
                }
                let wait = self.jitter.retry(self.timing.retry_period());
                stream.state = StreamState::Closed {
                    reopen_at: now.saturating_add(wait),
                };
            }
            WatchEvent::Forbidden => {
                // RBAC grants the named leases only: read and watch each slot by name.
                self.stream = None;
                for slot in self.slots.iter_mut() {
                    slot.share_watch(false);
                }
            }
            WatchEvent::Changed(_) | WatchEvent::Deleted => {}
        }
    }

    fn set_all(&mut self, intent: Intent, except: Option<u16>, now: Instant) {
        let mut env = Env {
            identity: &self.identity,
            timing: &self.timing,
            jitter: &mut self.jitter,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if Some(i as u16) != except {
                slot.set_intent(intent, now, &mut env);
            }
        }
    }

    fn with_slot<T>(
        &mut self,
        i: u16,
        f: impl FnOnce(&mut LeaseSlot, &mut Env<'_>) -> T,
    ) -> Option<T> {
        let (slots, mut env) = self.slots_and_env();
        Some(f(slots.get_mut(usize::from(i))?, &mut env))
    }

    /// The slots, and apart from them what their rules take from the pool.
    fn slots_and_env(&mut self) -> (&mut Vec<LeaseSlot, N>, Env<'_>) {
        let env = Env {
            identity: &self.identity,
            timing: &self.timing,
            jitter: &mut self.jitter,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        (&mut self.slots, env)
    }

    /// Moves between wanting, holding and releasing from what the slots now know.
    fn reconcile(&mut self, now: Instant) {
        self.last_input = self.last_input.max(now);
        for i in 0..self.slots.len() as u16 {
            self.with_slot(i, |slot, env| slot.expire(now, env));
        }
        if matches!(self.state, State::Wanting { .. }) {
            for (i, slot) in self.slots.iter().enumerate() {
                let j = self.judge(slot, now);
                // How fast a freed slot is taken, by its reserved member or not: the latency
                // floor the reservations are sized against.
                if j.free {
                    self.handovers.free(i, now);
                } else {
                    self.handovers.not_free(i, j.held, now);
                }
                if j.takeable {
                    self.takeover.free(i, now);
                } else {
                    self.takeover.not_free(i, j.held, now);
                }
                if j.reservable {
                    self.reservation.free(i, now);
                } else {
                    if !j.reserved && j.free {
                        self.reservation.missed(i, now);
                    }
                    self.reservation.not_free(i, j.reserved, now);
                }
            }
            self.reservation.follow(&self.handovers, now);
            self.takeover.crowd_from(&self.reservation, now);
        }
        match self.state {
            State::Wanting { attempt: Some(i) } => {
                let slot = &self.slots[usize::from(i)];
                if slot.is_leader(now) {
                    self.state = State::Holding(i);
                    self.set_all(Intent::Idle, Some(i), now);
                } else if !slot.has_request_in_flight() && !slot.is_takeable(now, &self.timing) {
                    // Someone else got it first: watch it like the others and pick again.
                    self.with_slot(i, |slot, env| slot.set_intent(Intent::Observe, now, env));
                    self.state = State::Wanting { attempt: None };
                    self.choose(now);
                }
            }
            State::Wanting { attempt: None } => self.choose(now),
            State::Holding(i) if !self.slots[usize::from(i)].is_leader(now) => {
                self.wait_again();
                self.set_all(Intent::Observe, None, now);
                self.choose(now);
            }
            State::Releasing(i) if self.slots[usize::from(i)].is_released() => {
                self.state = State::Finished;
                self.set_all(Intent::Idle, None, now);
            }
            State::Holding(_) | State::Releasing(_) | State::Finished => {}
        }
    }

    /// Back to waiting after holding (or after a close): the windows forget what they saw of
    /// the slots before, since nothing was measured meanwhile (see [`Takeover::forget`]).
    fn wait_again(&mut self) {
        self.takeover.forget();
        self.reservation.forget();
        self.handovers.forget();
        self.state = State::Wanting { attempt: None };
    }

    /// Whether the first state of some slot is still awaited (a first read, or the stream's
    /// list): choosing on the first answer would herd every member on the slot read first.
    fn awaiting_first_state(&self) -> bool {
        self.slots.iter().any(LeaseSlot::is_reading_first_time)
            || self
                .stream
                .as_ref()
                .is_some_and(|_| self.slots.iter().any(LeaseSlot::is_unknown))
    }

    /// When `slot` may be taken by this member: when it is takeable, unless another member
    /// reserved its next term; then a retry period later, in case that member is gone. A
    /// reservation by a member seen holding another slot is void: a member holds one slot at
    /// most, so it took that one instead (a free slot is taken before a reserved one is
    /// waited for), and its reserved slot would otherwise stay free for a retry period.
    fn take_at(&self, slot: &LeaseSlot) -> Option<Instant> {
        let at = slot.next_take_at(&self.timing)?;
        let reserved_by_other = slot.lease().is_some_and(|l| {
            let next = &l.record.next_holder;
            !matches!(next, Holder::None)
                && !next.is(&self.identity)
                && !self.slots.iter().any(|s| s.holder() == Some(next))
        });
        Some(if reserved_by_other {
            at.saturating_add(self.timing.retry_period())
        } else {
            at
        })
    }

    fn takeable(&self, slot: &LeaseSlot, now: Instant) -> bool {
        self.judge(slot, now).takeable
    }

    fn reservable(&self, slot: &LeaseSlot, now: Instant) -> bool {
        self.judge(slot, now).reservable
    }

    /// What this member makes of `slot` at `now`, each rule computed once.
    fn judge(&self, slot: &LeaseSlot, now: Instant) -> Judged {
        let free = slot.is_takeable(now, &self.timing);
        let record = slot.lease().map(|l| &l.record);
        let reserved = record.is_some_and(|r| !matches!(r.next_holder, Holder::None));
        Judged {
            free,
            takeable: free && self.take_at(slot).is_some_and(|at| at <= now),
            // Watching, and another member's term with no next holder named, which this
            // process can write back as it is.
            reservable: self.stream.is_some()
                && !free
                && !reserved
                && !slot.has_request_in_flight()
                && record.is_some_and(|r| {
                    matches!(&r.holder, Holder::Named(h) if *h != self.identity)
                        && r.lease_duration.is_some()
                }),
            held: slot.holder().is_some_and(|h| !matches!(h, Holder::None)),
            reserved,
        }
    }

    /// The slot whose next term this member reserved, while another holds it or it is free.
    fn reserved(&self) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| {
                s.lease().is_some_and(|l| {
                    l.record.next_holder.is(&self.identity) && !l.record.holder.is(&self.identity)
                })
            })
            .map(|i| i as u16)
    }

    fn campaign(&mut self, i: u16, now: Instant) {
        self.takeover.settle();
        self.reservation.settle();
        self.with_slot(i, |slot, env| slot.set_intent(Intent::Campaign, now, env));
        self.state = State::Wanting { attempt: Some(i) };
    }

    /// Picks a takeable slot uniformly at random, once every slot's first state is known and
    /// the takeover delay has passed. A slot whose next term this member reserved is taken the
    /// moment it is free; with every slot held and none reserved by it, a watching member
    /// reserves one, uniformly at random, after the reservation delay.
    fn choose(&mut self, now: Instant) {
        if self.awaiting_first_state() {
            return;
        }
        let reserved = self.reserved();
        if let Some(i) = reserved.filter(|i| self.takeable(&self.slots[usize::from(*i)], now)) {
            self.campaign(i, now);
            return;
        }
        let free = self.slots.iter().filter(|s| self.takeable(s, now)).count();
        if free == 0 {
            self.takeover.settle();
            if reserved.is_none() {
                self.reserve(now);
            } else {
                self.reservation.settle();
            }
            return;
        }
        // A free slot is taken before any is reserved.
        self.reservation.settle();
        if !self.takeover.ready(now, free, &mut self.jitter) {
            return;
        }
        let pick = self.jitter.index(free);
        let Some(i) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| self.takeable(s, now))
            .nth(pick)
            .map(|(i, _)| i as u16)
        else {
            return;
        };
        self.campaign(i, now);
    }

    /// With every slot held: reserves one held slot's next term after the reservation delay,
    /// one reservation in flight at a time.
    fn reserve(&mut self, now: Instant) {
        if self.slots.iter().any(LeaseSlot::is_reserving) {
            // Its answer decides what comes next; nothing to wake for meanwhile.
            self.reservation.settle();
            return;
        }
        let open = self
            .slots
            .iter()
            .filter(|s| self.reservable(s, now))
            .count();
        if open == 0 {
            self.reservation.settle();
            return;
        }
        if !self.reservation.ready(now, open, &mut self.jitter) {
            return;
        }
        self.reservation.settle();
        let pick = self.jitter.index(open);
        if let Some(i) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| self.reservable(s, now))
            .nth(pick)
            .map(|(i, _)| i)
        {
            self.slots[i].reserve();
        }
    }

    /// The slot this member holds at `now`, if any.
    pub fn held(&self, now: Instant) -> Option<u16> {
        match self.state {
            State::Holding(i) if self.slots[usize::from(i)].is_leader(now) => Some(i),
            _ => None,
        }
    }

    /// While holding: the slot's fencing epoch.
    pub fn epoch(&self) -> Option<u32> {
        match self.state {
            State::Holding(i) => self.slots[usize::from(i)].leadership().map(|l| l.epoch),
            _ => None,
        }
    }

    /// While holding: when the slot is lost without a successful renew.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Holding(i) => self.slots[usize::from(i)].leadership().map(|l| l.deadline),
            _ => None,
        }
    }

    /// Number of slots.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The lease name of `slot`.
    pub fn slot_name(&self, slot: u16) -> Option<&LeaseName> {
        self.slots.get(usize::from(slot)).map(LeaseSlot::name)
    }

    /// The holder of `slot` when last seen.
    pub fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        self.slots
            .get(usize::from(slot))
            .and_then(LeaseSlot::holder)
    }

    /// This member's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The contention window: a freed slot is taken after a delay drawn uniformly below it,
    /// sized from the hand-overs this member watched (wider the more members wait).
    pub fn contention_window(&self) -> Duration {
        self.takeover.window()
    }
}

impl<const N: usize> Machine for Pool<N> {
    type Event = SlotEvent;

    fn is_closed(&self) -> bool {
        self.state == State::Finished
            && !self.slots.iter().any(LeaseSlot::is_watching)
            && self
                .stream
                .as_ref()
                .is_none_or(|s| matches!(s.state, StreamState::Closed { .. }))
    }

    fn stats(&self) -> Stats {
        Stats {
            events_dropped: self.events.dropped_total(),
            ..self.stats
        }
    }

    fn handle_answer(&mut self, slot: u16, answer: Response, now: Instant) {
        if self
            .slots
            .get(usize::from(slot))
            .is_some_and(LeaseSlot::has_request_in_flight)
        {
            self.stats.answered(&answer);
        }
        let conflict = matches!(answer, Err(ApiError::Conflict | ApiError::AlreadyExists));
        if conflict
            && self
                .slots
                .get(usize::from(slot))
                .is_some_and(LeaseSlot::is_reservation_in_flight)
        {
            self.reservation.lost(usize::from(slot), now);
        }
        let lost = conflict
            && self.state
                == (State::Wanting {
                    attempt: Some(slot),
                });
        self.with_slot(slot, |s, env| s.handle_answer(answer, now, env));
        if lost {
            // Another member wrote first. The slot may still look free (the stream has not
            // shown the winner yet, only an older release): taking it again at once would race
            // the same crowd at network speed. The next take waits for the winner, then goes
            // through a new delay like any other.
            self.with_slot(slot, |s, env| s.set_intent(Intent::Observe, now, env));
            self.state = State::Wanting { attempt: None };
            self.takeover.lost(usize::from(slot), now);
        }
        self.reconcile(now);
    }

    fn handle_watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        if slot == self.stream_slot() {
            self.stream_event(event, now);
        } else {
            let stream = self.stream.as_ref().map(|s| s.state);
            if stream == Some(StreamState::Listing) {
                if let Some(listed) = self.listed.get_mut(usize::from(slot)) {
                    *listed = true;
                }
            }
            if let (Some(stream), WatchEvent::Changed(lease)) = (self.stream.as_mut(), &event) {
                if stream.state == StreamState::Open {
                    stream.resume = Some(lease.resource_version.clone());
                }
            }
            self.with_slot(slot, |s, env| s.handle_watch_event(event, now, env));
        }
        self.reconcile(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.reconcile(now);
    }

    fn close(&mut self, now: Instant) {
        match self.state {
            State::Holding(i) | State::Wanting { attempt: Some(i) } => {
                self.with_slot(i, |s, env| s.set_intent(Intent::Release, now, env));
                self.set_all(Intent::Idle, Some(i), now);
                self.state = State::Releasing(i);
            }
            State::Wanting { attempt: None } => {
                self.set_all(Intent::Idle, None, now);
                self.state = State::Finished;
            }
            State::Releasing(_) | State::Finished => {}
        }
    }

    fn rejoin(&mut self, now: Instant) {
        if self.is_closed() {
            let at = now.saturating_add(self.timing.retry_period());
            for slot in self.slots.iter_mut() {
                slot.restart(Intent::Observe, at);
            }
            if let Some(stream) = self.stream.as_mut() {
                stream.state = StreamState::Closed { reopen_at: at };
                stream.resume = None;
            }
            self.wait_again();
        }
    }

    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        self.reconcile(now);
        if let Some(request) = self.poll_stream(now) {
            self.stats.sent(&request);
            return Some(request);
        }
        // Not through `with_slot`: a request is large, and each layer of `Option` around it is
        // another copy on every poll.
        let (slots, mut env) = self.slots_and_env();
        for slot in slots.iter_mut() {
            if let Some(request) = slot.poll_request(now, wall, &mut env) {
                env.stats.sent(&request);
                return Some(request);
            }
        }
        // A slot's poll may have ended a release with nothing to write: taken in now, the pool
        // is closed (or waits for a time) when it asks for nothing, its stream closed first.
        self.reconcile(now);
        let request = self.poll_stream(now);
        if let Some(request) = &request {
            self.stats.sent(request);
        }
        request
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let slots = self
            .slots
            .iter()
            .filter_map(|s| s.poll_timeout(&self.timing));
        // While waiting for a slot (and no first state is awaited, which decides first), wake
        // when the first observed one can be taken, and when the drawn takeover delay ends.
        // A delay longer than half a retry period is woken within it too: a slot that sees no
        // input for longer than it expected takes the process for paused.
        let waiting =
            self.state == State::Wanting { attempt: None } && !self.awaiting_first_state();
        let takeover =
            earliest([self.takeover.wake_at(), self.reservation.wake_at()]).filter(|_| waiting);
        // Once a delay is drawn (a slot is free), the drawn instant is the next take, whatever
        // else frees meanwhile.
        let expiries = self
            .slots
            .iter()
            .filter(|_| waiting && self.takeover.wake_at().is_none())
            .filter_map(|s| self.take_at(s));
        let stream = match self.stream.as_ref().map(|s| s.state) {
            Some(StreamState::Closed { reopen_at }) if self.stream_wanted() => Some(reopen_at),
            _ => None,
        };
        let soonest = slots.chain(expiries).chain(stream).min();
        match takeover {
            Some(at) => {
                let check = self
                    .last_input
                    .saturating_add(self.timing.retry_period() / 2);
                earliest([soonest, Some(at.min(check))])
            }
            None => soonest,
        }
    }

    fn poll_event(&mut self) -> Option<SlotEvent> {
        self.events.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{WALL, id, lease, ms, rv, stored, wall_at};
    use crate::{ApiError, Event, Operation, Request, SlotEvent, WatchEvent};

    fn config(size: usize, watch: bool) -> PoolConfig<'static> {
        PoolConfig {
            prefix: "cold-start",
            size,
            identity: id("me"),
            timing: Timing::DEFAULT,
            watch,
        }
    }

    /// A member that takes a free slot at once and, watching, watches each slot on its own
    /// (as after the server refused the pool's stream): for the rules of the slots.
    fn pool(size: usize, watch: bool, seed: u64) -> Pool<8> {
        let mut p = Pool::new(config(size, watch), seed).unwrap();
        p.takeover = Takeover::immediate(size);
        if watch {
            p.handle_watch_event(p.stream_slot(), WatchEvent::Forbidden, ms(0));
        }
        p
    }

    /// A watching member whose stream listed `leases` (slot and lease) and synced at version
    /// `synced`, at 1 ms; with `takeover` as its takeover rule when given.
    fn streaming(
        size: usize,
        seed: u64,
        takeover: Option<Takeover<8>>,
        leases: &[(u16, crate::Lease)],
        synced: u64,
    ) -> Pool<8> {
        let mut p: Pool<8> = Pool::new(config(size, true), seed).unwrap();
        if let Some(takeover) = takeover {
            p.takeover = takeover;
        }
        let stream = p.stream_slot();
        all(&mut p, ms(0));
        for (slot, lease) in leases {
            p.handle_watch_event(*slot, WatchEvent::Changed(lease.clone()), ms(1));
        }
        p.handle_watch_event(stream, WatchEvent::Synced(rv(synced)), ms(1));
        p
    }

    /// Every request due at `now`, watch operations left out.
    fn due(p: &mut Pool<8>, now: Instant) -> Vec<Request, 16> {
        let mut out = Vec::new();
        while let Some(r) = p.poll_request(now, WALL) {
            if !matches!(r.op, Operation::Watch { .. } | Operation::Unwatch) {
                out.push(r).unwrap();
            }
        }
        out
    }

    fn writes(requests: &[Request]) -> usize {
        requests
            .iter()
            .filter(|r| !matches!(r.op, Operation::Get))
            .count()
    }

    /// The takes among `requests`: writes naming this member as holder.
    fn takes(requests: &[Request]) -> usize {
        requests
            .iter()
            .filter(|r| {
                matches!(&r.op, Operation::Create(rec) | Operation::Update { record: rec, .. }
                    if rec.holder.is(&id("me")))
            })
            .count()
    }

    /// Every request due at `now`, watch operations included.
    fn all(p: &mut Pool<8>, now: Instant) -> Vec<Request, 16> {
        let mut out = Vec::new();
        while let Some(r) = p.poll_request(now, WALL) {
            out.push(r).unwrap();
        }
        out
    }

    /// The slots whose watch `requests` close.
    fn unwatched(requests: &[Request]) -> Vec<u16, 8> {
        requests
            .iter()
            .filter(|r| r.op == Operation::Unwatch)
            .map(|r| r.slot)
            .collect()
    }

    #[test]
    fn while_holding_the_getters_tell_the_slots_term() {
        let mut p = pool(3, false, 1);
        assert_eq!(p.size(), 3);
        assert_eq!((p.epoch(), p.deadline()), (None, None));
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(0));
        p.handle_answer(1, Ok(lease(2, Some("c"), 0)), ms(0));
        p.handle_answer(2, Ok(lease(3, None, 6)), ms(0));
        assert_eq!(p.slot_holder(0), Some(&Holder::Named(id("b"))));
        assert_eq!(p.slot_holder(2), Some(&Holder::None));
        assert_eq!(p.slot_holder(3), None, "no such slot");
        let w = due(&mut p, ms(1));
        assert_eq!(w[0].slot, 2);
        assert_eq!((p.epoch(), p.deadline()), (None, None), "not held yet");
        p.handle_answer(2, Ok(stored(&w[0].op, 4)), ms(3));
        assert_eq!(p.held(ms(3)), Some(2));
        assert_eq!(p.epoch(), Some(7), "the take's leaseTransitions");
        assert_eq!(
            p.deadline(),
            Some(ms(10_001)),
            "the send plus the renew deadline"
        );
        assert_eq!(p.held(ms(10_000)), Some(2));
        assert_eq!(p.held(ms(10_001)), None, "held no longer, input or not");
        assert_eq!(p.slot_holder(2), Some(&Holder::Named(id("me"))));
        // A renew writes a later renewTime, or the server would store nothing.
        let renew = p.poll_request(ms(2_003), wall_at(ms(2_003))).unwrap();
        p.handle_answer(2, Ok(stored(&renew.op, 5)), ms(2_004));
        assert_eq!((p.epoch(), p.deadline()), (Some(7), Some(ms(12_003))));
        p.close(ms(2_005));
        assert_eq!((p.epoch(), p.deadline()), (None, None), "released");
    }

    /// The watch may deliver a claim's own write before its answer; the answer decides whether
    /// the slot was won, so the attempt must not be given up (and another slot tried) meanwhile.
    #[test]
    fn an_attempt_whose_claim_is_in_flight_is_kept_until_its_answer() {
        let mut p = pool(2, true, 5);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(1));
        p.handle_answer(1, Err(ApiError::NotFound), ms(1));
        let w = due(&mut p, ms(1));
        assert_eq!(writes(&w), 1, "{w:?}");
        let mine = w[0].slot;
        p.handle_watch_event(mine, WatchEvent::Changed(stored(&w[0].op, 7)), ms(2));
        assert_eq!(writes(&due(&mut p, ms(2))), 0, "no second claim");
        p.handle_answer(mine, Ok(stored(&w[0].op, 7)), ms(3));
        assert_eq!(p.held(ms(3)), Some(mine));
        assert_eq!(writes(&due(&mut p, ms(3))), 0);
    }

    /// A take that failed for a passing reason (a 500) is tried again on the same slot: it is
    /// still free, and choosing anew would only add a takeover delay. Over eight seeds, so a
    /// fresh uniform pick among the four free slots cannot pass by chance.
    #[test]
    fn a_take_that_failed_in_passing_is_retried_on_the_same_slot() {
        for seed in 0..8 {
            let mut p = pool(4, false, seed);
            due(&mut p, ms(0));
            for slot in 0..4 {
                p.handle_answer(slot, Err(ApiError::NotFound), ms(1));
            }
            let w = due(&mut p, ms(1));
            assert_eq!(writes(&w), 1, "seed {seed}: {w:?}");
            let mine = w[0].slot;
            p.handle_answer(mine, Err(ApiError::Server { status: 500 }), ms(2));
            let mut next = None;
            for t in (3..10_000).step_by(50) {
                for r in due(&mut p, ms(t)) {
                    if matches!(r.op, Operation::Get) {
                        p.handle_answer(r.slot, Err(ApiError::NotFound), ms(t));
                    } else {
                        next = next.or(Some(r.slot));
                    }
                }
                if next.is_some() {
                    break;
                }
            }
            assert_eq!(
                next,
                Some(mine),
                "seed {seed}: the take is tried again where it was"
            );
        }
    }

    /// A holder has no use for the other slots: it stops watching them (one stream per slot
    /// left open is load on the API server for nothing), and a finished release closes its own.
    #[test]
    fn watches_are_closed_on_the_slots_left_idle() {
        let mut p = pool(3, true, 4);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        p.handle_answer(1, Ok(lease(1, Some("b"), 0)), ms(0));
        p.handle_answer(2, Ok(lease(2, Some("c"), 0)), ms(0));
        let r = all(&mut p, ms(0));
        let watched = r
            .iter()
            .filter(|r| matches!(r.op, Operation::Watch { .. }))
            .count();
        assert_eq!(watched, 3, "{r:?}");
        let create = r
            .iter()
            .find(|r| matches!(r.op, Operation::Create(_)))
            .unwrap();
        p.handle_answer(0, Ok(stored(&create.op, 3)), ms(1));
        assert_eq!(p.held(ms(1)), Some(0));
        assert_eq!(unwatched(&all(&mut p, ms(1))).as_slice(), &[1, 2]);
        p.close(ms(2));
        let r = all(&mut p, ms(2));
        assert_eq!(r.len(), 1, "the release write alone: {r:?}");
        assert!(matches!(r[0].op, Operation::Update { .. }), "{r:?}");
        p.handle_answer(0, Ok(lease(4, None, 0)), ms(4));
        assert!(!p.is_closed(), "slot 0's watch is still open");
        assert_eq!(unwatched(&all(&mut p, ms(4))).as_slice(), &[0]);
        assert!(p.is_closed());
    }

    /// Contract: drain events after every `handle_*`. A term that ran out is reported when the
    /// timeout comes, not at the next poll.
    #[test]
    fn a_timeout_past_the_deadline_reports_the_loss_at_once() {
        let mut p = pool(1, false, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let w = due(&mut p, ms(0));
        p.handle_answer(0, Ok(stored(&w[0].op, 1)), ms(0));
        while p.poll_event().is_some() {}
        let renew = due(&mut p, ms(2_000));
        assert!(matches!(renew[0].op, Operation::Update { .. }));
        // The renew is never answered; the deadline comes.
        assert_eq!(p.poll_timeout(), Some(ms(10_000)));
        p.handle_timeout(ms(10_000));
        assert_eq!(
            p.poll_event().map(|e| e.event),
            Some(Event::LostLeadership {
                reason: crate::LossReason::RenewDeadlineExceeded
            })
        );
        assert_eq!(p.held(ms(10_000)), None);
    }

    #[test]
    fn a_holder_wakes_for_its_renew_not_for_the_slots_it_left() {
        let mut p = pool(2, false, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, None, 0)), ms(0));
        p.handle_answer(1, Ok(lease(2, None, 0)), ms(0));
        let w = due(&mut p, ms(0));
        p.handle_answer(w[0].slot, Ok(stored(&w[0].op, 3)), ms(1));
        assert_eq!(p.held(ms(1)), Some(w[0].slot));
        assert_eq!(
            p.poll_timeout(),
            Some(ms(2_001)),
            "the renew, not the free slot's past instant"
        );
    }

    /// While a member waits and a read is in flight, only the answer can move it on.
    #[test]
    fn a_waiting_member_asks_for_no_wake_up_while_its_poll_is_in_flight() {
        let mut p = pool(1, false, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(0));
        let next = p.poll_timeout().unwrap();
        assert!(next < ms(15_000), "a poll before the expiry: {next:?}");
        assert_eq!(due(&mut p, next)[0].op, Operation::Get);
        assert_eq!(p.poll_timeout(), None);
    }

    /// Choosing waits only for first reads (so the first answer does not herd every member on
    /// one slot); a later read in flight on another slot does not hold a free slot back.
    #[test]
    fn a_slot_freed_while_another_is_re_read_is_taken_at_once() {
        let mut p = pool(2, true, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(0));
        p.handle_answer(1, Ok(lease(2, Some("c"), 0)), ms(0));
        assert!(due(&mut p, ms(0)).is_empty(), "watching, nothing free");
        p.handle_watch_event(1, WatchEvent::Expired, ms(100));
        assert_eq!(due(&mut p, ms(100))[0].op, Operation::Get);
        p.handle_watch_event(0, WatchEvent::Changed(lease(3, None, 0)), ms(200));
        let w = due(&mut p, ms(200));
        assert_eq!(writes(&w), 1, "{w:?}");
        assert_eq!(w[0].slot, 0);
    }

    #[test]
    fn a_close_while_waiting_ends_once_every_watch_is_closed() {
        let mut p = pool(2, true, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(0));
        p.handle_answer(1, Ok(lease(2, Some("c"), 0)), ms(0));
        assert_eq!(all(&mut p, ms(0)).len(), 2, "two watches");
        p.close(ms(1));
        assert!(!p.is_closed(), "two watches still open");
        assert_eq!(unwatched(&all(&mut p, ms(1))).as_slice(), &[0, 1]);
        assert!(p.is_closed());
    }

    #[test]
    fn events_not_drained_are_reported_dropped_and_counted() {
        let mut p = pool(1, false, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let w = due(&mut p, ms(0));
        // LeaderChanged, BecameLeader, Renewed.
        p.handle_answer(0, Ok(stored(&w[0].op, 1)), ms(0));
        for i in 1..=6 {
            let r = p
                .poll_request(ms(i * 2_000), wall_at(ms(i * 2_000)))
                .unwrap();
            p.handle_answer(0, Ok(stored(&r.op, i + 1)), ms(i * 2_000));
        }
        assert_eq!(p.stats().events_dropped, 1, "nine events for eight places");
        assert_eq!(
            p.poll_event(),
            Some(SlotEvent {
                slot: 0,
                event: Event::EventsDropped { count: 1 }
            })
        );
    }

    #[test]
    fn slots_are_named_prefix_dash_index() {
        let p = pool(3, false, 1);
        assert_eq!(p.slot_name(2).unwrap().as_str(), "cold-start-2");
        assert_eq!(p.slot_name(3), None);
    }

    #[test]
    fn only_a_free_slot_is_taken() {
        let mut p = pool(3, false, 1);
        let reads = due(&mut p, ms(0));
        assert_eq!(reads.len(), 3, "one read per slot, in parallel");
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(1));
        p.handle_answer(1, Ok(lease(2, Some("c"), 0)), ms(1));
        p.handle_answer(2, Err(ApiError::NotFound), ms(1));
        let w = due(&mut p, ms(1));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].slot, 2);
        p.handle_answer(2, Ok(stored(&w[0].op, 3)), ms(2));
        assert_eq!(p.held(ms(2)), Some(2));
    }

    #[test]
    fn at_most_one_slot_is_attempted_at_a_time() {
        let mut p = pool(5, false, 9);
        due(&mut p, ms(0));
        for slot in 0..5 {
            p.handle_answer(slot, Err(ApiError::NotFound), ms(1));
        }
        let w = due(&mut p, ms(1));
        assert_eq!(writes(&w), 1, "{w:?}");
        for t in [2, 1_000, 3_000] {
            assert_eq!(writes(&due(&mut p, ms(t))), 0);
        }
    }

    #[test]
    fn slots_are_tried_in_a_seeded_random_order() {
        let mut first = [0u32; 4];
        for seed in 0..200 {
            let mut p = pool(4, false, seed);
            due(&mut p, ms(0));
            for slot in 0..4 {
                p.handle_answer(slot, Err(ApiError::NotFound), ms(1));
            }
            let w = due(&mut p, ms(1));
            first[usize::from(w[0].slot)] += 1;
        }
        assert!(
            first.iter().all(|&n| n > 20),
            "no herd on one slot: {first:?}"
        );
    }

    #[test]
    fn when_every_slot_is_held_it_waits_for_the_earliest_expiry() {
        let mut p = pool(2, true, 3);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(5_000));
        p.handle_answer(1, Ok(lease(2, Some("c"), 0)), ms(1_000));
        assert!(due(&mut p, ms(5_000)).is_empty());
        assert_eq!(p.poll_timeout(), Some(ms(16_000)));
        assert!(due(&mut p, ms(15_999)).is_empty());
        let w = due(&mut p, ms(16_000));
        assert_eq!((w.len(), w[0].slot), (1, 1));
        assert!(
            matches!(&w[0].op, Operation::Update { resource_version, .. } if *resource_version == rv(2))
        );
    }

    #[test]
    fn a_lost_race_moves_on_to_another_slot() {
        let mut p = pool(2, false, 5);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(1));
        p.handle_answer(1, Err(ApiError::NotFound), ms(1));
        let w = due(&mut p, ms(1));
        let lost = w[0].slot;
        p.handle_answer(lost, Err(ApiError::AlreadyExists), ms(2));
        let read = due(&mut p, ms(2));
        assert_eq!(
            read.len(),
            1,
            "the lost slot is read, nothing taken yet: {read:?}"
        );
        assert_eq!((read[0].slot, &read[0].op), (lost, &Operation::Get));
        // The read shows the winner: the member moves on to the other slot.
        p.handle_answer(lost, Ok(lease(3, Some("winner"), 0)), ms(3));
        let write = due(&mut p, ms(3));
        assert_eq!(write.len(), 1, "{write:?}");
        assert_ne!(write[0].slot, lost);
        assert!(matches!(write[0].op, Operation::Create(_)), "{write:?}");
    }

    #[test]
    fn no_wake_up_is_asked_for_a_slot_whose_read_is_in_flight() {
        let mut p = pool(1, false, 5);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(1));
        let w = due(&mut p, ms(1));
        p.handle_answer(0, Err(ApiError::AlreadyExists), ms(2));
        assert_eq!(due(&mut p, ms(2))[0].op, Operation::Get, "{w:?}");
        // Only the read's answer can move things on: no wake-up in the past.
        assert!(
            p.poll_timeout().is_none_or(|t| t > ms(2)),
            "{:?}",
            p.poll_timeout()
        );
    }

    #[test]
    fn finish_releases_the_held_slot() {
        let mut p = pool(1, false, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let w = due(&mut p, ms(0));
        p.handle_answer(0, Ok(stored(&w[0].op, 1)), ms(0));
        p.close(ms(100));
        assert_eq!(p.held(ms(100)), None);
        let r = due(&mut p, ms(101));
        let Operation::Update { record, .. } = &r[0].op else {
            panic!("{r:?}")
        };
        assert_eq!(record.holder, Holder::None);
        p.handle_answer(0, Ok(lease(2, None, 0)), ms(102));
        assert!(p.is_closed());
        let mut released = false;
        while let Some(e) = p.poll_event() {
            released |= e.event == Event::Released { written: true };
        }
        assert!(released);
        assert!(due(&mut p, ms(60_000)).is_empty());
    }

    #[test]
    fn a_lost_slot_sends_the_member_back_to_wanting() {
        let mut p = pool(2, true, 2);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        p.handle_answer(1, Ok(lease(4, Some("c"), 0)), ms(0));
        let w = due(&mut p, ms(0));
        p.handle_answer(0, Ok(stored(&w[0].op, 5)), ms(0));
        assert_eq!(p.held(ms(0)), Some(0));
        p.handle_watch_event(0, WatchEvent::Changed(lease(6, Some("thief"), 1)), ms(100));
        assert_eq!(p.held(ms(100)), None);
        // Slot 1 is read again (it was idle while held) and taken when it expires.
        let mut now = 100;
        let taken = loop {
            for r in due(&mut p, ms(now)) {
                match (r.slot, &r.op) {
                    (1, Operation::Get) => p.handle_answer(1, Ok(lease(4, Some("c"), 0)), ms(now)),
                    (1, Operation::Update { .. }) => {}
                    (0, Operation::Get) => {
                        p.handle_answer(0, Ok(lease(6, Some("thief"), 1)), ms(now))
                    }
                    _ => panic!("{r:?}"),
                }
                if r.slot == 1 && matches!(r.op, Operation::Update { .. }) {
                    return;
                }
            }
            now += 10;
            if now > 60_000 {
                break false;
            }
        };
        assert!(taken, "slot 1 was never attempted");
    }

    #[test]
    fn a_slot_missing_before_it_went_idle_is_waited_out_like_a_deletion() {
        // Slot 1 was missing at the first read; while the member held slot 0 it neither read
        // nor watched slot 1, which may have been created and deleted meanwhile. Watching or
        // not, the member then waits it out.
        for watch in [true, false] {
            let mut p = pool(2, watch, 2);
            due(&mut p, ms(0));
            p.handle_answer(0, Err(ApiError::NotFound), ms(0));
            p.handle_answer(1, Err(ApiError::NotFound), ms(0));
            let w = due(&mut p, ms(0));
            let (held, missing) = (w[0].slot, 1 - w[0].slot);
            p.handle_answer(held, Ok(stored(&w[0].op, 5)), ms(0));
            assert_eq!(p.held(ms(0)), Some(held));
            p.handle_watch_event(held, WatchEvent::Deleted, ms(60_000));
            assert_eq!(p.held(ms(60_000)), None);
            let mut now = 60_000;
            let created_at = loop {
                let requests = due(&mut p, ms(now));
                if let Some(r) = requests
                    .iter()
                    .find(|r| r.slot == missing && matches!(r.op, Operation::Create(_)))
                {
                    break Some((now, r.clone()));
                }
                for r in requests {
                    // The deleted slot is re-created by someone else, who keeps renewing it;
                    // the missing one stays missing.
                    match (&r.op, r.slot == held) {
                        (Operation::Get, false) => {
                            p.handle_answer(r.slot, Err(ApiError::NotFound), ms(now))
                        }
                        (Operation::Get, true) => {
                            let renewed = lease(10 + now, Some("other"), 1);
                            p.handle_answer(r.slot, Ok(renewed), ms(now))
                        }
                        (Operation::Create(_), true) => {
                            p.handle_answer(r.slot, Err(ApiError::AlreadyExists), ms(now))
                        }
                        _ => {}
                    }
                }
                now += 10;
                if now > 120_000 {
                    break None;
                }
            };
            let (at, _) = created_at.unwrap_or_else(|| panic!("never created, watch {watch}"));
            assert!(
                at >= 75_000,
                "created {at} ms in, before a lease duration passed"
            );
        }
    }

    /// A slot seen deleted, then left idle while another was held, may have been re-created
    /// and deleted again meanwhile: wanted again, it is waited out from then, not from the
    /// deletion seen long ago.
    #[test]
    fn a_slot_seen_deleted_before_it_went_idle_is_waited_out_again() {
        let mut p = pool(2, true, 2);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(1, Some("b"), 0)), ms(0));
        p.handle_answer(1, Err(ApiError::NotFound), ms(0));
        let w = due(&mut p, ms(0));
        assert_eq!((w[0].slot, writes(&w)), (1, 1), "{w:?}");
        // Slot 0's holder deletes it while this member's create of slot 1 is in flight.
        p.handle_watch_event(0, WatchEvent::Deleted, ms(100));
        p.handle_answer(1, Ok(stored(&w[0].op, 2)), ms(100));
        assert_eq!(p.held(ms(100)), Some(1));
        due(&mut p, ms(100));
        // A minute later slot 1 is lost; its new holder keeps renewing it.
        p.handle_watch_event(1, WatchEvent::Changed(lease(3, Some("c"), 1)), ms(60_000));
        assert_eq!(p.held(ms(60_000)), None);
        let mut now = 60_000;
        let created = loop {
            if now == 70_000 {
                p.handle_watch_event(1, WatchEvent::Changed(lease(4, Some("c"), 1)), ms(now));
            }
            let requests = due(&mut p, ms(now));
            if let Some(r) = requests.iter().find(|r| r.op != Operation::Get) {
                break (r.slot, now, matches!(r.op, Operation::Create(_)));
            }
            for r in requests {
                let answer = match r.slot {
                    0 => Err(ApiError::NotFound),
                    _ => Ok(lease(4, Some("c"), 1)),
                };
                p.handle_answer(r.slot, answer, ms(now));
            }
            now += 10;
            assert!(now < 120_000, "never re-created");
        };
        assert_eq!(created, (0, 75_000, true));
    }

    /// A waiting member wakes when an observed slot can be taken. Woken more than a retry
    /// period later, it was paused: the slot seen deleted may have been re-created and deleted
    /// again meanwhile, so it is read again before it is created. Woken within a retry period
    /// of that instant, it creates at once.
    #[test]
    fn a_member_paused_past_a_deleted_slots_expiry_reads_it_again() {
        for (woken, first) in [(18_000, "create"), (18_001, "read")] {
            let mut p = pool(1, true, 1);
            due(&mut p, ms(0));
            p.handle_answer(0, Ok(lease(5, Some("b"), 3)), ms(0));
            assert!(due(&mut p, ms(0)).is_empty(), "watching");
            p.handle_watch_event(0, WatchEvent::Deleted, ms(1_000));
            assert!(due(&mut p, ms(1_000)).is_empty());
            assert_eq!(p.poll_timeout(), Some(ms(16_000)));
            p.handle_timeout(ms(woken));
            let sent = match &due(&mut p, ms(woken))[0].op {
                Operation::Create(_) => "create",
                Operation::Get => "read",
                other => panic!("{other:?}"),
            };
            assert_eq!(sent, first, "woken at {woken} ms");
        }
    }

    #[test]
    fn closing_twice_or_rejoining_before_the_end_changes_nothing() {
        let mut p = pool(1, false, 1);
        assert_eq!(p.identity(), &id("me"));
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        let w = due(&mut p, ms(0));
        p.handle_answer(0, Ok(stored(&w[0].op, 1)), ms(0));
        p.close(ms(10));
        p.rejoin(ms(10));
        p.close(ms(11));
        let r = due(&mut p, ms(11));
        assert_eq!(r.len(), 1, "one release write: {r:?}");
        assert!(matches!(r[0].op, Operation::Update { .. }));
        p.handle_answer(0, Ok(lease(2, None, 0)), ms(13));
        assert!(p.is_closed());
        p.close(ms(14));
        assert!(p.is_closed());
        assert!(due(&mut p, ms(14)).is_empty());
    }

    #[test]
    fn a_prefix_too_long_for_its_slot_names_is_refused() {
        let long = [b'p'; NAME_CAPACITY - 1];
        let config = PoolConfig {
            prefix: core::str::from_utf8(&long).unwrap(),
            size: 2,
            identity: id("me"),
            timing: Timing::DEFAULT,
            watch: false,
        };
        assert_eq!(
            Pool::<4>::new(config, 0).unwrap_err(),
            PoolError::Name(TextError::TooLong {
                what: "lease name",
                len: NAME_CAPACITY + 5,
                max: NAME_CAPACITY
            })
        );
    }

    #[test]
    fn a_size_out_of_range_is_refused() {
        let config = |size| PoolConfig {
            prefix: "delegation",
            size,
            identity: id("me"),
            timing: Timing::DEFAULT,
            watch: false,
        };
        assert_eq!(
            Pool::<4>::new(config(0), 0).unwrap_err(),
            PoolError::Size {
                size: 0,
                capacity: 4
            }
        );
        assert!(Pool::<4>::new(config(5), 0).is_err());
        let mut text: heapless::String<64> = heapless::String::new();
        write!(text, "{}", Pool::<4>::new(config(5), 0).unwrap_err()).unwrap();
        assert_eq!(text, "pool size 5 must be between 1 and 4");
        assert!(Pool::<4>::new(config(4), 0).is_ok());
    }

    #[test]
    fn an_invalid_prefix_is_refused_before_any_request() {
        let config = PoolConfig {
            prefix: "Cold_Start",
            size: 2,
            identity: id("me"),
            timing: Timing::DEFAULT,
            watch: false,
        };
        let error = Pool::<4>::new(config, 0).unwrap_err();
        assert_eq!(error, PoolError::Name(TextError::InvalidName { at: 0 }));
        let mut text: heapless::String<200> = heapless::String::new();
        write!(text, "{error}").unwrap();
        assert!(
            text.starts_with("pool prefix gives an invalid lease name: lease name is not a DNS"),
            "{text}"
        );
    }

    #[test]
    fn rejoin_wants_a_slot_again_a_retry_period_after_the_close() {
        let mut p = pool(2, false, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Err(ApiError::NotFound), ms(0));
        p.handle_answer(1, Err(ApiError::NotFound), ms(0));
        let w = due(&mut p, ms(0));
        let slot = w[0].slot;
        p.handle_answer(slot, Ok(stored(&w[0].op, 1)), ms(0));
        assert_eq!(p.held(ms(0)), Some(slot));
        p.close(ms(10));
        let r = due(&mut p, ms(11));
        p.handle_answer(slot, Ok(lease(2, None, 0)), ms(12));
        assert!(matches!(r[0].op, Operation::Update { .. }));
        assert!(p.is_closed());
        p.rejoin(ms(100));
        assert!(!p.is_closed());
        assert_eq!(p.poll_timeout(), Some(ms(2_100)));
        assert!(due(&mut p, ms(2_099)).is_empty());
        let reads = due(&mut p, ms(2_100));
        assert_eq!(reads.len(), 2, "every slot is read afresh: {reads:?}");
        p.handle_answer(0, Ok(lease(3, Some("b"), 0)), ms(2_101));
        p.handle_answer(1, Ok(lease(4, None, 0)), ms(2_101));
        let w = due(&mut p, ms(2_101));
        assert_eq!(
            (w.len(), w[0].slot),
            (1, 1),
            "the free slot is taken: {w:?}"
        );
        p.handle_answer(1, Ok(stored(&w[0].op, 5)), ms(2_102));
        assert_eq!(p.held(ms(2_102)), Some(1));
        assert_eq!(p.stats().acquisitions, 2);
    }

    /// A watching member lists and watches all its slots with one stream, takes a free slot
    /// only after its drawn delay, and closes the stream once it holds one.
    #[test]
    fn one_stream_lists_the_slots_and_a_free_one_is_taken_after_the_drawn_delay() {
        let mut p: Pool<8> = Pool::new(config(3, true), 4).unwrap();
        let stream = p.stream_slot();
        let r = all(&mut p, ms(0));
        assert_eq!(r.len(), 1, "one stream, no reads: {r:?}");
        assert_eq!(r[0].slot, stream);
        let Operation::WatchSlots {
            slots,
            resource_version: None,
        } = &r[0].op
        else {
            panic!("{r:?}")
        };
        assert_eq!((slots.prefix(), slots.count()), ("cold-start", 3));
        p.handle_watch_event(0, WatchEvent::Changed(lease(5, Some("b"), 1)), ms(2));
        p.handle_watch_event(2, WatchEvent::Changed(lease(6, None, 1)), ms(2));
        assert!(
            all(&mut p, ms(2)).is_empty(),
            "nothing before the list ends"
        );
        p.handle_watch_event(stream, WatchEvent::Synced(rv(7)), ms(2));
        assert_eq!(
            p.slot_holder(1),
            None,
            "slot 1 was not listed: it has no lease"
        );
        let drawn = p.poll_timeout().unwrap();
        assert!(
            drawn < ms(2 + 250 / 2),
            "within the window over 2 free: {drawn:?}"
        );
        if drawn > ms(2) {
            assert!(all(&mut p, ms(2)).is_empty(), "not before the drawn delay");
        }
        let take = all(&mut p, drawn);
        assert_eq!(writes(&take), 1, "{take:?}");
        let stats = p.stats();
        assert_eq!((stats.lists, stats.watches, stats.gets), (1, 1, 0));
        p.handle_answer(take[0].slot, Ok(stored(&take[0].op, 8)), drawn);
        assert_eq!(p.held(drawn), Some(take[0].slot));
        let r = all(&mut p, drawn);
        assert!(unwatched(&r).is_empty(), "a holder keeps the stream: {r:?}");
    }

    /// Another member's take seen before the drawn delay ends: nothing is sent.
    #[test]
    fn a_slot_taken_by_another_before_the_delay_ends_is_left_alone() {
        for seed in 0..20 {
            let mut p = streaming(1, seed, None, &[(0, lease(5, Some("b"), 1))], 5);
            p.handle_watch_event(0, WatchEvent::Changed(lease(6, None, 1)), ms(10));
            let Some(drawn) = p.poll_timeout().filter(|at| *at > ms(11)) else {
                continue;
            };
            p.handle_watch_event(0, WatchEvent::Changed(lease(7, Some("c"), 2)), ms(11));
            assert_eq!(takes(&all(&mut p, drawn)), 0, "seed {seed}");
            return;
        }
        panic!("no seed drew a delay");
    }

    /// The stream resumes from the last version it delivered, lists again after a 410, and a
    /// 403 sends the member back to reading and watching each slot by name.
    #[test]
    fn the_stream_resumes_relists_and_falls_back_when_refused() {
        // Both already reserved by another member: this one only waits.
        let reserved = |l: crate::Lease| crate::Lease {
            record: crate::LeaseRecord {
                next_holder: Holder::Named(id("x")),
                ..l.record
            },
            ..l
        };
        let mut p = streaming(
            2,
            1,
            None,
            &[
                (0, reserved(lease(5, Some("b"), 1))),
                (1, reserved(lease(6, Some("c"), 1))),
            ],
            6,
        );
        let stream = p.stream_slot();
        p.handle_watch_event(
            1,
            WatchEvent::Changed(reserved(lease(9, Some("c"), 1))),
            ms(500),
        );
        p.handle_watch_event(stream, WatchEvent::Ended, ms(600));
        let at = p.poll_timeout().unwrap();
        assert!(at >= ms(2_600), "a jittered retry period: {at:?}");
        let r = all(&mut p, at);
        assert!(
            matches!(&r[0].op, Operation::WatchSlots { resource_version: Some(v), .. } if *v == rv(9)),
            "{r:?}"
        );
        p.handle_watch_event(stream, WatchEvent::Expired, at);
        let again = p.poll_timeout().unwrap();
        let r = all(&mut p, again);
        assert!(lists(&r[0].op), "{r:?}");
        p.handle_watch_event(stream, WatchEvent::Forbidden, again);
        let r = all(&mut p, again);
        let watched: Vec<u16, 8> = r
            .iter()
            .filter(|r| matches!(r.op, Operation::Watch { .. }))
            .map(|r| r.slot)
            .collect();
        assert_eq!(watched.as_slice(), &[0, 1], "each slot by name: {r:?}");
    }

    /// A member whose take of slot 0 (free at version 5) is in flight, committed as version
    /// 6, while its stream was ended with 410 and is opened again, listing (the relist's
    /// events are the caller's): the member, the take's answer, and the instant of the relist.
    fn take_in_flight_across_a_relist() -> (Pool<8>, crate::Lease, Instant) {
        let mut p = streaming(
            1,
            1,
            Some(Takeover::immediate(1)),
            &[(0, lease(5, None, 2))],
            5,
        );
        let r = due(&mut p, ms(1));
        assert_eq!(takes(&r), 1, "{r:?}");
        let taken = stored(&r[0].op, 6);
        p.handle_watch_event(p.stream_slot(), WatchEvent::Expired, ms(2));
        let at = p.poll_timeout().unwrap();
        let r = all(&mut p, at);
        assert!(lists(&r[0].op), "{r:?}");
        (p, taken, at)
    }

    /// Whether `op` opens the pool's stream from no version: a list of the slots first.
    fn lists(op: &Operation) -> bool {
        matches!(
            op,
            Operation::WatchSlots {
                resource_version: None,
                ..
            }
        )
    }

    /// Whether `p` reported becoming a leader.
    fn became_leader(p: &mut Pool<8>) -> bool {
        core::iter::from_fn(|| p.poll_event())
            .any(|e| matches!(e.event, Event::BecameLeader { .. }))
    }

    /// A take's answer slower than a relist of the stream that no longer shows the slot (it
    /// was written, then deleted): the answer is older than the list, so the member holds
    /// nothing, and takes the slot anew only as a deleted lease.
    #[test]
    fn a_take_answered_after_a_list_without_its_slot_holds_nothing() {
        let (mut p, taken, at) = take_in_flight_across_a_relist();
        p.handle_watch_event(p.stream_slot(), WatchEvent::Synced(rv(8)), at);
        p.handle_answer(0, Ok(taken), at);
        assert_eq!(p.held(at), None);
        assert!(!became_leader(&mut p));
        assert_eq!(takes(&due(&mut p, at)), 0, "a deletion is waited out");
    }

    /// As above, and another member created the slot after the list: the stream shows it
    /// before our answer comes. The answer is older than the list, whatever came after it.
    #[test]
    fn a_take_answered_after_a_list_and_a_re_creation_holds_nothing() {
        let (mut p, taken, at) = take_in_flight_across_a_relist();
        p.handle_watch_event(p.stream_slot(), WatchEvent::Synced(rv(8)), at);
        p.handle_watch_event(0, WatchEvent::Changed(lease(9, Some("b"), 0)), at);
        p.handle_answer(0, Ok(taken), at);
        assert_eq!(p.held(at), None);
        assert_eq!(p.slot_holder(0), Some(&Holder::Named(id("b"))));
    }

    /// As above, but the lease was re-created before the list, which shows it (no deletion
    /// shown at all): our answer is older than another member's record, and leads nothing.
    #[test]
    fn a_take_answered_after_a_list_showing_another_holder_holds_nothing() {
        let (mut p, taken, at) = take_in_flight_across_a_relist();
        p.handle_watch_event(0, WatchEvent::Changed(lease(8, Some("b"), 0)), at);
        p.handle_watch_event(p.stream_slot(), WatchEvent::Synced(rv(9)), at);
        p.handle_answer(0, Ok(taken), at);
        assert_eq!(p.held(at), None);
        assert!(!became_leader(&mut p));
        assert_eq!(p.slot_holder(0), Some(&Holder::Named(id("b"))));
    }

    /// The first requests `p` sends, and when: woken at its drawn instant, or every half
    /// retry period until it comes.
    fn first_requests(p: &mut Pool<8>) -> (Instant, Vec<Request, 16>) {
        for _ in 0..4 {
            let at = p.poll_timeout().unwrap();
            let r = all(p, at);
            if !r.is_empty() {
                return (at, r);
            }
            p.handle_timeout(at);
        }
        panic!("nothing sent after four wake-ups")
    }

    /// `l` with its next term reserved by `who`.
    fn reserved_by(l: crate::Lease, who: &str) -> crate::Lease {
        crate::Lease {
            record: crate::LeaseRecord {
                next_holder: Holder::Named(id(who)),
                ..l.record
            },
            ..l
        }
    }

    /// Every slot held: after the reservation delay, a watching member names itself next on
    /// one, over the version it knows, the spec as it is.
    #[test]
    fn with_every_slot_held_a_watching_member_reserves_one() {
        let mut delayed = 0;
        for seed in 0..8 {
            let held = [(0, lease(5, Some("b"), 1)), (1, lease(6, Some("c"), 1))];
            let mut p = streaming(2, seed, None, &held, 6);
            // Not at once: after a delay drawn from a window of a retry period.
            delayed += usize::from(p.poll_timeout().is_some_and(|at| at > ms(1)));
            let (at, r) = first_requests(&mut p);
            assert!(at <= ms(1 + 2_000), "within the first window: {at:?}");
            assert_eq!(r.len(), 1, "{r:?}");
            let Operation::Update {
                resource_version,
                record,
            } = &r[0].op
            else {
                panic!("{r:?}")
            };
            let known = &held[usize::from(r[0].slot)].1;
            assert_eq!(resource_version, &known.resource_version);
            assert!(record.same_spec(&known.record));
            assert_eq!(record.next_holder, Holder::Named(id("me")));
            assert_eq!(takes(&r), 0);
            // Answered: nothing more, however long the terms last.
            let slot = r[0].slot;
            p.handle_answer(slot, Ok(stored(&r[0].op, 7)), at);
            assert!(all(&mut p, at.saturating_add(Duration::from_secs(5))).is_empty());
        }
        assert!(delayed >= 6, "{delayed} of 8 drew a delay");
    }

    /// A slot asked to reserve writes only over a term it can write back as it is with this
    /// member next: not one already reserved, nor this member's own, nor one without a
    /// duration, whatever asked (the pool's own check comes first; this one holds on its own).
    #[test]
    fn a_slot_reserves_only_a_term_it_can_write_back_behind_another() {
        let mut endless = lease(5, Some("b"), 1);
        endless.record.lease_duration = None;
        for held in [
            reserved_by(lease(5, Some("b"), 1), "x"),
            lease(5, Some("me"), 1),
            endless,
        ] {
            let mut p = streaming(1, 3, None, &[(0, held.clone())], 5);
            p.slots[0].reserve();
            let reservations = all(&mut p, ms(2))
                .iter()
                .filter(|r| {
                    matches!(&r.op, Operation::Update { record, .. }
                        if record.next_holder.is(&id("me")) && !record.holder.is(&id("me")))
                })
                .count();
            assert_eq!(reservations, 0, "{held:?}");
        }
    }

    /// A reservation answered after the stream showed the release that followed it (the
    /// release carries the reservation): the older answer replaces nothing, and the reserved
    /// slot, free, is taken at once.
    #[test]
    fn a_reservation_answered_after_its_release_was_shown_takes_the_slot_at_once() {
        let mut p = streaming(1, 3, None, &[(0, lease(5, Some("b"), 1))], 5);
        let (at, r) = first_requests(&mut p);
        assert_eq!(r.len(), 1, "the reservation: {r:?}");
        p.handle_watch_event(
            0,
            WatchEvent::Changed(reserved_by(lease(7, None, 1), "me")),
            at,
        );
        p.handle_answer(0, Ok(stored(&r[0].op, 6)), at);
        let take = all(&mut p, at);
        assert_eq!(takes(&take), 1, "{take:?}");
    }

    /// One reservation at a time: while one is asked for or in flight, none other is drawn
    /// or sent, however long its answer takes.
    #[test]
    fn no_second_reservation_while_one_is_pending() {
        let held = [(0, lease(5, Some("b"), 1)), (1, lease(6, Some("c"), 1))];
        let mut p = streaming(2, 3, None, &held, 6);
        let (at, r) = first_requests(&mut p);
        assert_eq!(r.len(), 1, "{r:?}");
        for later in (1..40).map(|i| at.saturating_add(Duration::from_millis(i * 250))) {
            p.handle_timeout(later);
            assert!(all(&mut p, later).is_empty(), "at {later:?}");
        }
    }

    /// A held slot whose record this process cannot write back as it is (a holder too long to
    /// store) is never reserved, whatever its duration (the reservation would change the
    /// holder it names), nor is a reservation delay drawn for it.
    #[test]
    fn a_holder_that_cannot_be_written_back_is_not_reserved_behind() {
        let long = "h".repeat(300);
        let held = [(0, lease(5, Some(&long), 1)), (1, lease(6, Some(&long), 1))];
        assert!(matches!(held[0].1.record.holder, Holder::Oversized { .. }));
        let mut p = streaming(2, 3, None, &held, 6);
        // Nothing to wake for before the terms run out: no reservation delay is drawn.
        assert_eq!(
            p.poll_timeout(),
            Some(ms(1).saturating_add(Timing::DEFAULT.lease_duration()))
        );
        assert!(all(&mut p, ms(14_000)).is_empty());
    }

    /// A reservation that loses its race doubles this member's reservation window; a slot
    /// released while nobody had reserved it halves it (fewer wait than it was sized for).
    #[test]
    fn a_lost_reservation_widens_the_window_and_a_missed_one_narrows_it() {
        let mut p = streaming(1, 3, None, &[(0, lease(5, Some("b"), 1))], 5);
        let before = p.reservation.window();
        let (at, r) = first_requests(&mut p);
        assert_eq!(r.len(), 1, "the reservation: {r:?}");
        p.handle_answer(0, Err(ApiError::Conflict), at);
        assert_eq!(p.reservation.window(), before * 2, "lost: doubled");
        // Won, it moves by a sample at most, never doubles.
        let mut p = streaming(1, 3, None, &[(0, lease(5, Some("b"), 1))], 5);
        let (at, r) = first_requests(&mut p);
        p.handle_answer(0, Ok(stored(&r[0].op, 6)), at);
        assert!(p.reservation.window() <= before * 17 / 16);
        // A take that meets a conflict is no reservation lost.
        let mut p = streaming(1, 3, Some(Takeover::immediate(1)), &[], 5);
        let (at, r) = first_requests(&mut p);
        assert_eq!(takes(&r), 1, "{r:?}");
        p.handle_answer(0, Err(ApiError::AlreadyExists), at);
        assert_eq!(p.reservation.window(), before);
        let mut p = streaming(1, 3, None, &[(0, lease(5, Some("b"), 1))], 5);
        let before = p.reservation.window();
        p.handle_watch_event(0, WatchEvent::Changed(lease(6, None, 1)), ms(2));
        assert_eq!(
            p.reservation.window(),
            before / 2,
            "released unreserved: halved"
        );
    }

    /// The member whose reservation a release carries takes the slot at once, whatever its
    /// takeover window; a polling member reserves nothing.
    #[test]
    fn the_reserved_member_takes_its_slot_the_moment_it_is_released() {
        let mut p = streaming(
            1,
            1,
            Some(Takeover::with_window(1, Duration::from_secs(15))),
            &[(0, reserved_by(lease(5, Some("b"), 1), "me"))],
            5,
        );
        assert!(all(&mut p, ms(1)).is_empty());
        p.handle_watch_event(
            0,
            WatchEvent::Changed(reserved_by(lease(6, None, 1), "me")),
            ms(300),
        );
        let r = all(&mut p, ms(300));
        assert_eq!(takes(&r), 1, "{r:?}");
        let Operation::Update { record, .. } = &r[0].op else {
            panic!("{r:?}")
        };
        assert_eq!(
            record.next_holder,
            Holder::None,
            "the take ends the reservation"
        );
        let mut polling = pool(1, false, 1);
        assert_eq!(due(&mut polling, ms(0)).len(), 1, "its read");
        polling.handle_answer(0, Ok(lease(5, Some("b"), 1)), ms(1));
        for t in [1, 1_000, 5_000, 14_000] {
            let r = due(&mut polling, ms(t));
            assert!(r.iter().all(|r| r.op == Operation::Get), "{r:?}");
            for read in r {
                polling.handle_answer(read.slot, Ok(lease(5, Some("b"), 1)), ms(t));
            }
        }
    }

    /// A slot released with another member's reservation is left to it for a retry period
    /// more, then taken like any free slot (that member may be gone).
    #[test]
    fn a_slot_reserved_by_another_is_left_to_it_for_a_retry_period() {
        let mut p = streaming(
            1,
            1,
            Some(Takeover::immediate(1)),
            &[(0, reserved_by(lease(5, Some("b"), 1), "x"))],
            5,
        );
        p.handle_watch_event(
            0,
            WatchEvent::Changed(reserved_by(lease(6, None, 1), "x")),
            ms(300),
        );
        assert_eq!(takes(&all(&mut p, ms(300))), 0);
        assert_eq!(p.poll_timeout(), Some(ms(2_300)));
        assert_eq!(takes(&all(&mut p, ms(2_299))), 0);
        assert_eq!(takes(&all(&mut p, ms(2_300))), 1);
    }

    /// A member holds one slot at most: one seen holding another slot took that one instead
    /// of the slot it reserved, which is then taken at once, not left idle a retry period.
    #[test]
    fn a_slot_reserved_by_a_member_now_holding_another_is_taken_at_once() {
        let mut p = streaming(
            2,
            1,
            Some(Takeover::immediate(2)),
            &[
                (0, reserved_by(lease(5, Some("b"), 1), "x")),
                (1, lease(6, Some("c"), 1)),
            ],
            6,
        );
        p.handle_watch_event(1, WatchEvent::Changed(lease(7, Some("x"), 2)), ms(300));
        p.handle_watch_event(
            0,
            WatchEvent::Changed(reserved_by(lease(8, None, 1), "x")),
            ms(301),
        );
        let r = all(&mut p, ms(301));
        assert_eq!(takes(&r), 1, "{r:?}");
        assert_eq!(r[0].slot, 0);
    }

    /// A take that meets a conflict while the stream is open reads nothing: the stream brings
    /// the write that won. Only if it stays silent for a retry period is the slot read.
    #[test]
    fn a_lost_race_on_the_stream_waits_for_the_winner_instead_of_reading() {
        for winner_seen in [true, false] {
            let mut p = streaming(
                1,
                2,
                Some(Takeover::immediate(1)),
                &[(0, lease(5, None, 1))],
                5,
            );
            let take = all(&mut p, ms(1));
            assert_eq!(writes(&take), 1, "{take:?}");
            p.handle_answer(0, Err(ApiError::Conflict), ms(2));
            assert!(all(&mut p, ms(2)).is_empty(), "no read at once");
            if winner_seen {
                p.handle_watch_event(0, WatchEvent::Changed(lease(6, Some("b"), 2)), ms(3));
                assert_eq!(p.slot_holder(0), Some(&Holder::Named(id("b"))));
                let r = all(&mut p, ms(2_003));
                assert_eq!(takes(&r), 0, "the stream told it all: {r:?}");
                assert_eq!(p.stats().gets, 0);
            } else {
                assert!(all(&mut p, ms(2_001)).is_empty());
                let read = all(&mut p, ms(2_002));
                assert_eq!(read.len(), 1, "{read:?}");
                assert_eq!(read[0].op, Operation::Get, "a retry period later");
            }
        }
    }

    /// No slot is chosen before the stream has listed them all, however free one looks.
    #[test]
    fn nothing_is_taken_before_the_stream_has_listed_every_slot() {
        let mut p: Pool<8> = Pool::new(config(2, true), 1).unwrap();
        p.takeover = Takeover::immediate(2);
        let stream = p.stream_slot();
        all(&mut p, ms(0));
        p.handle_watch_event(0, WatchEvent::Changed(lease(5, None, 1)), ms(1));
        assert!(all(&mut p, ms(1)).is_empty(), "slot 1 is not known yet");
        p.handle_watch_event(stream, WatchEvent::Synced(rv(5)), ms(2));
        assert_eq!(writes(&all(&mut p, ms(2))), 1);
    }

    /// Every waiting member watches the same hand-overs, and each resizes its window: one
    /// taken at once widens it, a release taking long (or a deletion) tells nothing more.
    #[test]
    fn the_window_follows_the_hand_overs_the_stream_shows() {
        let mut p = streaming(
            2,
            1,
            None,
            &[(0, lease(5, Some("b"), 1)), (1, lease(6, Some("c"), 1))],
            6,
        );
        let first = p.contention_window();
        assert_eq!(first, Duration::from_millis(250));
        p.handle_watch_event(0, WatchEvent::Changed(lease(7, None, 1)), ms(100));
        p.handle_watch_event(0, WatchEvent::Changed(lease(8, Some("d"), 2)), ms(102));
        assert!(p.contention_window() > first, "{:?}", p.contention_window());
        assert!(
            p.contention_window() < Duration::from_millis(400),
            "a miss alone sizes no crowd: {:?}",
            p.contention_window()
        );
        let wider = p.contention_window();
        p.handle_watch_event(1, WatchEvent::Changed(lease(9, None, 1)), ms(200));
        p.handle_watch_event(1, WatchEvent::Deleted, ms(300));
        assert_eq!(p.contention_window(), wider, "a deletion is no hand-over");
    }

    /// A holder's stream is closed: its next wake-up is its renew, not the stream's reopening.
    #[test]
    fn a_holder_on_a_stream_wakes_for_its_renew() {
        let mut p = streaming(1, 1, Some(Takeover::immediate(1)), &[], 1);
        let stream = p.stream_slot();
        let take = all(&mut p, ms(1));
        p.handle_answer(0, Ok(stored(&take[0].op, 2)), ms(2));
        assert!(
            unwatched(&all(&mut p, ms(2))).is_empty(),
            "a holder keeps the stream, to see its slot reserved"
        );
        assert_eq!(p.poll_timeout(), Some(ms(2_002)), "the renew");
        p.close(ms(3));
        let release = all(&mut p, ms(3));
        assert_eq!(writes(&release), 1, "{release:?}");
        p.handle_answer(0, Ok(stored(&release[0].op, 3)), ms(4));
        assert_eq!(
            unwatched(&all(&mut p, ms(4))).as_slice(),
            &[stream],
            "closed with the release"
        );
    }

    /// A drawn delay longer than half a retry period is woken within it: a slot that sees no
    /// input for longer than it expected takes the process for paused.
    #[test]
    fn a_long_takeover_delay_is_woken_every_half_retry_period() {
        for seed in 0..20 {
            let mut p: Pool<8> = Pool::new(config(1, true), seed).unwrap();
            p.takeover = Takeover::with_window(1, Duration::from_secs(15));
            let stream = p.stream_slot();
            all(&mut p, ms(0));
            p.handle_watch_event(stream, WatchEvent::Synced(rv(1)), ms(10));
            let drawn = p.takeover.wake_at().unwrap();
            if drawn <= ms(1_010) {
                continue;
            }
            assert_eq!(p.poll_timeout(), Some(ms(1_010)), "seed {seed}");
            p.handle_timeout(ms(1_010));
            assert_eq!(p.poll_timeout(), Some(ms(2_010).min(drawn)));
            return;
        }
        panic!("no seed drew a long delay");
    }

    /// The write that won arrived on the stream before the 409 did: nothing is left to learn,
    /// neither at once nor a retry period later.
    #[test]
    fn a_lost_race_whose_winner_was_already_seen_reads_nothing() {
        let mut p = streaming(
            1,
            2,
            Some(Takeover::immediate(1)),
            &[(0, lease(5, None, 1))],
            5,
        );
        assert_eq!(writes(&all(&mut p, ms(1))), 1);
        p.handle_watch_event(0, WatchEvent::Changed(lease(6, Some("b"), 2)), ms(2));
        p.handle_answer(0, Err(ApiError::Conflict), ms(3));
        for t in [3, 2_003, 2_010, 10_000] {
            assert_eq!(takes(&all(&mut p, ms(t))), 0, "at {t} ms");
        }
        assert_eq!(p.stats().gets, 0);
    }

    /// Watching each slot on its own, a lost race still reads at once, whatever the watch shows
    /// meanwhile: only a pool's stream answers for the read.
    #[test]
    fn a_lost_race_on_a_slots_own_watch_reads_at_once() {
        let mut p = pool(1, true, 1);
        due(&mut p, ms(0));
        p.handle_answer(0, Ok(lease(5, None, 1)), ms(1));
        let take = due(&mut p, ms(1));
        assert_eq!(writes(&take), 1, "{take:?}");
        p.handle_answer(0, Err(ApiError::Conflict), ms(2));
        p.handle_watch_event(0, WatchEvent::Changed(lease(6, Some("b"), 2)), ms(2));
        assert_eq!(due(&mut p, ms(2))[0].op, Operation::Get);
    }

    /// A close whose release has nothing to write finishes within the poll that finds so: a
    /// driver that polls until nothing is asked and then waits for the timeout must not be
    /// left waiting for nothing (the take before the close was refused: nothing of ours to
    /// free).
    #[test]
    fn a_close_with_nothing_to_free_is_closed_after_one_poll() {
        for watch in [false, true] {
            let mut p: Pool<8> = Pool::new(config(1, watch), 1).unwrap();
            p.takeover = Takeover::immediate(1);
            let stream = p.stream_slot();
            if watch {
                all(&mut p, ms(0));
                p.handle_watch_event(stream, WatchEvent::Synced(rv(1)), ms(1));
            } else {
                all(&mut p, ms(0));
                p.handle_answer(0, Err(ApiError::NotFound), ms(1));
            }
            let take = all(&mut p, ms(1));
            assert_eq!(writes(&take), 1, "{take:?}");
            p.handle_answer(0, Err(ApiError::NotFound), ms(2));
            p.close(ms(3));
            while p.poll_request(ms(3), WALL).is_some() {}
            assert!(
                p.is_closed() || p.poll_timeout().is_some(),
                "watch {watch}: neither closed nor waiting for a time"
            );
            assert!(p.is_closed(), "watch {watch}");
            // Its stream closed for good: nothing to reopen, nothing to wake for.
            assert_eq!(p.poll_timeout(), None, "watch {watch}");
        }
    }

    /// A lost race waits for its winner (a retry period at most), then goes back through the
    /// takeover delay, even when the slot still looks free (the stream has shown an older
    /// release, not the winner yet).
    #[test]
    fn a_lost_race_is_retried_only_after_a_new_delay() {
        for seed in 0..20 {
            let mut p = streaming(
                1,
                seed,
                Some(Takeover::with_window(1, Duration::from_secs(1))),
                &[(0, lease(5, Some("b"), 1))],
                5,
            );
            p.handle_watch_event(0, WatchEvent::Changed(lease(6, None, 1)), ms(2));
            let first = p.poll_timeout().unwrap();
            let take = all(&mut p, first);
            assert_eq!(writes(&take), 1, "{take:?}");
            // The server had moved on: released again, say, then taken. The stream shows the
            // release at once, the take not yet.
            p.handle_watch_event(0, WatchEvent::Changed(lease(7, None, 1)), first);
            p.handle_answer(0, Err(ApiError::Conflict), first);
            let r = all(&mut p, first);
            assert_eq!(writes(&r), 0, "no second take at once: {r:?}");
            // The winner never shows: after a retry period, a new delay, then a take.
            let check = first + Duration::from_secs(1);
            assert_eq!(
                p.poll_timeout(),
                Some(check),
                "woken every half retry period"
            );
            p.handle_timeout(check);
            assert!(all(&mut p, check).is_empty());
            let waited = first + Duration::from_secs(2);
            assert_eq!(p.poll_timeout(), Some(waited));
            assert!(all(&mut p, waited).is_empty(), "a new delay first");
            let Some(next) = p.poll_timeout().filter(|at| *at > waited) else {
                continue;
            };
            assert_eq!(writes(&all(&mut p, next)), 1, "then a take");
            return;
        }
        panic!("no seed drew a later take");
    }

    /// What a member saw of the slots before it held one is forgotten while it holds: back to
    /// waiting (here after a rejoin), neither a term it saw begin a minute ago nor one it saw
    /// running is measured as if it had watched it all along. Either would widen its
    /// reservation window to a lease duration (a quarter of a "term" of a minute), and leave
    /// it losing every reservation to members drawing from a retry period.
    #[test]
    fn a_member_back_from_holding_measures_no_term_it_saw_before() {
        let mut p = streaming(
            2,
            1,
            Some(Takeover::immediate(2)),
            &[(0, lease(5, Some("b"), 1)), (1, lease(6, Some("e"), 1))],
            6,
        );
        // Slot 0 changes hands before this member's take is sent: a term seen to begin.
        p.handle_watch_event(0, WatchEvent::Changed(lease(7, None, 1)), ms(10));
        p.handle_watch_event(0, WatchEvent::Changed(lease(8, Some("c"), 2)), ms(10));
        let _ = all(&mut p, ms(10));
        p.handle_watch_event(1, WatchEvent::Changed(lease(9, None, 1)), ms(20));
        let take = all(&mut p, ms(20));
        let take = take
            .iter()
            .find(|r| r.slot == 1 && takes(&[(*r).clone()]) == 1);
        p.handle_answer(
            1,
            Ok(stored(&take.expect("a take of slot 1").op, 10)),
            ms(21),
        );
        let window = p.reservation.window();
        let (mut now, mut version) = (21, 11);
        while now < 60_000 {
            while let Some(r) = p.poll_request(ms(now), wall_at(ms(now))) {
                if matches!(r.op, Operation::Update { .. }) {
                    p.handle_answer(r.slot, Ok(stored(&r.op, version)), ms(now));
                    version += 1;
                }
            }
            now += 100;
            assert_eq!(p.held(ms(now)), Some(1));
        }
        p.close(ms(now));
        let release = all(&mut p, ms(now));
        let w = release.iter().find(|r| r.slot == 1).unwrap();
        p.handle_answer(1, Ok(stored(&w.op, version)), ms(now));
        let _ = all(&mut p, ms(now));
        p.rejoin(ms(now));
        let (at, stream) = (now + 2_000, p.stream_slot());
        let _ = all(&mut p, ms(at));
        // The relist: slot 0 released by the holder seen a minute ago, slot 1 held.
        p.handle_watch_event(0, WatchEvent::Changed(lease(30, None, 2)), ms(at + 1));
        p.handle_watch_event(1, WatchEvent::Changed(lease(31, Some("d"), 3)), ms(at + 1));
        p.handle_watch_event(stream, WatchEvent::Synced(rv(31)), ms(at + 1));
        assert_eq!(
            p.handovers.hold(),
            None,
            "no term was watched from take to release"
        );
        assert_eq!(p.reservation.window(), window);
    }
}
