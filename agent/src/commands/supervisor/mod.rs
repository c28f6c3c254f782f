//! Runs one core machine with the agent's outputs: the driver does the lease work while a
//! supervisor reacts to what the machine decided (start, extend or stop the fenced child, exit,
//! fall back) and to the agent's own SIGTERM.
//!
//! The decisions are the sans-IO [`Supervisor`] ([`machine`]), where the rules are written and
//! tested; this module is the shell that feeds it and performs its [`Action`]s: it launches and
//! signals fences, resolves the driver's shutdown (which releases the lease) and waits.
//!
//! The child runs under a fence ([`crate::fence`]) that is told the leader's deadline at every
//! renew and stops the work by it on its own, and checks again before starting it.

mod machine;
mod refusal;

pub use machine::{ChildRules, OnRefused, Outcome, Rules};
pub use refusal::is_refusal;

use crate::child::{Ended, Launcher, Running, UNBOUNDED};
use crate::cli::OnChildExit;
use crate::error::AgentError;
use crate::shutdown::Signals;
use crate::transport::Metered;
use leasehold_client::{Election, Leadership};
use leasehold_core::{ApiError, Duration, Instant, Machine, Verb};
use leasehold_runtime::RequestError;
use leasehold_runtime::{Clock, drive_reporting};
use machine::{Action, Supervisor, Validity};
use std::cell::RefCell;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

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
    /// How the machine watches its leases, for RBAC advice.
    pub watches: Watches,
}

/// How a command watches its leases: what its RBAC advice asks for beside get, create and
/// update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watches {
    /// Not at all: a heartbeat, or a command run with `--poll`.
    Nothing,
    /// Each lease by name: an election.
    ByName,
    /// All its leases with one stream of the namespace: a watching pool, which RBAC must grant
    /// as `list` and `watch` of every lease in the namespace.
    Namespace,
}

impl Plan {
    fn rules(&self) -> Rules {
        Rules {
            child: self.child.as_ref().map(ChildPlan::rules),
            exit_on_loss: self.exit_on_loss,
            on_refused: self.on_refused,
            retry_period: self.retry_period,
        }
    }
}

/// The child command and how it is run.
pub struct ChildPlan {
    /// The command, not empty.
    pub command: Vec<String>,
    /// This agent's identity, for the child's environment; `None` when the run uses no lease,
    /// and the child is given no lease variables.
    pub identity: Option<String>,
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
            identity: Some(identity.to_owned()),
            launcher,
            on_child_exit,
        })
    }

    fn rules(&self) -> ChildRules {
        ChildRules {
            grace: crate::duration::to_core(self.launcher.grace),
            on_child_exit: self.on_child_exit,
        }
    }

    fn spawn(
        &self,
        clock: Clock,
        lease: &str,
        epoch: u32,
        validity: Validity,
    ) -> Result<Running, AgentError> {
        let env = match &self.identity {
            Some(identity) => vec![
                ("LEASEHOLD_EPOCH", epoch.to_string()),
                ("LEASEHOLD_LEASE", lease.to_owned()),
                ("LEASEHOLD_IDENTITY", identity.clone()),
            ],
            None => Vec::new(),
        };
        let valid_until = match validity {
            Validity::Until(deadline) => clock.to_boottime_micros(deadline),
            Validity::Unbounded => UNBOUNDED,
        };
        self.launcher.spawn(&self.command, &env, valid_until)
    }
}

/// Drives `machine` over `transport`, handing each event to `on_event` (which logs it, updates
/// the shared status and returns what the supervisor must know), until the plan says stop.
/// `clock` is the machine's clock, so deadlines can be compared with it.
///
/// Each note reaches the supervisor as the machine emits it, so its decisions rest on the
/// machine's latest word on leadership; the shell performs them after.
pub async fn run<M: Machine>(
    machine: &mut M,
    transport: Arc<Metered>,
    clock: Clock,
    plan: &Plan,
    signals: &mut Signals,
    mut on_event: impl FnMut(&M, M::Event) -> Option<Note>,
) -> Outcome {
    let supervisor = RefCell::new(Supervisor::new(plan.rules()));
    let decided = Notify::new();
    let (release, released) = oneshot::channel::<()>();
    let (supervisor, decided) = (&supervisor, &decided);
    let status = transport.shared.clone();
    let driving = async move {
        drive_reporting(
            machine,
            transport,
            clock,
            async {
                let _ = released.await;
            },
            |m, event, failure| {
                let Some(note) = on_event(m, event) else {
                    return;
                };
                let successes = status.successes();
                feed(
                    &mut supervisor.borrow_mut(),
                    note,
                    failure,
                    plan,
                    successes,
                    clock.now(),
                );
                decided.notify_one();
            },
        )
        .await;
        supervisor.borrow_mut().handle_machine_closed();
        decided.notify_one();
    };
    let mut release = Some(release);
    let shell = perform(
        supervisor,
        decided,
        plan.child.as_ref(),
        clock,
        signals,
        move || {
            if let Some(release) = release.take() {
                let _ = release.send(());
            }
        },
    );
    let ((), outcome) = tokio::join!(driving, shell);
    outcome
}

