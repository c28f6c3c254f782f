//! The demo: the simulated API server on HTTPS in-process, three electors on one lease and a
//! cold-start pool of two with six members, all over the HTTP transport with client-go's
//! default timing (15 s / 10 s / 2 s). The pool drains (each member holds a slot while it
//! "builds its cache", then releases it); the leader shuts down gracefully; the next leader
//! is killed. Prints the timeline and a summary; exits within a minute.
//!
//! `cargo run --release -p leasehold-adapter-http --example demo`

use leasehold_adapter_http::kubeconfig::from_kubeconfig;
use leasehold_adapter_http::{HttpConfig, HttpTransport};
use leasehold_core::{
    Elector, ElectorConfig, Event, Identity, LeaseName, Pool, PoolConfig, Timing,
};
use leasehold_driver::{Clock, drive, request_timeout};
use leasehold_sim::{Sim, SimConfig};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const ELECTORS: usize = 3;
const MEMBERS: usize = 6;
/// How long a cold-start member holds its slot (its cache build).
const WORK: Duration = Duration::from_millis(1_500);

struct Log {
    start: Instant,
    lines: Vec<(Duration, String)>,
    leaders: Vec<(usize, Instant)>,
    acquired: usize,
    released: usize,
}

impl Log {
    fn say(&mut self, what: String) {
        let at = self.start.elapsed();
        println!("  {:>7.3}s  {what}", at.as_secs_f64());
        self.lines.push((at, what));
    }
}

fn transport(sim: &Sim) -> Arc<HttpTransport> {
    let path = std::env::temp_dir().join(format!("leasehold-demo-{}", std::process::id()));
    std::fs::write(&path, sim.kubeconfig("admin", "default").expect("admin")).expect("kubeconfig");
    let cluster = from_kubeconfig(&[path], None).expect("the sim's kubeconfig resolves");
    let config = HttpConfig {
        cluster,
        namespace: "default".into(),
        request_timeout: request_timeout(&Timing::DEFAULT),
        rate_limit: None,
    };
    Arc::new(HttpTransport::new(&config).expect("transport"))
}

