//! What a simulation run contains: candidates, timing, network behaviour and a fault schedule.
//! A scenario is plain data, so a fuzzer can build one from arbitrary bytes and a failing run can
//! be printed and replayed.

use crate::rng::Rng;
use leasehold_core::Timing;

/// One second in simulated microseconds.
pub const SECOND: u64 = 1_000_000;

/// A fault that holds over a window of simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The node's process is stopped (SIGSTOP, GC, VM freeze): it handles nothing, its clock
    /// runs on.
    Pause(usize),
    /// The node crashes at the start and restarts (same identity, fresh state) at the end.
    Crash(usize),
    /// The node shuts down gracefully (release) at the start and restarts at the end.
    Shutdown(usize),
    /// The node cannot reach the API server: its requests time out, its watches fail.
    Partition(usize),
    /// The API server answers nothing until the end, then handles what it received.
    Outage,
}

/// A fault window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// From (µs of simulated time).
    pub start: u64,
    /// Until (µs).
    pub end: u64,
}

/// Request-level network and server behaviour, outside the quiet tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    /// One-way latency is uniform in `1..=max_latency` µs.
    pub max_latency: u64,
    /// Share of requests that are slow: a one-way latency up to `slow_latency` µs (beyond the
    /// client's timeout, so a write may land after its sender gave up on it).
    pub slow_permille: u64,
    /// The most a slow request takes one way.
    pub slow_latency: u64,
    /// Share of requests lost before reaching the server.
    pub request_loss_permille: u64,
    /// Share of answers lost after the server applied the request.
    pub response_loss_permille: u64,
    /// Share of requests answered 5xx without being applied.
    pub error_permille: u64,
    /// Share of requests answered 429 with a Retry-After of up to 3 s.
    pub throttle_permille: u64,
    /// Share of watch deliveries that cut the stream instead.
    pub watch_cut_permille: u64,
}

impl Network {
    /// Loopback-like: fast, nothing lost.
    pub const CALM: Self = Self {
        max_latency: 2_000,
        slow_permille: 0,
        slow_latency: 0,
        request_loss_permille: 0,
        response_loss_permille: 0,
        error_permille: 0,
        throttle_permille: 0,
        watch_cut_permille: 0,
    };
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Seeds the harness and every machine.
    pub seed: u64,
    /// Timing of every candidate.
    pub timing: Timing,
    /// Electors on the lease `leader`.
    pub electors: usize,
    /// Pool members on `slot-0 … slot-(pool_size−1)`, each holding a slot until the end.
    pub pool_members: usize,
    /// Slots in the pool.
    pub pool_size: usize,
    /// Per node (electors first, then members): whether it watches.
    pub watch: Vec<bool>,
    /// Per node: clock rate in ppm of real time.
    pub rates_ppm: Vec<u64>,
    /// How far clock rates may stray from real time, in ppm; the liveness bound uses it.
    pub max_drift_ppm: u64,
    /// Simulated duration, µs.
    pub duration: u64,
    /// The final stretch with no faults, in which liveness is checked, µs.
    pub quiet_tail: u64,
    /// Network behaviour before the quiet tail.
    pub network: Network,
    /// Fault windows, all ending before the quiet tail.
    pub faults: Vec<Fault>,
}

impl Scenario {
    /// Nodes in all.
    pub fn nodes(&self) -> usize {
        self.electors + self.pool_members
    }

    /// When the quiet tail starts.
    pub fn quiet_start(&self) -> u64 {
        self.duration - self.quiet_tail
    }

    /// A scenario drawn from `seed`: 2–5 electors, 0–5 members on 1–3 slots, clocks drifting up
    /// to ±10 %, lossy and slow requests, and pauses, crashes, shutdowns, partitions and API
    /// outages over `duration`, then a quiet tail of 90 s.
    pub fn random(seed: u64, duration: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5ce7_a210);
        let electors = rng.range(2, 6) as usize;
        let pool_members = rng.range(0, 6) as usize;
        let pool_size = rng.range(1, 4) as usize;
        let nodes = electors + pool_members;
        let max_drift_ppm = 100_000;
        let quiet_tail = 90 * SECOND;
        let faulty = duration.saturating_sub(quiet_tail);
        let network = Network {
            max_latency: rng.range(500, 200_000),
            slow_permille: rng.range(0, 30),
            slow_latency: 8 * SECOND,
            request_loss_permille: rng.range(0, 50),
            response_loss_permille: rng.range(0, 50),
            error_permille: rng.range(0, 100),
            throttle_permille: rng.range(0, 30),
            watch_cut_permille: rng.range(0, 50),
        };
        let mut faults = Vec::new();
        let windows = rng.range(0, 12);
        for _ in 0..windows {
            let node = rng.range(0, nodes as u64) as usize;
            let kind = match rng.range(0, 5) {
                0 => FaultKind::Pause(node),
                1 => FaultKind::Crash(node),
                2 => FaultKind::Shutdown(node),
                3 => FaultKind::Partition(node),
                _ => FaultKind::Outage,
            };
            let length = rng.range(SECOND, 40 * SECOND);
            let start = rng.range(0, faulty.saturating_sub(length));
            faults.push(Fault {
                kind,
                start,
                end: (start + length).min(faulty),
            });
        }
        Self {
            seed,
            timing: Timing::DEFAULT,
            electors,
            pool_members,
            pool_size,
            watch: (0..nodes).map(|_| rng.chance(500)).collect(),
            rates_ppm: (0..nodes)
                .map(|_| rng.range(1_000_000 - max_drift_ppm, 1_000_000 + max_drift_ppm + 1))
                .collect(),
            max_drift_ppm,
            duration,
            quiet_tail,
            network,
            faults,
        }
    }
}