/// Hands `note` to the supervisor at `now`; a refusal is explained with the refused request
/// (`failure`) and the `successes` so far.
fn feed(
    supervisor: &mut Supervisor,
    note: Note,
    failure: Option<&RequestError>,
    plan: &Plan,
    successes: u64,
    now: Instant,
) {
    match note {
        Note::Leading { lease, epoch } => supervisor.handle_leading(lease, epoch, now),
        Note::Renewed { deadline } => supervisor.handle_renewed(deadline, now),
        Note::NotLeading => supervisor.handle_not_leading(),
        Note::Refused { verb, error } => {
            let error = refusal::explain(verb, &error, failure, plan);
            supervisor.handle_refused(error, successes, now);
        }
    }
}

/// A note of the elector's, with the failed request it came from, if any.
pub type ElectionNote = (Note, Option<RequestError>);

/// [`run`] for an election campaigning through the library's [`Election`] handle: its observer
/// sends each note (in order, as the elector emits it) to `notes`; a close of the handle is the
/// release, and [`Leadership::Closed`] the end of the machine.
pub async fn run_election(
    election: &Election,
    notes: &mut mpsc::UnboundedReceiver<ElectionNote>,
    clock: Clock,
    plan: &Plan,
    signals: &mut Signals,
    successes: impl Fn() -> u64,
) -> Outcome {
    let supervisor = RefCell::new(Supervisor::new(plan.rules()));
    let decided = Notify::new();
    let (supervisor, decided) = (&supervisor, &decided);
    let handle = |(note, failure): ElectionNote| {
        let now = clock.now();
        feed(
            &mut supervisor.borrow_mut(),
            note,
            failure.as_ref(),
            plan,
            successes(),
            now,
        );
        decided.notify_one();
    };
    let mut leadership = election.leadership();
    let driving = async {
        loop {
            tokio::select! {
                biased;
                Some(note) = notes.recv() => handle(note),
                closed = leadership.wait_for(|l| *l == Leadership::Closed) => {
                    // Every note was sent before the close was published: take them first.
                    while let Ok(note) = notes.try_recv() {
                        handle(note);
                    }
                    let _ = closed;
                    break;
                }
            }
        }
        supervisor.borrow_mut().handle_machine_closed();
        decided.notify_one();
    };
    let shell = perform(
        supervisor,
        decided,
        plan.child.as_ref(),
        clock,
        signals,
        || election.close(),
    );
    let ((), outcome) = tokio::join!(driving, shell);
    outcome
}

/// The shell: performs the supervisor's actions in order, and feeds it what happens meanwhile
/// (its own notes, through `decided`; the agent's signals; the child's end), until it says the
/// run is over. `release` lets the lease machine close; `None` when no lease is used.
async fn perform(
    supervisor: &RefCell<Supervisor>,
    decided: &Notify,
    child_plan: Option<&ChildPlan>,
    clock: Clock,
    signals: &mut Signals,
    mut release: impl FnMut(),
) -> Outcome {
    let mut child: Option<Running> = None;
    loop {
        // Bound to a statement of its own, so the borrow ends before the action is taken.
        let action = supervisor.borrow_mut().poll_action();
        let Some(action) = action else {
            let listening = supervisor.borrow().accepts_terminate();
            tokio::select! {
                () = decided.notified() => {}
                () = signals.recv(), if listening => supervisor.borrow_mut().handle_terminate(),
                ended = wait(&mut child) => {
                    child = None;
                    supervisor.borrow_mut().handle_child_ended(ended, clock.now());
                }
            }
            continue;
        };
        match action {
            Action::Start {
                lease,
                epoch,
                validity,
            } => {
                let started = child_plan.map(|c| c.spawn(clock, &lease, epoch, validity));
                match started {
                    Some(Ok(running)) => child = Some(running),
                    Some(Err(e)) => supervisor.borrow_mut().handle_start_failed(e),
                    None => {}
                }
            }
            Action::Extend { deadline } => {
                if let Some(running) = &child {
                    running.extend(clock.to_boottime_micros(deadline));
                }
            }
            Action::Stop => {
                if let Some(running) = &child {
                    running.stop();
                }
            }
            Action::Release => release(),
            Action::Exit(outcome) => return outcome,
        }
    }
}

async fn wait(child: &mut Option<Running>) -> Result<Ended, AgentError> {
    match child {
        Some(running) => running.wait().await,
        None => std::future::pending().await,
    }
}

/// Runs `command` without any lease (a cold start turned off in the config file), under the
/// supervisor's rules for a run without leases, until it exits or the agent is told to stop;
/// `Ok` carries the command's exit code.
pub async fn run_without_leases(
    launcher: Launcher,
    command: Vec<String>,
    signals: &mut Signals,
) -> Result<i32, AgentError> {
    let plan = ChildPlan {
        command,
        identity: None,
        launcher,
        on_child_exit: OnChildExit::Exit,
    };
    let supervisor = RefCell::new(Supervisor::without_leases(plan.rules()));
    let outcome = perform(
        &supervisor,
        &Notify::new(),
        Some(&plan),
        Clock::default(),
        signals,
        || {},
    )
    .await;
    match outcome {
        Outcome::ChildExited(code) => Ok(code),
        Outcome::Failed(e) => Err(e),
        Outcome::Terminated | Outcome::Recampaign | Outcome::Lost => Ok(0),
    }
}
