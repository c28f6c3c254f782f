//! A failed request as the user needs it: what was asked, the core's classification, the API
//! server's own `Status`, and the cause when no answer came (TLS, a refused connection, a
//! timeout). Each request carries its own, so a message can never belong to another request.

use leasehold_core::{ApiError, Verb};
use std::fmt;
use std::time::Duration;

/// Why one request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestError {
    /// The verb.
    pub verb: Verb,
    /// What it was for: `leases/NAME`, or `leases` for a list.
    pub target: String,
    /// The classification the core decides on.
    pub kind: ApiError,
    /// The API server's `Status`, when it answered with one (boxed: a failure travels through
    /// every `Result` of the request path).
    pub status: Option<Box<ServerStatus>>,
    /// Why there was no answer, or why it could not be used.
    pub cause: Option<Cause>,
}

/// The API server's `Status` object: its own words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStatus {
    /// The HTTP status.
    pub code: u16,
    /// `Forbidden`, `Conflict`, `NotFound`, `TooManyRequests`, …
    pub reason: String,
    /// The human message.
    pub message: String,
    /// Field errors (`details.causes`): field and message.
    pub causes: Vec<(String, String)>,
    /// The server's advice: the `Retry-After` header, else `details.retryAfterSeconds`.
    pub retry_after: Option<Duration>,
}

impl ServerStatus {
    /// A `Status` with the server's `code`, `reason` and `message`.
    pub fn new(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// With the field errors `details.causes`, as (field, message).
    pub fn with_causes(mut self, causes: impl IntoIterator<Item = (String, String)>) -> Self {
        self.causes = causes.into_iter().collect();
        self
    }

    /// With the server's advice to wait, by the one Retry-After rule
    /// ([`leasehold_core::api::retry_after`]): the `Retry-After` header, else
    /// `details.retryAfterSeconds`.
    pub fn with_retry_after(mut self, header: Option<&str>, seconds: Option<u64>) -> Self {
        self.retry_after = leasehold_core::api::retry_after(header, seconds)
            .map(|d| Duration::from_secs(d.as_secs()));
        self
    }
}

/// Why no usable answer came.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// TLS: the server's certificate is not signed by the CA given for the cluster.
    UnknownCa,
    /// TLS: the server's certificate is not valid for the name in the server URL.
    HostnameMismatch,
    /// TLS: another handshake failure, in rustls's words.
    Tls(String),
    /// Nothing listens at `address`.
    Refused {
        /// `host:port`.
        address: String,
    },
    /// No answer within the per-request timeout.
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The connection failed another way (DNS, reset, …), in the client library's words.
    Connection(String),
    /// An answer came but could not be decoded.
    Malformed(String),
    /// An update was not sent: the transport holds no copy of the lease read since it was
    /// last seen deleted, so it could not tell a re-creation from a write. The core is told
    /// `Conflict`, which makes it read first.
    NotRead,
    /// The core asked `call` for a watch: a driver's mistake, refused as invalid.
    NotACall,
    /// An update was answered by creating the lease anew: the lease it was for had been
    /// deleted. The core is told `NotFound`, the deletion it is.
    Recreated,
}

impl RequestError {
    /// An answer from the API server that refused the request.
    pub fn refused(verb: Verb, target: impl Into<String>, status: ServerStatus) -> Self {
        let kind = ApiError::from_status(
            status.code,
            &status.reason,
            status
                .retry_after
                .map(|d| leasehold_core::Duration::from_secs(d.as_secs())),
        );
        Self {
            verb,
            target: target.into(),
            kind,
            status: Some(Box::new(status)),
            cause: None,
        }
    }

