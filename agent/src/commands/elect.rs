//! `leasehold elect`: leader election on one Lease.

use super::runner::{Reported, Role, Session, Setup, report_lease_event};
use super::supervisor::{ChildPlan, Note, OnRefused, Plan, Watches};
use crate::child::{self, Launcher};
use crate::cli::{ElectArgs, Global};
use crate::cluster;
use crate::duration::{to_core, to_std};
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use leasehold_client::ElectionBuilder;
use leasehold_core::{Elector, Event, Holder, LeaseName};
use leasehold_runtime::{Clock, CreateMetadata};

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
    let session = Session::start(Setup {
        global,
        config: &config,
        namespace: args.place.namespace.clone(),
        request_timeout: timing.request_timeout(),
        create_metadata: CreateMetadata::default(),
        name: &name,
        identity: &identity,
        output: &args.output,
        healthz_after: timing.healthz_after(),
    })
    .await?;
    tracing::info!(
        lease = %name,
        namespace = %session.namespace,
        identity = %identity.as_str(),
        lease_duration = ?to_std(timing.lease_duration()),
        renew_deadline = ?to_std(timing.renew_deadline()),
        retry_period = ?to_std(timing.retry_period()),
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
        namespace: session.namespace.clone(),
        leases: vec![name],
        watches: if args.timing.poll {
            Watches::Nothing
        } else {
            Watches::ByName
        },
    };
    let mut election = ElectionBuilder::new(lease.as_str())
        .identity(identity.as_str())
        .timing(timing)
        .grace(to_core(grace));
    if args.timing.poll {
        election = election.poll();
    }
    session.elect(election, &plan, signals).await
}

impl Reported for Elector {
    const REJOINING: &'static str =
        "the child command exited: released the lease, campaigning again";

    fn report(&self, event: Event, shared: &Shared, clock: Clock) -> Option<Note> {
        let lease = self.lease_name().as_str();
        match event {
            Event::LeaderChanged { holder } => {
                let epoch = self.lease().and_then(|l| l.record.lease_transitions);
                report_holder(lease, &holder, self.identity(), shared, epoch);
                None
            }
            event => report_lease_event(Role::Leader, lease, event, shared, clock),
        }
    }
}

/// Logs and records a new holder (the lines users grep for: "new leader is X").
fn report_holder(
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
