//! The shared conformance suite (`leasehold_conformance`) over the kube-rs transport, and a
//! mixed fleet with the HTTP transport.

mod connect;
#[path = "../../adapter-http/tests/connect/mod.rs"]
mod connect_http;

leasehold_conformance::suite!(connect::connect);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_of_http_and_kube_electors_never_leads_twice() {
    leasehold_conformance::mixed_fleet(connect_http::connect, connect::connect).await;
}
