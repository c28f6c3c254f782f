//! What both transports' election examples do once they hold a transport: one elector on the
//! lease, leadership changes printed, the lease released on Ctrl-C. Kept apart so that the two
//! examples differ only by their transport (their sizes are compared in BENCHMARKS.md).

use leasehold_core::{Elector, ElectorConfig, Event, Identity, LeaseName, Timing};
use leasehold_runtime::{Clock, Transport, drive};
use std::sync::Arc;

/// Campaigns for `lease` as `identity` with `timing` until Ctrl-C, then releases.
pub async fn run(
    transport: impl Transport,
    lease: &str,
    identity: &str,
    timing: Timing,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut elector = Elector::new(
        ElectorConfig {
            lease: LeaseName::new(lease)?,
            identity: Identity::new(identity)?,
            timing,
            watch: true,
        },
        std::process::id().into(),
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    drive(
        &mut elector,
        Arc::new(transport),
        Clock::default(),
        shutdown,
        |_, event| match event {
            Event::BecameLeader { epoch, .. } => println!("became leader (epoch {epoch})"),
            Event::LostLeadership { reason } => println!("lost leadership: {reason:?}"),
            Event::LeaderChanged { holder } => println!("new leader is {holder}"),
            _ => {}
        },
    )
    .await;
    Ok(())
}
