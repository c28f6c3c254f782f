//! A core machine campaigning in the background, as an election and a pool both run one: the
//! published [`Leadership`], the health it reports, work scoped to its terms, and its shutdown.

use crate::health::{Health, Unhealthy};
use crate::leadership::Leadership;
use crate::term::{self, Term};
use leasehold_core::{Duration, Event, Machine};
use leasehold_runtime::{Clock, RequestError, Transport, drive_reporting};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the background task tells the handle.
pub(crate) struct Publisher {
    leadership: Arc<watch::Sender<Leadership>>,
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

/// What a handle asks of its campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    /// Step down and release (the machine's `close`).
    Close,
    /// Campaign again after a close (the machine's `rejoin`).
    Rejoin,
}

/// A machine campaigning on the current tokio runtime until closed or dropped.
#[derive(Debug)]
pub(crate) struct Campaign {
    leadership: watch::Receiver<Leadership>,
    publish: Arc<watch::Sender<Leadership>>,
    slot: watch::Receiver<Option<u16>>,
    commands: mpsc::UnboundedSender<Command>,
    grace: Duration,
    clock: Clock,
    health: Arc<Health>,
}

impl Campaign {
    /// Drives `machine` over `transport`; each event goes to `on_event` with the request
    /// failure it came from, if any, and the publisher.
    pub(crate) fn spawn<M, T>(
        mut machine: M,
        transport: T,
        clock: Clock,
        grace: Duration,
        health: Health,
        mut on_event: impl FnMut(&M, M::Event, Option<&RequestError>, &Publisher) + Send + 'static,
    ) -> Self
    where
        M: Machine + Send + 'static,
        M::Event: Send,
        T: Transport,
    {
        let (leadership_tx, leadership) = watch::channel(Leadership::Unknown);
        let leadership_tx = Arc::new(leadership_tx);
        let (slot_tx, slot) = watch::channel(None);
        let (commands, mut received) = mpsc::unbounded_channel::<Command>();
        let publisher = Publisher {
            leadership: leadership_tx.clone(),
            slot: slot_tx,
            health: Arc::new(health),
        };
        let health = publisher.health.clone();
        let transport = Arc::new(transport);
        tokio::spawn(async move {
            loop {
                // Until a close is asked for, or every handle is gone (a close too).
                let close = async { while received.recv().await == Some(Command::Rejoin) {} };
                drive_reporting(
                    &mut machine,
                    transport.clone(),
                    clock,
                    close,
                    |machine: &M, event, failure| {
                        publisher.health.observe(&machine.stats());
                        on_event(machine, event, failure, &publisher);
                    },
                )
                .await;
                publisher.health.stopped_leading();
                publisher.publish(Leadership::Closed, None);
                loop {
                    match received.recv().await {
                        Some(Command::Rejoin) => break,
                        Some(Command::Close) => {}
                        None => return,
                    }
                }
                machine.rejoin(clock.now());
            }
        });
        Self {
            leadership,
            publish: leadership_tx,
            slot,
            commands,
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
        let (mut leadership, mut last) = (self.leadership.clone(), None);
        while self
            .run_next_term(&mut leadership, &mut last, &mut work)
            .await
            .is_some()
        {}
    }

    pub(crate) async fn run_in_one_term<T, F, Fut>(&self, work: F) -> Option<T>
    where
        F: FnOnce(Term) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut leadership = self.leadership.clone();
        self.run_next_term(&mut leadership, &mut None, work)
            .await
            .flatten()
    }

    /// Runs `work` in the next term after `last` whose work may start with its grace whole:
    /// `Some` with what the work returned (`None` if it was dropped at the deadline), `None`
    /// once the election is closed.
    async fn run_next_term<T, Fut: Future<Output = T>>(
        &self,
        leadership: &mut watch::Receiver<Leadership>,
        last: &mut Option<u32>,
        work: impl FnOnce(Term) -> Fut,
    ) -> Option<Option<T>> {
        loop {
            let (epoch, valid_until) = term::next_term(leadership, *last).await?;
            *last = Some(epoch);
            if let Some(fence) = term::admit(valid_until, self.grace, self.clock) {
                let (term, cancel) = term::term(epoch);
                let work = work(term);
                return Some(
                    term::enforce(leadership, epoch, fence, cancel, self.clock, work).await,
                );
            }
        }
    }

    pub(crate) fn healthz(&self) -> Result<(), Unhealthy> {
        self.health.check()
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.health.register(registry);
    }

    /// Starts closing the machine: a step-down at once, then a release.
    pub(crate) fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// Closes the machine and waits until the release is over.
    pub(crate) async fn shutdown(&self) {
        self.close();
        let mut leadership = self.leadership.clone();
        let _ = leadership.wait_for(|l| *l == Leadership::Closed).await;
    }

    /// Campaigns again after a close, once the machine's rejoin delay has passed.
    pub(crate) fn rejoin(&self) {
        // Said at once, so that a wait for the next term that follows does not see the close.
        if *self.leadership.borrow() == Leadership::Closed {
            self.publish.send_replace(Leadership::Unknown);
        }
        let _ = self.commands.send(Command::Rejoin);
    }
}
