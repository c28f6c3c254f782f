//! What a run returns: a [`Report`] of what it exercised, or the [`Violation`] that stopped it.

use crate::scenario::LeaseId;

/// Which property failed. The work's verdicts come first: they are what users run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Two works ran on one lease at once: `(node, start µs)` of each, the earlier first.
    Overlap {
        /// The lease.
        lease: LeaseId,
        /// The work that started first.
        first: (usize, u64),
        /// The work that started while it still ran.
        second: (usize, u64),
    },
    /// More works ran on the pool than it has slots.
    PoolOverfull {
        /// Works running.
        running: usize,
        /// Slots.
        slots: usize,
    },
    /// Two machines believed they led one lease at once (the core's own claim, checked beside
    /// the work).
    TwoBelievers {
        /// The lease.
        lease: LeaseId,
        /// How many believed.
        count: usize,
    },
    /// A node was woken again and again with nothing to do.
    BusyLoop {
        /// The node.
        node: usize,
    },
    /// No work ran on the elected lease within the liveness bound of the API calming.
    NoLeader,
    /// Fewer works than `min(slots, members)` ran on the pool within the liveness bound.
    PoolNotFull,
    /// A heartbeat node's lease went unwritten on the server for longer than its renew
    /// interval allows, with the API answering normally.
    HeartbeatLate {
        /// The node.
        node: usize,
    },
    /// A term's epoch is not the `leaseTransitions` the node's own write stored.
    EpochNotWritten {
        /// The node.
        node: usize,
        /// The lease.
        lease: LeaseId,
    },
    /// A term's epoch is not above every earlier term's on the lease (since its last delete).
    EpochNotIncreasing {
        /// The lease.
        lease: LeaseId,
    },
    /// A `Renewed` with no write of the node's applied since its last one.
    RenewNotWritten {
        /// The node.
        node: usize,
        /// The lease.
        lease: LeaseId,
    },
    /// A leader stepped down as if another holder or a delete had come, with only its own
    /// writes on the server since its term began (its own renew, or its watch echo).
    FalseStepDown {
        /// The node.
        node: usize,
        /// The lease.
        lease: LeaseId,
    },
    /// A machine's getters (epoch, deadline, a slot's holder) disagree with its events or with
    /// the record the server just answered.
    GetterDisagrees {
        /// The node.
        node: usize,
    },
    /// A watch stream stayed open on a slot the node has no use for (a pool member's slots
    /// other than the one it holds).
    IdleWatch {
        /// The node.
        node: usize,
        /// The idle slot's lease.
        lease: LeaseId,
    },
    /// A machine sent a request before the Retry-After of a 429 had passed on its clock.
    IgnoredRetryAfter {
        /// The node.
        node: usize,
    },
    /// The scenario cannot be run (lists of the wrong length, a pool too large, a name out of
    /// bounds).
    Invalid,
}

/// A safety or liveness property that failed, with enough to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The scenario's seed.
    pub seed: u64,
    /// Simulated time, µs.
    pub at: u64,
    /// What failed.
    pub failure: Failure,
    /// The same, in words, with what the run knew then.
    pub what: String,
    /// The last events before it (filled when the run is replayed with tracing).
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} at {:.6}s: {}",
            self.seed,
            self.at as f64 / 1e6,
            self.what
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What a run did, for assertions that the simulation exercised something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Get/Create/Update requests sent.
    pub requests: u64,
    /// Watch streams opened.
    pub watches: u64,
    /// Watches answered 410 Expired (resumed from a version the server no longer keeps).
    pub expired: u64,
    /// Updates the server answered without storing them: the spec was unchanged.
    pub unchanged: u64,
    /// Leases deleted by a fault.
    pub deletes: u64,
    /// BecameLeader events of electors.
    pub elections: u64,
    /// LostLeadership events of electors.
    pub losses: u64,
    /// Slot acquisitions by pool members.
    pub slot_acquisitions: u64,
    /// Requests answered with 409 Conflict.
    pub conflicts: u64,
    /// Works started.
    pub works: u64,
    /// Works stopped by SIGKILL (from a fence, or the old supervisor).
    pub kills: u64,
    /// Works whose fence saw its agent die.
    pub orphans: u64,
    /// The shortest time from one node's work ending on a lease to another's starting on it,
    /// µs (`None`: no hand-over).
    pub min_gap: Option<u64>,
    /// Events processed.
    pub steps: u64,
    /// Writes the server applied to heartbeat leases.
    pub heartbeat_renewals: u64,
    /// Answers 429 Too Many Requests delivered.
    pub throttled: u64,
    /// Creates answered 409 AlreadyExists.
    pub already_exists: u64,
    /// Reservations the server stored: writes naming a next holder over another's term.
    pub reservations: u64,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.watches += other.watches;
        self.expired += other.expired;
        self.unchanged += other.unchanged;
        self.deletes += other.deletes;
        self.elections += other.elections;
        self.losses += other.losses;
        self.slot_acquisitions += other.slot_acquisitions;
        self.conflicts += other.conflicts;
        self.reservations += other.reservations;
        self.works += other.works;
        self.kills += other.kills;
        self.orphans += other.orphans;
        self.min_gap = match (self.min_gap, other.min_gap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.steps += other.steps;
        self.heartbeat_renewals += other.heartbeat_renewals;
        self.throttled += other.throttled;
        self.already_exists += other.already_exists;
    }
}
