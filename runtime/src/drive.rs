//! The loop that runs one machine over one transport.

use crate::{Clock, Delivery, RequestError, Transport, WatchSink};
use leasehold_core::{Lease, Machine, Operation, WatchEvent};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
    let mut watches: HashMap<u16, (u64, JoinHandle<()>)> = HashMap::new();
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
                    if let Some((_, old)) = watches.insert(slot, (generation, task)) {
                        old.abort();
                    }
                }
                Operation::Unwatch => {
                    if let Some((_, task)) = watches.remove(&slot) {
                        task.abort();
                    }
                }
                _ => {
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
            Some(Delivery { slot, generation, event, error }) = delivered.recv() => {
                // Events of a stream that was replaced or closed are stale.
                if watches.get(&slot).is_some_and(|(g, _)| *g == generation) {
                    failure = error;
                    if matches!(event, WatchEvent::Ended | WatchEvent::Expired | WatchEvent::Failed) {
                        watches.remove(&slot);
                    }
                    machine.handle_watch_event(slot, event, clock.now());
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

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
