//! `leasehold demo`: three electors and a cold-start pool against the simulated API server, in
//! one process, no cluster needed.

use crate::cli::Global;
use crate::cluster::{self, ConnectOptions};
use crate::config::ConfigFile;
use crate::duration::to_std;
use crate::error::AgentError;
use crate::transport::AnyTransport;
use leasehold_core::{
    Elector, ElectorConfig, Event, Identity, LeaseName, Pool, PoolConfig, Timing,
};
use leasehold_fake_apiserver::{Sim, SimConfig};
use leasehold_runtime::{Clock, drive};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const ELECTORS: usize = 3;
const MEMBERS: usize = 6;
const SLOTS: usize = 2;
/// How long a cold-start member holds its slot (its cache build).
const WORK: Duration = Duration::from_millis(1_500);

struct Log {
    start: Instant,
    leaders: Vec<(usize, Instant)>,
    released: usize,
}

impl Log {
    fn say(&mut self, what: &str) {
        println!("  {:>7.3}s  {what}", self.start.elapsed().as_secs_f64());
    }
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn wait_for(
    log: &Shared,
    within: Duration,
    what: &str,
    done: impl Fn(&Log) -> bool,
) -> Result<(), AgentError> {
    let start = Instant::now();
    while !done(&lock(log)) {
        if start.elapsed() > within {
            return Err(AgentError::runtime(format!(
                "the demo stalled waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The demo: client-go's default timing (15 s / 10 s / 2 s) over the chosen transport, against
/// the sim over HTTPS. The pool drains; the leader shuts down gracefully; the next is killed.
pub async fn run(global: &Global) -> Result<i32, AgentError> {
    let sim = Sim::start(SimConfig::default())
        .await
        .map_err(|e| AgentError::runtime(format!("cannot start the simulated API server: {e}")))?;
    let kubeconfig = KubeconfigFile::write(&sim)?;
    let mut options = ConnectOptions::new(
        global,
        &ConfigFile::default(),
        Some("default".into()),
        to_std(Timing::DEFAULT.request_timeout()),
    );
    options.kubeconfig = Some(kubeconfig.0.clone());
    options.context = None;
    println!(
        "leasehold demo: {ELECTORS} electors on lease \"controller\", {MEMBERS} cold-start members on \
         pool cold-start-0..{}\nagainst the simulated API server at {} (HTTPS; a test server, not \
         Kubernetes), {} transport, timing 15s/10s/2s\n",
        SLOTS - 1,
        sim.url(),
        options.kind.name()
    );
    let log: Shared = Arc::new(Mutex::new(Log {
        start: Instant::now(),
        leaders: Vec::new(),
        released: 0,
    }));

    let mut electors = Vec::new();
    for i in 0..ELECTORS {
        let (stop, stopped) = oneshot::channel::<()>();
        let transport = Arc::new(cluster::connect(&options).await?.transport);
        let log = log.clone();
        electors.push(Some((
            stop,
            tokio::spawn(elector(i, transport, stopped, log)),
        )));
    }
    for m in 0..MEMBERS {
        let transport = Arc::new(cluster::connect(&options).await?.transport);
        tokio::spawn(member(m, transport, log.clone()));
    }

    wait_for(&log, Duration::from_secs(20), "the pool to drain", |l| {
        l.released == MEMBERS && !l.leaders.is_empty()
    })
    .await?;
    let drained = lock(&log).start.elapsed();

    // Graceful: the leader releases; a follower sees it on its watch.
    let first = lock(&log).leaders.last().map_or(0, |l| l.0);
    lock(&log).say(&format!("elector-{first} gets SIGTERM: releases the lease"));
    let released = Instant::now();
    if let Some((stop, task)) = electors[first].take() {
        let _ = stop.send(());
        let _ = task.await;
    }
    wait_for(&log, Duration::from_secs(5), "a graceful failover", |l| {
        l.leaders
            .iter()
            .any(|(i, at)| *i != first && *at >= released)
    })
    .await?;
    let (second, at) = lock(&log)
        .leaders
        .iter()
        .rev()
        .find(|(i, _)| *i != first)
        .copied()
        .ok_or_else(|| AgentError::runtime("no second leader"))?;
    let graceful = at.duration_since(released);

    // Crash: no release; the last one waits out the 15 s lease from the last renew it saw.
    lock(&log).say(&format!("elector-{second} is killed (kill -9): no release"));
    let crashed = Instant::now();
    if let Some((_, task)) = electors[second].take() {
        task.abort();
    }
    wait_for(&log, Duration::from_secs(25), "a crash failover", |l| {
        l.leaders
            .iter()
            .any(|(i, at)| *i != second && *at >= crashed)
    })
    .await?;
    let crash = lock(&log)
        .leaders
        .last()
        .map_or(Duration::ZERO, |(_, at)| at.duration_since(crashed));

    let counters = sim.counters();
    println!("\nsummary");
    println!(
        "  cold-start pool: {MEMBERS} agents through {SLOTS} slots in {:.1} s (ideal {:.1} s)",
        drained.as_secs_f64(),
        (MEMBERS as f64 / SLOTS as f64).ceil() * WORK.as_secs_f64()
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
    for (_, task) in electors.into_iter().flatten() {
        task.abort();
    }
    sim.stop().await;
    Ok(0)
}

async fn elector(
    i: usize,
    transport: Arc<AnyTransport>,
    stopped: oneshot::Receiver<()>,
    log: Shared,
) {
    let (Ok(lease), Ok(identity)) = (
        LeaseName::new("controller"),
        Identity::new(&format!("elector-{i}")),
    ) else {
        return;
    };
    let mut elector = Elector::new(
        ElectorConfig {
            lease,
            identity,
            timing: Timing::DEFAULT,
            watch: true,
        },
        i as u64,
    );
    // Only a send asks it to stop: the sender dropped when it is killed must not release.
    let shutdown = async {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    drive(
        &mut elector,
        transport,
        Clock::default(),
        shutdown,
        |_, e| {
            let mut l = lock(&log);
            match e {
                Event::BecameLeader { epoch, .. } => {
                    l.leaders.push((i, Instant::now()));
                    l.say(&format!("elector-{i} became leader (epoch {epoch})"));
                }
                Event::LostLeadership { reason } => {
                    l.say(&format!("elector-{i} lost leadership ({reason:?})"))
                }
                _ => {}
            }
        },
    )
    .await;
}

async fn member(m: usize, transport: Arc<AnyTransport>, log: Shared) {
    let Ok(identity) = Identity::new(&format!("agent-{m}")) else {
        return;
    };
    let config = PoolConfig {
        prefix: "cold-start",
        size: SLOTS,
        identity,
        timing: Timing::DEFAULT,
        watch: true,
    };
    let Ok(mut pool) = Pool::<SLOTS>::new(config, 100 + m as u64) else {
        return;
    };
    let (done, work_done) = oneshot::channel::<()>();
    let mut done = Some(done);
    let finished = async move {
        let _ = work_done.await;
    };
    drive(&mut pool, transport, Clock::default(), finished, |_, e| {
        let mut l = lock(&log);
        match e.event {
            Event::BecameLeader { .. } => {
                l.say(&format!(
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
                l.say(&format!("agent-{m} released cold-start-{}", e.slot));
            }
            _ => {}
        }
    })
    .await;
}

/// The demo's kubeconfig in a temporary file, removed at the end.
struct KubeconfigFile(PathBuf);

impl KubeconfigFile {
    fn write(sim: &Sim) -> Result<Self, AgentError> {
        let path =
            std::env::temp_dir().join(format!("leasehold-demo-{}.kubeconfig", std::process::id()));
        let text = sim
            .kubeconfig("admin", "default")
            .ok_or_else(|| AgentError::runtime("the sim has no admin user"))?;
        write_private(&path, &text)
            .map_err(|e| AgentError::runtime(format!("cannot write {}: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes a file only its owner can read: it holds a bearer token.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
