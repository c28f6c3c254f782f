//! Cold start at cluster scale: hundreds to thousands of pool members against the model server,
//! with the faults of a boot storm (the server's flow control answering 429, watch streams it
//! ends because a reader lags, members that crash while holding their slot).
//!
//! Lean by design, so that 5 000 members run in CI time: one clock, one latency per message, and
//! a write reaches every open stream in one step (or, with `fan_out_per_stream`, one stream
//! after another through a server with a ceiling on its deliveries). What it judges is ground
//! truth, never the core's own flags:
//! - the **work**: a member builds from its `BecameLeader` until its hold time has passed, and
//!   a fence kills the work at the last deadline the member was given (`Renewed`), whether the
//!   member is alive or not. At no instant may more than `slots` works run;
//! - the **requests** each member sent, by verb and by answer, counted on the wire;
//! - **liveness**: every member that did not crash finishes within a stated bound.

use crate::rng::Rng;
use crate::server::Server;
use leasehold_core::{
    ApiError, Duration, Event, Identity, Instant, Lease, Machine, MicroTime, Operation, Pool,
    PoolConfig, Request, Response, SlotEvent, SlotNames, Timing, WatchEvent,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The most slots a scenario may have.
pub const MAX_SLOTS: usize = 10;

/// One cold start (or delegation) to simulate.
#[derive(Clone, Debug)]
pub struct ColdStart {
    /// Pool members.
    pub members: usize,
    /// They boot at instants spread uniformly over this (a DaemonSet's roll-out; the
    /// benchmark's members start at once).
    pub boot_within: Duration,
    /// Slots (`cold-start-0..k`).
    pub slots: usize,
    /// Mean time a member holds its slot to build its cache. `None`: a delegation pool, held
    /// until the member ends.
    pub hold: Option<Duration>,
    /// How far each member's hold may differ from the mean, in %: each draws its own within
    /// ±spread (0: every member holds exactly the mean, the benchmark's fixed T).
    pub spread_percent: u64,
    /// Members that crash while holding: the first ones to get a slot.
    pub crashes: usize,
    /// How long after its term began each of them crashes (zero: as it begins, before its
    /// first renew; a minute: a delegate that served a while).
    pub crash_after: Duration,
    /// Members whose stream the server ends once because they lag, in ‰.
    pub lagging_permille: u32,
    /// Requests a second the server admits before it answers 429 (its flow control).
    pub server_qps: u32,
    /// How late, on average, the server's streams deliver a write beyond the least delay (its
    /// fan-out queue under load): each write's delay is drawn from an exponential with this
    /// mean, and the streams deliver in order.
    pub watch_lag: Duration,
    /// How long the server takes to hand a write to one stream: it serves the open streams one
    /// after another (in member order), and a write's fan-out begins once the one before it
    /// has ended, so that it has a ceiling (deliveries a second) and writes queue behind it.
    /// Zero: every stream sees a write at once.
    pub fan_out_per_stream: Duration,
    /// Changes the server keeps for resumes: a stream resumed from before them gets 410 and
    /// lists again.
    pub history: usize,
    /// Whether the server streams lists (`sendInitialEvents`, Kubernetes 1.32 and 1.34 on): a
    /// stream started without a version is then one request, its watch, instead of a LIST
    /// and a WATCH.
    pub streams_lists: bool,
    /// Seed of everything random.
    pub seed: u64,
}

/// Requests one member sent, by verb.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Lists (a pool stream opened without a version).
    pub lists: u32,
    /// Watch streams opened.
    pub watches: u32,
    /// Reads.
    pub gets: u32,
    /// Creates.
    pub creates: u32,
    /// Updates (takes, renews, releases).
    pub updates: u32,
}

impl Sent {
    /// Every request.
    pub fn total(&self) -> u32 {
        self.lists + self.watches + self.gets + self.creates + self.updates
    }

    /// What was sent since `before`, counted earlier.
    fn since(&self, before: &Sent) -> Sent {
        Sent {
            lists: self.lists - before.lists,
            watches: self.watches - before.watches,
            gets: self.gets - before.gets,
            creates: self.creates - before.creates,
            updates: self.updates - before.updates,
        }
    }

    fn add(&mut self, other: &Sent) {
        self.lists += other.lists;
        self.watches += other.watches;
        self.gets += other.gets;
        self.creates += other.creates;
        self.updates += other.updates;
    }
}

