//! The HTTP wire: sends the backbone's calls with reqwest over rustls (ring; no OpenSSL), with
//! TLS verified against the cluster's CA, and decodes the answers ([`crate::wire`]).

use crate::kubeconfig::{Cluster, Credentials};
use crate::wire::{self, LeaseObject};
use leasehold_core::{Lease, LeaseRecord, ResourceVersion};
use leasehold_runtime::{
    Answer, Backbone, Call, Cause, CreateMetadata, Failure, ListedLease, WatchFrom, Wire,
    WireEvent, WireStream, connection_cause, user_agent,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
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
    /// Per-request timeout ([`leasehold_core::Timing::request_timeout`]).
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

/// The raw-HTTP transport: the shared backbone over [`HttpWire`].
pub type HttpTransport = Backbone<HttpWire>;

/// A transport for `config` (no request is sent yet).
pub fn connect(config: &HttpConfig) -> Result<HttpTransport, TransportError> {
    let transport = Backbone::new(HttpWire::new(config)?, config.request_timeout);
    match config.rate_limit {
        None => Ok(transport),
        Some((qps, burst)) => transport
            .with_rate_limit(qps, burst)
            .map_err(|_| TransportError::RateLimit),
    }
}

/// Sends lease calls over HTTPS and decodes the answers.
pub struct HttpWire {
    client: reqwest::Client,
    server: String,
    address: String,
    namespace: String,
    leases: String,
    token: Token,
}

impl fmt::Debug for HttpWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpWire")
            .field("leases", &self.leases)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl HttpWire {
    /// A wire for `config`.
    pub fn new(config: &HttpConfig) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&config.cluster)?)
            .user_agent(user_agent(Self::NAME))
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
        let server = config.cluster.server.trim_end_matches('/').to_owned();
        Ok(Self {
            client,
            address: address(&server),
            leases: format!(
                "{server}/apis/coordination.k8s.io/v1/namespaces/{}/leases",
                config.namespace
            ),
            namespace: config.namespace.clone(),
            server,
            token,
        })
    }

    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.current() {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    fn cause(&self, e: &reqwest::Error) -> Cause {
        connection_cause(e, &self.address)
    }

    /// Sends `builder` and returns the body of a 2xx answer.
    async fn exchange(&self, builder: reqwest::RequestBuilder) -> Result<bytes::Bytes, Failure> {
        let response = self
            .authorized(builder)
            .send()
            .await
            .map_err(|e| Failure::Cause(self.cause(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Cause(self.cause(&e)))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(Failure::Refused(wire::server_status(
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                &body,
                retry_after.as_deref(),
            )))
        }
    }
}

/// `host:port` of a server URL, for messages.
fn address(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else if server.starts_with("http://") {
        format!("{host}:80")
    } else {
        format!("{host}:443")
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

fn json(builder: reqwest::RequestBuilder, body: &impl serde::Serialize) -> reqwest::RequestBuilder {
    // Serialising these plain structs cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    builder
        .header("content-type", "application/json")
        .body(bytes)
}

fn malformed(e: impl fmt::Display) -> Failure {
    Failure::Cause(Cause::Malformed(e.to_string()))
}

impl Wire for HttpWire {
    type Object = LeaseObject;
    type Stream = HttpWatch;

    const NAME: &'static str = "http";

    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn blank(&self, metadata: &CreateMetadata) -> LeaseObject {
        LeaseObject::with_metadata(metadata)
    }

    fn encode(
        &self,
        base: LeaseObject,
        name: &str,
        resource_version: Option<&ResourceVersion>,
        record: &LeaseRecord,
    ) -> LeaseObject {
        base.for_write(name, resource_version.map(ResourceVersion::as_str), record)
    }

    fn uid(object: &LeaseObject) -> Option<&str> {
        object.metadata.other.get("uid").and_then(|u| u.as_str())
    }

    fn name(object: &LeaseObject) -> Option<&str> {
        object.metadata.name.as_deref()
    }

    fn decode(object: &LeaseObject) -> Result<Lease, String> {
        object.to_core().map_err(|e| e.to_string())
    }

    fn decode_listed(object: &LeaseObject) -> Result<ListedLease, String> {
        object.to_listed().map_err(|e| e.to_string())
    }

    async fn send(&self, call: Call<'_, LeaseObject>) -> Result<Answer<LeaseObject>, Failure> {
        let item = |name: &str| format!("{}/{name}", self.leases);
        match call {
            Call::Get { name } => {
                let body = self.exchange(self.client.get(item(name))).await?;
                Ok(Answer::Object(
                    wire::decode_lease(&body).map_err(malformed)?,
                ))
            }
            Call::Create { object } => {
                let body = self
                    .exchange(json(self.client.post(&self.leases), &object))
                    .await?;
                Ok(Answer::Object(
                    wire::decode_lease(&body).map_err(malformed)?,
                ))
            }
            Call::Replace { name, object } => {
                let body = self
                    .exchange(json(self.client.put(item(name)), &object))
                    .await?;
                Ok(Answer::Object(
                    wire::decode_lease(&body).map_err(malformed)?,
                ))
            }
            Call::Delete {
                name,
                resource_version,
            } => {
                let options = serde_json::json!({
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "preconditions": {"resourceVersion": resource_version.as_str()},
                });
                self.exchange(json(self.client.delete(item(name)), &options))
                    .await?;
                Ok(Answer::Deleted)
            }
            Call::List(page) => {
                let base = match page.namespace {
                    Some(ns) => format!(
                        "{}/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                        self.server
                    ),
                    None => format!("{}/apis/coordination.k8s.io/v1/leases", self.server),
                };
                let mut query = vec![format!("limit={}", page.limit)];
                if let Some(selector) = page.label_selector {
                    query.push(format!("labelSelector={}", encode(selector)));
                }
                if let Some(token) = page.continue_token {
                    query.push(format!("continue={}", encode(token)));
                }
                let url = format!("{base}?{}", query.join("&"));
                let body = self.exchange(self.client.get(url)).await?;
                let list: wire::LeaseList = serde_json::from_slice(&body).map_err(malformed)?;
                Ok(Answer::Page {
                    items: list.items,
                    continue_token: list
                        .metadata
                        .other
                        .get("continue")
                        .and_then(|c| c.as_str())
                        .map(str::to_owned),
                    resource_version: list.metadata.resource_version,
                })
            }
        }
    }

    async fn watch(&self, name: Option<&str>, from: WatchFrom<'_>) -> Result<HttpWatch, Failure> {
        let mut url = format!(
            "{}?watch=1&allowWatchBookmarks=true&timeoutSeconds=290",
            self.leases
        );
        if let Some(name) = name {
            url.push_str(&format!("&fieldSelector=metadata.name%3D{}", encode(name)));
        }
        match from {
            WatchFrom::Now => {}
            WatchFrom::After(rv) => {
                url.push_str(&format!("&resourceVersion={}", encode(rv.as_str())));
            }
            WatchFrom::List => {
                url.push_str("&sendInitialEvents=true&resourceVersionMatch=NotOlderThan");
            }
        }
        let response = self
            .authorized(self.client.get(&url))
            .send()
            .await
            .map_err(|e| Failure::Cause(self.cause(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(Failure::Refused(wire::server_status(
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                &body,
                None,
            )));
        }
        Ok(HttpWatch {
            response,
            pending: Vec::new(),
        })
    }
}

/// An open watch: newline-delimited JSON events.
pub struct HttpWatch {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl WireStream<LeaseObject> for HttpWatch {
    async fn next(&mut self) -> Option<WireEvent<LeaseObject>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(wire::decode_watch_line(&line).unwrap_or(WireEvent::Broken));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.pending.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(_) => return Some(WireEvent::Broken),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_of_a_server_url_has_a_port() {
        assert_eq!(address("https://10.0.0.1:6443"), "10.0.0.1:6443");
        assert_eq!(
            address("https://kubernetes.default.svc"),
            "kubernetes.default.svc:443"
        );
        assert_eq!(address("http://127.0.0.1"), "127.0.0.1:80");
        assert_eq!(address("https://[::1]:6443/prefix"), "[::1]:6443");
        assert_eq!(address("https://[::1]"), "[::1]:443");
    }
}
