//! The shared conformance suite (`leasehold_conformance`) over the HTTP transport,
//! configured from the kubeconfig the sim writes for each user.

use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_conformance as conformance;
use leasehold_fake_apiserver::Sim;
use std::time::Duration;

async fn connect(sim: &Sim, user: &str, timeout: Duration) -> HttpTransport {
    let path = std::env::temp_dir().join(format!(
        "leasehold-http-conformance-{user}-{}-{}",
        sim.addr().port(),
        std::process::id()
    ));
    std::fs::write(&path, sim.kubeconfig(user, "default").expect("user"))
        .expect("write kubeconfig");
    let cluster = from_kubeconfig(&[path], None).expect("the sim's kubeconfig resolves");
    let namespace = cluster.namespace.clone().expect("namespace");
    HttpTransport::new(&HttpConfig {
        cluster,
        namespace,
        request_timeout: timeout,
        rate_limit: None,
    })
    .expect("transport")
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
