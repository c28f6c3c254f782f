//! The supervisor's decisions, without I/O: what to do with the child command, the lease and
//! the process, given what the lease machine said, what the fence reported, and the agent's own
//! SIGTERM.
//!
//! # Contract
//!
//! - Inputs (`handle_*`), each with `now` on the lease machine's clock where time matters:
//!   the machine's word on leadership ([`handle_leading`](Supervisor::handle_leading),
//!   [`handle_renewed`](Supervisor::handle_renewed),
//!   [`handle_not_leading`](Supervisor::handle_not_leading),
//!   [`handle_refused`](Supervisor::handle_refused)), fed as the machine emits it, so the
//!   supervisor always acts on its latest word; the fence's report
//!   ([`handle_child_ended`](Supervisor::handle_child_ended)) or a child that could not be
//!   launched ([`handle_start_failed`](Supervisor::handle_start_failed)); SIGTERM or SIGINT
//!   ([`handle_terminate`](Supervisor::handle_terminate)); and the end of the machine's run
//!   ([`handle_machine_closed`](Supervisor::handle_machine_closed)).
//! - Outputs: [`poll_action`](Supervisor::poll_action) after every input, performed in order
//!   (see [`Action`]). [`accepts_terminate`](Supervisor::accepts_terminate) says whether a signal
//!   would change anything, so the shell leaves one it would not act on pending.
//!
//! # The rules that keep two workers apart
//!
//! - A child starts only while this agent leads, and only if it could run before the fence's
//!   SIGTERM: `now < deadline − grace`, the very check the fence makes
//!   ([`Fence::may_start`]), so a "leading" word that arrives late starts nothing.
//! - The lease is released only once no child runs: on SIGTERM, on a refusal that ends the run,
//!   on `--exit-on-loss`, the child is stopped first, while the lease is still held.
//! - Falling back to unthrottled work ([`OnRefused::Proceed`]) needs a second refusal at least a
//!   retry period after the first, with no successful answer between; work started under a lease
//!   is stopped, and the lease given up, before the work runs again without one.
//!
//! A run that uses no lease at all ([`Supervisor::without_leases`]) follows the same rules for
//! its child, with nothing to lead, renew or release: the work starts at once, unbounded, and
//! the run ends with it.

use crate::child::Ended;
use crate::cli::OnChildExit;
use crate::error::AgentError;
use crate::fence::protocol::cause_name;
use leasehold_core::{Duration, Fence, Instant, StopCause};
use std::collections::VecDeque;

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

/// The supervisor's settings.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The child command's rules, when there is one.
    pub child: Option<ChildRules>,
    /// Exit when leadership is lost (`--exit-on-loss`).
    pub exit_on_loss: bool,
    /// When leases cannot be used.
    pub on_refused: OnRefused,
    /// A refusal is confirmed by another at least this much later.
    pub retry_period: Duration,
}

/// How the child command is run.
#[derive(Clone, Copy, Debug)]
pub struct ChildRules {
    /// Between the fence's SIGTERM and its SIGKILL, which comes at the deadline.
    pub grace: Duration,
    /// When the child exits on its own.
    pub on_child_exit: OnChildExit,
}

/// Until when the started work may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// The leader's deadline: the fence stops the work by it unless extended.
    Until(Instant),
    /// No lease fences it (the unthrottled fallback).
    Unbounded,
}

/// What the shell must do, in the order polled.
#[derive(Debug)]
pub enum Action {
    /// Start the child command under a fence, for `lease` with fencing epoch `epoch` (empty and
    /// 0 for unthrottled work).
    Start {
        /// The lease (a pool's slot) the work runs under.
        lease: String,
        /// `leaseTransitions`.
        epoch: u32,
        /// Until when it may run.
        validity: Validity,
    },
    /// A renew succeeded: tell the running child's fence its new deadline.
    Extend {
        /// The leader's deadline.
        deadline: Instant,
    },
    /// Ask the fence to stop the child (SIGTERM, then SIGKILL of its group after the grace
    /// period, or at the deadline if sooner).
    Stop,
    /// Let the lease machine close: step down and release the lease.
    Release,
    /// The run is over.
    Exit(Outcome),
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
    /// `Instant::MIN` until the first renew of the term says its deadline.
    deadline: Instant,
}

