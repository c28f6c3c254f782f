//! The transport chosen at run time among those built in, and a wrapper that reports every
//! request to the shared status (metrics, `/healthz`, `/readyz`).

use crate::status::Shared;
use leasehold_core::{Identity, Lease, LeaseName, Operation, Request, ResourceVersion, Verb};
use leasehold_runtime::{ListedLease, RequestError, Transport, WatchSink};
use std::future::Future;
use std::sync::Arc;

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
}

/// A transport that reports each request and answer to the shared status.
pub struct Metered {
    /// The transport underneath.
    pub inner: AnyTransport,
    /// Where to report.
    pub shared: Arc<Shared>,
    /// This agent, to tell its own renewals from others' writes.
    pub identity: Identity,
}

impl Transport for Metered {
    async fn call(&self, request: Request) -> Result<Lease, RequestError> {
        let verb = request.op.verb();
        let takeover = match &request.op {
            Operation::Create(record) => record.holder.is(&self.identity),
            Operation::Update { record, .. } => record.holder.is(&self.identity),
            _ => false,
        };
        self.shared
            .sent(verb, takeover && !self.shared.view().leader);
        let response = self.inner.call(request).await;
        let ours = matches!(verb, Verb::Create | Verb::Update)
            && response
                .as_ref()
                .is_ok_and(|l| l.record.holder.is(&self.identity));
        self.shared.answered(verb, response.as_ref(), ours);
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
}
