//! The kube-rs transport against the simulated API server over HTTPS, configured from the
//! kubeconfig the sim writes: each operation and error mapping; and a mixed fleet of electors
//! over both transports on one lease.

use leasehold_adapter_kube::{KubeTransport, client};
use leasehold_core::{
    ApiError, Duration as D, Elector, ElectorConfig, Event, Holder, Identity, LeaseName,
    LeaseRecord, MicroTime, Operation, Request, Timing,
};
use leasehold_driver::{Clock, Transport, drive};
use leasehold_sim::{Faults, Rule, Sim, SimConfig, User};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

async fn sim() -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Sim::start(SimConfig {
        users: vec![
            User::admin("admin", "admin-token"),
            User::with_rules(
                "reader",
                "reader-token",
                vec![Rule::new(
                    &["get", "list", "watch"],
                    &["leases"],
                    &["*"],
                    &[],
                )],
            ),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn kubeconfig(sim: &Sim, user: &str, tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "leasehold-kube-{tag}-{user}-{}",
        std::process::id()
    ));
    std::fs::write(&path, sim.kubeconfig(user, "default").unwrap()).unwrap();
    path
}

async fn transport(sim: &Sim, user: &str, timeout: Duration) -> KubeTransport {
    let (client, namespace) = client(Some(&kubeconfig(sim, user, "t")), None)
        .await
        .unwrap();
    assert_eq!(namespace, "default");
    KubeTransport::new(client, &namespace, timeout)
}

fn request(name: &str, op: Operation) -> Request {
    Request {
        slot: 0,
        lease: LeaseName::new(name).unwrap(),
        op,
    }
}

fn record(holder: &str) -> LeaseRecord {
    LeaseRecord {
        holder: Holder::from_wire(Some(holder)),
        lease_duration: Some(D::from_secs(15)),
        acquire_time: Some(MicroTime::from_unix_micros(1_795_305_600_123_456)),
        renew_time: Some(MicroTime::from_unix_micros(1_795_305_600_123_456)),
        lease_transitions: Some(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_error_mapping() {
    let sim = sim().await;
    let t = transport(&sim, "admin", Duration::from_secs(5)).await;
    assert_eq!(
        t.call(request("l", Operation::Get)).await,
        Err(ApiError::NotFound)
    );
    let created = t
        .call(request("l", Operation::Create(record("a"))))
        .await
        .unwrap();
    assert_eq!(
        created.record.renew_time,
        Some(MicroTime::from_unix_micros(1_795_305_600_123_456))
    );
    assert_eq!(
        sim.lease("default", "l").unwrap()["spec"]["renewTime"],
        "2026-11-22T00:00:00.123456Z"
    );
    assert_eq!(
        t.call(request("l", Operation::Create(record("b")))).await,
        Err(ApiError::AlreadyExists)
    );
    let rv = created.resource_version.clone();
    t.call(request(
        "l",
        Operation::Update {
            resource_version: rv.clone(),
            record: record("b"),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        t.call(request(
            "l",
            Operation::Update {
                resource_version: rv,
                record: record("c")
            }
        ))
        .await,
        Err(ApiError::Conflict)
    );
    let mut bad = record("d");
    bad.lease_duration = Some(D::from_secs(0));
    assert_eq!(
        t.call(request("m", Operation::Create(bad))).await,
        Err(ApiError::Invalid)
    );
    assert!(
        t.last_failure()
            .unwrap()
            .message
            .contains("spec.leaseDurationSeconds")
    );

    let reader = transport(&sim, "reader", Duration::from_secs(5)).await;
    assert_eq!(
        reader
            .call(request("x", Operation::Create(record("r"))))
            .await,
        Err(ApiError::Forbidden)
    );
    assert!(
        reader
            .last_failure()
            .unwrap()
            .message
            .contains("User \"reader\" cannot create resource \"leases\"")
    );

    sim.set_faults(Faults {
        throttle_permille: 1000,
        retry_after_seconds: 9,
        ..Faults::default()
    });
    assert_eq!(
        t.call(request("l", Operation::Get)).await,
        Err(ApiError::TooManyRequests {
            retry_after: Some(D::from_secs(9))
        })
    );
    sim.set_faults(Faults {
        error_permille: 1000,
        ..Faults::default()
    });
    assert_eq!(
        t.call(request("l", Operation::Get)).await,
        Err(ApiError::Server { status: 500 })
    );
    sim.set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let slow = transport(&sim, "admin", Duration::from_millis(300)).await;
    assert_eq!(
        slow.call(request("l", Operation::Get)).await,
        Err(ApiError::Timeout)
    );
    sim.set_faults(Faults::default());
    sim.stop().await;
}

fn timing() -> Timing {
    Timing::new(D::from_secs(3), D::from_secs(2), D::from_millis(500)).unwrap()
}

#[derive(Default)]
struct Leaders {
    now: Vec<usize>,
    most_at_once: usize,
    history: Vec<(usize, Instant)>,
}

fn spawn<T: Transport>(
    transport: Arc<T>,
    index: usize,
    leaders: Arc<Mutex<Leaders>>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut elector = Elector::new(
            ElectorConfig {
                lease: LeaseName::new("mixed").unwrap(),
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

async fn next_leader(
    leaders: &Arc<Mutex<Leaders>>,
    after: Instant,
    except: Option<usize>,
) -> (usize, Instant) {
    loop {
        let found = leaders
            .lock()
            .unwrap()
            .history
            .iter()
            .find(|(i, at)| *at >= after && Some(*i) != except)
            .copied();
        if let Some(found) = found {
            return found;
        }
        assert!(after.elapsed() < Duration::from_secs(8), "no leader");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_of_http_and_kube_electors_never_leads_twice() {
    let sim = sim().await;
    let leaders = Arc::new(Mutex::new(Leaders::default()));
    let start = Instant::now();
    let mut electors = Vec::new();
    for index in 0..4 {
        let elector = if index % 2 == 0 {
            let cluster = leasehold_adapter_http::kubeconfig::from_kubeconfig(
                &[kubeconfig(&sim, "admin", "mixed")],
                None,
            )
            .unwrap();
            let config = leasehold_adapter_http::HttpConfig {
                cluster,
                namespace: "default".into(),
                request_timeout: Duration::from_secs(1),
                rate_limit: None,
            };
            spawn(
                Arc::new(leasehold_adapter_http::HttpTransport::new(&config).unwrap()),
                index,
                leaders.clone(),
            )
        } else {
            spawn(
                Arc::new(transport(&sim, "admin", Duration::from_secs(1)).await),
                index,
                leaders.clone(),
            )
        };
        electors.push(Some(elector));
    }
    let (first, _) = next_leader(&leaders, start, None).await;
    // Hand over gracefully twice, so that the lease passes between the two transports.
    let mut current = first;
    for _ in 0..2 {
        let (stop, task) = electors[current].take().unwrap();
        let released = Instant::now();
        stop.send(()).unwrap();
        task.await.unwrap();
        let (next, at) = next_leader(&leaders, released, Some(current)).await;
        assert!(
            at.duration_since(released) < Duration::from_secs(1),
            "graceful hand-over took {:?}",
            at.duration_since(released)
        );
        current = next;
    }
    // A crash: the last one standing takes over once the lease expires.
    let (_, task) = electors[current].take().unwrap();
    task.abort();
    let _ = task.await;
    leaders.lock().unwrap().now.retain(|&i| i != current);
    let crashed = Instant::now();
    let (last, at) = next_leader(&leaders, crashed, Some(current)).await;
    assert!(
        at.duration_since(crashed) >= Duration::from_millis(900),
        "took over before the lease could expire"
    );
    assert_eq!(
        sim.lease("default", "mixed").unwrap()["spec"]["holderIdentity"],
        format!("elector-{last}")
    );
    assert_eq!(
        leaders.lock().unwrap().most_at_once,
        1,
        "two electors led at once"
    );
    for e in electors.into_iter().flatten() {
        e.1.abort();
    }
    sim.stop().await;
}