/// The first refusal not yet followed by a success.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    at: Instant,
    /// Successful answers counted when it came.
    successes: u64,
}

/// The supervisor's state. See the [module documentation](self) for the contract.
#[derive(Debug)]
pub struct Supervisor {
    rules: Rules,
    term: Option<Term>,
    /// A child was started and its fence has not yet reported its end.
    working: bool,
    outcome: Option<Outcome>,
    released: bool,
    unthrottled: bool,
    /// No lease is used at all: the agent only wraps the command, so the run ends with the
    /// command's own code, also when a SIGTERM stopped it.
    without_leases: bool,
    first_refusal: Option<Refusal>,
    machine_closed: bool,
    exited: bool,
    actions: VecDeque<Action>,
}

impl Supervisor {
    /// A supervisor with nothing started.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            term: None,
            working: false,
            outcome: None,
            released: false,
            unthrottled: false,
            without_leases: false,
            first_refusal: None,
            machine_closed: false,
            exited: false,
            actions: VecDeque::new(),
        }
    }

    /// A supervisor for a run without any lease (a cold start turned off): no machine runs, so
    /// none closes, and nothing is held to release. Its first action starts the work,
    /// unbounded; the run ends when the work does, with the work's exit code.
    pub fn without_leases(child: ChildRules) -> Self {
        // No request is sent, so no leadership or refusal comes to apply the other rules to.
        let mut supervisor = Self::new(Rules {
            child: Some(child),
            exit_on_loss: false,
            on_refused: OnRefused::Proceed,
            retry_period: Duration::from_secs(0),
        });
        supervisor.unthrottled = true;
        supervisor.without_leases = true;
        supervisor.released = true;
        supervisor.machine_closed = true;
        supervisor.start(Action::Start {
            lease: String::new(),
            epoch: 0,
            validity: Validity::Unbounded,
        });
        supervisor
    }

    /// Whether a SIGTERM would change anything: not once the run's end is decided.
    pub fn accepts_terminate(&self) -> bool {
        self.outcome.is_none()
    }

    /// The next thing to do.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The machine began a term of `lease` with fencing epoch `epoch`; its deadline follows.
    pub fn handle_leading(&mut self, lease: String, epoch: u32, now: Instant) {
        self.term = Some(Term {
            lease,
            epoch,
            deadline: Instant::MIN,
        });
        self.first_refusal = None;
        self.start_if_leading(now);
        self.settle();
    }

    /// A write naming this agent succeeded: it leads until `deadline`.
    pub fn handle_renewed(&mut self, deadline: Instant, now: Instant) {
        if let Some(term) = &mut self.term {
            term.deadline = term.deadline.max(deadline);
        }
        if self.working {
            self.actions.push_back(Action::Extend { deadline });
        } else {
            self.start_if_leading(now);
        }
        self.settle();
    }

    /// The machine stopped leading.
    pub fn handle_not_leading(&mut self) {
        self.term = None;
        if self.working && !self.unthrottled {
            tracing::info!("no longer leading: stopping the child command");
            self.actions.push_back(Action::Stop);
        }
        if self.rules.exit_on_loss && self.outcome.is_none() {
            self.outcome = Some(Outcome::Lost);
        }
        self.settle();
    }

    /// A request was refused in a way retrying will not fix; `successes` counts the successful
    /// answers so far, so a refusal can be told from a passing one.
    pub fn handle_refused(&mut self, error: AgentError, successes: u64, now: Instant) {
        if self.outcome.is_none() && !self.unthrottled {
            self.refused(error, successes, now);
        }
        self.settle();
    }

    /// The fence reported that nothing of the work is left (or failed).
    pub fn handle_child_ended(&mut self, ended: Result<Ended, AgentError>, now: Instant) {
        self.working = false;
        self.ended(ended, now);
        self.settle();
    }

    /// The child asked for by [`Action::Start`] could not be launched.
    pub fn handle_start_failed(&mut self, error: AgentError) {
        self.working = false;
        self.outcome.get_or_insert(Outcome::Failed(error));
        self.settle();
    }

    /// SIGTERM or SIGINT: stop the child while the lease is held, then release.
    pub fn handle_terminate(&mut self) {
        if self.outcome.is_none() {
            if self.working {
                self.actions.push_back(Action::Stop);
            }
            self.outcome = Some(Outcome::Terminated);
        }
        self.settle();
    }

    /// The lease machine finished: it asks for nothing more.
    pub fn handle_machine_closed(&mut self) {
        self.machine_closed = true;
        self.settle();
    }

    /// What follows from the state after every input: the lease is released once an end is
    /// decided and no child runs; the run is over once the machine closed and no child runs,
    /// unless unthrottled work is still to come.
    fn settle(&mut self) {
        if self.exited || self.working {
            return;
        }
        if self.outcome.is_some() {
            self.release();
        }
        if self.machine_closed && (self.outcome.is_some() || !self.unthrottled) {
            self.exited = true;
            let outcome = self.outcome.take().unwrap_or(Outcome::Terminated);
            self.actions.push_back(Action::Exit(outcome));
        }
    }

    fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.actions.push_back(Action::Release);
        }
    }

    /// Starts the child if there is one to run and this agent leads now, with time to spare
    /// before the fence's SIGTERM.
    fn start_if_leading(&mut self, now: Instant) {
        let Some(child) = self.rules.child else {
            return;
        };
        if self.working || self.outcome.is_some() {
            return;
        }
        let Some(term) = &self.term else {
            return;
        };
        if !Fence::new(term.deadline, child.grace).may_start(now) {
            tracing::debug!(lease = %term.lease, "not starting the child command: leadership ends before it could run");
            return;
        }
        let action = Action::Start {
            lease: term.lease.clone(),
            epoch: term.epoch,
            validity: Validity::Until(term.deadline),
        };
        self.start(action);
    }

    fn start(&mut self, action: Action) {
        if self.rules.child.is_some() {
            self.working = true;
            self.actions.push_back(action);
        }
    }

    fn ended(&mut self, ended: Result<Ended, AgentError>, now: Instant) {
        let (code, cause) = match ended {
            Ok(Ended::Exited { code, cause }) => (code, cause),
            // Unbounded work cannot have run out of time: the refusal is final.
            Ok(Ended::Refused) if self.without_leases => {
                self.outcome = Some(Outcome::Failed(AgentError::runtime(
                    "the fence refused to start the command",
                )));
                return;
            }
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
        if self.without_leases {
            tracing::info!(code, cause = cause_name, "the child command ended");
            self.outcome = Some(Outcome::ChildExited(code));
            return;
        }
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
                let on_child_exit = self.rules.child.map(|c| c.on_child_exit);
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
                self.next_work(now);
            }
            (None, StopCause::Stopped | StopCause::HolderGone) => {
                tracing::info!(code, cause = cause_name, "stopped the child command");
                self.next_work(now);
            }
        }
    }

    fn refused(&mut self, error: AgentError, successes: u64, now: Instant) {
        match self.rules.on_refused {
            OnRefused::Exit => {
                if self.working {
                    self.actions.push_back(Action::Stop);
                }
                self.outcome = Some(Outcome::Failed(error));
            }
            OnRefused::Retry => {
                if self.first_refusal.is_none() {
                    tracing::warn!("{error}");
                    tracing::warn!("leases cannot be used: retrying until the access is granted");
                } else {
                    tracing::debug!("{error}");
                }
                self.first_refusal
                    .get_or_insert(Refusal { at: now, successes });
            }
            OnRefused::Proceed => {
                // A success since the first refusal means it was passing: start again.
                if self
                    .first_refusal
                    .is_some_and(|first| first.successes != successes)
                {
                    self.first_refusal = None;
                }
                match self.first_refusal {
                    None => {
                        self.first_refusal = Some(Refusal { at: now, successes });
                        tracing::warn!("{error}");
                        tracing::warn!(
                            "leases cannot be used: if an attempt a retry period from now is \
                             refused too, proceeding without them (unthrottled)"
                        );
                    }
                    // Another slot's answer to the same moment's requests confirms nothing.
                    Some(first) if now < first.at.saturating_add(self.rules.retry_period) => {}
                    Some(_) => self.proceed_without_leases(error, now),
                }
            }
        }
    }

    fn proceed_without_leases(&mut self, error: AgentError, now: Instant) {
        tracing::warn!("{error}");
        tracing::warn!(
            "leases cannot be used: proceeding without them (unthrottled); pass --enforce \
             (enforce_leader_election: true) to refuse instead"
        );
        self.unthrottled = true;
        if self.working {
            // Work started under a lease stops as any leader's does, by its deadline at the
            // latest: the lease is released, and the work started again unthrottled, only once
            // it is gone (see `ended`), so no other member's work can overlap it meanwhile.
            self.actions.push_back(Action::Stop);
        } else {
            self.next_work(now);
        }
    }

    /// After the work stopped with nothing decided: unthrottled from now on, or again under
    /// the lease if this agent still leads.
    fn next_work(&mut self, now: Instant) {
        if self.unthrottled {
            // With no lease work left: give the lease up and run the command without one.
            self.release();
            self.start(Action::Start {
                lease: String::new(),
                epoch: 0,
                validity: Validity::Unbounded,
            });
        } else {
            self.start_if_leading(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: u64 = 3;
    const RETRY: u64 = 2;

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn supervisor(on_refused: OnRefused, on_child_exit: OnChildExit) -> Supervisor {
        Supervisor::new(Rules {
            child: Some(ChildRules {
                grace: Duration::from_secs(GRACE),
                on_child_exit,
            }),
            exit_on_loss: false,
            on_refused,
            retry_period: Duration::from_secs(RETRY),
        })
    }

    fn elector() -> Supervisor {
        supervisor(OnRefused::Exit, OnChildExit::Exit)
    }

    /// The actions due, each as a short line, so a test reads as the order of events.
    fn drain(sv: &mut Supervisor) -> Vec<String> {
        std::iter::from_fn(|| sv.poll_action())
            .map(|action| match action {
                Action::Start {
                    lease,
                    epoch,
                    validity: Validity::Until(at),
                } => format!("start {lease} epoch {epoch} until {}s", at.as_secs()),
                Action::Start {
                    validity: Validity::Unbounded,
                    ..
                } => "start unbounded".to_owned(),
                Action::Extend { deadline } => format!("extend {}s", deadline.as_secs()),
                Action::Stop => "stop".to_owned(),
                Action::Release => "release".to_owned(),
                Action::Exit(Outcome::Failed(e)) => format!("exit failed: {e}"),
                Action::Exit(outcome) => format!("exit {outcome:?}"),
            })
            .collect()
    }

    fn exited(code: i32, cause: StopCause) -> Result<Ended, AgentError> {
        Ok(Ended::Exited { code, cause })
    }

    /// A supervisor whose child runs for `lease` epoch 4 until 10 s.
    fn leading_with_child(mut sv: Supervisor) -> Supervisor {
        sv.handle_leading("lease".into(), 4, s(0));
        sv.handle_renewed(s(10), s(0));
        assert_eq!(drain(&mut sv), ["start lease epoch 4 until 10s"]);
        sv
    }

    fn denied(n: u32) -> AgentError {
        AgentError::permission(format!("denied {n}"))
    }

    #[test]
    fn the_child_starts_at_the_first_renew_of_a_term_with_its_epoch_and_deadline() {
        let mut sv = elector();
        sv.handle_leading("lease".into(), 4, s(0));
        assert!(drain(&mut sv).is_empty(), "no deadline yet: nothing starts");
        sv.handle_renewed(s(10), s(0));
        assert_eq!(drain(&mut sv), ["start lease epoch 4 until 10s"]);
        sv.handle_renewed(s(12), s(2));
        assert_eq!(drain(&mut sv), ["extend 12s"], "one child per term");
    }

    #[test]
    fn a_leading_word_that_arrives_too_late_to_run_before_the_fences_sigterm_starts_nothing() {
        let mut sv = elector();
        sv.handle_leading("lease".into(), 4, s(8));
        sv.handle_renewed(s(10), s(7));
        assert!(
            drain(&mut sv).is_empty(),
            "7 s + 3 s grace reaches the deadline: the fence would SIGTERM at once"
        );
        sv.handle_renewed(s(10), s(11));
        assert!(drain(&mut sv).is_empty(), "past the deadline");
        sv.handle_renewed(s(13), s(9));
        assert_eq!(
            drain(&mut sv),
            ["start lease epoch 4 until 13s"],
            "a renew that leaves time starts it"
        );
    }

    #[test]
    fn a_renew_after_leadership_was_lost_starts_nothing() {
        let mut sv = leading_with_child(elector());
        sv.handle_not_leading();
        assert_eq!(drain(&mut sv), ["stop"]);
        sv.handle_renewed(s(20), s(1));
        assert_eq!(
            drain(&mut sv),
            ["extend 20s"],
            "the stop is under way; the fence never undoes it"
        );
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(2));
        sv.handle_renewed(s(20), s(2));
        assert!(drain(&mut sv).is_empty(), "no term: no new child");
    }

    #[test]
    fn work_the_fence_stopped_at_the_deadline_runs_again_only_if_a_renew_left_time() {
        let mut sv = leading_with_child(elector());
        sv.handle_child_ended(exited(137, StopCause::Expired), s(10));
        assert!(
            drain(&mut sv).is_empty(),
            "the term's deadline passed: no start"
        );
        let mut sv = leading_with_child(elector());
        sv.handle_renewed(s(20), s(9));
        assert_eq!(drain(&mut sv), ["extend 20s"]);
        // The extension reached the fence after it had begun to stop: the work ended, but this
        // agent still leads until 20 s.
        sv.handle_child_ended(exited(143, StopCause::Expired), s(10));
        assert_eq!(drain(&mut sv), ["start lease epoch 4 until 20s"]);
    }

    #[test]
    fn sigterm_stops_the_child_while_the_lease_is_held_and_releases_only_after() {
        let mut sv = leading_with_child(elector());
        assert!(sv.accepts_terminate());
        sv.handle_terminate();
        assert_eq!(drain(&mut sv), ["stop"], "the lease is still held");
        assert!(!sv.accepts_terminate(), "a second signal is left pending");
        sv.handle_renewed(s(12), s(1));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["extend 12s"], "no release, no exit yet");
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(2));
        assert_eq!(drain(&mut sv), ["release", "exit Terminated"]);
    }

    #[test]
    fn sigterm_without_a_child_releases_at_once_and_exits_when_the_machine_closed() {
        let mut sv = elector();
        sv.handle_terminate();
        assert_eq!(drain(&mut sv), ["release"]);
        sv.handle_leading("lease".into(), 1, s(0));
        sv.handle_renewed(s(10), s(0));
        assert!(
            drain(&mut sv).is_empty(),
            "nothing starts once the end is decided"
        );
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["exit Terminated"]);
        sv.handle_machine_closed();
        assert!(drain(&mut sv).is_empty(), "one exit");
    }

    #[test]
    fn exit_on_loss_stops_the_child_then_releases_and_exits() {
        let mut sv = supervisor(OnRefused::Exit, OnChildExit::Exit);
        sv.rules.exit_on_loss = true;
        let mut sv = leading_with_child(sv);
        sv.handle_not_leading();
        assert_eq!(drain(&mut sv), ["stop"]);
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(1));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["release", "exit Lost"]);
    }

    #[test]
    fn without_exit_on_loss_a_lost_term_waits_for_the_next() {
        let mut sv = leading_with_child(elector());
        sv.handle_not_leading();
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(1));
        assert_eq!(drain(&mut sv), ["stop"]);
        sv.handle_leading("lease".into(), 6, s(20));
        sv.handle_renewed(s(30), s(20));
        assert_eq!(drain(&mut sv), ["start lease epoch 6 until 30s"]);
    }

    #[test]
    fn a_child_that_exits_ends_the_run_with_its_code_or_campaigns_again() {
        let mut sv = leading_with_child(elector());
        sv.handle_child_ended(exited(7, StopCause::Exited), s(1));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["release", "exit ChildExited(7)"]);

        let mut sv = leading_with_child(supervisor(OnRefused::Exit, OnChildExit::Release));
        sv.handle_child_ended(exited(0, StopCause::Exited), s(1));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["release", "exit Recampaign"]);
    }

    #[test]
    fn a_child_the_fence_refused_starts_again_only_at_a_renew() {
        let mut sv = leading_with_child(elector());
        sv.handle_child_ended(Ok(Ended::Refused), s(1));
        assert!(drain(&mut sv).is_empty());
        sv.handle_renewed(s(12), s(2));
        assert_eq!(drain(&mut sv), ["start lease epoch 4 until 12s"]);
    }

    #[test]
    fn a_child_that_cannot_be_started_or_a_fence_that_dies_ends_the_run() {
        let mut sv = leading_with_child(elector());
        sv.handle_start_failed(AgentError::runtime("no such file"));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["release", "exit failed: no such file"]);

        let mut sv = leading_with_child(elector());
        sv.handle_child_ended(Err(AgentError::runtime("fence died")), s(1));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["release", "exit failed: fence died"]);
    }

    #[test]
    fn a_refusal_under_exit_stops_the_child_before_releasing() {
        let mut sv = leading_with_child(elector());
        sv.handle_refused(denied(1), 5, s(1));
        assert_eq!(drain(&mut sv), ["stop"]);
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(2));
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["release", "exit failed: denied 1"]);
    }

    #[test]
    fn a_refusal_under_retry_never_ends_the_run() {
        let mut sv = supervisor(OnRefused::Retry, OnChildExit::Exit);
        for t in 0..10 {
            sv.handle_refused(denied(t), 0, s(u64::from(t) * 5));
        }
        assert!(drain(&mut sv).is_empty());
        assert!(sv.accepts_terminate());
        sv.handle_leading("lease-0".into(), 1, s(60));
        sv.handle_renewed(s(70), s(60));
        assert_eq!(drain(&mut sv), ["start lease-0 epoch 1 until 70s"]);
    }

    #[test]
    fn the_unthrottled_fallback_needs_a_second_refusal_a_retry_period_later() {
        let mut sv = supervisor(OnRefused::Proceed, OnChildExit::Exit);
        sv.handle_refused(denied(1), 0, s(10));
        sv.handle_refused(denied(2), 0, s(11));
        assert!(
            drain(&mut sv).is_empty(),
            "another slot's answer to the same moment's requests confirms nothing"
        );
        sv.handle_refused(denied(3), 0, s(12));
        assert_eq!(drain(&mut sv), ["release", "start unbounded"]);
        sv.handle_refused(denied(4), 0, s(20));
        sv.handle_not_leading();
        assert!(
            drain(&mut sv).is_empty(),
            "unthrottled: refusals and losses change nothing"
        );
    }

    #[test]
    fn a_success_between_refusals_restarts_the_wait_for_confirmation() {
        let mut sv = supervisor(OnRefused::Proceed, OnChildExit::Exit);
        sv.handle_refused(denied(1), 3, s(10));
        sv.handle_refused(denied(2), 4, s(13));
        assert!(
            drain(&mut sv).is_empty(),
            "a success came between: not confirmed"
        );
        sv.handle_refused(denied(3), 4, s(14));
        assert!(
            drain(&mut sv).is_empty(),
            "one second after the new first refusal"
        );
        sv.handle_refused(denied(4), 4, s(15));
        assert_eq!(drain(&mut sv), ["release", "start unbounded"]);
    }

    #[test]
    fn a_new_term_restarts_the_wait_for_confirmation() {
        let mut sv = supervisor(OnRefused::Proceed, OnChildExit::Exit);
        sv.handle_refused(denied(1), 0, s(10));
        sv.handle_leading("lease-1".into(), 1, s(11));
        sv.handle_refused(denied(2), 0, s(12));
        assert!(drain(&mut sv).is_empty());
    }

    #[test]
    fn work_under_a_lease_stops_and_the_lease_is_given_up_before_running_unthrottled() {
        let mut sv = leading_with_child(supervisor(OnRefused::Proceed, OnChildExit::Release));
        sv.handle_refused(denied(1), 2, s(1));
        sv.handle_refused(denied(2), 2, s(3));
        assert_eq!(
            drain(&mut sv),
            ["stop"],
            "the lease stays held while the work stops"
        );
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(4));
        assert_eq!(drain(&mut sv), ["release", "start unbounded"]);
        sv.handle_not_leading();
        sv.handle_machine_closed();
        assert!(
            drain(&mut sv).is_empty(),
            "unthrottled work is not stopped by the lease"
        );
        sv.handle_child_ended(exited(0, StopCause::Exited), s(30));
        assert_eq!(
            drain(&mut sv),
            ["exit ChildExited(0)"],
            "no campaign follows unthrottled work"
        );
    }

    #[test]
    fn work_the_fence_stopped_before_the_fallback_was_confirmed_runs_unthrottled_after_release() {
        let mut sv = leading_with_child(supervisor(OnRefused::Proceed, OnChildExit::Exit));
        sv.handle_refused(denied(1), 2, s(1));
        sv.handle_not_leading();
        assert_eq!(drain(&mut sv), ["stop"]);
        sv.handle_refused(denied(2), 2, s(4));
        assert_eq!(
            drain(&mut sv),
            ["stop"],
            "confirmed: the stop is asked again"
        );
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(5));
        assert_eq!(drain(&mut sv), ["release", "start unbounded"]);
    }

    /// A supervisor without leases, its work started.
    fn without_leases() -> Supervisor {
        let mut sv = Supervisor::without_leases(ChildRules {
            grace: Duration::from_secs(GRACE),
            on_child_exit: OnChildExit::Release,
        });
        assert_eq!(drain(&mut sv), ["start unbounded"], "at once");
        sv
    }

    #[test]
    fn without_leases_the_work_starts_at_once_unbounded_and_ends_the_run_with_its_code() {
        let mut sv = without_leases();
        sv.handle_child_ended(exited(3, StopCause::Exited), s(5));
        assert_eq!(
            drain(&mut sv),
            ["exit ChildExited(3)"],
            "no lease to release, and no campaign even under --on-child-exit release"
        );
        sv.handle_child_ended(exited(0, StopCause::Exited), s(6));
        assert!(drain(&mut sv).is_empty(), "one exit");
    }

    #[test]
    fn without_leases_sigterm_stops_the_work_and_the_run_ends_with_its_code() {
        let mut sv = without_leases();
        sv.handle_terminate();
        assert_eq!(drain(&mut sv), ["stop"], "no exit while the work runs");
        assert!(!sv.accepts_terminate(), "a second signal is left pending");
        sv.handle_child_ended(exited(143, StopCause::Stopped), s(1));
        assert_eq!(drain(&mut sv), ["exit ChildExited(143)"]);
    }

    #[test]
    fn without_leases_work_that_cannot_run_ends_the_run_with_the_error() {
        let mut sv = without_leases();
        sv.handle_start_failed(AgentError::usage("the child command is empty"));
        assert_eq!(drain(&mut sv), ["exit failed: the child command is empty"]);

        let mut sv = without_leases();
        sv.handle_child_ended(Ok(Ended::Refused), s(0));
        assert_eq!(
            drain(&mut sv),
            ["exit failed: the fence refused to start the command"],
            "unbounded work is not waiting for a renew"
        );

        let mut sv = without_leases();
        sv.handle_child_ended(Err(AgentError::runtime("fence died")), s(1));
        assert_eq!(drain(&mut sv), ["exit failed: fence died"]);
    }

    #[test]
    fn without_a_child_command_leadership_starts_nothing() {
        let mut sv = Supervisor::new(Rules {
            child: None,
            exit_on_loss: false,
            on_refused: OnRefused::Exit,
            retry_period: Duration::from_secs(RETRY),
        });
        sv.handle_leading("lease".into(), 1, s(0));
        sv.handle_renewed(s(10), s(0));
        sv.handle_not_leading();
        assert!(drain(&mut sv).is_empty());
        sv.handle_machine_closed();
        assert_eq!(drain(&mut sv), ["exit Terminated"]);
    }
}
