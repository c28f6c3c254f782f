//! Finding the cluster, the namespace and this agent's identity, and building the transport.

use crate::cli::{Global, TimingArgs, TransportKind};
use crate::config::ConfigFile;
use crate::error::AgentError;
use crate::transport::AnyTransport;
use leasehold_core::{Identity, Timing};
use leasehold_runtime::{Backbone, Wire};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The namespace file of an in-cluster service account.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What to connect with, merged from flags and the config file.
pub struct ConnectOptions {
    /// Which transport.
    pub kind: TransportKind,
    /// `--kubeconfig`, else the config file's `kube_config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// The namespace asked for, if any.
    pub namespace: Option<String>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// QPS and burst.
    pub rate_limit: Option<(f64, u32)>,
    /// Labels and owner for the leases the transport creates.
    pub create_metadata: leasehold_runtime::CreateMetadata,
}

impl ConnectOptions {
    /// Options from the global flags and the config file.
    pub fn new(
        global: &Global,
        config: &ConfigFile,
        namespace: Option<String>,
        request_timeout: Duration,
    ) -> Self {
        let le = &config.providers.kubernetes_leaderelection;
        let client = le.kube_client_options.clone().unwrap_or_default();
        let qps = global.qps.or(client.qps);
        let burst = global.burst.or(client.burst);
        Self {
            kind: global.transport.unwrap_or(DEFAULT_TRANSPORT),
            kubeconfig: global.kubeconfig.clone().or_else(|| le.kube_config.clone()),
            context: global.context.clone(),
            namespace,
            request_timeout,
            rate_limit: match (qps, burst) {
                (None, None) => None,
                (qps, burst) => Some((qps.unwrap_or(5.0), burst.unwrap_or(10))),
            },
            create_metadata: leasehold_runtime::CreateMetadata::default(),
        }
    }
}

/// The slowest client-side rate accepted: one request every 100 s, already too slow to renew a
/// lease with client-go's timing; below it the limiter's period would not fit its clock.
const MIN_QPS: f64 = 0.01;
/// The fastest: a limiter period of 10 µs.
const MAX_QPS: f64 = 100_000.0;

/// kube when built in (it supports every kubeconfig auth method), else the raw HTTP client.
#[cfg(feature = "kube")]
pub const DEFAULT_TRANSPORT: TransportKind = TransportKind::Kube;
/// kube when built in (it supports every kubeconfig auth method), else the raw HTTP client.
#[cfg(not(feature = "kube"))]
pub const DEFAULT_TRANSPORT: TransportKind = TransportKind::Http;

/// A transport and the namespace it works in.
pub struct Connection {
    /// The transport.
    pub transport: AnyTransport,
    /// The namespace.
    pub namespace: String,
}

/// Builds the transport (no request is sent yet).
pub async fn connect(options: &ConnectOptions) -> Result<Connection, AgentError> {
    if let Some((qps, burst)) = options.rate_limit {
        if !(MIN_QPS..=MAX_QPS).contains(&qps) {
            return Err(AgentError::usage(format!(
                "--qps {qps:?} (kube_client_options.qps): give a number of requests per second \
                 from {MIN_QPS} to {MAX_QPS}"
            )));
        }
        if burst == 0 {
            return Err(AgentError::usage(
                "--burst 0 (kube_client_options.burst): the burst must be at least 1",
            ));
        }
    }
    match options.kind {
        #[cfg(feature = "kube")]
        TransportKind::Kube => {
            let connected = leasehold_adapter_kube::client(
                options.kubeconfig.as_deref(),
                options.context.as_deref(),
            )
            .await
            .map_err(|e| AgentError::usage(e.to_string()))?;
            let namespace = namespace(options.namespace.as_deref(), Some(&connected.namespace))?;
            let wire = leasehold_adapter_kube::KubeWire::new(&connected, &namespace);
            Ok(Connection {
                transport: AnyTransport::Kube(Box::new(backbone(wire, options)?)),
                namespace,
            })
        }
        #[cfg(feature = "http")]
        TransportKind::Http => {
            use leasehold_adapter_http::{HttpConfig, HttpWire, kubeconfig};
            let cluster =
                kubeconfig::resolve(options.kubeconfig.as_deref(), options.context.as_deref())
                    .map_err(|e| AgentError::usage(e.to_string()))?;
            let namespace = namespace(options.namespace.as_deref(), cluster.namespace.as_deref())?;
            let wire = HttpWire::new(&HttpConfig {
                cluster,
                namespace: namespace.clone(),
                request_timeout: options.request_timeout,
                rate_limit: options.rate_limit,
            })
            .map_err(|e| AgentError::usage(e.to_string()))?;
            Ok(Connection {
                transport: AnyTransport::Http(Box::new(backbone(wire, options)?)),
                namespace,
            })
        }
        #[allow(unreachable_patterns)]
        other => Err(AgentError::usage(format!(
            "--transport {0}: this binary was built without it; rebuild with --features {0}",
            other.name()
        ))),
    }
}

