//! The simulation loop: nodes running core machines, a network that delays, loses and fails
//! requests, the model server, the fault schedule, and the safety checker run after every event.

use crate::clock::Clock;
use crate::rng::Rng;
use crate::scenario::{FaultKind, Network, SECOND, Scenario};
use crate::server::Server;
use leasehold_core::{
    ApiError, Duration, Elector, ElectorConfig, Event, Identity, Instant, LeaseName, Operation,
    Pool, PoolConfig, Request, Response, WatchEvent,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write;

/// Most slots a simulated pool may have.
pub const MAX_SLOTS: usize = 4;
/// The elected lease's name.
pub const LEADER_LEASE: &str = "leader";
/// The pool's prefix.
pub const POOL_PREFIX: &str = "slot";
/// Consecutive wake-ups without any request, event or state change before the run is declared
/// a busy loop (a `poll_timeout` that keeps asking to be woken for nothing).
const BUSY_LIMIT: u32 = 10_000;

/// A safety or liveness property that failed, with enough to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The scenario's seed.
    pub seed: u64,
    /// Simulated time, µs.
    pub at: u64,
    /// What failed.
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
    /// BecameLeader events of electors.
    pub elections: u64,
    /// LostLeadership events of electors.
    pub losses: u64,
    /// Slot acquisitions by pool members.
    pub slot_acquisitions: u64,
    /// Requests answered with 409 Conflict.
    pub conflicts: u64,
    /// Events processed.
    pub steps: u64,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.watches += other.watches;
        self.elections += other.elections;
        self.losses += other.losses;
        self.slot_acquisitions += other.slot_acquisitions;
        self.conflicts += other.conflicts;
        self.steps += other.steps;
    }
}

enum Machine {
    Elector(Box<Elector>),
    Member(Box<Pool<MAX_SLOTS>>),
}

struct Node {
    identity: Identity,
    clock: Clock,
    watch: bool,
    machine: Option<Machine>,
    inc: u32,
    paused_until: u64,
    partitioned_until: u64,
    wake_at: Option<u64>,
    /// Per slot: local send instant of the outstanding claim (a write naming this node).
    claim_sent: [Option<Instant>; MAX_SLOTS],
    /// Per slot: local send instant of the last claim the node saw succeed. The checker's own
    /// account of the leader's deadline, independent of the machine's.
    term_from: [Option<Instant>; MAX_SLOTS],
    busy: u32,
}

// Most queued events carry a request or a lease; boxing them would allocate per event.
#[allow(clippy::large_enum_variant)]
enum Ev {
    Server {
        node: usize,
        inc: u32,
        req: Request,
        reply_after: Option<u64>,
        inject: Option<ApiError>,
    },
    Client {
        node: usize,
        inc: u32,
        slot: u16,
        resp: Response,
    },
    Watch {
        node: usize,
        inc: u32,
        slot: u16,
        event: WatchEvent,
    },
    Wake {
        node: usize,
        inc: u32,
    },
    FaultStart(usize),
    FaultEnd(usize),
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Watcher {
    node: usize,
    inc: u32,
    slot: u16,
    name: String,
    last_delivery: u64,
}

/// The whole simulated world.
pub struct World<'s> {
    scenario: &'s Scenario,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    server: Server,
    watchers: Vec<Watcher>,
    outage_until: u64,
    nodes: Vec<Node>,
    report: Report,
    trace: Option<Vec<String>>,
    request_timeout: u64,
    leader_seen_in_tail: Option<u64>,
    pool_full_in_tail: Option<u64>,
    observer: Option<Box<Observer<'s>>>,
}

/// Called with every application event: simulated time (µs), node index, slot, event.
pub type Observer<'s> = dyn FnMut(u64, usize, u16, &Event) + 's;