/// A slot whose holder crashed while holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashTakeover {
    /// When its holder crashed (just after it began its term).
    pub crashed_at: Duration,
    /// How long after the crash another member wrote itself the holder; `None`: never.
    pub taken_after: Option<Duration>,
    /// How many distinct members wrote themselves its holder after the crash.
    pub takers: usize,
    /// Requests by the members that were waiting when it crashed, from the crash until 3 s
    /// after the first take: the take, the new holder's renews, and the next reservation's
    /// race.
    pub requests: Sent,
    /// Of those, the ones answered 409.
    pub conflicts: u32,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct ColdStartReport {
    /// When the last surviving member finished (cold start), or the end of the run.
    pub makespan: Duration,
    /// `ceil(N / k) × mean hold`.
    pub ideal: Duration,
    /// The drawn holds of the members that did not crash, over k: no schedule is shorter.
    pub work_bound: Duration,
    /// Members that finished their work and released.
    pub finished: usize,
    /// The most works running at one instant.
    pub most_at_once: usize,
    /// Requests by verb, all members together.
    pub sent: Sent,
    /// The most requests one member sent.
    pub most_by_one: u32,
    /// Answers 409 (Conflict or AlreadyExists).
    pub conflicts: u32,
    /// Answers 429.
    pub throttled: u32,
    /// Streams the server ended because their reader lagged.
    pub lagged: u32,
    /// The slots whose holder crashed, and what became of them.
    pub crash_takeovers: Vec<CrashTakeover>,
    /// Requests sent by members that were waiting, over the last minute of a delegation run.
    pub idle_requests_last_minute: u32,
    /// Requests sent on a slot inside the Retry-After the server gave for it.
    pub ignored_retry_after: u32,
}

impl ColdStartReport {
    /// Requests per member on average.
    pub fn mean_per_member(&self, members: usize) -> f64 {
        f64::from(self.sent.total()) / members.max(1) as f64
    }
}

const MS: u64 = 1_000;
const SECOND: u64 = 1_000_000;
/// One-way latency of a request or answer, µs.
const LATENCY: (u64, u64) = (300, 1_500);
/// From a write to its watch event on every stream, at the least, µs.
const WATCH_DELAY: u64 = 1_000;

// Requests and leases are stored inline; the event slab reuses its entries, so boxing would
// only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Ev {
    /// A request reaches the server.
    Server {
        member: usize,
        req: Request,
    },
    /// An answer reaches its member.
    Answer {
        member: usize,
        slot: u16,
        resp: Response,
    },
    /// A write reaches one stream, in a fan-out one stream after another.
    Deliver {
        member: usize,
        rv: u64,
        slot: u16,
        event: WatchEvent,
    },
    /// Events of one stream reach its member (a list, a resume, its end).
    Stream {
        member: usize,
        generation: u64,
        events: Vec<(u16, WatchEvent)>,
    },
    /// A write reaches the server's fan-out: every stream open on the pool, at once or in turn.
    Broadcast {
        rv: u64,
        slot: u16,
        event: WatchEvent,
    },
    Boot {
        member: usize,
    },
    Wake {
        member: usize,
    },
    WorkDone {
        member: usize,
    },
    /// The fence's deadline for a member's work.
    Fence {
        member: usize,
    },
    /// The server ends a lagging reader's stream.
    Lag {
        member: usize,
    },
    /// A member chosen to crash while holding crashes.
    Crash {
        member: usize,
        slot: u16,
    },
    /// Three seconds after a crashed slot's first take: what the hand-over cost is counted.
    Settled {
        crash: usize,
    },
}

/// What a crash cost: the counts when it happened, until `settled`; then what they grew by.
#[derive(Clone, Debug)]
struct CrashCost {
    /// The members waiting when it happened.
    waiting: Vec<usize>,
    requests: Sent,
    conflicts: u32,
    settled: bool,
}

#[derive(Debug)]
struct Work {
    valid_until: Option<Instant>,
}

