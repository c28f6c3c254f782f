//! The skeleton every long-running lease command shares: connect, start the outputs, run the
//! machine under the supervisor, rejoin when the child exited and the plan asks to campaign
//! again, and turn how the run ended into an exit code.
//!
//! A command supplies only what differs: its flags and plan, its machine, and how that machine's
//! events read ([`Reported`]). The events an elector and a pool's slots share read the same in
//! both ([`report_lease_event`]).

use super::outputs::Outputs;
use super::supervisor::{self, Note, Outcome, Plan};
use crate::cli::{Global, OutputArgs};
use crate::cluster::{self, ConnectOptions};
use crate::config::ConfigFile;
use crate::duration::to_std;
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::status::Shared;
use leasehold_client::ElectionBuilder;
use leasehold_core::{Duration, Elector, Event, Identity, Instant, LossReason, Machine};
use leasehold_runtime::{Clock, CreateMetadata, RequestError};
use tokio::sync::mpsc;

/// A core machine as a command reports it.
pub trait Reported: Machine {
    /// The log line when the child exited and the machine campaigns again.
    const REJOINING: &'static str;

    /// Logs `event`, records it in `shared`, and returns what the supervisor must know of it.
    /// `clock` is the machine's, for its instants.
    fn report(&self, event: Self::Event, shared: &Shared, clock: Clock) -> Option<Note>;
}

/// Where a command connects and what its outputs show.
pub struct Setup<'a> {
    /// The global flags.
    pub global: &'a Global,
    /// The config file.
    pub config: &'a ConfigFile,
    /// The namespace asked for (flag or config file), if any.
    pub namespace: Option<String>,
    /// The per-request timeout.
    pub request_timeout: Duration,
    /// Labels and owner for the leases the transport creates.
    pub create_metadata: CreateMetadata,
    /// The lease, or the pool's prefix, the outputs are named for.
    pub name: &'a str,
    /// The identity written as holder.
    pub identity: &'a Identity,
    /// The status file and the endpoints.
    pub output: &'a OutputArgs,
    /// `/healthz` fails when leading without a renew for this long.
    pub healthz_after: Duration,
}

/// Builds the transport of a one-shot command (`get`, `gc`): its requests race no lease
/// deadline, so they get the core's unhurried timeout.
pub async fn connect_once(
    global: &Global,
    namespace: Option<String>,
) -> Result<cluster::Connection, AgentError> {
    let config = cluster::load_config(global.config.as_deref())?;
    let options = ConnectOptions::new(
        global,
        &config,
        namespace,
        to_std(leasehold_core::timing::UNHURRIED_REQUEST_TIMEOUT),
    );
    cluster::connect(&options).await
}

/// A command connected to its cluster, with its outputs running.
pub struct Session {
    /// The outputs, and the transport that keeps them current.
    pub outputs: Outputs,
    /// The namespace the leases live in.
    pub namespace: String,
}

impl Session {
    /// Builds the transport and starts the outputs (no request is sent yet).
    pub async fn start(setup: Setup<'_>) -> Result<Self, AgentError> {
        let mut options = ConnectOptions::new(
            setup.global,
            setup.config,
            setup.namespace,
            to_std(setup.request_timeout),
        );
        options.create_metadata = setup.create_metadata;
        let connection = cluster::connect(&options).await?;
        let outputs = Outputs::start(
            setup.name,
            setup.identity,
            setup.output,
            to_std(setup.healthz_after),
            connection.transport,
        )
        .await?;
        Ok(Self {
            outputs,
            namespace: connection.namespace,
        })
    }

    /// Runs `machine` under the supervisor as `plan` says, until the run ends; `Ok` carries the
    /// exit code (the child's, when the agent ends with its child).
    pub async fn run<M: Reported>(
        &self,
        machine: &mut M,
        plan: &Plan,
        signals: &mut Signals,
    ) -> Result<i32, AgentError> {
        let clock = Clock::default();
        let shared = &self.outputs.shared;
        loop {
            let outcome = supervisor::run(
                machine,
                self.outputs.transport.clone(),
                clock,
                plan,
                signals,
                |m, event| {
                    shared.observe(&m.stats());
                    m.report(event, shared, clock)
                },
            )
            .await;
            match exit_code(outcome, plan)? {
                Some(code) => return Ok(code),
                None => {
                    tracing::info!("{}", M::REJOINING);
                    // The machine waits a retry period before it campaigns, which gives the
                    // other candidates the lease it released.
                    machine.rejoin(clock.now());
                }
            }
        }
    }

