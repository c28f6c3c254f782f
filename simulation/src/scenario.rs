//! What a simulation run contains: candidates, timing, the work they run, network behaviour and a
//! fault schedule. A scenario is plain data, so a fuzzer can build one from arbitrary bytes and a
//! failing run can be printed and replayed.

use crate::rng::Rng;
use crate::work::{Child, WorkPolicy};
use leasehold_core::heartbeat::BACKOFF_MAX;
use leasehold_core::{Duration, Timing};

/// One second in simulated microseconds.
pub const SECOND: u64 = 1_000_000;

/// Which lease something concerns: the elected one, or a slot of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseId {
    /// The lease the electors contend for ([`crate::LEADER_LEASE`]).
    Leader,
    /// Slot `i` of the pool (`slot-i`).
    Slot(u16),
}

impl LeaseId {
    /// The Lease object's name.
    pub fn name(self) -> String {
        match self {
            Self::Leader => crate::LEADER_LEASE.to_owned(),
            Self::Slot(i) => format!("{}-{i}", crate::POOL_PREFIX),
        }
    }
}

/// A fault that holds over a window of simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The whole node is frozen (a VM freeze, SIGSTOP of every process): agent, fence and work
    /// handle nothing, and the clocks run on.
    Pause(usize),
    /// Only the agent is stopped (SIGSTOP, a long GC): its machine gets no inputs, while its
    /// fence and its work run on.
    PauseAgent(usize),
    /// The whole node crashes (power loss): agent, fence and work die at once. A new agent
    /// (same identity, fresh state) starts at the end.
    Crash(usize),
    /// Only the agent dies (OOM kill, SIGKILL): its fences see their pipe close, its work is
    /// left to them. A new agent process with the same identity, like a restarted StatefulSet
    /// Pod, starts at the end.
    KillAgent(usize),
    /// The node shuts down gracefully at the start (work stopped first, then the lease
    /// released) and starts again at the end.
    Shutdown(usize),
    /// The node cannot reach the API server: its requests time out, its watches fail.
    Partition(usize),
    /// The API server answers nothing until the end, then handles what it received.
    Outage,
    /// `kubectl delete` of the lease at the start (the end is ignored).
    Delete(LeaseId),
    /// The server throttles the node: each of its requests is answered 429 with a Retry-After
    /// of [`Fault::RETRY_AFTER`], unapplied.
    Throttle(usize),
    /// The node's writes reach the server and are applied, but their answers are lost: the
    /// client times out on a write that landed (a create then conflicts with itself).
    LoseWriteAnswers(usize),
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

