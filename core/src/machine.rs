//! The one contract between a core machine and whatever drives it.

use crate::api::{Request, Response, Verb, WatchEvent};
use crate::record::MicroTime;
use embassy_time::Instant;

/// A sans-IO lease machine: [`crate::Elector`], [`crate::Pool`] and [`crate::Heartbeat`].
///
/// A machine performs no I/O, reads no clock and draws no randomness of its own. Everything it
/// learns comes in through `handle_*`; everything it wants done goes out through `poll_*`. One
/// driver loop therefore runs any machine: the tokio runtime (`leasehold-runtime`), the model
/// simulation, the fuzz targets, or a loop written by hand on a microcontroller.
///
/// # Methods
///
/// - **Getters** (`&self`): [`is_closed`](Self::is_closed), [`stats`](Self::stats), and each
///   machine's own (`Elector::is_leader(now)`, `Pool::held(now)`, `Heartbeat::last_renewed`, …).
///   Leadership getters take `now`: ask with a fresh one before each piece of leader-only work,
///   since a term ends at its deadline whether or not an input arrived.
/// - **Inputs** (`handle_*`): [`handle_answer`](Self::handle_answer) for the answer to a request,
///   [`handle_watch_event`](Self::handle_watch_event) for an event of a watch stream,
///   [`handle_timeout`](Self::handle_timeout) when the instant from `poll_timeout` has come.
/// - **Commands**: [`close`](Self::close) (stop: step down and give the lease up) and
///   [`rejoin`](Self::rejoin) (start over after a close, once the rejoin delay has passed).
/// - **Outputs** (`poll_*`): [`poll_request`](Self::poll_request) for the next API call,
///   [`poll_event`](Self::poll_event) for the next application event,
///   [`poll_timeout`](Self::poll_timeout) for the instant to be woken at.
///
/// # The driving loop
///
/// 1. Call `poll_request` until it returns `None`, sending each request.
/// 2. Call `poll_event` until it returns `None`, acting on each event.
/// 3. If `is_closed`, stop: nothing more will be requested.
/// 4. Wait for the first of: the instant from `poll_timeout`, the answer to a request, an event
///    of an open watch, a reason to close. Feed it to the matching `handle_*` (or `close`), then
///    go to 1.
///
/// # Time
///
/// Every input carries `now`, read from a monotonic clock that keeps counting while the process
/// is paused: `CLOCK_BOOTTIME` on Linux. `now` never decreases from one call to the next; the
/// machines compare it with instants they computed from earlier ones. Each input first checks
/// the renew deadline against `now`, so a process that wakes from a pause (SIGSTOP, a long GC, a
/// suspended VM) steps down before it acts on anything else. `poll_request` also takes `wall`,
/// the wall-clock time to write into `acquireTime`/`renewTime`; it is written for humans and
/// client-go peers and never compared with anything.
///
/// # Requests and answers
///
/// Each [`Request`] names its lease by `slot` (always 0 for an elector or a heartbeat; the slot
/// number in a pool). `Get`, `Create` and `Update` are owed exactly one answer, fed back with
/// that slot through `handle_answer`: the stored lease, or the classified error (a request that
/// got no answer within the transport's timeout is answered with
/// [`ApiError::Timeout`](crate::ApiError::Timeout)). At most one of them is outstanding per lease:
/// the machine asks for no other request on that lease until the answer came. An answer with no
/// request outstanding on its slot is ignored, as is one for a slot the machine does not have.
///
/// # Watch streams
///
/// `Watch` asks the driver to open a stream of the lease's changes (from the resourceVersion
/// given, if any) and `Unwatch` to close it; neither is owed an answer, and neither counts as a
/// request in flight. While a stream is open, the driver feeds each of its events to
/// `handle_watch_event` with the request's slot, until the stream reports its own end with
/// [`WatchEvent::Ended`], [`WatchEvent::Expired`] or [`WatchEvent::Failed`]: that event is owed
/// too (the machine falls back to polling and reopens later) and is the stream's last. After
/// `Unwatch`, or once a stream was replaced by a new `Watch` of the same slot, the driver drops
/// its remaining events rather than feed them. A machine built without watching never asks for
/// a stream.
///
/// # Events
///
/// Drain `poll_event` after every `handle_*`, command and `poll_request`. Each of those calls
/// adds at most four events, and a machine holds [`EVENT_CAPACITY`](crate::EVENT_CAPACITY), so a
/// driver that drains as told never loses one. One that does not loses the oldest events past
/// the capacity, and is told: the next event it polls is an overflow report (for example
/// [`Event::EventsDropped`](crate::Event::EventsDropped)) counting the events lost before the
/// ones that follow, and [`Stats::events_dropped`] counts them all.
///
/// # Closing
///
/// `close` steps down at once (before any request, so no one is told to stop after another
/// could have started), then releases what it holds as each machine's documentation says. The
/// machine keeps asking for requests until the release is over, then `is_closed` turns true and
/// `poll_request` and `poll_timeout` return `None` for good, unless [`rejoin`](Self::rejoin)
/// starts it over.
pub trait Machine {
    /// What the machine reports to the application.
    type Event;

