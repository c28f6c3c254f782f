//! A model of the Kubernetes API server for Leases: one global resourceVersion counter,
//! optimistic concurrency on update, create-on-update (PUT of a missing lease creates it, as the
//! real server does), and watchers per lease name.

use leasehold_core::{ApiError, Lease, LeaseRecord, Operation, ResourceVersion, Response};
use std::collections::HashMap;

/// A stored lease.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Its resourceVersion.
    pub rv: u64,
    /// Its spec.
    pub record: LeaseRecord,
}

/// The model server's state.
#[derive(Debug, Default)]
pub struct Server {
    rv: u64,
    leases: HashMap<String, Stored>,
}

impl Server {
    /// The lease `name` as stored.
    pub fn get(&self, name: &str) -> Option<&Stored> {
        self.leases.get(name)
    }

    /// Applies one operation; returns the answer and whether the lease changed.
    pub fn apply(&mut self, name: &str, op: &Operation) -> (Response, bool) {
        match op {
            Operation::Get => (self.lease(name).ok_or(ApiError::NotFound), false),
            Operation::Create(record) => {
                if self.leases.contains_key(name) {
                    return (Err(ApiError::AlreadyExists), false);
                }
                self.store(name, record)
            }
            Operation::Update {
                resource_version,
                record,
            } => match self.leases.get(name) {
                Some(current) if current.rv.to_string() != resource_version.as_str() => {
                    (Err(ApiError::Conflict), false)
                }
                _ => self.store(name, record),
            },
            Operation::Watch { .. } | Operation::Unwatch => (Err(ApiError::Invalid), false),
        }
    }

    fn store(&mut self, name: &str, record: &LeaseRecord) -> (Response, bool) {
        // The API refuses what the core must never write: an unrepresentable holder, a
        // non-positive duration.
        if record.holder.as_wire().is_none()
            || record.lease_duration.is_some_and(|d| d.as_ticks() == 0)
        {
            return (Err(ApiError::Invalid), false);
        }
        self.rv += 1;
        self.leases.insert(
            name.to_owned(),
            Stored {
                rv: self.rv,
                record: record.clone(),
            },
        );
        (Ok(self.lease(name).expect("just stored")), true)
    }

    /// The lease `name` as the wire type.
    pub fn lease(&self, name: &str) -> Option<Lease> {
        self.leases.get(name).map(|s| Lease {
            resource_version: ResourceVersion::new(&s.rv.to_string()).expect("fits"),
            record: s.record.clone(),
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

    #[test]
    fn stale_update_conflicts_and_missing_update_creates() {
        let mut s = Server::default();
        let rv = |n: &str| ResourceVersion::new(n).unwrap();
        let (r, changed) = s.apply(
            "x",
            &Operation::Update {
                resource_version: rv("7"),
                record: record("a"),
            },
        );
        assert!(changed && r.is_ok());
        let (r, _) = s.apply(
            "x",
            &Operation::Update {
                resource_version: rv("7"),
                record: record("b"),
            },
        );
        assert_eq!(r, Err(ApiError::Conflict));
        let (r, _) = s.apply("x", &Operation::Create(record("c")));
        assert_eq!(r, Err(ApiError::AlreadyExists));
        let (r, _) = s.apply(
            "x",
            &Operation::Update {
                resource_version: rv("1"),
                record: record("b"),
            },
        );
        assert_eq!(r.unwrap().resource_version, rv("2"));
    }
}
