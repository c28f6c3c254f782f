//! `leasehold heartbeat`: keep a node-style lease renewed, or (`--watch`) report leases that
//! stopped being renewed.

use super::elect::seed;
use super::outputs::Outputs;
use super::supervisor::{self, Note, OnRefused, Outcome, Plan};
use crate::cli::{Global, HeartbeatArgs};
use crate::cluster::{self, ConnectOptions};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use crate::transport::Metered;
use leasehold_core::{Heartbeat, HeartbeatConfig, HeartbeatEvent, LeaseName, Verb};
use leasehold_driver::{Clock, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest `--watch --interval`: shorter would list the namespace's leases in a busy loop.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(
    global: &Global,
    args: HeartbeatArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    if args.watch && args.interval < MIN_WATCH_INTERVAL {
        return Err(AgentError::usage(format!(
            "--interval {}: give at least {}: each interval lists every lease in the namespace",
            crate::duration::format(args.interval),
            crate::duration::format(MIN_WATCH_INTERVAL)
        )));
    }
    let duration = cluster::core_duration(args.lease_duration);
    let identity = cluster::identity(args.place.identity.as_deref())?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| identity.as_str().to_owned());
    let lease =
        LeaseName::new(&name).map_err(|e| AgentError::usage(format!("--name \"{name}\": {e}")))?;
    let machine = Heartbeat::new(
        HeartbeatConfig {
            lease,
            identity: identity.clone(),
            lease_duration: duration,
            renew_interval: None,
        },
        seed(),
    )
    .map_err(|e| AgentError::usage(format!("--lease-duration: {e}")))?;
    // A renewal must answer well within its interval (a quarter of the duration).
    let request_timeout = (args.lease_duration / 8).max(Duration::from_secs(1));
    let options = ConnectOptions::new(
        global,
        &config,
        args.place.namespace.clone(),
        request_timeout,
    );
    let connection = cluster::connect(&options).await?;
    let outputs = Outputs::start(
        &name,
        &identity,
        &args.output,
        args.lease_duration,
        connection.transport,
    )
    .await?;
    let (shared, transport) = (outputs.shared.clone(), outputs.transport.clone());
    if args.watch {
        return watch(transport, &connection.namespace, &args, signals).await;
    }
    renew(
        machine,
        transport,
        connection.namespace,
        name,
        shared,
        signals,
    )
    .await
}

pub(super) async fn renew(
    mut machine: Heartbeat,
    transport: Arc<Metered>,
    namespace: String,
    name: String,
    shared: Arc<Shared>,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    tracing::info!(
        lease = %name,
        namespace = %namespace,
        every = ?cluster::std_duration(machine.renew_interval()),
        "renewing the lease"
    );
    let plan = Plan {
        child: None,
        exit_on_loss: false,
        on_refused: OnRefused::Exit,
        retry_period: cluster::std_duration(machine.renew_interval()),
        namespace,
        leases: vec![name.clone()],
    };
    let mut first = true;
    let clock = Clock::default();
    let outcome = supervisor::run(&mut machine, transport, clock, &plan, signals, |_, event| match event {
        HeartbeatEvent::Renewed => {
            if first {
                first = false;
                tracing::info!(lease = %name, "heartbeat lease renewed");
                shared.became_leader(&name, 0);
            } else {
                tracing::debug!(lease = %name, "heartbeat lease renewed");
            }
            None
        }
        HeartbeatEvent::RequestFailed { verb, error } => {
            if supervisor::is_refusal(verb, &error) {
                return Some(Note::Refused { verb, error });
            }
            tracing::warn!(lease = %name, verb = verb.as_str(), ?error, "failed to renew the heartbeat lease; retrying");
            None
        }
        HeartbeatEvent::RepeatedFailure { failures } => {
            tracing::warn!(lease = %name, failures, "failed to renew the heartbeat lease {failures} times in a row");
            None
        }
    })
    .await;
    match outcome {
        Outcome::Failed(e) => Err(e),
        _ => Ok(0),
    }
}

/// What the watcher knows of one lease, on its own clock.
struct Seen {
    resource_version: String,
    observed_at: Instant,
    stale: bool,
}

/// Lists the leases every `--interval` and reports each one whose record has not changed for
/// longer than its `leaseDurationSeconds`, measured on this process's clock from when the
/// change was seen (never by comparing the record's timestamps with the local clock).
async fn watch(
    transport: Arc<Metered>,
    namespace: &str,
    args: &HeartbeatArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    tracing::info!(namespace, selector = ?args.selector, interval = ?args.interval, "watching heartbeat leases");
    let mut seen: HashMap<String, Seen> = HashMap::new();
    loop {
        match transport
            .list(Some(namespace), args.selector.as_deref())
            .await
        {
            Ok(leases) => {
                let now = Instant::now();
                let present: Vec<String> = leases.iter().map(|l| l.name.clone()).collect();
                seen.retain(|name, _| present.contains(name));
                for listed in leases {
                    let rv = listed.lease.resource_version.as_str().to_owned();
                    let duration = listed
                        .lease
                        .record
                        .lease_duration
                        .map_or(args.lease_duration, cluster::std_duration);
                    let holder = listed.lease.record.holder.to_string();
                    let entry = seen.entry(listed.name.clone()).or_insert(Seen {
                        resource_version: rv.clone(),
                        observed_at: now,
                        stale: false,
                    });
                    if entry.resource_version != rv {
                        if entry.stale {
                            println!("RENEWED {namespace}/{} holder={holder}", listed.name);
                            tracing::info!(lease = %listed.name, %holder, "lease renewed again");
                        }
                        *entry = Seen {
                            resource_version: rv,
                            observed_at: now,
                            stale: false,
                        };
                    } else if !entry.stale && now.duration_since(entry.observed_at) > duration {
                        entry.stale = true;
                        let idle = now.duration_since(entry.observed_at);
                        println!(
                            "STALE {namespace}/{} holder={holder} not renewed for {}s (duration {}s)",
                            listed.name,
                            idle.as_secs(),
                            duration.as_secs()
                        );
                        tracing::warn!(lease = %listed.name, %holder, "lease not renewed within its duration");
                    }
                }
            }
            Err(error)
                if matches!(
                    error,
                    leasehold_core::ApiError::Forbidden | leasehold_core::ApiError::Unauthorized
                ) =>
            {
                return Err(crate::rbac::denied(
                    Verb::List,
                    &error,
                    &crate::rbac::Needs {
                        namespace: Some(namespace),
                        names: &[],
                    },
                    transport.inner.last_failure_message().as_deref(),
                ));
            }
            Err(error) => tracing::warn!(?error, "cannot list leases; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            () = signals.recv() => return Ok(0),
        }
    }
}
