//! A deterministic simulation of leasehold's core machines against a model Kubernetes API
//! server, with per-node clock drift, pauses, crashes, graceful shutdowns, partitions, API
//! outages, slow, lost and failed requests, and cut watch streams.
//!
//! After every event it checks the safety properties the design promises:
//! - no two electors believe they lead at once, and no two pool members hold the same slot;
//! - whoever believes it leads (or holds a slot) is the holder the server has stored;
//! - nobody believes it leads past `renew_deadline` after sending its last successful claim, as
//!   the harness itself measures it on that node's clock;
//!
//! and, once faults stop, that a leader and a full pool appear within `lease_duration + 2.2 ×
//! retry` (on the slowest allowed clock, plus network round trips).
//!
//! Everything is drawn from the scenario's seed, so a failing seed replays exactly: [`replay`]
//! re-runs it with a trace of the last events.

mod clock;
pub mod contract;
mod rng;
mod scenario;
mod server;
mod world;

pub use clock::Clock;
pub use scenario::{Fault, FaultKind, Network, SECOND, Scenario};
pub use server::{Server, Stored};
pub use world::{LEADER_LEASE, MAX_SLOTS, Observer, POOL_PREFIX, Report, Violation, World};

/// Runs a scenario, checking after every event.
pub fn run(scenario: &Scenario) -> Result<Report, Violation> {
    World::new(scenario, false).run()
}

/// Runs a scenario again with tracing: the violation (if any) carries the last events.
pub fn replay(scenario: &Scenario) -> Result<Report, Violation> {
    World::new(scenario, true).run()
}
