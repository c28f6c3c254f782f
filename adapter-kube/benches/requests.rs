//! Lease updates per second the kube-rs transport sustains against the sim (see
//! `leasehold_conformance::requests_per_second`).
//!
//! `cargo bench -p leasehold-adapter-kube --bench requests`

use leasehold_adapter_kube::{KubeTransport, client};
use leasehold_conformance::requests_per_second;
use leasehold_fake_apiserver::Sim;
use std::time::Duration;

async fn connect(sim: &Sim, user: &str, timeout: Duration) -> KubeTransport {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::env::temp_dir().join(format!("leasehold-kube-bench-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig(user, "default").expect("user")).expect("kubeconfig");
    let (client, namespace) = client(Some(&path), None)
        .await
        .expect("kube-rs accepts the kubeconfig");
    KubeTransport::new(client, &namespace, timeout)
}

fn main() {
    let rates = requests_per_second(connect, 3, Duration::from_secs(3));
    println!(
        "| adapter-kube | {:.0} | {:.0} – {:.0} |",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}
