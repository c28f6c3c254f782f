//! Runs one core machine with the agent's outputs: the driver does the lease work while a
//! supervisor reacts to what the machine decided (start or stop the child, exit, fall back) and
//! to the agent's own SIGTERM.
//!
//! Order on SIGTERM: the child is stopped first, while the lease is still held, and only then
//! does the driver release the lease, so no other agent's child can start while this one runs.

use crate::child::{Running, exit_code};
use crate::cli::OnChildExit;
use crate::error::AgentError;
use crate::rbac;
use crate::shutdown::Signals;
use crate::transport::Metered;
use leasehold_core::{ApiError, Verb};
use leasehold_driver::{Clock, Machine, drive};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the machine decided, as the supervisor needs it.
#[derive(Debug)]
pub enum Note {
    /// This agent now leads `lease` with fencing epoch `epoch`.
    Leading {
        /// The lease (a pool's slot).
        lease: String,
        /// `leaseTransitions`.
        epoch: u32,
    },
    /// This agent stopped leading.
    NotLeading,
    /// A request was refused in a way retrying will not fix: 401, 403, or a create answered
    /// 404 (no Lease API, or no such namespace).
    Refused {
        /// The verb.
        verb: Verb,
        /// The answer.
        error: ApiError,
    },
}

/// What to do when leases cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRefused {
    /// Exit with the error (elect, heartbeat, a pool with `--enforce`).
    Exit,
    /// Warn, stop using leases and run unthrottled (a pool without `--enforce`).
    Proceed,
}

/// How the supervisor behaves.
pub struct Plan {
    /// The child command; empty for none.
    pub command: Vec<String>,
    /// This agent's identity, for the child's environment.
    pub identity: String,
    /// SIGTERM-to-SIGKILL grace period for the child.
    pub grace: Duration,
    /// When the child exits on its own.
    pub on_child_exit: OnChildExit,
    /// Exit when leadership is lost (`--exit-on-loss`).
    pub exit_on_loss: bool,
    /// Keep the child running when the lease is lost (a cold start's cache build is throttled,
    /// not fenced).
    pub keep_child_on_loss: bool,
    /// When leases cannot be used.
    pub on_refused: OnRefused,
    /// The namespace and lease names, for RBAC advice.
    pub namespace: String,
    /// The lease names used.
    pub leases: Vec<String>,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// SIGTERM or SIGINT: the child was stopped and the lease released.
    Terminated,
    /// The child exited with this code; the lease was released.
    ChildExited(i32),
    /// The child exited and `--on-child-exit release` asks to campaign again.
    Recampaign,
    /// Leadership was lost and `--exit-on-loss` is set.
    Lost,
    /// The run cannot go on.
    Failed(AgentError),
}

/// Drives `machine` over `transport`, handing each event to `on_event` (which logs it, updates
/// the shared status and returns what the supervisor must know), until the plan says stop.
pub async fn run<M: Machine>(
    machine: &mut M,
    transport: Arc<Metered>,
    plan: &Plan,
    signals: &mut Signals,
    mut on_event: impl FnMut(&M, M::Event) -> Option<Note>,
) -> Outcome {
    let (notes, received) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let failures = transport.clone();
    let driving = drive(
        machine,
        transport,
        Clock::default(),
        async {
            let _ = stopped.await;
        },
        move |m, event| {
            if let Some(note) = on_event(m, event) {
                let _ = notes.send(note);
            }
        },
    );
    let supervising = supervise(received, stop, plan, signals, move || {
        failures.inner.last_failure_message()
    });
    let ((), outcome) = tokio::join!(driving, supervising);
    outcome
}

