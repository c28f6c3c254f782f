//! Work scoped to a term: started only while leading, asked to stop at the term's deadline less
//! a grace period, and dropped at the deadline if it has not stopped.
//!
//! The rule is the core's [`Fence`], the same one the agent's fence process applies to a child
//! command: a renew moves the deadline forward, a loss stops the work by
//! `min(now + grace, deadline)`, and nothing is ever pushed back.

use crate::leadership::Leadership;
use leasehold_core::{Duration, Fence, Signal};
use leasehold_runtime::Clock;
use std::future::Future;
use tokio::sync::watch;

/// One term of leadership, as the work run in it sees it.
///
/// Stamp what the work writes elsewhere with [`epoch`](Self::epoch): a system that remembers the
/// highest epoch it saw can refuse writes from a stale term. Select on
/// [`cancelled`](Self::cancelled) and stop when it fires: it fires `grace` before the term's
/// deadline (or at once when leadership is lost), and the work is dropped at the deadline.
#[derive(Clone, Debug)]
pub struct Term {
    epoch: u32,
    cancel: watch::Receiver<bool>,
}

impl Term {
    /// `leaseTransitions` of this term: the fencing token.
    ///
    /// ```no_run
    /// # fn f(term: &leasehold_client::Term) {
    /// let fencing_token = term.epoch();
    /// # }
    /// ```
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Resolves when the work must stop: the term's deadline less the grace period came, or
    /// leadership was lost.
    ///
    /// ```no_run
    /// # async fn f(term: leasehold_client::Term) {
    /// term.cancelled().await;
    /// println!("stop now: the term ends");
    /// # }
    /// ```
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        // An error means the term is over and its sender gone: stop, too.
        let _ = cancel.wait_for(|stop| *stop).await;
    }

    /// Whether the work must stop now.
    ///
    /// ```no_run
    /// # fn f(term: &leasehold_client::Term) {
    /// while !term.is_cancelled() {
    ///     // one more batch
    /// #   break;
    /// }
    /// # }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}

/// Waits until `leadership` says "leading" in a term other than `after`, and returns that
/// term's epoch and deadline; `None` once the election is closed.
pub(crate) async fn next_term(
    leadership: &mut watch::Receiver<Leadership>,
    after: Option<u32>,
) -> Option<(u32, tokio::time::Instant)> {
    loop {
        match &*leadership.borrow_and_update() {
            Leadership::Leading { epoch, valid_until } if Some(*epoch) != after => {
                return Some((*epoch, *valid_until));
            }
            Leadership::Closed => return None,
            _ => {}
        }
        leadership.changed().await.ok()?;
    }
}

/// The fence for a term that ends at `valid_until`, if its work may start now with its grace
/// period whole; `None` when the term is too close to its end (the next renew may allow it).
pub(crate) fn admit(
    valid_until: tokio::time::Instant,
    grace: Duration,
    clock: Clock,
) -> Option<Fence> {
    let fence = Fence::new(core_instant(valid_until, clock), grace);
    fence.may_start(clock.now()).then_some(fence)
}

/// A term's handle for its work, and the sender of its cancellation.
pub(crate) fn term(epoch: u32) -> (Term, watch::Sender<bool>) {
    let (cancel, cancelled) = watch::channel(false);
    (
        Term {
            epoch,
            cancel: cancelled,
        },
        cancel,
    )
}

/// Runs `work` of the term `epoch` under `fence`: the term's renews move its deadline, a loss
/// (or the election closing) stops it by `min(now + grace, deadline)`, `cancel` fires at the
/// fence's SIGTERM instant, and the work is dropped at its SIGKILL instant. `Some` with the
/// output when the work returned; `None` when it was dropped.
pub(crate) async fn enforce<T>(
    leadership: &mut watch::Receiver<Leadership>,
    epoch: u32,
    mut fence: Fence,
    cancel: watch::Sender<bool>,
    clock: Clock,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    let mut watching = true;
    loop {
        let wake = fence.poll_timeout().map(|at| clock.deadline(at));
        tokio::select! {
            biased;
            out = &mut work => return Some(out),
            changed = leadership.changed(), if watching => {
                let now = clock.now();
                match (changed, &*leadership.borrow_and_update()) {
                    (Ok(()), Leadership::Leading { epoch: e, valid_until }) if *e == epoch => {
                        fence.handle_valid_until(core_instant(*valid_until, clock));
                    }
                    (Ok(()), _) => fence.handle_stop(now),
                    (Err(_), _) => {
                        watching = false;
                        fence.handle_stop(now);
                    }
                }
            }
            () = sleep_until(wake) => {}
        }
        while let Some(signal) = fence.poll_signal(clock.now()) {
            match signal {
                Signal::Terminate => {
                    cancel.send_replace(true);
                }
                Signal::Kill => return None,
            }
        }
    }
}

/// The core instant of a tokio instant, as a distance from now on `clock`.
fn core_instant(at: tokio::time::Instant, clock: Clock) -> leasehold_core::Instant {
    let ahead = at.saturating_duration_since(tokio::time::Instant::now());
    clock
        .now()
        .saturating_add(Duration::from_micros(ahead.as_micros() as u64))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
