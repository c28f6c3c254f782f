//! What only the kube-rs transport does: keep the server's `Status` of a failure.

use leasehold_adapter_kube::{KubeTransport, client};
use leasehold_core::{ApiError, Duration as D, Holder, LeaseName, LeaseRecord, Operation, Request};
use leasehold_driver::{Transport, conformance};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_the_servers_words() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = conformance::start_sim(leasehold_sim::SimConfig::default()).await;
    let path = std::env::temp_dir().join(format!("leasehold-kube-words-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig("reader", "default").unwrap()).unwrap();
    let (client, namespace) = client(Some(&path), None).await.unwrap();
    let reader = KubeTransport::new(client, &namespace, Duration::from_secs(5));
    let record = LeaseRecord {
        holder: Holder::from_wire(Some("r")),
        lease_duration: Some(D::from_secs(15)),
        ..LeaseRecord::EMPTY
    };
    let request = Request {
        slot: 0,
        lease: LeaseName::new("x").unwrap(),
        op: Operation::Create(record),
    };
    assert_eq!(reader.call(request).await, Err(ApiError::Forbidden));
    let status = reader.last_failure().unwrap();
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains(
            "User \"reader\" cannot create resource \"leases\" in API group \"coordination.k8s.io\""
        ),
        "{}",
        status.message
    );
    sim.stop().await;
}