struct Member {
    pool: Option<Pool<MAX_SLOTS>>,
    hold: u64,
    crashed: bool,
    /// Its requests answered 409.
    conflicts: u32,
    finished: Option<u64>,
    work: Option<Work>,
    /// The open stream: its generation, the server revision it started after, and its slot.
    stream: Option<(u64, u64)>,
    wake: Option<u64>,
    sent: Sent,
    /// Per slot: when the Retry-After the server gave ends, µs.
    quiet_until: [u64; MAX_SLOTS + 1],
}

struct Sim<'a> {
    s: &'a ColdStart,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Ev>>,
    free_events: Vec<usize>,
    server: Server,
    names: SlotNames,
    members: Vec<Member>,
    rng: Rng,
    generation: u64,
    running: usize,
    report: ColdStartReport,
    /// Admission: the start of the current second and requests admitted in it.
    window: (u64, u32),
    crashed_slots: Vec<(u16, u64)>,
    /// Members chosen to crash so far (each crashes `crash_after` into its term).
    doomed: usize,
    /// Per crash: the requests and 409s counted when it happened, then what they grew by until
    /// it settled.
    crash_costs: Vec<CrashCost>,
    /// When the last write reached the server's fan-out.
    last_delivery: u64,
    /// When the server's fan-out of the writes so far ends (see `fan_out_per_stream`): one
    /// write's fan-out after another, so each stream gets them in order.
    fan_out_free_at: u64,
    /// Slot takers seen after a crash: per crash, the members that took it and when.
    takers: Vec<Vec<(usize, u64)>>,
}

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

/// The time of the first attempt: 2026-01-01, so a wall clock is set.
const WALL_ZERO: i64 = 1_767_225_600_000_000;

impl<'a> Sim<'a> {
    fn push(&mut self, when: u64, ev: Ev) {
        self.seq += 1;
        let i = match self.free_events.pop() {
            Some(i) => {
                self.events[i] = Some(ev);
                i
            }
            None => {
                self.events.push(Some(ev));
                self.events.len() - 1
            }
        };
        self.queue.push(Reverse((when, self.seq, i)));
    }

    fn latency(&mut self) -> u64 {
        self.rng.range(LATENCY.0, LATENCY.1 + 1)
    }

    /// Sends what member `m` asks for, drains its events, and schedules its wake-up.
    fn step(&mut self, m: usize) {
        if self.members[m].crashed {
            return;
        }
        let now = self.now;
        loop {
            let Some(pool) = self.members[m].pool.as_mut() else {
                return;
            };
            let Some(req) =
                pool.poll_request(at(now), MicroTime::from_unix_micros(WALL_ZERO + now as i64))
            else {
                break;
            };
            self.send(m, req);
        }
        while let Some(event) = self.members[m].pool.as_mut().and_then(Machine::poll_event) {
            self.on_event(m, event);
        }
        let Some(pool) = self.members[m].pool.as_ref() else {
            return;
        };
        if pool.is_closed() {
            return;
        }
        let wake = pool.poll_timeout().map(|t| t.as_micros().max(now));
        if let Some(wake) = wake {
            if self.members[m].wake.is_none_or(|w| w > wake || w < now) {
                self.members[m].wake = Some(wake);
                self.push(wake, Ev::Wake { member: m });
            }
        }
    }

    fn send(&mut self, m: usize, req: Request) {
        let member = &mut self.members[m];
        match &req.op {
            Operation::Unwatch => {
                member.stream = None;
                return;
            }
            Operation::WatchSlots {
                resource_version, ..
            } => {
                if resource_version.is_none() && !self.s.streams_lists {
                    member.sent.lists += 1;
                }
                member.sent.watches += 1;
                member.stream = None;
            }
            Operation::Watch { .. } => member.sent.watches += 1,
            Operation::Get => member.sent.gets += 1,
            Operation::Create(_) => member.sent.creates += 1,
            Operation::Update { .. } => member.sent.updates += 1,
        }
        let stream = matches!(
            req.op,
            Operation::WatchSlots { .. } | Operation::Watch { .. }
        );
        let quiet = member.quiet_until[usize::from(req.slot).min(MAX_SLOTS)];
        if !stream && self.now < quiet {
            self.report.ignored_retry_after += 1;
        }
        let lat = self.latency();
        self.push(self.now + lat, Ev::Server { member: m, req });
    }

    /// Whether the server's flow control admits one more request now.
    fn admit(&mut self) -> bool {
        if self.now >= self.window.0 + SECOND {
            self.window = (self.now - self.now % SECOND, 0);
        }
        self.window.1 += 1;
        self.window.1 <= self.s.server_qps
    }

