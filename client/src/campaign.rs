//! A core machine campaigning in the background, as an election and a pool both run one: the
//! published [`Leadership`], the health it reports, work scoped to its terms, and its shutdown.

use crate::health::{Health, Unhealthy};
use crate::leadership::Leadership;
use crate::term::{self, Term};
use leasehold_core::{Duration, Event, Machine};
use leasehold_runtime::{Clock, Transport, drive};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// What the background task tells the handle.
pub(crate) struct Publisher {
    leadership: watch::Sender<Leadership>,
    slot: watch::Sender<Option<u16>>,
    pub health: Arc<Health>,
}

impl Publisher {
    /// Publishes `leadership`, of the lease `slot` (0 for an election).
    pub(crate) fn publish(&self, leadership: Leadership, slot: Option<u16>) {
        self.slot.send_replace(slot);
        self.leadership.send_replace(leadership);
    }

    /// Publishes what `event` of the lease `slot` changes: a renew leads until its deadline
    /// (term `epoch`), a loss leaves `after_loss`.
    pub(crate) fn lease_event(
        &self,
        event: Event,
        slot: u16,
        epoch: Option<u32>,
        clock: Clock,
        after_loss: Leadership,
    ) {
        match event {
            Event::Renewed { deadline } => {
                self.health.renewed();
                let leading = Leadership::Leading {
                    epoch: epoch.unwrap_or(0),
                    valid_until: clock.deadline(deadline),
                };
                self.publish(leading, Some(slot));
            }
            Event::BecameLeader { .. } => self.health.started_leading(),
            Event::LostLeadership { .. } => {
                self.health.stopped_leading();
                self.publish(after_loss, None);
            }
            _ => {}
        }
    }
}

/// A machine campaigning on the current tokio runtime until shut down or dropped.
#[derive(Debug)]
pub(crate) struct Campaign {
    leadership: watch::Receiver<Leadership>,
    slot: watch::Receiver<Option<u16>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    grace: Duration,
    clock: Clock,
    health: Arc<Health>,
}

impl Campaign {
    /// Drives `machine` over `transport`; each event goes to `on_event` with the publisher.
    pub(crate) fn spawn<M, T>(
        mut machine: M,
        transport: T,
        clock: Clock,
        grace: Duration,
        health: Health,
        mut on_event: impl FnMut(&M, M::Event, &Publisher) + Send + 'static,
    ) -> Self
    where
        M: Machine + Send + 'static,
        M::Event: Send,
        T: Transport,
    {
        let (leadership_tx, leadership) = watch::channel(Leadership::Unknown);
        let (slot_tx, slot) = watch::channel(None);
        let (stop, stopped) = oneshot::channel::<()>();
        let publisher = Publisher {
            leadership: leadership_tx,
            slot: slot_tx,
            health: Arc::new(health),
        };
        let health = publisher.health.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                // A dropped handle closes the channel: a release too.
                let _ = stopped.await;
            };
            drive(
                &mut machine,
                Arc::new(transport),
                clock,
                shutdown,
                |machine: &M, event| {
                    publisher.health.observe(&machine.stats());
                    on_event(machine, event, &publisher);
                },
            )
            .await;
            publisher.health.stopped_leading();
            publisher.publish(Leadership::Closed, None);
        });
        Self {
            leadership,
            slot,
            stop: Some(stop),
            task: Some(task),
            grace,
            clock,
            health,
        }
    }

    pub(crate) fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    pub(crate) fn slot(&self) -> Option<u16> {
        *self.slot.borrow()
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leadership
            .borrow()
            .is_leading_at(tokio::time::Instant::now())
    }

    pub(crate) async fn leading(&self) -> Option<u32> {
        let mut leadership = self.leadership.clone();
        term::next_term(&mut leadership, None)
            .await
            .map(|(epoch, _)| epoch)
    }

    pub(crate) async fn run_while_leading<F, Fut>(&self, mut work: F)
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut leadership = self.leadership.clone();
        let mut last = None;
        while let Some((epoch, valid_until)) = term::next_term(&mut leadership, last).await {
            last = Some(epoch);
            if let Some(fence) = term::admit(valid_until, self.grace, self.clock) {
                let (term, cancel) = term::term(epoch);
                term::enforce(
                    &mut leadership,
                    epoch,
                    fence,
                    cancel,
                    self.clock,
                    work(term),
                )
                .await;
            }
        }
    }

    pub(crate) async fn run_in_one_term<T, F, Fut>(&self, work: F) -> Option<T>
    where
        F: FnOnce(Term) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut leadership = self.leadership.clone();
        let mut last = None;
        while let Some((epoch, valid_until)) = term::next_term(&mut leadership, last).await {
            last = Some(epoch);
            if let Some(fence) = term::admit(valid_until, self.grace, self.clock) {
                let (term, cancel) = term::term(epoch);
                return term::enforce(
                    &mut leadership,
                    epoch,
                    fence,
                    cancel,
                    self.clock,
                    work(term),
                )
                .await;
            }
        }
        None
    }

    pub(crate) fn healthz(&self) -> Result<(), Unhealthy> {
        self.health.check()
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.health.register(registry);
    }

    /// Closes the machine (a step-down, then a release) and waits until it is over.
    pub(crate) async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Campaign {
    /// Starts the release without waiting for it.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
