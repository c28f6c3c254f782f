//! `leasehold gc`: deletes the identity leases (`leasehold identity`'s, or any selected by label)
//! that expired long ago, each only if it is still the version listed.

use super::runner;
use crate::cli::{GcArgs, Global};
use crate::error::AgentError;
use crate::rbac;
use leasehold_core::{ApiError, MicroTime};
use leasehold_runtime::{ListedLease, Transport};
use std::time::Duration;

pub async fn run(global: &Global, args: GcArgs) -> Result<i32, AgentError> {
    let connection = runner::connect_once(global, args.namespace.clone()).await?;
    let namespace = connection.namespace.clone();
    let mut out = std::io::stdout().lock();
    let report = collect(
        &connection.transport,
        &namespace,
        &args.selector,
        args.expired_for,
        leasehold_runtime::Clock::wall(),
        args.dry_run,
        &mut out,
    )
    .await
    .map_err(|error| rbac::failed(&error, &rbac::Needs::collecting(&namespace)))?;
    use std::io::Write;
    let _ = writeln!(
        out,
        "{} {}, {} kept (renewed since listed), {} not expired long enough, {} without renewTime",
        report.deleted,
        if args.dry_run {
            "would be deleted"
        } else {
            "deleted"
        },
        report.raced,
        report.fresh,
        report.unknown
    );
    Ok(0)
}

/// What a gc pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Deleted (or, dry, would be).
    pub deleted: usize,
    /// Expired when listed but written since: the precondition kept them.
    pub raced: usize,
    /// Not expired for long enough.
    pub fresh: usize,
    /// No renewTime or duration to judge by.
    pub unknown: usize,
}

