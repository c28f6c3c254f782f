//! Runs one core machine with the agent's outputs: the driver does the lease work while a
//! supervisor reacts to what the machine decided (start, extend or stop the fenced child, exit,
//! fall back) and to the agent's own SIGTERM.
//!
//! The child runs under a fence ([`crate::fence`]) that is told the leader's deadline at every
//! renew and stops the work by it on its own. The supervisor starts a child only while this
//! agent leads at the instant of the start (`now` before the deadline less the grace period),
//! so a queued "leading" notice cannot start one after leadership was lost.
//!
//! Order on SIGTERM: the child is stopped first, while the lease is still held, and only then
//! does the driver release the lease, so no other agent's child can start while this one runs.

use crate::child::{Ended, Launcher, Running, UNBOUNDED};
use crate::cli::OnChildExit;
use crate::error::AgentError;
use crate::fence::protocol::cause_name;
use crate::rbac;
use crate::shutdown::Signals;
use crate::transport::Metered;
use leasehold_core::{ApiError, Instant, Machine, StopCause, Verb};
use leasehold_runtime::{Clock, drive};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the machine decided, as the supervisor needs it.
#[derive(Debug)]
pub enum Note {
    /// This agent now leads `lease` with fencing epoch `epoch`; a [`Note::Renewed`] with its
    /// deadline follows.
    Leading {
        /// The lease (a pool's slot).
        lease: String,
        /// `leaseTransitions`.
        epoch: u32,
    },
    /// A write naming this agent succeeded: it leads until `deadline` (the core's clock).
    Renewed {
        /// The leader's deadline.
        deadline: Instant,
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
    /// Keep trying, logging the RBAC rule that fixes it (delegation: holding a slot is the point).
    Retry,
    /// Once a refusal is confirmed by another at least a retry period later, warn, stop using
    /// leases and run unthrottled (a cold start without `--enforce`).
    Proceed,
}

/// How the supervisor behaves.
pub struct Plan {
    /// The child command run while leading, if any.
    pub child: Option<ChildPlan>,
    /// Exit when leadership is lost (`--exit-on-loss`).
    pub exit_on_loss: bool,
    /// When leases cannot be used.
    pub on_refused: OnRefused,
    /// The retry period: a refusal is confirmed by another at least this much later.
    pub retry_period: Duration,
    /// The namespace, for RBAC advice.
    pub namespace: String,
    /// The lease names used, for RBAC advice.
    pub leases: Vec<String>,
}

/// The child command and how it is run.
pub struct ChildPlan {
    /// The command, not empty.
    pub command: Vec<String>,
    /// This agent's identity, for the child's environment.
    pub identity: String,
    /// How to start the child's fence.
    pub launcher: Launcher,
    /// When the child exits on its own.
    pub on_child_exit: OnChildExit,
}

impl ChildPlan {
    /// The plan for `command`; `None` when it is empty (no child).
    pub fn new(
        command: Vec<String>,
        identity: &str,
        launcher: Launcher,
        on_child_exit: OnChildExit,
    ) -> Option<Self> {
        (!command.is_empty()).then(|| Self {
            command,
            identity: identity.to_owned(),
            launcher,
            on_child_exit,
        })
    }
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

/// The term this agent leads, as the machine last said: what a child is started for.
#[derive(Clone, Debug)]
struct Term {
    lease: String,
    epoch: u32,
    deadline: Instant,
}

/// Drives `machine` over `transport`, handing each event to `on_event` (which logs it, updates
/// the shared status and returns what the supervisor must know), until the plan says stop.
/// `clock` is the machine's clock, so deadlines can be compared with it.
pub async fn run<M: Machine>(
    machine: &mut M,
    transport: Arc<Metered>,
    clock: Clock,
    plan: &Plan,
    signals: &mut Signals,
    mut on_event: impl FnMut(&M, M::Event) -> Option<Note>,
) -> Outcome {
    let (notes, received) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let failures = transport.clone();
    let shared = transport.shared.clone();
    let successes = move || shared.successes();
    // Written as each event is handed over, so when the supervisor reads a note it sees the
    // machine's latest word on leadership, not the note's.
    let term: RefCell<Option<Term>> = RefCell::new(None);
    let recorded = &term;
    let driving = drive(
        machine,
        transport,
        clock,
        async {
            let _ = stopped.await;
        },
        // Owns the sender: when the driver returns, the supervisor's channel closes.
        move |m, event| {
            if let Some(note) = on_event(m, event) {
                record(&mut recorded.borrow_mut(), &note);
                let _ = notes.send(note);
            }
        },
    );
    let supervisor = Supervisor {
        plan,
        clock,
        term: &term,
        release: Some(stop),
        child: None,
        outcome: None,
        unthrottled: false,
        first_refusal: None,
        successes: &successes,
    };
    let supervising = supervisor.run(received, signals, move || {
        failures.inner.last_failure_message()
    });
    let ((), outcome) = tokio::join!(driving, supervising);
    outcome
}

fn record(term: &mut Option<Term>, note: &Note) {
    match note {
        Note::Leading { lease, epoch } => {
            *term = Some(Term {
                lease: lease.clone(),
                epoch: *epoch,
                deadline: Instant::MIN,
            });
        }
        Note::Renewed { deadline } => {
            if let Some(term) = term {
                term.deadline = term.deadline.max(*deadline);
            }
        }
        Note::NotLeading => *term = None,
        Note::Refused { .. } => {}
    }
}

struct Supervisor<'a> {
    plan: &'a Plan,
    clock: Clock,
    term: &'a RefCell<Option<Term>>,
    /// Resolves the driver's shutdown: the machine releases its lease and finishes.
    release: Option<oneshot::Sender<()>>,
    child: Option<Running>,
    outcome: Option<Outcome>,
    unthrottled: bool,
    /// The first refusal not yet followed by a success, and the count of successful answers
    /// then, for [`OnRefused::Proceed`].
    first_refusal: Option<(Instant, u64)>,
    /// Successful answers so far (the shared status counts them).
    successes: &'a dyn Fn() -> u64,
}

impl Supervisor<'_> {
    async fn run(
        mut self,
        mut notes: mpsc::UnboundedReceiver<Note>,
        signals: &mut Signals,
        server_says: impl Fn() -> Option<String>,
    ) -> Outcome {
        let mut driving = true;
        loop {
            if self.outcome.is_some() && self.child.is_none() {
                // The child is gone: now the lease may be released.
                self.release();
            }
            // Done once the machine has finished, unless unthrottled work still runs.
            if !driving && self.child.is_none() && (self.outcome.is_some() || !self.unthrottled) {
                break;
            }
            tokio::select! {
                note = notes.recv(), if driving => match note {
                    None => driving = false,
                    Some(Note::Leading { .. }) => {
                        self.first_refusal = None;
                        self.start_if_leading();
                    }
                    Some(Note::Renewed { deadline }) => match &self.child {
                        Some(running) => running.extend(self.clock.to_boottime_micros(deadline)),
                        None => self.start_if_leading(),
                    },
                    Some(Note::NotLeading) => {
                        if let (Some(running), false) = (&self.child, self.unthrottled) {
                            tracing::info!("no longer leading: stopping the child command");
                            running.stop();
                        }
                        if self.plan.exit_on_loss && self.outcome.is_none() {
                            self.outcome = Some(Outcome::Lost);
                        }
                    }
                    Some(Note::Refused { verb, error }) => {
                        if self.outcome.is_none() && !self.unthrottled {
                            let err = refused(verb, &error, self.plan, server_says().as_deref());
                            self.refused(err);
                        }
                    }
                },
                () = signals.recv(), if self.outcome.is_none() => {
                    if let Some(running) = &self.child {
                        running.stop();
                    }
                    self.outcome = Some(Outcome::Terminated);
                }
                ended = wait(&mut self.child) => {
                    self.child = None;
                    self.ended(ended);
                }
            }
        }
        self.outcome.unwrap_or(Outcome::Terminated)
    }

    fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }

    /// Starts the child if there is one to run and this agent leads now, with time to spare
    /// before the fence's SIGTERM (the fence checks the same instant again).
    fn start_if_leading(&mut self) {
        let Some(plan) = &self.plan.child else {
            return;
        };
        if self.child.is_some() || self.outcome.is_some() {
            return;
        }
        let Some(term) = self.term.borrow().clone() else {
            return;
        };
        let grace = crate::cluster::core_duration(plan.launcher.grace);
        if self.clock.now().saturating_add(grace) >= term.deadline {
            tracing::debug!(lease = %term.lease, "not starting the child command: leadership ends before it could run");
            return;
        }
        let valid_until = self.clock.to_boottime_micros(term.deadline);
        self.spawn(&term.lease, term.epoch, valid_until);
    }

    fn retry_period(&self) -> leasehold_core::Duration {
        crate::cluster::core_duration(self.plan.retry_period)
    }

    fn spawn(&mut self, lease: &str, epoch: u32, valid_until: u64) {
        let Some(plan) = &self.plan.child else {
            return;
        };
        let env = [
            ("LEASEHOLD_EPOCH", epoch.to_string()),
            ("LEASEHOLD_LEASE", lease.to_owned()),
            ("LEASEHOLD_IDENTITY", plan.identity.clone()),
        ];
        match plan.launcher.spawn(&plan.command, &env, valid_until) {
            Ok(running) => self.child = Some(running),
            Err(e) => self.outcome = Some(Outcome::Failed(e)),
        }
    }

    /// The fence reported that nothing of the work is left.
    fn ended(&mut self, ended: Result<Ended, AgentError>) {
        let (code, cause) = match ended {
            Ok(Ended::Exited { code, cause }) => (code, cause),
            Ok(Ended::Refused) => {
                tracing::warn!("the fence did not start the child command: leadership had ended");
                return;
            }
            Err(e) => {
                tracing::error!("{e}");
                self.outcome.get_or_insert(Outcome::Failed(e));
                return;
            }
        };
        let cause_name = cause_name(cause);
        match (&self.outcome, cause) {
            (Some(Outcome::Terminated), _) => {
                tracing::info!(
                    code,
                    cause = cause_name,
                    "stopped the child command before releasing"
                );
            }
            (Some(_), _) => tracing::info!(code, cause = cause_name, "the child command ended"),
            (None, StopCause::Exited) => {
                tracing::info!(code, "the child command exited");
                let on_child_exit = self.plan.child.as_ref().map(|c| c.on_child_exit);
                self.outcome = Some(match on_child_exit.unwrap_or_default() {
                    OnChildExit::Exit => Outcome::ChildExited(code),
                    OnChildExit::Release if !self.unthrottled => Outcome::Recampaign,
                    OnChildExit::Release => Outcome::ChildExited(code),
                });
            }
            (None, StopCause::Expired) => {
                tracing::warn!(
                    code,
                    "the fence stopped the child command at the renew deadline: no renew \
                     extended it in time"
                );
                // A renew may have come late, after the fence began to stop: then this agent
                // still leads and the work may run again.
                self.next_work();
            }
            (None, StopCause::Stopped | StopCause::HolderGone) => {
                tracing::info!(code, cause = cause_name, "stopped the child command");
                self.next_work();
            }
        }
    }

    fn refused(&mut self, err: AgentError) {
        match self.plan.on_refused {
            OnRefused::Exit => {
                if let Some(running) = &self.child {
                    running.stop();
                }
                self.outcome = Some(Outcome::Failed(err));
            }
            OnRefused::Retry => {
                if self.first_refusal.is_none() {
                    tracing::warn!("{err}");
                    tracing::warn!("leases cannot be used: retrying until the access is granted");
                } else {
                    tracing::debug!("{err}");
                }
                let successes = (self.successes)();
                self.first_refusal
                    .get_or_insert((self.clock.now(), successes));
            }
            OnRefused::Proceed => {
                let now = self.clock.now();
                let successes = (self.successes)();
                // A success since the first refusal means it was passing: start again.
                if self
                    .first_refusal
                    .is_some_and(|(_, then)| then != successes)
                {
                    self.first_refusal = None;
                }
                match self.first_refusal {
                    None => {
                        self.first_refusal = Some((now, successes));
                        tracing::warn!("{err}");
                        tracing::warn!(
                            "leases cannot be used: if an attempt a retry period from now is \
                             refused too, proceeding without them (unthrottled)"
                        );
                    }
                    // Another slot's answer to the same moment's requests confirms nothing.
                    Some((first, _)) if now < first.saturating_add(self.retry_period()) => {}
                    Some(_) => self.proceed_without_leases(err),
                }
            }
        }
    }

    fn proceed_without_leases(&mut self, err: AgentError) {
        tracing::warn!("{err}");
        tracing::warn!(
            "leases cannot be used: proceeding without them (unthrottled); pass --enforce \
             (enforce_leader_election: true) to refuse instead"
        );
        self.unthrottled = true;
        match &self.child {
            // Work started under a lease stops as any leader's does, by its deadline at the
            // latest: the lease is released, and the work started again unthrottled, only once
            // it is gone (see `ended`), so no other member's work can overlap it meanwhile.
            Some(running) => running.stop(),
            None => self.go_unthrottled(),
        }
    }

    /// After the work stopped with nothing decided: unthrottled from now on, or again under
    /// the lease if this agent still leads.
    fn next_work(&mut self) {
        if self.unthrottled {
            self.go_unthrottled();
        } else {
            self.start_if_leading();
        }
    }

    /// With no lease work left: gives the lease up and runs the command without one.
    fn go_unthrottled(&mut self) {
        self.release();
        self.spawn("", 0, UNBOUNDED);
    }
}

async fn wait(child: &mut Option<Running>) -> Result<Ended, AgentError> {
    match child {
        Some(running) => running.wait().await,
        None => std::future::pending().await,
    }
}

/// Runs `command` without any lease (a cold start turned off in the config file), until it
/// exits or the agent is told to stop.
pub async fn run_without_leases(
    launcher: &Launcher,
    command: &[String],
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let mut running = launcher.spawn(command, &[], UNBOUNDED)?;
    let ended = tokio::select! {
        ended = running.wait() => ended,
        () = signals.recv() => {
            running.stop();
            running.wait().await
        }
    };
    match ended? {
        Ended::Exited { code, .. } => Ok(code),
        Ended::Refused => Err(AgentError::runtime(
            "the fence refused to start the command",
        )),
    }
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

/// Whether a failed request means leases cannot be used here: 401 or 403 on any verb (the
/// credentials or the Role), or a create answered 404 (no such namespace, or no Lease API). A
/// read answered 404 only means the lease does not exist yet.
pub fn is_refusal(verb: Verb, error: &ApiError) -> bool {
    error.is_permanent() || (verb == Verb::Create && *error == ApiError::NotFound)
}
