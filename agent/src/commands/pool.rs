//! `leasehold pool`: k-of-n leases `PREFIX-0..N-1`. Cold start (`--release-after`) throttles how
//! many agents run a command at once; delegation (`--hold`) picks N agents until they end.
//!
//! Both keep k-of-n for the work, not only for the leases: a member that loses its slot has its
//! command stopped by the slot's deadline like an elected leader's, and waits for a slot again
//! (a cold-start member then runs its command again from the start).

use super::runner::{Reported, Role, Session, Setup, report_lease_event, seed};
use super::supervisor::{self, ChildPlan, Note, OnRefused, Plan, Watches};
use crate::child::{self, Launcher};
use crate::cli::{Global, OnChildExit, PoolArgs};
use crate::cluster;
use crate::duration::to_std;
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use leasehold_core::{Event, Holder, Machine, Pool, PoolConfig, SlotEvent};
use leasehold_runtime::{Clock, CreateMetadata};

/// The largest pool this binary runs (the core's pools are sized at compile time).
const MAX_SLOTS: usize = 128;

pub async fn run(
    global: &Global,
    args: PoolArgs,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let cold_start = args.release_after.is_some();
    // Sysdig's k8s_coldstart namespace and enforcement apply to delegation too.
    let c = &config.k8s_coldstart;
    let (namespace, enforce) = (c.namespace.clone(), c.enforce_leader_election);
    let (enabled, size, prefix) = if cold_start {
        (
            c.enabled,
            c.max_parallel_cold_start.unwrap_or(10),
            "cold-start",
        )
    } else {
        (
            config.k8s_delegation_election,
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
            return supervisor::run_without_leases(launcher, command, signals).await;
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
            to_std(timing.healthz_after()),
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
    let mut pool = Pool::<MAX_SLOTS>::new(
        PoolConfig {
            prefix: &prefix,
            size,
            identity: identity.clone(),
            timing,
            watch: !args.timing.poll,
        },
        seed(),
    )
    .map(Box::new)
    .map_err(|e| AgentError::usage(format!("--prefix {prefix} --size {size}: {e}")))?;
    let session = Session::start(Setup {
        global,
        config: &config,
        namespace: args.place.namespace.clone().or(namespace),
        request_timeout: timing.request_timeout(),
        create_metadata: CreateMetadata::default(),
        name: &prefix,
        identity: &identity,
        output: &args.output,
        healthz_after: timing.healthz_after(),
    })
    .await?;
    tracing::info!(
        pool = %format!("{prefix}-0..{}", size - 1),
        namespace = %session.namespace,
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
        on_refused: on_refused(enforce, cold_start),
        retry_period: timing.retry_period(),
        namespace: session.namespace.clone(),
        leases: (0..size).map(|i| format!("{prefix}-{i}")).collect(),
        watches: if args.timing.poll {
            Watches::Nothing
        } else {
            Watches::Namespace
        },
    };
    session.run(&mut *pool, &plan, signals).await
}

/// When leases cannot be used: `--enforce` exits; otherwise a cold start must not block a boot
/// and runs unthrottled, while delegation, which picks N agents, keeps trying (running on every
/// agent without a slot would defeat it).
fn on_refused(enforce: bool, cold_start: bool) -> OnRefused {
    match (enforce, cold_start) {
        (true, _) => OnRefused::Exit,
        (false, true) => OnRefused::Proceed,
        (false, false) => OnRefused::Retry,
    }
}

impl<const N: usize> Reported for Pool<N> {
    const REJOINING: &'static str =
        "the child command exited: released the slot, waiting for one again";

    fn report(&self, e: SlotEvent, shared: &Shared, clock: Clock) -> Option<Note> {
        let slot = self
            .slot_name(e.slot)
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        match e.event {
            Event::LeaderChanged { holder } => {
                tracing::debug!(lease = %slot, %holder, "slot holder changed");
                if !self.is_closed() && every_slot_held_by_others(self) {
                    let size = self.size();
                    let prefix = slot.rsplit_once('-').map_or(slot.as_str(), |(p, _)| p);
                    if shared.first_full_wait() {
                        tracing::info!(
                            pool = prefix,
                            "waiting for a {prefix} slot: all {size} held"
                        );
                    } else {
                        tracing::debug!(
                            pool = prefix,
                            "waiting for a {prefix} slot: all {size} held"
                        );
                    }
                }
                None
            }
            event => report_lease_event(Role::Slot, &slot, event, shared, clock),
        }
    }
}

/// Whether every slot of `pool` names a holder other than this member, as last seen. Its own
/// name does not count: the event of its own take may come before the one that says it holds.
fn every_slot_held_by_others<const N: usize>(pool: &Pool<N>) -> bool {
    let me = Holder::Named(pool.identity().clone());
    (0..pool.size()).all(|i| {
        u16::try_from(i)
            .ok()
            .and_then(|i| pool.slot_holder(i))
            .is_some_and(|h| *h != Holder::None && *h != me)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cold_start_without_enforce_may_run_unthrottled() {
        assert_eq!(on_refused(false, true), OnRefused::Proceed);
        assert_eq!(
            on_refused(false, false),
            OnRefused::Retry,
            "never for --hold"
        );
        assert_eq!(on_refused(true, true), OnRefused::Exit);
        assert_eq!(on_refused(true, false), OnRefused::Exit);
    }
}
