//! What the core tells the application: leadership changes and failures worth reporting.

use crate::api::{ApiError, Verb};
use crate::record::Holder;

/// An application event of an [`crate::Elector`] or a [`crate::Pool`]: when to drain them, and
/// what happens to events not drained, is part of the [`crate::Machine`] contract.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// This candidate now leads (holds the slot). `epoch` is the lease's `leaseTransitions`, a
    /// fencing token: work stamped with an older epoch came from a stale leader.
    BecameLeader {
        /// `leaseTransitions` of the record this candidate wrote.
        epoch: u32,
        /// How long it contended for the lease: from its first attempt to take it (free,
        /// released or expired) since it last saw another holder's term begin, to this term's
        /// start. Zero when the lease was taken with no attempt before it.
        contended: embassy_time::Duration,
    },
    /// A write naming this candidate succeeded (the first of a term, or a renew): it leads until
    /// `deadline` unless a later renew extends it. Hand `deadline` to whatever fences the work
    /// ([`crate::Fence::handle_valid_until`]). Follows [`Event::BecameLeader`] at a term's start.
    Renewed {
        /// The send of this write + the renew deadline, on the machine's clock.
        deadline: embassy_time::Instant,
    },
    /// This candidate no longer leads; stop leader-only work now.
    LostLeadership {
        /// Why.
        reason: LossReason,
    },
    /// The record names a different holder than before (or the first one seen).
    LeaderChanged {
        /// The new holder; [`Holder::Oversized`] when its identity is longer than the core stores.
        holder: Holder,
    },
    /// An API call failed; the core will retry on its own schedule. `Forbidden` and
    /// `Unauthorized` are what an agent turns into an RBAC fix.
    RequestFailed {
        /// The verb that failed.
        verb: Verb,
        /// How.
        error: ApiError,
    },
    /// `count` events before the ones that follow were dropped: the driver did not drain
    /// events after each call, as the [`crate::Machine`] contract asks. Leadership may have
    /// changed meanwhile; the getters tell the present.
    EventsDropped {
        /// How many.
        count: u32,
    },
    /// A close (an elector's, or a pool's) finished: nothing more will be requested.
    Released {
        /// Whether the lease was written free (`false` when it was not ours any more, or the
        /// release could not be written: it then expires on its own).
        written: bool,
    },
}

/// Why leadership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// No successful renew was sent within the renew deadline (API unreachable, slow, or this
    /// process was paused).
    RenewDeadlineExceeded,
    /// A read or a watch event showed another holder.
    HeldByOther,
    /// The Lease object was deleted.
    Deleted,
    /// The application closed the machine.
    Released,
}

/// An [`Event`] tagged with the slot (lease) it concerns. For [`Event::EventsDropped`], the
/// slot of the newest event dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotEvent {
    /// The slot.
    pub slot: u16,
    /// The event.
    pub event: Event,
}
