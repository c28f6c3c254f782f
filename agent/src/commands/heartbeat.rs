//! `leasehold heartbeat`: keep a node-style lease renewed, or (`--watch`) report leases that
//! stopped being renewed.

use super::outputs::Outputs;
use super::runner::seed;
use super::supervisor::{self, Note, OnRefused, Outcome, Plan};
use crate::cli::{Global, HeartbeatArgs};
use crate::cluster::{self, ConnectOptions};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use crate::transport::Metered;
use leasehold_core::{Heartbeat, HeartbeatConfig, HeartbeatEvent, LeaseName, Verb};
use leasehold_runtime::{Clock, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest `--watch --interval`: shorter would list the namespace's leases in a busy loop.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// `--watch --interval` by default.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(
    global: &Global,
    args: HeartbeatArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    // clap counts --watch as given whenever it has its default, so `requires` cannot say it.
    if !args.watch && (args.interval.is_some() || args.selector.is_some()) {
        return Err(AgentError::usage(
            "--interval and --selector are the watcher's: add --watch, or drop them (a \
             heartbeat renews every quarter of --lease-duration)",
        ));
    }
    let interval = args.interval.unwrap_or(WATCH_INTERVAL);
    if interval < MIN_WATCH_INTERVAL {
        return Err(AgentError::usage(format!(
            "--interval {}: give at least {}: each interval lists every lease in the namespace",
            crate::duration::format(interval),
            crate::duration::format(MIN_WATCH_INTERVAL)
        )));
    }
    let duration = crate::duration::to_core(args.lease_duration);
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
        return watch(transport, &connection.namespace, &args, interval, signals).await;
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
        every = ?crate::duration::to_std(machine.renew_interval()),
        "renewing the lease"
    );
    let plan = Plan {
        child: None,
        exit_on_loss: false,
        on_refused: OnRefused::Exit,
        retry_period: machine.renew_interval(),
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
        HeartbeatEvent::EventsDropped { count } => {
            tracing::warn!(lease = %name, count, "heartbeat events were dropped before they were handled");
            None
        }
        _ => None,
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
    duration: Duration,
    stale: bool,
}

/// Lists the leases every `interval`, and again at the instant the next one would expire, and
/// reports each one whose record has not changed for longer than its `leaseDurationSeconds`,
/// measured on this process's clock from when the change was seen (never by comparing the
/// record's timestamps with the local clock). A lease with no holder (free, or released by an
/// election) is nobody's heartbeat and is not reported.
async fn watch(
    transport: Arc<Metered>,
    namespace: &str,
    args: &HeartbeatArgs,
    interval: Duration,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    tracing::info!(namespace, selector = ?args.selector, ?interval, "watching heartbeat leases");
    let started = Instant::now();
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
                    let record = &listed.lease.record;
                    if matches!(record.holder, leasehold_core::Holder::None) {
                        seen.remove(&listed.name);
                        continue;
                    }
                    let rv = listed.lease.resource_version.as_str().to_owned();
                    let duration = record
                        .lease_duration
                        .map_or(args.lease_duration, crate::duration::to_std);
                    let holder = record.holder.to_string();
                    let entry = seen.entry(listed.name.clone()).or_insert(Seen {
                        resource_version: rv.clone(),
                        observed_at: now,
                        duration,
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
                            duration,
                            stale: false,
                        };
                    } else if !entry.stale && now.duration_since(entry.observed_at) >= duration {
                        entry.stale = true;
                        let unchanged = now.duration_since(entry.observed_at).as_secs();
                        // Unchanged since first seen: it may have been so long before.
                        let since = if entry.observed_at <= started {
                            format!("at least {unchanged}s, since this watcher started")
                        } else {
                            format!("{unchanged}s")
                        };
                        let renewed = record.renew_time.map_or("none".into(), super::get::rfc3339);
                        println!(
                            "STALE {namespace}/{} holder={holder} not renewed within its {}s \
                             duration: unchanged for {since}; renewTime {renewed}",
                            listed.name,
                            duration.as_secs(),
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
        // The next list: at the interval, or when the first lease still fresh would expire.
        let next = seen
            .values()
            .filter(|s| !s.stale)
            .map(|s| s.observed_at + s.duration)
            .fold(Instant::now() + interval, Instant::min);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = signals.recv() => return Ok(0),
        }
    }
}
