//! k-of-n leases: at most n holders through slots `prefix-0 … prefix-(n−1)`.

use crate::api::{Request, Response, WatchEvent};
use crate::event::SlotEvent;
use crate::jitter::Jitter;
use crate::record::{Holder, Identity, LeaseName, MicroTime, NAME_CAPACITY, TextError};
use crate::slot::{Env, EventQueue, Intent, LeaseSlot};
use crate::timing::Timing;
use core::fmt::{self, Write};
use embassy_time::Instant;
use heapless::{String, Vec};

/// Why a pool could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Whether the driver can watch the slot leases (see [`crate::ElectorConfig::watch`]).
    pub watch: bool,
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

/// A pool member: wants one of n slots, holds it under the elector's rules, gives it back.
///
/// Two uses: **cold start** (acquire, do the throttled work, then [`finish`](Self::finish)) and
/// **delegation** (hold until the process ends, then `finish`). Slots are tried in a random order
/// drawn from the seed, so a boot storm spreads over all slots instead of herding on slot 0.
/// When every slot is held, the member waits for the earliest computed expiry or a watch event.
///
/// `N` is the most slots this type can track (the caller owns the storage, smoltcp-style); the
/// runtime size may be smaller. Driving it is the same loop as [`crate::Elector`]; requests carry
/// their slot, to be passed back with the answer.
#[derive(Clone, Debug)]
pub struct Pool<const N: usize> {
    identity: Identity,
    timing: Timing,
    jitter: Jitter,
    events: EventQueue,
    slots: Vec<LeaseSlot, N>,
    state: State,
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
        }
        Ok(Self {
            identity: config.identity,
            timing: config.timing,
            jitter: Jitter::new(seed),
            events: EventQueue::new(),
            slots,
            state: State::Wanting { attempt: None },
        })
    }

    fn set_all(&mut self, intent: Intent, except: Option<u16>, now: Instant) {
        let mut env = Env {
            identity: &self.identity,
            timing: &self.timing,
            jitter: &mut self.jitter,
            events: &mut self.events,
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
        let slot = self.slots.get_mut(usize::from(i))?;
        let mut env = Env {
            identity: &self.identity,
            timing: &self.timing,
            jitter: &mut self.jitter,
            events: &mut self.events,
        };
        Some(f(slot, &mut env))
    }

    /// Moves between wanting, holding and releasing from what the slots now know.
    fn reconcile(&mut self, now: Instant) {
        for i in 0..self.slots.len() as u16 {
            self.with_slot(i, |slot, env| slot.expire(now, env));
        }
        match self.state {
            State::Wanting { attempt: Some(i) } => {
                let slot = &self.slots[usize::from(i)];
                if slot.is_leader(now) {
                    self.state = State::Holding(i);
                    self.set_all(Intent::Idle, Some(i), now);
                } else if !slot.has_request_in_flight()
                    && !slot.is_takeable(now, &self.timing, &self.identity)
                {
                    // Someone else got it first: watch it like the others and pick again.
                    self.with_slot(i, |slot, env| slot.set_intent(Intent::Observe, now, env));
                    self.state = State::Wanting { attempt: None };
                    self.choose(now);
                }
            }
            State::Wanting { attempt: None } => self.choose(now),
            State::Holding(i) if !self.slots[usize::from(i)].is_leader(now) => {
                self.state = State::Wanting { attempt: None };
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

    /// Picks a takeable slot uniformly at random, if there is one.
    fn choose(&mut self, now: Instant) {
        let (timing, identity) = (&self.timing, &self.identity);
        let free = self
            .slots
            .iter()
            .filter(|s| s.is_takeable(now, timing, identity))
            .count();
        if free == 0 {
            return;
        }
        let pick = self.jitter.index(free);
        let Some(i) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_takeable(now, timing, identity))
            .nth(pick)
            .map(|(i, _)| i as u16)
        else {
            return;
        };
        self.with_slot(i, |slot, env| slot.set_intent(Intent::Campaign, now, env));
        self.state = State::Wanting { attempt: Some(i) };
    }

    /// Feeds the answer to the outstanding request of `slot`.
    pub fn handle_response(&mut self, slot: u16, response: Response, now: Instant) {
        self.with_slot(slot, |s, env| s.handle_response(response, now, env));
        self.reconcile(now);
    }

    /// Feeds an event from the watch stream of `slot`.
    pub fn handle_watch(&mut self, slot: u16, event: WatchEvent, now: Instant) {
        self.with_slot(slot, |s, env| s.handle_watch(event, now, env));
        self.reconcile(now);
    }

    /// Tells the pool that `now` has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reconcile(now);
    }

    /// Gives the slot back (cold start: the work is done; delegation: the process is ending) and
    /// stops wanting one. A held slot is stepped down at once and then released as an elector
    /// releases; [`is_finished`](Self::is_finished) turns true when that is over.
    pub fn finish(&mut self, now: Instant) {
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

    /// The next request to send, if one is due at `now`.
    pub fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request> {
        self.reconcile(now);
        for i in 0..self.slots.len() as u16 {
            if let Some(request) = self
                .with_slot(i, |s, env| s.poll_request(now, wall, env))
                .flatten()
            {
                return Some(request);
            }
        }
        None
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) and poll again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slots = self
            .slots
            .iter()
            .filter_map(|s| s.poll_timeout(&self.timing, &self.identity));
        // While waiting for a slot, wake when the first observed one expires.
        let expiries = self
            .slots
            .iter()
            .filter(|_| self.state == State::Wanting { attempt: None })
            .filter_map(|s| s.take_at(&self.timing, &self.identity));
        slots.chain(expiries).min()
    }

    /// The next application event, tagged with its slot.
    pub fn poll_event(&mut self) -> Option<SlotEvent> {
        self.events.pop_front()
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

    /// Whether [`finish`](Self::finish) has completed.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
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
}