    fn serve(&mut self, m: usize, req: Request) {
        let back = self.latency();
        if !self.admit() {
            self.report.throttled += 1;
            let retry_after = Duration::from_secs(1);
            self.members[m].quiet_until[usize::from(req.slot).min(MAX_SLOTS)] =
                self.now + back + SECOND;
            let error = ApiError::TooManyRequests {
                retry_after: Some(retry_after),
            };
            match req.op {
                Operation::WatchSlots { .. } | Operation::Watch { .. } => {
                    let events = vec![(req.slot, WatchEvent::Failed)];
                    self.open_stream(m, back, u64::MAX, events);
                }
                _ => self.push(
                    self.now + back,
                    Ev::Answer {
                        member: m,
                        slot: req.slot,
                        resp: Err(error),
                    },
                ),
            }
            return;
        }
        if let Operation::WatchSlots {
            slots,
            resource_version,
        } = &req.op
        {
            let events = self
                .server
                .watch_slots(slots, resource_version.as_ref())
                .into_iter()
                .map(|(to, e)| (to.unwrap_or(req.slot), e))
                .collect::<Vec<_>>();
            let expired = matches!(events.as_slice(), [(_, WatchEvent::Expired)]);
            let from = if expired {
                u64::MAX
            } else {
                self.server.revision()
            };
            self.open_stream(m, back, from, events);
            return;
        }
        let name = req.lease.as_str().to_owned();
        let (resp, _) = self.server.apply(&name, &req.op);
        if matches!(resp, Err(ApiError::Conflict | ApiError::AlreadyExists)) {
            self.report.conflicts += 1;
            self.members[m].conflicts += 1;
        }
        if matches!(req.op, Operation::Create(_) | Operation::Update { .. }) {
            if let Ok(lease) = &resp {
                self.written(&name, lease.clone());
            }
        }
        self.push(
            self.now + back,
            Ev::Answer {
                member: m,
                slot: req.slot,
                resp,
            },
        );
    }

    /// Opens member `m`'s stream as a new generation: `events` (its list, its resume, or the
    /// refusal that ends it at once) reach it `after` µs, then every write after revision
    /// `from` (none for a stream that ends at once: `u64::MAX`) until it ends.
    fn open_stream(&mut self, m: usize, after: u64, from: u64, events: Vec<(u16, WatchEvent)>) {
        self.generation += 1;
        let generation = self.generation;
        self.members[m].stream = Some((generation, from));
        self.push(
            self.now + after,
            Ev::Stream {
                member: m,
                generation,
                events,
            },
        );
    }

    /// Whether member `m` has a stream open that a write at revision `rv` reaches: opened
    /// before it, and the member alive.
    fn streams_to(&self, m: usize, rv: u64) -> bool {
        let member = &self.members[m];
        member.stream.is_some_and(|(_, from)| rv > from) && !member.crashed
    }

    /// The write at revision `rv` reaches member `m`'s stream, if it is still open to it (a
    /// stream opened since starts after it, with the write in its list).
    fn deliver(&mut self, m: usize, rv: u64, slot: u16, event: WatchEvent) {
        if !self.streams_to(m, rv) {
            return;
        }
        if let Some(pool) = self.members[m].pool.as_mut() {
            pool.handle_watch_event(slot, event, at(self.now));
        }
        self.step(m);
    }

    /// A write the server stored: every open stream sees it.
    fn written(&mut self, name: &str, lease: Lease) {
        let Some(slot) = self.names.index_of(name) else {
            return;
        };
        let rv = self.server.revision();
        if let Some(holder) = lease.record.holder.as_wire() {
            self.took(slot, holder);
        }
        let at = self.delivery_time();
        self.push(
            at,
            Ev::Broadcast {
                rv,
                slot,
                event: WatchEvent::Changed(lease),
            },
        );
    }

    /// When a write made now reaches the streams: the least delay, plus an exponential lag,
    /// never before the write before it.
    fn delivery_time(&mut self) -> u64 {
        let mean = self.s.watch_lag.as_micros() as f64;
        let u = (self.rng.range(1, 1 << 30) as f64) / f64::from(1u32 << 30);
        let lag = (-u.ln() * mean) as u64;
        self.last_delivery = (self.now + WATCH_DELAY + lag).max(self.last_delivery);
        self.last_delivery
    }

