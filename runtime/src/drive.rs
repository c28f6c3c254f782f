//! The loop that runs one machine over one transport.

use crate::transport::is_last;
use crate::{Clock, Delivery, RequestError, Transport, WatchSink};
use leasehold_core::{Lease, Machine, Operation};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The open watch streams, by the slot that opened each: its generation and its task.
type Watches = HashMap<u16, (u64, JoinHandle<()>)>;

/// Runs `machine` over `transport` until it finishes after `shutdown` resolves. Each
/// application event is handed to `on_event` with the machine, for getters such as
/// `is_leader(now)`; see [`drive_reporting`] for the failed requests' own words.
pub async fn drive<M, T, S>(
    machine: &mut M,
    transport: Arc<T>,
    clock: Clock,
    shutdown: S,
    mut on_event: impl FnMut(&M, M::Event),
) where
    M: Machine,
    T: Transport,
    S: Future<Output = ()>,
{
    drive_reporting(machine, transport, clock, shutdown, |m, e, _| {
        on_event(m, e)
    })
    .await;
}

/// [`drive`], handing `on_event` with each event the failed request it came from, when it
/// came from one: the events drained right after the machine handled a failed answer (its
/// `RequestFailed`, say) or a watch stream's failure get that request's error, with the API
/// server's own `Status` and the cause. One input is handled at a time and its events are
/// drained before the next, so the pairing is exact even with requests of several slots in
/// flight.
pub async fn drive_reporting<M, T, S>(
    machine: &mut M,
    transport: Arc<T>,
    clock: Clock,
    shutdown: S,
    mut on_event: impl FnMut(&M, M::Event, Option<&RequestError>),
) where
    M: Machine,
    T: Transport,
    S: Future<Output = ()>,
{
    let (answers, mut answered) = mpsc::unbounded_channel::<(u16, Result<Lease, RequestError>)>();
    let (deliveries, mut delivered) = mpsc::unbounded_channel::<Delivery>();
    let mut watches: Watches = HashMap::new();
    let mut generation = 0u64;
    let mut stopping = false;
    let mut failure: Option<RequestError> = None;
    tokio::pin!(shutdown);
    loop {
        let now = clock.now();
        while let Some(request) = machine.poll_request(now, Clock::wall()) {
            let slot = request.slot;
            match request.op {
                Operation::Watch { resource_version } => {
                    generation += 1;
                    let sink = WatchSink::new(slot, generation, deliveries.clone());
                    let transport = transport.clone();
                    let task = tokio::spawn(async move {
                        transport.watch(request.lease, resource_version, sink).await
                    });
                    track(&mut watches, slot, generation, task);
                }
                Operation::WatchSlots {
                    slots,
                    resource_version,
                } => {
                    generation += 1;
                    let sink = WatchSink::new(slot, generation, deliveries.clone());
                    let transport = transport.clone();
                    let task = tokio::spawn(async move {
                        transport.watch_slots(slots, resource_version, sink).await
                    });
                    track(&mut watches, slot, generation, task);
                }
                Operation::Unwatch => {
                    if let Some((_, task)) = watches.remove(&slot) {
                        task.abort();
                    }
                }
                Operation::Get | Operation::Create(_) | Operation::Update { .. } => {
                    let (transport, answers) = (transport.clone(), answers.clone());
                    tokio::spawn(async move {
                        let response = transport.call(request).await;
                        let _ = answers.send((slot, response));
                    });
                }
            }
        }
        while let Some(event) = machine.poll_event() {
            on_event(machine, event, failure.as_ref());
        }
        failure = None;
        if machine.is_closed() {
            break;
        }
        let wake = machine.poll_timeout().map(|at| clock.deadline(at));
        tokio::select! {
            Some((slot, response)) = answered.recv() => {
                let response = response.map_err(|e| {
                    let kind = e.kind;
                    failure = Some(e);
                    kind
                });
                machine.handle_answer(slot, response, clock.now());
            }
            Some(Delivery { slot, generation, lease_slot, event, error }) = delivered.recv() => {
                // Events of a stream that was replaced or closed are stale. A stream is known by
                // the slot that opened it; a pool's stream delivers a lease's events to the
                // lease's own slot.
                if watches.get(&slot).is_some_and(|(g, _)| *g == generation) {
                    failure = error;
                    if lease_slot.is_none() && is_last(&event) {
                        watches.remove(&slot);
                    }
                    machine.handle_watch_event(lease_slot.unwrap_or(slot), event, clock.now());
                }
            }
            _ = sleep_until(wake) => machine.handle_timeout(clock.now()),
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                machine.close(clock.now());
            }
        }
    }
    for (_, (_, task)) in watches {
        task.abort();
    }
}

