//! Lease updates per second the HTTP transport sustains against the sim (see
//! `leasehold_conformance::requests_per_second`).
//!
//! `cargo bench -p leasehold-adapter-http --bench requests`

use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_conformance::requests_per_second;
use leasehold_fake_apiserver::Sim;
use std::time::Duration;

async fn connect(sim: &Sim, user: &str, timeout: Duration) -> HttpTransport {
    let path = std::env::temp_dir().join(format!("leasehold-http-bench-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig(user, "default").expect("user")).expect("kubeconfig");
    let cluster = from_kubeconfig(&[path], None).expect("resolves");
    HttpTransport::new(&HttpConfig {
        cluster,
        namespace: "default".into(),
        request_timeout: timeout,
        rate_limit: None,
    })
    .expect("transport")
}

fn main() {
    let rates = requests_per_second(connect, 3, Duration::from_secs(3));
    println!(
        "| adapter-http | {:.0} | {:.0} – {:.0} |",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
