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
use leasehold_core::{
    Heartbeat, HeartbeatConfig, HeartbeatEvent, HeartbeatWatcher, LeaseName, LivenessEvent,
};
use leasehold_runtime::{Clock, Transport};
use std::sync::Arc;
use std::time::Duration;

/// The shortest `--watch --interval`: shorter would list the namespace's leases in a busy loop.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// `--watch --interval` by default.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// The most leases `--watch` judges; more are reported, not judged. A namespace such as
/// `kube-node-lease` holds one per node: past this many, narrow it with `--selector`.
const MAX_WATCHED: usize = 1024;

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
    // The watcher's lists get the renewal's timeout too: it judges leases of that duration.
    let options = ConnectOptions::new(
        global,
        &config,
        args.place.namespace.clone(),
        crate::duration::to_std(machine.request_timeout()),
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
                shared.became_leader(&name, 0, None);
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

/// Lists the leases every `interval`, and again when the first one still renewed would expire,
/// and reports those not renewed within their duration, and those that come back, as the core's
/// [`HeartbeatWatcher`] judges them: by when this process saw each record change, never by
/// comparing the record's timestamps with the local clock. Leases without a holder are nobody's
/// heartbeat and are not reported.
async fn watch(
    transport: Arc<Metered>,
    namespace: &str,
    args: &HeartbeatArgs,
    interval: Duration,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    tracing::info!(namespace, selector = ?args.selector, ?interval, "watching heartbeat leases");
    let clock = Clock::default();
    let mut watcher = Box::new(HeartbeatWatcher::<MAX_WATCHED>::new(
        crate::duration::to_core(interval),
        crate::duration::to_core(args.lease_duration),
    ));
    loop {
        if watcher.poll_list(clock.now()) {
            match transport
                .list(Some(namespace), args.selector.as_deref())
                .await
            {
                Ok(listed) => {
                    let named: Vec<_> = listed
                        .iter()
                        .filter_map(|l| match LeaseName::new(&l.name) {
                            Ok(name) => Some((name, &l.lease)),
                            Err(e) => {
                                tracing::warn!(lease = %l.name, "not judged: {e}");
                                None
                            }
                        })
                        .collect();
                    watcher.handle_listed(named.iter().map(|(n, l)| (n, *l)), clock.now());
                }
                Err(error) if error.kind.is_permanent() => {
                    return Err(crate::rbac::denied(
                        &error,
                        &crate::rbac::Needs::listing(Some(namespace)),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot list leases; retrying");
                    watcher.handle_list_failed(clock.now());
                }
            }
            while let Some(event) = watcher.poll_event() {
                report(namespace, event);
            }
        }
        let wake = clock.deadline(watcher.poll_timeout().unwrap_or_else(|| clock.now()));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = signals.recv() => return Ok(0),
        }
    }
}

/// Prints a watcher's finding on stdout (the lines scripts read) and logs it.
fn report(namespace: &str, event: LivenessEvent) {
    match event {
        LivenessEvent::Stopped {
            lease,
            holder,
            duration,
            unchanged_for,
            since_first_list,
            renew_time,
        } => {
            let unchanged = unchanged_for.as_secs();
            // Unchanged since the first list: it may have been so long before.
            let since = if since_first_list {
                format!("at least {unchanged}s, since this watcher started")
            } else {
                format!("{unchanged}s")
            };
            let renewed = renew_time.map_or("none".into(), super::get::rfc3339);
            println!(
                "STALE {namespace}/{lease} holder={holder} not renewed within its {}s duration: \
                 unchanged for {since}; renewTime {renewed}",
                duration.as_secs(),
            );
            tracing::warn!(%lease, %holder, "lease not renewed within its duration");
        }
        LivenessEvent::Renewed { lease, holder } => {
            println!("RENEWED {namespace}/{lease} holder={holder}");
            tracing::info!(%lease, %holder, "lease renewed again");
        }
        LivenessEvent::Untracked { count } => tracing::warn!(
            count,
            capacity = MAX_WATCHED,
            "more heartbeat leases than the watcher judges: {count} not judged; narrow them \
             with --selector"
        ),
        _ => {}
    }
}