    /// No usable answer, for `cause`.
    pub fn failed(verb: Verb, target: impl Into<String>, cause: Cause) -> Self {
        let kind = match cause {
            Cause::Timeout { .. } => ApiError::Timeout,
            Cause::Malformed(_) => ApiError::Malformed,
            Cause::NotRead => ApiError::Conflict,
            Cause::Recreated => ApiError::NotFound,
            Cause::NotACall => ApiError::Invalid,
            _ => ApiError::Transport,
        };
        Self {
            verb,
            target: target.into(),
            kind,
            status: None,
            cause: Some(cause),
        }
    }

    /// The API server's message, when it sent one.
    pub fn server_message(&self) -> Option<&str> {
        self.status
            .as_ref()
            .map(|s| s.message.as_str())
            .filter(|m| !m.is_empty())
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.verb, self.target)?;
        match (&self.status, &self.cause) {
            (Some(s), _) => {
                write!(f, "{} {}", s.code, s.reason)?;
                if !s.message.is_empty() {
                    write!(f, ": {}", s.message)?;
                }
                // The API server's message usually lists the causes already.
                for (field, message) in &s.causes {
                    let cause = format!("{field}: {message}");
                    if !s.message.contains(&cause) {
                        write!(f, "; {cause}")?;
                    }
                }
                if let Some(wait) = s.retry_after {
                    write!(f, " (retry after {} s)", wait.as_secs())?;
                }
                Ok(())
            }
            (None, Some(cause)) => write!(f, "{cause}"),
            (None, None) => write!(f, "{:?}", self.kind),
        }
    }
}

impl std::error::Error for RequestError {}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCa => f.write_str(
                "TLS: the API server's certificate is not signed by the cluster's CA \
                 (unknown issuer): check certificate-authority(-data) in the kubeconfig",
            ),
            Self::HostnameMismatch => f.write_str(
                "TLS: the API server's certificate is not valid for the server's host name: \
                 check the server URL in the kubeconfig (or its tls-server-name)",
            ),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Refused { address } => write!(
                f,
                "connection refused at {address}: nothing listens there; check the server URL \
                 and that the API server is up"
            ),
            Self::Timeout { after } => {
                write!(f, "timeout: no answer within {} ms", after.as_millis())
            }
            Self::Connection(e) => write!(f, "cannot connect: {e}"),
            Self::Malformed(e) => write!(f, "the answer could not be decoded: {e}"),
            Self::NotRead => f.write_str("not sent: the lease must be read first"),
            Self::NotACall => f.write_str("a watch is not a call: the driver opens it as a stream"),
            Self::Recreated => f.write_str(
                "the lease had been deleted: the API server created it anew from the update",
            ),
        }
    }
}

/// The cause of a client library's connection error, found by walking its chain for the
/// rustls or I/O error underneath; `address` is the server's `host:port` for the message.
pub fn connection_cause(error: &(dyn std::error::Error + 'static), address: &str) -> Cause {
    underneath(error, address).unwrap_or_else(|| Cause::Connection(chain(error)))
}

fn underneath(error: &(dyn std::error::Error + 'static), address: &str) -> Option<Cause> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls_cause(tls));
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return Some(Cause::Refused {
                address: address.to_owned(),
            });
        }
        // An I/O error's `source()` skips the error it wraps (tokio-rustls wraps rustls's in
        // one, and clients wrap that in another): look inside it.
        if let Some(cause) = io.get_ref().and_then(|inner| underneath(inner, address)) {
            return Some(cause);
        }
    }
    error.source().and_then(|next| underneath(next, address))
}

fn tls_cause(error: &rustls::Error) -> Cause {
    use rustls::CertificateError;
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => Cause::UnknownCa,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Cause::HostnameMismatch,
        // A CA of the same name as the one that signed the certificate, but another key: not
        // signed by the CA given, all the same (two clusters' generated CAs, say).
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => Cause::UnknownCa,
        other => Cause::Tls(other.to_string()),
    }
}