/// The shared backbone over `wire`, with the options every transport takes alike.
fn backbone<W: Wire>(wire: W, options: &ConnectOptions) -> Result<Backbone<W>, AgentError> {
    let transport = Backbone::new(wire, options.request_timeout)
        .with_create_metadata(options.create_metadata.clone());
    match options.rate_limit {
        None => Ok(transport),
        Some((qps, burst)) => transport
            .with_rate_limit(qps, burst)
            .map_err(|e| AgentError::usage(format!("--qps {qps} --burst {burst}: {e}"))),
    }
}

/// The namespace: `explicit`, else `POD_NAMESPACE`, else the service account's, else the
/// kubeconfig context's, else `default`.
pub fn namespace(explicit: Option<&str>, context: Option<&str>) -> Result<String, AgentError> {
    let from_env = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty());
    let from_file = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let ns = explicit
        .map(str::to_owned)
        .or(from_env)
        .or(from_file)
        .or_else(|| context.filter(|s| !s.is_empty()).map(str::to_owned))
        .unwrap_or_else(|| "default".into());
    if crate::dns_label::is_dns_label(&ns) {
        Ok(ns)
    } else {
        Err(AgentError::usage(format!(
            "--namespace \"{ns}\": a namespace is at most 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

/// The identity of a host-bound lease (`heartbeat`, `identity`): `explicit`, else `POD_NAME`,
/// else the hostname, the same at every start.
pub fn identity(explicit: Option<&str>) -> Result<Identity, AgentError> {
    checked_identity(explicit_or_pod_name(explicit).unwrap_or_else(hostname))
}

/// The identity of a candidate (`elect`, `pool`): `explicit`, else `POD_NAME`, else the hostname,
/// `_` and a random UUID, new at each start as in the API server's identity leases. Two agents
/// on one host, or an agent and its own restart, must not share an identity: a lease naming it
/// would look like theirs to both.
pub fn candidate_identity(explicit: Option<&str>) -> Result<Identity, AgentError> {
    checked_identity(
        explicit_or_pod_name(explicit)
            .unwrap_or_else(|| format!("{}_{}", hostname(), uuid::Uuid::new_v4())),
    )
}

fn explicit_or_pod_name(explicit: Option<&str>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
}

fn checked_identity(id: String) -> Result<Identity, AgentError> {
    Identity::new(&id).map_err(|e| {
        AgentError::usage(format!(
            "--identity \"{id}\": {e}: give one of 1 to 253 bytes"
        ))
    })
}

/// This machine's hostname.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The timing: flags over the config file over client-go's defaults, validated before any API
/// call with the core's rules.
pub fn timing(flags: &TimingArgs, config: &ConfigFile) -> Result<Timing, AgentError> {
    let le = &config.providers.kubernetes_leaderelection;
    let d = Timing::DEFAULT;
    let pick =
        |flag: Option<Duration>, file: Option<Duration>, default: leasehold_core::Duration| {
            flag.or(file)
                .map(crate::duration::to_core)
                .unwrap_or(default)
        };
    Timing::new(
        pick(flags.lease_duration, le.leader_leaseduration, d.lease_duration()),
        pick(flags.renew_deadline, le.leader_renewdeadline, d.renew_deadline()),
        pick(flags.retry_period, le.leader_retryperiod, d.retry_period()),
    )
    .map_err(|e| {
        AgentError::usage(format!(
            "invalid timing: {e} (set with --lease-duration, --renew-deadline, --retry-period or \
             providers.kubernetes_leaderelection.leader_leaseduration/leader_renewdeadline/leader_retryperiod)"
        ))
    })
}

/// Reads `--config` if given.
pub fn load_config(path: Option<&Path>) -> Result<ConfigFile, AgentError> {
    match path {
        Some(path) => crate::config::load(path).map_err(|e| AgentError::usage(e.to_string())),
        None => Ok(ConfigFile::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_namespace_wins_and_is_validated() {
        assert_eq!(namespace(Some("apps"), Some("ctx")).unwrap(), "apps");
        let e = namespace(Some("Apps_1"), None).unwrap_err();
        assert!(e.message.contains("--namespace \"Apps_1\""), "{e}");
        assert_eq!(e.code, crate::ExitCode::Usage);
    }

    #[test]
    fn timing_flags_override_the_file_and_are_validated() {
        let config = crate::config::parse(
            "providers:\n  kubernetes_leaderelection:\n    leader_leaseduration: 30s\n    leader_renewdeadline: 20s\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let t = timing(&TimingArgs::default(), &config).unwrap();
        assert_eq!(
            crate::duration::to_std(t.lease_duration()),
            Duration::from_secs(30)
        );
        assert_eq!(
            crate::duration::to_std(t.renew_deadline()),
            Duration::from_secs(20)
        );
        assert_eq!(
            crate::duration::to_std(t.retry_period()),
            Duration::from_secs(2)
        );
        let flags = TimingArgs {
            lease_duration: Some(Duration::from_secs(10)),
            ..TimingArgs::default()
        };
        let e = timing(&flags, &config).unwrap_err();
        assert_eq!(e.code, crate::ExitCode::Usage);
        assert!(
            e.message
                .contains("lease duration 10s must be greater than renew deadline 20s"),
            "{e}"
        );
        let flags = TimingArgs {
            renew_deadline: Some(Duration::from_millis(2400)),
            ..TimingArgs::default()
        };
        let e = timing(&flags, &ConfigFile::default()).unwrap_err();
        assert!(e.message.contains("× 1.2"), "{e}");
    }

    #[test]
    fn a_candidate_without_an_identity_gets_one_of_its_own() {
        // POD_NAME is not set in the test environment of this crate's unit tests.
        if std::env::var_os("POD_NAME").is_some() {
            return;
        }
        let (a, b) = (
            candidate_identity(None).unwrap(),
            candidate_identity(None).unwrap(),
        );
        assert_ne!(a, b);
        let prefix = format!("{}_", hostname());
        assert!(a.as_str().starts_with(&prefix), "{}", a.as_str());
        assert_eq!(
            a.as_str().len(),
            prefix.len() + 36,
            "a UUID: {}",
            a.as_str()
        );
        assert_eq!(candidate_identity(Some("pod-a")).unwrap().as_str(), "pod-a");
        assert_eq!(
            identity(None).unwrap().as_str(),
            hostname(),
            "host-bound leases keep the hostname"
        );
    }

    #[test]
    fn an_identity_too_long_is_a_usage_error() {
        let e = identity(Some(&"x".repeat(300))).unwrap_err();
        assert!(e.message.starts_with("--identity"), "{e}");
        assert_eq!(identity(Some("pod-a")).unwrap().as_str(), "pod-a");
    }
}
