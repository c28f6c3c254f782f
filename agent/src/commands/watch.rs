//! `leasehold heartbeat --watch`: report the leases of a namespace that stopped being renewed,
//! and those that come back.

use super::runner::Session;
use crate::cli::HeartbeatArgs;
use crate::error::AgentError;
use crate::shutdown::Signals;
use leasehold_core::{HeartbeatWatcher, LeaseName, LivenessEvent};
use leasehold_runtime::{Clock, Transport};
use std::time::Duration;

/// The shortest `--watch --interval`: shorter would list the namespace's leases in a busy loop.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// `--watch --interval` by default.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// The most leases `--watch` judges; more are reported, not judged. A namespace such as
/// `kube-node-lease` holds one per node: past this many, narrow it with `--selector`.
const MAX_WATCHED: usize = 1024;

/// The list interval: `--interval`, else its default; checked before connecting, as every flag.
pub(super) fn interval(given: Option<Duration>) -> Result<Duration, AgentError> {
    let interval = given.unwrap_or(WATCH_INTERVAL);
    if interval < MIN_WATCH_INTERVAL {
        return Err(AgentError::usage(format!(
            "--interval {}: give at least {}: each interval lists every lease in the namespace",
            crate::duration::format(interval),
            crate::duration::format(MIN_WATCH_INTERVAL)
        )));
    }
    Ok(interval)
}

/// Lists the leases every `interval`, and again when the first one still renewed would expire,
/// and reports those not renewed within their duration, and those that come back, as the core's
/// [`HeartbeatWatcher`] judges them: by when this process saw each record change, never by
/// comparing the record's timestamps with the local clock. Leases without a holder are nobody's
/// heartbeat and are not reported.
pub(super) async fn run(
    session: &Session,
    args: &HeartbeatArgs,
    interval: Duration,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let (transport, namespace) = (&session.outputs.transport, session.namespace.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_defaults_and_has_a_floor() {
        assert_eq!(interval(None).unwrap(), WATCH_INTERVAL);
        assert_eq!(
            interval(Some(MIN_WATCH_INTERVAL)).unwrap(),
            MIN_WATCH_INTERVAL
        );
        let e = interval(Some(Duration::from_millis(10))).unwrap_err();
        assert!(
            e.message
                .starts_with("--interval 10ms: give at least 100ms"),
            "{e}"
        );
    }
}