impl<'s> World<'s> {
    /// A world at time 0 with every node started.
    pub fn new(scenario: &'s Scenario, trace: bool) -> Self {
        let mut rng = Rng::new(scenario.seed);
        let nodes = (0..scenario.nodes())
            .map(|i| Node {
                identity: Identity::new(&format!("node-{i}")).expect("fits"),
                clock: Clock {
                    origin: rng.range(0, 1_000 * SECOND),
                    rate_ppm: scenario.rates_ppm[i],
                    wall_skew: rng.range(0, 7_200 * SECOND) as i64 - 3_600 * SECOND as i64,
                },
                watch: scenario.watch[i],
                machine: None,
                inc: 0,
                paused_until: 0,
                partitioned_until: 0,
                wake_at: None,
                claim_sent: [None; MAX_SLOTS],
                term_from: [None; MAX_SLOTS],
                busy: 0,
            })
            .collect();
        // client-go's per-request timeout: max(1 s, renew_deadline / 2).
        let request_timeout = (scenario.timing.renew_deadline().as_micros() / 2).max(SECOND);
        let mut world = Self {
            scenario,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            server: Server::default(),
            watchers: Vec::new(),
            outage_until: 0,
            nodes,
            report: Report::default(),
            trace: trace.then(Vec::new),
            request_timeout,
            leader_seen_in_tail: None,
            pool_full_in_tail: None,
            observer: None,
        };
        for (i, fault) in scenario.faults.iter().enumerate() {
            world.push(fault.start, Ev::FaultStart(i));
            world.push(fault.end, Ev::FaultEnd(i));
        }
        for n in 0..world.nodes.len() {
            world.start_node(n);
        }
        world
    }

