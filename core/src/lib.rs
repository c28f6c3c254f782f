//! Sans-IO state machines for coordinating processes through Kubernetes
//! `coordination.k8s.io/v1` Lease objects.
//!
//! - [`Elector`]: leader election over one Lease, interoperable with client-go candidates.
//! - [`Pool`]: k-of-n Leases (cold-start throttling, delegation).
//! - [`Heartbeat`]: a renew-only Lease (node liveness), and [`HeartbeatWatcher`], which reports
//!   the heartbeats that stopped.
//! - [`Fence`]: when a leader's work must stop, run apart from the machine so that a paused or
//!   dead holder cannot leave its work running.
//!
//! The crate is `no_std` and allocation-free: every string is bounded ([`record`]) and every queue
//! has a fixed capacity. It never touches a clock, a socket or a random source. Time comes in as
//! [`embassy_time::Instant`] arguments (monotonic) and [`MicroTime`] (wall clock, only written to
//! the record); randomness comes from a seed; API answers come in through `handle_*`; requests,
//! wake-up instants and events go out through `poll_*`. An adapter translates requests into API
//! calls and answers back, and holds no policy of its own. The three machines share one
//! contract, the [`Machine`] trait, whose documentation says how to drive them.
//!
//! A minimal driver:
//!
//! ```
//! use embassy_time::Instant;
//! use leasehold_core::{
//!     ApiError, Elector, ElectorConfig, Identity, LeaseName, Machine, MicroTime, Timing,
//! };
//!
//! let mut elector = Elector::new(
//!     ElectorConfig {
//!         lease: LeaseName::new("my-controller").unwrap(),
//!         identity: Identity::new("pod-a").unwrap(),
//!         timing: Timing::DEFAULT,
//!         watch: false,
//!     },
//!     0x5eed,
//! );
//! let now = Instant::from_secs(1);
//! let request = elector.poll_request(now, MicroTime::from_unix_micros(0)).unwrap();
//! // ... send `request` to the API server; here, the lease does not exist yet:
//! elector.handle_answer(request.slot, Err(ApiError::NotFound), now);
//! let create = elector.poll_request(now, MicroTime::from_unix_micros(0)).unwrap();
//! assert!(matches!(create.op, leasehold_core::Operation::Create(_)));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Without an allocator, bounded values (names, identities, records) live inline; boxing the
// large variants is not an option, and their size is the documented capacity.
#![allow(clippy::large_enum_variant)]

pub mod api;
pub mod elector;
pub mod event;
pub mod expiry;
pub mod fence;
pub mod heartbeat;
pub mod jitter;
pub mod machine;
pub mod pool;
pub mod record;
mod slot;
mod takeover;
pub mod timing;
pub mod watcher;

#[cfg(test)]
mod testkit;

pub use api::{ApiError, Operation, Request, Response, SlotNames, Verb, WatchEvent};
pub use elector::{Elector, ElectorConfig};
pub use embassy_time::{Duration, Instant};
pub use event::{Event, LossReason, SlotEvent};
pub use fence::{Fence, Signal, StopCause};
pub use heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
pub use machine::{Machine, Stats};
pub use pool::{Pool, PoolConfig, PoolError};
pub use record::{
    Holder, Identity, Lease, LeaseName, LeaseRecord, MicroTime, NEXT_HOLDER_ANNOTATION,
    ResourceVersion, TextError,
};
pub use slot::EVENT_CAPACITY;
pub use timing::{Secs, Timing, TimingError, TimingField};
pub use watcher::{HeartbeatWatcher, LivenessEvent};
