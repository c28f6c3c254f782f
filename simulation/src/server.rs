//! A model of the Kubernetes API server for Leases, with the behaviours the core's rules answer
//! to:
//! - one global resourceVersion counter and optimistic concurrency on update (409 Conflict);
//! - PUT of a missing lease creates it (201, as the real server answers:
//!   `apiserver-fixtures/16-update-missing-201.json`);
//! - an update that changes nothing is not a write: the same resourceVersion comes back and no
//!   watch event is sent;
//! - DELETE (`kubectl delete`), which watchers see as `DELETED`;
//! - a bounded history of changes: a watch resumed from a resourceVersion older than what is
//!   kept gets 410 Expired (`apiserver-fixtures/75-watch-too-old-rv-200.json`), one resumed
//!   within it gets every change since, in order.

use leasehold_core::{
    ApiError, Lease, LeaseRecord, Operation, ResourceVersion, Response, SlotNames, WatchEvent,
};
use std::collections::{HashMap, VecDeque};

/// A stored lease.
#[derive(Clone, Debug)]
struct Stored {
    rv: u64,
    record: LeaseRecord,
}

/// What a request did to the stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing was stored (a read, or a refused write).
    None,
    /// The lease was written: a new resourceVersion, and an event for its watchers.
    Stored,
    /// An update carried the spec already stored: answered as a success with the same
    /// resourceVersion, and nothing was written.
    Unchanged,
    /// An update of a missing lease created it (201): stored, with an event for its watchers.
    Created,
}

/// One change to a lease, as its watchers see it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    name: String,
    /// The lease after the change; `None` when it was deleted.
    lease: Option<Lease>,
}

/// The model server's state.
#[derive(Debug)]
pub struct Server {
    rv: u64,
    leases: HashMap<String, Stored>,
    history: VecDeque<Change>,
    retained: usize,
    /// The newest revision dropped from the history: a watch from before it is too old.
    compacted: u64,
}

impl Server {
    /// An empty server that keeps the last `retained` changes (all leases together) for watches.
    pub fn new(retained: usize) -> Self {
        Self {
            rv: 0,
            leases: HashMap::new(),
            history: VecDeque::new(),
            retained: retained.max(1),
            compacted: 0,
        }
    }

    /// Applies one Get, Create or Update; returns the answer and what it did.
    pub fn apply(&mut self, name: &str, op: &Operation) -> (Response, Effect) {
        match op {
            Operation::Get => (self.lease(name).ok_or(ApiError::NotFound), Effect::None),
            Operation::Create(record) => {
                if self.leases.contains_key(name) {
                    return (Err(ApiError::AlreadyExists), Effect::None);
                }
                self.store(name, record)
            }
            Operation::Update {
                resource_version,
                record,
            } => match self.leases.get(name) {
                Some(current) if current.rv.to_string() != resource_version.as_str() => {
                    (Err(ApiError::Conflict), Effect::None)
                }
                Some(current) if current.record == *record => (
                    self.lease(name).ok_or(ApiError::NotFound),
                    Effect::Unchanged,
                ),
                Some(_) => self.store(name, record),
                None => match self.store(name, record) {
                    (answer, Effect::Stored) => (answer, Effect::Created),
                    refused => refused,
                },
            },
            Operation::Watch { .. } | Operation::Unwatch | Operation::WatchSlots { .. } => {
                (Err(ApiError::Invalid), Effect::None)
            }
        }
    }

    fn store(&mut self, name: &str, record: &LeaseRecord) -> (Response, Effect) {
        // The API refuses what the core must never write: an unrepresentable holder, a
        // non-positive duration.
        if record.holder.as_wire().is_none()
            || record.lease_duration.is_some_and(|d| d.as_ticks() == 0)
        {
            return (Err(ApiError::Invalid), Effect::None);
        }
        self.rv += 1;
        self.leases.insert(
            name.to_owned(),
            Stored {
                rv: self.rv,
                record: record.clone(),
            },
        );
        let lease = self.lease(name);
        self.remember(name, lease.clone());
        (lease.ok_or(ApiError::NotFound), Effect::Stored)
    }

    /// Deletes the lease `name` (`kubectl delete`); whether it existed.
    pub fn delete(&mut self, name: &str) -> bool {
        if self.leases.remove(name).is_none() {
            return false;
        }
        self.rv += 1;
        self.remember(name, None);
        true
    }

