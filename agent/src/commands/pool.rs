//! `leasehold pool`: k-of-n leases `PREFIX-0..N-1`. Cold start (`--release-after`) throttles how
//! many agents run a command at once; delegation (`--hold`) picks N agents until they end.

use super::elect::{grace_period, healthz_after, seed};
use super::outputs::Outputs;
use super::supervisor::{self, Note, OnRefused, Outcome, Plan};
use crate::child::{Running, exit_code};
use crate::cli::{Global, OnChildExit, PoolArgs};
use crate::cluster::{self, ConnectOptions};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use leasehold_core::{Event, Pool, PoolConfig, SlotEvent};

/// The largest pool this binary runs (the core's pools are sized at compile time).
const MAX_SLOTS: usize = 128;

pub async fn run(
    global: &Global,
    args: PoolArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let cold_start = args.release_after.is_some();
    let (enabled, namespace, enforce, size, prefix, section) = if cold_start {
        let c = &config.k8s_coldstart;
        (
            c.enabled,
            c.namespace.clone(),
            c.enforce_leader_election,
            c.max_parallel_cold_start.unwrap_or(10),
            "cold-start",
            "k8s_coldstart",
        )
    } else {
        let d = &config.k8s_delegation_election;
        (
            d.enabled,
            d.namespace.clone(),
            d.enforce_leader_election,
            config.k8s_delegated_nodes.unwrap_or(2),
            "delegation",
            "k8s_delegation_election",
        )
    };
    let command = args.release_after.clone().unwrap_or(args.command.clone());
    if enabled == Some(false) {
        if cold_start {
            tracing::info!(
                "k8s_coldstart.enabled is false: running the command without throttling"
            );
            let mut child = Running::spawn(&command, &[])?;
            return Ok(exit_code(child.wait().await));
        }
        return Err(AgentError::usage(format!(
            "{section}.enabled is false in the config file: delegation is turned off; set it to \
             true or remove the key"
        )));
    }
    let size = args.size.unwrap_or(size);
    let prefix = args.prefix.clone().unwrap_or_else(|| prefix.to_owned());
    let enforce = args.enforce || enforce.unwrap_or(false);
    let timing = cluster::timing(&args.timing, &config)?;
    let identity = cluster::identity(args.place.identity.as_deref())?;
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
        leasehold_driver::request_timeout(&timing),
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
    let plan = Plan {
        command,
        identity: identity.as_str().to_owned(),
        grace: grace_period(args.child.grace_period, &timing),
        on_child_exit: if cold_start {
            OnChildExit::Exit
        } else {
            args.child.on_child_exit
        },
        exit_on_loss: false,
        keep_child_on_loss: cold_start,
        on_refused: if enforce {
            OnRefused::Exit
        } else {
            OnRefused::Proceed
        },
        namespace: connection.namespace,
        leases: (0..size).map(|i| format!("{prefix}-{i}")).collect(),
    };
    loop {
        let outcome = supervisor::run(&mut *pool, transport.clone(), &plan, signals, |p, e| {
            on_event(p, e, &shared)
        })
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

fn on_event(pool: &Pool<MAX_SLOTS>, e: SlotEvent, shared: &Shared) -> Option<Note> {
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
    }
}
