//! The kube-rs transport for leasehold: `kube::Api<Lease>` with `k8s-openapi`'s types, so
//! everything kube-rs supports (exec credential plugins, OIDC, client certificates, its
//! kubeconfig inference) works. It is a [`leasehold_runtime::Wire`] under the shared backbone:
//! it encodes, sends and decodes, and holds no policy.
#![forbid(unsafe_code)]

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime as KubeMicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams, WatchEvent as KubeWatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use leasehold_core::{
    Holder, Lease, LeaseRecord, MicroTime, NEXT_HOLDER_ANNOTATION, ResourceVersion,
};
use leasehold_runtime::{
    Answer, Backbone, Call, Cause, CreateMetadata, Failure, INITIAL_EVENTS_END, ListedLease,
    ServerStatus, WatchFrom, Wire, WireEvent, WireStream, connection_cause, user_agent,
};
use std::path::Path;

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

/// A kube client, with the namespace to use and the server's address.
#[derive(Clone)]
pub struct Connected {
    /// The client.
    pub client: kube::Client,
    /// The kubeconfig context's namespace (or the pod's, in-cluster).
    pub namespace: String,
    /// The API server's `host:port`, for messages about the connection.
    pub address: String,
}

/// A kube client and the namespace to use: from `kubeconfig` when given (with `context`), else
/// kube-rs's inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Connected, ClientError> {
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
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&user_agent(KubeWire::NAME))
            .map_err(|e| ClientError::Client(kube::Error::HttpError(e.into())))?,
    ));
    let address = format!(
        "{}:{}",
        config.cluster_url.host().unwrap_or_default(),
        config.cluster_url.port_u16().unwrap_or(
            if config.cluster_url.scheme_str() == Some("http") {
                80
            } else {
                443
            }
        )
    );
    Ok(Connected {
        namespace: config.default_namespace.clone(),
        client: kube::Client::try_from(config).map_err(ClientError::Client)?,
        address,
    })
}

/// The kube-rs transport: the shared backbone over [`KubeWire`].
pub type KubeTransport = Backbone<KubeWire>;

/// A transport for leases in `namespace`, each request bounded by `request_timeout`
/// ([`leasehold_core::Timing::request_timeout`]).
pub fn transport(
    connected: &Connected,
    namespace: &str,
    request_timeout: std::time::Duration,
) -> KubeTransport {
    Backbone::new(KubeWire::new(connected, namespace), request_timeout)
}

/// Sends lease calls through kube-rs.
pub struct KubeWire {
    client: kube::Client,
    api: Api<KubeLease>,
    namespace: String,
    address: String,
}

impl KubeWire {
    /// A wire for leases in `namespace`.
    pub fn new(connected: &Connected, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(connected.client.clone(), namespace),
            client: connected.client.clone(),
            namespace: namespace.to_owned(),
            address: connected.address.clone(),
        }
    }
}

/// The server's refusal, or the cause of a failed call.
fn failure(e: kube::Error, address: &str) -> Failure {
    match e {
        kube::Error::Api(status) => {
            let details = status.details.as_ref();
            Failure::Refused(
                ServerStatus::new(status.code, status.reason.as_str(), status.message.as_str())
                    .with_causes(
                        details
                            .into_iter()
                            .flat_map(|d| &d.causes)
                            .map(|c| (c.field.clone(), c.message.clone())),
                    )
                    // kube-rs reads no Retry-After header, and fills an absent
                    // `retryAfterSeconds` with 0.
                    .with_retry_after(
                        None,
                        details
                            .map(|d| u64::from(d.retry_after_seconds))
                            .filter(|&s| s > 0),
                    ),
            )
        }
        kube::Error::SerdeError(e) => Failure::Cause(Cause::Malformed(e.to_string())),
        other => Failure::Cause(connection_cause(&other, address)),
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
            next_holder: Holder::from_wire(
                lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(NEXT_HOLDER_ANNOTATION))
                    .map(String::as_str),
            ),
        },
    })
}

/// Sets the reservation annotation as `next` says: removed for none, written for a name, and
/// left as read for a name too long to have been kept.
fn set_next_holder(lease: &mut KubeLease, next: &Holder) {
    match next {
        Holder::None => {
            if let Some(annotations) = lease.metadata.annotations.as_mut() {
                annotations.remove(NEXT_HOLDER_ANNOTATION);
                if annotations.is_empty() {
                    lease.metadata.annotations = None;
                }
            }
        }
        Holder::Named(id) => {
            lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(NEXT_HOLDER_ANNOTATION.to_owned(), id.as_str().to_owned());
        }
        _ => {}
    }
}

fn for_write(
    base: KubeLease,
    name: &str,
    resource_version: Option<&str>,
    record: &LeaseRecord,
) -> KubeLease {
    let mut lease = base;
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
    set_next_holder(&mut lease, &record.next_holder);
    lease
}

impl Wire for KubeWire {
    type Object = KubeLease;
    type Stream = KubeWatch;