/// An error and its sources, `: `-joined, without repeats (libraries often repeat their
/// source's text in their own).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// The `User-Agent` every transport sends, so audit logs tell leasehold's requests apart:
/// `leasehold/VERSION (TRANSPORT)`.
pub fn user_agent(transport: &str) -> String {
    format!("leasehold/{} ({transport})", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_servers_words_and_classifies_them() {
        let e = RequestError::refused(
            Verb::Update,
            "leases/a",
            ServerStatus {
                code: 409,
                reason: "Conflict".into(),
                message: "the object has been modified".into(),
                ..ServerStatus::default()
            },
        );
        assert_eq!(e.kind, ApiError::Conflict);
        assert_eq!(
            e.to_string(),
            "update leases/a: 409 Conflict: the object has been modified"
        );
        let throttled = RequestError::refused(
            Verb::Get,
            "leases/a",
            ServerStatus {
                code: 429,
                reason: "TooManyRequests".into(),
                retry_after: Some(Duration::from_secs(3)),
                ..ServerStatus::default()
            },
        );
        assert_eq!(
            throttled.kind,
            ApiError::TooManyRequests {
                retry_after: Some(leasehold_core::Duration::from_secs(3))
            }
        );
        assert!(throttled.to_string().ends_with("(retry after 3 s)"));
    }

    #[test]
    fn field_causes_are_told_once() {
        let status = |message: &str| ServerStatus {
            code: 422,
            reason: "Invalid".into(),
            message: message.into(),
            causes: vec![(
                "spec.leaseDurationSeconds".into(),
                "must be positive".into(),
            )],
            ..ServerStatus::default()
        };
        let listed = RequestError::refused(
            Verb::Create,
            "leases/a",
            status("x is invalid: spec.leaseDurationSeconds: must be positive"),
        );
        assert_eq!(
            listed.to_string(),
            "create leases/a: 422 Invalid: x is invalid: spec.leaseDurationSeconds: must be positive"
        );
        let terse = RequestError::refused(Verb::Create, "leases/a", status("x is invalid"));
        assert_eq!(
            terse.to_string(),
            "create leases/a: 422 Invalid: x is invalid; spec.leaseDurationSeconds: must be positive"
        );
    }

    #[test]
    fn causes_classify_for_the_core() {
        let t = RequestError::failed(
            Verb::Get,
            "leases/a",
            Cause::Timeout {
                after: Duration::from_millis(1500),
            },
        );
        assert_eq!(t.kind, ApiError::Timeout);
        assert_eq!(
            t.to_string(),
            "get leases/a: timeout: no answer within 1500 ms"
        );
        let r = RequestError::failed(
            Verb::List,
            "leases",
            Cause::Refused {
                address: "127.0.0.1:9".into(),
            },
        );
        assert_eq!(r.kind, ApiError::Transport);
        assert!(
            r.to_string()
                .starts_with("list leases: connection refused at 127.0.0.1:9")
        );
        assert_eq!(
            RequestError::failed(Verb::Get, "leases/a", Cause::Malformed("x".into())).kind,
            ApiError::Malformed
        );
    }

    #[test]
    fn the_cause_is_found_under_wrappers() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let wrapped = std::io::Error::other(refused);
        assert_eq!(
            connection_cause(&wrapped, "h:1"),
            Cause::Refused {
                address: "h:1".into()
            }
        );
        let tls = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(connection_cause(&tls, "h:1"), Cause::UnknownCa);
        // Clients wrap tokio-rustls's I/O error in another, whose `source()` skips it.
        let nested = std::io::Error::other(std::io::Error::other(
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        ));
        assert_eq!(connection_cause(&nested, "h:1"), Cause::HostnameMismatch);
        let other = std::io::Error::other("dns error: no such host");
        assert_eq!(
            connection_cause(&other, "h:1"),
            Cause::Connection("dns error: no such host".into())
        );
    }

    #[test]
    fn the_user_agent_names_the_version_and_transport() {
        assert_eq!(
            user_agent("http"),
            format!("leasehold/{} (http)", env!("CARGO_PKG_VERSION"))
        );
    }
}
