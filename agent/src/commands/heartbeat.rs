//! `leasehold heartbeat`: keep a node-style lease renewed, as the kubelet keeps its node lease,
//! or (`--watch`, [`super::watch`]) report leases that stopped being renewed.

use super::runner::{Reported, Session, Setup, seed};
use super::supervisor::{self, Note, OnRefused, Plan, Watches};
use super::watch;
use crate::cli::{Global, HeartbeatArgs};
use crate::cluster;
use crate::duration::{to_core, to_std};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::{Shared, View};
use leasehold_core::{Heartbeat, HeartbeatConfig, HeartbeatEvent, LeaseName};
use leasehold_runtime::{Clock, CreateMetadata};

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
    let watch_interval = args
        .watch
        .then(|| watch::interval(args.interval))
        .transpose()?;
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
            lease_duration: to_core(args.lease_duration),
            renew_interval: None,
        },
        seed(),
    )
    .map_err(|e| AgentError::usage(format!("--lease-duration: {e}")))?;
    // The watcher's lists get the renewal's timeout too: it judges leases of that duration.
    let session = Session::start(Setup {
        global,
        config: &config,
        namespace: args.place.namespace.clone(),
        request_timeout: machine.request_timeout(),
        create_metadata: CreateMetadata::default(),
        name: &name,
        identity: &identity,
        output: &args.output,
        healthz_after: to_core(args.lease_duration),
    })
    .await?;
    match watch_interval {
        Some(interval) => watch::run(&session, &args, interval, signals).await,
        None => renew(&session, machine, name, signals).await,
    }
}

/// Keeps `machine`'s lease `name` renewed until a signal, or a refusal, ends the run; `Ok`
/// carries the exit code. `identity` publishes its lease this way too.
pub(super) async fn renew(
    session: &Session,
    mut machine: Heartbeat,
    name: String,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    tracing::info!(
        lease = %name,
        namespace = %session.namespace,
        every = ?to_std(machine.renew_interval()),
        "renewing the lease"
    );
    let plan = Plan {
        child: None,
        exit_on_loss: false,
        on_refused: OnRefused::Exit,
        retry_period: machine.renew_interval(),
        namespace: session.namespace.clone(),
        leases: vec![name],
        watches: Watches::Nothing,
    };
    session.run(&mut machine, &plan, signals).await
}

/// A heartbeat leads no one and runs no child: the supervisor hears only of refusals.
impl Reported for Heartbeat {
    const REJOINING: &'static str = "the child command exited: renewing the lease again";

    fn report(&self, event: HeartbeatEvent, shared: &Shared, _clock: Clock) -> Option<Note> {
        // The status is named for the lease, and shows it held from the first renew on: that
        // renew is logged at info, the others at debug.
        let View {
            lease,
            leader: renewed_before,
            ..
        } = shared.view();
        match event {
            HeartbeatEvent::Renewed if renewed_before => {
                tracing::debug!(lease = %lease, "heartbeat lease renewed");
            }
            HeartbeatEvent::Renewed => {
                tracing::info!(lease = %lease, "heartbeat lease renewed");
                shared.became_leader(&lease, 0, None);
            }
            HeartbeatEvent::RequestFailed { verb, error } => {
                if supervisor::is_refusal(verb, &error) {
                    return Some(Note::Refused { verb, error });
                }
                tracing::warn!(lease = %lease, verb = verb.as_str(), ?error, "failed to renew the heartbeat lease; retrying");
            }
            HeartbeatEvent::RepeatedFailure { failures } => {
                tracing::warn!(lease = %lease, failures, "failed to renew the heartbeat lease {failures} times in a row");
            }
            HeartbeatEvent::EventsDropped { count } => {
                tracing::warn!(lease = %lease, count, "heartbeat events were dropped before they were handled");
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::{ApiError, Verb};

    #[test]
    fn the_first_renew_shows_the_lease_held_and_a_refusal_reaches_the_supervisor() {
        let machine = Heartbeat::new(
            HeartbeatConfig {
                lease: LeaseName::new("node-1").unwrap(),
                identity: leasehold_core::Identity::new("node-1").unwrap(),
                lease_duration: leasehold_core::Duration::from_secs(40),
                renew_interval: None,
            },
            1,
        )
        .unwrap();
        let shared = Shared::new("node-1", "node-1", None, std::time::Duration::from_secs(40));
        let clock = Clock::default();
        for _ in 0..2 {
            assert!(
                machine
                    .report(HeartbeatEvent::Renewed, &shared, clock)
                    .is_none()
            );
            let view = shared.view();
            assert!(view.leader, "held from the first renew on");
            assert_eq!(
                (view.lease.as_str(), view.holder.as_deref()),
                ("node-1", Some("node-1"))
            );
        }
        let failed = |verb, error| HeartbeatEvent::RequestFailed { verb, error };
        assert!(
            machine
                .report(failed(Verb::Update, ApiError::Timeout), &shared, clock)
                .is_none(),
            "retried"
        );
        assert!(matches!(
            machine.report(failed(Verb::Update, ApiError::Forbidden), &shared, clock),
            Some(Note::Refused {
                verb: Verb::Update,
                error: ApiError::Forbidden
            })
        ));
    }
}
