//! Whether a leader is stuck (client-go's `HealthzAdaptor`), and client-go's leader-election
//! metrics, both from what the core reports.

use leasehold_core::{Stats, Timing};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// A leader that has not renewed for longer than the tolerated time: its process is stuck, or
/// cut off from the API server while it still believes it leads.
///
/// ```no_run
/// # fn f(election: &leasehold_client::Election) {
/// if let Err(unhealthy) = election.healthz() {
///     eprintln!("{unhealthy}");
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    /// The lease.
    pub lease: String,
    /// Since the last renew.
    pub since_renew: Duration,
    /// The tolerated time: the lease duration plus 20 s, as client-go's adaptor allows.
    pub limit: Duration,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leading {} but not renewed for {:.1}s (limit {:.1}s)",
            self.lease,
            self.since_renew.as_secs_f64(),
            self.limit.as_secs_f64()
        )
    }
}

impl std::error::Error for Unhealthy {}

#[derive(Debug, Default)]
struct State {
    leading: bool,
    renewed_at: Option<Instant>,
    slow_path_reads: u64,
}

/// What the election's background task reports for the health check and the metrics.
#[derive(Debug)]
pub(crate) struct Health {
    lease: String,
    limit: Duration,
    state: Mutex<State>,
    #[cfg(feature = "metrics")]
    metrics: metrics::Metrics,
}

impl Health {
    pub(crate) fn new(timing: Timing, lease: &str) -> Self {
        Self {
            lease: lease.to_owned(),
            limit: Duration::from_micros(timing.healthz_after().as_micros()),
            state: Mutex::default(),
            #[cfg(feature = "metrics")]
            metrics: metrics::Metrics::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn started_leading(&self) {
        let mut state = self.state();
        state.leading = true;
        state.renewed_at = Some(Instant::now());
        #[cfg(feature = "metrics")]
        self.metrics.master_status.set(1);
    }

    pub(crate) fn renewed(&self) {
        self.state().renewed_at = Some(Instant::now());
    }

    pub(crate) fn stopped_leading(&self) {
        self.state().leading = false;
        #[cfg(feature = "metrics")]
        self.metrics.master_status.set(0);
    }

    /// The core's counts: client-go's slow path is its `slow_path_reads`.
    pub(crate) fn observe(&self, stats: &Stats) {
        let mut state = self.state();
        #[cfg(feature = "metrics")]
        self.metrics
            .slowpath
            .inc_by(stats.slow_path_reads.saturating_sub(state.slow_path_reads));
        state.slow_path_reads = stats.slow_path_reads;
    }

    pub(crate) fn check(&self) -> Result<(), Unhealthy> {
        let state = self.state();
        match state.renewed_at {
            Some(at) if state.leading && at.elapsed() > self.limit => Err(Unhealthy {
                lease: self.lease.clone(),
                since_renew: at.elapsed(),
                limit: self.limit,
            }),
            _ => Ok(()),
        }
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry, &self.lease);
    }
}

#[cfg(feature = "metrics")]
mod metrics {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    /// client-go's two leader-election metrics, for one lease.
    #[derive(Debug, Default)]
    pub(super) struct Metrics {
        pub master_status: Gauge,
        pub slowpath: Counter,
    }

    impl Metrics {
        pub(super) fn register(&self, registry: &mut Registry, lease: &str) {
            let registry = registry.sub_registry_with_label((
                std::borrow::Cow::Borrowed("name"),
                std::borrow::Cow::Owned(lease.to_owned()),
            ));
            registry.register(
                "leader_election_master_status",
                "Whether this instance leads the lease (1) or not (0)",
                self.master_status.clone(),
            );
            registry.register(
                "leader_election_slowpath",
                "Renewals that had to read the lease again before writing",
                self.slowpath.clone(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "metrics")]
    #[test]
    fn client_gos_metrics_come_from_the_core_and_the_terms() {
        let health = Health::new(Timing::DEFAULT, "demo");
        let mut registry = prometheus_client::registry::Registry::default();
        health.register(&mut registry);
        let mut stats = Stats::default();
        stats.slow_path_reads = 2;
        health.observe(&stats);
        health.observe(&stats);
        health.started_leading();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("leader_election_master_status{name=\"demo\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("leader_election_slowpath_total{name=\"demo\"} 2\n"),
            "each read counted once: {text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_stops_renewing_is_unhealthy_after_the_lease_and_20s() {
        let health = Health::new(Timing::DEFAULT, "demo");
        assert_eq!(health.check(), Ok(()), "a follower is healthy");
        health.started_leading();
        tokio::time::advance(Duration::from_secs(35)).await;
        assert_eq!(health.check(), Ok(()), "15 s + 20 s is still tolerated");
        tokio::time::advance(Duration::from_millis(1)).await;
        let unhealthy = health.check().unwrap_err();
        assert_eq!(unhealthy.limit, Duration::from_secs(35));
        assert!(
            unhealthy
                .to_string()
                .starts_with("leading demo but not renewed for 35.0s")
        );
        health.renewed();
        assert_eq!(health.check(), Ok(()));
        tokio::time::advance(Duration::from_secs(60)).await;
        health.stopped_leading();
        assert_eq!(health.check(), Ok(()), "a former leader is healthy");
    }
}
