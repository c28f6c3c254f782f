//! The contract every core machine keeps with its driver ([`leasehold_core::Machine`]), checked
//! input by input by the property tests (`simulation/tests/properties.rs`) and the fuzz targets
//! (`fuzz/`), which feed the three machines the same arbitrary inputs ([`decode`]) through the
//! trait ([`exercise`]):
//!
//! - at most one `Get`/`Create`/`Update` in flight per lease;
//! - every write carries a holder the wire can represent and a positive duration;
//! - `BecameLeader` and `LostLeadership` alternate per slot, so the events a driver sees always
//!   agree with the machine's getters;
//! - a leader is within its deadline and was last seen holding the lease;
//! - a wake-up asked for the past has a request to show for it;
//! - after a close has finished, nothing more is asked for.

use leasehold_core::{
    ApiError, Duration, Elector, Event, Heartbeat, HeartbeatEvent, Holder, Identity, Instant,
    Lease, LeaseRecord, Machine, MicroTime, Operation, Pool, Request, ResourceVersion, SlotEvent,
    Verb, WatchEvent,
};
use std::collections::{BTreeMap, BTreeSet};

/// What a well-behaved driver tracks of one machine.
#[derive(Debug, Default)]
pub struct Discipline {
    /// The verb of the outstanding `Get`/`Create`/`Update` of each slot (the verb, not the
    /// operation: an operation carries a whole lease, and this map changes on every request).
    pub outstanding: BTreeMap<u16, Verb>,
    /// The slots the events say are led.
    pub leading: BTreeSet<u16>,
}

impl Discipline {
    /// Records a request the machine asked for; an error says which rule it broke.
    pub fn request(&mut self, r: Request) -> Result<(), String> {
        if matches!(
            r.op,
            Operation::Watch { .. } | Operation::WatchSlots { .. } | Operation::Unwatch
        ) {
            return Ok(());
        }
        if let Operation::Create(rec) | Operation::Update { record: rec, .. } = &r.op {
            if rec.holder.as_wire().is_none() {
                return Err(format!(
                    "writes an unrepresentable holder: {:?}",
                    rec.holder
                ));
            }
            if rec.lease_duration.is_none_or(|d| d.as_ticks() == 0) {
                return Err(format!("writes no lease duration: {rec:?}"));
            }
        }
        match self.outstanding.insert(r.slot, r.op.verb()) {
            Some(previous) => Err(format!(
                "a second request on slot {} while its {previous:?} is in flight",
                r.slot
            )),
            None => Ok(()),
        }
    }

    /// The driver delivered the answer of `slot`'s request.
    pub fn answered(&mut self, slot: u16) {
        self.outstanding.remove(&slot);
    }

    /// Records an event; an error says which rule it broke.
    pub fn event(&mut self, slot: u16, e: &Event) -> Result<(), String> {
        match e {
            Event::BecameLeader { .. } if !self.leading.insert(slot) => {
                Err(format!("BecameLeader twice on slot {slot}"))
            }
            Event::LostLeadership { .. } if !self.leading.remove(&slot) => {
                Err(format!("LostLeadership while not leading slot {slot}"))
            }
            _ => Ok(()),
        }
    }
}

/// A lease as an arbitrary server answer: resourceVersion `rv`, `holder`, a duration of
/// `duration_s` seconds (0: none) and `transitions`.
pub fn lease(rv: u16, holder: Holder, duration_s: u8, transitions: u16) -> Lease {
    Lease {
        resource_version: ResourceVersion::new(&rv.to_string()).expect("five digits fit"),
        record: LeaseRecord {
            holder,
            lease_duration: (duration_s > 0).then(|| Duration::from_secs(u64::from(duration_s))),
            acquire_time: None,
            renew_time: Some(MicroTime::from_unix_micros(0)),
            lease_transitions: Some(u32::from(transitions)),
            next_holder: Holder::None,
        },
    }
}

/// The identity of the machines the arbitrary inputs are fed to.
pub const ME: &str = "me";

/// One input to a machine, decoded from arbitrary bytes by [`decode`].
#[derive(Clone, Debug)]
pub enum Input {
    /// Time passes, in milliseconds (a long pause too).
    Advance(u64),
    /// The answer to the outstanding request of a slot: `pick` chooses among the outstanding
    /// ones (a stray answer when there is none).
    Answer {
        /// Which outstanding request.
        pick: u8,
        /// What the server says.
        answer: Result<Lease, ApiError>,
    },
    /// An event of the watch stream of `slot`.
    Watch {
        /// The slot.
        slot: u16,
        /// The event.
        event: WatchEvent,
    },
    /// The application closes the machine.
    Close,
    /// The application starts it over.
    Rejoin,
}