async fn supervise(
    mut notes: mpsc::UnboundedReceiver<Note>,
    stop: oneshot::Sender<()>,
    plan: &Plan,
    signals: &mut Signals,
    server_says: impl Fn() -> Option<String>,
) -> Outcome {
    let mut stop = Some(stop);
    let mut child: Option<Running> = None;
    let mut outcome: Option<Outcome> = None;
    let mut driving = true;
    let mut unthrottled = false;
    loop {
        if outcome.is_some() && child.is_none() {
            // The child is gone: now the lease may be released.
            if let Some(stop) = stop.take() {
                let _ = stop.send(());
            }
            if !driving {
                break;
            }
        }
        if !driving && child.is_none() && outcome.is_none() && !unthrottled {
            break;
        }
        tokio::select! {
            note = notes.recv(), if driving => match note {
                None => driving = false,
                Some(Note::Leading { lease, epoch }) => {
                    if outcome.is_none() && child.is_none() && !plan.command.is_empty() {
                        match spawn(plan, &lease, epoch) {
                            Ok(running) => child = Some(running),
                            Err(e) => outcome = Some(Outcome::Failed(e)),
                        }
                    }
                }
                Some(Note::NotLeading) => {
                    if !plan.keep_child_on_loss {
                        if let Some(running) = child.take() {
                            let code = exit_code(running.stop(plan.grace).await);
                            tracing::info!(code, "stopped the child command: no longer leading");
                        }
                    }
                    if plan.exit_on_loss && outcome.is_none() {
                        outcome = Some(Outcome::Lost);
                    }
                }
                Some(Note::Refused { verb, error }) if outcome.is_none() && !unthrottled => {
                    let err = refused(verb, &error, plan, server_says().as_deref());
                    match plan.on_refused {
                        OnRefused::Exit => {
                            if let Some(running) = child.take() {
                                running.stop(plan.grace).await;
                            }
                            outcome = Some(Outcome::Failed(err));
                        }
                        OnRefused::Proceed => {
                            tracing::warn!("{err}");
                            tracing::warn!(
                                "leases cannot be used: proceeding without them (unthrottled); \
                                 pass --enforce (enforce_leader_election: true) to refuse instead"
                            );
                            unthrottled = true;
                            if let Some(stop) = stop.take() {
                                let _ = stop.send(());
                            }
                            if child.is_none() && !plan.command.is_empty() {
                                match spawn(plan, "", 0) {
                                    Ok(running) => child = Some(running),
                                    Err(e) => outcome = Some(Outcome::Failed(e)),
                                }
                            }
                        }
                    }
                }
                Some(Note::Refused { .. }) => {}
            },
            () = signals.recv(), if outcome.is_none() => {
                if let Some(running) = child.take() {
                    let code = exit_code(running.stop(plan.grace).await);
                    tracing::info!(code, "stopped the child command before releasing");
                }
                outcome = Some(Outcome::Terminated);
            }
            status = wait(&mut child) => {
                child = None;
                let code = exit_code(status);
                tracing::info!(code, "the child command exited");
                if outcome.is_none() {
                    outcome = Some(match plan.on_child_exit {
                        OnChildExit::Exit => Outcome::ChildExited(code),
                        OnChildExit::Release if !unthrottled => Outcome::Recampaign,
                        OnChildExit::Release => Outcome::ChildExited(code),
                    });
                }
            }
        }
    }
    outcome.unwrap_or(Outcome::Terminated)
}

async fn wait(child: &mut Option<Running>) -> std::process::ExitStatus {
    match child {
        Some(running) => running.wait().await,
        None => std::future::pending().await,
    }
}

fn spawn(plan: &Plan, lease: &str, epoch: u32) -> Result<Running, AgentError> {
    Running::spawn(
        &plan.command,
        &[
            ("LEASEHOLD_EPOCH", epoch.to_string()),
            ("LEASEHOLD_LEASE", lease.to_owned()),
            ("LEASEHOLD_IDENTITY", plan.identity.clone()),
        ],
    )
}

fn refused(verb: Verb, error: &ApiError, plan: &Plan, server_says: Option<&str>) -> AgentError {
    if *error == ApiError::NotFound {
        return AgentError::runtime(format!(
            "cannot create leases in namespace \"{}\": the API server answered 404{}. The namespace \
             may not exist, or the cluster does not serve coordination.k8s.io/v1 Leases \
             (Kubernetes 1.14 or later)",
            plan.namespace,
            server_says.map(|m| format!(" ({m})")).unwrap_or_default()
        ));
    }
    rbac::denied(
        verb,
        error,
        &rbac::Needs {
            namespace: Some(&plan.namespace),
            names: &plan.leases,
        },
        server_says,
    )
}

/// Whether a failed request means leases cannot be used here.
pub fn is_refusal(verb: Verb, error: &ApiError) -> bool {
    matches!(error, ApiError::Forbidden | ApiError::Unauthorized)
        || (verb == Verb::Create && *error == ApiError::NotFound)
}
