//! `leasehold pool`: k-of-n leases `PREFIX-0..N-1`. Cold start (`--release-after`) throttles how
//! many agents run a command at once; delegation (`--hold`) picks N agents until they end.
//!
//! Both keep k-of-n for the work, not only for the leases: a member that loses its slot has its
//! command stopped by the slot's deadline like an elected leader's, and waits for a slot again
//! (a cold-start member then runs its command again from the start).

use super::elect::{healthz_after, renewed, seed};
use super::outputs::Outputs;
use super::supervisor::{self, ChildPlan, Note, OnRefused, Outcome, Plan};
use crate::child::{self, Launcher};
use crate::cli::{Global, OnChildExit, PoolArgs};
use crate::cluster::{self, ConnectOptions};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use leasehold_core::{Event, Pool, PoolConfig, SlotEvent};
use leasehold_runtime::Clock;

/// The largest pool this binary runs (the core's pools are sized at compile time).
const MAX_SLOTS: usize = 128;

pub async fn run(
    global: &Global,
    args: PoolArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let cold_start = args.release_after.is_some();
    let (enabled, namespace, enforce, size, prefix) = if cold_start {
        let c = &config.k8s_coldstart;
        (
            c.enabled,
            c.namespace.clone(),
            c.enforce_leader_election,
            c.max_parallel_cold_start.unwrap_or(10),
            "cold-start",
        )
    } else {
        // Sysdig's k8s_coldstart namespace and enforcement apply to delegation too.
        let c = &config.k8s_coldstart;
        (
            config.k8s_delegation_election,
            c.namespace.clone(),
            c.enforce_leader_election,
            config.k8s_delegated_nodes.unwrap_or(2),
            "delegation",
        )
    };
    let command = args.release_after.clone().unwrap_or(args.command.clone());
    let timing = cluster::timing(&args.timing, &config)?;
    let launcher = Launcher {
        grace: child::grace_period(args.child.grace_period, &timing)?,
        log_format: global.log_format,
        log_level: global.log_level,
    };
    if enabled == Some(false) {
        if cold_start {
            tracing::info!(
                "k8s_coldstart.enabled is false: running the command without throttling"
            );
            return supervisor::run_without_leases(&launcher, &command, signals).await;
        }
        // Sysdig's switch: this agent takes no delegation lease and so is no delegate. It says
        // so, in the status file too (leader=false), and runs until it is terminated.
        tracing::warn!(
            "k8s_delegation_election is false in the config file: delegation is off; holding no \
             lease, so this agent is not a delegate"
        );
        let identity = args.place.identity.clone().unwrap_or_default();
        Shared::new(
            prefix,
            &identity,
            args.output.status_file.clone(),
            healthz_after(&timing),
        )
        .write_initial()
        .map_err(|e| AgentError::runtime(format!("cannot write the status file: {e}")))?;
        signals.recv().await;
        return Ok(0);
    }
    let size = args.size.unwrap_or(size);
    let prefix = args.prefix.clone().unwrap_or_else(|| prefix.to_owned());
    let enforce = args.enforce || enforce.unwrap_or(false);
    let identity = cluster::candidate_identity(args.place.identity.as_deref())?;
    let watch = !args.timing.poll;
    // A fresh member for each campaign (the first, and again after `--on-child-exit release`).
    let new_pool = || {
        Pool::<MAX_SLOTS>::new(
            PoolConfig {
                prefix: &prefix,
                size,
                identity: identity.clone(),
                timing,
                watch,
            },
            seed(),
        )
        .map(Box::new)
        .map_err(|e| AgentError::usage(format!("--prefix {prefix} --size {size}: {e}")))
    };
    let mut pool = new_pool()?;
    let options = ConnectOptions::new(
        global,
        &config,
        args.place.namespace.clone().or(namespace),
        leasehold_runtime::request_timeout(&timing),
    );
    let connection = cluster::connect(&options).await?;
    let outputs = Outputs::start(
        &prefix,
        &identity,
        &args.output,
        healthz_after(&timing),
        connection.transport,
    )
    .await?;
    let (shared, transport) = (outputs.shared.clone(), outputs.transport.clone());
    tracing::info!(
        pool = %format!("{prefix}-0..{}", size - 1),
        namespace = %connection.namespace,
        identity = %identity.as_str(),
        mode = if cold_start { "cold start: release after the command" } else { "delegation: hold" },
        "waiting for a slot"
    );
    let on_child_exit = if cold_start {
        OnChildExit::Exit
    } else {
        args.child.on_child_exit
    };
    let plan = Plan {
        child: ChildPlan::new(command, identity.as_str(), launcher, on_child_exit),
        exit_on_loss: false,
        on_refused: match (enforce, cold_start) {
            (true, _) => OnRefused::Exit,
            // A cold start must not block a boot: without leases it runs unthrottled.
            (false, true) => OnRefused::Proceed,
            // Delegation picks N agents: running on every one without a slot would defeat it.
            (false, false) => OnRefused::Retry,
        },
        retry_period: timing.retry_period(),
        namespace: connection.namespace,
        leases: (0..size).map(|i| format!("{prefix}-{i}")).collect(),
    };
    let clock = Clock::default();
    loop {
        let outcome = supervisor::run(
            &mut *pool,
            transport.clone(),
            clock,
            &plan,
            signals,
            |p, e| on_event(p, e, &shared, clock),
        )
        .await;
        match outcome {
            Outcome::Terminated => return Ok(0),
            Outcome::ChildExited(code) => return Ok(code),
            Outcome::Lost => return Err(AgentError::runtime("lost the slot")),
            Outcome::Failed(e) => return Err(e),
            Outcome::Recampaign => {
                tracing::info!(
                    "the child command exited: released the slot, waiting for one again"
                );
                tokio::time::sleep(cluster::std_duration(timing.retry_period())).await;
                pool = new_pool()?;
            }
        }
    }
}

fn on_event(pool: &Pool<MAX_SLOTS>, e: SlotEvent, shared: &Shared, clock: Clock) -> Option<Note> {
    let slot = pool
        .slot_name(e.slot)
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    match e.event {
        Event::BecameLeader { epoch } => {
            tracing::info!(lease = %slot, epoch, "acquired slot {slot}");
            shared.became_leader(&slot, epoch);
            Some(Note::Leading { lease: slot, epoch })
        }
        Event::Renewed { deadline } => {
            renewed(shared, clock, deadline);
            Some(Note::Renewed { deadline })
        }
        Event::LostLeadership { reason } => {
            tracing::warn!(lease = %slot, ?reason, "lost slot {slot}");
            shared.lost_leadership();
            Some(Note::NotLeading)
        }
        Event::LeaderChanged { holder } => {
            tracing::debug!(lease = %slot, %holder, "slot holder changed");
            None
        }
        Event::RequestFailed { verb, error } => {
            if supervisor::is_refusal(verb, &error) {
                return Some(Note::Refused { verb, error });
            }
            tracing::warn!(lease = %slot, verb = verb.as_str(), ?error, "request failed; retrying");
            None
        }
        Event::Released { written } => {
            if written {
                tracing::info!(lease = %slot, "released slot {slot}");
            }
            None
        }
        Event::EventsDropped { count } => {
            tracing::warn!(count, "slot events were dropped before they were handled");
            None
        }
        _ => None,
    }
}
