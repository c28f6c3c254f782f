//! What a transport does for the driver: the core's requests, lists, deletes and watch streams.

use crate::error::RequestError;
use leasehold_core::{
    Lease, LeaseName, MicroTime, Request, ResourceVersion, SlotNames, WatchEvent,
};
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
    /// its last event says how (`Ended`, `Expired`, `Failed`, or `Forbidden` when RBAC refuses
    /// it). The driver aborts it when the core no longer wants it.
    fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send;

    /// Streams a pool's leases with one watch of the namespace
    /// ([`leasehold_core::Operation::WatchSlots`]) into `sink` until the stream ends.
    ///
    /// Without `resource_version` it first delivers the slots' current state: a `Changed` for
    /// each lease that is one of `slots`, to that lease's slot ([`WatchSink::send_to`]), then
    /// `Synced` at the version that state is of. It streams that list in the watch itself
    /// (`sendInitialEvents`, one request) where the server can; else it lists the
    /// namespace's leases (to the last page) and then watches the namespace from there (see
    /// [`Transport::lists_before_watching`]). With one, it resumes the watch after it. Changes of the slots go to
    /// their own slot, those of other leases nowhere; bookmarks and the stream's last event go
    /// to the stream's slot: `Ended`, `Expired`, `Failed`, or `Forbidden` when RBAC refuses the
    /// list or the watch (a Role that names the leases grants neither), which the pool answers
    /// by watching each slot by name. The driver aborts it when the core no longer wants it.
    fn watch_slots(
        &self,
        slots: SlotNames,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send;

    /// Whether [`Transport::watch_slots`] without a version lists before it watches (a LIST,
    /// then a WATCH) rather than streaming the list in its one WATCH. It turns true once, when
    /// the server refuses a streamed list: so counted after a stream's `Synced`, it tells
    /// which that stream did.
    fn lists_before_watching(&self) -> bool {
        true
    }
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

    fn watch_slots(
        &self,
        slots: SlotNames,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send {
        T::watch_slots(self, slots, resource_version, sink)
    }

    fn lists_before_watching(&self) -> bool {
        T::lists_before_watching(self)
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
    /// The slot whose watch stream it came from (a pool's stream has a slot of its own): the
    /// driver knows the stream by it.
    pub slot: u16,
    /// Which opening of that slot's watch: events of a stream since replaced are stale.
    pub generation: u64,
    /// The slot of the lease the event is about, when a pool's stream delivers it to a slot
    /// other than its own; `None` for the stream's own events, which go to `slot`.
    pub lease_slot: Option<u16>,
    /// The event.
    pub event: WatchEvent,
    /// Why the stream failed or could not open, for an `Expired`, `Failed` or `Forbidden` that
    /// has a cause worth telling (a 403 on watch, say).
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

    /// Delivers an event of the stream's own slot; false once the driver has stopped
    /// listening.
    pub fn send(&self, event: WatchEvent) -> bool {
        self.deliver(None, event, None)
    }

    /// Delivers an event about the lease of `slot`, from a pool's stream; false once the driver
    /// has stopped listening.
    pub fn send_to(&self, slot: u16, event: WatchEvent) -> bool {
        self.deliver(Some(slot), event, None)
    }

    /// Delivers the end of a stream that failed for `error`: `Expired` for a 410 Gone,
    /// `Forbidden` for a 403 (RBAC refused it), else `Failed`.
    pub fn fail(&self, error: RequestError) {
        let event = match error.status.as_ref().map(|s| s.code) {
            Some(410) => WatchEvent::Expired,
            Some(403) => WatchEvent::Forbidden,
            _ => WatchEvent::Failed,
        };
        self.deliver(None, event, Some(error));
    }

    fn deliver(
        &self,
        lease_slot: Option<u16>,
        event: WatchEvent,
        error: Option<RequestError>,
    ) -> bool {
        self.deliveries
            .send(Delivery {
                slot: self.slot,
                generation: self.generation,
                lease_slot,
                event,
                error,
            })
            .is_ok()
    }

    /// Passes on a delivery of a stream that this one wraps (a transport over another) as this
    /// stream's own: its event, the slot it is for and its error are kept. False when the
    /// stream should end, as [`WatchSink::forward`].
    pub fn relay(&self, delivery: Delivery) -> bool {
        let last = delivery.lease_slot.is_none() && is_last(&delivery.event);
        self.deliver(delivery.lease_slot, delivery.event, delivery.error) && !last
    }

    /// Delivers an event of the stream's own slot from an open stream; false when the stream
    /// should end (the event was its last: `Expired`, `Failed` or `Forbidden`; or the driver
    /// stopped listening).
    pub fn forward(&self, event: WatchEvent) -> bool {
        let last = is_last(&event);
        self.send(event) && !last
    }
}

/// Whether `event` ends the stream that delivers it.
pub(crate) fn is_last(event: &WatchEvent) -> bool {
    matches!(
        event,
        WatchEvent::Ended | WatchEvent::Expired | WatchEvent::Failed | WatchEvent::Forbidden
    )
}