    /// Calls `observer` with every application event of every node.
    pub fn observe(mut self, observer: impl FnMut(u64, usize, u16, &Event) + 's) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let line = format!("{:>12.6}s {}", self.now as f64 / 1e6, line());
            trace.push(line);
            if trace.len() > 400 {
                trace.drain(..200);
            }
        }
    }

    fn start_node(&mut self, n: usize) {
        let s = self.scenario;
        let node = &mut self.nodes[n];
        node.inc += 1;
        node.claim_sent = [None; MAX_SLOTS];
        node.term_from = [None; MAX_SLOTS];
        node.wake_at = None;
        let seed = s.seed ^ ((n as u64) << 40) ^ (u64::from(node.inc) << 20);
        node.machine = Some(if n < s.electors {
            Machine::Elector(Box::new(Elector::new(
                ElectorConfig {
                    lease: LeaseName::new(LEADER_LEASE).expect("valid"),
                    identity: node.identity.clone(),
                    timing: s.timing,
                    watch: node.watch,
                },
                seed,
            )))
        } else {
            Machine::Member(Box::new(
                Pool::new(
                    PoolConfig {
                        prefix: POOL_PREFIX,
                        size: s.pool_size,
                        identity: node.identity.clone(),
                        timing: s.timing,
                        watch: node.watch,
                    },
                    seed,
                )
                .expect("valid pool"),
            ))
        });
        self.log(|| format!("node-{n} starts"));
        self.after_input(n);
    }

    fn stop_node(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.machine = None;
        node.inc += 1;
        node.wake_at = None;
        self.watchers.retain(|w| w.node != n);
        self.log(|| format!("node-{n} stops"));
    }

    fn network(&self) -> Network {
        if self.now >= self.scenario.quiet_start() {
            Network::CALM
        } else {
            self.scenario.network
        }
    }

    fn latency(&mut self, net: &Network) -> u64 {
        if self.rng.chance(net.slow_permille) {
            self.rng
                .range(net.max_latency, net.slow_latency.max(net.max_latency + 1))
        } else {
            self.rng.range(1, net.max_latency + 1)
        }
    }

    fn send(&mut self, n: usize, req: Request) {
        let inc = self.nodes[n].inc;
        let slot = req.slot;
        let t = self.now;
        let net = self.network();
        self.log(|| format!("node-{n} sends slot {slot} {:?}", req.op));
        match &req.op {
            Operation::Watch { resource_version } => {
                self.report.watches += 1;
                let lat = self.rng.range(1, net.max_latency + 1);
                if self.nodes[n].partitioned_until > t || self.outage_until > t {
                    self.push(
                        t + lat,
                        Ev::Watch {
                            node: n,
                            inc,
                            slot,
                            event: WatchEvent::Failed,
                        },
                    );
                    return;
                }
                let name = req.lease.as_str().to_owned();
                self.watchers.retain(|w| !(w.node == n && w.slot == slot));
                let mut watcher = Watcher {
                    node: n,
                    inc,
                    slot,
                    name,
                    last_delivery: t + lat,
                };
                if let Some(stored) = self.server.get(&watcher.name) {
                    let behind = resource_version.as_ref().is_none_or(|rv| {
                        rv.as_str().parse::<u64>().map_or(true, |v| v < stored.rv)
                    });
                    if behind {
                        let lease = self.server.lease(&watcher.name).expect("present");
                        watcher.last_delivery = t + lat;
                        self.push(
                            t + lat,
                            Ev::Watch {
                                node: n,
                                inc,
                                slot,
                                event: WatchEvent::Changed(lease),
                            },
                        );
                    }
                }
                self.watchers.push(watcher);
                return;
            }
            Operation::Unwatch => {
                self.watchers.retain(|w| !(w.node == n && w.slot == slot));
                return;
            }
            Operation::Create(record) | Operation::Update { record, .. } => {
                if record.holder.is(&self.nodes[n].identity) {
                    let local = self.nodes[n].clock.local(t);
                    self.nodes[n].claim_sent[usize::from(slot)] = Some(local);
                }
            }
            Operation::Get => {}
        }
        self.report.requests += 1;
        let timeout_at = t + self.request_timeout;
        if self.nodes[n].partitioned_until > t || self.rng.chance(net.request_loss_permille) {
            self.push(
                timeout_at,
                Ev::Client {
                    node: n,
                    inc,
                    slot,
                    resp: Err(ApiError::Timeout),
                },
            );
            return;
        }
        let there = self.latency(&net);
        let back = self.latency(&net);
        let inject = if self.rng.chance(net.error_permille) {
            Some(ApiError::Server { status: 503 })
        } else if self.rng.chance(net.throttle_permille) {
            let after = self.rng.range(0, 3) + 1;
            Some(ApiError::TooManyRequests {
                retry_after: Some(Duration::from_secs(after)),
            })
        } else {
            None
        };
        let answered =
            !self.rng.chance(net.response_loss_permille) && there + back <= self.request_timeout;
        if !answered {
            self.push(
                timeout_at,
                Ev::Client {
                    node: n,
                    inc,
                    slot,
                    resp: Err(ApiError::Timeout),
                },
            );
        }
        let reply_after = answered.then_some(back);
        self.push(
            t + there,
            Ev::Server {
                node: n,
                inc,
                req,
                reply_after,
                inject,
            },
        );
    }

    fn serve(
        &mut self,
        n: usize,
        inc: u32,
        req: Request,
        reply_after: Option<u64>,
        inject: Option<ApiError>,
    ) {
        let (resp, changed) = match inject {
            Some(error) => (Err(error), false),
            None => self.server.apply(req.lease.as_str(), &req.op),
        };
        if resp == Err(ApiError::Conflict) {
            self.report.conflicts += 1;
        }
        if changed {
            self.notify(req.lease.as_str());
        }
        if let Some(back) = reply_after {
            self.push(
                self.now + back,
                Ev::Client {
                    node: n,
                    inc,
                    slot: req.slot,
                    resp,
                },
            );
        }
    }

    fn notify(&mut self, name: &str) {
        let Some(lease) = self.server.lease(name) else {
            return;
        };
        let net = self.network();
        let mut cut = Vec::new();
        for i in 0..self.watchers.len() {
            if self.watchers[i].name != name {
                continue;
            }
            let lat = self.rng.range(1, net.max_latency + 1);
            let w = &mut self.watchers[i];
            let at = (self.now + lat).max(w.last_delivery);
            w.last_delivery = at;
            let (node, inc, slot) = (w.node, w.inc, w.slot);
            let event = if self.rng.chance(net.watch_cut_permille) {
                cut.push(i);
                WatchEvent::Failed
            } else {
                WatchEvent::Changed(lease.clone())
            };
            self.push(
                at,
                Ev::Watch {
                    node,
                    inc,
                    slot,
                    event,
                },
            );
        }
        for i in cut.into_iter().rev() {
            self.watchers.remove(i);
        }
    }

    /// Polls the node's machine for requests and events and arms its wake-up.
    fn after_input(&mut self, n: usize) {
        let t = self.now;
        let (local, wall) = (self.nodes[n].clock.local(t), self.nodes[n].clock.wall(t));
        let mut progressed = false;
        loop {
            let req = match &mut self.nodes[n].machine {
                Some(Machine::Elector(e)) => e.poll_request(local, wall),
                Some(Machine::Member(p)) => p.poll_request(local, wall),
                None => return,
            };
            let Some(req) = req else { break };
            progressed = true;
            self.send(n, req);
        }
        let mut finished = false;
        loop {
            let event = match &mut self.nodes[n].machine {
                Some(Machine::Elector(e)) => e.poll_event().map(|e| (0, e)),
                Some(Machine::Member(p)) => p.poll_event().map(|e| (e.slot, e.event)),
                None => None,
            };
            let Some((slot, event)) = event else { break };
            progressed = true;
            self.log(|| format!("node-{n} slot {slot} {event:?}"));
            if let Some(observer) = &mut self.observer {
                observer(t, n, slot, &event);
            }
            let elector = n < self.scenario.electors;
            match event {
                Event::BecameLeader { .. } if elector => self.report.elections += 1,
                Event::BecameLeader { .. } => self.report.slot_acquisitions += 1,
                Event::LostLeadership { .. } if elector => self.report.losses += 1,
                Event::Released { .. } => finished = true,
                _ => {}
            }
        }
        let done = match &self.nodes[n].machine {
            Some(Machine::Elector(e)) => e.is_shut_down(),
            Some(Machine::Member(p)) => p.is_finished(),
            None => false,
        };
        if finished && done {
            self.stop_node(n);
            return;
        }
        let timeout = match &self.nodes[n].machine {
            Some(Machine::Elector(e)) => e.poll_timeout(),
            Some(Machine::Member(p)) => p.poll_timeout(),
            None => None,
        };
        let node = &mut self.nodes[n];
        node.busy = if progressed { 0 } else { node.busy + 1 };
        node.wake_at = timeout.map(|at| node.clock.real(at).max(t + 1));
        if let Some(at) = node.wake_at {
            let inc = node.inc;
            self.push(at, Ev::Wake { node: n, inc });
        }
    }

    fn check(&mut self) -> Result<(), String> {
        let s = self.scenario;
        let t = self.now;
        let renew = s.timing.renew_deadline();
        let mut leaders = 0;
        let mut holders = [0usize; MAX_SLOTS];
        for (n, node) in self.nodes.iter().enumerate() {
            if node.busy > BUSY_LIMIT {
                return Err(format!(
                    "node-{n} is woken again and again with nothing to do"
                ));
            }
            let local = node.clock.local(t);
            let (slot, name) = match &node.machine {
                Some(Machine::Elector(e)) if e.is_leader(local) => (0, LEADER_LEASE.to_owned()),
                Some(Machine::Member(p)) => match p.held(local) {
                    Some(slot) => (usize::from(slot), format!("{POOL_PREFIX}-{slot}")),
                    None => continue,
                },
                _ => continue,
            };
            if n < s.electors {
                leaders += 1;
            } else {
                holders[slot] += 1;
            }
            let stored = self.server.get(&name).map(|l| l.record.holder.clone());
            if !stored.as_ref().is_some_and(|h| h.is(&node.identity)) {
                return Err(format!(
                    "node-{n} acts on {name} but the server names {stored:?}"
                ));
            }
            match node.term_from[slot] {
                Some(sent) if local < sent.saturating_add(renew) => {}
                other => {
                    return Err(format!(
                        "node-{n} acts on {name} at local {local:?} past its deadline (term from {other:?})"
                    ));
                }
            }
        }
        if leaders > 1 {
            return Err(format!("{leaders} electors lead at once"));
        }
        if let Some(slot) = holders.iter().position(|&h| h > 1) {
            return Err(format!(
                "{} members hold slot {slot} at once",
                holders[slot]
            ));
        }
        let calm = s.quiet_start()
            + s.network.slow_latency.max(s.network.max_latency) * 2
            + self.request_timeout;
        if t >= calm {
            if leaders == 1 && self.leader_seen_in_tail.is_none() {
                self.leader_seen_in_tail = Some(t);
            }
            let full = holders.iter().sum::<usize>() == s.pool_size.min(s.pool_members);
            if full && self.pool_full_in_tail.is_none() {
                self.pool_full_in_tail = Some(t);
            }
        }
        Ok(())
    }

    /// The bound within which a free or expired lease must be taken once the API answers
    /// normally again: `lease_duration + 2.2 × retry` on the slowest allowed clock, plus a few
    /// network round trips.
    pub fn liveness_bound(&self) -> u64 {
        let s = self.scenario;
        let local =
            s.timing.lease_duration().as_micros() + s.timing.retry_period().as_micros() * 22 / 10;
        local * 1_000_000 / (1_000_000 - s.max_drift_ppm) + 4 * Network::CALM.max_latency + 1_000
    }

    fn handle(&mut self, ev: Ev) {
        let Some(ev) = self.admit(ev) else { return };
        match ev {
            Ev::FaultStart(i) => self.fault_start(i),
            Ev::FaultEnd(i) => self.fault_end(i),
            Ev::Server {
                node,
                inc,
                req,
                reply_after,
                inject,
            } => {
                if self.outage_until > self.now {
                    let until = self.outage_until;
                    self.push(
                        until,
                        Ev::Server {
                            node,
                            inc,
                            req,
                            reply_after,
                            inject,
                        },
                    );
                } else {
                    self.serve(node, inc, req, reply_after, inject);
                }
            }
            Ev::Client {
                node, slot, resp, ..
            } => {
                self.log(|| format!("node-{node} slot {slot} gets {resp:?}"));
                let n = &mut self.nodes[node];
                let local = n.clock.local(self.now);
                let claim = n.claim_sent[usize::from(slot)].take();
                if let (Some(sent), Ok(lease)) = (claim, &resp) {
                    if lease.record.holder.is(&n.identity) {
                        n.term_from[usize::from(slot)] = Some(sent);
                    }
                }
                match &mut n.machine {
                    Some(Machine::Elector(e)) => e.handle_response(resp, local),
                    Some(Machine::Member(p)) => p.handle_response(slot, resp, local),
                    None => return,
                }
                self.after_input(node);
            }
            Ev::Watch {
                node, slot, event, ..
            } => {
                self.log(|| format!("node-{node} slot {slot} watch {event:?}"));
                let n = &mut self.nodes[node];
                let local = n.clock.local(self.now);
                match &mut n.machine {
                    Some(Machine::Elector(e)) => e.handle_watch(event, local),
                    Some(Machine::Member(p)) => p.handle_watch(slot, event, local),
                    None => return,
                }
                self.after_input(node);
            }
            Ev::Wake { node, .. } => {
                let n = &mut self.nodes[node];
                let local = n.clock.local(self.now);
                match &mut n.machine {
                    Some(Machine::Elector(e)) => e.handle_timeout(local),
                    Some(Machine::Member(p)) => p.handle_timeout(local),
                    None => return,
                }
                self.after_input(node);
            }
        }
    }

    /// For an event addressed to a node: drops it if that incarnation is gone (or, for a
    /// wake-up, if a newer one replaced it) and defers it while the node is paused. Returns
    /// the event when it is to be handled now.
    fn admit(&mut self, ev: Ev) -> Option<Ev> {
        let (node, inc) = match &ev {
            Ev::Client { node, inc, .. } | Ev::Watch { node, inc, .. } | Ev::Wake { node, inc } => {
                (*node, *inc)
            }
            Ev::Server { .. } | Ev::FaultStart(_) | Ev::FaultEnd(_) => return Some(ev),
        };
        if !self.deliverable(node, inc) {
            return None;
        }
        let is_wake = matches!(ev, Ev::Wake { .. });
        if is_wake && self.nodes[node].wake_at != Some(self.now) {
            return None;
        }
        let until = self.nodes[node].paused_until;
        if until > self.now {
            if is_wake {
                self.nodes[node].wake_at = Some(until);
            }
            self.push(until, ev);
            return None;
        }
        Some(ev)
    }

    fn deliverable(&self, node: usize, inc: u32) -> bool {
        let n = &self.nodes[node];
        n.inc == inc && n.machine.is_some()
    }

    fn fault_start(&mut self, i: usize) {
        let fault = self.scenario.faults[i];
        self.log(|| format!("fault starts: {fault:?}"));
        match fault.kind {
            FaultKind::Pause(n) => {
                let node = &mut self.nodes[n];
                node.paused_until = node.paused_until.max(fault.end);
            }
            FaultKind::Crash(n) => {
                if self.nodes[n].machine.is_some() {
                    self.stop_node(n);
                }
            }
            FaultKind::Shutdown(n) => {
                if self.nodes[n].paused_until > self.now {
                    return;
                }
                let node = &mut self.nodes[n];
                let local = node.clock.local(self.now);
                match &mut node.machine {
                    Some(Machine::Elector(e)) => e.shutdown(local),
                    Some(Machine::Member(p)) => p.finish(local),
                    None => return,
                }
                self.after_input(n);
            }
            FaultKind::Partition(n) => {
                let node = &mut self.nodes[n];
                node.partitioned_until = node.partitioned_until.max(fault.end);
                let inc = node.inc;
                let cut: Vec<u16> = self
                    .watchers
                    .iter()
                    .filter(|w| w.node == n)
                    .map(|w| w.slot)
                    .collect();
                self.watchers.retain(|w| w.node != n);
                for slot in cut {
                    self.push(
                        self.now + 1_000,
                        Ev::Watch {
                            node: n,
                            inc,
                            slot,
                            event: WatchEvent::Failed,
                        },
                    );
                }
            }
            FaultKind::Outage => self.outage_until = self.outage_until.max(fault.end),
        }
    }

    fn fault_end(&mut self, i: usize) {
        let fault = self.scenario.faults[i];
        self.log(|| format!("fault ends: {fault:?}"));
        if let FaultKind::Crash(n) | FaultKind::Shutdown(n) = fault.kind {
            // A shutdown still releasing when its window closes is cut short, like a kill.
            if self.nodes[n].machine.is_some() && matches!(fault.kind, FaultKind::Shutdown(_)) {
                self.stop_node(n);
            }
            if self.nodes[n].machine.is_none() {
                self.start_node(n);
            }
        }
    }

    /// Runs to the scenario's end, checking after every event.
    pub fn run(mut self) -> Result<Report, Violation> {
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.scenario.duration {
                break;
            }
            self.now = q.at;
            self.report.steps += 1;
            self.handle(q.ev);
            if let Err(what) = self.check() {
                return Err(self.violation(what));
            }
        }
        self.now = self.scenario.duration;
        let s = self.scenario;
        let calm = s.quiet_start()
            + s.network.slow_latency.max(s.network.max_latency) * 2
            + self.request_timeout;
        let bound = calm + self.liveness_bound();
        if s.electors > 0 && self.leader_seen_in_tail.is_none_or(|t| t > bound) {
            let what = format!(
                "no elector led within {:.3}s of the API calming at {:.3}s (first: {:?})",
                self.liveness_bound() as f64 / 1e6,
                calm as f64 / 1e6,
                self.leader_seen_in_tail
            );
            return Err(self.violation(what));
        }
        if s.pool_members > 0 && self.pool_full_in_tail.is_none_or(|t| t > bound) {
            let what = format!(
                "the pool was not full within {:.3}s of the API calming (first: {:?})",
                self.liveness_bound() as f64 / 1e6,
                self.pool_full_in_tail
            );
            return Err(self.violation(what));
        }
        Ok(self.report)
    }

    fn violation(&mut self, what: String) -> Violation {
        let mut summary = String::new();
        let _ = write!(summary, "{what}");
        Violation {
            seed: self.scenario.seed,
            at: self.now,
            what: summary,
            trace: self.trace.take().unwrap_or_default(),
        }
    }
}
