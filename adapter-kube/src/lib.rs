//! The kube-rs transport for leasehold: `kube::Api<Lease>` with `k8s-openapi`'s types, so
//! everything kube-rs supports (exec credential plugins, OIDC, client certificates, its
//! kubeconfig inference) works. It holds no policy: requests in, classified answers out.
#![forbid(unsafe_code)]

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime as KubeMicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams, WatchEvent as KubeWatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use leasehold_core::{
    ApiError, Holder, Lease, LeaseName, LeaseRecord, MicroTime, Operation, Request,
    ResourceVersion, Response, WatchEvent,
};
use leasehold_runtime::{CreateMetadata, ListedLease, Transport, WatchSink};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Performs lease requests through kube-rs.
pub struct KubeTransport {
    client: kube::Client,
    api: Api<KubeLease>,
    timeout: std::time::Duration,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    /// The last object read or written per lease, so a write echoes its metadata.
    last_read: Mutex<HashMap<String, KubeLease>>,
    last_failure: Mutex<Option<kube::core::Status>>,
    /// Labels and owner for the leases this transport creates.
    create_metadata: CreateMetadata,
}

impl std::fmt::Debug for KubeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why no kube client could be made.
#[derive(Debug)]
pub enum ClientError {
    /// The kubeconfig given could not be read or used.
    Kubeconfig(kube::config::KubeconfigError),
    /// No configuration could be inferred.
    Infer(kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    Client(kube::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kubeconfig(e) => write!(f, "kubeconfig: {e}"),
            Self::Infer(e) => write!(
                f,
                "no cluster configuration found (--kubeconfig, KUBECONFIG, ~/.kube/config, in-cluster): {e}"
            ),
            Self::Client(e) => write!(f, "cannot build the kube client: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A kube client and the namespace to use: from `kubeconfig` when given (with `context`), else
/// kube-rs's inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(kube::Client, String), ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(ClientError::Kubeconfig)?;
            let options = KubeConfigOptions {
                context: context.map(str::to_owned),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(ClientError::Kubeconfig)?
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    let mut config = config;
    // The core decides when to retry (jitter, Retry-After, deadlines); kube-rs's own retry of
    // 429/503/504 would hide those answers from it and spend its renew deadline.
    config.default_retry = false;
    let namespace = config.default_namespace.clone();
    Ok((
        kube::Client::try_from(config).map_err(ClientError::Client)?,
        namespace,
    ))
}

impl KubeTransport {
    /// A transport for leases in `namespace`, each request bounded by `request_timeout`
    /// ([`leasehold_runtime::request_timeout`]).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        request_timeout: std::time::Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            client,
            timeout: request_timeout,
            limiter: None,
            last_read: Mutex::new(HashMap::new()),
            last_failure: Mutex::new(None),
            create_metadata: CreateMetadata::default(),
        }
    }

    /// Gives every lease this transport creates these labels and owner.
    pub fn with_create_metadata(mut self, metadata: CreateMetadata) -> Self {
        self.create_metadata = metadata;
        self
    }

    fn new_object(&self) -> KubeLease {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let m = &self.create_metadata;
        let mut lease = KubeLease::default();
        if !m.labels.is_empty() {
            lease.metadata.labels = Some(m.labels.clone());
        }
        if let Some(owner) = &m.owner {
            lease.metadata.owner_references = Some(vec![OwnerReference {
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
                ..OwnerReference::default()
            }]);
        }
        lease
    }

    /// Limits requests to `qps` per second after a burst of `burst` (client-go: 5 and 10;
    /// Elastic's `kube_client_options.qps/burst`). `None` when either is not positive.
    pub fn with_rate_limit(mut self, qps: f64, burst: u32) -> Option<Self> {
        let burst = std::num::NonZeroU32::new(burst)?;
        if !(qps.is_finite() && qps > 0.0) {
            return None;
        }
        let quota = governor::Quota::with_period(std::time::Duration::from_secs_f64(1.0 / qps))?
            .allow_burst(burst);
        self.limiter = Some(governor::RateLimiter::direct(quota));
        Some(self)
    }

    async fn throttle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// The last error answer, with the server's words.
    pub fn last_failure(&self) -> Option<kube::core::Status> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, name: &str, lease: Option<&KubeLease>) {
        let mut cache = self
            .last_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match lease {
            Some(l) => cache.insert(name.to_owned(), l.clone()),
            None => cache.remove(name),
        };
    }

    fn error(&self, e: kube::Error) -> ApiError {
        match e {
            kube::Error::Api(status) => {
                // kube-rs reads no Retry-After header, and fills an absent
                // `retryAfterSeconds` with 0.
                let retry = status
                    .details
                    .as_ref()
                    .map(|d| u64::from(d.retry_after_seconds))
                    .filter(|&s| s > 0);
                let error = ApiError::from_status(
                    status.code,
                    &status.reason,
                    leasehold_core::api::retry_after(None, retry),
                );
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(*status);
                error
            }
            kube::Error::SerdeError(_) => ApiError::Malformed,
            _ => ApiError::Transport,
        }
    }
}

fn micro(t: &Option<KubeMicroTime>) -> Option<MicroTime> {
    t.as_ref()
        .map(|t| MicroTime::from_unix_micros(t.0.as_microsecond()))
}

fn kube_micro(t: Option<MicroTime>) -> Option<KubeMicroTime> {
    t.and_then(|t| Timestamp::from_microsecond(t.as_unix_micros()).ok())
        .map(KubeMicroTime)
}

/// The lease as the core sees it; `None` when the object has no usable resourceVersion.
fn to_core(lease: &KubeLease) -> Option<Lease> {
    let resource_version =
        ResourceVersion::new(lease.metadata.resource_version.as_deref()?).ok()?;
    let spec = lease.spec.clone().unwrap_or_default();
    Some(Lease {
        resource_version,
        record: LeaseRecord {
            holder: Holder::from_wire(spec.holder_identity.as_deref()),
            lease_duration: LeaseRecord::lease_duration_from_wire(
                spec.lease_duration_seconds.map(i64::from),
            ),
            acquire_time: micro(&spec.acquire_time),
            renew_time: micro(&spec.renew_time),
            lease_transitions: match spec.lease_transitions {
                Some(t) => Some(u32::try_from(t).ok()?),
                None => None,
            },
        },
    })
}

fn for_write(
    base: Option<KubeLease>,
    name: &str,
    resource_version: Option<&str>,
    record: &LeaseRecord,
) -> KubeLease {
    let mut lease = base.unwrap_or_default();
    lease.metadata.name = Some(name.to_owned());
    lease.metadata.resource_version = resource_version.map(str::to_owned);
    let previous = lease.spec.take().unwrap_or_default();
    lease.spec = Some(LeaseSpec {
        holder_identity: record.holder.as_wire().map(str::to_owned),
        lease_duration_seconds: record.lease_duration.map(|d| d.as_secs() as i32),
        acquire_time: kube_micro(record.acquire_time),
        renew_time: kube_micro(record.renew_time),
        lease_transitions: record.lease_transitions.map(|t| t as i32),
        ..previous
    });
    lease
}

/// One API call, built before it is awaited.
enum Call {
    Get,
    Create(KubeLease),
    Replace(KubeLease),
}

impl Transport for KubeTransport {
    async fn call(&self, request: Request) -> Response {
        let name = request.lease.as_str();
        let base = self
            .last_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        let pp = PostParams::default();
        let call = match &request.op {
            Operation::Get => Call::Get,
            Operation::Create(record) => {
                Call::Create(for_write(Some(self.new_object()), name, None, record))
            }
            // kube-rs does not say whether a replace was answered 200 or 201 (the server
            // re-created a deleted lease), so the uid of the object written over is what tells.
            // Without it (this transport last saw the lease deleted, or never read it) the
            // update is not sent: 409 sends the core to read first, and the read gives the uid.
            Operation::Update { .. } if base.as_ref().is_none_or(|b| b.metadata.uid.is_none()) => {
                return Err(ApiError::Conflict);
            }
            Operation::Update {
                resource_version,
                record,
            } => Call::Replace(for_write(
                base,
                name,
                Some(resource_version.as_str()),
                record,
            )),
            Operation::Watch { .. } | Operation::Unwatch => return Err(ApiError::Invalid),
        };
        let replaced_uid = match &call {
            Call::Replace(lease) => lease.metadata.uid.clone(),
            Call::Get | Call::Create(_) => None,
        };
        let call = async {
            match call {
                Call::Get => self.api.get(name).await,
                Call::Create(lease) => self.api.create(&pp, &lease).await,
                Call::Replace(lease) => self.api.replace(name, &pp, &lease).await,
            }
        };
        self.throttle().await;
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(ApiError::Timeout),
            // The API server answers a PUT of a missing lease by creating it, whatever
            // resourceVersion it carried: a new uid means the lease the update was for had been
            // deleted. Said so, the core treats it as the deletion it is instead of as a
            // successful take; the lease created names us, but no term of ours wrote it, so it
            // is waited out.
            Ok(Ok(lease)) if replaced_uid.is_some() && lease.metadata.uid != replaced_uid => {
                self.remember(name, None);
                Err(ApiError::NotFound)
            }
            Ok(Ok(lease)) => {
                let core = to_core(&lease).ok_or(ApiError::Malformed)?;
                self.remember(name, Some(&lease));
                Ok(core)
            }
            Ok(Err(e)) => {
                let error = self.error(e);
                if error == ApiError::NotFound {
                    self.remember(name, None);
                }
                Err(error)
            }
        }
    }