    /// Runs an election through the library's handle ([`ElectionBuilder`], the one
    /// implementation Rust programs use too) under the supervisor as `plan` says, until the run
    /// ends; `Ok` carries the exit code.
    pub async fn elect(
        &self,
        builder: ElectionBuilder,
        plan: &Plan,
        signals: &mut Signals,
    ) -> Result<i32, AgentError> {
        let clock = Clock::default();
        let (send, mut notes) = mpsc::unbounded_channel();
        let shared = self.outputs.shared.clone();
        let election = builder
            .clock(clock)
            .start_observed(
                self.outputs.transport.clone(),
                move |elector: &Elector, event: &Event, failure: Option<&RequestError>| {
                    shared.observe(&elector.stats());
                    if let Some(note) = elector.report(event.clone(), &shared, clock) {
                        let _ = send.send((note, failure.cloned()));
                    }
                },
            )
            .map_err(|e| AgentError::usage(e.to_string()))?;
        let shared = &self.outputs.shared;
        let code = loop {
            let outcome =
                supervisor::run_election(&election, &mut notes, clock, plan, signals, || {
                    shared.successes()
                })
                .await;
            match exit_code(outcome, plan) {
                Ok(Some(code)) => break Ok(code),
                Ok(None) => {
                    tracing::info!("{}", Elector::REJOINING);
                    // It campaigns a retry period later, which gives the other candidates the
                    // lease it released.
                    election.rejoin();
                }
                Err(e) => break Err(e),
            }
        };
        election.shutdown().await;
        code
    }
}

/// The exit code of a run that ended with `outcome`; `None` when the plan campaigns again.
fn exit_code(outcome: Outcome, plan: &Plan) -> Result<Option<i32>, AgentError> {
    match outcome {
        Outcome::Terminated => Ok(Some(0)),
        Outcome::ChildExited(code) => Ok(Some(code)),
        Outcome::Lost => Err(AgentError::runtime(format!(
            "lost leadership of lease \"{}\"; exiting (--exit-on-loss)",
            plan.leases.join(", ")
        ))),
        Outcome::Failed(e) => Err(e),
        Outcome::Recampaign => Ok(None),
    }
}

/// How a lease reads in the logs: the one lease of an election, or a pool's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `elect`'s lease.
    Leader,
    /// A slot of `pool`.
    Slot,
}

/// Logs and records the events an elector and a pool's slots share, for `lease`; the caller
/// handles [`Event::LeaderChanged`], which each reads its own way.
pub fn report_lease_event(
    role: Role,
    lease: &str,
    event: Event,
    shared: &Shared,
    clock: Clock,
) -> Option<Note> {
    match event {
        Event::BecameLeader { epoch, contended } => {
            match role {
                Role::Leader => tracing::info!(lease, epoch, "became leader"),
                Role::Slot => tracing::info!(lease, epoch, "acquired slot {lease}"),
            }
            shared.became_leader(lease, epoch, Some(to_std(contended)));
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
            match (role, reason) {
                (Role::Leader, LossReason::Released) => {
                    tracing::info!(lease, ?reason, "lost leadership");
                }
                // A cold-start member gives its slot up at the end of every run: the line that
                // matters is the release's, next.
                (Role::Slot, LossReason::Released) => {
                    tracing::debug!(lease, ?reason, "giving up slot {lease}");
                }
                (Role::Leader, _) => tracing::warn!(lease, ?reason, "lost leadership"),
                (Role::Slot, _) => tracing::warn!(lease, ?reason, "lost slot {lease}"),
            }
            shared.lost_leadership();
            Some(Note::NotLeading)
        }
        Event::RequestFailed { verb, error } => {
            if supervisor::is_refusal(verb, &error) {
                return Some(Note::Refused { verb, error });
            }
            // The transport logged the failure in the server's words; the core retries it.
            tracing::debug!(lease, verb = verb.as_str(), ?error, "retrying");
            None
        }
        Event::Released { written: true } => {
            match role {
                Role::Leader => tracing::info!(lease, "released the lease"),
                Role::Slot => tracing::info!(lease, "released slot {lease}"),
            }
            None
        }
        // Nothing written free: the lease was not held when the close came (a follower's, or
        // a member's that was still waiting), it changed since this term's last write, or the
        // write kept failing until the term ended (each failure was logged as it came; the
        // lease then expires on its own). Only the core knows which, so this is no warning.
        Event::Released { written: false } => {
            tracing::debug!(lease, "closed without writing {lease} free");
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

/// Records a renew in the shared status: leadership now lasts until `deadline`.
fn renewed(shared: &Shared, clock: Clock, deadline: Instant) {
    shared.renewed(to_std(deadline.saturating_duration_since(clock.now())));
}

/// A seed for jitter that differs between agents started together.
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
