//! Arbitrary inputs for the core's machines, and the invariants every target checks after each
//! input: at most one request in flight per lease, leadership events that agree with
//! `is_leader`, a leader within its deadline, and no wake-up asked for nothing.

use arbitrary::Arbitrary;
use leasehold_core::{
    ApiError, Duration, Event, Holder, Instant, Lease, LeaseRecord, MicroTime, Operation, Request,
    ResourceVersion, WatchEvent,
};
use std::collections::{HashMap, HashSet};

/// One input to a machine.
#[derive(Arbitrary, Debug)]
pub enum Input {
    /// Time passes (ms).
    Advance(u16),
    /// A long pause (s).
    Pause(u8),
    /// The answer to the outstanding request of a slot (or a stray one).
    Respond(u8, Answer),
    /// A watch event for a slot.
    Watch(u8, WatchKind, Answer),
    /// Shut down (elector) or finish (pool).
    Shutdown,
}

/// What the server says.
#[derive(Arbitrary, Debug)]
pub enum Answer {
    /// A lease.
    Lease {
        rv: u16,
        holder: HolderKind,
        duration_s: u8,
        transitions: u16,
    },
    /// An error.
    Error(ErrorKind),
}

/// Who holds.
#[derive(Arbitrary, Debug)]
pub enum HolderKind {
    /// The machine itself.
    Me,
    /// Another candidate.
    Other,
    /// A 300-byte identity.
    Oversized,
    /// Nobody.
    Nobody,
}

/// An API failure.
#[derive(Arbitrary, Debug)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    AlreadyExists,
    Forbidden,
    Unauthorized,
    Invalid,
    Throttled(Option<u16>),
    Server(u8),
    Timeout,
    Transport,
    Malformed,
}

/// The kind of watch event.
#[derive(Arbitrary, Debug)]
pub enum WatchKind {
    Changed,
    Deleted,
    Bookmark,
    Ended,
    Expired,
    Failed,
}

/// The machines' own identity in these inputs.
pub const ME: &str = "me";

fn lease(rv: u16, holder: &HolderKind, duration_s: u8, transitions: u16) -> Lease {
    let long = "x".repeat(300);
    let holder = match holder {
        HolderKind::Me => Holder::from_wire(Some(ME)),
        HolderKind::Other => Holder::from_wire(Some("other")),
        HolderKind::Oversized => Holder::from_wire(Some(&long)),
        HolderKind::Nobody => Holder::None,
    };
    Lease {
        resource_version: ResourceVersion::new(&rv.to_string()).expect("fits"),
        record: LeaseRecord {
            holder,
            lease_duration: (duration_s > 0).then(|| Duration::from_secs(u64::from(duration_s))),
            acquire_time: None,
            renew_time: Some(MicroTime::from_unix_micros(0)),
            lease_transitions: Some(u32::from(transitions)),
        },
    }
}

/// The response an answer stands for.
pub fn response(a: &Answer) -> Result<Lease, ApiError> {
    match a {
        Answer::Lease {
            rv,
            holder,
            duration_s,
            transitions,
        } => Ok(lease(*rv, holder, *duration_s, *transitions)),
        Answer::Error(e) => Err(match e {
            ErrorKind::NotFound => ApiError::NotFound,
            ErrorKind::Conflict => ApiError::Conflict,
            ErrorKind::AlreadyExists => ApiError::AlreadyExists,
            ErrorKind::Forbidden => ApiError::Forbidden,
            ErrorKind::Unauthorized => ApiError::Unauthorized,
            ErrorKind::Invalid => ApiError::Invalid,
            ErrorKind::Throttled(ms) => ApiError::TooManyRequests {
                retry_after: ms.map(|m| Duration::from_millis(u64::from(m))),
            },
            ErrorKind::Server(s) => ApiError::Server {
                status: 500 + u16::from(*s % 100),
            },
            ErrorKind::Timeout => ApiError::Timeout,
            ErrorKind::Transport => ApiError::Transport,
            ErrorKind::Malformed => ApiError::Malformed,
        }),
    }
}

/// The watch event a kind and answer stand for.
pub fn watch_event(kind: &WatchKind, a: &Answer) -> WatchEvent {
    match (kind, response(a)) {
        (WatchKind::Changed, Ok(l)) => WatchEvent::Changed(l),
        (WatchKind::Bookmark, Ok(l)) => WatchEvent::Bookmark(l.resource_version),
        (WatchKind::Deleted, _) | (WatchKind::Changed | WatchKind::Bookmark, Err(_)) => {
            WatchEvent::Deleted
        }
        (WatchKind::Ended, _) => WatchEvent::Ended,
        (WatchKind::Expired, _) => WatchEvent::Expired,
        (WatchKind::Failed, _) => WatchEvent::Failed,
    }
}

/// What a well-behaved driver tracks, panicking when the machine breaks its contract.
#[derive(Default)]
pub struct Discipline {
    /// Outstanding Get/Create/Update per slot.
    pub outstanding: HashMap<u16, Operation>,
    /// Slots the events say are led.
    pub leading: HashSet<u16>,
}

impl Discipline {
    /// Records a request the machine asked for.
    pub fn request(&mut self, r: Request) {
        if matches!(r.op, Operation::Watch { .. } | Operation::Unwatch) {
            return;
        }
        if let Operation::Create(rec) | Operation::Update { record: rec, .. } = &r.op {
            assert!(
                rec.holder.as_wire().is_some(),
                "writes an unrepresentable holder"
            );
            assert!(
                rec.lease_duration.is_some_and(|d| d.as_ticks() > 0),
                "writes no duration"
            );
        }
        let previous = self.outstanding.insert(r.slot, r.op);
        assert!(
            previous.is_none(),
            "a second request on slot {} while {previous:?} is in flight",
            r.slot
        );
    }

    /// Records an event.
    pub fn event(&mut self, slot: u16, e: &Event) {
        match e {
            Event::BecameLeader { .. } => assert!(
                self.leading.insert(slot),
                "BecameLeader twice on slot {slot}"
            ),
            Event::LostLeadership { .. } => assert!(
                self.leading.remove(&slot),
                "LostLeadership while not leading slot {slot}"
            ),
            _ => {}
        }
    }
}

/// Milliseconds to an instant.
pub fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}
