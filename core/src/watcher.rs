//! The other side of [`crate::Heartbeat`]: a watcher that lists heartbeat leases and reports the
//! ones that stopped being renewed, and the ones that came back.

use crate::record::{Holder, Lease, LeaseName, MicroTime, ResourceVersion};
use embassy_time::{Duration, Instant};
use heapless::Vec;

/// What a [`HeartbeatWatcher`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LivenessEvent {
    /// `lease` was not renewed within its duration: unchanged since this watcher saw it change
    /// `unchanged_for` ago (on the watcher's own clock).
    Stopped {
        /// The lease.
        lease: LeaseName,
        /// Its holder as last seen.
        holder: Holder,
        /// The duration it was judged by (its own, or the watcher's fallback).
        duration: Duration,
        /// How long it has been seen unchanged.
        unchanged_for: Duration,
        /// Whether it was unchanged since the watcher's first list: it may have stopped long
        /// before the watcher started.
        since_first_list: bool,
        /// Its `renewTime` as last seen, for the reader (never compared with a clock here).
        renew_time: Option<MicroTime>,
    },
    /// `lease`, reported stopped, changed again: its holder renews it.
    Renewed {
        /// The lease.
        lease: LeaseName,
        /// Its holder now.
        holder: Holder,
    },
    /// A list held `count` more leases with a holder than the watcher can track (its capacity
    /// `N`); those are not judged. Reported whenever the count changes.
    Untracked {
        /// How many.
        count: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    None,
    Stopped,
    Renewed,
}

#[derive(Clone, Debug)]
struct Watched {
    lease: LeaseName,
    resource_version: ResourceVersion,
    holder: Holder,
    renew_time: Option<MicroTime>,
    duration: Duration,
    observed_at: Instant,
    since_first_list: bool,
    /// When it was judged stopped, if it is.
    stopped: Option<Instant>,
    /// Listed in the list being taken in.
    listed: bool,
    /// The event owed for this lease, not yet polled. Kept here rather than in a queue, so a
    /// report can never be dropped: there is one place per tracked lease.
    report: Report,
}

/// Judges heartbeat leases the way [`crate::Elector`] judges a holder: by when *this* process saw
/// each record change, on its own monotonic clock, and never by comparing the record's
/// `renewTime` with a local clock (clocks on different nodes disagree). A lease is reported
/// [stopped](LivenessEvent::Stopped) once it has been seen unchanged for its own
/// `leaseDurationSeconds` (or the fallback), and [renewed](LivenessEvent::Renewed) when it
/// changes again. A lease with no holder (free, or released by an election) is nobody's
/// heartbeat and is not judged.
///
/// Sans-IO, like the [`crate::Machine`]s: [`poll_list`](Self::poll_list) says when to list the
/// leases, [`handle_listed`](Self::handle_listed) / [`handle_list_failed`](Self::handle_list_failed)
/// take the outcome, [`poll_event`](Self::poll_event) drains what it decided, and
/// [`poll_timeout`](Self::poll_timeout) says when to call again. A list is due every `interval`
/// after the previous one ended, and also at the instant the first lease still renewed would
/// expire, so a stop is reported when it happens rather than at the next interval, and judged
/// on a fresh list rather than on old news. At most one list is in flight.
///
/// `N` is the most leases it tracks (the caller owns the storage); more are counted and
/// reported as [`LivenessEvent::Untracked`].
#[derive(Clone, Debug)]
pub struct HeartbeatWatcher<const N: usize> {
    interval: Duration,
    fallback: Duration,
    watched: Vec<Watched, N>,
    next_list_at: Instant,
    listing: bool,
    lists: u64,
    untracked: usize,
    untracked_report: Option<usize>,
}

impl<const N: usize> HeartbeatWatcher<N> {
    /// A watcher that lists at once, then every `interval`; a lease whose record has no duration
    /// is judged by `fallback`.
    pub fn new(interval: Duration, fallback: Duration) -> Self {
        Self {
            interval,
            fallback,
            watched: Vec::new(),
            next_list_at: Instant::MIN,
            listing: false,
            lists: 0,
            untracked: 0,
            untracked_report: None,
        }
    }

