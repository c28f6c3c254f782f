//! Runs any leasehold-core machine over any transport on tokio.
//!
//! The core decides everything; a transport only performs requests and streams watches; this
//! driver connects them. It polls the machine for requests and sends them (one task per
//! request, so slots of a pool proceed in parallel), opens and closes watch streams, sleeps
//! until the machine's timeout or the next answer, hands events to the application, and on the
//! shutdown signal asks the machine to release before returning.
//!
//! Embedded users without tokio write the same loop by hand: see `leasehold_core::Machine`.

mod backbone;
mod clock;
mod drive;
mod error;
mod transport;

pub use backbone::{
    Answer, Backbone, Call, Failure, INITIAL_EVENTS_END, ListPage, SetupError, WatchFrom, Wire,
    WireEvent, WireStream,
};
pub use clock::Clock;
pub use drive::{drive, drive_reporting};
pub use error::{Cause, RequestError, ServerStatus, connection_cause, user_agent};
pub use transport::{CreateMetadata, Delivery, ListedLease, OwnerReference, Transport, WatchSink};