async fn wait_for(log: &Arc<Mutex<Log>>, within: Duration, done: impl Fn(&Log) -> bool) {
    let start = Instant::now();
    while !done(&log.lock().expect("log")) {
        assert!(start.elapsed() < within, "the demo stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let sim = Sim::start(SimConfig::default())
        .await
        .expect("the simulated API server starts");
    println!(
        "leasehold demo: {ELECTORS} electors on lease \"controller\" and {MEMBERS} cold-start members on pool cold-start-0..1"
    );
    println!(
        "against the simulated API server at {} (HTTPS; a test server, not Kubernetes), timing 15s/10s/2s\n",
        sim.url()
    );
    let log = Arc::new(Mutex::new(Log {
        start: Instant::now(),
        lines: Vec::new(),
        leaders: Vec::new(),
        acquired: 0,
        released: 0,
    }));

    let mut electors: Vec<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>> = Vec::new();
    for i in 0..ELECTORS {
        let (stop, stopped) = oneshot::channel::<()>();
        let (t, log) = (transport(&sim), log.clone());
        electors.push(Some((
            stop,
            tokio::spawn(async move {
                let config = ElectorConfig {
                    lease: LeaseName::new("controller").expect("name"),
                    identity: Identity::new(&format!("elector-{i}")).expect("id"),
                    timing: Timing::DEFAULT,
                    watch: true,
                };
                let mut elector = Elector::new(config, i as u64);
                drive(
                    &mut elector,
                    t,
                    Clock::default(),
                    async {
                        let _ = stopped.await;
                    },
                    |_, e| {
                        let mut l = log.lock().expect("log");
                        match e {
                            Event::BecameLeader { epoch } => {
                                l.leaders.push((i, Instant::now()));
                                l.say(format!("elector-{i} became leader (epoch {epoch})"));
                            }
                            Event::LostLeadership { reason } => {
                                l.say(format!("elector-{i} lost leadership ({reason:?})"))
                            }
                            _ => {}
                        }
                    },
                )
                .await;
            }),
        )));
    }
    for m in 0..MEMBERS {
        let (t, log) = (transport(&sim), log.clone());
        tokio::spawn(async move {
            let config = PoolConfig {
                prefix: "cold-start",
                size: 2,
                identity: Identity::new(&format!("agent-{m}")).expect("id"),
                timing: Timing::DEFAULT,
                watch: true,
            };
            let mut pool: Pool<2> = Pool::new(config, 100 + m as u64).expect("pool");
            let (done, work_done) = oneshot::channel::<()>();
            let mut done = Some(done);
            let finished = async move {
                let _ = work_done.await;
            };
            drive(&mut pool, t, Clock::default(), finished, |_, e| {
                let mut l = log.lock().expect("log");
                match e.event {
                    Event::BecameLeader { .. } => {
                        l.acquired += 1;
                        l.say(format!(
                            "agent-{m} got cold-start-{}: building its cache",
                            e.slot
                        ));
                        if let Some(done) = done.take() {
                            tokio::spawn(async move {
                                tokio::time::sleep(WORK).await;
                                let _ = done.send(());
                            });
                        }
                    }
                    Event::Released { written: true } => {
                        l.released += 1;
                        l.say(format!("agent-{m} released cold-start-{}", e.slot));
                    }
                    _ => {}
                }
            })
            .await;
        });
    }

    wait_for(&log, Duration::from_secs(20), |l| {
        l.released == MEMBERS && !l.leaders.is_empty()
    })
    .await;
    let drained = log.lock().expect("log").start.elapsed();

    // Graceful: the leader releases; a follower sees it on its watch.
    let first = log.lock().expect("log").leaders.last().expect("a leader").0;
    log.lock().expect("log").say(format!(
        "elector-{first} shuts down (SIGTERM): releases the lease"
    ));
    let (stop, task) = electors[first].take().expect("running");
    let released = Instant::now();
    let _ = stop.send(());
    let _ = task.await;
    wait_for(&log, Duration::from_secs(5), |l| {
        l.leaders
            .iter()
            .any(|(i, at)| *i != first && *at >= released)
    })
    .await;
    let (second, at) = *log
        .lock()
        .expect("log")
        .leaders
        .iter()
        .rev()
        .find(|(i, _)| *i != first)
        .expect("next");
    let graceful = at.duration_since(released);

    // Crash: no release; the last one waits out the 15 s lease from the last renew it saw.
    log.lock()
        .expect("log")
        .say(format!("elector-{second} is killed (kill -9): no release"));
    let (_, task) = electors[second].take().expect("running");
    task.abort();
    let crashed = Instant::now();
    wait_for(&log, Duration::from_secs(25), |l| {
        l.leaders
            .iter()
            .any(|(i, at)| *i != second && *at >= crashed)
    })
    .await;
    let (_, at) = *log.lock().expect("log").leaders.last().expect("leader");
    let crash = at.duration_since(crashed);

    let counters = sim.counters();
    println!("\nsummary");
    println!(
        "  cold-start pool: {MEMBERS} agents through 2 slots in {:.1} s (ideal {:.1} s)",
        drained.as_secs_f64(),
        (MEMBERS as f64 / 2.0).ceil() * WORK.as_secs_f64()
    );
    println!(
        "  graceful failover (release seen on the watch): {:.1} ms",
        graceful.as_secs_f64() * 1e3
    );
    println!(
        "  crash failover (lease 15 s after the last renew seen): {:.3} s",
        crash.as_secs_f64()
    );
    println!(
        "  API requests: {} ({} get, {} create, {} update, {} watch)",
        counters.total(),
        counters.count("get", "leases"),
        counters.count("create", "leases"),
        counters.count("update", "leases"),
        counters.count("watch", "leases")
    );
    for e in electors.into_iter().flatten() {
        e.1.abort();
    }
    sim.stop().await;
}