    /// Whether a list should be sent at `now`; after `true`, none is until its outcome was fed.
    #[must_use]
    pub fn poll_list(&mut self, now: Instant) -> bool {
        let due = !self.listing && self.poll_timeout().is_some_and(|at| at <= now);
        self.listing |= due;
        due
    }

    /// When to poll again; `None` while a list is in flight.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.listing {
            return None;
        }
        let expiries = self
            .watched
            .iter()
            .filter(|w| w.stopped.is_none())
            .map(Watched::expiry);
        Some(expiries.fold(self.next_list_at, Instant::min))
    }

    /// Takes in a list answered at `now`: every lease it holds, with its name. Leases no longer
    /// listed, or listed without a holder, are forgotten.
    pub fn handle_listed<'a>(
        &mut self,
        leases: impl IntoIterator<Item = (&'a LeaseName, &'a Lease)>,
        now: Instant,
    ) {
        let first = self.lists == 0;
        self.lists = self.lists.saturating_add(1);
        for w in self.watched.iter_mut() {
            w.listed = false;
        }
        let mut untracked = 0usize;
        for (name, lease) in leases {
            if matches!(lease.record.holder, Holder::None) {
                continue;
            }
            match self.watched.iter_mut().find(|w| w.lease == *name) {
                Some(w) => w.observe(lease, self.fallback, now),
                None => {
                    let fresh = Watched {
                        lease: name.clone(),
                        resource_version: lease.resource_version.clone(),
                        holder: lease.record.holder.clone(),
                        renew_time: lease.record.renew_time,
                        duration: lease.record.lease_duration.unwrap_or(self.fallback),
                        observed_at: now,
                        since_first_list: first,
                        stopped: None,
                        listed: true,
                        report: Report::None,
                    };
                    if self.watched.push(fresh).is_err() {
                        untracked = untracked.saturating_add(1);
                    }
                }
            }
        }
        self.watched.retain(|w| w.listed);
        for w in self.watched.iter_mut() {
            if w.stopped.is_none() && now >= w.expiry() {
                w.stopped = Some(now);
                w.report = Report::Stopped;
            }
        }
        if untracked != self.untracked {
            self.untracked = untracked;
            self.untracked_report = Some(untracked);
        }
        self.listed(now);
    }

    /// A list failed at `now` (the caller reports why): what is known stands, and the next list
    /// is due as usual.
    pub fn handle_list_failed(&mut self, now: Instant) {
        self.listed(now);
    }

    fn listed(&mut self, now: Instant) {
        self.listing = false;
        self.next_list_at = now.saturating_add(self.interval);
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<LivenessEvent> {
        if let Some(count) = self.untracked_report.take() {
            return Some(LivenessEvent::Untracked { count });
        }
        let w = self.watched.iter_mut().find(|w| w.report != Report::None)?;
        let report = core::mem::replace(&mut w.report, Report::None);
        Some(match report {
            Report::Stopped => LivenessEvent::Stopped {
                lease: w.lease.clone(),
                holder: w.holder.clone(),
                duration: w.duration,
                unchanged_for: Duration::from_ticks(
                    w.stopped
                        .unwrap_or(w.observed_at)
                        .as_ticks()
                        .saturating_sub(w.observed_at.as_ticks()),
                ),
                since_first_list: w.since_first_list,
                renew_time: w.renew_time,
            },
            Report::Renewed | Report::None => LivenessEvent::Renewed {
                lease: w.lease.clone(),
                holder: w.holder.clone(),
            },
        })
    }

    /// How many leases are judged now.
    pub fn tracked(&self) -> usize {
        self.watched.len()
    }

    /// How many leases with a holder the last list held beyond the capacity.
    pub fn untracked(&self) -> usize {
        self.untracked
    }
}

