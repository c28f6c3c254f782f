//! Arbitrary inputs for the core's machines. The invariants each target checks after every input
//! are the machine contract of `leasehold_simulation::contract` (shared with the core's property
//! tests), plus events that agree with `is_leader`, a leader within its deadline, and no
//! wake-up asked for nothing.

use arbitrary::Arbitrary;
pub use leasehold_simulation::contract::{self, Discipline};

use leasehold_core::{ApiError, Duration, Holder, Instant, Lease, WatchEvent};

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
    contract::lease(rv, holder, duration_s, transitions)
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

/// Panics with the broken rule, so libFuzzer records the input.
pub fn hold(kept: Result<(), String>) {
    if let Err(rule) = kept {
        panic!("{rule}");
    }
}

/// Milliseconds to an instant.
pub fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}