    /// `holder` wrote slot `slot`: a take of a crashed member's slot is recorded.
    fn took(&mut self, slot: u16, holder: &str) {
        for i in 0..self.crashed_slots.len() {
            if self.crashed_slots[i].0 == slot {
                if let Some(taker) = holder.strip_prefix("node-").and_then(|n| n.parse().ok()) {
                    let known = self.takers[i].iter().any(|(m, _)| *m == taker);
                    if !known && !self.members[taker].crashed {
                        if self.takers[i].is_empty() {
                            self.push(self.now + 3 * SECOND, Ev::Settled { crash: i });
                        }
                        self.takers[i].push((taker, self.now));
                    }
                }
            }
        }
    }

    fn on_event(&mut self, m: usize, event: SlotEvent) {
        match event.event {
            Event::BecameLeader { .. } => {
                self.running += 1;
                self.report.most_at_once = self.report.most_at_once.max(self.running);
                assert!(
                    self.running <= self.s.slots,
                    "{} works at once at {} µs, over {} slots",
                    self.running,
                    self.now,
                    self.s.slots
                );
                self.members[m].work = Some(Work { valid_until: None });
                if self.doomed < self.s.crashes {
                    self.doomed += 1;
                    let at = self.now + self.s.crash_after.as_micros();
                    self.push(
                        at,
                        Ev::Crash {
                            member: m,
                            slot: event.slot,
                        },
                    );
                } else if self.s.hold.is_some() {
                    let hold = self.members[m].hold;
                    self.push(self.now + hold, Ev::WorkDone { member: m });
                }
            }
            Event::Renewed { deadline } => {
                if let Some(work) = self.members[m].work.as_mut() {
                    work.valid_until = Some(deadline);
                    self.push(deadline.as_micros(), Ev::Fence { member: m });
                }
            }
            Event::LostLeadership { .. } => self.stop_work(m),
            _ => {}
        }
    }

    /// What crash `crash` cost, from its counts when it happened to now.
    fn settle(&mut self, crash: usize) {
        if self.crash_costs[crash].settled {
            return;
        }
        let (requests, conflicts) = self.sent_by(&self.crash_costs[crash].waiting);
        let cost = &mut self.crash_costs[crash];
        cost.requests = requests.since(&cost.requests);
        cost.conflicts = conflicts - cost.conflicts;
        cost.settled = true;
    }

    /// Requests sent so far by `members`, and how many were answered 409.
    fn sent_by(&self, members: &[usize]) -> (Sent, u32) {
        let mut all = Sent::default();
        let mut conflicts = 0;
        for m in members {
            all.add(&self.members[*m].sent);
            conflicts += self.members[*m].conflicts;
        }
        (all, conflicts)
    }

