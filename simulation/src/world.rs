//! The simulation loop. Each node is an agent (a core machine), the fences it starts and the work
//! they guard, on one clock; a network that delays, loses and fails requests; the model server;
//! the fault schedule; and, once every event of an instant has been handled, the oracle's
//! verdict on the work, the machines' own claims and, in the quiet tail, liveness.

mod network;
mod terms;

use crate::agent::{Agent, MAX_SLOTS, Role, heartbeat_lease};
use crate::clock::Clock;
use crate::oracle::Oracle;
use crate::outcome::{Failure, Report, Violation};
use crate::rng::Rng;
use crate::scenario::{FaultKind, LeaseId, SECOND, Scenario};
use crate::server::Server;
use crate::work::{Child, Exit, Work, WorkPolicy};
use leasehold_core::{
    ApiError, Event, Fence, Identity, Instant, Request, Response, Signal, WatchEvent,
};
use network::Watcher;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use terms::{Broken, Judge, Term};

/// Consecutive wake-ups without any request, event or state change before the run is declared
/// a busy loop (a `poll_timeout` that keeps asking to be woken for nothing).
const BUSY_LIMIT: u32 = 10_000;

struct Node {
    identity: Identity,
    clock: Clock,
    watch: bool,
    child: Child,
    agent: Option<Agent>,
    /// Incarnations of the agent so far.
    incarnations: u32,
    /// Works on this node, with their fences, whichever agent started them.
    works: Vec<Work>,
    /// The whole node is frozen until then.
    paused_until: u64,
    frozen: bool,
    /// The agent alone is stopped until then.
    agent_paused_until: u64,
    partitioned_until: u64,
    /// The server answers the node 429 until then.
    throttled_until: u64,
    /// The answers to the node's writes are lost until then.
    write_answers_lost_until: u64,
    wake_at: Option<u64>,
    busy: u32,
    /// Per slot, the term the running agent's events tell.
    terms: [Option<Term>; MAX_SLOTS],
    /// Per slot, the instant on the node's clock before which a 429's Retry-After forbids a
    /// request.
    retry_after: [Option<Instant>; MAX_SLOTS],
}

impl Node {
    /// Whether agent incarnation `inc` is the one alive.
    fn runs(&self, inc: u32) -> bool {
        self.agent.as_ref().is_some_and(|a| a.inc == inc)
    }

    /// The work agent `inc` runs for `slot`, if any.
    fn owned(&self, inc: u32, slot: u16) -> Option<u64> {
        self.works
            .iter()
            .find(|w| w.owner == inc && w.slot == slot)
            .map(|w| w.id)
    }

    fn work(&mut self, id: u64) -> Option<&mut Work> {
        self.works.iter_mut().find(|w| w.id == id)
    }
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
        /// The stream it belongs to: nothing of a stream is delivered after its last event,
        /// nor after the agent replaced or closed it (the driver drops such events).
        stream: u64,
        event: WatchEvent,
        /// The slots whose state as of a server revision the event shows, and that revision:
        /// a change its own, a deletion its own (or, replayed at once with all that followed
        /// it, the revision replayed up to), a list's end the list's for the slots it left out.
        shown: Vec<(u16, u64)>,
    },
    /// The server ends a watch stream at its timeout.
    WatchTimeout {
        stream: u64,
    },
    /// The agent's machine asked to be woken.
    Wake {
        node: usize,
        inc: u32,
    },
    /// A graceful shutdown's work is gone: the agent releases the lease.
    Release {
        node: usize,
        inc: u32,
    },
    /// The old supervisor's own SIGKILL timer, `grace` after its SIGTERM (agent-bound).
    SupervisorKill {
        node: usize,
        inc: u32,
        work: u64,
    },
    /// A fence asked to be woken (runs beside the agent, not inside it).
    FenceWake {
        node: usize,
        work: u64,
    },
    /// A child that obeys SIGTERM exits.
    WorkExit {
        node: usize,
        work: u64,
    },
    FaultStart(usize),
    FaultEnd(usize),
}

/// An event due at `at`. One deferred while its agent was paused keeps when it was first due
/// and its place among those due then, so a stream's events still arrive in order.
struct Queued {
    at: u64,
    due: u64,
    seq: u64,
    ev: Ev,
}

impl Queued {
    fn key(&self) -> (u64, u64, u64) {
        (self.at, self.due, self.seq)
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
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
        self.key().cmp(&other.key())
    }
}

/// Called with every application event: simulated time (µs), node index, slot, event.
pub type Observer<'s> = dyn FnMut(u64, usize, u16, &Event) + 's;

