//! `leasehold identity` and `leasehold gc`: the API server identity pattern for any fleet. Each
//! instance keeps a long lease named from its component and a hash of its hostname, labelled
//! so a selector finds them all; `gc` deletes the ones that expired long ago.

use super::outputs::Outputs;
use super::runner::seed;
use crate::cli::{GcArgs, Global, IdentityArgs};
use crate::cluster::{self, ConnectOptions};
use crate::error::AgentError;
use crate::rbac;
use crate::shutdown::Signals;
use leasehold_core::{ApiError, Heartbeat, HeartbeatConfig, Identity, LeaseName, MicroTime, Verb};
use leasehold_runtime::{CreateMetadata, ListedLease, OwnerReference, Transport};
use std::collections::BTreeMap;
use std::time::Duration;

/// The label every identity lease carries: its component.
pub const COMPONENT_LABEL: &str = "leasehold.io/component";
/// The label the API server's own identity leases carry.
pub const APISERVER_LABEL: &str = "apiserver.kubernetes.io/identity";
/// The hostname label (the one Kubernetes uses on nodes and API server identity leases).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

pub async fn run(
    global: &Global,
    args: IdentityArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let hostname = args.hostname.clone().unwrap_or_else(cluster::hostname);
    let name = lease_name(&args.component, &hostname)?;
    let lease =
        LeaseName::new(&name).map_err(|e| AgentError::usage(format!("lease name {name}: {e}")))?;
    // The host given names the instance too: a holder naming another host would mislead.
    let instance = cluster::identity(args.place.identity.as_deref().or(args.hostname.as_deref()))?;
    let holder = holder(instance.as_str());
    let mut labels = BTreeMap::from([
        (COMPONENT_LABEL.to_owned(), args.component.clone()),
        (HOSTNAME_LABEL.to_owned(), label_value(&hostname)),
    ]);
    for pair in &args.labels {
        let (key, value) = parse_label(pair)?;
        labels.insert(key, value);
    }
    let owner = match (std::env::var("POD_NAME"), std::env::var("POD_UID")) {
        (Ok(name), Ok(uid)) if !name.is_empty() && !uid.is_empty() => Some(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name,
            uid,
        }),
        _ => None,
    };
    let machine = Heartbeat::new(
        HeartbeatConfig {
            lease,
            identity: holder.clone(),
            lease_duration: crate::duration::to_core(args.lease_duration),
            renew_interval: Some(crate::duration::to_core(args.renew_interval)),
        },
        seed(),
    )
    .map_err(|e| AgentError::usage(format!("--lease-duration / --renew-interval: {e}")))?;
    let request_timeout = (args.renew_interval / 2).max(Duration::from_secs(1));
    let mut options = ConnectOptions::new(
        global,
        &config,
        args.place.namespace.clone(),
        request_timeout,
    );
    options.create_metadata = CreateMetadata {
        labels,
        owner: owner.clone(),
    };
    let connection = cluster::connect(&options).await?;
    let outputs = Outputs::start(
        &name,
        &holder,
        &args.output,
        args.lease_duration,
        connection.transport,
    )
    .await?;
    tracing::info!(
        lease = %name,
        component = %args.component,
        hostname = %hostname,
        holder = %holder.as_str(),
        owner = ?owner.as_ref().map(|o| &o.name),
        "publishing the identity lease"
    );
    super::heartbeat::renew(
        machine,
        outputs.transport.clone(),
        connection.namespace,
        name,
        outputs.shared.clone(),
        signals,
    )
    .await
}

/// `COMPONENT-<32 hex digits>`: the first 128 bits of SHA-256 of the hostname, so the name is
/// the same on every restart on one host, differs between hosts, and is a valid DNS-1123 name
/// (at most 63 + 1 + 32 characters) whatever the hostname is.
pub fn lease_name(component: &str, hostname: &str) -> Result<String, AgentError> {
    if !crate::dns_label::is_dns_label(component) {
        return Err(AgentError::usage(format!(
            "--component \"{component}\": a component is at most 63 lower-case letters, digits and \
             '-', starting and ending with a letter or digit (it is also a label value)"
        )));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, hostname.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("{component}-{hex}"))
}

/// `ID_<uuid>`: this run of this instance (the API server writes `<id>_<uuid>` too), shortened
/// to fit the 253-character holder.
fn holder(instance: &str) -> Identity {
    let uuid = uuid::Uuid::new_v4();
    let id: String = instance.chars().take(253 - 37).collect();
    Identity::new(&format!("{id}_{uuid}")).unwrap_or_else(|_| {
        Identity::new(&uuid.to_string()).unwrap_or_else(|_| unreachable!("a uuid is 36 bytes"))
    })
}

/// A hostname as a label value: at most 63 of `[a-z0-9._-]`, starting and ending with a letter
/// or digit (a very long or odd hostname is shortened; the lease name hashes the full one).
pub fn label_value(hostname: &str) -> String {
    let cleaned: String = hostname
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "unknown".into()
    } else {
        trimmed.to_owned()
    }
}