    const NAME: &'static str = "kube";

    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn blank(&self, metadata: &CreateMetadata) -> KubeLease {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut lease = KubeLease::default();
        if !metadata.labels.is_empty() {
            lease.metadata.labels = Some(metadata.labels.clone());
        }
        if let Some(owner) = &metadata.owner {
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

    fn encode(
        &self,
        base: KubeLease,
        name: &str,
        resource_version: Option<&ResourceVersion>,
        record: &LeaseRecord,
    ) -> KubeLease {
        for_write(
            base,
            name,
            resource_version.map(ResourceVersion::as_str),
            record,
        )
    }

    fn uid(object: &KubeLease) -> Option<&str> {
        object.metadata.uid.as_deref()
    }

    fn name(object: &KubeLease) -> Option<&str> {
        object.metadata.name.as_deref()
    }

    fn decode(object: &KubeLease) -> Result<Lease, String> {
        to_core(object).ok_or_else(|| "a lease without a usable resourceVersion".to_owned())
    }

    fn decode_listed(item: &KubeLease) -> Result<ListedLease, String> {
        let meta = &item.metadata;
        Ok(ListedLease {
            namespace: meta.namespace.clone().ok_or("metadata.namespace missing")?,
            name: meta.name.clone().ok_or("metadata.name missing")?,
            created: meta
                .creation_timestamp
                .as_ref()
                .map(|t| MicroTime::from_unix_micros(t.0.as_microsecond())),
            labels: meta.labels.clone().unwrap_or_default(),
            lease: Self::decode(item)?,
        })
    }

    async fn send(&self, call: Call<'_, KubeLease>) -> Result<Answer<KubeLease>, Failure> {
        let pp = PostParams::default();
        let answer = match call {
            Call::Get { name } => self.api.get(name).await.map(Answer::Object),
            Call::Create { object } => self.api.create(&pp, &object).await.map(Answer::Object),
            Call::Replace { name, object } => self
                .api
                .replace(name, &pp, &object)
                .await
                .map(Answer::Object),
            Call::Delete {
                name,
                resource_version,
            } => {
                let params = kube::api::DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        resource_version: Some(resource_version.as_str().to_owned()),
                        uid: None,
                    }),
                    ..kube::api::DeleteParams::default()
                };
                self.api
                    .delete(name, &params)
                    .await
                    .map(|_| Answer::Deleted)
            }
            Call::List(page) => {
                let api: Api<KubeLease> = match page.namespace {
                    Some(ns) => Api::namespaced(self.client.clone(), ns),
                    None => Api::all(self.client.clone()),
                };
                let mut params = kube::api::ListParams::default().limit(page.limit);
                if let Some(selector) = page.label_selector {
                    params = params.labels(selector);
                }
                if let Some(token) = page.continue_token {
                    params = params.continue_token(token);
                }
                api.list(&params).await.map(|page| Answer::Page {
                    items: page.items,
                    continue_token: page.metadata.continue_,
                    resource_version: page.metadata.resource_version,
                })
            }
        };
        answer.map_err(|e| failure(e, &self.address))
    }

    async fn watch(&self, name: Option<&str>, from: WatchFrom<'_>) -> Result<KubeWatch, Failure> {
        // kube-rs asks for bookmarks by default.
        let mut params = WatchParams::default().timeout(290);
        if let Some(name) = name {
            params = params.fields(&format!("metadata.name={name}"));
        }
        let from = match from {
            WatchFrom::Now => "0",
            WatchFrom::After(rv) => rv.as_str(),
            // No version: the initial events are of a consistent read, as a LIST's are.
            WatchFrom::List => {
                params = params.initial_events();
                ""
            }
        };
        let stream = self
            .api
            .watch(&params, from)
            .await
            .map_err(|e| failure(e, &self.address))?;
        Ok(KubeWatch(stream.boxed()))
    }
}

/// An open watch through kube-rs.
pub struct KubeWatch(BoxStream<'static, Result<KubeWatchEvent<KubeLease>, kube::Error>>);

impl WireStream<KubeLease> for KubeWatch {
    async fn next(&mut self) -> Option<WireEvent<KubeLease>> {
        let event = match self.0.next().await? {
            Ok(KubeWatchEvent::Added(l) | KubeWatchEvent::Modified(l)) => WireEvent::Changed(l),
            Ok(KubeWatchEvent::Deleted(l)) => WireEvent::Deleted(l),
            Ok(KubeWatchEvent::Bookmark(b)) => {
                let end = b.metadata.annotations.get(INITIAL_EVENTS_END);
                match ResourceVersion::new(&b.metadata.resource_version) {
                    Ok(rv) if end.is_some_and(|v| v == "true") => WireEvent::InitialEventsEnd(rv),
                    Ok(rv) => WireEvent::Bookmark(rv),
                    Err(_) => WireEvent::Broken,
                }
            }
            Ok(KubeWatchEvent::Error(status)) if status.code == 410 => WireEvent::Gone,
            Ok(KubeWatchEvent::Error(_)) | Err(_) => WireEvent::Broken,
        };
        Some(event)
    }
}
