//! Prometheus metrics, with client-go's leader-election names so existing dashboards and alerts
//! keep working (`leader_election_master_status`, `leader_election_slowpath_total`), plus the
//! agent's own API request counts, leadership transitions and takeover times.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `{name="<lease>"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// The lease (or pool prefix).
    pub name: String,
}

/// `{verb="update",code="409"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The Kubernetes verb.
    pub verb: String,
    /// The HTTP status, or `timeout`/`error`/`malformed` when there was none.
    pub code: String,
}

fn takeover_histogram() -> Histogram {
    // 1 ms … ~65 s: a release seen on a watch is taken in milliseconds, an expiry in seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

/// The agent's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// 1 while this agent leads `name`, else 0 (client-go).
    pub master_status: Family<NameLabel, Gauge>,
    /// Renewals that needed a fresh read of the lease first (client-go's slow path).
    pub slowpath: Family<NameLabel, Counter>,
    /// API requests by verb and answer.
    pub api_requests: Family<RequestLabels, Counter>,
    /// Leadership changes seen on `name`.
    pub transitions: Family<NameLabel, Counter>,
    /// `leaseTransitions` of the lease as last seen: the fencing epoch.
    pub epoch: Family<NameLabel, Gauge>,
    /// From this agent's first attempt to take the free or expired lease to leading.
    pub takeover: Family<NameLabel, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let master_status = Family::<NameLabel, Gauge>::default();
        let slowpath = Family::<NameLabel, Counter>::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        let transitions = Family::<NameLabel, Counter>::default();
        let epoch = Family::<NameLabel, Gauge>::default();
        let takeover = Family::<NameLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            takeover_histogram,
        );
        registry.register(
            "leader_election_master_status",
            "Whether this instance leads the lease (1) or not (0)",
            master_status.clone(),
        );
        registry.register(
            "leader_election_slowpath",
            "Renewals that had to read the lease again before writing",
            slowpath.clone(),
        );
        registry.register(
            "leasehold_api_requests",
            "Lease API requests by verb and HTTP status",
            api_requests.clone(),
        );
        registry.register(
            "leasehold_leader_transitions",
            "Changes of the lease's holder seen by this instance",
            transitions.clone(),
        );
        registry.register(
            "leasehold_lease_epoch",
            "leaseTransitions of the lease as last seen (the fencing epoch)",
            epoch.clone(),
        );
        registry.register(
            "leasehold_takeover_seconds",
            "From the first attempt to take the free or expired lease to leading it",
            takeover.clone(),
        );
        Self {
            registry,
            master_status,
            slowpath,
            api_requests,
            transitions,
            epoch,
            takeover,
        }
    }
}

impl Metrics {
    /// The text exposition (OpenMetrics, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The label for `name`.
    pub fn name(name: &str) -> NameLabel {
        NameLabel { name: name.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_client_go_names() {
        let m = Metrics::default();
        m.master_status
            .get_or_create(&Metrics::name("controller"))
            .set(1);
        m.slowpath.get_or_create(&Metrics::name("controller")).inc();
        m.api_requests
            .get_or_create(&RequestLabels {
                verb: "update".into(),
                code: "409".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("leader_election_master_status{name=\"controller\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("leader_election_slowpath_total{name=\"controller\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("leasehold_api_requests_total{verb=\"update\",code=\"409\"} 1"),
            "{text}"
        );
    }
}
