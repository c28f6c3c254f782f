//! An in-memory API server for Leases, so the handles can be tested on tokio's paused time: a
//! resourceVersion every write increments, 404/409 as the real server answers, and watches that
//! deliver every change (of one lease, or of a pool's slots after their listed state). Each
//! candidate reaches it through a [`Link`] the test can cut.

use leasehold_core::{
    Lease, LeaseName, LeaseRecord, Operation, Request, ResourceVersion, SlotNames, Verb, WatchEvent,
};
use leasehold_runtime::{Cause, ListedLease, RequestError, ServerStatus, Transport, WatchSink};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Each lease's record and the version it was stored at, by name; and the last version issued.
type Store = (HashMap<String, (u64, LeaseRecord)>, u64);

/// The leases of a pool's slots that exist, by slot, the version of the list, and the changes
/// after it.
type Listed = (
    Vec<(u16, Lease)>,
    ResourceVersion,
    broadcast::Receiver<(String, Lease)>,
);

/// The leases, by name.
pub struct Memory {
    leases: Mutex<Store>,
    changes: broadcast::Sender<(String, Lease)>,
}

impl Memory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            leases: Mutex::default(),
            changes: broadcast::channel(1024).0,
        })
    }

    /// The holder stored in the lease `name`, if any.
    pub fn holder(&self, name: &str) -> Option<String> {
        let leases = self.leases.lock().unwrap();
        leases
            .0
            .get(name)
            .and_then(|(_, r)| r.holder.as_wire().map(str::to_owned))
            .filter(|h| !h.is_empty())
    }

    fn refused(verb: Verb, name: &str, code: u16, reason: &str) -> RequestError {
        RequestError::refused(
            verb,
            format!("leases/{name}"),
            ServerStatus::new(code, reason, ""),
        )
    }

    fn answer(&self, request: Request) -> Result<Lease, RequestError> {
        let name = request.lease.as_str().to_owned();
        let mut guard = self.leases.lock().unwrap();
        let (leases, last) = &mut *guard;
        let verb = request.op.verb();
        let current = leases.get(&name).cloned();
        let record = match (request.op, current) {
            (Operation::Get, Some((version, record))) => return Ok(stored(version, record)),
            (Operation::Get, None) => return Err(Self::refused(verb, &name, 404, "NotFound")),
            (Operation::Create(_), Some(_)) => {
                return Err(Self::refused(verb, &name, 409, "AlreadyExists"));
            }
            (Operation::Create(record), None) => record,
            (
                Operation::Update {
                    resource_version,
                    record,
                },
                Some((version, _)),
            ) if resource_version.as_str() == version.to_string() => record,
            (Operation::Update { .. }, Some(_)) => {
                return Err(Self::refused(verb, &name, 409, "Conflict"));
            }
            (Operation::Update { .. }, None) => {
                return Err(Self::refused(verb, &name, 404, "NotFound"));
            }
            (Operation::Watch { .. } | Operation::WatchSlots { .. } | Operation::Unwatch, _) => {
                return Err(RequestError::failed(verb, name, Cause::NotACall));
            }
        };
        *last += 1;
        leases.insert(name.clone(), (*last, record.clone()));
        let lease = stored(*last, record);
        let _ = self.changes.send((name, lease.clone()));
        Ok(lease)
    }

    /// The slots of `slots` that exist, by slot, and the version they are all at; with the
    /// changes after it, subscribed to at the same instant so that none falls between.
    fn list_slots(&self, slots: &SlotNames) -> Listed {
        let guard = self.leases.lock().unwrap();
        let (leases, last) = &*guard;
        let listed = leases
            .iter()
            .filter_map(|(name, (version, record))| {
                Some((slots.index_of(name)?, stored(*version, record.clone())))
            })
            .collect();
        let version = ResourceVersion::new(&last.to_string()).unwrap();
        (listed, version, self.changes.subscribe())
    }
}

fn stored(version: u64, record: LeaseRecord) -> Lease {
    Lease {
        resource_version: ResourceVersion::new(&version.to_string()).unwrap(),
        record,
    }
}

/// One candidate's way to the server. Cut, every call times out after `timeout` and every
/// watch ends.
pub struct Link {
    server: Arc<Memory>,
    cut: Arc<AtomicBool>,
    timeout: Duration,
}

impl Link {
    pub fn new(server: &Arc<Memory>, timeout: Duration) -> (Self, Arc<AtomicBool>) {
        let cut = Arc::new(AtomicBool::new(false));
        let link = Self {
            server: server.clone(),
            cut: cut.clone(),
            timeout,
        };
        (link, cut)
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Transport for Link {
    async fn call(&self, request: Request) -> Result<Lease, RequestError> {
        if self.is_cut() {
            tokio::time::sleep(self.timeout).await;
            let target = format!("leases/{}", request.lease.as_str());
            let after = self.timeout;
            return Err(RequestError::failed(
                request.op.verb(),
                target,
                Cause::Timeout { after },
            ));
        }
        self.server.answer(request)
    }

    async fn list(
        &self,
        _namespace: Option<&str>,
        _label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, RequestError> {
        Ok(Vec::new())
    }

    async fn delete(
        &self,
        name: &str,
        _resource_version: &ResourceVersion,
    ) -> Result<(), RequestError> {
        Err(Memory::refused(Verb::Delete, name, 405, "MethodNotAllowed"))
    }

    async fn watch(
        &self,
        lease: LeaseName,
        _resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        let changes = self.server.changes.subscribe();
        self.follow(changes, &sink, |name| {
            (name == lease.as_str()).then_some(None)
        })
        .await;
    }

    async fn watch_slots(
        &self,
        slots: SlotNames,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        let changes = match resource_version {
            Some(_) => self.server.changes.subscribe(),
            None => {
                if self.is_cut() {
                    sink.send(WatchEvent::Failed);
                    return;
                }
                let (listed, version, changes) = self.server.list_slots(&slots);
                for (slot, lease) in listed {
                    if !sink.send_to(slot, WatchEvent::Changed(lease)) {
                        return;
                    }
                }
                if !sink.send(WatchEvent::Synced(version)) {
                    return;
                }
                changes
            }
        };
        self.follow(changes, &sink, |name| slots.index_of(name).map(Some))
            .await;
    }
}

impl Link {
    /// Delivers `changes` into `sink` until the link is cut or the driver stops listening:
    /// `route` says which slot a lease's change goes to (`Some(None)`: the stream's own), and
    /// the changes of leases it does not route are dropped.
    async fn follow(
        &self,
        mut changes: broadcast::Receiver<(String, Lease)>,
        sink: &WatchSink,
        route: impl Fn(&str) -> Option<Option<u16>>,
    ) {
        loop {
            if self.is_cut() {
                sink.send(WatchEvent::Failed);
                return;
            }
            match tokio::time::timeout(Duration::from_millis(100), changes.recv()).await {
                Ok(Ok((name, changed))) => {
                    let more = match route(&name) {
                        Some(Some(slot)) => sink.send_to(slot, WatchEvent::Changed(changed)),
                        Some(None) => sink.forward(WatchEvent::Changed(changed)),
                        None => true,
                    };
                    if !more {
                        return;
                    }
                }
                Ok(Err(_)) => {
                    sink.send(WatchEvent::Failed);
                    return;
                }
                Err(_) => {}
            }
        }
    }
}
