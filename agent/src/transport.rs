//! The transport chosen at run time among those built in, and a wrapper that reports every
//! request to the shared status (metrics, `/healthz`, `/readyz`).

use crate::status::Shared;
use leasehold_core::{
    ApiError, Identity, LeaseName, Operation, Request, ResourceVersion, Response, Verb,
};
use leasehold_runtime::{ListedLease, Transport, WatchSink};
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

impl AnyTransport {
    /// The API server's own message for the last failed request, for error reports.
    pub fn last_failure_message(&self) -> Option<String> {
        match self {
            #[cfg(feature = "kube")]
            Self::Kube(t) => t.last_failure().map(|s| s.message),
            #[cfg(feature = "http")]
            Self::Http(t) => t
                .last_failure()
                .and_then(|f| f.detail)
                .map(|s| s.message)
                .filter(|m| !m.is_empty()),
        }
    }
}

impl Transport for AnyTransport {
    async fn call(&self, request: Request) -> Response {
        match self {
            #[cfg(feature = "kube")]
            Self::Kube(t) => t.call(request).await,
            #[cfg(feature = "http")]
            Self::Http(t) => t.call(request).await,
        }
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, ApiError> {
        match self {
            #[cfg(feature = "kube")]
            Self::Kube(t) => t.list(namespace, label_selector).await,
            #[cfg(feature = "http")]
            Self::Http(t) => t.list(namespace, label_selector).await,
        }
    }

    async fn delete(&self, name: &str, resource_version: &ResourceVersion) -> Result<(), ApiError> {
        match self {
            #[cfg(feature = "kube")]
            Self::Kube(t) => t.delete(name, resource_version).await,
            #[cfg(feature = "http")]
            Self::Http(t) => t.delete(name, resource_version).await,
        }
    }

    async fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        match self {
            #[cfg(feature = "kube")]
            Self::Kube(t) => t.watch(lease, resource_version, sink).await,
            #[cfg(feature = "http")]
            Self::Http(t) => t.watch(lease, resource_version, sink).await,
        }
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
    async fn call(&self, request: Request) -> Response {
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
        self.shared.answered(verb, &response, ours);
        response
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, ApiError> {
        let result = self.inner.list(namespace, label_selector).await;
        let code = match &result {
            Ok(_) => "200",
            Err(ApiError::Forbidden) => "403",
            Err(_) => "error",
        };
        self.shared.count(Verb::List, code);
        result
    }

    async fn delete(&self, name: &str, resource_version: &ResourceVersion) -> Result<(), ApiError> {
        let result = self.inner.delete(name, resource_version).await;
        let code = match &result {
            Ok(()) => "200",
            Err(ApiError::Conflict) => "409",
            Err(ApiError::NotFound) => "404",
            Err(ApiError::Forbidden) => "403",
            Err(_) => "error",
        };
        self.shared.count(Verb::Delete, code);
        result
    }

    fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) -> impl Future<Output = ()> + Send {
        self.shared.count(Verb::Watch, "opened");
        self.inner.watch(lease, resource_version, sink)
    }
}
