//! An in-memory API server for Leases, so the handles can be tested on tokio's paused time: a
//! resourceVersion every write increments, 404/409 as the real server answers, and watches that
//! deliver every change. Each candidate reaches it through a [`Link`] the test can cut.

use leasehold_core::{Lease, LeaseName, LeaseRecord, Operation, Request, ResourceVersion, Verb};
use leasehold_runtime::{Cause, ListedLease, RequestError, ServerStatus, Transport, WatchSink};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Each lease's record and the version it was stored at, by name; and the last version issued.
type Store = (HashMap<String, (u64, LeaseRecord)>, u64);

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
            (Operation::Watch { .. } | Operation::Unwatch, _) => {
                return Err(RequestError::failed(verb, name, Cause::NotACall));
            }
        };
        *last += 1;
        leases.insert(name.clone(), (*last, record.clone()));
        let lease = stored(*last, record);
        let _ = self.changes.send((name, lease.clone()));
        Ok(lease)
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
        let mut changes = self.server.changes.subscribe();
        loop {
            if self.is_cut() {
                sink.send(leasehold_core::WatchEvent::Failed);
                return;
            }
            match tokio::time::timeout(Duration::from_millis(100), changes.recv()).await {
                Ok(Ok((name, changed))) if name == lease.as_str() => {
                    if !sink.forward(leasehold_core::WatchEvent::Changed(changed)) {
                        return;
                    }
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => {
                    sink.send(leasehold_core::WatchEvent::Failed);
                    return;
                }
            }
        }
    }
}