    /// Whether a [`close`](Self::close) has finished: nothing more will be requested.
    fn is_closed(&self) -> bool;

    /// What the machine has counted since it was made: requests by verb, conflicts, takeovers,
    /// slow-path reads, dropped events. A driver reports these instead of inferring them from
    /// the traffic it carries.
    fn stats(&self) -> Stats;

    /// Feeds the answer to the outstanding `Get`, `Create` or `Update` of `slot`.
    fn handle_answer(&mut self, slot: u16, answer: Response, now: Instant);

    /// Feeds an event of the watch stream of `slot`.
    fn handle_watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant);

    /// Tells the machine that `now` has come (the instant from `poll_timeout`, or later).
    fn handle_timeout(&mut self, now: Instant);

    /// Stops: steps down at once, then releases what the machine holds; `is_closed` turns true
    /// when that is over. Closing a machine that is closing or closed changes nothing.
    fn close(&mut self, now: Instant);

    /// Starts a closed machine over, as a machine newly made but for its counters and its seeded
    /// randomness: it forgets what it knew of its leases and sends its first request once the
    /// rejoin delay after `now` has passed (`poll_timeout` says when). An elector or a pool waits
    /// one retry period, which gives the other candidates the lease it just released; a
    /// heartbeat, which contends with no one, resumes at once. Ignored unless `is_closed`.
    fn rejoin(&mut self, now: Instant);

    /// The next request to send, if one is due at `now`. `wall` is the wall-clock time written
    /// to `acquireTime`/`renewTime`.
    #[must_use]
    fn poll_request(&mut self, now: Instant, wall: MicroTime) -> Option<Request>;

    /// When to call [`handle_timeout`](Self::handle_timeout) and poll again; `None` when only an
    /// answer or a watch event can move the machine on, or when it is closed.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next application event.
    #[must_use]
    fn poll_event(&mut self) -> Option<Self::Event>;
}

/// What a machine counted since it was made ([`Machine::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `Get` requests asked for.
    pub gets: u64,
    /// `Create` requests asked for.
    pub creates: u64,
    /// `Update` requests asked for (takes, renews and releases).
    pub updates: u64,
    /// Watch streams opened.
    pub watches: u64,
    /// Lists of a pool's slots: a pool stream opened without a version starts with one.
    pub lists: u64,
    /// Answers `409 Conflict` or `409 AlreadyExists`: another writer got there first.
    pub conflicts: u64,
    /// Terms begun: writes naming this machine that made it leader (or holder of a slot).
    pub acquisitions: u64,
    /// Of those, terms taken over a record that named another holder (an expired lease).
    pub takeovers: u64,
    /// client-go's `leader_election_slowpath_total`: reads a leader had to make before it could
    /// renew, because its cached copy of the lease was stale (after a 409, say).
    pub slow_path_reads: u64,
    /// Events dropped because the driver did not drain them in time (see [`Machine`]).
    pub events_dropped: u64,
}

impl Stats {
    /// Requests asked for with `verb` (`Watch` counts streams opened; a machine never
    /// deletes).
    pub fn requests(&self, verb: Verb) -> u64 {
        match verb {
            Verb::Get => self.gets,
            Verb::Create => self.creates,
            Verb::Update => self.updates,
            Verb::Watch => self.watches,
            Verb::List => self.lists,
            Verb::Delete => 0,
        }
    }

    /// Counts a request the machine hands out.
    pub(crate) fn sent(&mut self, request: &Request) {
        let counter = match &request.op {
            crate::Operation::Get => &mut self.gets,
            crate::Operation::Create(_) => &mut self.creates,
            crate::Operation::Update { .. } => &mut self.updates,
            crate::Operation::Watch { .. } => &mut self.watches,
            crate::Operation::WatchSlots {
                resource_version, ..
            } => {
                if resource_version.is_none() {
                    self.lists = self.lists.saturating_add(1);
                }
                &mut self.watches
            }
            crate::Operation::Unwatch => return,
        };
        *counter = counter.saturating_add(1);
    }

    /// Counts an answer's conflict, if it is one.
    pub(crate) fn answered(&mut self, answer: &Response) {
        if matches!(
            answer,
            Err(crate::ApiError::Conflict | crate::ApiError::AlreadyExists)
        ) {
            self.conflicts = self.conflicts.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_verb_and_the_machines_never_delete() {
        let stats = Stats {
            gets: 1,
            creates: 2,
            updates: 3,
            watches: 4,
            lists: 5,
            ..Stats::default()
        };
        let counts = [
            Verb::Get,
            Verb::Create,
            Verb::Update,
            Verb::Watch,
            Verb::List,
            Verb::Delete,
        ]
        .map(|verb| stats.requests(verb));
        assert_eq!(counts, [1, 2, 3, 4, 5, 0]);
    }
}
