//! The network between the agents and the model server: requests that are delayed, lost,
//! failed, throttled or answered too late, and watch streams that deliver changes in order, get
//! cut, end at the server's timeout, or expire.

use super::{Ev, World, version};
use crate::outcome::Failure;
use crate::scenario::{Fault, Network};
use crate::server::Effect;
use leasehold_core::{ApiError, Duration, Holder, Operation, Request, SlotNames, WatchEvent};

/// One open watch stream.
pub(super) struct Watcher {
    pub(super) id: u64,
    pub(super) node: usize,
    pub(super) inc: u32,
    pub(super) slot: u16,
    pub(super) name: String,
    /// A pool's stream: the slots it delivers, each to its own slot number.
    pub(super) slots: Option<SlotNames>,
    /// When its last event arrives: later events never overtake it.
    pub(super) last_delivery: u64,
}

impl World<'_> {
    pub(super) fn network(&self) -> Network {
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

    fn reachable(&self, n: usize) -> bool {
        self.nodes[n].partitioned_until <= self.now && self.outage_until <= self.now
    }

    /// Sends one request of node `n`'s agent.
    pub(super) fn send(&mut self, n: usize, inc: u32, req: Request) {
        let slot = req.slot;
        let t = self.now;
        let net = self.network();
        self.log(|| format!("node-{n} sends slot {slot} {:?}", req.op));
        match &req.op {
            Operation::Watch { .. } | Operation::WatchSlots { .. } => {
                self.report.watches += 1;
                let lat = self.rng.range(1, net.max_latency + 1);
                let name = req.lease.as_str().to_owned();
                self.close_streams(|node, on| node == n && on == slot);
                self.next_stream += 1;
                let id = self.next_stream;
                self.streams.insert((n, slot), id);
                let slots = match &req.op {
                    Operation::WatchSlots { slots, .. } => Some(slots.clone()),
                    _ => None,
                };
                let events: Vec<(Option<u16>, WatchEvent)> = match &req.op {
                    _ if !self.reachable(n) => vec![(None, WatchEvent::Failed)],
                    Operation::WatchSlots { .. } if self.scenario.names_only => {
                        vec![(None, WatchEvent::Forbidden)]
                    }
                    Operation::WatchSlots {
                        slots,
                        resource_version,
                    } => self.server.watch_slots(slots, resource_version.as_ref()),
                    Operation::Watch { resource_version } => self
                        .server
                        .watch(&name, resource_version.as_ref())
                        .into_iter()
                        .map(|event| (None, event))
                        .collect(),
                    _ => Vec::new(),
                };
                let opened = !matches!(
                    events.as_slice(),
                    [(None, WatchEvent::Failed | WatchEvent::Expired)]
                );
                if matches!(events.as_slice(), [(None, WatchEvent::Expired)]) {
                    self.report.expired += 1;
                }
                // Replayed at once, up to the server's revision now: a deletion shows the state
                // as of then (a re-creation replayed after it shows its own, newer).
                let revision = self.server.revision();
                let listed: Vec<u16> = events
                    .iter()
                    .filter_map(|(to, e)| matches!(e, WatchEvent::Changed(_)).then_some(*to)?)
                    .collect();
                for (to, event) in events {
                    let shown = match (&event, to) {
                        (WatchEvent::Changed(lease), Some(to)) => vec![(to, version(lease))],
                        (WatchEvent::Changed(lease), None) => vec![(slot, version(lease))],
                        (WatchEvent::Deleted, to) => vec![(to.unwrap_or(slot), revision)],
                        (WatchEvent::Synced(rv), _) => {
                            let rv = rv.as_str().parse().unwrap_or(0);
                            (0..slot)
                                .filter(|s| !listed.contains(s))
                                .map(|s| (s, rv))
                                .collect()
                        }
                        _ => Vec::new(),
                    };
                    self.push(
                        t + lat,
                        Ev::Watch {
                            node: n,
                            inc,
                            slot: to.unwrap_or(slot),
                            stream: id,
                            event,
                            shown,
                        },
                    );
                }
                if opened {
                    self.watchers.push(Watcher {
                        id,
                        node: n,
                        inc,
                        slot,
                        name,
                        slots,
                        last_delivery: t + lat,
                    });
                    let life = self.scenario.watch_lifetime;
                    let ends = t + lat + self.rng.range(life / 2, life + 1);
                    self.push(ends, Ev::WatchTimeout { stream: id });
                }
                return;
            }
            Operation::Unwatch => {
                self.close_streams(|node, on| node == n && on == slot);
                return;
            }
            Operation::Get | Operation::Create(_) | Operation::Update { .. } => {}
        }
        self.report.requests += 1;
        let local = self.local(n);
        let waited = self.nodes[n].retry_after.get(usize::from(slot)).copied();
        if let Some(until) = waited.flatten().filter(|until| local < *until) {
            self.broke((
                Failure::IgnoredRetryAfter { node: n },
                format!(
                    "node-{n} sends {:?} on its lease {slot} {:.3}s before the Retry-After it was \
                     given",
                    req.op,
                    (until.as_micros() - local.as_micros()) as f64 / 1e6
                ),
            ));
        }
        let timeout_at = t + self.request_timeout;
        // The client gives up at its timeout when the request or its answer is lost.
        let time_out = Ev::Client {
            node: n,
            inc,
            slot,
            resp: Err(ApiError::Timeout),
        };
        if self.nodes[n].partitioned_until > t || self.rng.chance(net.request_loss_permille) {
            self.push(timeout_at, time_out);
            return;
        }
        let there = self.latency(&net);
        let back = self.latency(&net);
        let inject = if self.nodes[n].throttled_until > t {
            Some(ApiError::TooManyRequests {
                retry_after: Some(Fault::RETRY_AFTER),
            })
        } else if self.rng.chance(net.error_permille) {
            Some(ApiError::Server { status: 503 })
        } else if self.rng.chance(net.throttle_permille) {
            let after = self.rng.range(0, 3) + 1;
            Some(ApiError::TooManyRequests {
                retry_after: Some(Duration::from_secs(after)),
            })
        } else {
            None
        };
        let write = matches!(req.op, Operation::Create(_) | Operation::Update { .. });
        let answered = !self.rng.chance(net.response_loss_permille)
            && there + back <= self.request_timeout
            && !(write && self.nodes[n].write_answers_lost_until > t);
        if !answered {
            self.push(timeout_at, time_out);
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

    /// The server handles a request that reached it.
    pub(super) fn serve(
        &mut self,
        n: usize,
        inc: u32,
        req: Request,
        reply_after: Option<u64>,
        inject: Option<ApiError>,
    ) {
        let name = req.lease.as_str();
        let (mut resp, effect) = match inject {
            Some(error) => (Err(error), Effect::None),
            None => self.server.apply(name, &req.op),
        };
        match effect {
            Effect::Stored | Effect::Created => {
                // The sender named itself next over another's term.
                let sender = format!("node-{}", self.scenario.identities[n]);
                if let Operation::Update { record, .. } = &req.op {
                    if let Holder::Named(next) = &record.next_holder {
                        if next.as_str() == sender && !record.holder.is(next) {
                            self.report.reservations += 1;
                        }
                    }
                }
                if let Some(lease) = self.server.lease(name) {
                    let rv = lease.resource_version.as_str().parse().unwrap_or(0);
                    let transitions = lease.record.lease_transitions;
                    self.judge.written(name, n, inc, rv, transitions);
                    self.notify(name, WatchEvent::Changed(lease), rv);
                }
                let now = self.now;
                if let Some(hb) = self.heartbeat_writes.iter_mut().find(|hb| hb.1 == name) {
                    hb.2 = Some(now);
                    self.report.heartbeat_renewals += 1;
                }
            }
            Effect::Unchanged => self.report.unchanged += 1,
            Effect::None => {}
        }
        if effect == Effect::Created {
            // As both transports report it: the lease the update was for had been deleted (the
            // server re-created it, naming the writer, but no term of the writer's wrote it).
            resp = Err(ApiError::NotFound);
        }
        if resp == Err(ApiError::Conflict) {
            self.report.conflicts += 1;
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

    /// Delivers `event` to every watcher of `name`, in order per stream; some streams are cut
    /// instead.
    pub(super) fn notify(&mut self, name: &str, event: WatchEvent, revision: u64) {
        let net = self.network();
        let mut cut = Vec::new();
        for i in 0..self.watchers.len() {
            let to = match &self.watchers[i].slots {
                Some(slots) => slots.index_of(name),
                None => (self.watchers[i].name == name).then_some(self.watchers[i].slot),
            };
            let Some(slot) = to else {
                continue;
            };
            let lat = self.rng.range(1, net.max_latency + 1);
            let w = &mut self.watchers[i];
            let at = (self.now + lat).max(w.last_delivery);
            w.last_delivery = at;
            let (node, inc, stream) = (w.node, w.inc, w.id);
            // A cut ends the stream, so it reaches the slot that opened the stream: a pool's
            // stream slot, not the slot of the lease whose change was cut.
            let (slot, event, shown) = if self.rng.chance(net.watch_cut_permille) {
                cut.push(i);
                (w.slot, WatchEvent::Failed, Vec::new())
            } else {
                (slot, event.clone(), vec![(slot, revision)])
            };
            self.push(
                at,
                Ev::Watch {
                    node,
                    inc,
                    slot,
                    stream,
                    event,
                    shown,
                },
            );
        }
        for i in cut.into_iter().rev() {
            self.watchers.remove(i);
        }
    }

    /// The server ends stream `id` at its timeout, after what it already sent.
    pub(super) fn end_stream(&mut self, id: u64) {
        let Some(i) = self.watchers.iter().position(|w| w.id == id) else {
            return;
        };
        let w = self.watchers.remove(i);
        self.push(
            w.last_delivery.max(self.now),
            Ev::Watch {
                node: w.node,
                inc: w.inc,
                slot: w.slot,
                stream: w.id,
                event: WatchEvent::Ended,
                shown: Vec::new(),
            },
        );
    }

    /// Node `n` is cut off: its streams fail.
    pub(super) fn cut_streams(&mut self, n: usize) {
        let cut: Vec<(u32, u16, u64)> = self
            .watchers
            .iter()
            .filter(|w| w.node == n)
            .map(|w| (w.inc, w.slot, w.id))
            .collect();
        self.watchers.retain(|w| w.node != n);
        for (inc, slot, stream) in cut {
            self.push(
                self.now + 1_000,
                Ev::Watch {
                    node: n,
                    inc,
                    slot,
                    stream,
                    event: WatchEvent::Failed,
                    shown: Vec::new(),
                },
            );
        }
    }

    /// The agent replaced or closed its streams on the (node, slot)s `which` picks: whatever
    /// of them is still on its way is dropped, as the driver drops the events of a stream it no
    /// longer holds, whether or not the server still sends it (one cut, ended or never opened
    /// may still have its last event on the way).
    pub(super) fn close_streams(&mut self, which: impl Fn(usize, u16) -> bool) {
        let ended = &mut self.ended_streams;
        self.streams.retain(|&(node, slot), id| {
            let closed = which(node, slot);
            if closed {
                ended.insert(*id);
            }
            !closed
        });
        self.watchers.retain(|w| !which(w.node, w.slot));
    }
}
