//! A delegation pool of 2 with 4 members over the HTTP transport: both slots fill, survive a
//! restart that cuts every connection and a pause longer than the renew deadline, and no slot
//! ever has two holders.

use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_core::{Duration as D, Event, Identity, Pool, PoolConfig, Timing};
use leasehold_driver::{Clock, drive};
use leasehold_sim::{Sim, SimConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn timing() -> Timing {
    Timing::new(D::from_secs(3), D::from_secs(2), D::from_millis(500)).unwrap()
}

#[derive(Default)]
struct Slots {
    holders: HashMap<u16, Vec<usize>>,
    violations: Vec<String>,
}

impl Slots {
    fn held(&self) -> usize {
        self.holders.values().filter(|h| !h.is_empty()).count()
    }
}

async fn until_full(slots: &Arc<Mutex<Slots>>, within: Duration) -> Duration {
    let start = Instant::now();
    while slots.lock().unwrap().held() < 2 {
        assert!(
            start.elapsed() < within,
            "the pool did not fill within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_over_https_survives_restarts_and_pauses() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let path = std::env::temp_dir().join(format!("leasehold-pool-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig("admin", "default").unwrap()).unwrap();
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut members = Vec::new();
    for index in 0..4usize {
        let cluster = from_kubeconfig(std::slice::from_ref(&path), None).unwrap();
        let config = HttpConfig {
            namespace: "default".into(),
            cluster,
            request_timeout: HttpConfig::request_timeout(&timing()),
            rate_limit: None,
        };
        let transport = Arc::new(HttpTransport::new(&config).unwrap());
        let slots = slots.clone();
        members.push(tokio::spawn(async move {
            let mut pool: Pool<2> = Pool::new(
                PoolConfig {
                    prefix: "delegation",
                    size: 2,
                    identity: Identity::new(&format!("member-{index}")).unwrap(),
                    timing: timing(),
                    watch: true,
                },
                index as u64,
            )
            .unwrap();
            drive(
                &mut pool,
                transport,
                Clock::default(),
                std::future::pending(),
                |_, e| {
                    let mut s = slots.lock().unwrap();
                    match e.event {
                        Event::BecameLeader { .. } => {
                            let holders = s.holders.entry(e.slot).or_default();
                            holders.push(index);
                            if holders.len() > 1 {
                                let what = format!("slot {} held by {holders:?}", e.slot);
                                s.violations.push(what);
                            }
                        }
                        Event::LostLeadership { .. } => {
                            s.holders.entry(e.slot).or_default().retain(|&i| i != index)
                        }
                        _ => {}
                    }
                    let total: usize = s.holders.values().map(Vec::len).sum();
                    if total > 2 {
                        s.violations.push(format!("{total} holders"));
                    }
                },
            )
            .await;
        }));
    }
    until_full(&slots, Duration::from_secs(5)).await;

    sim.restart(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    until_full(&slots, Duration::from_secs(8)).await;

    // Longer than the renew deadline: holders step down; after it, the slots refill.
    sim.pause();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        slots.lock().unwrap().held() < 2,
        "holders must step down when they cannot renew for 2.5 s"
    );
    sim.resume();
    until_full(&slots, Duration::from_secs(8)).await;

    for m in &members {
        m.abort();
    }
    {
        let s = slots.lock().unwrap();
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        for (slot, holders) in &s.holders {
            let stored = sim.lease("default", &format!("delegation-{slot}")).unwrap();
            assert_eq!(
                stored["spec"]["holderIdentity"],
                format!("member-{}", holders[0]),
                "the believed holder is the stored one"
            );
        }
    }
    sim.stop().await;
}
