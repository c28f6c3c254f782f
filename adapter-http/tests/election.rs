//! Three electors over the HTTP transport against the simulated API server on HTTPS: one leads,
//! a graceful shutdown hands over within milliseconds (release seen on the watch), a crash hands
//! over after the lease expires, and never do two lead at once.

use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_core::{
    Duration as CoreDuration, Elector, ElectorConfig, Event, Identity, LeaseName, Timing,
};
use leasehold_driver::{Clock, drive};
use leasehold_sim::{Sim, SimConfig};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Lease 3 s, renew 2 s, retry 0.5 s: the rules of 15/10/2, scaled down for a quick test.
fn timing() -> Timing {
    Timing::new(
        CoreDuration::from_secs(3),
        CoreDuration::from_secs(2),
        CoreDuration::from_millis(500),
    )
    .unwrap()
}

#[derive(Default)]
struct Leaders {
    now: Vec<usize>,
    most_at_once: usize,
    history: Vec<(usize, Instant)>,
}

fn spawn_elector(
    sim: &Sim,
    index: usize,
    leaders: Arc<Mutex<Leaders>>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    // Through the kubeconfig the sim writes, as a user would configure it.
    let path =
        std::env::temp_dir().join(format!("leasehold-election-{}-{index}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig("admin", "default").unwrap()).unwrap();
    let cluster = leasehold_adapter_http::kubeconfig::from_kubeconfig(&[path], None).unwrap();
    let config = HttpConfig {
        namespace: cluster.namespace.clone().unwrap(),
        cluster,
        request_timeout: HttpConfig::request_timeout(&timing()),
        rate_limit: None,
    };
    let transport = Arc::new(HttpTransport::new(&config).unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut elector = Elector::new(
            ElectorConfig {
                lease: LeaseName::new("controller").unwrap(),
                identity: Identity::new(&format!("elector-{index}")).unwrap(),
                timing: timing(),
                watch: true,
            },
            index as u64,
        );
        drive(
            &mut elector,
            transport,
            Clock::default(),
            async {
                let _ = stopped.await;
            },
            |_, event| {
                let mut l = leaders.lock().unwrap();
                match event {
                    Event::BecameLeader { .. } => {
                        l.now.push(index);
                        l.most_at_once = l.most_at_once.max(l.now.len());
                        l.history.push((index, Instant::now()));
                    }
                    Event::LostLeadership { .. } => l.now.retain(|&i| i != index),
                    _ => {}
                }
            },
        )
        .await;
    });
    (stop, task)
}

async fn leader(
    leaders: &Arc<Mutex<Leaders>>,
    except: Option<usize>,
    within: Duration,
) -> (usize, Instant) {
    let start = Instant::now();
    loop {
        if let Some(&(i, at)) = leaders
            .lock()
            .unwrap()
            .history
            .iter()
            .rev()
            .find(|(i, _)| Some(*i) != except)
        {
            if except.is_none() || at >= start {
                return (i, at);
            }
        }
        assert!(start.elapsed() < within, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_electors_over_https_fail_over_gracefully_and_on_crash() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let leaders = Arc::new(Mutex::new(Leaders::default()));
    let mut electors: Vec<_> = (0..3)
        .map(|i| Some(spawn_elector(&sim, i, leaders.clone())))
        .collect();

    let (first, _) = leader(&leaders, None, Duration::from_secs(5)).await;
    let holder = sim.lease("default", "controller").unwrap()["spec"]["holderIdentity"].clone();
    assert_eq!(holder, format!("elector-{first}"));

    // Graceful: the leader releases; a watching follower takes over at once.
    let (stop, task) = electors[first].take().unwrap();
    let released = Instant::now();
    stop.send(()).unwrap();
    task.await.unwrap();
    let (second, at) = leader(&leaders, Some(first), Duration::from_secs(5)).await;
    let graceful = at.saturating_duration_since(released);
    assert!(
        graceful < Duration::from_secs(1),
        "graceful failover took {graceful:?}, not a release seen on the watch"
    );

    // Crash: no release; the others wait out the lease (3 s) from the last renew they saw.
    let (_, task) = electors[second].take().unwrap();
    task.abort();
    let _ = task.await;
    // A killed process believes nothing; it sends no LostLeadership either.
    leaders.lock().unwrap().now.retain(|&i| i != second);
    let crashed = Instant::now();
    let (third, at) = leader(&leaders, Some(second), Duration::from_secs(8)).await;
    let crash = at.saturating_duration_since(crashed);
    assert!(
        crash >= Duration::from_millis(900),
        "took over {crash:?} after the crash: before the lease could expire"
    );
    assert!(
        crash < Duration::from_millis(3_000 + 1_100 + 1_000),
        "crash failover took {crash:?}"
    );
    assert_ne!(third, second);
    assert_eq!(
        sim.lease("default", "controller").unwrap()["spec"]["holderIdentity"],
        format!("elector-{third}")
    );
    assert_eq!(
        leaders.lock().unwrap().most_at_once,
        1,
        "two electors led at once"
    );
    println!("graceful failover {graceful:?}, crash failover {crash:?}");
    for e in electors.into_iter().flatten() {
        e.1.abort();
    }
    sim.stop().await;
}
