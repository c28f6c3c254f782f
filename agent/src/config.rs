//! The config file (`--config`): the keys users already have in Elastic Agent's
//! `providers.kubernetes_leaderelection` and the Sysdig agent's `k8s_coldstart`,
//! `k8s_delegation_election` and `k8s_delegated_nodes`. Unknown keys and wrong types are errors
//! that name the key and its line, so a typo is never silently ignored.

use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file. Every section is optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Elastic Agent's providers; only `kubernetes_leaderelection` is read.
    #[serde(default)]
    pub providers: Providers,
    /// Sysdig's cold-start throttling (`leasehold pool --release-after`).
    #[serde(default)]
    pub k8s_coldstart: ColdStart,
    /// Sysdig's delegation (`leasehold pool --hold`).
    #[serde(default)]
    pub k8s_delegation_election: Delegation,
    /// Sysdig's number of delegated agents (default 2).
    pub k8s_delegated_nodes: Option<usize>,
}

/// `providers:`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    /// `providers.kubernetes_leaderelection`.
    #[serde(default)]
    pub kubernetes_leaderelection: LeaderElection,
}

/// Elastic's `providers.kubernetes_leaderelection` (`leasehold elect`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElection {
    /// `false` makes `leasehold elect` refuse to run.
    pub enabled: Option<bool>,
    /// kubeconfig path (`--kubeconfig`).
    pub kube_config: Option<PathBuf>,
    /// Client rate limits.
    pub kube_client_options: Option<ClientOptions>,
    /// The lease name (`--lease`).
    pub leader_lease: Option<String>,
    /// `--retry-period`.
    #[serde(default, deserialize_with = "duration")]
    pub leader_retryperiod: Option<Duration>,
    /// `--lease-duration`.
    #[serde(default, deserialize_with = "duration")]
    pub leader_leaseduration: Option<Duration>,
    /// `--renew-deadline`.
    #[serde(default, deserialize_with = "duration")]
    pub leader_renewdeadline: Option<Duration>,
}

/// `kube_client_options`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientOptions {
    /// `--qps`.
    pub qps: Option<f64>,
    /// `--burst`.
    pub burst: Option<u32>,
}

/// Sysdig's `k8s_coldstart`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    /// `false`: `pool --release-after` runs its command at once, unthrottled.
    pub enabled: Option<bool>,
    /// The pool size (default 10).
    pub max_parallel_cold_start: Option<usize>,
    /// The namespace of the leases.
    pub namespace: Option<String>,
    /// `--enforce`.
    pub enforce_leader_election: Option<bool>,
}

/// Sysdig's `k8s_delegation_election`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// `false` makes `pool --hold` refuse to run.
    pub enabled: Option<bool>,
    /// The namespace of the leases.
    pub namespace: Option<String>,
    /// `--enforce`.
    pub enforce_leader_election: Option<bool>,
}

/// Why a config file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The parser's message: the key, what was wrong and the line and column.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config file {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        message: format!("cannot read it: {e}"),
    })?;
    parse(&text, path)
}

/// Parses config text; `path` is for messages. An empty file is an empty config.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_saphyr::from_str(text).map_err(|e| ConfigError {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    crate::duration::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        super::parse(text, Path::new("agent.yaml"))
    }

    #[test]
    fn reads_elastic_and_sysdig_keys() {
        let c = parse(
            "providers:\n  kubernetes_leaderelection:\n    enabled: true\n    kube_config: /etc/kube\n    \
             kube_client_options:\n      qps: 5\n      burst: 10\n    leader_lease: agent-leader\n    \
             leader_retryperiod: 2s\n    leader_leaseduration: 15s\n    leader_renewdeadline: 10s\n\
             k8s_coldstart:\n  enabled: true\n  max_parallel_cold_start: 3\n  namespace: sysdig-agent\n  \
             enforce_leader_election: true\n\
             k8s_delegation_election:\n  enabled: true\n  namespace: sysdig-agent\n\
             k8s_delegated_nodes: 4\n",
        )
        .unwrap();
        let le = &c.providers.kubernetes_leaderelection;
        assert_eq!(le.enabled, Some(true));
        assert_eq!(le.kube_config.as_deref(), Some(Path::new("/etc/kube")));
        assert_eq!(
            le.kube_client_options,
            Some(ClientOptions {
                qps: Some(5.0),
                burst: Some(10)
            })
        );
        assert_eq!(le.leader_lease.as_deref(), Some("agent-leader"));
        assert_eq!(le.leader_retryperiod, Some(Duration::from_secs(2)));
        assert_eq!(le.leader_leaseduration, Some(Duration::from_secs(15)));
        assert_eq!(le.leader_renewdeadline, Some(Duration::from_secs(10)));
        assert_eq!(c.k8s_coldstart.max_parallel_cold_start, Some(3));
        assert_eq!(c.k8s_coldstart.namespace.as_deref(), Some("sysdig-agent"));
        assert_eq!(c.k8s_coldstart.enforce_leader_election, Some(true));
        assert_eq!(c.k8s_delegation_election.enabled, Some(true));
        assert_eq!(c.k8s_delegated_nodes, Some(4));
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), ConfigFile::default());
        assert_eq!(parse("# nothing\n").unwrap(), ConfigFile::default());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let e =
            parse("k8s_coldstart:\n  enabled: true\n  max_paralel_cold_start: 3\n").unwrap_err();
        assert!(e.message.contains("max_paralel_cold_start"), "{e}");
        assert!(e.message.contains("line 3"), "{e}");
        assert!(e.to_string().starts_with("config file agent.yaml: "), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let e = parse("k8s_coldstart:\n  max_parallel_cold_start: many\n").unwrap_err();
        assert!(e.message.contains("line 2"), "{e}");
        let e = parse("providers:\n  kubernetes_leaderelection:\n    leader_leaseduration: 15\n")
            .unwrap_err();
        assert!(
            e.message.contains("no unit") && e.message.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_refused() {
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("just text").is_err());
    }
}