/// One gc pass over `namespace` with `selector` at wall time `now`, printing a line per lease it
/// deletes or keeps. A failure returns the verb that failed.
pub async fn collect<T: Transport>(
    transport: &T,
    namespace: &str,
    selector: &str,
    expired_for: Duration,
    now: MicroTime,
    dry_run: bool,
    out: &mut impl std::io::Write,
) -> Result<Report, leasehold_runtime::RequestError> {
    let leases = transport.list(Some(namespace), Some(selector)).await?;
    let mut report = Report::default();
    for lease in leases {
        let Some(expired) = expired_since(&lease, now) else {
            report.unknown += 1;
            continue;
        };
        if expired <= expired_for {
            report.fresh += 1;
            continue;
        }
        let what = format!(
            "{namespace}/{} (holder {}, expired {} ago)",
            lease.name,
            lease.lease.record.holder,
            crate::duration::format(Duration::from_secs(expired.as_secs()))
        );
        if dry_run {
            let _ = writeln!(out, "would delete {what}");
            report.deleted += 1;
            continue;
        }
        match transport
            .delete(&lease.name, &lease.lease.resource_version)
            .await
        {
            Ok(()) => {
                let _ = writeln!(out, "deleted {what}");
                report.deleted += 1;
            }
            Err(e) if e.kind == ApiError::Conflict => {
                let _ = writeln!(
                    out,
                    "kept {namespace}/{}: renewed since it was listed",
                    lease.name
                );
                report.raced += 1;
            }
            Err(e) if e.kind == ApiError::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// How long ago `renewTime + leaseDurationSeconds` passed, by the local wall clock (as the API
/// server judges its own identity leases); `None` when the record cannot tell, or it has not.
fn expired_since(lease: &ListedLease, now: MicroTime) -> Option<Duration> {
    lease
        .lease
        .record
        .expired_for(now)
        .map(crate::duration::to_std)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::identity::COMPONENT_LABEL;
    use leasehold_core::LeaseName;

    /// A transport whose list is answered, then every listed lease is renewed before the
    /// caller can act on the list: the race gc must lose safely.
    #[cfg(feature = "http")]
    struct RenewedBehindItsBack(leasehold_adapter_http::HttpTransport);

    #[cfg(feature = "http")]
    impl Transport for RenewedBehindItsBack {
        async fn call(
            &self,
            request: leasehold_core::Request,
        ) -> Result<leasehold_core::Lease, leasehold_runtime::RequestError> {
            self.0.call(request).await
        }
        async fn list(
            &self,
            ns: Option<&str>,
            sel: Option<&str>,
        ) -> Result<Vec<ListedLease>, leasehold_runtime::RequestError> {
            let listed = self.0.list(ns, sel).await?;
            for l in &listed {
                let record = leasehold_core::LeaseRecord {
                    renew_time: Some(leasehold_runtime::Clock::wall()),
                    ..l.lease.record.clone()
                };
                let name = LeaseName::new(&l.name).unwrap();
                // The transport updates only a lease it has read, as the core does.
                self.0
                    .call(leasehold_core::Request {
                        slot: 0,
                        lease: name.clone(),
                        op: leasehold_core::Operation::Get,
                    })
                    .await
                    .expect("read");
                let op = leasehold_core::Operation::Update {
                    resource_version: l.lease.resource_version.clone(),
                    record,
                };
                self.0
                    .call(leasehold_core::Request {
                        slot: 0,
                        lease: name,
                        op,
                    })
                    .await
                    .expect("renewed");
            }
            Ok(listed)
        }
        async fn delete(
            &self,
            name: &str,
            rv: &leasehold_core::ResourceVersion,
        ) -> Result<(), leasehold_runtime::RequestError> {
            self.0.delete(name, rv).await
        }
        async fn watch(
            &self,
            l: LeaseName,
            rv: Option<leasehold_core::ResourceVersion>,
            s: leasehold_runtime::WatchSink,
        ) {
            self.0.watch(l, rv, s).await
        }
        async fn watch_slots(
            &self,
            slots: leasehold_core::SlotNames,
            rv: Option<leasehold_core::ResourceVersion>,
            s: leasehold_runtime::WatchSink,
        ) {
            self.0.watch_slots(slots, rv, s).await
        }
    }

    #[cfg(feature = "http")]
    #[tokio::test]
    async fn gc_loses_the_race_to_a_renew_and_keeps_the_lease() {
        let sim =
            leasehold_fake_apiserver::Sim::start(leasehold_fake_apiserver::SimConfig::default())
                .await
                .unwrap();
        sim.seed_lease(
            "default",
            serde_json::json!({
                "metadata": {"name": "old", "labels": {COMPONENT_LABEL: "indexer"}},
                "spec": {"holderIdentity": "gone_1", "leaseDurationSeconds": 3600,
                         "renewTime": "2020-01-01T00:00:00.000000Z"},
            }),
        )
        .unwrap();
        let path = std::env::temp_dir().join(format!("leasehold-gc-race-{}", std::process::id()));
        std::fs::write(&path, sim.kubeconfig("admin", "default").unwrap()).unwrap();
        let cluster = leasehold_adapter_http::kubeconfig::from_kubeconfig(&[path], None).unwrap();
        let transport = leasehold_adapter_http::connect(&leasehold_adapter_http::HttpConfig {
            cluster,
            namespace: "default".into(),
            request_timeout: Duration::from_secs(5),
            rate_limit: None,
        })
        .unwrap();
        let racing = RenewedBehindItsBack(transport);
        let mut out = Vec::new();
        let selector = format!("{COMPONENT_LABEL}=indexer");
        let now = leasehold_runtime::Clock::wall();
        let report = collect(
            &racing,
            "default",
            &selector,
            Duration::from_secs(3600),
            now,
            false,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            Report {
                raced: 1,
                ..Report::default()
            }
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("kept default/old: renewed since it was listed")
        );
        assert!(
            sim.lease("default", "old").is_some(),
            "the renewed lease survives"
        );
        // Without the race it goes.
        let report = collect(
            &racing.0,
            "default",
            &selector,
            Duration::ZERO,
            now,
            false,
            &mut Vec::new(),
        )
        .await;
        assert_eq!(report.unwrap().deleted, 0, "renewed just now: not expired");
        sim.stop().await;
    }

    #[test]
    fn a_renew_time_in_the_future_is_not_expired_and_nothing_overflows() {
        let listed = |renew_s: i64, duration: leasehold_core::Duration| ListedLease {
            namespace: "default".into(),
            name: "x".into(),
            created: None,
            labels: Default::default(),
            lease: leasehold_core::Lease {
                resource_version: leasehold_core::ResourceVersion::new("1").unwrap(),
                record: leasehold_core::LeaseRecord {
                    holder: leasehold_core::Holder::from_wire(Some("h")),
                    lease_duration: Some(duration),
                    renew_time: Some(MicroTime::from_unix_micros(renew_s * 1_000_000)),
                    ..leasehold_core::LeaseRecord::EMPTY
                },
            },
        };
        let now = MicroTime::from_unix_micros(1_000 * 1_000_000);
        let hour = leasehold_core::Duration::from_secs(3600);
        // Renewed a century ahead by a holder's wrong clock: not expired, so gc keeps it.
        assert_eq!(
            expired_since(&listed(4_000_000_000, hour), now),
            Some(Duration::ZERO)
        );
        // A duration past what a wall-clock sum can hold never expires: gc keeps it.
        assert_eq!(
            expired_since(&listed(0, leasehold_core::Duration::MAX), now),
            None
        );
        assert_eq!(
            expired_since(&listed(-7_200, hour), now),
            Some(Duration::from_secs(4_600))
        );
    }
}