fn parse_label(pair: &str) -> Result<(String, String), AgentError> {
    let bad = |why: &str| AgentError::usage(format!("--label \"{pair}\": {why}; write KEY=VALUE"));
    let (key, value) = pair.split_once('=').ok_or_else(|| bad("no '='"))?;
    let key_ok = !key.is_empty()
        && key.len() <= 253 + 1 + 63
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !key_ok {
        return Err(bad("the key is not a label key"));
    }
    if value.len() > 63
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad(
            "the value is at most 63 letters, digits, '-', '_' and '.'",
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

pub async fn gc(global: &Global, args: GcArgs) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let options = ConnectOptions::new(
        global,
        &config,
        args.namespace.clone(),
        Duration::from_secs(30),
    );
    let connection = cluster::connect(&options).await?;
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
    .map_err(|(verb, error)| match error {
        ApiError::Forbidden | ApiError::Unauthorized => rbac::denied(
            verb,
            &error,
            &rbac::Needs {
                namespace: Some(&namespace),
                names: &[],
            },
            connection.transport.last_failure_message().as_deref(),
        ),
        e => AgentError::runtime(format!("gc: {verb} failed: {e:?}")),
    })?;
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
) -> Result<Report, (Verb, ApiError)> {
    let leases = transport
        .list(Some(namespace), Some(selector))
        .await
        .map_err(|e| (Verb::List, e))?;
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
            Err(ApiError::Conflict) => {
                let _ = writeln!(
                    out,
                    "kept {namespace}/{}: renewed since it was listed",
                    lease.name
                );
                report.raced += 1;
            }
            Err(ApiError::NotFound) => {}
            Err(e) => return Err((Verb::Delete, e)),
        }
    }
    Ok(report)
}

/// How long ago `renewTime + leaseDurationSeconds` passed, by the local wall clock (as the API
/// server judges its own identity leases); `None` when the record cannot tell, or it has not.
fn expired_since(lease: &ListedLease, now: MicroTime) -> Option<Duration> {
    let r = &lease.lease.record;
    let renewed = r.renew_time.or(r.acquire_time)?;
    let duration = i64::try_from(r.lease_duration?.as_micros()).ok()?;
    let ago = now.as_unix_micros() - renewed.as_unix_micros().saturating_add(duration);
    Some(Duration::from_micros(u64::try_from(ago).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_valid_for_awkward_hostnames() {
        let long = format!("{}.example.com", "node".repeat(70));
        for host in [
            "node-1",
            "NODE-1.Example.COM",
            "a.b.c",
            long.as_str(),
            "",
            "ünïcode host",
        ] {
            let name = lease_name("indexer", host).unwrap();
            assert_eq!(name, lease_name("indexer", host).unwrap(), "stable");
            assert!(LeaseName::new(&name).is_ok(), "{name}");
            assert_eq!(name.len(), "indexer-".len() + 32);
            let value = label_value(host);
            assert!(value.len() <= 63 && !value.is_empty(), "{value}");
            assert!(value.starts_with(|c: char| c.is_ascii_alphanumeric()));
            assert!(value.ends_with(|c: char| c.is_ascii_alphanumeric()));
        }
        assert_ne!(
            lease_name("indexer", "node-1").unwrap(),
            lease_name("indexer", "node-2").unwrap()
        );
        assert_ne!(
            lease_name("indexer", "Node-1").unwrap(),
            lease_name("indexer", "node-1").unwrap(),
            "the hostname is hashed exactly as given"
        );
        assert_eq!(label_value("NODE-1.Example.COM"), "node-1.example.com");
        let e = lease_name("My_Component", "h").unwrap_err();
        assert!(e.message.starts_with("--component"), "{e}");
    }

    #[test]
    fn the_holder_is_the_instance_and_a_fresh_uuid() {
        let a = holder("pod-a");
        let b = holder("pod-a");
        assert!(a.as_str().starts_with("pod-a_") && a.as_str().len() == "pod-a_".len() + 36);
        assert_ne!(a, b, "a new uuid per start");
        assert!(holder(&"x".repeat(300)).as_str().len() <= 253);
    }

    /// A transport whose list is answered, then every listed lease is renewed before the
    /// caller can act on the list: the race gc must lose safely.
    #[cfg(feature = "http")]
    struct RenewedBehindItsBack(leasehold_adapter_http::HttpTransport);

    #[cfg(feature = "http")]
    impl Transport for RenewedBehindItsBack {
        async fn call(&self, request: leasehold_core::Request) -> leasehold_core::Response {
            self.0.call(request).await
        }
        async fn list(
            &self,
            ns: Option<&str>,
            sel: Option<&str>,
        ) -> Result<Vec<ListedLease>, ApiError> {
            let listed = self.0.list(ns, sel).await?;
            for l in &listed {
                let record = leasehold_core::LeaseRecord {
                    renew_time: Some(leasehold_runtime::Clock::wall()),
                    ..l.lease.record.clone()
                };
                let name = LeaseName::new(&l.name).unwrap();
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
        ) -> Result<(), ApiError> {
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
        let transport =
            leasehold_adapter_http::HttpTransport::new(&leasehold_adapter_http::HttpConfig {
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

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_label("team=search").unwrap(),
            ("team".into(), "search".into())
        );
        assert_eq!(
            parse_label("example.com/tier=a.b").unwrap().0,
            "example.com/tier"
        );
        assert!(
            parse_label("nope")
                .unwrap_err()
                .message
                .contains("KEY=VALUE")
        );
        assert!(parse_label("k=has space").is_err());
    }
}
