//! The shared conformance suite (`leasehold_conformance`) over the kube-rs transport,
//! configured through kube-rs from the kubeconfig the sim writes; and a mixed fleet with the
//! HTTP transport.

use leasehold_adapter_kube::{KubeTransport, client};
use leasehold_conformance as conformance;
use leasehold_fake_apiserver::Sim;
use std::time::Duration;

async fn connect(sim: &Sim, user: &str, timeout: Duration) -> KubeTransport {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::env::temp_dir().join(format!(
        "leasehold-kube-conformance-{user}-{}-{}",
        sim.addr().port(),
        std::process::id()
    ));
    std::fs::write(&path, sim.kubeconfig(user, "default").expect("user"))
        .expect("write kubeconfig");
    let (client, namespace) = client(Some(&path), None)
        .await
        .expect("kube-rs accepts the sim's kubeconfig");
    KubeTransport::new(client, &namespace, timeout)
}

async fn connect_http(
    sim: &Sim,
    user: &str,
    timeout: Duration,
) -> leasehold_adapter_http::HttpTransport {
    let path = std::env::temp_dir().join(format!(
        "leasehold-kube-conformance-http-{user}-{}-{}",
        sim.addr().port(),
        std::process::id()
    ));
    std::fs::write(&path, sim.kubeconfig(user, "default").expect("user"))
        .expect("write kubeconfig");
    let cluster =
        leasehold_adapter_http::kubeconfig::from_kubeconfig(&[path], None).expect("resolves");
    let config = leasehold_adapter_http::HttpConfig {
        cluster,
        namespace: "default".into(),
        request_timeout: timeout,
        rate_limit: None,
    };
    leasehold_adapter_http::HttpTransport::new(&config).expect("transport")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_error_mapping() {
    conformance::operations(connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_in_a_namespace_or_all() {
    conformance::list(connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resume_cut_and_gone() {
    conformance::watch(connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_electors_fail_over() {
    conformance::election(connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_survives_restarts_and_pauses() {
    conformance::pool(connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_of_http_and_kube_electors_never_leads_twice() {
    conformance::mixed_fleet(connect_http, connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_with_preconditions_and_create_metadata() {
    conformance::delete_and_create_metadata(async |sim: &Sim, user: &str, timeout: Duration| {
        connect(sim, user, timeout)
            .await
            .with_create_metadata(conformance::create_metadata())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_lease_past_the_watch_history_cannot_loop() {
    conformance::a_quiet_lease_past_the_watch_history_cannot_loop(connect).await;
}