/// Keeps `task` as the watch stream of `slot`, ending the one it replaces.
fn track(watches: &mut Watches, slot: u16, generation: u64, task: JoinHandle<()>) {
    if let Some((_, old)) = watches.insert(slot, (generation, task)) {
        old.abort();
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cause, ListedLease, ServerStatus};
    use leasehold_core::{
        Instant, LeaseName, LeaseRecord, MicroTime, Request, ResourceVersion, SlotNames, Stats,
        Verb, WatchEvent,
    };
    use std::sync::atomic::{AtomicU32, Ordering};

    fn lease(rv: &str) -> Lease {
        Lease {
            resource_version: ResourceVersion::new(rv).unwrap(),
            record: LeaseRecord::EMPTY,
        }
    }

    /// Two openings of a pool's stream, each with its script of deliveries.
    #[derive(Default)]
    struct Scripted {
        opened: AtomicU32,
    }

    impl Transport for Scripted {
        async fn call(&self, request: Request) -> Result<Lease, RequestError> {
            Err(RequestError::failed(
                request.op.verb(),
                "leases",
                Cause::NotACall,
            ))
        }

        async fn list(
            &self,
            _: Option<&str>,
            _: Option<&str>,
        ) -> Result<Vec<ListedLease>, RequestError> {
            Ok(Vec::new())
        }

        async fn delete(&self, _: &str, _: &ResourceVersion) -> Result<(), RequestError> {
            Ok(())
        }

        async fn watch(&self, _: LeaseName, _: Option<ResourceVersion>, _: WatchSink) {}

        async fn watch_slots(&self, _: SlotNames, _: Option<ResourceVersion>, sink: WatchSink) {
            if self.opened.fetch_add(1, Ordering::SeqCst) == 0 {
                sink.send_to(0, WatchEvent::Changed(lease("5")));
                // Stale by the time the driver reads them: the machine opened the stream again.
                sink.send_to(2, WatchEvent::Deleted);
                sink.send(WatchEvent::Bookmark(ResourceVersion::new("6").unwrap()));
            } else {
                sink.send_to(1, WatchEvent::Changed(lease("7")));
                let status = ServerStatus::new(403, "Forbidden", "leases is forbidden");
                sink.fail(RequestError::refused(Verb::List, "leases", status));
                // After the stream's last event: no longer the machine's.
                sink.send_to(2, WatchEvent::Deleted);
            }
        }
    }

    /// A pool-like machine of three slots whose stream has slot 3: it opens the stream, opens
    /// it again on the first lease event, and closes a little after the stream is refused.
    #[derive(Default)]
    struct Recorder {
        opens: u32,
        seen: Vec<(u16, WatchEvent)>,
        told: Vec<(u16, WatchEvent)>,
        done_at: Option<Instant>,
        closed: bool,
    }

    impl Machine for Recorder {
        type Event = (u16, WatchEvent);

        fn is_closed(&self) -> bool {
            self.closed
        }

        fn stats(&self) -> Stats {
            Stats::default()
        }

        fn handle_answer(&mut self, _: u16, _: leasehold_core::Response, _: Instant) {}

        fn handle_watch_event(&mut self, slot: u16, event: WatchEvent, now: Instant) {
            if event == WatchEvent::Forbidden {
                self.done_at = Some(now + leasehold_core::Duration::from_millis(50));
            }
            self.seen.push((slot, event.clone()));
            self.told.push((slot, event));
        }

        fn handle_timeout(&mut self, now: Instant) {
            self.closed = self.done_at.is_some_and(|at| now >= at);
        }

        fn close(&mut self, _: Instant) {
            self.closed = true;
        }

        fn rejoin(&mut self, _: Instant) {}

        fn poll_request(&mut self, _: Instant, _: MicroTime) -> Option<Request> {
            let due = match self.opens {
                0 => true,
                1 => !self.seen.is_empty(),
                _ => false,
            };
            due.then(|| {
                self.opens += 1;
                Request {
                    slot: 3,
                    lease: LeaseName::new("slots").unwrap(),
                    op: Operation::WatchSlots {
                        slots: SlotNames::new("slots", 3).unwrap(),
                        resource_version: None,
                    },
                }
            })
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.done_at
        }

        fn poll_event(&mut self) -> Option<(u16, WatchEvent)> {
            (!self.told.is_empty()).then(|| self.told.remove(0))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_streams_lease_events_reach_their_slots_and_a_replaced_or_ended_streams_do_not()
    {
        let mut machine = Recorder::default();
        let mut reported = Vec::new();
        drive_reporting(
            &mut machine,
            Arc::new(Scripted::default()),
            Clock::tokio(),
            std::future::pending(),
            |_, (slot, event), failure| {
                reported.push((slot, event, failure.map(ToString::to_string)))
            },
        )
        .await;
        assert_eq!(
            machine.seen,
            [
                (0, WatchEvent::Changed(lease("5"))),
                (1, WatchEvent::Changed(lease("7"))),
                (3, WatchEvent::Forbidden),
            ]
        );
        assert_eq!(
            reported
                .last()
                .and_then(|(_, _, failure)| failure.as_deref()),
            Some("list leases: 403 Forbidden: leases is forbidden"),
            "the refusal reaches the caller in its own words"
        );
        assert!(
            reported[..2]
                .iter()
                .all(|(_, _, failure)| failure.is_none()),
            "{reported:?}"
        );
    }
}
