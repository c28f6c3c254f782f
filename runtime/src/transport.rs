//! What a transport does for the driver: the core's requests, lists, deletes and watch streams.

use crate::error::RequestError;
use leasehold_core::{Lease, LeaseName, MicroTime, Request, ResourceVersion, WatchEvent};
use std::future::Future;
use tokio::sync::mpsc;

/// Performs the core's requests against an API server.
pub trait Transport: Send + Sync + 'static {
    /// Performs a `Get`, `Create` or `Update`. It must resolve (with a timeout at worst): the
    /// core waits for it before the next request. A failure carries its own classification
    /// (for the core), the server's `Status` and the cause (for the user).
    fn call(&self, request: Request) -> impl Future<Output = Result<Lease, RequestError>> + Send;

    /// Lists the leases in `namespace` (all namespaces when `None`) matching `label_selector`,
    /// following pagination to the end.
    fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ListedLease>, RequestError>> + Send;

    /// Deletes the lease `name` only if it is still at `resource_version` (the API server's
    /// `preconditions`): a lease written since (renewed, say) is left alone with `Conflict`.
    fn delete(
        &self,
        name: &str,
        resource_version: &ResourceVersion,
    ) -> impl Future<Output = Result<(), RequestError>> + Send;

    /// Streams the watch of `lease` from `resource_version` into `sink` until the stream ends;
    /// its last event says how (`Ended`, `Expired` or `Failed`). The driver aborts it when the
    /// core no longer wants it.
    fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send;
}

/// A shared transport: several machines (or a machine and its owner) over one connection.
impl<T: Transport> Transport for std::sync::Arc<T> {
    fn call(&self, request: Request) -> impl Future<Output = Result<Lease, RequestError>> + Send {
        T::call(self, request)
    }

    fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ListedLease>, RequestError>> + Send {
        T::list(self, namespace, label_selector)
    }

    fn delete(
        &self,
        name: &str,
        resource_version: &ResourceVersion,
    ) -> impl Future<Output = Result<(), RequestError>> + Send {
        T::delete(self, name, resource_version)
    }

    fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send {
        T::watch(self, lease, resource_version, sink)
    }
}

/// What a transport puts in the metadata of the leases it creates: labels, so a selector finds
/// them, and an owner, so Kubernetes deletes the lease with it (a Pod, say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateMetadata {
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `metadata.ownerReferences[0]`.
    pub owner: Option<OwnerReference>,
}

/// An owner reference: the object whose deletion deletes the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerReference {
    /// `apiVersion` (`v1` for a Pod).
    pub api_version: String,
    /// `kind` (`Pod`).
    pub kind: String,
    /// `name`.
    pub name: String,
    /// `uid`.
    pub uid: String,
}

/// A lease as a list shows it: where it lives, when it was made, its labels and its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedLease {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp`, when the server gave one.
    pub created: Option<MicroTime>,
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The record and resourceVersion.
    pub lease: leasehold_core::Lease,
}

/// One event of one watch stream, as a [`WatchSink`] delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The slot whose watch it is.
    pub slot: u16,
    /// Which opening of that slot's watch: events of a stream since replaced are stale.
    pub generation: u64,
    /// The event.
    pub event: WatchEvent,
    /// Why the stream failed or could not open, for a `Failed` or `Expired` that has a cause
    /// worth telling (a 403 on watch, say).
    pub error: Option<RequestError>,
}

/// Where a transport delivers one watch stream's events.
#[derive(Clone, Debug)]
pub struct WatchSink {
    slot: u16,
    generation: u64,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

impl WatchSink {
    /// A sink for the `generation`-th watch of `slot`, delivering into `deliveries`.
    pub fn new(slot: u16, generation: u64, deliveries: mpsc::UnboundedSender<Delivery>) -> Self {
        Self {
            slot,
            generation,
            deliveries,
        }
    }

    /// Delivers an event; false once the driver has stopped listening.
    pub fn send(&self, event: WatchEvent) -> bool {
        self.deliver(event, None)
    }

    /// Delivers the end of a stream that failed for `error`: `Expired` for a 410 Gone, else
    /// `Failed`.
    pub fn fail(&self, error: RequestError) {
        let event = match &error.status {
            Some(status) if status.code == 410 => WatchEvent::Expired,
            _ => WatchEvent::Failed,
        };
        self.deliver(event, Some(error));
    }

    fn deliver(&self, event: WatchEvent, error: Option<RequestError>) -> bool {
        self.deliveries
            .send(Delivery {
                slot: self.slot,
                generation: self.generation,
                event,
                error,
            })
            .is_ok()
    }

    /// Delivers an event from an open stream; false when the stream should end (the event
    /// was `Expired` or `Failed`, or the driver stopped listening).
    pub fn forward(&self, event: WatchEvent) -> bool {
        let last = matches!(event, WatchEvent::Expired | WatchEvent::Failed);
        self.send(event) && !last
    }
}