    fn stop_work(&mut self, m: usize) {
        if self.members[m].work.take().is_some() {
            self.running -= 1;
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Boot { member } => {
                let config = PoolConfig {
                    prefix: "cold-start",
                    size: self.s.slots,
                    identity: Identity::new(&format!("node-{member}")).expect("a valid identity"),
                    timing: Timing::DEFAULT,
                    watch: true,
                };
                let seed = self.s.seed ^ (member as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                self.members[member].pool = Some(Pool::new(config, seed).expect("a valid pool"));
                self.step(member);
            }
            Ev::Server { member, req } => self.serve(member, req),
            Ev::Answer { member, slot, resp } => {
                if !self.members[member].crashed {
                    if let Some(pool) = self.members[member].pool.as_mut() {
                        pool.handle_answer(slot, resp, at(self.now));
                    }
                    self.step(member);
                }
            }
            Ev::Stream {
                member,
                generation,
                events,
            } => {
                let current = self.members[member].stream.map(|(g, _)| g);
                if self.members[member].crashed || current != Some(generation) {
                    return;
                }
                for (slot, event) in events {
                    let last = matches!(event, WatchEvent::Failed | WatchEvent::Expired);
                    if let Some(pool) = self.members[member].pool.as_mut() {
                        pool.handle_watch_event(slot, event, at(self.now));
                    }
                    if last {
                        self.members[member].stream = None;
                    }
                }
                self.step(member);
            }
            Ev::Broadcast { rv, slot, event } => {
                let per_stream = self.s.fan_out_per_stream.as_micros();
                let mut when = self.now.max(self.fan_out_free_at);
                for m in 0..self.members.len() {
                    if !self.streams_to(m, rv) {
                        continue;
                    }
                    if per_stream == 0 {
                        self.deliver(m, rv, slot, event.clone());
                        continue;
                    }
                    when += per_stream;
                    self.fan_out_free_at = when;
                    let event = event.clone();
                    self.push(
                        when,
                        Ev::Deliver {
                            member: m,
                            rv,
                            slot,
                            event,
                        },
                    );
                }
            }
            Ev::Deliver {
                member,
                rv,
                slot,
                event,
            } => self.deliver(member, rv, slot, event),
            Ev::Wake { member } => {
                if self.members[member].wake != Some(self.now) || self.members[member].crashed {
                    return;
                }
                self.members[member].wake = None;
                if let Some(pool) = self.members[member].pool.as_mut() {
                    pool.handle_timeout(at(self.now));
                }
                self.step(member);
            }
            Ev::WorkDone { member } => {
                if self.members[member].work.is_some() {
                    self.stop_work(member);
                    self.members[member].finished = Some(self.now);
                    self.report.finished += 1;
                    if let Some(pool) = self.members[member].pool.as_mut() {
                        pool.close(at(self.now));
                    }
                    self.step(member);
                }
            }
            Ev::Fence { member } => {
                let expired = self.members[member]
                    .work
                    .as_ref()
                    .and_then(|w| w.valid_until)
                    .is_some_and(|until| until.as_micros() <= self.now);
                if expired {
                    self.stop_work(member);
                }
            }
            Ev::Crash { member, slot } => {
                if self.members[member].work.is_none() {
                    // It lost its slot before: the next member to begin a term crashes instead.
                    self.doomed -= 1;
                    return;
                }
                // Its work runs on until its fence kills it.
                self.members[member].crashed = true;
                self.members[member].stream = None;
                self.crashed_slots.push((slot, self.now));
                self.takers.push(Vec::new());
                // Booted, neither holding nor finished.
                let waiting: Vec<usize> = (0..self.members.len())
                    .filter(|m| {
                        let m = &self.members[*m];
                        m.pool.is_some() && m.work.is_none() && m.finished.is_none() && !m.crashed
                    })
                    .collect();
                let (requests, conflicts) = self.sent_by(&waiting);
                self.crash_costs.push(CrashCost {
                    requests,
                    conflicts,
                    waiting,
                    settled: false,
                });
            }
            Ev::Settled { crash } => self.settle(crash),
            Ev::Lag { member } => {
                if let Some((_, _)) = self.members[member].stream.take() {
                    self.report.lagged += 1;
                    let slot = self.s.slots as u16;
                    if let Some(pool) = self.members[member].pool.as_mut() {
                        pool.handle_watch_event(slot, WatchEvent::Ended, at(self.now));
                    }
                    self.step(member);
                }
            }
        }
    }
}

/// Runs one scenario to its end: every surviving member finished (cold start), or ten minutes
/// of simulated time (delegation). An error says which property failed.
pub fn run(s: &ColdStart) -> Result<ColdStartReport, String> {
    assert!(s.slots <= MAX_SLOTS && s.slots > 0);
    let mut rng = Rng::new(s.seed);
    let mean_hold = s.hold.map(|h| h.as_micros());
    let members = (0..s.members)
        .map(|_| Member {
            pool: None,
            hold: mean_hold.map_or(0, |h| {
                let spread = h * s.spread_percent.min(100) / 100;
                rng.range(h - spread, h + spread + 1)
            }),
            crashed: false,
            finished: None,
            work: None,
            stream: None,
            wake: None,
            sent: Sent::default(),
            conflicts: 0,
            quiet_until: [0; MAX_SLOTS + 1],
        })
        .collect();
    let mut sim = Sim {
        s,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: Vec::new(),
        free_events: Vec::new(),
        server: Server::new(s.history),
        names: SlotNames::new("cold-start", s.slots as u16).expect("a valid prefix"),
        members,
        rng,
        generation: 0,
        running: 0,
        report: ColdStartReport::default(),
        window: (0, 0),
        crashed_slots: Vec::new(),
        doomed: 0,
        crash_costs: Vec::new(),
        last_delivery: 0,
        fan_out_free_at: 0,
        takers: Vec::new(),
    };
    for m in 0..s.members {
        let boot = sim.rng.range(0, s.boot_within.as_micros().max(1));
        sim.push(boot, Ev::Boot { member: m });
        if sim.rng.chance(u64::from(s.lagging_permille)) {
            let lag = sim.rng.range(2 * SECOND, 20 * SECOND);
            sim.push(lag, Ev::Lag { member: m });
        }
    }
    let horizon = match s.hold {
        Some(_) => bound(s).as_micros() * 2,
        None => 600 * SECOND,
    };
    let survivors = s.members - s.crashes;
    let mut idle_from_sent = None;
    while let Some(Reverse((when, _, i))) = sim.queue.pop() {
        if when > horizon {
            break;
        }
        if s.hold.is_none() && idle_from_sent.is_none() && when >= horizon - 60 * SECOND {
            idle_from_sent = Some(waiting_sent(&sim));
        }
        sim.now = when;
        let ev = sim.events[i].take().expect("an event is handled once");
        sim.free_events.push(i);
        sim.handle(ev);
        if s.hold.is_some() && sim.report.finished == survivors {
            break;
        }
    }
    sim.now = sim.now.min(horizon);
    // A crashed slot never taken, or taken in the last three seconds: counted to the end.
    for crash in 0..sim.crash_costs.len() {
        sim.settle(crash);
    }
    let idle_now = waiting_sent(&sim);
    let mut report = std::mem::take(&mut sim.report);
    if let Some(before) = idle_from_sent {
        report.idle_requests_last_minute = idle_now.saturating_sub(before);
    }
    for member in &sim.members {
        report.sent.add(&member.sent);
        report.most_by_one = report.most_by_one.max(member.sent.total());
    }
    report.makespan = Duration::from_micros(sim.now);
    report.ideal =
        Duration::from_micros(mean_hold.unwrap_or(0) * s.members.div_ceil(s.slots) as u64);
    let holds: u64 = sim
        .members
        .iter()
        .filter(|m| !m.crashed)
        .map(|m| m.hold)
        .sum();
    report.work_bound = Duration::from_micros(holds / s.slots as u64);
    report.crash_takeovers = sim
        .crashed_slots
        .iter()
        .zip(&sim.takers)
        .zip(&sim.crash_costs)
        .map(|(((_, crashed_at), takers), cost)| CrashTakeover {
            crashed_at: Duration::from_micros(*crashed_at),
            taken_after: takers
                .first()
                .map(|(_, at)| Duration::from_micros(at - crashed_at)),
            takers: takers.len(),
            requests: cost.requests,
            conflicts: cost.conflicts,
        })
        .collect();
    if report.ignored_retry_after > 0 {
        return Err(format!(
            "{} requests inside their Retry-After: {report:?}",
            report.ignored_retry_after
        ));
    }
    if s.hold.is_some() && report.finished < survivors {
        return Err(format!(
            "only {} of {survivors} members finished within {:?}: {report:?}",
            report.finished,
            Duration::from_micros(horizon)
        ));
    }
    Ok(report)
}

/// Requests sent so far by members that hold no slot.
fn waiting_sent(sim: &Sim<'_>) -> u32 {
    sim.members
        .iter()
        .filter(|m| m.work.is_none() && !m.crashed)
        .map(|m| m.sent.total())
        .sum()
}

/// How long a cold start may take, derived: `ceil(N / k)` rounds of the longest hold plus a
/// hand-over allowance each (a retry period: the worst a member waits for a freed slot it was
/// throttled from seeing at once), plus, per crashed holder, how long it held before the crash
/// and a lease duration (its slot is waited out), and two retry periods of boot.
pub fn bound(s: &ColdStart) -> Duration {
    let timing = Timing::DEFAULT;
    let hold = s.hold.map_or(0, |h| {
        h.as_micros() * (100 + s.spread_percent.min(100)) / 100
    });
    let rounds = s.members.div_ceil(s.slots) as u64;
    let handover = timing.retry_period().as_micros();
    let crashes =
        s.crashes as u64 * (s.crash_after.as_micros() + timing.lease_duration().as_micros());
    Duration::from_micros(rounds * (hold + handover) + crashes + 2 * handover + MS)
}