/// The whole simulated world.
pub struct World<'s> {
    scenario: &'s Scenario,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    server: Server,
    watchers: Vec<Watcher>,
    next_stream: u64,
    /// Streams whose last event was delivered, or that their agent replaced or closed.
    ended_streams: HashSet<u64>,
    /// Per agent (node, incarnation) and slot: the newest resourceVersion delivered to it, by
    /// an answer or its stream (a deletion or a list as of the revision it stands for). An
    /// answer older than that may be kept from the getters.
    newest_delivered: HashMap<(usize, u32, u16), u64>,
    /// Each agent's stream on each slot it watches from, last opened: the one its driver
    /// delivers.
    streams: HashMap<(usize, u16), u64>,
    outage_until: u64,
    nodes: Vec<Node>,
    oracle: Oracle,
    next_work: u64,
    report: Report,
    trace: Option<Vec<String>>,
    request_timeout: u64,
    /// Set when an agent cannot be built; reported at the next check.
    invalid: Option<String>,
    /// The server's writes, and the verdict on what machines report of their terms.
    judge: Judge,
    /// The first rule an input broke; reported at the next check.
    broken: Option<Broken>,
    leader_seen_in_tail: Option<u64>,
    pool_full_in_tail: Option<u64>,
    /// Per heartbeat node: its node, its lease's name, and when the server last applied a
    /// write to it (ground truth, µs).
    heartbeat_writes: Vec<(usize, String, Option<u64>)>,
    observer: Option<Box<Observer<'s>>>,
    /// A node whose machine is broken on purpose, to show a check catches it.
    #[cfg(test)]
    flaw: Option<(usize, crate::agent::broken::Flaw)>,
}

