//! What the machines report of their terms, judged on the server's writes: the simulation's
//! ground truth. The judge keeps, per lease, the newest write each agent incarnation got applied,
//! the revision of its last delete and the epoch of every term begun since; it never recomputes
//! a rule of the core (no expiry arithmetic, no reading of the machine's own state).
//!
//! - A term's epoch is the `leaseTransitions` its own write stored, and strictly above the epoch
//!   of every earlier term of the lease (in the order the server applied their writes) since the
//!   lease was last deleted: a fencing token names one term.
//! - A `Renewed` stands for a write the server applied, one per write.
//! - A leader steps down as `HeldByOther` only after someone else's write landed on its lease,
//!   and as `Deleted` only if the lease was deleted: never on its own renew or its own watch
//!   echo.
//! - A machine's getters say what its events say: an epoch and a deadline exactly while a term
//!   runs, those of the term and of its last renew.

use crate::outcome::Failure;
use crate::scenario::LeaseId;
use leasehold_core::{Event, Instant, LossReason};
use std::collections::{BTreeMap, HashMap};

/// One write the server applied.
#[derive(Clone, Copy, Debug)]
struct Write {
    node: usize,
    inc: u32,
    rv: u64,
    transitions: Option<u32>,
}

/// The ground truth about one lease.
#[derive(Debug, Default)]
struct Ledger {
    /// The newest write of each agent incarnation.
    newest: Vec<Write>,
    /// The revision of its last delete (0: none).
    deleted: u64,
    /// The terms begun since the last delete, by the revision of the write that began each:
    /// their epoch and their agent.
    epochs: BTreeMap<u64, (u32, usize, u32)>,
}

impl Ledger {
    fn newest_of(&self, node: usize, inc: u32) -> Option<Write> {
        self.newest
            .iter()
            .find(|w| w.node == node && w.inc == inc)
            .copied()
    }

    /// Whether a write by anyone but `(node, inc)`, or a delete, landed after revision `rv`.
    fn changed_by_another_since(&self, node: usize, inc: u32, rv: u64) -> bool {
        self.deleted > rv
            || self
                .newest
                .iter()
                .any(|w| w.rv > rv && (w.node, w.inc) != (node, inc))
    }
}

/// A term as its machine's events tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Term {
    /// The epoch `BecameLeader` reported.
    pub(super) epoch: u32,
    /// The revision of the write that began it.
    rv: u64,
    /// The revision of the write the last `Renewed` stood for (0: none yet).
    renewed_rv: u64,
    /// The deadline the last `Renewed` gave.
    pub(super) deadline: Option<Instant>,
}

/// The server's writes per lease, and the verdict on what machines report of their terms.
#[derive(Debug, Default)]
pub(super) struct Judge {
    leases: HashMap<String, Ledger>,
}

/// A broken rule: what failed and what happened.
pub(super) type Broken = (Failure, String);

impl Judge {
    /// The server applied a write of agent `(node, inc)` to `lease`, storing revision `rv`.
    pub(super) fn written(
        &mut self,
        lease: &str,
        node: usize,
        inc: u32,
        rv: u64,
        transitions: Option<u32>,
    ) {
        let ledger = self.leases.entry(lease.to_owned()).or_default();
        let write = Write {
            node,
            inc,
            rv,
            transitions,
        };
        match ledger
            .newest
            .iter_mut()
            .find(|w| w.node == node && w.inc == inc)
        {
            Some(newest) => *newest = write,
            None => ledger.newest.push(write),
        }
    }

    /// The server deleted `lease` at revision `rv`: its epochs start over.
    pub(super) fn deleted(&mut self, lease: &str, rv: u64) {
        let ledger = self.leases.entry(lease.to_owned()).or_default();
        ledger.deleted = rv;
        ledger.epochs.clear();
    }

