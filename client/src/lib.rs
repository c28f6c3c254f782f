//! Leader election and lease pools for Rust programs, on Kubernetes `coordination.k8s.io/v1`
//! Leases, safe beside client-go candidates on the same lease.
//!
//! What it hands you is *work that runs only while leading, and stops before anyone else can
//! start*. [`Election::run_while_leading`] runs your future in each term this process leads. Its
//! [`Term`] carries the epoch (a fencing token: `leaseTransitions`, one higher every term) and a
//! cancellation that fires a grace period before the term's deadline, or at once when the
//! lease is lost; a future still running at the deadline is dropped. The deadline is the
//! leader's own (counted from the send of its last successful renew), which ends before any
//! follower can take over, so two terms' work never overlap, as long as the clocks of the
//! candidates run within 20 % of each other's rate with client-go's 15 s / 10 s / 2 s.
//!
//! Underneath is [`leasehold_core`]'s sans-IO elector and [`leasehold_runtime`]'s driver, the
//! same the `leasehold` agent runs; the kube-rs transport (feature `kube`, default) or the raw
//! HTTP one (feature `http`) carries the requests.
//!
//! A kube-rs `Controller` that reconciles only while leading, stops when the term ends, and
//! starts again when this process leads again:
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::runtime::{Controller, controller::Action, watcher};
//! use kube::{Api, Client};
//! use leasehold_client::ElectionBuilder;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> {
//!     Ok(Action::requeue(Duration::from_secs(300)))
//! }
//!
//! fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<()>) -> Action {
//!     Action::requeue(Duration::from_secs(5))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::try_default().await?;
//!     let election = ElectionBuilder::new("my-controller").start_kube(client.clone(), "default")?;
//!     let leading = election.run_while_leading(|term| {
//!         let api = Api::<ConfigMap>::all(client.clone());
//!         async move {
//!             let controller = Controller::new(api, watcher::Config::default())
//!                 .run(reconcile, error_policy, Arc::new(()))
//!                 .for_each(|_| async {});
//!             tokio::select! {
//!                 () = controller => {}
//!                 // The term ends: stop before another replica can start reconciling.
//!                 () = term.cancelled() => {}
//!             }
//!         }
//!     });
//!     tokio::select! {
//!         () = leading => {}
//!         _ = tokio::signal::ctrl_c() => {}
//!     }
//!     // Release the lease, so another replica takes over in milliseconds.
//!     election.shutdown().await;
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod campaign;
mod election;
mod error;
mod health;
mod identity;
mod leadership;
mod pool;
mod term;

pub use election::{Election, ElectionBuilder};
pub use error::BuildError;
pub use health::Unhealthy;
pub use identity::unique_identity;
pub use leadership::Leadership;
pub use leasehold_core::{Duration, Timing};
pub use leasehold_runtime::Clock;
pub use pool::{MAX_SLOTS, SlotGuard, SlotPool, SlotPoolBuilder};
pub use term::Term;

/// The kube-rs transport over a client the caller made, on leases in `namespace`.
#[cfg(feature = "kube")]
fn kube_transport(
    client: kube::Client,
    namespace: &str,
    timeout: Duration,
) -> leasehold_adapter_kube::KubeTransport {
    let connected = leasehold_adapter_kube::Connected {
        client,
        namespace: namespace.to_owned(),
        // A client made elsewhere does not say where it connects.
        address: "the API server".to_owned(),
    };
    leasehold_adapter_kube::transport(
        &connected,
        namespace,
        std::time::Duration::from_micros(timeout.as_micros()),
    )
}