/// Reads bytes one by one, then zeros: every byte string is a valid input sequence.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn answer(&mut self) -> Result<Lease, ApiError> {
        let tag = self.byte();
        if tag % 5 < 3 {
            let holder = match self.byte() % 4 {
                0 => Holder::from_wire(Some(ME)),
                1 => Holder::from_wire(Some("other")),
                2 => Holder::from_wire(Some(&"x".repeat(300))),
                _ => Holder::None,
            };
            let rv = self.u16();
            let duration_s = self.byte() % 60;
            let mut answer = lease(rv, holder, duration_s, self.u16());
            // The tag's upper part names a next holder: none, us, or another member.
            answer.record.next_holder = match tag / 5 % 3 {
                0 => Holder::None,
                1 => Holder::from_wire(Some(ME)),
                _ => Holder::from_wire(Some("other")),
            };
            return Ok(answer);
        }
        Err(match self.byte() % 11 {
            0 => ApiError::NotFound,
            1 => ApiError::Conflict,
            2 => ApiError::AlreadyExists,
            3 => ApiError::Forbidden,
            4 => ApiError::Unauthorized,
            5 => ApiError::Invalid,
            6 => ApiError::Timeout,
            7 => ApiError::Transport,
            8 => ApiError::Malformed,
            9 => ApiError::Server {
                status: 500 + u16::from(self.byte() % 100),
            },
            _ => {
                let ms = self.u16();
                ApiError::TooManyRequests {
                    retry_after: (ms % 2 == 1).then(|| Duration::from_millis(u64::from(ms) * 2)),
                }
            }
        })
    }

    fn watch_event(&mut self) -> WatchEvent {
        let kind = self.byte() % 8;
        match (kind, self.answer()) {
            (0, Ok(lease)) => WatchEvent::Changed(lease),
            (1, Ok(lease)) => WatchEvent::Bookmark(lease.resource_version),
            (6, Ok(lease)) => WatchEvent::Synced(lease.resource_version),
            (0..=2 | 6, _) => WatchEvent::Deleted,
            (3, _) => WatchEvent::Ended,
            (4, _) => WatchEvent::Expired,
            (7, _) => WatchEvent::Forbidden,
            _ => WatchEvent::Failed,
        }
    }
}

/// The one input generator of the property tests and the fuzz targets: any byte string, read
/// as a sequence of at most `limit` inputs. Answers and watch events come often, time in steps
/// up to 20 s and now and then a pause of minutes; closes and rejoins are rare. The inputs are
/// read one at a time as the machine takes them (a fuzz target runs tens of thousands a
/// second; collecting them first would copy every answer twice).
pub fn decode(bytes: &[u8], limit: usize) -> impl Iterator<Item = Input> + '_ {
    let mut b = Bytes(bytes);
    core::iter::from_fn(move || {
        if b.0.is_empty() {
            return None;
        }
        Some(match b.byte() % 16 {
            0..=3 => Input::Advance(u64::from(b.u16()) % 20_000),
            4 => Input::Advance(u64::from(b.byte()) * 1_000),
            5..=9 => Input::Answer {
                pick: b.byte(),
                answer: b.answer(),
            },
            10..=12 => Input::Watch {
                slot: u16::from(b.byte() % 4),
                event: b.watch_event(),
            },
            13 => Input::Close,
            14 => Input::Rejoin,
            _ => Input::Advance(u64::from(b.byte())),
        })
    })
    .take(limit)
}

/// What the contract needs of a machine beyond [`Machine`]: what it claims to lead, and its
/// events as the leadership events they are.
pub trait Subject: Machine {
    /// The slot it claims to lead at `now`.
    fn leading(&self, now: Instant) -> Option<u16>;
    /// An event as a slot's leadership event; `None` for events about no lease.
    fn as_slot_event(event: &Self::Event) -> Option<(u16, &Event)>;
    /// Rules of this machine alone, checked after every input.
    fn check(&self, now: Instant) -> Result<(), String>;
    /// While a term runs: its fencing epoch.
    fn epoch(&self) -> Option<u32>;
    /// While a term runs: when it ends without a renew.
    fn deadline(&self) -> Option<Instant>;
    /// The holder of `slot` when last seen.
    fn slot_holder(&self, slot: u16) -> Option<&Holder>;
}

impl Subject for Elector {
    fn leading(&self, now: Instant) -> Option<u16> {
        self.is_leader(now).then_some(0)
    }

    fn epoch(&self) -> Option<u32> {
        Elector::epoch(self)
    }

    fn deadline(&self) -> Option<Instant> {
        Elector::deadline(self)
    }

    fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        self.holder().filter(|_| slot == 0)
    }

    fn as_slot_event(event: &Event) -> Option<(u16, &Event)> {
        Some((0, event))
    }

    fn check(&self, now: Instant) -> Result<(), String> {
        if !self.is_leader(now) {
            return Ok(());
        }
        if self.deadline().is_none_or(|d| now >= d) {
            return Err("leads past its deadline".into());
        }
        let me = Identity::new(ME).map_err(|e| e.to_string())?;
        if !self.holder().is_some_and(|h| h.is(&me)) {
            return Err("leads a lease it was not last seen holding".into());
        }
        Ok(())
    }
}

impl<const N: usize> Subject for Pool<N> {
    fn leading(&self, now: Instant) -> Option<u16> {
        self.held(now)
    }

    fn epoch(&self) -> Option<u32> {
        Pool::epoch(self)
    }

    fn deadline(&self) -> Option<Instant> {
        Pool::deadline(self)
    }

    fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        Pool::slot_holder(self, slot)
    }

    fn as_slot_event(event: &SlotEvent) -> Option<(u16, &Event)> {
        Some((event.slot, &event.event))
    }

    fn check(&self, now: Instant) -> Result<(), String> {
        match (self.held(now), self.deadline()) {
            (Some(_), Some(d)) if now >= d => Err("holds a slot past its deadline".into()),
            _ => Ok(()),
        }
    }
}

impl Subject for Heartbeat {
    fn leading(&self, _now: Instant) -> Option<u16> {
        None
    }

    fn epoch(&self) -> Option<u32> {
        None
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn slot_holder(&self, slot: u16) -> Option<&Holder> {
        self.lease()
            .filter(|_| slot == 0)
            .map(|lease| &lease.record.holder)
    }

    fn as_slot_event(_event: &HeartbeatEvent) -> Option<(u16, &Event)> {
        None
    }

    fn check(&self, _now: Instant) -> Result<(), String> {
        Ok(())
    }
}

/// Drives `machine` through `inputs` by the [`Machine`] contract alone, as a well-behaved driver
/// would, and checks the contract after every input; an error says which rule broke and when.
pub fn exercise<M: Subject>(
    machine: &mut M,
    inputs: impl IntoIterator<Item = Input>,
) -> Result<(), String> {
    let mut d = Discipline::default();
    let mut closing = false;
    let mut now = 0u64;
    let wall = MicroTime::from_unix_micros(0);
    for (i, input) in inputs.into_iter().enumerate() {
        let at = |ms| Instant::from_millis(ms);
        match &input {
            Input::Advance(ms) => {
                now += ms;
                machine.handle_timeout(at(now));
            }
            Input::Answer { pick, answer } => {
                let owed = d.outstanding.len().max(1);
                let slot = d
                    .outstanding
                    .keys()
                    .nth(usize::from(*pick) % owed)
                    .copied()
                    .unwrap_or(u16::from(*pick % 4));
                d.answered(slot);
                machine.handle_answer(slot, answer.clone(), at(now));
            }
            Input::Watch { slot, event } => {
                machine.handle_watch_event(*slot, event.clone(), at(now))
            }
            Input::Close => {
                closing = true;
                machine.close(at(now));
            }
            Input::Rejoin => {
                if machine.is_closed() {
                    // Answers to requests sent before the close are owed no more.
                    d.outstanding.clear();
                    closing = false;
                }
                machine.rejoin(at(now));
            }
        }
        let t = at(now);
        let fail = |rule: String| format!("after input {i} ({input:?}) at {now} ms: {rule}");
        loop {
            let closed = machine.is_closed();
            let Some(r) = machine.poll_request(t, wall) else {
                break;
            };
            if closed {
                return Err(fail(format!("asks for {r:?} once closed")));
            }
            d.request(r).map_err(fail)?;
        }
        while let Some(event) = machine.poll_event() {
            if let Some((slot, event)) = M::as_slot_event(&event) {
                d.event(slot, event).map_err(fail)?;
            }
        }
        let claimed = machine.leading(t);
        if d.leading.len() > 1 || claimed != d.leading.iter().next().copied() {
            return Err(fail(format!(
                "events say it leads {:?}, its getters {claimed:?}",
                d.leading
            )));
        }
        machine.check(t).map_err(fail)?;
        // Closing, with no answer owed: only a time can move it on, so it must ask for one
        // (or be closed already). A driver would otherwise wait forever.
        if closing
            && d.outstanding.is_empty()
            && !machine.is_closed()
            && machine.poll_timeout().is_none()
        {
            return Err(fail(
                "closing with no answer owed, yet neither closed nor asking to be woken".into(),
            ));
        }
        if let Some(wake) = machine.poll_timeout().filter(|w| *w <= t) {
            match machine.poll_request(t, wall) {
                Some(r) => d.request(r).map_err(fail)?,
                None => return Err(fail(format!("asks to be woken at {wake:?} for nothing"))),
            }
        }
    }
    Ok(())
}