    /// Judges one event of agent `(node, inc)` about `lease` (`id`), given the term its events
    /// told so far; returns the term they tell now.
    pub(super) fn event(
        &mut self,
        (node, inc): (usize, u32),
        (lease, id): (&str, LeaseId),
        term: Option<Term>,
        event: &Event,
    ) -> Result<Option<Term>, Broken> {
        let ledger = self.leases.entry(lease.to_owned()).or_default();
        let newest = ledger.newest_of(node, inc);
        match event {
            Event::BecameLeader { epoch, .. } => {
                let Some(write) = newest.filter(|w| w.transitions == Some(*epoch)) else {
                    return Err((
                        Failure::EpochNotWritten { node, lease: id },
                        format!(
                            "node-{node} reports epoch {epoch} on {lease}, its newest write there \
                             stored {newest:?}"
                        ),
                    ));
                };
                let before = ledger.epochs.range(..write.rv).next_back();
                let after = ledger.epochs.range(write.rv + 1..).next();
                if before.is_some_and(|(_, &(e, ..))| e >= *epoch)
                    || after.is_some_and(|(_, &(e, ..))| e <= *epoch)
                {
                    return Err((
                        Failure::EpochNotIncreasing { lease: id },
                        format!(
                            "node-{node}'s term on {lease} (revision {}) has epoch {epoch}; the \
                             term before it {before:?}, after it {after:?} (revision, epoch)",
                            write.rv
                        ),
                    ));
                }
                ledger.epochs.insert(write.rv, (*epoch, node, inc));
                Ok(Some(Term {
                    epoch: *epoch,
                    rv: write.rv,
                    renewed_rv: 0,
                    deadline: None,
                }))
            }
            Event::Renewed { deadline } => {
                let Some(term) = term else {
                    return Ok(None);
                };
                match newest {
                    Some(write) if write.rv > term.renewed_rv => Ok(Some(Term {
                        renewed_rv: write.rv,
                        deadline: Some(*deadline),
                        ..term
                    })),
                    _ => Err((
                        Failure::RenewNotWritten { node, lease: id },
                        format!(
                            "node-{node} reports a renew of {lease} with no write of its own \
                             applied since the last one it reported (revision {})",
                            term.renewed_rv
                        ),
                    )),
                }
            }
            Event::LostLeadership { reason } => {
                let Some(term) = term else {
                    return Ok(None);
                };
                // The core's known limit: a renew of its own that timed out and still landed is,
                // to the machine, a record naming it at a version it did not see itself write,
                // which a second process under its identity could have written too; it steps
                // down. Allowed only when such a write landed.
                let unacknowledged = newest.is_some_and(|w| w.rv > term.renewed_rv);
                let justified = match reason {
                    LossReason::HeldByOther => {
                        unacknowledged || ledger.changed_by_another_since(node, inc, term.rv)
                    }
                    // A watch resumed from an older revision replays a delete from before the
                    // term, so any delete of the lease justifies it.
                    LossReason::Deleted => ledger.deleted > 0,
                    _ => true,
                };
                if justified {
                    Ok(None)
                } else {
                    Err((
                        Failure::FalseStepDown { node, lease: id },
                        format!(
                            "node-{node} steps down from {lease} ({reason:?}) though only its own \
                             writes landed since its term began at revision {}",
                            term.rv
                        ),
                    ))
                }
            }
            _ => Ok(term),
        }
    }
}

/// Whether a machine's getters agree with the term its events tell: an epoch and a deadline
/// exactly while a term runs, those it reported.
pub(super) fn getters(
    node: usize,
    term: Option<Term>,
    epoch: Option<u32>,
    deadline: Option<Instant>,
) -> Result<(), Broken> {
    let told = (term.map(|t| t.epoch), term.and_then(|t| t.deadline));
    if told == (epoch, deadline) {
        return Ok(());
    }
    Err((
        Failure::GetterDisagrees { node },
        format!(
            "node-{node}'s getters say epoch {epoch:?}, deadline {deadline:?}; its events \
             {told:?}"
        ),
    ))
}