    fn remember(&mut self, name: &str, lease: Option<Lease>) {
        self.history.push_back(Change {
            rv: self.rv,
            name: name.to_owned(),
            lease,
        });
        while self.history.len() > self.retained {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
    }

    /// What a watch of `name` opened now delivers first: from no resourceVersion, the lease as
    /// it stands (if it exists); from `from`, every change to it since, or 410 Expired alone
    /// when `from` is older than the history kept (or not a version this server wrote).
    pub fn watch(&self, name: &str, from: Option<&ResourceVersion>) -> Vec<WatchEvent> {
        let Some(from) = from else {
            return self
                .lease(name)
                .map(WatchEvent::Changed)
                .into_iter()
                .collect();
        };
        match from.as_str().parse::<u64>() {
            Ok(from) if from >= self.compacted && from <= self.rv => self
                .history
                .iter()
                .filter(|c| c.rv > from && c.name == name)
                .map(|c| match &c.lease {
                    Some(lease) => WatchEvent::Changed(lease.clone()),
                    None => WatchEvent::Deleted,
                })
                .collect(),
            _ => vec![WatchEvent::Expired],
        }
    }

    /// What a pool's stream opened now delivers first, each event with the slot it is for
    /// (`None`: the stream's own): from no resourceVersion, every slot lease as it stands, then
    /// `Synced` at the current revision (a LIST, then a watch from its version); from `from`,
    /// every change to a slot since, or 410 Expired alone, as [`Server::watch`].
    pub fn watch_slots(
        &self,
        slots: &SlotNames,
        from: Option<&ResourceVersion>,
    ) -> Vec<(Option<u16>, WatchEvent)> {
        let Some(from) = from else {
            let mut listed: Vec<(u16, Lease)> = self
                .leases
                .keys()
                .filter_map(|name| Some((slots.index_of(name)?, self.lease(name)?)))
                .collect();
            listed.sort_by_key(|(i, _)| *i);
            let mut events: Vec<(Option<u16>, WatchEvent)> = listed
                .into_iter()
                .map(|(i, lease)| (Some(i), WatchEvent::Changed(lease)))
                .collect();
            if let Ok(rv) = ResourceVersion::new(&self.rv.to_string()) {
                events.push((None, WatchEvent::Synced(rv)));
            }
            return events;
        };
        match from.as_str().parse::<u64>() {
            Ok(from) if from >= self.compacted && from <= self.rv => self
                .history
                .iter()
                .filter(|c| c.rv > from)
                .filter_map(|c| {
                    let slot = slots.index_of(&c.name)?;
                    let event = match &c.lease {
                        Some(lease) => WatchEvent::Changed(lease.clone()),
                        None => WatchEvent::Deleted,
                    };
                    Some((Some(slot), event))
                })
                .collect(),
            _ => vec![(None, WatchEvent::Expired)],
        }
    }

    /// The newest revision written (a delete is one too).
    pub fn revision(&self) -> u64 {
        self.rv
    }

    /// The lease `name` as the wire type.
    pub fn lease(&self, name: &str) -> Option<Lease> {
        let stored = self.leases.get(name)?;
        Some(Lease {
            resource_version: ResourceVersion::new(&stored.rv.to_string()).ok()?,
            record: stored.record.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::Holder;

    fn record(holder: &str) -> LeaseRecord {
        LeaseRecord {
            holder: Holder::from_wire(Some(holder)),
            ..LeaseRecord::EMPTY
        }
    }

    /// Applies a write the test relies on, asserting the server stored it.
    fn stored(s: &mut Server, name: &str, op: &Operation) {
        let (answer, effect) = s.apply(name, op);
        assert!(answer.is_ok() && effect == Effect::Stored, "{answer:?}");
    }

    fn rv(n: &str) -> ResourceVersion {
        ResourceVersion::new(n).unwrap()
    }

    fn update(version: &str, holder: &str) -> Operation {
        Operation::Update {
            resource_version: rv(version),
            record: record(holder),
        }
    }

    #[test]
    fn stale_update_conflicts_and_missing_update_creates() {
        let mut s = Server::new(100);
        // As the real server answers a PUT of a missing lease: 201, whatever version it carried.
        let (r, effect) = s.apply("x", &update("7", "a"));
        assert_eq!(effect, Effect::Created);
        assert_eq!(r.unwrap().resource_version, rv("1"));
        let (r, _) = s.apply("x", &update("7", "b"));
        assert_eq!(r, Err(ApiError::Conflict));
        let (r, _) = s.apply("x", &Operation::Create(record("c")));
        assert_eq!(r, Err(ApiError::AlreadyExists));
        let (r, _) = s.apply("x", &update("1", "b"));
        assert_eq!(r.unwrap().resource_version, rv("2"));
    }

    #[test]
    fn an_update_that_changes_nothing_keeps_the_version_and_tells_no_watcher() {
        let mut s = Server::new(100);
        stored(&mut s, "x", &Operation::Create(record("a")));
        let (r, effect) = s.apply("x", &update("1", "a"));
        assert_eq!(effect, Effect::Unchanged);
        assert_eq!(r.unwrap().resource_version, rv("1"));
        assert!(s.watch("x", Some(&rv("1"))).is_empty());
    }

    #[test]
    fn a_delete_is_a_change_watchers_see_and_a_missing_lease_cannot_be_deleted() {
        let mut s = Server::new(100);
        stored(&mut s, "x", &Operation::Create(record("a")));
        assert!(s.delete("x"));
        assert!(!s.delete("x"));
        assert_eq!(s.apply("x", &Operation::Get).0, Err(ApiError::NotFound));
        assert_eq!(s.watch("x", Some(&rv("1"))), vec![WatchEvent::Deleted]);
        assert!(s.watch("x", None).is_empty());
    }

    #[test]
    fn a_watch_resumes_within_the_history_and_expires_before_it() {
        let mut s = Server::new(2);
        stored(&mut s, "x", &Operation::Create(record("a")));
        stored(&mut s, "y", &Operation::Create(record("b")));
        stored(&mut s, "x", &update("1", "c"));
        // Changes 2 and 3 are kept; 1 was compacted.
        assert_eq!(s.watch("x", Some(&rv("0"))), vec![WatchEvent::Expired]);
        let events = s.watch("x", Some(&rv("1")));
        assert!(
            matches!(events.as_slice(), [WatchEvent::Changed(l)] if l.resource_version == rv("3")),
            "{events:?}"
        );
        assert!(s.watch("y", Some(&rv("3"))).is_empty());
        assert_eq!(s.watch("y", Some(&rv("9"))), vec![WatchEvent::Expired]);
        assert!(matches!(
            s.watch("y", None).as_slice(),
            [WatchEvent::Changed(_)]
        ));
    }
}