impl Watched {
    fn expiry(&self) -> Instant {
        self.observed_at.saturating_add(self.duration)
    }

    fn observe(&mut self, lease: &Lease, fallback: Duration, now: Instant) {
        self.listed = true;
        if lease.resource_version == self.resource_version {
            return;
        }
        self.resource_version = lease.resource_version.clone();
        self.holder = lease.record.holder.clone();
        self.renew_time = lease.record.renew_time;
        self.duration = lease.record.lease_duration.unwrap_or(fallback);
        self.observed_at = now;
        self.since_first_list = false;
        if self.stopped.take().is_some() {
            // Stopped and renewed before anyone polled the stop: nothing to tell.
            self.report = match self.report {
                Report::Stopped => Report::None,
                Report::None | Report::Renewed => Report::Renewed,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{lease, ms};

    type Watcher = HeartbeatWatcher<4>;

    fn name(s: &str) -> LeaseName {
        LeaseName::new(s).unwrap()
    }

    /// A list answered at `now` holding `leases` (name, resourceVersion, holder).
    fn listed(w: &mut Watcher, now: u64, leases: &[(&str, u64, Option<&str>)]) {
        assert!(w.poll_list(ms(now)), "a list is due at {now} ms");
        let leases: heapless::Vec<(LeaseName, Lease), 8> = leases
            .iter()
            .map(|(n, rv, holder)| (name(n), lease(*rv, *holder, 0)))
            .collect();
        w.handle_listed(leases.iter().map(|(n, l)| (n, l)), ms(now));
    }

    fn events(w: &mut Watcher) -> heapless::Vec<LivenessEvent, 8> {
        let mut out = heapless::Vec::new();
        while let Some(e) = w.poll_event() {
            out.push(e).unwrap();
        }
        out
    }

    #[test]
    fn a_lease_seen_unchanged_for_its_duration_is_reported_stopped_on_time() {
        // Leases of `lease()` last 15 s; the watcher lists every 30 s.
        let mut w = Watcher::new(Duration::from_secs(30), Duration::from_secs(40));
        listed(&mut w, 0, &[("node-1", 1, Some("node-1"))]);
        assert_eq!(
            w.poll_timeout(),
            Some(ms(15_000)),
            "listed again at its expiry"
        );
        assert!(!w.poll_list(ms(14_999)));
        listed(&mut w, 15_000, &[("node-1", 1, Some("node-1"))]);
        let evs = events(&mut w);
        let [
            LivenessEvent::Stopped {
                lease,
                unchanged_for,
                since_first_list,
                ..
            },
        ] = evs.as_slice()
        else {
            panic!("{evs:?}")
        };
        assert_eq!(lease.as_str(), "node-1");
        assert_eq!(*unchanged_for, Duration::from_secs(15));
        assert!(
            *since_first_list,
            "unchanged since the first list: may have stopped earlier"
        );
        assert_eq!(
            w.poll_timeout(),
            Some(ms(45_000)),
            "a stopped lease sets no alarm"
        );
    }

    #[test]
    fn a_lease_that_keeps_changing_is_never_reported_and_one_that_comes_back_is() {
        let mut w = Watcher::new(Duration::from_secs(5), Duration::from_secs(40));
        let mut rv = 1;
        for t in (0..60_000).step_by(5_000) {
            listed(&mut w, t, &[("node-1", rv, Some("node-1"))]);
            rv += 1;
            assert!(events(&mut w).is_empty(), "at {t} ms");
        }
        listed(&mut w, 60_000, &[("node-1", rv, Some("node-1"))]);
        for t in [65_000, 70_000, 75_000] {
            listed(&mut w, t, &[("node-1", rv, Some("node-1"))]);
        }
        let evs = events(&mut w);
        assert!(
            matches!(evs.as_slice(), [LivenessEvent::Stopped { since_first_list: false, unchanged_for, .. }] if *unchanged_for == Duration::from_secs(15)),
            "{evs:?}"
        );
        listed(&mut w, 80_000, &[("node-1", rv + 1, Some("node-1"))]);
        let evs = events(&mut w);
        assert!(
            matches!(evs.as_slice(), [LivenessEvent::Renewed { .. }]),
            "{evs:?}"
        );
    }

    #[test]
    fn a_stop_undone_before_it_was_polled_is_not_reported_at_all() {
        let mut w = Watcher::new(Duration::from_secs(5), Duration::from_secs(40));
        listed(&mut w, 0, &[("node-1", 1, Some("node-1"))]);
        listed(&mut w, 40_000, &[("node-1", 1, Some("node-1"))]);
        listed(&mut w, 45_000, &[("node-1", 2, Some("node-1"))]);
        assert!(
            events(&mut w).is_empty(),
            "stopped and back: nothing to tell"
        );
    }

    #[test]
    fn holderless_and_vanished_leases_are_not_judged() {
        let mut w = Watcher::new(Duration::from_secs(5), Duration::from_secs(40));
        listed(
            &mut w,
            0,
            &[("released", 1, None), ("node-1", 2, Some("node-1"))],
        );
        assert_eq!(w.tracked(), 1);
        listed(&mut w, 5_000, &[("released", 1, None)]);
        assert_eq!(w.tracked(), 0, "deleted: forgotten");
        for t in [10_000, 15_000, 20_000, 25_000] {
            listed(&mut w, t, &[("released", 1, None)]);
        }
        assert!(events(&mut w).is_empty());
    }

    #[test]
    fn a_failed_list_keeps_what_is_known_and_one_list_is_in_flight() {
        let mut w = Watcher::new(Duration::from_secs(5), Duration::from_secs(40));
        listed(&mut w, 0, &[("node-1", 1, Some("node-1"))]);
        assert!(w.poll_list(ms(5_000)));
        assert!(!w.poll_list(ms(5_000)), "one list at a time");
        assert_eq!(w.poll_timeout(), None);
        w.handle_list_failed(ms(6_000));
        assert_eq!(w.poll_timeout(), Some(ms(11_000)));
        assert_eq!(w.tracked(), 1);
    }

    #[test]
    fn leases_beyond_the_capacity_are_reported_untracked() {
        let mut w: HeartbeatWatcher<1> =
            HeartbeatWatcher::new(Duration::from_secs(5), Duration::from_secs(40));
        assert!(w.poll_list(ms(0)));
        let (a, b) = (
            (name("a"), lease(1, Some("a"), 0)),
            (name("b"), lease(2, Some("b"), 0)),
        );
        w.handle_listed([(&a.0, &a.1), (&b.0, &b.1)], ms(0));
        assert_eq!(w.poll_event(), Some(LivenessEvent::Untracked { count: 1 }));
        assert_eq!(w.poll_event(), None);
        assert_eq!(w.untracked(), 1);
        let c = (name("c"), lease(3, Some("c"), 0));
        assert!(w.poll_list(ms(5_000)));
        w.handle_listed([(&a.0, &a.1), (&b.0, &b.1), (&c.0, &c.1)], ms(5_000));
        assert_eq!(w.poll_event(), Some(LivenessEvent::Untracked { count: 2 }));
        assert_eq!((w.tracked(), w.untracked()), (1, 2));
        assert!(w.poll_list(ms(10_000)));
        w.handle_listed([(&a.0, &a.1)], ms(10_000));
        assert_eq!(w.poll_event(), Some(LivenessEvent::Untracked { count: 0 }));
        assert_eq!(w.untracked(), 0);
    }

    #[test]
    fn a_record_without_a_duration_is_judged_by_the_fallback() {
        let mut w = Watcher::new(Duration::from_secs(60), Duration::from_secs(40));
        assert!(w.poll_list(ms(0)));
        let mut l = lease(1, Some("n"), 0);
        l.record.lease_duration = None;
        w.handle_listed([(&name("n"), &l)], ms(0));
        assert_eq!(w.poll_timeout(), Some(ms(40_000)));
    }
}
