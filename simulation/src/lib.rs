//! A deterministic simulation of leasehold's core machines and the work they guard, against a
//! model Kubernetes API server, with per-node clock drift, pauses and crashes of a node or of
//! its agent alone, graceful shutdowns, partitions, API outages, deletes, slow, lost and failed
//! requests, and watch streams that are cut, end or expire.
//!
//! Each node is an agent running a real core machine, a [`leasehold_core::Fence`] per work (the
//! same code the binary's fence process runs) and the work itself. The verdict is on the work:
//! an oracle records when each work really started and stopped, on the simulation's true
//! time, and fails the run as soon as two works of one lease run at once, or more works than
//! slots run on the pool. It never reads a machine's getters nor recomputes a rule of the core.
//! Beside it the run checks the machines' own claims (no two believe they lead one lease), that
//! no node is woken for nothing, and, once faults stop, that work runs on the lease and on every
//! pool slot within a bound.
//!
//! [`WorkPolicy::Unfenced`] runs the old design (the agent alone stops its work) on the same
//! seeds, so the tests can show which faults each design survives.
//!
//! Everything is drawn from the scenario's seed, so a failing seed replays exactly: [`replay`]
//! re-runs it with a trace of the last events.

mod agent;
mod clock;
pub mod cold_start;
pub mod contract;
mod oracle;
mod outcome;
mod rng;
mod scenario;
mod server;
mod work;
mod world;

pub use agent::{LEADER_LEASE, MAX_SLOTS, POOL_PREFIX};
pub use clock::Clock;
pub use outcome::{Failure, Report, Violation};
pub use scenario::{Fault, FaultKind, LeaseId, Network, SECOND, Scenario};
pub use server::{Effect, Server};
pub use work::{Child, WorkPolicy};
pub use world::{Observer, World};

/// Runs a scenario, checking after every instant.
pub fn run(scenario: &Scenario) -> Result<Report, Violation> {
    World::new(scenario, false)?.run()
}

/// Runs a scenario again with tracing: the violation (if any) carries the last events.
pub fn replay(scenario: &Scenario) -> Result<Report, Violation> {
    World::new(scenario, true)?.run()
}
