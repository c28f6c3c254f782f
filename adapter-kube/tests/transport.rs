//! What only the kube-rs transport does: keep the server's `Status` of a failure.

use leasehold_adapter_kube::{KubeTransport, client};
use leasehold_conformance as conformance;
use leasehold_core::{ApiError, Duration as D, Holder, LeaseName, LeaseRecord, Operation, Request};
use leasehold_runtime::Transport;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_the_servers_words() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = conformance::start_sim(leasehold_fake_apiserver::SimConfig::default()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_spaces_requests_after_the_burst() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = conformance::start_sim(leasehold_fake_apiserver::SimConfig::default()).await;
    let path = std::env::temp_dir().join(format!("leasehold-kube-qps-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig("admin", "default").unwrap()).unwrap();
    let (client, namespace) = client(Some(&path), None).await.unwrap();
    // 10 per second after a burst of 2: 6 requests need at least 0.4 s.
    let t = KubeTransport::new(client, &namespace, Duration::from_secs(5))
        .with_rate_limit(10.0, 2)
        .unwrap();
    let start = std::time::Instant::now();
    for _ in 0..6 {
        let get = Request {
            slot: 0,
            lease: LeaseName::new("absent").unwrap(),
            op: Operation::Get,
        };
        assert_eq!(t.call(get).await, Err(ApiError::NotFound));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(380),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(sim.counters().count("get", "leases"), 6);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_unauthorized_and_an_unknown_ca_fails_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = conformance::start_sim(leasehold_fake_apiserver::SimConfig::default()).await;
    let good = sim.kubeconfig("admin", "default").unwrap();
    let get = || Request {
        slot: 0,
        lease: LeaseName::new("absent").unwrap(),
        op: Operation::Get,
    };
    let variants = [
        (
            "wrong-token",
            good.replace("token: admin-token", "token: not-a-token"),
            ApiError::Unauthorized,
        ),
        (
            "no-ca",
            good.lines()
                .filter(|l| !l.contains("certificate-authority-data"))
                .collect::<Vec<_>>()
                .join("\n"),
            ApiError::Transport,
        ),
    ];
    for (tag, text, expected) in variants {
        let path =
            std::env::temp_dir().join(format!("leasehold-kube-{tag}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let (client, namespace) = client(Some(&path), None).await.unwrap();
        let t = KubeTransport::new(client, &namespace, Duration::from_secs(5));
        assert_eq!(t.call(get()).await, Err(expected), "{tag}");
    }
    sim.stop().await;
}

/// kube-rs hides whether a replace was answered 200 or 201 (a deleted lease re-created by the
/// update), so the transport tells them apart by the uid of the object it read. An update of a
/// lease it has no uid for is not sent: 409, so the core reads first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_without_a_read_object_is_not_sent() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = conformance::start_sim(leasehold_fake_apiserver::SimConfig::default()).await;
    let path = std::env::temp_dir().join(format!("leasehold-kube-uid-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig("admin", "default").unwrap()).unwrap();
    let (client, namespace) = client(Some(&path), None).await.unwrap();
    let t = KubeTransport::new(client, &namespace, Duration::from_secs(5));
    let update = |rv: &str| Request {
        slot: 0,
        lease: LeaseName::new("gone").unwrap(),
        op: Operation::Update {
            resource_version: leasehold_core::ResourceVersion::new(rv).unwrap(),
            record: conformance::record("a"),
        },
    };
    sim.reset_counters();
    assert_eq!(t.call(update("7")).await, Err(ApiError::Conflict));
    assert_eq!(sim.counters().total(), 0, "nothing was sent");
    assert!(
        sim.lease("default", "gone").is_none(),
        "nothing was created"
    );
    sim.stop().await;
}
