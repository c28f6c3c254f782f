//! The transport chosen at run time among those built in, and a wrapper that reports every
//! request to the shared status (metrics, `/healthz`, `/readyz`).

use crate::status::Shared;
use leasehold_core::{
    ApiError, Lease, LeaseName, Request, ResourceVersion, SlotNames, Verb, WatchEvent,
};
use leasehold_runtime::{ListedLease, RequestError, Transport, WatchSink};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One of the transports compiled into this binary.
pub enum AnyTransport {
    /// kube-rs.
    #[cfg(feature = "kube")]
    Kube(Box<leasehold_adapter_kube::KubeTransport>),
    /// The raw REST client.
    #[cfg(feature = "http")]
    Http(Box<leasehold_adapter_http::HttpTransport>),
}

/// `$body` with `$t` bound to whichever transport `$any` holds.
macro_rules! each {
    ($any:expr, $t:ident => $body:expr) => {
        match $any {
            #[cfg(feature = "kube")]
            AnyTransport::Kube($t) => $body,
            #[cfg(feature = "http")]
            AnyTransport::Http($t) => $body,
        }
    };
}

impl Transport for AnyTransport {
    async fn call(&self, request: Request) -> Result<Lease, RequestError> {
        each!(self, t => t.call(request).await)
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, RequestError> {
        each!(self, t => t.list(namespace, label_selector).await)
    }

    async fn delete(
        &self,
        name: &str,
        resource_version: &ResourceVersion,
    ) -> Result<(), RequestError> {
        each!(self, t => t.delete(name, resource_version).await)
    }

    async fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        each!(self, t => t.watch(lease, resource_version, sink).await)
    }

    async fn watch_slots(
        &self,
        slots: SlotNames,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        each!(self, t => t.watch_slots(slots, resource_version, sink).await)
    }

    fn lists_before_watching(&self) -> bool {
        each!(self, t => t.lists_before_watching())
    }
}

/// A transport that counts each request by its answer for the metrics and readiness, and logs
/// each failure in the transport's words (the API server's `Status`, or the cause). What the
/// requests mean (takeovers, client-go's slow path) is the core's to count: see
/// [`Shared::observe`].
pub struct Metered {
    /// The transport underneath.
    pub inner: AnyTransport,
    /// Where to report.
    pub shared: Arc<Shared>,
}

impl Transport for Metered {
    async fn call(&self, request: Request) -> Result<Lease, RequestError> {
        let verb = request.op.verb();
        let response = self.inner.call(request).await;
        self.shared.answered(verb, response.as_ref());
        if let Err(error) = &response {
            match error.kind {
                // A lease not created yet, or another candidate's write first: the core's
                // everyday business, not a failure.
                ApiError::NotFound | ApiError::Conflict | ApiError::AlreadyExists => {
                    tracing::debug!(%error, "request answered")
                }
                _ => tracing::warn!(%error, "request failed"),
            }
        }
        response
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, RequestError> {
        let result = self.inner.list(namespace, label_selector).await;
        self.shared.count(Verb::List, result.as_ref().map(|_| ()));
        result
    }

    async fn delete(
        &self,
        name: &str,
        resource_version: &ResourceVersion,
    ) -> Result<(), RequestError> {
        let result = self.inner.delete(name, resource_version).await;
        self.shared.count(Verb::Delete, result.as_ref().copied());
        result
    }

    fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send {
        self.shared.watch_opened();
        self.inner.watch(lease, resource_version, sink)
    }

    /// The stream's first state, a list or the watch that streams it, is the API server's
    /// answer: a list is counted, a refusal or failure is counted with its code, and the state
    /// delivered makes the agent ready, as a read does (a pool that waits for a slot may send
    /// nothing else for as long as it waits).
    async fn watch_slots(
        &self,
        slots: SlotNames,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        self.shared.watch_opened();
        let mut listing = resource_version.is_none();
        let (deliveries, mut delivered) = mpsc::unbounded_channel();
        let stream =
            self.inner
                .watch_slots(slots, resource_version, WatchSink::new(0, 0, deliveries));
        // Moved in, so that the stream's next delivery fails and ends it once the driver has
        // stopped listening.
        let forward = async move {
            while let Some(delivery) = delivered.recv().await {
                if listing {
                    match (&delivery.event, &delivery.error) {
                        (WatchEvent::Synced(_), _) if self.inner.lists_before_watching() => {
                            self.shared.count(Verb::List, Ok(()));
                        }
                        // A streamed list is the watch itself, counted as opened; its state
                        // delivered is an answer all the same.
                        (WatchEvent::Synced(_), _) => self.shared.synced(),
                        // The list, or the watch that streams it, refused or failed.
                        (_, Some(error)) => self.shared.count(error.verb, Err(error)),
                        _ => {}
                    }
                    listing = delivery.lease_slot.is_some();
                }
                if !sink.relay(delivery) {
                    break;
                }
            }
        };
        tokio::join!(stream, forward);
    }

    fn lists_before_watching(&self) -> bool {
        self.inner.lists_before_watching()
    }
}
