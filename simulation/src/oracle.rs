//! The verdict on the work, independent of the core: it sees only when each work process was
//! started and when it actually stopped, on the simulation's true time, and never reads a
//! machine's getters or recomputes a rule of the core (no expiry arithmetic, no `is_leader`).
//!
//! A work runs over a half-open interval `[start, end)` of real time; a work frozen with its
//! whole node does nothing, so a freeze ends its interval and a thaw begins a new one. The
//! world asks for the verdict once every event of an instant has been handled, so a work that
//! ends at `t` and one that starts at `t` do not overlap.

use crate::outcome::Failure;
use crate::scenario::LeaseId;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug)]
struct Running {
    work: u64,
    node: usize,
    lease: LeaseId,
    since: u64,
}

/// Which works run now, and the tightest hand-over seen so far.
#[derive(Debug)]
pub struct Oracle {
    pool_size: usize,
    running: Vec<Running>,
    /// Per lease: the node whose work ended last, and when.
    last_end: HashMap<LeaseId, (usize, u64)>,
    min_gap: Option<u64>,
}

impl Oracle {
    /// For a pool of `pool_size` slots beside the elected lease.
    pub fn new(pool_size: usize) -> Self {
        Self {
            pool_size,
            running: Vec::new(),
            last_end: HashMap::new(),
            min_gap: None,
        }
    }

    /// Work `work` of `node` started (or thawed) on `lease` at `now`.
    pub fn begin(&mut self, work: u64, node: usize, lease: LeaseId, now: u64) {
        if let Some(&(before, ended)) = self.last_end.get(&lease) {
            if before != node {
                let gap = now.saturating_sub(ended);
                self.min_gap = Some(self.min_gap.map_or(gap, |g| g.min(gap)));
            }
        }
        self.running.push(Running {
            work,
            node,
            lease,
            since: now,
        });
    }

    /// Work `work` stopped (or froze) at `now`; nothing if it was not running.
    pub fn end(&mut self, work: u64, now: u64) {
        if let Some(i) = self.running.iter().position(|r| r.work == work) {
            let r = self.running.swap_remove(i);
            self.last_end.insert(r.lease, (r.node, now));
        }
    }

    /// Works running on `lease`.
    pub fn running(&self, lease: LeaseId) -> usize {
        self.running.iter().filter(|r| r.lease == lease).count()
    }

    /// Works running on the pool's slots.
    pub fn pool_running(&self) -> usize {
        self.running
            .iter()
            .filter(|r| matches!(r.lease, LeaseId::Slot(_)))
            .count()
    }

    /// The shortest time between one node's work ending on a lease and another node's work
    /// starting on it, µs: the margin the run actually kept.
    pub fn min_gap(&self) -> Option<u64> {
        self.min_gap
    }

    /// Whether the works running now are allowed: at most one per lease (the elected one and
    /// each slot), and at most as many on the pool as it has slots.
    pub fn verdict(&self) -> Result<(), Failure> {
        for (i, a) in self.running.iter().enumerate() {
            if let Some(b) = self.running[i + 1..].iter().find(|b| b.lease == a.lease) {
                let (first, second) = if a.since <= b.since { (a, b) } else { (b, a) };
                return Err(Failure::Overlap {
                    lease: a.lease,
                    first: (first.node, first.since),
                    second: (second.node, second.since),
                });
            }
        }
        let pool = self.pool_running();
        if pool > self.pool_size {
            return Err(Failure::PoolOverfull {
                running: pool,
                slots: self.pool_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_over_at_the_same_instant_is_no_overlap_and_its_gap_is_zero() {
        let mut o = Oracle::new(1);
        o.begin(1, 0, LeaseId::Leader, 10);
        o.end(1, 20);
        o.begin(2, 1, LeaseId::Leader, 20);
        assert!(o.verdict().is_ok());
        assert_eq!(o.min_gap(), Some(0));
    }

    #[test]
    fn two_works_on_one_lease_overlap_whoever_runs_them() {
        let mut o = Oracle::new(2);
        o.begin(1, 0, LeaseId::Slot(0), 10);
        o.begin(2, 0, LeaseId::Slot(1), 11);
        assert!(o.verdict().is_ok(), "two slots, two works");
        o.begin(3, 0, LeaseId::Slot(0), 12);
        assert_eq!(
            o.verdict(),
            Err(Failure::Overlap {
                lease: LeaseId::Slot(0),
                first: (0, 10),
                second: (0, 12),
            }),
            "even on the same node"
        );
    }

    #[test]
    fn a_frozen_work_does_not_count_and_a_restart_on_the_same_node_is_no_hand_over() {
        let mut o = Oracle::new(1);
        o.begin(1, 0, LeaseId::Leader, 0);
        o.end(1, 5);
        o.begin(2, 1, LeaseId::Leader, 8);
        o.end(2, 9);
        o.begin(3, 1, LeaseId::Leader, 9);
        assert!(o.verdict().is_ok());
        assert_eq!(o.min_gap(), Some(3));
        assert_eq!(o.running(LeaseId::Leader), 1);
    }

    #[test]
    fn more_works_on_the_pool_than_slots_is_a_failure() {
        let mut o = Oracle::new(1);
        o.begin(1, 0, LeaseId::Slot(0), 0);
        o.begin(2, 1, LeaseId::Slot(1), 0);
        assert_eq!(
            o.verdict(),
            Err(Failure::PoolOverfull {
                running: 2,
                slots: 1
            })
        );
        assert_eq!(o.pool_running(), 2);
    }
}
