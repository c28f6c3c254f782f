//! A minimal leader election over the kube-rs transport: one elector on lease NAME, found by
//! kube-rs's inference (or KUBECONFIG given); prints leadership changes; releases on Ctrl-C.
//!
//! `cargo run -p leasehold-adapter-kube --example elect_kube -- NAME IDENTITY [KUBECONFIG]`

use leasehold_adapter_kube::{client, transport};
use leasehold_core::{Elector, ElectorConfig, Event, Identity, LeaseName, Timing};
use leasehold_runtime::{Clock, drive};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(lease), Some(identity)) = (args.get(1), args.get(2)) else {
        return Err("usage: elect NAME IDENTITY [KUBECONFIG]".into());
    };
    let connected = client(args.get(3).map(std::path::Path::new), None).await?;
    let timing = Timing::DEFAULT;
    let transport = transport(
        &connected,
        &connected.namespace,
        Duration::from_micros(timing.request_timeout().as_micros()),
    )
    .with_rate_limit(5.0, 10)?;
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
            Event::BecameLeader { epoch } => println!("became leader (epoch {epoch})"),
            Event::LostLeadership { reason } => println!("lost leadership: {reason:?}"),
            Event::LeaderChanged { holder } => println!("new leader is {holder}"),
            _ => {}
        },
    )
    .await;
    Ok(())
}
