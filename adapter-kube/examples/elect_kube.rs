//! A minimal leader election over the kube-rs transport: one elector on lease NAME, found by
//! kube-rs's inference (or KUBECONFIG given); prints leadership changes; releases on Ctrl-C.
//!
//! `cargo run -p leasehold-adapter-kube --example elect_kube -- NAME IDENTITY [KUBECONFIG]`

#[path = "../../adapter-http/examples/shared/mod.rs"]
mod shared;

use leasehold_adapter_kube::{client, transport};
use leasehold_core::Timing;
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
    shared::elector::run(transport, lease, identity, timing).await
}
