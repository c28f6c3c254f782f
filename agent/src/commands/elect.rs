//! `leasehold elect`: leader election on one Lease.

use super::outputs::Outputs;
use super::supervisor::{self, ChildPlan, Note, OnRefused, Outcome, Plan};
use crate::child::{self, Launcher};
use crate::cli::{ElectArgs, Global};
use crate::cluster::{self, ConnectOptions};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use leasehold_core::{
    Elector, ElectorConfig, Event, Holder, Instant, LeaseName, LossReason, Timing,
};
use leasehold_runtime::Clock;
use std::time::Duration;

pub async fn run(
    global: &Global,
    args: ElectArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let le = &config.providers.kubernetes_leaderelection;
    if le.enabled == Some(false) {
        return Err(AgentError::usage(
            "providers.kubernetes_leaderelection.enabled is false in the config file: leader \
             election is turned off; set it to true or remove the key",
        ));
    }
    let name = args
        .lease
        .clone()
        .or_else(|| le.leader_lease.clone())
        .ok_or_else(|| {
            AgentError::usage(
                "--lease NAME is required (or providers.kubernetes_leaderelection.leader_lease in --config)",
            )
        })?;
    let lease = LeaseName::new(&name).map_err(|e| {
        AgentError::usage(format!(
            "--lease \"{name}\": {e}: a lease name is lower-case letters, digits, '-' and '.'"
        ))
    })?;
    let timing = cluster::timing(&args.timing, &config)?;
    let identity = cluster::candidate_identity(args.place.identity.as_deref())?;
    let grace = child::grace_period(args.child.grace_period, &timing)?;
    let options = ConnectOptions::new(
        global,
        &config,
        args.place.namespace.clone(),
        leasehold_runtime::request_timeout(&timing),
    );
    let connection = cluster::connect(&options).await?;
    let outputs = Outputs::start(
        &name,
        &identity,
        &args.output,
        healthz_after(&timing),
        connection.transport,
    )
    .await?;
    let (shared, transport) = (outputs.shared.clone(), outputs.transport.clone());
    tracing::info!(
        lease = %name,
        namespace = %connection.namespace,
        identity = %identity.as_str(),
        lease_duration = ?cluster::std_duration(timing.lease_duration()),
        renew_deadline = ?cluster::std_duration(timing.renew_deadline()),
        retry_period = ?cluster::std_duration(timing.retry_period()),
        grace_period = ?grace,
        "campaigning for leadership"
    );
    let launcher = Launcher {
        grace,
        log_format: global.log_format,
        log_level: global.log_level,
    };
    let plan = Plan {
        child: ChildPlan::new(
            args.command,
            identity.as_str(),
            launcher,
            args.child.on_child_exit,
        ),
        exit_on_loss: args.exit_on_loss,
        on_refused: OnRefused::Exit,
        retry_period: timing.retry_period(),
        namespace: connection.namespace,
        leases: vec![name.clone()],
    };
    let clock = Clock::default();
    let mut seed = seed();
    loop {
        let mut elector = Elector::new(
            ElectorConfig {
                lease: lease.clone(),
                identity: identity.clone(),
                timing,
                watch: !args.timing.poll,
            },
            seed,
        );
        let outcome = supervisor::run(
            &mut elector,
            transport.clone(),
            clock,
            &plan,
            signals,
            |e, event| on_event(e, event, &shared, clock),
        )
        .await;
        match outcome {
            Outcome::Terminated => return Ok(0),
            Outcome::ChildExited(code) => return Ok(code),
            Outcome::Lost => {
                return Err(AgentError::runtime(format!(
                    "lost leadership of lease \"{name}\"; exiting (--exit-on-loss)"
                )));
            }
            Outcome::Failed(e) => return Err(e),
            Outcome::Recampaign => {
                // Give the other candidates one retry period to take the released lease.
                tracing::info!("the child command exited: released the lease, campaigning again");
                tokio::time::sleep(cluster::std_duration(timing.retry_period())).await;
                seed = seed.wrapping_add(1);
            }
        }
    }
}

fn on_event(elector: &Elector, event: Event, shared: &Shared, clock: Clock) -> Option<Note> {
    let lease = elector.lease_name().as_str();
    match event {
        Event::BecameLeader { epoch } => {
            tracing::info!(lease, epoch, "became leader");
            shared.became_leader(lease, epoch);
            Some(Note::Leading {
                lease: lease.to_owned(),
                epoch,
            })
        }
        Event::Renewed { deadline } => {
            renewed(shared, clock, deadline);
            Some(Note::Renewed { deadline })
        }
        Event::LostLeadership { reason } => {
            if reason == LossReason::Released {
                tracing::info!(lease, ?reason, "lost leadership");
            } else {
                tracing::warn!(lease, ?reason, "lost leadership");
            }
            shared.lost_leadership();
            Some(Note::NotLeading)
        }
        Event::LeaderChanged { holder } => {
            let epoch = elector.lease().and_then(|l| l.record.lease_transitions);
            report_holder(lease, &holder, elector.identity(), shared, epoch);
            None
        }
        Event::RequestFailed { verb, error } => {
            if supervisor::is_refusal(verb, &error) {
                return Some(Note::Refused { verb, error });
            }
            tracing::warn!(
                lease,
                verb = verb.as_str(),
                ?error,
                "request failed; retrying"
            );
            None
        }
        Event::Released { written } => {
            if written {
                tracing::info!(lease, "released the lease");
            }
            None
        }
        Event::EventsDropped { count } => {
            tracing::warn!(
                lease,
                count,
                "lease events were dropped before they were handled"
            );
            None
        }
        _ => None,
    }
}

/// Logs and records a new holder (the lines users grep for: "new leader is X").
pub fn report_holder(
    lease: &str,
    holder: &Holder,
    me: &leasehold_core::Identity,
    shared: &Shared,
    epoch: Option<u32>,
) {
    match holder {
        Holder::None => tracing::info!(lease, "the lease is free"),
        h if h.is(me) => {}
        h => tracing::info!(lease, "new leader is {h}"),
    }
    let name = match holder {
        Holder::None => None,
        h => Some(h.to_string()),
    };
    shared.holder_changed(name, epoch);
}

/// Records a renew in the shared status: leadership now lasts until `deadline`.
pub fn renewed(shared: &Shared, clock: Clock, deadline: Instant) {
    let remaining = deadline.as_micros().saturating_sub(clock.now().as_micros());
    shared.renewed(Duration::from_micros(remaining));
}

/// client-go's watchdog: lease duration plus 20 s.
pub fn healthz_after(timing: &Timing) -> Duration {
    cluster::std_duration(timing.lease_duration()) + Duration::from_secs(20)
}

/// A seed for jitter that differs between agents started together.
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