impl Fault {
    /// The Retry-After of a [`FaultKind::Throttle`]: the longest the model's server asks for.
    pub const RETRY_AFTER: Duration = Duration::from_secs(3);
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
    /// Heartbeat nodes, after the members: each renews the lease named after its identity.
    pub heartbeats: usize,
    /// Per node (electors first, then members, then heartbeats): the identity it runs under,
    /// `node-{k}`. Two nodes given the same `k` share one identity (two agents given one node
    /// name).
    pub identities: Vec<usize>,
    /// Per node: whether it watches.
    pub watch: Vec<bool>,
    /// Per node: clock rate in ppm of real time.
    pub rates_ppm: Vec<u64>,
    /// How far clock rates may stray from real time, in ppm; the liveness bound uses it.
    pub max_drift_ppm: u64,
    /// The wall clocks' resolution, µs (1: exact). A coarse one makes some renews write the
    /// `renewTime` already stored: an unchanged spec, which the server does not store.
    pub wall_resolution: u64,
    /// How the work is stopped: by a fence (the design) or by the agent alone (the old one).
    pub policy: WorkPolicy,
    /// SIGTERM-to-SIGKILL grace of every node's work.
    pub grace: Duration,
    /// Per node: how its work answers SIGTERM.
    pub children: Vec<Child>,
    /// Revisions the server keeps for watches; a watch resumed from an older one gets 410.
    pub history: usize,
    /// The server ends each watch stream after a uniform `½..1 ×` this, µs (as the API server
    /// ends watches at their timeout).
    pub watch_lifetime: u64,
    /// RBAC grants the slots by name only: a pool's stream is refused (403), and each member
    /// reads and watches its slots one by one.
    pub names_only: bool,
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
        self.electors + self.pool_members + self.heartbeats
    }

    /// Whether node `n` is a heartbeat node.
    pub fn is_heartbeat(&self, n: usize) -> bool {
        n >= self.electors + self.pool_members
    }

    /// When the quiet tail starts.
    pub fn quiet_start(&self) -> u64 {
        self.duration - self.quiet_tail
    }

    /// How long after the quiet tail begins the faults before it have drained: the slowest
    /// request sent just before it lands, and its answer (or the client's timeout) comes back.
    pub fn drain_time(&self) -> u64 {
        self.network.slow_latency.max(self.network.max_latency) * 2
            + self.timing.request_timeout().as_micros()
    }

    /// When in-flight faults have drained after the quiet tail began.
    pub fn calm_from(&self) -> u64 {
        self.quiet_start() + self.drain_time()
    }

    /// The bound within which a free or expired lease must be taken, and its work started,
    /// once the API answers normally again: `lease_duration + 2.2 × retry` on the slowest
    /// allowed clock, plus a few network round trips. The work starts on the answer that makes
    /// its node leader (a `Renewed` follows every `BecameLeader`), and a node's earlier work on
    /// that lease was killed by its fence at its own deadline, before the lease could expire.
    pub fn liveness_bound(&self) -> u64 {
        let local = self.timing.lease_duration().as_micros()
            + self.timing.retry_period().as_micros() * 22 / 10;
        self.on_slowest_clock(local) + 4 * Network::CALM.max_latency + 1_000
    }

    /// The longest a reachable heartbeat's lease goes unwritten: its renew interval (a quarter of
    /// the lease duration, stretched by up to 4 % of jitter) on the slowest allowed clock, and
    /// a round trip.
    pub fn heartbeat_bound(&self) -> u64 {
        let local = self.timing.lease_duration().as_micros() / 4 * 104 / 100;
        self.on_slowest_clock(local) + 2 * Network::CALM.max_latency + 1_000
    }

    /// How long after the calm heartbeats are judged: the longest wait a failure before it can
    /// leave (the heartbeat's backoff, or a server's Retry-After of at most 3 s in this model),
    /// twice, then one renew interval. Twice because a timed-out write that landed before the
    /// calm makes the first renew after it conflict, and the re-read that follows waits out the
    /// backoff the failures before the calm built up.
    pub fn heartbeat_settle(&self) -> u64 {
        2 * BACKOFF_MAX.as_micros().max(3 * SECOND) + self.heartbeat_bound()
    }

    /// The shortest quiet tail in which every liveness check runs: faults drain, then a leader
    /// and a full pool are due within the liveness bound and every heartbeat is judged at least
    /// once per renew interval for a few intervals.
    pub fn shortest_judged_tail(&self) -> u64 {
        let heartbeats = if self.heartbeats > 0 {
            self.heartbeat_settle() + 3 * self.heartbeat_bound()
        } else {
            0
        };
        self.drain_time() + self.liveness_bound().max(heartbeats)
    }

    /// `local` µs of the slowest allowed clock, in real µs.
    fn on_slowest_clock(&self, local: u64) -> u64 {
        local * 1_000_000 / (1_000_000 - self.max_drift_ppm)
    }

    /// A fault-free base for hand-written scenarios: exact clocks, a calm network, watching
    /// nodes with distinct identities, fenced work whose child exits at SIGTERM, the old default
    /// grace `lease − renew`, and a quiet second half.
    pub fn calm(
        seed: u64,
        electors: usize,
        pool_members: usize,
        pool_size: usize,
        duration: u64,
    ) -> Self {
        let nodes = electors + pool_members;
        let timing = Timing::DEFAULT;
        Self {
            seed,
            timing,
            electors,
            pool_members,
            pool_size,
            heartbeats: 0,
            identities: (0..nodes).collect(),
            watch: vec![true; nodes],
            rates_ppm: vec![1_000_000; nodes],
            max_drift_ppm: 0,
            wall_resolution: 1,
            policy: WorkPolicy::Fenced,
            grace: Duration::from_ticks(
                timing.lease_duration().as_ticks() - timing.renew_deadline().as_ticks(),
            ),
            children: vec![Child::ExitsAfter(0); nodes],
            history: 1_000,
            watch_lifetime: 300 * SECOND,
            names_only: false,
            duration,
            quiet_tail: duration / 2,
            network: Network::CALM,
            faults: Vec::new(),
        }
    }

    /// Two electors whose children ignore SIGTERM (only SIGKILL stops the work): node 1 is down
    /// for the first 5 s so node 0 leads, then `fault` hits node 0 from 20 s to 100 s. The
    /// shape of the hand-over tests: what node 0's work does against node 1's.
    pub fn fault_on_the_leader(seed: u64, fault: FaultKind, duration: u64) -> Self {
        let mut s = Self::calm(seed, 2, 0, 1, duration);
        s.children = vec![Child::IgnoresTerm; 2];
        s.quiet_tail = 100 * SECOND;
        s.faults = vec![
            Fault {
                kind: FaultKind::Crash(1),
                start: 0,
                end: 5 * SECOND,
            },
            Fault {
                kind: fault,
                start: 20 * SECOND,
                end: 100 * SECOND,
            },
        ];
        s
    }

    /// Drops the deletes near an agent's start (the simulation's, or a restart after a crash,
    /// a kill or a shutdown): from the slowest answer before it (a first read sent then may be
    /// answered after the delete; twice the request timeout, at least the slow latency: 10 s at
    /// the default timing) to a lease duration after that. A process cannot tell a lease that
    /// never existed from one deleted a moment ago, so one whose first read is answered just
    /// after a delete creates the lease at once: the documented limit, with its own test.
    /// Everywhere else a delete is fair game.
    pub fn keep_deletes_clear_of_starts(&mut self) {
        let before = (2 * self.timing.request_timeout().as_micros()).max(self.network.slow_latency);
        let after = before + self.timing.lease_duration().as_micros();
        let restarts = self.faults.iter().filter_map(|f| match f.kind {
            // A heartbeat node's restart reads only its own lease.
            FaultKind::Crash(n) | FaultKind::KillAgent(n) | FaultKind::Shutdown(n)
                if !self.is_heartbeat(n) =>
            {
                Some((n, f.end))
            }
            _ => None,
        });
        // A node frozen when its agent starts sends its first read when it thaws.
        let first_reads: Vec<(usize, u64)> = restarts
            .map(|(n, at)| {
                let thawed = self
                    .faults
                    .iter()
                    .filter(|f| {
                        matches!(f.kind, FaultKind::Pause(p) | FaultKind::PauseAgent(p) if p == n)
                            && f.start <= at
                            && at < f.end
                    })
                    .map(|f| f.end)
                    .max();
                (n, thawed.unwrap_or(at))
            })
            .collect();
        let starts: Vec<u64> = core::iter::once(0)
            .chain(first_reads.iter().map(|(_, at)| *at))
            .collect();
        self.faults.retain(|f| {
            !matches!(f.kind, FaultKind::Delete(_))
                || starts.iter().all(|&start| {
                    f.start.saturating_add(before) < start || f.start > start.saturating_add(after)
                })
        });
    }

    /// A scenario drawn from `seed`: 2–5 electors, 0–5 members on 1–3 slots, clocks drifting up
    /// to ±1 % (half the runs, where an overrun of the margin shows) or ±10 %, sometimes a shared
    /// identity, children that obey or ignore SIGTERM, a grace of 0–5 s, lossy and slow
    /// requests, a short watch history, and pauses (of a node or its agent alone), crashes (of
    /// a node or its agent alone), shutdowns, partitions, API outages and deletes over
    /// `duration`, then a quiet tail of 90 s. Beside them 0–2 heartbeat nodes with faults of
    /// their own, drawn apart so the rest of the scenario is the same with or without them.
    pub fn random(seed: u64, duration: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5ce7_a210);
        let electors = rng.range(2, 6) as usize;
        let pool_members = rng.range(0, 6) as usize;
        let pool_size = rng.range(1, 4) as usize;
        let nodes = electors + pool_members;
        let max_drift_ppm = if rng.chance(500) { 10_000 } else { 100_000 };
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
            let kind = match rng.range(0, 8) {
                0 => FaultKind::Pause(node),
                1 => FaultKind::PauseAgent(node),
                2 => FaultKind::Crash(node),
                3 => FaultKind::KillAgent(node),
                4 => FaultKind::Shutdown(node),
                5 => FaultKind::Partition(node),
                6 => FaultKind::Outage,
                _ => FaultKind::Delete(match rng.range(0, pool_size as u64 + 1) {
                    0 => LeaseId::Leader,
                    i => LeaseId::Slot(i as u16 - 1),
                }),
            };
            let length = rng.range(SECOND, 40 * SECOND);
            let start = rng.range(0, faulty.saturating_sub(length));
            faults.push(Fault {
                kind,
                start,
                end: (start + length).min(faulty),
            });
        }
        let mut identities: Vec<usize> = (0..nodes).collect();
        if rng.chance(250) {
            // Two agents of one role given one name: the second runs as the first.
            let (lo, n) = if pool_members >= 2 && rng.chance(500) {
                (electors, pool_members)
            } else {
                (0, electors)
            };
            let a = lo + rng.range(0, n as u64) as usize;
            let b = lo + rng.range(0, n as u64) as usize;
            identities[b.max(a)] = a.min(b);
        }
        let mut scenario = Self {
            seed,
            timing: Timing::DEFAULT,
            electors,
            pool_members,
            pool_size,
            heartbeats: 0,
            identities,
            watch: (0..nodes).map(|_| rng.chance(500)).collect(),
            rates_ppm: (0..nodes)
                .map(|_| rng.range(1_000_000 - max_drift_ppm, 1_000_000 + max_drift_ppm + 1))
                .collect(),
            max_drift_ppm,
            wall_resolution: match rng.range(0, 8) {
                0 => SECOND,
                1 => 4 * SECOND,
                _ => 1,
            },
            policy: WorkPolicy::Fenced,
            grace: Duration::from_millis(rng.range(0, 5_001)),
            children: (0..nodes)
                .map(|_| {
                    if rng.chance(500) {
                        Child::IgnoresTerm
                    } else {
                        Child::ExitsAfter(rng.range(0, 2 * SECOND))
                    }
                })
                .collect(),
            history: rng.range(3, 200) as usize,
            watch_lifetime: rng.range(20 * SECOND, 300 * SECOND),
            names_only: false,
            duration,
            quiet_tail,
            network,
            faults,
        };
        let mut extra = Rng::new(seed ^ 0x4ea7_b347);
        for _ in 0..extra.range(0, 3) {
            let rate = extra.range(1_000_000 - max_drift_ppm, 1_000_000 + max_drift_ppm + 1);
            let n = scenario.add_heartbeat(rate);
            for _ in 0..extra.range(0, 4) {
                let kind = match extra.range(0, 6) {
                    0 => FaultKind::Pause(n),
                    1 => FaultKind::PauseAgent(n),
                    2 => FaultKind::Crash(n),
                    3 => FaultKind::KillAgent(n),
                    4 => FaultKind::Shutdown(n),
                    _ => FaultKind::Partition(n),
                };
                let length = extra.range(SECOND, 40 * SECOND);
                let start = extra.range(0, faulty.saturating_sub(length));
                scenario.faults.push(Fault {
                    kind,
                    start,
                    end: (start + length).min(faulty),
                });
            }
        }
        scenario
    }

    /// Adds a heartbeat node whose clock runs at `rate_ppm`, and returns its index.
    pub fn add_heartbeat(&mut self, rate_ppm: u64) -> usize {
        let n = self.nodes();
        self.heartbeats += 1;
        self.identities.push(n);
        self.watch.push(false);
        self.rates_ppm.push(rate_ppm);
        self.children.push(Child::ExitsAfter(0));
        n
    }
}
