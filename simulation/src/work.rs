//! The work a leader runs (the child command of `elect`, a pool member's cache build) and what
//! stops it: under [`WorkPolicy::Fenced`] the core's own [`Fence`], run as a process of its own
//! beside the agent; under [`WorkPolicy::Unfenced`] the agent's supervisor alone, as in
//! leasehold's first version. Times here are simulated real time in µs, except what the fence
//! reads, which is the node's monotonic clock.

use leasehold_core::{Fence, Signal};

/// Who stops the work, so the old design can be run beside the new one on the same seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkPolicy {
    /// The design: a fence process per work, told the deadline at every renew, stops it by
    /// then on its own (SIGTERM at `valid_until − grace`, SIGKILL at `valid_until`), at once
    /// when the agent asks or dies. The agent starts work only on a renew, while it leads and
    /// the fence allows.
    Fenced,
    /// leasehold's first version: the agent's supervisor starts the work at `BecameLeader` and,
    /// at `LostLeadership`, sends SIGTERM and SIGKILL `grace` later on its own timer. So a
    /// paused agent stops nothing until it wakes, and a dead one leaves the work running for
    /// ever.
    Unfenced,
}

/// How a node's work answers SIGTERM: some children obey at once, some take a while, some
/// ignore it and only SIGKILL stops them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    /// Exits this long (µs of real time) after SIGTERM.
    ExitsAfter(u64),
    /// Ignores SIGTERM.
    IgnoresTerm,
}

/// When a work stops after a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Now.
    Now,
    /// At this real time, unless something stops it sooner.
    At(u64),
    /// Not on this signal.
    Later,
}

/// One running work and the fence (if any) that guards it.
#[derive(Debug)]
pub struct Work {
    /// Unique over the run, so stale timers can be told apart.
    pub id: u64,
    /// The slot it works for (0 for an elector).
    pub slot: u16,
    /// The agent incarnation that started it; a later agent does not own it.
    pub owner: u32,
    /// Its fence under [`WorkPolicy::Fenced`].
    pub fence: Option<Fence>,
    /// The real time its fence asked to be woken at.
    pub fence_wake: Option<u64>,
    /// Whether its fence has been told that the agent died.
    pub told_gone: bool,
    /// The real time it exits on its own after SIGTERM, if it got one and obeys.
    pub exit_at: Option<u64>,
}

impl Work {
    /// A work started by agent incarnation `owner` for `slot`.
    pub fn new(id: u64, slot: u16, owner: u32, fence: Option<Fence>) -> Self {
        Self {
            id,
            slot,
            owner,
            fence,
            fence_wake: None,
            told_gone: false,
            exit_at: None,
        }
    }

    /// Delivers `signal` at real time `now`: when the work stops because of it.
    pub fn signal(&mut self, signal: Signal, child: Child, now: u64) -> Exit {
        match (signal, child) {
            (Signal::Kill, _) => Exit::Now,
            (Signal::Terminate, Child::IgnoresTerm) => Exit::Later,
            (Signal::Terminate, Child::ExitsAfter(0)) => Exit::Now,
            (Signal::Terminate, Child::ExitsAfter(delay)) => {
                // A second SIGTERM does not restart the child's own shutdown.
                let at = self.exit_at.map_or(now + delay, |at| at.min(now + delay));
                self.exit_at = Some(at);
                Exit::At(at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigkill_stops_every_child_and_sigterm_only_those_that_obey() {
        let mut w = Work::new(1, 0, 1, None);
        assert_eq!(w.signal(Signal::Kill, Child::IgnoresTerm, 5), Exit::Now);
        assert_eq!(
            w.signal(Signal::Terminate, Child::IgnoresTerm, 5),
            Exit::Later
        );
        assert_eq!(
            w.signal(Signal::Terminate, Child::ExitsAfter(0), 5),
            Exit::Now
        );
        assert_eq!(
            w.signal(Signal::Terminate, Child::ExitsAfter(10), 5),
            Exit::At(15)
        );
        assert_eq!(
            w.signal(Signal::Terminate, Child::ExitsAfter(10), 8),
            Exit::At(15),
            "a second SIGTERM keeps the first shutdown's end"
        );
    }
}