impl<'s> World<'s> {
    /// A world at time 0 with every node started, or why the scenario cannot run.
    pub fn new(scenario: &'s Scenario, trace: bool) -> Result<Self, Violation> {
        let invalid = |what: String| Violation {
            seed: scenario.seed,
            at: 0,
            failure: Failure::Invalid,
            what,
            trace: Vec::new(),
        };
        let nodes = scenario.nodes();
        let lengths = [
            scenario.identities.len(),
            scenario.watch.len(),
            scenario.rates_ppm.len(),
            scenario.children.len(),
        ];
        if lengths.iter().any(|&l| l != nodes) {
            return Err(invalid(format!(
                "per-node lists (identities, watch, rates, children) {lengths:?} for {nodes} nodes"
            )));
        }
        if scenario.pool_size == 0 || scenario.pool_size > MAX_SLOTS {
            return Err(invalid(format!(
                "pool size {} outside 1..={MAX_SLOTS}",
                scenario.pool_size
            )));
        }
        if scenario.rates_ppm.contains(&0) {
            return Err(invalid("a clock that does not run".to_owned()));
        }
        let mut rng = Rng::new(scenario.seed);
        let mut built = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let identity = Identity::new(&format!("node-{}", scenario.identities[i]))
                .map_err(|e| invalid(format!("node-{i}'s identity: {e:?}")))?;
            built.push(Node {
                identity,
                clock: Clock {
                    origin: rng.range(0, 1_000 * SECOND),
                    rate_ppm: scenario.rates_ppm[i],
                    wall_skew: rng.range(0, 7_200 * SECOND) as i64 - 3_600 * SECOND as i64,
                    wall_resolution: scenario.wall_resolution,
                },
                watch: scenario.watch[i],
                child: scenario.children[i],
                agent: None,
                incarnations: 0,
                works: Vec::new(),
                paused_until: 0,
                frozen: false,
                agent_paused_until: 0,
                partitioned_until: 0,
                throttled_until: 0,
                write_answers_lost_until: 0,
                wake_at: None,
                busy: 0,
                terms: [None; MAX_SLOTS],
                retry_after: [None; MAX_SLOTS],
            });
        }
        let request_timeout = scenario.timing.request_timeout().as_micros();
        let mut heartbeat_writes = Vec::new();
        for (n, node) in built.iter().enumerate() {
            if scenario.is_heartbeat(n) {
                let lease = heartbeat_lease(&node.identity)
                    .map_err(|e| invalid(format!("node-{n}'s heartbeat lease: {e}")))?;
                heartbeat_writes.push((n, lease.as_str().to_owned(), None));
            }
        }
        let mut world = Self {
            scenario,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            server: Server::new(scenario.history),
            watchers: Vec::new(),
            next_stream: 0,
            ended_streams: HashSet::new(),
            newest_delivered: HashMap::new(),
            streams: HashMap::new(),
            outage_until: 0,
            nodes: built,
            oracle: Oracle::new(scenario.pool_size),
            next_work: 0,
            report: Report::default(),
            trace: trace.then(Vec::new),
            request_timeout,
            invalid: None,
            judge: Judge::default(),
            broken: None,
            leader_seen_in_tail: None,
            pool_full_in_tail: None,
            heartbeat_writes,
            observer: None,
            #[cfg(test)]
            flaw: None,
        };
        for (i, fault) in scenario.faults.iter().enumerate() {
            world.push(fault.start, Ev::FaultStart(i));
            world.push(fault.end.max(fault.start), Ev::FaultEnd(i));
        }
        for n in 0..nodes {
            world.start_agent(n);
        }
        Ok(world)
    }

    /// Breaks node `n`'s machine (and its restarts') with `flaw`.
    #[cfg(test)]
    pub fn with_flaw(mut self, n: usize, flaw: crate::agent::broken::Flaw) -> Self {
        self.flaw = Some((n, flaw));
        self.nodes[n].agent = self.nodes[n].agent.take().map(|a| a.break_with(flaw));
        self
    }

    /// Calls `observer` with every application event of every node.
    pub fn observe(mut self, observer: impl FnMut(u64, usize, u16, &Event) + 's) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        // A fault starts or ends before anything else due at its instant: a pause's end
        // before the events it held back.
        let due = if matches!(ev, Ev::FaultStart(_) | Ev::FaultEnd(_)) {
            0
        } else {
            at
        };
        self.queue.push(Reverse(Queued {
            at,
            due,
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

    fn local(&self, n: usize) -> Instant {
        self.nodes[n].clock.local(self.now)
    }

    fn lease_of(&self, n: usize, slot: u16) -> LeaseId {
        if n < self.scenario.electors {
            LeaseId::Leader
        } else {
            LeaseId::Slot(slot)
        }
    }

    // --- the agent ---

    fn start_agent(&mut self, n: usize) {
        let s = self.scenario;
        let node = &mut self.nodes[n];
        node.incarnations += 1;
        node.wake_at = None;
        node.terms = [None; MAX_SLOTS];
        node.retry_after = [None; MAX_SLOTS];
        let inc = node.incarnations;
        let seed = s.seed ^ ((n as u64) << 40) ^ (u64::from(inc) << 20);
        let role = if n < s.electors {
            Role::Elector
        } else if s.is_heartbeat(n) {
            Role::Heartbeat
        } else {
            Role::Member(s.pool_size)
        };
        match Agent::new(&node.identity, s.timing, node.watch, role, seed, inc) {
            #[cfg(test)]
            Ok(agent) if self.flaw.is_some_and(|(f, _)| f == n) => {
                node.agent = self.flaw.map(|(_, flaw)| agent.break_with(flaw));
            }
            Ok(agent) => node.agent = Some(agent),
            Err(e) => {
                self.invalid = Some(format!("node-{n}'s agent cannot be built: {e}"));
                return;
            }
        }
        self.log(|| format!("node-{n} agent #{inc} starts"));
        // Its first poll goes through `admit` like any wake-up, so an agent started on a
        // frozen node sends nothing until the node thaws.
        self.nodes[n].wake_at = Some(self.now);
        self.push(self.now, Ev::Wake { node: n, inc });
    }

    /// The agent process ends (it exited, or was killed with or without its node): its
    /// machine and streams go, and the pipes to its fences close.
    fn end_agent(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(agent) = node.agent.take() else {
            return;
        };
        node.wake_at = None;
        // A SIGSTOP held the process that ended, not the next one.
        node.agent_paused_until = 0;
        self.close_streams(|node, _| node == n);
        self.log(|| format!("node-{n} agent #{} ends", agent.inc));
        self.close_pipes(n);
    }

    /// Polls node `n`'s machine for requests and events, acts on the events, and arms its
    /// wake-up.
    fn after_input(&mut self, n: usize) {
        let t = self.now;
        let node = &mut self.nodes[n];
        let (local, wall) = (node.clock.local(t), node.clock.wall(t));
        let Some(agent) = node.agent.as_mut() else {
            return;
        };
        let inc = agent.inc;
        let mut requests = Vec::new();
        while let Some(req) = agent.poll_request(local, wall) {
            requests.push(req);
        }
        let mut events = Vec::new();
        while let Some(event) = agent.poll_event() {
            events.push(event);
        }
        let progressed = !requests.is_empty() || !events.is_empty();
        for req in requests {
            self.send(n, inc, req);
        }
        for (slot, event) in events {
            self.log(|| format!("node-{n} slot {slot} {event:?}"));
            if let Some(observer) = &mut self.observer {
                observer(t, n, slot, &event);
            }
            self.judge_event(n, inc, slot, &event);
            self.on_event(n, slot, &event);
        }
        self.judge_state(n);
        let Some(agent) = self.nodes[n].agent.as_ref() else {
            return;
        };
        if agent.releasing && agent.is_released() {
            // Released: the agent has nothing left to do and exits.
            self.end_agent(n);
            return;
        }
        let timeout = agent.poll_timeout();
        let node = &mut self.nodes[n];
        node.busy = if progressed { 0 } else { node.busy + 1 };
        node.wake_at = timeout.map(|at| node.clock.real(at).max(t + 1));
        if let Some(at) = node.wake_at {
            self.push(at, Ev::Wake { node: n, inc });
        }
    }

    /// Records the first broken rule, to be reported at the next check.
    fn broke(&mut self, broken: Broken) {
        self.broken.get_or_insert(broken);
    }

    /// Judges one event of node `n`'s agent `inc` against the server's writes.
    fn judge_event(&mut self, n: usize, inc: u32, slot: u16, event: &Event) {
        let Some(term) = self.nodes[n].terms.get(usize::from(slot)).copied() else {
            return;
        };
        let id = self.lease_of(n, slot);
        match self.judge.event((n, inc), (&id.name(), id), term, event) {
            Ok(term) => self.nodes[n].terms[usize::from(slot)] = term,
            Err(broken) => self.broke(broken),
        }
    }

    /// After an input: node `n`'s getters agree with its events, and a pool member keeps no
    /// watch open on a slot other than the one it holds (its one stream of the pool, which a
    /// holder keeps to see its slot reserved, aside).
    fn judge_state(&mut self, n: usize) {
        let node = &self.nodes[n];
        let Some(agent) = node.agent.as_ref() else {
            return;
        };
        let held = node.terms.iter().position(Option::is_some);
        let term = held.and_then(|i| node.terms[i]);
        if let Err(broken) = terms::getters(n, term, agent.epoch(), agent.deadline()) {
            self.broke(broken);
            return;
        }
        let member = n >= self.scenario.electors && !self.scenario.is_heartbeat(n);
        if let (true, Some(held)) = (member, held) {
            let idle = self
                .watchers
                .iter()
                .find(|w| w.node == n && w.slots.is_none() && usize::from(w.slot) != held)
                .map(|w| w.slot);
            if let Some(slot) = idle {
                let lease = self.lease_of(n, slot);
                self.broke((
                    Failure::IdleWatch { node: n, lease },
                    format!("node-{n} holds slot {held} and still watches {lease:?}"),
                ));
            }
        }
    }

    /// What the agent does with one event of its machine: count it, and start, extend or stop
    /// the work as its policy says.
    fn on_event(&mut self, n: usize, slot: u16, event: &Event) {
        let elector = n < self.scenario.electors;
        let local = self.local(n);
        let Some(agent) = self.nodes[n].agent.as_ref() else {
            return;
        };
        let inc = agent.inc;
        let stopping = agent.stopping;
        let leads = agent.leading(local) == Some(slot);
        let owned = self.nodes[n].owned(inc, slot);
        match (self.scenario.policy, event) {
            (policy, Event::BecameLeader { .. }) => {
                if elector {
                    self.report.elections += 1;
                } else {
                    self.report.slot_acquisitions += 1;
                }
                if policy == WorkPolicy::Unfenced && owned.is_none() && !stopping {
                    self.start_work(n, slot, None);
                }
            }
            (WorkPolicy::Fenced, Event::Renewed { deadline }) => match owned {
                Some(id) => {
                    if let Some(fence) = self.nodes[n].work(id).and_then(|w| w.fence.as_mut()) {
                        fence.handle_valid_until(*deadline);
                    }
                    self.poll_fence(n, id);
                }
                None if leads && !stopping => {
                    let fence = Fence::new(*deadline, self.scenario.grace);
                    if fence.may_start(local) {
                        self.start_work(n, slot, Some(fence));
                    }
                }
                None => {}
            },
            (policy, Event::LostLeadership { .. }) => {
                if elector {
                    self.report.losses += 1;
                }
                if let Some(id) = owned {
                    self.stop_work(n, id, policy);
                }
            }
            _ => {}
        }
    }

    /// The agent asks its work to stop: through the fence, or (old design) with its own
    /// SIGTERM and a SIGKILL timer `grace` later.
    fn stop_work(&mut self, n: usize, id: u64, policy: WorkPolicy) {
        let local = self.local(n);
        match policy {
            WorkPolicy::Fenced => {
                if let Some(fence) = self.nodes[n].work(id).and_then(|w| w.fence.as_mut()) {
                    fence.handle_stop(local);
                }
                self.poll_fence(n, id);
            }
            WorkPolicy::Unfenced => {
                let Some(inc) = self.nodes[n].agent.as_ref().map(|a| a.inc) else {
                    return;
                };
                self.deliver(n, id, Signal::Terminate);
                if self.nodes[n].work(id).is_some() {
                    let clock = self.nodes[n].clock;
                    let at = clock.real(local.saturating_add(self.scenario.grace));
                    self.push(
                        at.max(self.now),
                        Ev::SupervisorKill {
                            node: n,
                            inc,
                            work: id,
                        },
                    );
                }
            }
        }
    }

    /// A graceful shutdown: the work is stopped first, while the lease is still held, and the
    /// lease is released once it is gone.
    fn shutdown(&mut self, n: usize) {
        let Some(agent) = self.nodes[n].agent.as_mut() else {
            return;
        };
        if agent.stopping {
            return;
        }
        agent.stopping = true;
        let inc = agent.inc;
        let owned: Vec<u64> = self.nodes[n]
            .works
            .iter()
            .filter(|w| w.owner == inc)
            .map(|w| w.id)
            .collect();
        self.log(|| format!("node-{n} shuts down: stops {} works first", owned.len()));
        for id in owned {
            self.stop_work(n, id, self.scenario.policy);
        }
        self.release_when_done(n);
    }

    /// Releases once a stopping agent's works are all gone.
    fn release_when_done(&mut self, n: usize) {
        let node = &self.nodes[n];
        if let Some(agent) = &node.agent {
            if agent.stopping && !node.works.iter().any(|w| w.owner == agent.inc) {
                let inc = agent.inc;
                self.push(self.now, Ev::Release { node: n, inc });
            }
        }
    }

    // --- the work and its fence ---

    fn start_work(&mut self, n: usize, slot: u16, fence: Option<Fence>) {
        let Some(inc) = self.nodes[n].agent.as_ref().map(|a| a.inc) else {
            return;
        };
        self.next_work += 1;
        let id = self.next_work;
        let fenced = fence.is_some();
        self.nodes[n].works.push(Work::new(id, slot, inc, fence));
        let lease = self.lease_of(n, slot);
        self.oracle.begin(id, n, lease, self.now);
        self.report.works += 1;
        self.log(|| format!("node-{n} starts work #{id} on {lease:?}"));
        if fenced {
            self.poll_fence(n, id);
        }
    }

    /// The work stopped (it exited, was killed, or its node crashed).
    fn end_work(&mut self, n: usize, id: u64) {
        let node = &mut self.nodes[n];
        let Some(i) = node.works.iter().position(|w| w.id == id) else {
            return;
        };
        node.works.swap_remove(i);
        self.oracle.end(id, self.now);
        self.log(|| format!("node-{n} work #{id} stops"));
        self.release_when_done(n);
    }

    /// Delivers a signal to a work now.
    fn deliver(&mut self, n: usize, id: u64, signal: Signal) {
        let (now, child) = (self.now, self.nodes[n].child);
        let Some(work) = self.nodes[n].work(id) else {
            return;
        };
        let exit = work.signal(signal, child, now);
        self.log(|| format!("node-{n} work #{id} gets {signal:?}"));
        if signal == Signal::Kill {
            self.report.kills += 1;
        }
        match exit {
            Exit::Now => self.end_work(n, id),
            Exit::At(at) => self.push(at, Ev::WorkExit { node: n, work: id }),
            Exit::Later => {}
        }
    }

    /// Runs a work's fence: delivers the signals due now and arms its next wake-up.
    fn poll_fence(&mut self, n: usize, id: u64) {
        if self.nodes[n].frozen {
            return;
        }
        let local = self.local(n);
        loop {
            let Some(fence) = self.nodes[n].work(id).and_then(|w| w.fence.as_mut()) else {
                return;
            };
            match fence.poll_signal(local) {
                Some(signal) => self.deliver(n, id, signal),
                None => break,
            }
        }
        let (now, clock) = (self.now, self.nodes[n].clock);
        let Some(work) = self.nodes[n].work(id) else {
            return;
        };
        let wake = work
            .fence
            .as_ref()
            .and_then(Fence::poll_timeout)
            .map(|at| clock.real(at).max(now + 1));
        if wake != work.fence_wake {
            work.fence_wake = wake;
            if let Some(at) = wake {
                self.push(at, Ev::FenceWake { node: n, work: id });
            }
        }
    }

    /// The fences of works whose agent is gone learn it (their pipe closed), unless the node
    /// is frozen: then they learn it when it thaws.
    fn close_pipes(&mut self, n: usize) {
        if self.nodes[n].frozen {
            return;
        }
        let local = self.local(n);
        let node = &mut self.nodes[n];
        let alive = node.agent.as_ref().map(|a| a.inc);
        let mut told = Vec::new();
        for work in &mut node.works {
            if Some(work.owner) != alive && !work.told_gone {
                if let Some(fence) = &mut work.fence {
                    work.told_gone = true;
                    fence.handle_holder_gone(local);
                    told.push(work.id);
                }
            }
        }
        self.report.orphans += told.len() as u64;
        for id in told {
            self.poll_fence(n, id);
        }
    }

    fn freeze(&mut self, n: usize) {
        if self.nodes[n].frozen {
            return;
        }
        self.nodes[n].frozen = true;
        for id in self.nodes[n].works.iter().map(|w| w.id).collect::<Vec<_>>() {
            self.oracle.end(id, self.now);
        }
        self.log(|| format!("node-{n} freezes"));
    }

    /// The node runs again. Its fences act first (the model gives them no scheduling delay),
    /// then what is left of its work runs on.
    fn thaw(&mut self, n: usize) {
        self.nodes[n].frozen = false;
        self.log(|| format!("node-{n} thaws"));
        self.close_pipes(n);
        let ids: Vec<u64> = self.nodes[n].works.iter().map(|w| w.id).collect();
        for &id in &ids {
            self.poll_fence(n, id);
            let exits = self.nodes[n]
                .work(id)
                .and_then(|w| w.exit_at)
                .is_some_and(|at| at <= self.now);
            if exits {
                self.end_work(n, id);
            }
        }
        let left: Vec<(u64, u16)> = self.nodes[n].works.iter().map(|w| (w.id, w.slot)).collect();
        for (id, slot) in left {
            let lease = self.lease_of(n, slot);
            self.oracle.begin(id, n, lease, self.now);
        }
    }

    // --- events ---

    fn handle(&mut self, q: Queued) {
        let Some(ev) = self.admit(q) else { return };
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
            Ev::WatchTimeout { stream } => self.end_stream(stream),
            Ev::Client {
                node,
                inc,
                slot,
                resp,
            } => {
                self.log(|| format!("node-{node} slot {slot} gets {resp:?}"));
                let local = self.local(node);
                // An answer its stream has overtaken: the machine may keep the newer record.
                let overtaken = resp.as_ref().is_ok_and(|l| {
                    let rv = version(l);
                    let newest = self.newest_delivered.entry((node, inc, slot)).or_default();
                    let older = rv < *newest;
                    *newest = rv.max(*newest);
                    older
                });
                let shown = resp
                    .as_ref()
                    .ok()
                    .filter(|_| !overtaken)
                    .map(|l| l.record.holder.clone());
                match resp {
                    Err(ApiError::TooManyRequests { .. }) => self.report.throttled += 1,
                    Err(ApiError::AlreadyExists) => self.report.already_exists += 1,
                    _ => {}
                }
                if let Err(ApiError::TooManyRequests {
                    retry_after: Some(wait),
                }) = resp
                {
                    if let Some(until) = self.nodes[node].retry_after.get_mut(usize::from(slot)) {
                        *until = Some(local.saturating_add(wait));
                    }
                }
                if let Some(agent) = &mut self.nodes[node].agent {
                    agent.handle_answer(slot, resp, local);
                    let seen = agent.slot_holder(slot);
                    if shown.is_some() && seen != shown.as_ref() {
                        let what = format!(
                            "node-{node} was answered a record of slot {slot} held by {shown:?} \
                             and says it was held by {seen:?}"
                        );
                        self.broke((Failure::GetterDisagrees { node }, what));
                    }
                    self.after_input(node);
                }
            }
            Ev::Watch {
                node,
                inc,
                slot,
                stream,
                event,
                shown,
            } => {
                if self.ended_streams.contains(&stream) {
                    return;
                }
                if matches!(
                    event,
                    WatchEvent::Ended
                        | WatchEvent::Failed
                        | WatchEvent::Expired
                        | WatchEvent::Forbidden
                ) {
                    self.ended_streams.insert(stream);
                }
                self.log(|| format!("node-{node} slot {slot} watch {event:?}"));
                for (slot, rv) in shown {
                    let newest = self.newest_delivered.entry((node, inc, slot)).or_default();
                    *newest = rv.max(*newest);
                }
                let local = self.local(node);
                if let Some(agent) = &mut self.nodes[node].agent {
                    agent.handle_watch_event(slot, event, local);
                    self.after_input(node);
                }
            }
            Ev::Wake { node, .. } => {
                let local = self.local(node);
                if let Some(agent) = &mut self.nodes[node].agent {
                    agent.handle_timeout(local);
                    self.after_input(node);
                }
            }
            Ev::Release { node, .. } => {
                let local = self.local(node);
                if let Some(agent) = &mut self.nodes[node].agent {
                    if !agent.releasing {
                        agent.release(local);
                        self.after_input(node);
                    }
                }
            }
            Ev::SupervisorKill { node, work, .. } => self.deliver(node, work, Signal::Kill),
            Ev::FenceWake { node, work } => {
                let due = self.nodes[node]
                    .work(work)
                    .is_some_and(|w| w.fence_wake == Some(self.now));
                if due && !self.nodes[node].frozen {
                    if let Some(w) = self.nodes[node].work(work) {
                        w.fence_wake = None;
                    }
                    self.poll_fence(node, work);
                }
            }
            Ev::WorkExit { node, work } => {
                let due = self.nodes[node]
                    .work(work)
                    .and_then(|w| w.exit_at)
                    .is_some_and(|at| at <= self.now);
                // A frozen child exits when its node thaws.
                if due && !self.nodes[node].frozen {
                    self.end_work(node, work);
                }
            }
        }
    }

    /// For an event addressed to an agent: drops it if that incarnation is gone (or, for a
    /// wake-up, if a newer one replaced it) and defers it while the agent (or its node) is
    /// paused. Returns the event when it is to be handled now.
    fn admit(&mut self, q: Queued) -> Option<Ev> {
        let (node, inc) = match &q.ev {
            Ev::Client { node, inc, .. }
            | Ev::Watch { node, inc, .. }
            | Ev::Wake { node, inc }
            | Ev::Release { node, inc }
            | Ev::SupervisorKill { node, inc, .. } => (*node, *inc),
            Ev::Server { .. }
            | Ev::WatchTimeout { .. }
            | Ev::FenceWake { .. }
            | Ev::WorkExit { .. }
            | Ev::FaultStart(_)
            | Ev::FaultEnd(_) => return Some(q.ev),
        };
        if !self.nodes[node].runs(inc) {
            return None;
        }
        let is_wake = matches!(q.ev, Ev::Wake { .. });
        if is_wake && self.nodes[node].wake_at != Some(self.now) {
            return None;
        }
        let n = &self.nodes[node];
        let until = n.paused_until.max(n.agent_paused_until);
        if until > self.now {
            if is_wake {
                self.nodes[node].wake_at = Some(until);
            }
            self.queue.push(Reverse(Queued { at: until, ..q }));
            return None;
        }
        Some(q.ev)
    }

    // --- faults ---

    fn fault_start(&mut self, i: usize) {
        let fault = self.scenario.faults[i];
        self.log(|| format!("fault starts: {fault:?}"));
        match fault.kind {
            FaultKind::Pause(n) => {
                let node = &mut self.nodes[n];
                node.paused_until = node.paused_until.max(fault.end);
                self.freeze(n);
            }
            FaultKind::PauseAgent(n) => {
                let node = &mut self.nodes[n];
                node.agent_paused_until = node.agent_paused_until.max(fault.end);
            }
            FaultKind::Crash(n) => {
                for id in self.nodes[n].works.iter().map(|w| w.id).collect::<Vec<_>>() {
                    self.end_work(n, id);
                }
                self.end_agent(n);
            }
            FaultKind::KillAgent(n) => self.end_agent(n),
            FaultKind::Shutdown(n) => {
                let node = &self.nodes[n];
                // A stopped process handles its SIGTERM only once it runs again; the model
                // skips the shutdown then.
                if node.paused_until.max(node.agent_paused_until) <= self.now {
                    self.shutdown(n);
                }
            }
            FaultKind::Partition(n) => {
                let node = &mut self.nodes[n];
                node.partitioned_until = node.partitioned_until.max(fault.end);
                self.cut_streams(n);
            }
            FaultKind::Outage => self.outage_until = self.outage_until.max(fault.end),
            FaultKind::Throttle(n) => {
                let node = &mut self.nodes[n];
                node.throttled_until = node.throttled_until.max(fault.end);
            }
            FaultKind::LoseWriteAnswers(n) => {
                let node = &mut self.nodes[n];
                node.write_answers_lost_until = node.write_answers_lost_until.max(fault.end);
            }
            FaultKind::Delete(lease) => {
                let name = lease.name();
                if self.server.delete(&name) {
                    self.judge.deleted(&name, self.server.revision());
                    self.report.deletes += 1;
                    self.notify(&name, WatchEvent::Deleted, self.server.revision());
                }
            }
        }
    }

    fn fault_end(&mut self, i: usize) {
        let fault = self.scenario.faults[i];
        self.log(|| format!("fault ends: {fault:?}"));
        match fault.kind {
            FaultKind::Pause(n) => {
                if self.nodes[n].frozen && self.nodes[n].paused_until <= self.now {
                    self.thaw(n);
                }
            }
            FaultKind::Crash(n) | FaultKind::KillAgent(n) | FaultKind::Shutdown(n) => {
                // A shutdown still going when its window closes is cut short, like a kill.
                if matches!(fault.kind, FaultKind::Shutdown(_)) {
                    self.end_agent(n);
                }
                if self.nodes[n].agent.is_none() {
                    self.start_agent(n);
                }
            }
            FaultKind::PauseAgent(_)
            | FaultKind::Partition(_)
            | FaultKind::Outage
            | FaultKind::Delete(_)
            | FaultKind::Throttle(_)
            | FaultKind::LoseWriteAnswers(_) => {}
        }
    }

    // --- checks ---

    /// When in-flight faults have drained after the quiet tail began.
    fn calm(&self) -> u64 {
        self.scenario.calm_from()
    }

    /// The verdict once every event of the current instant has been handled.
    fn check(&mut self) -> Result<(), (Failure, String)> {
        if let Some(what) = self.invalid.take() {
            return Err((Failure::Invalid, what));
        }
        if let Some(broken) = self.broken.take() {
            return Err(broken);
        }
        self.oracle.verdict().map_err(|f| {
            let what = format!("{f:?}");
            (f, what)
        })?;
        let mut believers = [0usize; MAX_SLOTS + 1];
        for (n, node) in self.nodes.iter().enumerate() {
            if node.busy > BUSY_LIMIT {
                return Err((
                    Failure::BusyLoop { node: n },
                    format!("node-{n} is woken again and again with nothing to do"),
                ));
            }
            let local = node.clock.local(self.now);
            if let Some(slot) = node.agent.as_ref().and_then(|a| a.leading(local)) {
                match self.lease_of(n, slot) {
                    LeaseId::Leader => believers[0] += 1,
                    LeaseId::Slot(i) => believers[usize::from(i) + 1] += 1,
                }
            }
        }
        if let Some(i) = believers.iter().position(|&b| b > 1) {
            let lease = match i {
                0 => LeaseId::Leader,
                i => LeaseId::Slot(i as u16 - 1),
            };
            let count = believers[i];
            return Err((
                Failure::TwoBelievers { lease, count },
                format!("{count} machines believe they lead {lease:?} at once"),
            ));
        }
        if self.now >= self.calm() {
            let s = self.scenario;
            if self.oracle.running(LeaseId::Leader) == 1 && self.leader_seen_in_tail.is_none() {
                self.leader_seen_in_tail = Some(self.now);
            }
            let full = self.oracle.pool_running() == s.pool_size.min(s.pool_members);
            if full && self.pool_full_in_tail.is_none() {
                self.pool_full_in_tail = Some(self.now);
            }
            self.check_heartbeats()?;
        }
        Ok(())
    }

    /// Once the API answers normally and any backoff has run out, each heartbeat node's lease
    /// is written on the server at least once per renew interval: judged on the server's writes
    /// (ground truth), never on the machine's word.
    fn check_heartbeats(&self) -> Result<(), (Failure, String)> {
        let s = self.scenario;
        if self.now < self.calm() + s.heartbeat_settle() {
            return Ok(());
        }
        for (n, lease, written) in &self.heartbeat_writes {
            let silent = self.now - written.unwrap_or(0);
            if silent > s.heartbeat_bound() {
                return Err((
                    Failure::HeartbeatLate { node: *n },
                    format!(
                        "node-{n}'s heartbeat lease {lease} was not written for {:.3}s with the \
                         API calm since {:.3}s (bound {:.3}s)",
                        silent as f64 / 1e6,
                        self.calm() as f64 / 1e6,
                        s.heartbeat_bound() as f64 / 1e6
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs to the scenario's end, checking once every event of an instant has been handled.
    pub fn run(mut self) -> Result<Report, Violation> {
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.scenario.duration {
                break;
            }
            if q.at > self.now {
                self.check().map_err(|(f, what)| self.violation(f, what))?;
            }
            self.now = q.at;
            self.report.steps += 1;
            self.handle(q);
        }
        self.check().map_err(|(f, what)| self.violation(f, what))?;
        self.now = self.scenario.duration;
        let s = self.scenario;
        let calm = self.calm();
        let bound = calm + s.liveness_bound();
        if s.electors > 0 && self.leader_seen_in_tail.is_none_or(|t| t > bound) {
            let what = format!(
                "no work ran on the elected lease within {:.3}s of the API calming at {:.3}s \
                 (first: {:?})",
                s.liveness_bound() as f64 / 1e6,
                calm as f64 / 1e6,
                self.leader_seen_in_tail
            );
            return Err(self.violation(Failure::NoLeader, what));
        }
        if s.pool_members > 0 && self.pool_full_in_tail.is_none_or(|t| t > bound) {
            let what = format!(
                "the pool did not run {} works within {:.3}s of the API calming (first: {:?})",
                s.pool_size.min(s.pool_members),
                s.liveness_bound() as f64 / 1e6,
                self.pool_full_in_tail
            );
            return Err(self.violation(Failure::PoolNotFull, what));
        }
        self.report.min_gap = self.oracle.min_gap();
        Ok(self.report)
    }

    fn violation(&mut self, failure: Failure, what: String) -> Violation {
        Violation {
            seed: self.scenario.seed,
            at: self.now,
            failure,
            what,
            trace: self.trace.take().unwrap_or_default(),
        }
    }
}

/// A lease's resourceVersion as the model server issues it: a number.
fn version(lease: &leasehold_core::Lease) -> u64 {
    lease.resource_version.as_str().parse().unwrap_or(0)
}
