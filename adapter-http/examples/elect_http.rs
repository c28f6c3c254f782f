//! A minimal leader election over the HTTP transport: one elector on lease NAME, found like
//! kubectl finds its cluster; prints leadership changes; releases on Ctrl-C.
//!
//! `cargo run -p leasehold-adapter-http --example elect_http -- NAME IDENTITY [KUBECONFIG]`

mod shared;

use leasehold_adapter_http::{HttpConfig, kubeconfig};
use leasehold_core::Timing;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(lease), Some(identity)) = (args.get(1), args.get(2)) else {
        return Err("usage: elect NAME IDENTITY [KUBECONFIG]".into());
    };
    let cluster = kubeconfig::resolve(args.get(3).map(std::path::Path::new), None)?;
    let timing = Timing::DEFAULT;
    let namespace = cluster
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let transport = leasehold_adapter_http::connect(&HttpConfig {
        cluster,
        namespace,
        request_timeout: Duration::from_micros(timing.request_timeout().as_micros()),
        rate_limit: Some((5.0, 10)),
    })?;
    shared::elector::run(transport, lease, identity, timing).await
}
