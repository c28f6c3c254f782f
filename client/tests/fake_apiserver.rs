//! The handles over a real transport: kube-rs against the fake API server over HTTPS, in real
//! time. A released lease is taken through the watch, not after the lease runs out; a pool's
//! guard holds and releases a real slot.

use leasehold_client::{ElectionBuilder, SlotPoolBuilder};
use leasehold_conformance::{kubeconfig_file, start_sim};
use leasehold_fake_apiserver::SimConfig;
use std::time::{Duration, Instant};

async fn client(sim: &leasehold_fake_apiserver::Sim) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = kubeconfig_file(&sim.kubeconfig("admin", "default").expect("admin"));
    leasehold_adapter_kube::client(Some(&path), None)
        .await
        .expect("kube-rs accepts the kubeconfig")
        .client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_kube_rs_a_shut_down_leader_hands_over_through_the_watch() {
    let sim = start_sim(SimConfig::default()).await;
    let a = ElectionBuilder::new("controller")
        .identity("a")
        .start_kube(client(&sim).await, "default")
        .unwrap();
    assert_eq!(a.leading().await, Some(0));
    let b = ElectionBuilder::new("controller")
        .identity("b")
        .start_kube(client(&sim).await, "default")
        .unwrap();
    // b has read the lease and opened its watch.
    let mut seen = b.leadership();
    seen.wait_for(|l| *l != leasehold_client::Leadership::Unknown)
        .await
        .unwrap();
    sim.reset_counters();
    let released = Instant::now();
    a.shutdown().await;
    assert_eq!(b.leading().await, Some(1));
    let took = released.elapsed();
    eprintln!("b led {took:?} after a's shutdown began");
    // Not the 15 s lease run out (13 s at the soonest after the release), and no read: b saw
    // the release on its watch. Milliseconds here; seconds of room for a loaded machine.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(sim.counters().count("get", "leases"), 0, "b read the lease");
    assert_eq!(
        sim.lease("default", "controller").unwrap()["spec"]["holderIdentity"],
        "b"
    );
    b.shutdown().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_kube_rs_a_slot_guard_holds_and_releases_its_slot() {
    let sim = start_sim(SimConfig::default()).await;
    let pool = SlotPoolBuilder::new("cold-start", 2)
        .identity("node-1")
        .start_kube(client(&sim).await, "default")
        .unwrap();
    let slot = pool.acquire_slot().await.expect("a slot");
    let name = format!("cold-start-{}", slot.slot());
    assert_eq!(
        sim.lease("default", &name).unwrap()["spec"]["holderIdentity"],
        "node-1"
    );
    slot.release().await;
    assert_eq!(
        sim.lease("default", &name).unwrap()["spec"]["holderIdentity"],
        "",
        "released as client-go releases: an empty holder"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_http_transport_beside_kube_rs_one_leads() {
    let sim = start_sim(SimConfig::default()).await;
    let path = kubeconfig_file(&sim.kubeconfig("admin", "default").expect("admin"));
    let cluster = leasehold_adapter_http::kubeconfig::from_kubeconfig(&[path], None).unwrap();
    let config = leasehold_adapter_http::HttpConfig {
        namespace: "default".into(),
        cluster,
        // Replaced by the election's own (client-go's max(1 s, renew / 2)).
        request_timeout: Duration::from_millis(1),
        rate_limit: None,
    };
    let a = ElectionBuilder::new("mixed")
        .identity("http")
        .start_http(&config)
        .unwrap();
    assert_eq!(a.leading().await, Some(0));
    let b = ElectionBuilder::new("mixed")
        .identity("kube")
        .start_kube(client(&sim).await, "default")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.is_leader() && !b.is_leader());
    a.shutdown().await;
    assert_eq!(b.leading().await, Some(1));
    b.shutdown().await;
    sim.stop().await;
}
