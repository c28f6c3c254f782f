//! The HTTP transport: performs the core's requests with reqwest over rustls (ring; no
//! OpenSSL), with TLS verified against the cluster's CA and client-go's per-request timeout.

use crate::kubeconfig::{Cluster, Credentials};
use crate::wire::{self, LeaseObject, Status};
use leasehold_core::{
    ApiError, LeaseName, Operation, Request, ResourceVersion, Response, Verb, WatchEvent,
};
use leasehold_runtime::{CreateMetadata, ListedLease, Transport, WatchSink};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where and how to reach the API server.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The resolved cluster: server, CA, credentials (never logged).
    pub cluster: Cluster,
    /// The namespace of the leases.
    pub namespace: String,
    /// Per-request timeout; see [`leasehold_runtime::request_timeout`].
    pub request_timeout: Duration,
    /// Client-side rate limit: requests per second and burst (client-go: 5 and 10). `None`:
    /// unlimited.
    pub rate_limit: Option<(f64, u32)>,
}

/// Why the transport could not be built.
#[derive(Debug)]
pub enum TransportError {
    /// The CA is not a PEM certificate.
    Ca(String),
    /// The client certificate or key is not usable.
    ClientCertificate(String),
    /// The rate limit is not positive.
    RateLimit,
    /// The HTTP client could not be built.
    Client(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ca(e) => write!(
                f,
                "certificate-authority: not a PEM certificate ({e}): give the cluster's CA"
            ),
            Self::ClientCertificate(e) => write!(f, "client-certificate/client-key: {e}"),
            Self::RateLimit => write!(f, "qps and burst must be greater than zero"),
            Self::Client(e) => write!(f, "cannot build the HTTP client: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// The bearer token, re-read from its file whenever the file changes (projected service
/// account tokens rotate).
enum Token {
    None,
    Static(String),
    File {
        path: PathBuf,
        cached: Mutex<(Option<SystemTime>, String)>,
    },
}

impl Token {
    fn current(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Static(t) => Some(t.clone()),
            Self::File { path, cached } => {
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let mut cached = cached
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if cached.0.is_none() || modified != cached.0 {
                    if let Ok(text) = std::fs::read_to_string(path) {
                        *cached = (modified, text.trim().to_owned());
                    }
                }
                Some(cached.1.clone()).filter(|t| !t.is_empty())
            }
        }
    }
}

/// Accepts any server certificate (kubeconfig `insecure-skip-tls-verify: true`), still checking
/// the handshake's signatures.
#[derive(Debug)]
struct SkipServerVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(cluster: &Cluster) -> Result<rustls::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Client(e.to_string()))?;
    let builder = if cluster.insecure_skip_tls_verify {
        tracing::warn!(
            source = %cluster.source,
            "insecure-skip-tls-verify is set: the API server's certificate is not verified, so anyone on the path can impersonate it"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipServerVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &cluster.ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TransportError::Ca(e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| TransportError::Ca(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(TransportError::Ca("no certificate found".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    match &cluster.credentials {
        Credentials::ClientCertificate { cert_pem, key_pem } => {
            let certs = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TransportError::ClientCertificate(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| TransportError::ClientCertificate(e.to_string()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TransportError::ClientCertificate(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The last error answer, with the server's own words, for logs and RBAC advice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The verb that failed.
    pub verb: Verb,
    /// The HTTP status.
    pub status: u16,
    /// The server's `Status`, when it sent one.
    pub detail: Option<Status>,
}

/// Performs lease requests over HTTPS.
pub struct HttpTransport {
    client: reqwest::Client,
    server: String,
    leases: String,
    token: Token,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    timeout: Duration,
    /// The last object read or written per lease, so a write echoes its metadata.
    last_read: Mutex<HashMap<String, LeaseObject>>,
    last_failure: Mutex<Option<Failure>>,
    /// Labels and owner for the leases this transport creates.
    create_metadata: CreateMetadata,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("leases", &self.leases)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport for `config`.
    pub fn new(config: &HttpConfig) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&config.cluster)?)
            .build()
            .map_err(|e| TransportError::Client(e.to_string()))?;
        let token = match &config.cluster.credentials {
            Credentials::Token(t) => Token::Static(t.clone()),
            Credentials::TokenFile(path) => Token::File {
                path: path.clone(),
                cached: Mutex::new((None, String::new())),
            },
            Credentials::None | Credentials::ClientCertificate { .. } => Token::None,
        };
        let limiter = match config.rate_limit {
            None => None,
            Some((qps, burst)) => {
                let burst = NonZeroU32::new(burst).ok_or(TransportError::RateLimit)?;
                if !(qps.is_finite() && qps > 0.0) {
                    return Err(TransportError::RateLimit);
                }
                let quota = governor::Quota::with_period(Duration::from_secs_f64(1.0 / qps))
                    .ok_or(TransportError::RateLimit)?;
                Some(governor::RateLimiter::direct(quota.allow_burst(burst)))
            }
        };
        Ok(Self {
            client,
            server: config.cluster.server.trim_end_matches('/').to_owned(),
            leases: format!(
                "{}/apis/coordination.k8s.io/v1/namespaces/{}/leases",
                config.cluster.server.trim_end_matches('/'),
                config.namespace
            ),
            token,
            limiter,
            timeout: config.request_timeout,
            last_read: Mutex::new(HashMap::new()),
            last_failure: Mutex::new(None),
            create_metadata: CreateMetadata::default(),
        })
    }

    /// Gives every lease this transport creates these labels and owner.
    pub fn with_create_metadata(mut self, metadata: CreateMetadata) -> Self {
        self.create_metadata = metadata;
        self
    }

    fn new_object(&self) -> LeaseObject {
        let m = &self.create_metadata;
        let mut object = LeaseObject::default();
        if !m.labels.is_empty() {
            let labels = m
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            object
                .metadata
                .other
                .insert("labels".into(), serde_json::Value::Object(labels));
        }
        if let Some(owner) = &m.owner {
            object.metadata.other.insert(
                "ownerReferences".into(),
                serde_json::json!([{
                    "apiVersion": owner.api_version,
                    "kind": owner.kind,
                    "name": owner.name,
                    "uid": owner.uid,
                }]),
            );
        }
        object
    }

    /// Sends one request (authorized, within the timeout) and returns the status and body of a
    /// 2xx answer, or the classified error.
    async fn exchange(
        &self,
        verb: Verb,
        builder: reqwest::RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), ApiError> {
        let response = self
            .authorized(builder)
            .await
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| transport_error(&e))?;
        if (200..300).contains(&status) {
            Ok((status, body))
        } else {
            Err(self.refused(verb, status, &body, retry_after.as_deref()))
        }
    }

    /// Classifies an error answer and keeps it, with the server's words, as the last failure.
    fn refused(&self, verb: Verb, status: u16, body: &[u8], retry_after: Option<&str>) -> ApiError {
        let detail = wire::decode_status(body);
        let error = wire::classify(status, detail.as_ref(), retry_after);
        *self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Failure {
            verb,
            status,
            detail,
        });
        error
    }

    /// The last error answer, with the server's message.
    pub fn last_failure(&self) -> Option<Failure> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits for the rate limiter, then adds the current token.
    async fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        match self.token.current() {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    fn remember(&self, name: &str, object: Option<LeaseObject>) {
        let mut cache = self
            .last_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match object {
            Some(o) => cache.insert(name.to_owned(), o),
            None => cache.remove(name),
        };
    }

    fn base_object(&self, name: &str) -> LeaseObject {
        self.last_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn listed(item: &LeaseObject) -> Option<ListedLease> {
    let meta = &item.metadata;
    Some(ListedLease {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        created: meta
            .other
            .get("creationTimestamp")
            .and_then(|t| t.as_str())
            .and_then(|t| wire::parse_micro_time("metadata.creationTimestamp", t).ok()),
        labels: meta
            .other
            .get("labels")
            .and_then(|l| l.as_object())
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        lease: item.to_core().ok()?,
    })
}

fn json(builder: reqwest::RequestBuilder, body: &LeaseObject) -> reqwest::RequestBuilder {
    // Serialising these plain structs cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    builder
        .header("content-type", "application/json")
        .body(bytes)
}

fn transport_error(e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout
    } else {
        ApiError::Transport
    }
}

impl Transport for HttpTransport {
    async fn call(&self, request: Request) -> Response {
        let name = request.lease.as_str();
        let item = format!("{}/{name}", self.leases);
        let verb = request.op.verb();
        let builder = match &request.op {
            Operation::Get => self.client.get(&item),
            Operation::Create(record) => {
                let body = self.new_object().for_write(name, None, record);
                json(self.client.post(&self.leases), &body)
            }
            Operation::Update {
                resource_version,
                record,
            } => {
                let body =
                    self.base_object(name)
                        .for_write(name, Some(resource_version.as_str()), record);
                json(self.client.put(&item), &body)
            }
            Operation::Watch { .. } | Operation::Unwatch => return Err(ApiError::Invalid),
        };
        match self.exchange(verb, builder).await {
            // The API server answers a PUT of a missing lease by creating it (201), whatever
            // resourceVersion it carried: the lease the update was for had been deleted. Said
            // so, the core treats it as the deletion it is instead of as a successful take;
            // the lease created names us, but no term of ours wrote it, so it is waited out.
            Ok((201, _)) if verb == Verb::Update => {
                self.remember(name, None);
                Err(ApiError::NotFound)
            }
            Ok((_, body)) => {
                let object = wire::decode_lease(&body).map_err(|_| ApiError::Malformed)?;
                let lease = object.to_core().map_err(|_| ApiError::Malformed)?;
                self.remember(name, Some(object));
                Ok(lease)
            }
            Err(error) => {
                if error == ApiError::NotFound {
                    self.remember(name, None);
                }
                Err(error)
            }
        }
    }

    async fn delete(&self, name: &str, resource_version: &ResourceVersion) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": resource_version.as_str()},
        });
        let builder = self
            .client
            .delete(format!("{}/{name}", self.leases))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.exchange(Verb::Delete, builder).await?;
        self.remember(name, None);
        Ok(())
    }

    async fn list(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<ListedLease>, ApiError> {
        let base = match namespace {
            Some(ns) => format!(
                "{}/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                self.server
            ),
            None => format!("{}/apis/coordination.k8s.io/v1/leases", self.server),
        };
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![("limit", "500")];
            if let Some(sel) = label_selector {
                query.push(("labelSelector", sel));
            }
            if let Some(token) = &next {
                query.push(("continue", token));
            }
            let query = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let request = self
                .authorized(self.client.get(format!("{base}?{query}")))
                .await;
            let response = request
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(|e| transport_error(&e))?;
            if !(200..300).contains(&status) {
                let detail = wire::decode_status(&body);
                let error = wire::classify(status, detail.as_ref(), None);
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Failure {
                    verb: Verb::List,
                    status,
                    detail,
                });
                return Err(error);
            }
            let list: wire::LeaseList =
                serde_json::from_slice(&body).map_err(|_| ApiError::Malformed)?;
            for item in &list.items {
                out.push(listed(item).ok_or(ApiError::Malformed)?);
            }
            next = list
                .metadata
                .other
                .get("continue")
                .and_then(|c| c.as_str())
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            if next.is_none() {
                return Ok(out);
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
        let mut url = format!(
            "{}?watch=1&fieldSelector=metadata.name%3D{name}&allowWatchBookmarks=true&timeoutSeconds=290",
            self.leases
        );
        if let Some(rv) = &resource_version {
            url.push_str(&format!("&resourceVersion={}", rv.as_str()));
        }
        let response = match self.authorized(self.client.get(&url)).await.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status().as_u16() == 410 => {
                sink.send(WatchEvent::Expired);
                return;
            }
            _ => {
                sink.send(WatchEvent::Failed);
                return;
            }
        };
        let mut response = response;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    pending.extend_from_slice(&chunk);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let Ok(decoded) = wire::decode_watch_line(&line) else {
                            sink.send(WatchEvent::Failed);
                            return;
                        };
                        match (&decoded.event, decoded.object) {
                            (WatchEvent::Deleted, _) => self.remember(name, None),
                            (WatchEvent::Changed(_), Some(object)) => {
                                self.remember(name, Some(object))
                            }
                            _ => {}
                        }
                        if !sink.forward(decoded.event) {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    sink.send(WatchEvent::Ended);
                    return;
                }
                Err(_) => {
                    sink.send(WatchEvent::Failed);
                    return;
                }
            }
        }
    }
}