    async fn delete(&self, name: &str, resource_version: &ResourceVersion) -> Result<(), ApiError> {
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: Some(resource_version.as_str().to_owned()),
                uid: None,
            }),
            ..kube::api::DeleteParams::default()
        };
        self.throttle().await;
        match tokio::time::timeout(self.timeout, self.api.delete(name, &params)).await {
            Err(_) => Err(ApiError::Timeout),
            Ok(Ok(_)) => {
                self.remember(name, None);
                Ok(())
            }
            Ok(Err(e)) => Err(self.error(e)),
        }
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, ApiError> {
        let api: Api<KubeLease> = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut params = kube::api::ListParams::default().limit(500);
        if let Some(sel) = label_selector {
            params = params.labels(sel);
        }
        let mut out = Vec::new();
        loop {
            self.throttle().await;
            let page = match tokio::time::timeout(self.timeout, api.list(&params)).await {
                Err(_) => return Err(ApiError::Timeout),
                Ok(Err(e)) => return Err(self.error(e)),
                Ok(Ok(page)) => page,
            };
            for item in &page.items {
                let meta = &item.metadata;
                out.push(ListedLease {
                    namespace: meta.namespace.clone().ok_or(ApiError::Malformed)?,
                    name: meta.name.clone().ok_or(ApiError::Malformed)?,
                    created: meta
                        .creation_timestamp
                        .as_ref()
                        .map(|t| MicroTime::from_unix_micros(t.0.as_microsecond())),
                    labels: meta.labels.clone().unwrap_or_default(),
                    lease: to_core(item).ok_or(ApiError::Malformed)?,
                });
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    async fn watch(
        &self,
        lease: LeaseName,
        resource_version: Option<ResourceVersion>,
        sink: WatchSink,
    ) {
        let name = lease.as_str();
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(290);
        let from = resource_version
            .as_ref()
            .map_or("0", ResourceVersion::as_str);
        let stream = match self.api.watch(&params, from).await {
            Ok(s) => s,
            Err(_) => {
                sink.send(WatchEvent::Failed);
                return;
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(KubeWatchEvent::Added(l) | KubeWatchEvent::Modified(l)) => match to_core(&l) {
                    Some(core) => {
                        self.remember(name, Some(&l));
                        WatchEvent::Changed(core)
                    }
                    None => WatchEvent::Failed,
                },
                Ok(KubeWatchEvent::Deleted(_)) => {
                    self.remember(name, None);
                    WatchEvent::Deleted
                }
                Ok(KubeWatchEvent::Bookmark(b)) => {
                    match ResourceVersion::new(&b.metadata.resource_version) {
                        Ok(rv) => WatchEvent::Bookmark(rv),
                        Err(_) => WatchEvent::Failed,
                    }
                }
                Ok(KubeWatchEvent::Error(status)) if status.code == 410 => WatchEvent::Expired,
                Ok(KubeWatchEvent::Error(_)) | Err(_) => WatchEvent::Failed,
            };
            if !sink.forward(event) {
                return;
            }
        }
        sink.send(WatchEvent::Ended);
    }
}
